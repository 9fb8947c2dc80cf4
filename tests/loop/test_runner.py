"""run_and_log and log_step with real commands."""

from __future__ import annotations

import asyncio
import re
import sys
import time
from pathlib import Path

import pytest

from genesis_logging._convert import DEFAULT_MAX_FIELD_CHARS
from genesis_logging.runner import (
    EXIT_NOT_STARTED,
    EXIT_TIMEOUT,
    log_step,
    read_snapshot,
    run_and_log,
)
from tests.support.captured import Captured
from tests.support.fakes import rss_mb

PY = sys.executable
TRUNCATED = re.compile(r"\n…\[truncated: (\d+) of (\d+) bytes not kept\]$")


def marker_numbers(text: str) -> tuple[int, int]:
    """(bytes not kept, bytes in all) of the runner's marker, which must end ``text``."""
    found = TRUNCATED.search(text)
    assert found is not None, text[-200:]
    return int(found.group(1)), int(found.group(2))


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for its new parent to reap it."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        time.sleep(0.05)
    return True


class TestRunAndLog:
    """One complete record per run."""

    def test_success(self, captured: Captured) -> None:
        result = run_and_log(
            [PY, "-c", "print('3 passed')"],
            spec_id="spec_001",
            iteration=1,
            sprint_id="S030",
            task_id="T01",
            code_snapshot="def f(): return 1",
            logger=captured.logger,
        )
        assert result.ok
        line = captured.one()
        assert line["level"] == "info"
        assert line["message"].startswith("run succeeded: ")
        assert (line["spec_id"], line["iteration"], line["sprint_id"], line["task_id"]) == (
            "spec_001",
            1,
            "S030",
            "T01",
        )
        assert line["stdout"] == "3 passed\n"
        assert line["exit_code"] == 0
        assert line["code_snapshot"] == "def f(): return 1"
        assert line["duration_ms"] >= 0
        assert (
            line["attributes"]["command"].endswith("\"print('3 passed')\"")
            or "3 passed" in line["attributes"]["command"]
        )

    def test_failure_with_stderr(self, captured: Captured) -> None:
        result = run_and_log(
            [PY, "-c", "import sys; print('out'); sys.exit('TypeError: x is not a function')"],
            spec_id="spec_001",
            iteration=2,
            logger=captured.logger,
        )
        assert result.exit_code == 1
        line = captured.one()
        assert line["level"] == "error"
        assert line["stderr"] == "TypeError: x is not a function\n"
        assert line["stdout"] == "out\n"
        assert line["exit_code"] == 1
        assert "failed with exit code 1" in line["message"]

    def test_shell_string(self, captured: Captured) -> None:
        result = run_and_log(
            "echo a && exit 3", shell=True, spec_id="s", iteration=1, logger=captured.logger
        )
        assert (result.exit_code, result.stdout) == (3, "a\n")

    def test_timeout_kills_the_process_tree(self, captured: Captured, tmp_path: Path) -> None:
        pid_file = tmp_path / "grandchild.pid"
        script = f"sleep 60 & echo $! > {pid_file}; wait"
        started = time.monotonic()
        result = run_and_log(
            ["sh", "-c", script], timeout=0.5, spec_id="s", iteration=1, logger=captured.logger
        )
        assert time.monotonic() - started < 10
        assert result.timed_out
        assert result.exit_code == EXIT_TIMEOUT
        line = captured.one()
        assert "timed out after 0.5s" in line["message"]
        assert line["attributes"]["timed_out"] == "true"
        assert "killed after the 0.5s timeout" in line["stderr"]
        grandchild = int(pid_file.read_text())
        assert not alive(grandchild)  # the whole tree is gone

    def test_command_not_found(self, captured: Captured) -> None:
        result = run_and_log(
            ["no-such-command-xyz"], spec_id="s", iteration=1, logger=captured.logger
        )
        assert result.exit_code == EXIT_NOT_STARTED
        assert not result.started
        line = captured.one()
        assert line["exit_code"] == 127
        assert "FileNotFoundError" in line["stderr"]
        assert "could not be started" in line["message"]

    def test_hundred_megabytes_of_output(self, captured: Captured) -> None:
        before = rss_mb()
        result = run_and_log(
            [PY, "-c", "import sys\nfor _ in range(100): sys.stdout.write('x' * 1048576)"],
            spec_id="s",
            iteration=1,
            logger=captured.logger,
            max_output_bytes=1_000_000,
        )
        assert rss_mb() - before < 64  # not 100 MB
        assert result.stdout_bytes == 100 * 1048576
        line = captured.one()
        assert line["stdout"].startswith("x" * 1000)
        # the marker fits inside the limit with the text kept (issue 20 point 7)
        kept, total = marker_numbers(line["stdout"])
        assert total == 104857600
        assert line["stdout"].startswith("x" * (total - kept))
        assert len(line["stdout"]) <= 1_000_000

    def test_the_marker_survives_the_field_limit(self, captured: Captured) -> None:
        """5 MiB of output, default limits: the record says what was cut, in the text."""
        result = run_and_log(
            [PY, "-c", "import sys\nfor _ in range(5): sys.stdout.write('y' * 1048576)"],
            spec_id="s",
            iteration=1,
            logger=captured.logger,
        )
        line = captured.one()
        not_kept, total = marker_numbers(line["stdout"])
        assert total == result.stdout_bytes == 5 * 1048576
        kept = len(line["stdout"]) - len(TRUNCATED.search(line["stdout"]).group(0))  # type: ignore[union-attr]
        assert kept + not_kept == total
        assert len(line["stdout"]) <= DEFAULT_MAX_FIELD_CHARS
        assert "stdout.original_length" not in line.get("attributes", {})  # not cut twice

    def test_a_timeout_note_after_a_full_capture_is_kept(self, captured: Captured) -> None:
        script = (
            "import sys, time\nsys.stderr.write('e' * 5000); sys.stderr.flush(); time.sleep(60)"
        )
        run_and_log(
            [PY, "-c", script],
            spec_id="s",
            iteration=1,
            timeout=1,
            logger=captured.logger,
            max_output_bytes=5000,
        )
        stderr = captured.one()["stderr"]
        assert len(stderr) <= 5000
        assert stderr.endswith("[genesis-logging: killed after the 1s timeout]")
        assert "bytes not kept]" in stderr  # what made room for the note is said too

    def test_output_that_is_not_utf8(self, captured: Captured) -> None:
        run_and_log(
            [PY, "-c", "import sys; sys.stdout.buffer.write(b'ok \\xff\\xfe end')"],
            spec_id="s",
            iteration=1,
            logger=captured.logger,
        )
        assert captured.one()["stdout"] == "ok \ufffd\ufffd end"

    def test_directory_snapshot(self, captured: Captured, tmp_path: Path) -> None:
        (tmp_path / "pkg").mkdir()
        (tmp_path / "pkg" / "b.py").write_text("B = 2\n")
        (tmp_path / "a.py").write_text("A = 1\n")
        (tmp_path / ".git").mkdir()
        (tmp_path / ".git" / "HEAD").write_text("ref")
        (tmp_path / "pkg" / "__pycache__").mkdir()
        (tmp_path / "pkg" / "__pycache__" / "b.pyc").write_bytes(b"\x00")
        run_and_log(
            [PY, "-c", "pass"],
            spec_id="s",
            iteration=1,
            code_snapshot=tmp_path,
            logger=captured.logger,
        )
        snapshot = captured.one()["code_snapshot"]
        assert (
            snapshot
            == f"# ===== {tmp_path / 'a.py'}\nA = 1\n\n# ===== {tmp_path / 'pkg' / 'b.py'}\nB = 2\n\n"
        )

    def test_snapshot_is_bounded(self, tmp_path: Path) -> None:
        for i in range(5):
            (tmp_path / f"f{i}.py").write_text("x" * 1000)
        text = read_snapshot(tmp_path, 2500)
        assert len(text) <= 2500
        assert "f0.py" in text
        assert read_snapshot(tmp_path, 2500) == text  # deterministic


