"""The TDD loop end to end in subprocesses: run, then failures / show / tail / query / load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .clickhouse_server import LocalServer, Target
from .fakes import OUTSIDE_CHECKOUT, clean_env, cli_command
from .fakes import run_cli as cli

FAILING = [
    sys.executable,
    "-c",
    "import sys; print('collected 3 items'); sys.exit('TypeError: x is not a function')",
]
PASSING = [sys.executable, "-c", "print('3 passed')"]
INJECTION = "x' OR 1=1 --"


def rows(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert result.returncode == 0, result.stdout + result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.integration
class TestLoop:
    """The specification's §4, from a failing run to the answer."""

    def test_run_then_failures_show_tail_query(
        self, store_env: dict[str, str], tmp_path: Path
    ) -> None:
        code = tmp_path / "solution.py"
        code.write_text("def add(a, b):\n    return a - b\n")
        first = cli(
            "run",
            "--spec",
            "spec_001",
            "--iteration",
            "auto",
            "--sprint",
            "S030",
            "--task",
            "T01",
            "--snapshot",
            str(code),
            "--",
            *FAILING,
            env=store_env,
        )
        assert first.returncode == 1  # the command's own status
        assert "collected 3 items" in first.stdout  # passed through live
        assert "TypeError: x is not a function" in first.stderr
        second = cli(
            "run", "--spec", "spec_001", "--iteration", "auto", "--", *PASSING, env=store_env
        )
        assert second.returncode == 0
        cli("run", "--spec", "spec_002", "--iteration", "7", "--", *FAILING, env=store_env)

        failures = rows(cli("failures", "spec_001", "--format", "json", env=store_env))
        assert [(r["iteration"], r["exit_code"], r["level"]) for r in failures] == [
            (2, 0, "info"),  # the latest state first (issue 19), then the failing history
            (1, 1, "error"),
        ]
        assert failures[1]["stderr"] == "TypeError: x is not a function\n"

        shown = cli("show", "spec_001", "--iteration", "1", env=store_env)
        assert shown.returncode == 0, shown.stderr
        assert "exit code 1" in shown.stdout
        assert "collected 3 items" in shown.stdout
        assert "return a - b" in shown.stdout  # the code snapshot

        latest = rows(cli("tail", "--spec", "spec_001", "--format", "json", env=store_env))
        # (sorted: on the old test server timestamps have whole seconds, so the two runs may tie)
        assert sorted((r["iteration"], r["exit_code"]) for r in latest) == [(1, 1), (2, 0)]
        errors = rows(cli("tail", "--level", "error", "--format", "json", env=store_env))
        assert sorted(r["spec_id"] for r in errors) == ["spec_001", "spec_002"]

        table = (
            "genesis.logs"
            if "GENESIS_LOG_DIR" in store_env
            else store_env["CLICKHOUSE_URL"].rsplit("/", 1)[1] + ".logs"
        )
        counted = rows(
            cli(
                "query",
                f"SELECT spec_id, count() AS n FROM {table} GROUP BY spec_id ORDER BY spec_id",
                "--format",
                "json",
                env=store_env,
            )
        )
        assert [(r["spec_id"], int(r["n"])) for r in counted] == [("spec_001", 2), ("spec_002", 1)]

        readable = cli("failures", "spec_002", env=store_env)
        first = readable.stdout.splitlines()[0]
        assert first.startswith("spec spec_002: iteration 7 is red (exit code 1) · ")
        assert "stderr:" in readable.stdout  # no per-test records: the run's own output

    def test_injection_attempts_are_inert(self, store_env: dict[str, str]) -> None:
        cli("run", "--spec", "spec_001", "--iteration", "1", "--", *FAILING, env=store_env)
        for command in (
            ["failures", INJECTION],
            ["show", INJECTION],
            ["tail", "--spec", INJECTION],
            ["tail", "--level", INJECTION],
        ):
            result = cli(*command, "--format", "json", env=store_env)
            assert result.stdout.strip() == "", command  # no rows: the value was data, not SQL
            assert "Traceback" not in result.stderr
        still = rows(cli("failures", "spec_001", "--format", "json", env=store_env))
        assert len(still) == 1


