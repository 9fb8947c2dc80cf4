#!/usr/bin/env bash
# The main job on the embedded default: a failing run recorded in the local store (no
# server), then shown back the way the assistant would ask for it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${GENESIS_DEMO_SKIP_INSTALL:-}" != "1" ]; then
  python3 -m pip install --quiet ".[chdb]"
fi
export GENESIS_LOG_DIR="${GENESIS_LOG_DIR:-$(mktemp -d -t genesis-demo-XXXXXX)}"
echo "== genesis-logging run (the command fails on purpose) =="
genesis-logging run --spec spec_demo --iteration auto --sprint S030 --task T01 -- \
  python3 -c "import sys; print('collected 1 item'); sys.exit('AssertionError: add(2, 3) returned -1')" || true
echo "== genesis-logging failures spec_demo =="
genesis-logging failures spec_demo
echo "(local store: $GENESIS_LOG_DIR)"
