"""Secrets stay out of what the command line prints, and users are told about argv."""

from __future__ import annotations

from .fakes import run_cli


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
