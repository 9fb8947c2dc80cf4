"""The TDD loop end to end in subprocesses: run, then failures / show / tail / query / load."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env, cli_command
from tests.support.fakes import run_cli as cli
from tests.support.server import LocalServer, Target

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
        assert "return a - b" not in shown.stdout  # the code only on request (issue 19)
        assert "code: one text, " in shown.stdout
        with_code = cli("show", "spec_001", "--iteration", "1", "--code", env=store_env)
        assert "return a - b" in with_code.stdout  # the code snapshot

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


# -- issue 19: bounded by default, complete on request; mistakes answered in words ---------

#: run's own output beyond the command's, whatever the snapshot (issue 19's bound).
RUN_OWN_OUTPUT_BOUND = 4096


def big_snapshot(folder: Path, total: int, files: int = 5) -> Path:
    """``files`` Python files of ``total`` characters together, under ``folder/pkg``."""
    package = folder / "pkg"
    package.mkdir(parents=True)
    for number in range(files):
        line = f"VALUE_{number} = {'x' * 60!r}\n"
        (package / f"module_{number}.py").write_text(line * (total // files // len(line)))
    return package


def local_env(tmp_path: Path) -> dict[str, str]:
    return {"GENESIS_LOG_DIR": str(tmp_path / "logs")}


class TestRunPrintsLittle:
    """``run``: the command's output, then one line about what was logged."""

    def test_half_a_megabyte_snapshot_adds_one_line(self, tmp_path: Path) -> None:
        package = big_snapshot(tmp_path, 500_000)
        env = local_env(tmp_path)
        result = cli(
            "run", "--spec", "spec_big", "--iteration", "auto", "--snapshot", str(package),
            "--", sys.executable, "-c", "import sys; print('hello'); sys.exit(3)",
            env=env,
        )  # fmt: skip
        assert result.returncode == 3  # the command's own status
        assert result.stdout == "hello\n"  # the command's output, nothing else
        own = result.stderr.encode()
        assert len(own) <= RUN_OWN_OUTPUT_BOUND, len(own)
        assert result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith("genesis-logging: spec_big iteration 1 · exit 3 · ")
        assert result.stderr.rstrip().endswith(f"logged to {tmp_path / 'logs'}")
        shown = cli("show", "spec_big", "--code", "--max-chars", "0", env=env)
        assert "VALUE_4 = " in shown.stdout  # the snapshot was logged all the same

    def test_print_record_prints_the_record(self, tmp_path: Path) -> None:
        package = big_snapshot(tmp_path, 500_000)
        result = cli(
            "run", "--spec", "s", "--iteration", "1", "--snapshot", str(package), "--print-record",
            "--", *PASSING,
            env=local_env(tmp_path),
        )  # fmt: skip
        assert result.returncode == 0
        record = json.loads(result.stderr.splitlines()[0])
        assert record["spec_id"] == "s"
        assert len(record["code_snapshot"]) > 500_000 * 0.95
        assert result.stderr.splitlines()[1].startswith("genesis-logging: s iteration 1 · exit 0")

    def test_no_store_is_refused_before_running(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        touch = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"]
        result = cli("run", "--spec", "s", "--iteration", "auto", "--", *touch, env={})
        assert result.returncode == 2
        assert not marker.exists()  # said before running
        for way in ("GENESIS_LOG_DIR", "--log-dir", "CLICKHOUSE_URL", "--url", "--no-log"):
            assert way in result.stderr, way
        assert result.stdout == ""

    def test_no_log_runs_without_a_store(self, tmp_path: Path) -> None:
        marker = tmp_path / "ran"
        touch = [sys.executable, "-c", f"open({str(marker)!r}, 'w').close(); exit(5)"]
        result = cli("run", "--spec", "s", "--iteration", "auto", "--no-log", "--", *touch, env={})
        assert result.returncode == 5
        assert marker.exists()
        assert result.stderr == "genesis-logging: s iteration 1 · exit 5 · " + (
            result.stderr.split(" · ")[2] + " · not logged (--no-log)\n"
        )

    def test_a_timeout_and_a_command_not_found_are_said(self, tmp_path: Path) -> None:
        slow = [sys.executable, "-c", "import time; time.sleep(30)"]
        late = cli(
            "run", "--spec", "s", "--iteration", "1", "--timeout", "0.5", "--no-log", "--", *slow
        )
        assert late.returncode == 124
        assert "s iteration 1 · exit 124 (timed out) · " in late.stderr
        missing = cli(
            "run", "--spec", "s", "--iteration", "1", "--no-log", "--", "no-such-cmd-xyz"
        )
        assert missing.returncode == 127
        assert "exit 127 (not started: FileNotFoundError: " in missing.stderr
        assert "no-such-cmd-xyz" in missing.stderr

    def test_no_log_with_a_store_records_nothing(self, tmp_path: Path) -> None:
        env = local_env(tmp_path)
        cli("run", "--spec", "s", "--iteration", "1", "--", *PASSING, env=env)
        result = cli(
            "run", "--spec", "s", "--iteration", "auto", "--no-log", "--", *PASSING, env=env
        )
        assert "s iteration 2 · exit 0" in result.stderr  # auto still counts from the store
        counted = rows(
            cli("query", "SELECT count() AS n FROM genesis.logs", "--format", "json", env=env)
        )
        assert int(counted[0]["n"]) == 1


class TestShowIsBounded:
    """``show``: the output and the code's file list; the code only on request."""

    @staticmethod
    def logged(tmp_path: Path, snapshot_chars: int, output_chars: int = 100) -> dict[str, str]:
        env = local_env(tmp_path)
        package = big_snapshot(tmp_path, snapshot_chars)
        shout = f"import sys; print('A' * {output_chars}); print('the end'); sys.exit(1)"
        cli(
            "run", "--spec", "spec_001", "--iteration", "1", "--snapshot", str(package),
            "--", sys.executable, "-c", shout,
            env=env,
        )  # fmt: skip
        return env

    def test_the_default_does_not_grow_with_the_snapshot(self, tmp_path: Path) -> None:
        small = cli("show", "spec_001", env=self.logged(tmp_path / "small", 10_000))
        big = cli("show", "spec_001", env=self.logged(tmp_path / "big", 500_000))
        assert big.returncode == 0, big.stderr
        assert len(big.stdout.encode()) < 2000
        # only the sizes' digits and the folder's name differ
        assert abs(len(big.stdout) - len(small.stdout)) < 40, (small.stdout, big.stdout)
        assert "VALUE_0" not in big.stdout  # no code
        assert "5 files under " in big.stdout
        assert "module_4.py" in big.stdout  # its file list instead
        assert "--code prints it, --file PATH one file" in big.stdout
        for fmt in ("json", "csv"):
            bounded = cli(
                "show", "spec_001", "--format", fmt, env=self.logged(tmp_path / fmt, 500_000)
            )
            assert bounded.returncode == 0, bounded.stderr
            assert len(bounded.stdout.encode()) < 2000, fmt
            assert "module_4.py" in bounded.stdout
            assert "VALUE_0" not in bounded.stdout

    def test_long_output_is_cut_with_a_marker_saying_how_to_get_it(self, tmp_path: Path) -> None:
        env = self.logged(tmp_path, 10_000, output_chars=100_000)
        shown = cli("show", "spec_001", env=env)
        assert len(shown.stdout.encode()) < 2 * 4000 + 2000
        assert "characters cut here" in shown.stdout
        assert "--max-chars 0 shows all" in shown.stdout
        assert "the end" in shown.stdout  # the end is kept: pytest's summary is there
        everything = cli("show", "spec_001", "--max-chars", "0", env=env)
        assert "A" * 100_000 in everything.stdout
        assert "cut here" not in everything.stdout
        as_json = rows(cli("show", "spec_001", "--format", "json", env=env))[0]
        assert "characters cut here" in as_json["stdout"]
        assert len(as_json["stdout"]) < 4200

    def test_code_and_one_file_on_request(self, tmp_path: Path) -> None:
        env = self.logged(tmp_path, 500_000)
        code = cli("show", "spec_001", "--code", env=env)
        assert "VALUE_0" in code.stdout
        assert "characters cut here" in code.stdout
        assert len(code.stdout.encode()) < 8000
        whole = cli("show", "spec_001", "--code", "--max-chars", "0", env=env)
        assert len(whole.stdout) > 500_000 * 0.95
        one = cli("show", "spec_001", "--file", "pkg/module_2.py", "--max-chars", "0", env=env)
        assert one.returncode == 0, one.stderr
        assert "VALUE_2 = " in one.stdout
        assert "VALUE_1 = " not in one.stdout
        assert "VALUE_3 = " not in one.stdout
        as_json = rows(
            cli("show", "spec_001", "--file", "module_2.py", "--format", "json", env=env)
        )[0]
        [(path, text)] = as_json["files"].items()
        assert path.endswith("pkg/module_2.py")
        assert text.startswith("VALUE_2 = ")
        missing = cli("show", "spec_001", "--file", "module_9.py", env=env)
        assert missing.returncode == 1
        assert "no file 'module_9.py' in this run's snapshot" in missing.stderr

    def test_unknown_spec_and_iteration_in_words(self, tmp_path: Path) -> None:
        env = self.logged(tmp_path, 1000)
        typo = cli("show", "spec_01", env=env)
        assert typo.returncode == 1
        assert "no runs for spec 'spec_01'" in typo.stderr
        assert "did you mean spec_001" in typo.stderr
        later = cli("show", "spec_001", "--iteration", "9", env=env)
        assert later.returncode == 1
        assert "no run recorded for spec 'spec_001' iteration 9" in later.stderr
        assert "latest iterations with a run: 1" in later.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["run", "--spec", "", "--iteration", "1", "--no-log", "--", "true"],
        ["run", "--spec", "  ", "--iteration", "1", "--no-log", "--", "true"],
        ["run", "--spec", "s", "--sprint", "", "--iteration", "1", "--no-log", "--", "true"],
        ["run", "--spec", "s", "--task", "", "--iteration", "1", "--no-log", "--", "true"],
        ["run", "--spec", "s", "--iteration", "-1", "--no-log", "--", "true"],
        ["run", "--spec", "s", "--iteration", "next", "--no-log", "--", "true"],
        ["run", "--spec", "s", "--iteration", "1", "--timeout", "0", "--no-log", "--", "true"],
        ["show", ""],
        ["show", "s", "--iteration", "-2"],
        ["show", "s", "--max-chars", "-1"],
        ["query", ""],
        ["load", "x.jsonl", "--table", ""],
        ["load", "x.jsonl", "--batch-size", "0"],
    ],
)
def test_the_parser_refuses_mistakes(args: list[str], tmp_path: Path) -> None:
    result = cli(*args, env=local_env(tmp_path))
    assert result.returncode == 2, result
    assert "error: argument" in result.stderr
    assert not (tmp_path / "logs").exists()  # nothing ran, nothing was written


