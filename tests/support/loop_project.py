"""A tiny project the loop runs (a bug, then its fix), and what the loop's commands must
answer about it: shared by the loop's tests on old servers, tables and the cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Final

from .fakes import run_cli as cli

BUGGY: Final = "def add(a, b):\n    return a - b\n"


FIXED: Final = "def add(a, b):\n    return a + b\n"


TESTS: Final = (
    "from calc import add\n\n\n"
    "def test_add():\n    assert add(1, 2) == 3\n\n\n"
    "def test_zero():\n    assert add(0, 0) == 0\n"
)


NOTICE: Final = "has no logger, exception, attributes column"


class Project:
    """A tiny project whose suite the loop runs: a bug, then its fix."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        (root / "calc.py").write_text(BUGGY)
        (root / "test_calc.py").write_text(TESTS)

    def fix(self) -> None:
        (self.root / "calc.py").write_text(FIXED)

    def run(self, spec: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return cli(
            "run",
            "--spec",
            spec,
            "--iteration",
            "auto",
            "--snapshot",
            str(self.root / "calc.py"),
            str(self.root / "test_calc.py"),
            "--",
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:randomly",
            f"--rootdir={self.root}",
            str(self.root),
            env=env,
        )

    def red_then_green(self, spec: str, env: dict[str, str]) -> None:
        red = self.run(spec, env)
        assert red.returncode == 1, red.stdout + red.stderr
        self.fix()
        green = self.run(spec, env)
        assert green.returncode == 0, green.stdout + green.stderr


def notices(result: subprocess.CompletedProcess[str]) -> int:
    return result.stderr.count(NOTICE)


def no_trace(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


def assert_loop_answers(env: dict[str, str], spec: str, *, degraded: bool) -> None:
    """failures, diff, verify, show and tail answer about a red-then-green spec."""
    failures = cli("failures", spec, env=env)
    no_trace(failures)
    assert failures.returncode == 0, failures.stderr
    assert "test_calc.py::test_add" in failures.stdout  # the test, from the plugin's record
    assert "assert -1 == 3" in failures.stdout

    diff = cli("diff", spec, env=env)
    no_trace(diff)
    assert diff.returncode == 0, diff.stderr
    assert "exit code 1 → 0" in diff.stdout
    assert "test_calc.py::test_add" in diff.stdout  # fixed
    assert "-    return a - b" in diff.stdout
    assert "+    return a + b" in diff.stdout

    verified = cli("verify", spec, env=env)
    no_trace(verified)
    if degraded:  # no snapshot file list without attributes: verify cannot tell the code
        assert verified.returncode == 1
    else:
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "green: iteration 2" in verified.stdout

    shown = cli("show", spec, "--iteration", "1", env=env)
    no_trace(shown)
    assert shown.returncode == 0, shown.stderr
    assert "exit code 1" in shown.stdout

    tail = cli("tail", "--spec", spec, "--format", "json", env=env)
    no_trace(tail)
    assert tail.returncode == 0, tail.stderr
    messages = [json.loads(line)["message"] for line in tail.stdout.splitlines()]
    assert any(m.startswith("run failed with exit code 1") for m in messages)
    assert "test failed: test_calc.py::test_add" in messages

    for result in (failures, diff, verified, shown, tail):
        assert notices(result) == (1 if degraded else 0), result.stderr
