"""Ctrl-C or SIGTERM to ``genesis-logging run``: the command stops too, and the
interrupted run is recorded (issue 20, finding 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env, cli_command

#: Prints its PID, then sleeps; a child of its own that would outlive a careless kill.
SLEEPER = (
    "import os, subprocess, sys, time; "
    "grandchild = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)']); "
    "print(os.getpid(), grandchild.pid, flush=True); time.sleep(120)"
)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as handle:  # a zombie is not alive
        return handle.read().split(")")[-1].split()[0] != "Z"


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["SIGINT", "SIGTERM"],
)
def test_the_command_stops_and_the_run_is_recorded(
    tmp_path: Path, signum: int, exit_code: int
) -> None:
    log_dir = tmp_path / "logs"
    process = subprocess.Popen(
        cli_command(
            "run", "--spec", "ctrl_c", "--iteration", "1", "--", sys.executable, "-c", SLEEPER
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=OUTSIDE_CHECKOUT,
        env=clean_env({"GENESIS_LOG_DIR": str(log_dir)}),
    )
    assert process.stdout is not None
    child, grandchild = map(int, process.stdout.readline().split())
    process.send_signal(signum)  # what a terminal's Ctrl-C sends to its foreground group
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    deadline = time.monotonic() + 10
    while (alive(child) or alive(grandchild)) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(child)
    assert not alive(grandchild)
    assert process.returncode == exit_code
    assert "genesis_logging/" not in stderr  # no traceback of ours (the command's may show)
    name = signal.Signals(signum).name
    assert f"interrupted by {name}" in stderr  # the summary line says so
    records = [
        json.loads(line)
        for path in log_dir.glob("*.jsonl*")
        for line in path.read_text().splitlines()
    ]
    runs = [r for r in records if r.get("logger") == "genesis.run"]
    assert len(runs) == 1
    assert runs[0]["exit_code"] == exit_code
    assert runs[0]["message"].startswith(f"run interrupted by {name}: ")
    assert runs[0]["level"] == "error"


def test_concurrent_auto_iterations_are_distinct(tmp_path: Path) -> None:
    """Issue 20: concurrent ``run --iteration auto`` of one spec read the same last
    iteration at their start and recorded the same number at their end."""
    env = clean_env({"GENESIS_LOG_DIR": str(tmp_path / "logs")})
    runs = [
        subprocess.Popen(
            cli_command(
                "run", "--spec", "together", "--iteration", "auto", "--",
                sys.executable, "-c", "import time; time.sleep(1)",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=OUTSIDE_CHECKOUT,
            env=env,
        )
        for _ in range(4)
    ]  # fmt: skip
    for run in runs:
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, stderr
    records = [
        json.loads(line)
        for path in (tmp_path / "logs").glob("*.jsonl*")
        for line in path.read_text().splitlines()
    ]
    iterations = sorted(r["iteration"] for r in records if r.get("logger") == "genesis.run")
    assert iterations == [1, 2, 3, 4]
