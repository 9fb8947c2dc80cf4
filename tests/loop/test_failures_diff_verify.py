"""``failures``, ``diff`` and ``verify`` as the assistant reads them (issue 19): the latest
state first, whole snapshotted trees, per-file diffs, bounded answers, unknown specs in words.

Every store here is made by real ``genesis-logging run`` commands (pytest under them where
tests matter) and read by the real CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from genesis_logging.loop import Run, verify
from genesis_logging.runner import file_hashes
from tests.support.fakes import run_cli as cli

CALC = "def add(a, b):\n    return a - b\n"
TESTS = textwrap.dedent(
    """
    from calc import add

    def test_add():
        assert add(2, 3) == 5

    def test_zero():
        assert add(0, 0) == 0
    """
)


def _run(
    env: dict[str, str], spec: str, *command: str, snapshot: list[Path] | None = None
) -> subprocess.CompletedProcess[str]:
    shot = ["--snapshot", *map(str, snapshot)] if snapshot else []
    return cli(
        "run", "--spec", spec, "--iteration", "auto", *shot, "--", *command, env=env
    )  # fmt: skip


def _pytest(env: dict[str, str], project: Path) -> subprocess.CompletedProcess[str]:
    return _run(
        env,
        "calc",
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir",
        str(project), str(project / "test_calc.py"),
        snapshot=[project],
    )  # fmt: skip


def _json_lines(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert done.returncode == 0, done.stdout + done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {"GENESIS_LOG_DIR": str(tmp_path / "logs")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "calc.py").write_text(CALC)
    (folder / "test_calc.py").write_text(TESTS)
    (folder / "conftest.py").write_text(
        f"import sys; sys.path.insert(0, {str(folder)!r})\n"
    )  # calc importable whatever the working directory
    return folder


class TestFailuresLatestFirst:
    """Red, red, green: ``failures`` opens with the green, the reds are labelled history."""

    def test_green_first_then_history(self, env: dict[str, str], project: Path) -> None:
        assert _pytest(env, project).returncode == 1
        (project / "calc.py").write_text("def add(a, b):\n    return a * b\n")
        assert _pytest(env, project).returncode == 1
        (project / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        assert _pytest(env, project).returncode == 0

        done = cli("failures", "calc", env=env)
        assert done.returncode == 0, done.stderr
        first, *rest = done.stdout.splitlines()
        assert first.startswith("spec calc: iteration 3 is green (exit code 0; 2 passed) · ")
        text = "\n".join(rest)
        assert "history: earlier failing iterations, newest first" in text
        history = text.split("history: earlier failing iterations, newest first")[1]
        assert history.index("iteration 2 ·") < history.index("iteration 1 ·")
        assert "test_calc.py::test_add — assert 6 == 5" in history
        assert "test_calc.py::test_zero — assert -0" not in first  # nothing failing is listed

        records = _json_lines(cli("failures", "calc", "--format", "json", env=env))
        latest, *earlier = records
        assert (latest["latest"], latest["state"], latest["iteration"]) == (True, "green", 3)
        assert (latest["exit_code"], latest["level"], latest["tests"]) == (0, "info", [])
        assert latest["summary"] == "2 passed"
        assert [(r["latest"], r["state"], r["iteration"]) for r in earlier] == [
            (False, "red", 2),
            (False, "red", 1),
        ]

        by_cause = cli("failures", "calc", "--by-cause", env=env)
        assert by_cause.stdout.startswith("spec calc: iteration 3 is green (exit code 0;")
        causes = _json_lines(cli("failures", "calc", "--by-cause", "--format", "json", env=env))
        assert causes[0]["latest"] is True
        assert causes[0]["state"] == "green"
        assert all("fingerprint" in cause for cause in causes[1:])
        assert len(causes) >= 2

    def test_a_red_latest_is_the_first_thing_said(
        self, env: dict[str, str], project: Path
    ) -> None:
        (project / "calc.py").write_text("def add(a, b):\n    return a + b\n")
        assert _pytest(env, project).returncode == 0
        (project / "calc.py").write_text(CALC)
        assert _pytest(env, project).returncode == 1
        done = cli("failures", "calc", env=env)
        lines = done.stdout.splitlines()
        assert lines[0].startswith("spec calc: iteration 2 is red (exit code 1; ")
        assert "1 failed" in lines[0]
        assert "1 passed" in lines[0]
        assert lines[1] == "  FAILED test_calc.py::test_add — assert -1 == 5"
        assert "history: no earlier failing iteration" in done.stdout

    def test_records_of_other_kinds_are_shown_not_counted(self, env: dict[str, str]) -> None:
        """A finer record (a subtest, say) under the plugin's logger: listed, labelled with
        its kind, and the counts stay those of the tests."""
        program = textwrap.dedent(
            """
            import logging, sys
            from genesis_logging import LocalStoreHandler
            log = logging.getLogger("genesis.pytest")
            log.addHandler(LocalStoreHandler())
            log.setLevel(logging.INFO)
            def record(kind, test, outcome, text=""):
                log.info("x", extra={"kind": kind, "test": test, "outcome": outcome,
                                     "stderr": text, "duration_ms": 1})
            record("test", "t.py::test_a", "passed")
            record("subtest", "t.py::test_a [i=3]", "failed", "E   assert 3 == 4")
            record("test_summary", "", "")
            sys.exit(1)
            """
        )
        assert _run(env, "kinds", sys.executable, "-c", program).returncode == 1
        done = cli("failures", "kinds", env=env)
        assert done.returncode == 0, done.stderr
        first, second = done.stdout.splitlines()[:2]
        assert first.startswith("spec kinds: iteration 1 is red (exit code 1; ")
        assert second == "  SUBFAILED[subtest] t.py::test_a [i=3] — assert 3 == 4"
        assert cli("diff", "kinds", "1", "1", env=env).returncode == 0
        assert cli("failures", "kinds", "--by-cause", env=env).returncode == 0


def _tree(root: Path) -> Path:
    package = root / "pkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "core.py").write_text("VALUE = 1\n")
    (package / "util.py").write_text("def helper():\n    return 2\n")
    return package


class TestVerifyWholeTrees:
    """A green iteration holds only while its snapshotted trees are as they were."""

    def test_added_deleted_renamed_files_are_changes(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        package = _tree(tmp_path)
        assert _run(env, "tree", "true", snapshot=[package]).returncode == 0
        assert cli("verify", "tree", env=env).stdout == "green: iteration 1\n"

        (package / "new_module.py").write_text("EXTRA = 3\n")
        added = cli("verify", "tree", env=env)
        assert added.returncode == 1
        assert added.stdout == (
            "code changed since green iteration 1: "
            f"added {(package / 'new_module.py').resolve()}\n"
        )
        (package / "new_module.py").unlink()
        assert cli("verify", "tree", env=env).returncode == 0  # as it was: green again

        (package / "util.py").unlink()
        deleted = cli("verify", "tree", env=env)
        assert (deleted.returncode, deleted.stdout) == (
            1,
            f"code changed since green iteration 1: deleted {(package / 'util.py').resolve()}\n",
        )
        (package / "util.py").write_text("def helper():\n    return 2\n")

        (package / "core.py").rename(package / "main.py")
        renamed = cli("verify", "tree", env=env)
        assert renamed.returncode == 1
        assert (
            f"renamed {(package / 'core.py').resolve()} → {(package / 'main.py').resolve()}"
            in renamed.stdout
        )
        (package / "main.py").rename(package / "core.py")

        (package / "__pycache__").mkdir()
        (package / "__pycache__" / "core.cpython-311.pyc").write_bytes(b"\0")
        (package / ".hidden").write_text("not part of a snapshot")
        kept = cli("verify", "tree", env=env)
        assert (kept.returncode, kept.stdout) == (0, "green: iteration 1\n")

    def test_a_record_without_roots_still_compares_its_files(self, tmp_path: Path) -> None:
        """Records made before the roots were kept: the recorded files, as before."""
        package = _tree(tmp_path)
        files = file_hashes([package])
        old = Run(1, 0, 10, "", "", "", "abc", files)
        assert verify([old]).ok
        assert "files added since are not seen" in verify([old]).notes[0]
        (package / "core.py").write_text("VALUE = 2\n")
        verdict = verify([old])
        assert not verdict.ok
        assert verdict.reason.endswith(f"changed {(package / 'core.py').resolve()}")

    def test_the_roots_are_recorded_absolute(self, env: dict[str, str], tmp_path: Path) -> None:
        package = _tree(tmp_path)
        assert _run(env, "tree", "true", snapshot=[package]).returncode == 0
        rows = _json_lines(
            cli(
                "query",
                "SELECT attributes['snapshot_roots'] AS roots FROM genesis.logs "
                "WHERE spec_id = 'tree'",
                "--format",
                "json",
                env=env,
            )
        )
        assert [json.loads(row["roots"]) for row in rows] == [[str(package.resolve())]]


class TestDiffPerFile:
    """``diff`` names each file it shows, added and removed ones included."""

    def test_headers_name_the_files(self, env: dict[str, str], tmp_path: Path) -> None:
        package = _tree(tmp_path)
        assert _run(env, "files", "true", snapshot=[package]).returncode == 0
        (package / "core.py").write_text("VALUE = 10\n")
        (package / "util.py").unlink()
        (package / "extra.py").write_text("EXTRA = 1\n")
        assert _run(env, "files", "false", snapshot=[package]).returncode == 1

        done = cli("diff", "files", env=env)
        assert done.returncode == 0, done.stderr
        head, code = done.stdout.split("\n\n", 1)
        assert "exit code 0 → 1" in head  # the test outcome part, as before
        core, extra, util = (str(package / name) for name in ("core.py", "extra.py", "util.py"))
        assert code.splitlines()[0] == (
            f"code: 3 files differ: changed {core}; added {extra}; removed {util}"
        )
        assert f"--- iteration 1: {core}\n+++ iteration 2: {core}\n" in code
        assert "-VALUE = 1\n+VALUE = 10\n" in code
        assert f"--- iteration 1: {extra} (absent)\n+++ iteration 2: {extra}\n" in code
        assert f"--- iteration 1: {util}\n+++ iteration 2: {util} (absent)\n" in code
        hunks = [line for line in code.splitlines() if line.startswith("@@")]
        assert all(h.startswith(("@@ -1 ", "@@ -0,0 ", "@@ -1,2 ")) for h in hunks), hunks

        only = cli("diff", "files", "--file", "pkg/core.py", env=env)
        assert only.returncode == 0, only.stderr
        assert f"+++ iteration 2: {core}" in only.stdout
        assert "util.py (absent)" not in only.stdout
        missing = cli("diff", "files", "--file", "nowhere.py", env=env)
        assert missing.returncode == 1
        assert "no file 'nowhere.py' in the snapshots of iterations 1 and 2" in missing.stderr

    def test_a_single_file_snapshot_is_named(self, env: dict[str, str], tmp_path: Path) -> None:
        source = tmp_path / "calc.py"
        source.write_text(CALC)
        _run(env, "one", "true", snapshot=[source])
        source.write_text(CALC.replace("-", "+"))
        _run(env, "one", "true", snapshot=[source])
        done = cli("diff", "one", env=env)
        assert f"--- iteration 1: {source.resolve()}\n+++ iteration 2: {source.resolve()}\n" in (
            done.stdout
        )


class TestBoundedWithABigSnapshot:
    """A 500 KB snapshot: no default answer grows with it; all of it on request."""

    def test_default_output_is_capped_with_a_marker(
        self, env: dict[str, str], tmp_path: Path
    ) -> None:
        package = tmp_path / "big"
        package.mkdir()
        body = "".join(f"line_{n} = {n}\n" for n in range(700))  # ~10 KB a file
        for n in range(50):
            (package / f"module_{n:02}.py").write_text(body)
        assert sum(f.stat().st_size for f in package.iterdir()) >= 500_000
        assert _run(env, "big", "false", snapshot=[package]).returncode == 1
        for n in range(50):
            (package / f"module_{n:02}.py").write_text(body.replace(" = ", " == "))
        assert _run(env, "big", "true", snapshot=[package]).returncode == 0

        diff = cli("diff", "big", env=env)
        assert diff.returncode == 0, diff.stderr
        assert len(diff.stdout) < 10_000 + 3_000
        assert "… [diff cut at 10000 characters; not shown in full: " in diff.stdout
        assert "See more with --max-chars N (0: everything) or one file with --file PATH]" in (
            diff.stdout
        )
        assert "; and 30 more\n" in diff.stdout  # 50 files differ; 20 named
        everything = cli("diff", "big", "--max-chars", "0", env=env)
        assert len(everything.stdout) > 1_000_000
        assert "diff cut" not in everything.stdout
        assert everything.stdout.count("\n+++ iteration 2: ") == 50

        failures = cli("failures", "big", env=env)
        assert failures.returncode == 0
        assert len(failures.stdout) < 2_500
        assert failures.stdout.startswith("spec big: iteration 2 is green")
        for command in (["verify", "big"], ["failures", "big", "--format", "json"]):
            assert len(cli(*command, env=env).stdout) < 2_500, command


class TestUnknownSpec:
    """A typo is an error in words with the nearest names, never an empty success."""

    def test_exits_1_with_a_suggestion(self, env: dict[str, str]) -> None:
        assert _run(env, "mi_window", "true").returncode == 0
        for command in ("failures", "diff", "verify"):
            done = cli(command, "mi_windowd", env=env)
            assert (done.returncode, done.stdout) == (1, ""), command
            assert "no runs for spec 'mi_windowd'" in done.stderr
            assert "did you mean mi_window?" in done.stderr

    @pytest.mark.parametrize("command", ["failures", "diff", "verify"])
    def test_an_empty_spec_is_refused_by_the_parser(
        self, env: dict[str, str], command: str
    ) -> None:
        done = cli(command, "", env=env)
        assert done.returncode == 2
        assert "the spec id must not be empty" in done.stderr


class TestBoundedWithManyFailures:
    """200 failing tests: ``failures`` lists what fits and counts the rest."""

    def test_the_rest_is_counted(self, env: dict[str, str], tmp_path: Path) -> None:
        suite = tmp_path / "test_many.py"
        suite.write_text(
            "import pytest\n\n@pytest.mark.parametrize('n', range(200))\n"
            "def test_n(n):\n    assert n < 0\n"
        )
        done = _run(
            env, "many", sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(suite)
        )
        assert done.returncode == 1
        failures = cli("failures", "many", env=env)
        assert failures.stdout.startswith(
            "spec many: iteration 1 is red (exit code 1; 200 failed)"
        )
        assert len(failures.stdout) < 2_500
        shown = failures.stdout.count("  FAILED ")
        assert 5 < shown < 200
        assert (
            f"  … {200 - shown} more failing tests not shown (--max-chars 8000" in failures.stdout
        )
        records = _json_lines(cli("failures", "many", "--format", "json", env=env))
        assert records[0]["tests_not_shown"] == 200 - len(records[0]["tests"])
