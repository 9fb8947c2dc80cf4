"""What the command line writes is safe for the programs that read it."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

from genesis_logging.cli._output import json_line, render
from genesis_logging.local_store import LocalStoreHandler
from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env, cli_command, run_cli


class TestJsonLines:
    """One record, one line, for any reader (``str.splitlines()`` breaks at U+2028 and NEL,
    which JSON leaves raw)."""

    def test_line_breaks_of_every_kind_are_escaped(self) -> None:
        text = "a\u2028b\u2029c\x85d\x1ce\nf"
        out = io.StringIO()
        render(["message"], [(text,)], "json", out)
        assert out.getvalue().splitlines() == [json_line({"message": text}).rstrip("\n")]
        assert len(out.getvalue().splitlines()) == 1


class TestPipes:
    """``genesis-logging tail | head -1``: the reader goes away, no traceback."""

    def test_a_closed_pipe_ends_quietly(self, tmp_path: Path) -> None:
        handler = LocalStoreHandler(tmp_path)
        logger = logging.getLogger("pipes")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        for i in range(3000):
            logger.info("record %d %s", i, "x" * 200, extra={"spec_id": "pipes"})
        handler.close()
        command = " ".join(cli_command("tail", "-n", "3000", "--log-dir", str(tmp_path)))
        done = subprocess.run(
            f"{command} | head -n 1",
            shell=True,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=OUTSIDE_CHECKOUT,
            env=clean_env(),
        )
        assert done.stdout.count("\n") == 1
        assert "Traceback" not in done.stderr, done.stderr
        assert "BrokenPipeError" not in done.stderr


class TestOddLineBreaksInRecords:
    """Issue 20.2: one U+0085 (NEL) in a record broke every query selecting it (chDB's
    output was split with ``str.splitlines()``)."""

    def test_every_read_command_answers(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        program = "import sys; print('a\\x85b\\u2028c'); sys.exit(1)"
        ran = run_cli(
            "run",
            "--spec",
            "odd",
            "--iteration",
            "1",
            "--",
            sys.executable,
            "-c",
            program,
            env=env,
        )
        assert ran.returncode == 1, ran.stderr
        for command in (
            ("show", "odd"),
            ("failures", "odd"),
            ("tail", "--spec", "odd"),
            ("query", "SELECT stdout FROM genesis.logs WHERE spec_id = 'odd'", "--format", "json"),
        ):
            done = run_cli(*command, env=env)
            assert done.returncode == 0, (command, done.stderr)
        assert json.loads(done.stdout)["stdout"] == "a\x85b\u2028c\n"