class TestRelativeLogDir:
    """A relative GENESIS_LOG_DIR starts at the project's root, from any subfolder."""

    def in_folder(
        self, folder: Path, *args: str, env: dict[str, str]
    ) -> subprocess.CompletedProcess[str]:
        """The CLI (or, after ``python``, another command) started in ``folder``."""
        command = list(args) if args[0] == sys.executable else cli_command(*args)
        return subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=120,
            env=clean_env(env),
            cwd=folder,
        )

    def test_one_store_from_every_subfolder(self, tmp_path: Path) -> None:
        project = tmp_path / "project"
        deep = project / "src" / "pkg"
        deep.mkdir(parents=True)
        (project / "pyproject.toml").write_text("[project]\nname = 'p'\n")
        env = {"GENESIS_LOG_DIR": ".genesis/logs"}
        store = project / ".genesis" / "logs"
        first = self.in_folder(
            project, "run", "--spec", "s", "--iteration", "auto", "--", *PASSING, env=env
        )
        assert first.stderr.rstrip().endswith(f"logged to {store}"), first.stderr
        second = self.in_folder(
            deep, "run", "--spec", "s", "--iteration", "auto", "--", *PASSING, env=env
        )
        assert "s iteration 2 · " in second.stderr  # it found iteration 1: the same store
        assert second.stderr.rstrip().endswith(f"logged to {store}")
        shown = self.in_folder(deep, "show", "s", "--iteration", "1", env=env)
        assert shown.returncode == 0, shown.stderr
        assert not (deep / ".genesis").exists()

    def test_the_pytest_plugin_agrees(self, tmp_path: Path) -> None:
        project = tmp_path / "project"
        tests = project / "tests"
        tests.mkdir(parents=True)
        (project / "setup.cfg").write_text("[metadata]\nname = p\n")
        (tests / "test_one.py").write_text("def test_one():\n    assert True\n")
        env = {"GENESIS_LOG_DIR": "store", "GENESIS_SPEC_ID": "s", "GENESIS_ITERATION": "1"}
        ran = self.in_folder(tests, sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", env=env)  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        assert list((project / "store").glob("genesis-*.jsonl"))
        assert not (tests / "store").exists()

    def test_outside_any_project_it_is_the_cwd(self, tmp_path: Path) -> None:
        result = self.in_folder(
            tmp_path,
            "run", "--spec", "s", "--iteration", "1", "--", *PASSING,
            env={"GENESIS_LOG_DIR": "logs"},
        )  # fmt: skip
        assert result.stderr.rstrip().endswith(f"logged to {tmp_path / 'logs'}")


class TestRunSaysWhereTheRecordWent:
    """The summary line names the store, and says so when a server did not take the run."""

    @pytest.mark.integration
    def test_url_option_is_where_the_run_goes(self, running_local_server: LocalServer) -> None:
        target = Target("local", running_local_server.host, running_local_server.port)
        target.create_logs_table("genesis_runurl", "logs")
        url = target.url("genesis_runurl")
        result = cli(
            "run", "--spec", "s", "--iteration", "auto", "--url", url, "--", *PASSING, env={}
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr.rstrip().endswith(f"logged to {url}"), result.stderr
        counted = target.client().execute(
            "SELECT count() FROM genesis_runurl.logs WHERE spec_id = 's'"
        )
        assert counted == [(1,)]

    def test_an_unreachable_server_is_not_called_logged(self) -> None:
        result = cli(
            "run", "--spec", "s", "--iteration", "1",
            "--url", "clickhouse://reader:pw-never-shown@127.0.0.1:1/genesis",
            "--", *PASSING,
            env={},
        )  # fmt: skip
        assert result.returncode == 0  # the command's status all the same
        last = result.stderr.splitlines()[-1]
        assert last.endswith(
            "NOT logged to clickhouse://reader@127.0.0.1:1/genesis (see the warnings above)"
        )
        assert "logged to" not in last.split("NOT")[0]
        assert "pw-never-shown" not in result.stderr


class TestLoadMistakes:
    """``load``: a missing destination or file is said before anything is read or sent."""

    def test_no_server_is_said(self, tmp_path: Path) -> None:
        lines = tmp_path / "a.jsonl"
        lines.write_text("")
        result = cli("load", str(lines), env={})
        assert result.returncode == 1
        assert "no server to load into: pass --url" in result.stderr
        assert "CLICKHOUSE_URL" in result.stderr

    def test_missing_files_are_named_together(self, tmp_path: Path) -> None:
        present = tmp_path / "a.jsonl"
        present.write_text("")
        result = cli(
            "load", str(present), "nope-1.jsonl", "nope-2.jsonl",
            "--url", "clickhouse://127.0.0.1:1/genesis",
            env={},
        )  # fmt: skip
        assert result.returncode == 1
        assert "no such file: nope-1.jsonl, nope-2.jsonl (nothing was loaded)" in result.stderr
