"""The README's first command works as written (the install step aside, done by tox)."""

from __future__ import annotations

import os
import pathlib
import subprocess

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_readme_names_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "bash scripts/demo.sh" in readme
    assert "bash .ci/run" in readme


def test_demo_records_a_failure_and_shows_it(tmp_path: pathlib.Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "GENESIS_"))}
    env.update(GENESIS_DEMO_SKIP_INSTALL="1", GENESIS_LOG_DIR=str(tmp_path))
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "demo.sh")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "collected 1 item" in done.stdout
    table = done.stdout.split("== genesis-logging failures spec_demo ==")[1]
    assert "AssertionError: add(2, 3) returned -1" in table
    assert "spec spec_demo: iteration 1 is red (exit code 1)" in table
