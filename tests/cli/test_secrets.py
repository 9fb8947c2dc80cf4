"""Secrets stay out of what the command line prints, and users are told about argv."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from tests.support.fakes import run_cli


class TestPasswordOnTheCommandLine:
    """Issue 20: a password given with ``--url`` sits in the process list for every user."""

    def test_the_user_is_told_and_the_password_is_not_printed(self) -> None:
        url = "clickhouse://writer:s3cret-pw@127.0.0.1:1/genesis"  # nobody listens on port 1
        done = run_cli("doctor", "--url", url)
        assert done.returncode == 1
        assert "process list" in done.stderr
        assert "CLICKHOUSE_PASSWORD" in done.stderr
        assert "s3cret-pw" not in done.stdout + done.stderr

    def test_read_commands_tell_the_user_too(self) -> None:
        done = run_cli("tail", "--url", "clickhouse://reader:s3cret-pw@127.0.0.1:1/genesis")
        assert done.returncode == 1
        assert "process list" in done.stderr
        assert "s3cret-pw" not in done.stdout + done.stderr

    def test_no_warning_when_the_password_comes_from_the_environment(self) -> None:
        done = run_cli(
            "doctor",
            "--url",
            "clickhouse://writer@127.0.0.1:1/genesis",
            env={"CLICKHOUSE_PASSWORD": "s3cret-pw"},
        )
        assert done.returncode == 1
        assert "process list" not in done.stderr
        assert "s3cret-pw" not in done.stdout + done.stderr


class TestPrivateFiles:
    """Issue 20: the local store was created with the default umask (0644/0755)."""

    def test_the_local_store_is_private_to_its_user(self, tmp_path: Path) -> None:
        old = os.umask(0o022)
        try:
            done = run_cli(
                "run", "--spec", "private", "--iteration", "1", "--",
                sys.executable, "-c", "print('hello')",
                env={"GENESIS_LOG_DIR": str(tmp_path / "logs")},
            )  # fmt: skip
        finally:
            os.umask(old)
        assert done.returncode == 0, done.stderr
        files = list((tmp_path / "logs").glob("*.jsonl*"))
        assert files
        for path in [tmp_path / "logs", *files]:
            assert path.stat().st_mode & 0o077 == 0, (path, oct(path.stat().st_mode))
