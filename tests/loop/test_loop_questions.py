"""The loop as the assistant sees it: per-test records, failures, diff, verify, flaky tests
(issue 14), on the local store and on the real server."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.support.fakes import run_cli as cli
from tests.support.server import LocalServer, Target

PROJECT = textwrap.dedent(
    """
    import pytest

    def add(a, b):
        return a - b

    def test_passes():
        assert 1 + 1 == 2

    def test_add():
        assert add(2, 3) == 5

    @pytest.fixture
    def broken():
        raise RuntimeError("fixture exploded")

    def test_errors(broken):
        pass

    @pytest.mark.skip(reason="not today")
    def test_skipped():
        pass
    """
)


def run_pytest(
    project: Path, env: dict[str, str], *pytest_args: str
) -> subprocess.CompletedProcess[str]:
    return cli(
        "run", "--spec", "calc", "--iteration", "auto", "--snapshot", str(project / "test_calc.py"),
        "--", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args,
        str(project / "test_calc.py"),
        env=env,
    )  # fmt: skip


def records(env: dict[str, str], where: str) -> list[dict[str, Any]]:
    attribute = (
        "attributes[{k}]"
        if "GENESIS_LOG_DIR" in env
        else "visitParamExtractString(attributes, {k})"
    )
    outcome, kind = attribute.format(k="'outcome'"), attribute.format(k="'kind'")
    done = cli(
        "query",
        f"SELECT logger, iteration, exit_code, {outcome} AS outcome, {kind} AS kind, message "
        f"FROM {_logs(env)} WHERE spec_id = 'calc' AND {where} ORDER BY message",
        "--format",
        "json",
        env=env,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def _logs(env: dict[str, str]) -> str:
    if "GENESIS_LOG_DIR" in env:
        return "genesis.logs"
    return env["CLICKHOUSE_URL"].rsplit("/", 1)[1] + ".logs"


@pytest.mark.integration
class TestRedToGreen:
    """Done when: 4 test records and 1 summary beside the run; failures, diff, verify."""

    def test_the_loop(self, store_env: dict[str, str], tmp_path: Path) -> None:
        project = tmp_path / "project"
        project.mkdir()
        source = project / "test_calc.py"
        source.write_text(PROJECT)
        red = run_pytest(project, store_env)
        assert red.returncode == 1, red.stdout + red.stderr

        tests = records(store_env, "logger = 'genesis.pytest' AND iteration = 1")
        assert sorted((r["outcome"], r["kind"]) for r in tests) == [
            ("", "test_summary"),
            ("error", "test"),
            ("failed", "test"),
            ("passed", "test"),
            ("skipped", "test"),
        ]
        runs = records(store_env, "logger = 'genesis.run'")
        assert [(r["iteration"], r["exit_code"]) for r in runs] == [(1, 1)]

        failures = cli("failures", "calc", env=store_env)
        assert failures.returncode == 0, failures.stderr
        assert "test_calc.py::test_add — assert -1 == 5" in failures.stdout
        assert "  FAILED " in failures.stdout
        assert "ERROR  " in failures.stdout
        assert "RuntimeError: fixture exploded" in failures.stdout
        assert len(failures.stdout) <= 2000 + 200

        source.write_text(
            PROJECT.replace("a - b", "a + b").replace(
                'raise RuntimeError("fixture exploded")', "return 1"
            )
        )
        green = run_pytest(project, store_env)
        assert green.returncode == 0, green.stdout + green.stderr

        latest = cli("failures", "calc", env=store_env)
        assert latest.stdout.startswith("spec calc: iteration 2 is green (exit code 0; ")
        assert "history: earlier failing iterations, newest first\n" in latest.stdout

        diff = cli("diff", "calc", env=store_env)
        assert diff.returncode == 0, diff.stderr
        fixed = diff.stdout.split("  fixed: 2\n")[1].split("  still failing")[0]
        assert "test_add" in fixed
        assert "test_errors" in fixed
        assert "-    return a - b\n+    return a + b" in diff.stdout
        assert f"--- iteration 1: {source.resolve()}\n+++ iteration 2: {source.resolve()}\n" in (
            diff.stdout
        )

        verified = cli("verify", "calc", env=store_env)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert verified.stdout.startswith("green: iteration 2")
        assert (
            "test files changed between red iteration 1 and green iteration 2" in verified.stdout
        )

        source.write_text(source.read_text() + "\n# edited after green\n")
        changed = cli("verify", "calc", env=store_env)
        assert changed.returncode == 1
        assert changed.stdout.startswith("code changed since green iteration 2")

    def test_the_assistants_queries_in_the_docs_run(self, tmp_path: Path) -> None:
        """Every SQL block of docs/mcp.md runs on the local store (the views included)."""
        import re

        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        project = tmp_path / "project"
        project.mkdir()
        (project / "test_calc.py").write_text(PROJECT)
        run_pytest(project, env)
        docs = (Path(__file__).resolve().parents[2] / "docs" / "mcp.md").read_text()
        blocks = re.findall(r"```sql\n(.*?)```", docs, re.DOTALL)
        assert len(blocks) >= 5
        for sql in blocks:
            done = cli("query", sql.replace("spec_001", "calc"), "--format", "json", env=env)
            assert done.returncode == 0, (sql, done.stderr)
        failures = cli(
            "query", "SELECT count() AS n FROM genesis.failures WHERE spec_id = 'calc'",
            "--format", "json", env=env,
        )  # fmt: skip
        assert json.loads(failures.stdout)["n"] == 4  # the run, two tests, the session summary

    def test_verify_without_a_run_says_so(self, store_env: dict[str, str]) -> None:
        """An unknown spec is an error in words (issue 19), no longer "no run recorded"."""
        if "GENESIS_LOG_DIR" in store_env:
            Path(store_env["GENESIS_LOG_DIR"]).mkdir()
        done = cli("verify", "nothing-here", env=store_env)
        assert (done.returncode, done.stdout) == (1, "")
        assert "no runs for spec 'nothing-here'" in done.stderr


@pytest.mark.integration
class TestXdist:
    """Under pytest-xdist every test arrives once (the controller writes)."""

    def test_each_test_once(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        project = tmp_path / "project"
        project.mkdir()
        (project / "test_calc.py").write_text(PROJECT)
        done = run_pytest(project, env, "-n", "2")
        assert done.returncode == 1, done.stdout + done.stderr
        tests = records(env, "logger = 'genesis.pytest'")
        assert sorted(r["outcome"] for r in tests if r["kind"] == "test") == [
            "error",
            "failed",
            "passed",
            "skipped",
        ]
        assert [r["kind"] for r in tests].count("test_summary") == 1


class TestFlakyAndCauses:
    """Same code, different outcomes: flaky; failures grouped by their cause."""

    def test_a_flaky_test_is_marked(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        project = tmp_path / "project"
        project.mkdir()
        flag = tmp_path / "flag"
        (project / "test_calc.py").write_text(
            textwrap.dedent(f"""
            import pathlib

            def test_sometimes():
                flag = pathlib.Path({str(flag)!r})
                first = not flag.exists()
                flag.touch()
                assert not first, "failed on the first try at 0x7f3a12 line 42"
            """)
        )
        assert run_pytest(project, env).returncode == 1
        assert run_pytest(project, env).returncode == 0  # the same code, now green
        flag.unlink()
        assert run_pytest(project, env).returncode == 1
        failures = cli("failures", "calc", env=env)
        assert "test_sometimes (flaky)" in failures.stdout
        flaky = cli(
            "query", "SELECT test, outcomes FROM genesis.flaky_tests WHERE spec_id = 'calc'",
            "--format", "json", env=env,
        )  # fmt: skip
        (row,) = [json.loads(line) for line in flaky.stdout.splitlines()]
        assert row["test"].endswith("test_calc.py::test_sometimes")
        assert sorted(row["outcomes"]) == ["failed", "passed"]
        assert "flaky: this code also passed" in failures.stdout
        causes = cli("failures", "calc", "--by-cause", "--format", "json", env=env)
        latest, cause = [json.loads(line) for line in causes.stdout.splitlines()]
        assert (latest["latest"], latest["state"], latest["iteration"]) == (True, "red", 3)
        assert (cause["count"], cause["first_iteration"], cause["last_iteration"]) == (2, 1, 3)

    def test_a_non_pytest_failure_shows_the_tail_of_stdout_when_stderr_is_empty(
        self, tmp_path: Path
    ) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        script = "import sys; print('line\\n' * 5000 + 'the real problem'); sys.exit(2)"
        cli(
            "run",
            "--spec",
            "plain",
            "--iteration",
            "1",
            "--",
            sys.executable,
            "-c",
            script,
            env=env,
        )
        failures = cli("failures", "plain", env=env)
        assert "stdout:" in failures.stdout
        assert "the real problem" in failures.stdout
        assert len(failures.stdout) < 2300  # bounded: 2 000 characters per run


class TestChildContext:
    """A program run by ``run`` logs under the run's spec and iteration, unchanged."""

    def test_the_childs_own_records_carry_the_context(self, tmp_path: Path) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        program = (
            "import logging; from genesis_logging import LocalStoreHandler; "
            "log = logging.getLogger('worker'); log.addHandler(LocalStoreHandler()); "
            "log.setLevel(logging.INFO); log.info('Task recebida')"
        )
        done = cli(
            "run", "--spec", "ctx", "--iteration", "4", "--sprint", "S030", "--task", "T01",
            "--", sys.executable, "-c", program, env=env,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        rows = cli(
            "query",
            "SELECT spec_id, iteration, sprint_id, task_id FROM genesis.logs "
            "WHERE message = 'Task recebida'",
            "--format",
            "json",
            env=env,
        )
        assert [json.loads(line) for line in rows.stdout.splitlines()] == [
            {"spec_id": "ctx", "iteration": 4, "sprint_id": "S030", "task_id": "T01"}
        ]


class TestReadOnlyQuery:
    """``query`` reads; it never writes, on the local store or the server."""

    @pytest.mark.parametrize(
        "sql",
        [
            "CREATE TABLE genesis.x (a Int8) ENGINE = Memory",
            "INSERT INTO FUNCTION file('/tmp/genesis-x.csv', 'CSV', 'a Int8') VALUES (1)",
            "SELECT 1 INTO OUTFILE '/tmp/genesis-x.txt'",
            "DROP VIEW genesis.logs",
            # issue 20.1: the check classified the first statement only, and ran the rest
            "SELECT 1; INSERT INTO FUNCTION file('{victim}', 'JSONEachRow', 'a Int8') VALUES (1)",
            "SELECT 1;DROP VIEW genesis.logs",
            "SELECT 1 INTO/**/OUTFILE '{victim}'",
            "SELECT 1 INTO -- a comment\n OUTFILE '{victim}'",
            "SELECT * FROM executable('touch {victim}', 'TSV', 'a String')",
            "SELECT * FROM file('/etc/passwd', 'LineAsString')",
            "SELECT file('/etc/passwd')",
            "KILL QUERY WHERE 1",
            "SET max_threads = 1",
        ],
    )
    def test_local_store(self, tmp_path: Path, sql: str) -> None:
        env = {"GENESIS_LOG_DIR": str(tmp_path / "logs")}
        (tmp_path / "logs").mkdir()
        victim = tmp_path / "logs" / "genesis-victim.jsonl"
        victim.write_text('{"timestamp": "2026-01-01 00:00:00", "message": "kept"}\n')
        done = cli("query", sql.format(victim=victim), env=env)
        assert done.returncode == 1
        assert "read-only" in done.stderr
        assert victim.read_text() == '{"timestamp": "2026-01-01 00:00:00", "message": "kept"}\n'

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT 'a;b' AS x",
            "SELECT 1 -- a trailing comment; with a semicolon",
            "SELECT count() FROM genesis.logs;",
            "WITH 1 AS one SELECT one",
            "SELECT 'INTO OUTFILE' AS words",
            "DESCRIBE TABLE genesis.logs",
            "SHOW TABLES FROM genesis",
        ],
    )
    def test_what_reads_is_answered(self, tmp_path: Path, sql: str) -> None:
        (tmp_path / "logs").mkdir()
        done = cli("query", sql, env={"GENESIS_LOG_DIR": str(tmp_path / "logs")})
        assert done.returncode == 0, done.stderr

    @pytest.mark.integration
    def test_server(self, running_local_server: LocalServer) -> None:
        target = Target("local", running_local_server.host, running_local_server.port)
        target.create_logs_table("readonly_test", "logs")
        env = {"CLICKHOUSE_URL": target.url("readonly_test")}
        done = cli("query", "CREATE TABLE readonly_test.x (a Int8) ENGINE = Memory", env=env)
        assert done.returncode == 1
        assert "readonly" in done.stderr.lower() or "read-only" in done.stderr.lower()
        for sql in ("KILL QUERY WHERE 1", "SELECT 1; DROP TABLE readonly_test.logs"):
            done = cli("query", sql, env=env)  # KILL passed the server's read-only mode
            assert done.returncode == 1
            assert "read-only" in done.stderr
        assert cli("query", "SELECT count() FROM readonly_test.logs", env=env).returncode == 0


class TestSnapshotStaysInItsTree:
    """Issue 20: ``--snapshot`` followed symlinks out of the named tree: a link to a file
    outside (a key, a config with a password) was stored in the record."""

    def test_links_out_of_the_tree_are_left_out(self, tmp_path: Path) -> None:
        from genesis_logging.runner import file_hashes, read_snapshot

        secret = tmp_path / "outside" / "id_rsa"
        secret.parent.mkdir()
        secret.write_text("PRIVATE KEY\n")
        tree = tmp_path / "pkg"
        (tree / "sub").mkdir(parents=True)
        (tree / "mod.py").write_text("x = 1\n")
        (tree / "sub" / "inner.py").write_text("y = 2\n")
        (tree / "key").symlink_to(secret)
        (tree / "outside_dir").symlink_to(secret.parent, target_is_directory=True)
        (tree / "alias.py").symlink_to(tree / "mod.py")  # inside the tree: kept

        text = read_snapshot([tree], 100_000)
        assert "PRIVATE KEY" not in text
        assert "alias.py" in text  # a link inside the tree is code like any file
        assert {Path(p).name for p in file_hashes([tree])} == {"mod.py", "inner.py"}