@pytest.mark.integration
def test_load_reports_malformed_lines(running_local_server: LocalServer, tmp_path: Path) -> None:
    target = Target("local", running_local_server.host, running_local_server.port)
    target.create_logs_table("genesis_test", "loaded")
    good = '{"timestamp": "2026-11-25T13:49:15.123Z", "level": "info", "message": "m%d", "spec_id": "s"}'
    lines = [good % 1, "not json at all", good % 2, '{"level": "info"}', "", good % 3, "[1, 2]"]
    first = tmp_path / "a.jsonl"
    first.write_text("\n".join(lines) + "\n")
    second = tmp_path / "b.jsonl"
    second.write_text(good % 4 + "\n{broken\n")
    result = cli(
        "load",
        str(first),
        str(second),
        "--table",
        "loaded",
        "--url",
        target.url("genesis_test"),
        env={},
    )
    assert result.returncode == 0, result.stderr
    reported = [
        line.split(": skipped")[0]
        for line in result.stdout.splitlines()
        if "skipped malformed" in line
    ]
    assert reported == [f"{first}:2", f"{first}:4", f"{first}:7", f"{second}:2"]
    assert "loaded 4 records" in result.stdout
    assert "records loaded" not in result.stderr  # no progress bar: stderr is not a terminal
    stored = sorted(
        m for (m,) in target.client().execute("SELECT message FROM genesis_test.loaded")
    )
    assert stored == ["m1", "m2", "m3", "m4"]


class TestMcpConfig:
    """Client configuration for the official ClickHouse MCP server."""

    def test_server_mode(self) -> None:
        result = cli(
            "mcp-config",
            "--host",
            "clickhouse.example.com",
            "--readonly-user",
            "genesis_readonly",
            env={"CLICKHOUSE_PASSWORD": "never-print-me", "CLICKHOUSE_SECURE": "true"},
        )
        config = json.loads(result.stdout)["mcpServers"]["clickhouse"]
        assert config["args"][-1] == "mcp-clickhouse"
        assert config["env"]["CLICKHOUSE_USER"] == "genesis_readonly"
        assert config["env"]["CLICKHOUSE_PORT"] == "8443"
        assert config["env"]["CLICKHOUSE_SECURE"] == "true"
        assert "never-print-me" not in result.stdout

    def test_local_mode(self, tmp_path: Path) -> None:
        result = cli("mcp-config", "--local", "--log-dir", str(tmp_path), env={})
        env = json.loads(result.stdout)["mcpServers"]["clickhouse"]["env"]
        assert env == {
            "CHDB_ENABLED": "true",
            "CHDB_DATA_PATH": str(tmp_path.resolve() / ".chdb"),
            "CLICKHOUSE_ENABLED": "false",
            "UV_SYSTEM_CERTS": "true",
            "UV_NATIVE_TLS": "true",
        }


def test_tail_follow_shows_new_records(tmp_path: Path) -> None:
    env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
    cli("run", "--spec", "spec_001", "--iteration", "1", "--", *PASSING, env=env)
    follower = subprocess.Popen(
        cli_command("tail", "--follow", "--interval", "0.2", "--format", "json"),
        stdout=subprocess.PIPE,
        text=True,
        env=clean_env(env),
        cwd=OUTSIDE_CHECKOUT,
    )
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        assert first["iteration"] == 1
        cli("run", "--spec", "spec_001", "--iteration", "2", "--", *FAILING, env=env)
        second = json.loads(follower.stdout.readline())  # arrives while following
        assert (second["iteration"], second["exit_code"]) == (2, 1)
    finally:
        follower.kill()
        follower.wait(10)


def test_every_option_has_help_text() -> None:
    """CLI manners: nothing a person can type is left unexplained."""
    import argparse

    from genesis_logging.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")
            elif action.help is None:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), "genesis-logging")
    assert missing == []
