"""A tiny TDD loop: generate code, run its test, log the run, ask the logs, fix, repeat.

    GENESIS_LOG_DIR=.genesis/logs python examples/tdd_loop.py

Each run is one record in the local store; the "assistant" reads the failure back with the
specification's §4 query — the same SQL it would send to production through MCP.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
from pathlib import Path

from genesis_logging import run_and_log
from genesis_logging.local_store import LocalStoreHandler
from genesis_logging.store import LocalStore

ATTEMPTS = [
    "def add(a, b):\n    return a - b\n",  # the first generation has a bug
    "def add(a, b):\n    return a + b\n",  # the fix, after reading the failure
]
TEST = "from solution import add\nassert add(2, 3) == 5, f'add(2, 3) returned {add(2, 3)}'\nprint('1 passed')\n"


def main() -> int:
    log_dir = Path(os.environ.get("GENESIS_LOG_DIR") or tempfile.mkdtemp(prefix="genesis-logs-"))
    store_handler = LocalStoreHandler(log_dir)
    logger = logging.getLogger("tdd")
    logger.addHandler(store_handler)
    logger.setLevel(logging.INFO)
    workdir = Path(tempfile.mkdtemp(prefix="genesis-tdd-"))
    (workdir / "test_solution.py").write_text(TEST)
    for iteration, code in enumerate(ATTEMPTS, 1):
        (workdir / "solution.py").write_text(code)  # "generate"
        result = run_and_log(  # run, capture, log one record
            [sys.executable, "test_solution.py"],
            spec_id="spec_add",
            iteration=iteration,
            sprint_id="S030",
            task_id="T01",
            code_snapshot=workdir / "solution.py",
            cwd=workdir,
            timeout=60,
            logger=logger,
        )
        store_handler.flush()
        if result.ok:
            print(f"iteration {iteration}: passed")
            return 0
        store = LocalStore(log_dir)  # "ask": what failed in spec_add?
        failures = store.query(
            "SELECT iteration, stderr, exit_code FROM genesis.logs "
            "WHERE spec_id = {spec:String} AND exit_code != 0 ORDER BY timestamp DESC LIMIT 10",
            {"spec": "spec_add"},
        )
        store.close()
        last_error = failures.rows[0][1].strip().splitlines()[-1]
        print(f"iteration {iteration}: failed, the logs say: {last_error}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