class TestLogStep:
    """received / failed / done, with duration_ms."""

    def test_done(self, captured: Captured) -> None:
        with log_step("process order", logger=captured.logger, task_id="T01"):
            captured.logger.info("inside")
        lines = captured.records()
        assert [line["message"] for line in lines] == [
            "process order: received",
            "inside",
            "process order: done",
        ]
        assert all(line["task_id"] == "T01" for line in lines)
        assert lines[2]["duration_ms"] >= 0

    def test_failed(self, captured: Captured) -> None:
        with pytest.raises(KeyError), log_step("process order", logger=captured.logger):
            raise KeyError("sku")
        _received, failed = captured.records()
        assert failed["level"] == "error"
        assert failed["message"] == "process order: failed"
        assert failed["attributes"]["error"] == "KeyError: 'sku'"
        assert failed["exception"].endswith("KeyError: 'sku'")
        assert "duration_ms" in failed

    def test_decorator_sync_and_async(self, captured: Captured) -> None:
        @log_step("sync work", logger=captured.logger)
        def work() -> int:
            return 1

        @log_step("async work", logger=captured.logger, spec_id="s")
        async def awork() -> int:
            await asyncio.sleep(0)
            return 2

        assert work() + work() + asyncio.run(awork()) == 4
        messages = [line["message"] for line in captured.records()]
        assert messages == ["sync work: received", "sync work: done"] * 2 + [
            "async work: received",
            "async work: done",
        ]

    def test_bad_field_fails_at_the_call(self) -> None:
        with pytest.raises(ValueError, match="iteration"):
            log_step("x", iteration=-1)
