"""Every outcome pytest reports is a record, and the store counts what pytest's line counts
(issue 19, point 1).

Each case is a real ``python -m pytest --genesis-log`` run on a small suite written to
``tmp_path``; the session summary the store holds is compared with the summary line pytest
printed for the same run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from genesis_logging.loop import failure_line, load_tests
from genesis_logging.store import LocalStore

SUBTESTS = """
import unittest

def test_fixture_fails(subtests):
    for i in range(3):
        with subtests.test("check", i=i):
            assert i != 1, f"i was {i}"

def test_fixture_passes(subtests):
    with subtests.test(msg="fine"):
        pass
    with subtests.test(n=2):
        pass

class TestUnit(unittest.TestCase):
    def test_subtest_fails(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertNotEqual(i, 2)

    def test_subtest_passes(self):
        for i in range(2):
            with self.subTest("ok", i=i):
                pass

def test_plain():
    pass
"""

OUTCOMES = """
import warnings
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup exploded")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown exploded")

def test_setup_error(broken_setup):
    pass

def test_teardown_error(broken_teardown):
    pass

def test_fails_and_teardown_error(broken_teardown):
    assert 1 == 2

@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert 0

@pytest.mark.xfail(reason="fixed already")
def test_xpass():
    pass

@pytest.mark.xfail(strict=True, reason="must fail")
def test_xpass_strict():
    pass

@pytest.mark.skip(reason="not today")
def test_skip():
    pass

def test_skip_inside():
    pytest.skip("decided at run time")

def test_warns():
    warnings.warn("mind this")

def test_deselected_by_k():
    pass
"""

SKIPPED_MODULE = """
import pytest
pytest.skip("whole module off", allow_module_level=True)

def test_never():
    pass
"""

STOPS = """
def test_first():
    pass

def test_second():
    assert "a" == "b"

def test_third():
    assert 0

def test_fourth():
    pass
"""

EXITS = """
import pytest

def test_before():
    pass

def test_exits():
    pytest.exit("enough for today", returncode=3)

def test_after():
    pass
"""

INTERRUPTED = """
def test_before():
    pass

def test_interrupted():
    raise KeyboardInterrupt

def test_after():
    pass
"""

BROKEN_IMPORT = """
import module_that_does_not_exist

def test_unreachable():
    pass
"""

#: pytest 9 counts subtests itself; before, the pytest-subtests plugin did, a little apart
#: (it counts a fixture test with a failing subtest as passed, and always prints passing
#: subtests). The counts must match either way; the exact lines below are pytest 9's.
PYTEST_9 = int(pytest.__version__.split(".")[0]) >= 9


def needs_subtests() -> None:
    if not PYTEST_9:
        pytest.importorskip("pytest_subtests", reason="subtests need pytest 9 or pytest-subtests")


_SUMMARY = re.compile(
    r"^(?:=+ )?(?P<counts>.+?) in \d+\.\d+s(?: \([0-9:]+\))?(?: =+)?$", re.MULTILINE
)
_NOUNS = {"error": "error", "errors": "error", "warning": "warnings", "warnings": "warnings"}


def pytest_line(stdout: str) -> str:
    """The counts of pytest's last summary line: "3 failed, 4 passed, 7 subtests passed"."""
    found = _SUMMARY.findall(stdout)
    assert found, stdout
    return str(found[-1])


def line_counts(line: str) -> dict[str, int]:
    """pytest's summary line as summary attributes: {"tests_failed": 3, …}."""
    if line == "no tests ran":
        return {}
    counts = {}
    for part in line.split(", "):
        number, noun = part.split(" ", 1)
        category = _NOUNS.get(noun, noun)
        counts["tests_" + category.replace(" ", "_")] = int(number)
    return counts


def stored(log_dir: Path) -> list[dict[str, Any]]:
    """Every record of the local store, its attributes merged in, in the order written."""
    records = []
    for path in sorted(log_dir.glob("*.jsonl*")):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            records.append({**record.pop("attributes", {}), **record})
    return records


def run(
    tmp_path: Path, files: dict[str, str], *args: str
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, Any]]]:
    """pytest on ``files`` with the plugin on; its output and the records it stored."""
    project = tmp_path / "project"
    project.mkdir()
    for name, text in files.items():
        (project / name).write_text(textwrap.dedent(text))
    log_dir = tmp_path / "logs"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PYTEST_", "GENESIS_", "CLICKHOUSE_"))
    }
    env.update(GENESIS_LOG_DIR=str(log_dir), GENESIS_SPEC_ID="plugin", GENESIS_ITERATION="1")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return done, stored(log_dir)


def summary_of(records: list[dict[str, Any]]) -> dict[str, Any]:
    summaries = [r for r in records if r["kind"] == "test_summary"]
    assert len(summaries) == 1, summaries
    return summaries[0]


def assert_counts_match(done: subprocess.CompletedProcess[str], summary: dict[str, Any]) -> None:
    """The store's counts are the numbers of pytest's line; categories it lacks are 0."""
    line = pytest_line(done.stdout)
    assert summary["message"] == f"test session: {line}"
    expected = line_counts(line)
    stored_counts = {
        k: int(v) for k, v in summary.items() if k.startswith("tests_") and k != "tests_collected"
    }
    assert {k: v for k, v in stored_counts.items() if v} == expected, done.stdout
    assert int(summary["exit_code"]) == done.returncode


def by_test(records: list[dict[str, Any]], kind: str = "test") -> dict[str, dict[str, Any]]:
    found = [r for r in records if r["kind"] == kind]
    named = {r["test"]: r for r in found}
    assert len(named) == len(found), "a test recorded twice"
    return named


class TestSubtests:
    """Both kinds of subtests: each failure is a record, the test is failed, counts exact."""

    def test_each_failing_subtest_is_a_record(self, tmp_path: Path) -> None:
        needs_subtests()
        done, records = run(tmp_path, {"test_sub.py": SUBTESTS}, "-q")
        assert done.returncode == 1, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        if PYTEST_9:
            assert pytest_line(done.stdout) == "3 failed, 4 passed, 8 subtests passed"
        assert (summary["subtests_failed"], summary["subtests_passed"]) == ("2", "8")

        subtests = [r for r in records if r["kind"] == "subtest"]
        assert sorted(
            (r["test"], r["subtest"], r["subtest_msg"], json.loads(r["subtest_params"]))
            for r in subtests
        ) == [
            ("test_sub.py::TestUnit::test_subtest_fails", "(i=2)", "", {"i": "2"}),
            ("test_sub.py::test_fixture_fails", "[check] (i=1)", "check", {"i": "1"}),
        ]
        for record in subtests:
            assert (record["outcome"], record["level"], record["logger"]) == (
                "failed",
                "error",
                "genesis.pytest",
            )
        texts = {r["subtest"]: failure_line(r["stderr"]) for r in subtests}
        assert texts == {
            "(i=2)": "AssertionError: 2 == 2",
            "[check] (i=1)": "AssertionError: i was 1",
        }

        tests = by_test(records)
        outcomes = {name.split("::", 1)[1]: r["outcome"] for name, r in tests.items()}
        # pytest counts the unittest test as passed; its record says what happened.
        assert outcomes == {
            "test_fixture_fails": "failed",
            "test_fixture_passes": "passed",
            "TestUnit::test_subtest_fails": "failed",
            "TestUnit::test_subtest_passes": "passed",
            "test_plain": "passed",
        }
        unit = tests["test_sub.py::TestUnit::test_subtest_fails"]
        assert unit["stderr"].startswith("contains 1 failed subtest\n")
        assert failure_line(unit["stderr"]) == "AssertionError: 2 == 2"
        assert (unit["subtests_failed"], unit["subtests_passed"]) == ("1", "2")
        fixture = tests["test_sub.py::test_fixture_fails"]
        assert failure_line(fixture["stderr"]) == "AssertionError: i was 1"
        assert fixture["stderr"].count("contains 1 failed subtest") == 1
        assert tests["test_sub.py::test_fixture_passes"]["subtests_passed"] == "2"

    def test_quiet_subtest_passes_are_still_counted(self, tmp_path: Path) -> None:
        """At pytest's default verbosity its line leaves passing subtests out; so does
        ``tests_subtests_passed``, while ``subtests_passed`` counts them anyway."""
        needs_subtests()
        done, records = run(tmp_path, {"test_sub.py": SUBTESTS})
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert summary["subtests_passed"] == "8"
        if PYTEST_9:
            assert pytest_line(done.stdout) == "3 failed, 4 passed"
            assert summary["tests_subtests_passed"] == "0"

    def test_the_loop_reads_the_failing_unittest_test(self, tmp_path: Path) -> None:
        """Through the store the loop reads (chDB): failed, with the subtest's assertion."""
        needs_subtests()
        done, _ = run(tmp_path, {"test_sub.py": SUBTESTS}, "-q")
        assert done.returncode == 1
        store = LocalStore(tmp_path / "logs")
        try:
            tests = {t.test: t for t in load_tests(store, "plugin")}
        finally:
            store.close()
        unit = tests["test_sub.py::TestUnit::test_subtest_fails"]
        assert unit.failed
        assert failure_line(unit.text) == "AssertionError: 2 == 2"
        assert sorted(t.test for t in tests.values() if t.failed) == [
            "test_sub.py::TestUnit::test_subtest_fails",
            "test_sub.py::test_fixture_fails",
        ]


class TestOutcomes:
    """Setup and teardown errors, xfail, xpass (strict and not), skips, warnings, -k."""

    def test_every_outcome(self, tmp_path: Path) -> None:
        files = {"test_outcomes.py": OUTCOMES, "test_skipped_module.py": SKIPPED_MODULE}
        done, records = run(tmp_path, files, "-q", "-k", "not deselected")
        assert done.returncode == 1, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == (
            "2 failed, 2 passed, 3 skipped, 1 deselected, 1 xfailed, 1 xpassed, "
            "1 warning, 3 errors"
        )
        assert summary["interrupted"] == "false"
        assert summary["stop_reason"] == ""

        tests = by_test(records)
        found = {name.split("::")[-1]: (r["outcome"], r["phase"]) for name, r in tests.items()}
        assert found == {
            "test_setup_error": ("error", "setup"),
            "test_teardown_error": ("error", "teardown"),
            "test_fails_and_teardown_error": ("failed", "call"),
            "test_xfail": ("xfailed", "call"),
            "test_xpass": ("xpassed", "call"),
            "test_xpass_strict": ("failed", "call"),
            "test_skip": ("skipped", "setup"),
            "test_skip_inside": ("skipped", "call"),
            "test_warns": ("passed", "call"),
            "test_skipped_module.py": ("skipped", "collect"),
        }
        assert (
            "RuntimeError: setup exploded" in tests["test_outcomes.py::test_setup_error"]["stderr"]
        )
        both = tests["test_outcomes.py::test_fails_and_teardown_error"]["stderr"]
        assert failure_line(both) == "assert 1 == 2"
        assert "RuntimeError: teardown exploded" in both  # the teardown error is kept too
        assert "[XPASS(strict)]" in tests["test_outcomes.py::test_xpass_strict"]["stderr"]
        assert "whole module off" in tests["test_skipped_module.py"]["stderr"]
        for record in tests.values():
            assert record["logger"] == "genesis.pytest"
            failed = record["outcome"] in ("failed", "error")
            assert record["level"] == ("error" if failed else "info")

    def test_a_module_that_fails_to_import(self, tmp_path: Path) -> None:
        files = {"test_fine.py": STOPS, "test_broken.py": BROKEN_IMPORT}
        done, records = run(tmp_path, files, "-q")
        assert done.returncode == 2, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == "1 error"
        assert (summary["collection_errors"], summary["interrupted"]) == ("1", "true")
        assert summary["stop_reason"] == "Interrupted: 1 error during collection"
        broken = by_test(records)["test_broken.py"]
        assert (broken["outcome"], broken["phase"], broken["level"]) == (
            "error",
            "collect",
            "error",
        )
        assert failure_line(broken["stderr"]) == (
            "ModuleNotFoundError: No module named 'module_that_does_not_exist'"
        )

    def test_continue_on_collection_errors(self, tmp_path: Path) -> None:
        files = {"test_fine.py": STOPS, "test_broken.py": BROKEN_IMPORT}
        done, records = run(tmp_path, files, "-q", "--continue-on-collection-errors")
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == "2 failed, 2 passed, 1 error"
        assert summary["interrupted"] == "false"
        assert len(by_test(records)) == 5


class TestStoppedEarly:
    """-x, pytest.exit and KeyboardInterrupt: what ran is counted, the summary says why."""

    def test_exitfirst(self, tmp_path: Path) -> None:
        done, records = run(tmp_path, {"test_stops.py": STOPS}, "-q", "-x")
        assert done.returncode == 1, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == "1 failed, 1 passed"
        assert summary["stop_reason"] == "stopping after 1 failures"
        assert (summary["tests_collected"], summary["interrupted"]) == ("4", "false")
        assert sorted(by_test(records)) == [
            "test_stops.py::test_first",
            "test_stops.py::test_second",
        ]

    def test_pytest_exit(self, tmp_path: Path) -> None:
        done, records = run(tmp_path, {"test_exits.py": EXITS}, "-q")
        assert done.returncode == 3, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == "1 passed"
        assert (summary["interrupted"], summary["stop_reason"]) == (
            "true",
            "_pytest.outcomes.Exit: enough for today",
        )
        exits = by_test(records)["test_exits.py::test_exits"]
        assert (exits["outcome"], exits["interrupted"], exits["level"]) == (
            "error",
            "true",
            "error",
        )
        assert failure_line(exits["stderr"]) == "_pytest.outcomes.Exit: enough for today"
        assert "test_exits.py::test_after" not in by_test(records)

    def test_keyboard_interrupt(self, tmp_path: Path) -> None:
        done, records = run(tmp_path, {"test_interrupted.py": INTERRUPTED}, "-q")
        assert done.returncode == 2, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        assert pytest_line(done.stdout) == "1 passed"
        assert (summary["interrupted"], summary["stop_reason"]) == ("true", "KeyboardInterrupt")
        interrupted = by_test(records)["test_interrupted.py::test_interrupted"]
        assert (interrupted["outcome"], interrupted["interrupted"]) == ("error", "true")
        assert failure_line(interrupted["stderr"]) == "KeyboardInterrupt"


class TestXdist:
    """Under ``-n 2`` the controller records; the counts still equal pytest's line."""

    def test_counts_match_under_xdist(self, tmp_path: Path) -> None:
        import xdist  # noqa: F401  - in the test deps: a missing plugin fails, never skips

        needs_subtests()
        files = {
            "test_sub.py": SUBTESTS,
            "test_outcomes.py": OUTCOMES,
            "test_skipped_module.py": SKIPPED_MODULE,
        }
        done, records = run(tmp_path, files, "-n", "2", "-q")
        assert done.returncode == 1, done.stdout + done.stderr
        summary = summary_of(records)
        assert_counts_match(done, summary)
        if PYTEST_9:
            assert pytest_line(done.stdout) == (
                "5 failed, 7 passed, 3 skipped, 1 xfailed, 1 xpassed, 1 warning, 3 errors, "
                "8 subtests passed"
            )
        assert summary["subtests_failed"] == "2"
        assert len([r for r in records if r["kind"] == "subtest"]) == 2
        tests = by_test(records)
        assert tests["test_sub.py::TestUnit::test_subtest_fails"]["outcome"] == "failed"
        assert len(tests) == 16


RECONFIGURES = """
import logging
import logging.config

def test_before():
    pass

def test_reconfigures_logging():
    # disable_existing_loggers defaults to True: every existing logger is disabled and
    # every handler logging knows is closed
    logging.config.dictConfig({"version": 1, "root": {"level": "WARNING", "handlers": []}})

def test_fails_after():
    assert 1 == 2

def test_disables_logging():
    logging.disable(logging.CRITICAL)

def test_after():
    pass
"""


class TestCodeUnderTestCannotSilenceIt:
    """Issue 20.4: a test calling ``dictConfig`` disabled the plugin's logger and closed its
    handler: 4 of 10 records kept, the failing test and the summary among those lost."""

    def test_every_record_survives_reconfiguration(self, tmp_path: Path) -> None:
        done, records = run(tmp_path, {"test_reconfigure.py": RECONFIGURES}, "-q")
        assert done.returncode == 1, done.stdout + done.stderr
        tests = by_test(records)
        assert sorted(tests) == [
            f"test_reconfigure.py::{name}"
            for name in (
                "test_after",
                "test_before",
                "test_disables_logging",
                "test_fails_after",
                "test_reconfigures_logging",
            )
        ]
        assert tests["test_reconfigure.py::test_fails_after"]["outcome"] == "failed"
        assert_counts_match(done, summary_of(records))


class TestFailuresReadsLikePytest:
    """``failures`` lists what pytest's short summary lists, subtests with their
    parameters (the e2e user saw two bare "[subtest]" lines where pytest named each)."""

    def test_each_subfailed_line_is_there(self, tmp_path: Path) -> None:
        needs_subtests()
        done, _ = run(tmp_path, {"test_sub.py": SUBTESTS}, "-q", "-rf")
        subfailed = [
            line.split(" - ")[0]
            for line in done.stdout.splitlines()
            if line.startswith("SUBFAILED")
        ]
        assert len(subfailed) == 2, done.stdout
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PYTEST_", "GENESIS_", "CLICKHOUSE_"))
        }
        answer = subprocess.run(
            [sys.executable, "-m", "genesis_logging", "failures", "plugin"],
            env={**env, "GENESIS_LOG_DIR": str(tmp_path / "logs")},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert answer.returncode == 0, answer.stderr
        listed = [line.strip().split(" — ")[0] for line in answer.stdout.splitlines()]
        for line in subfailed:
            assert line in listed, answer.stdout
        unit = "test_sub.py::TestUnit::test_subtest_fails"
        assert "FAILED unit — contains 1 failed subtest".replace("unit", unit) in [
            line.strip() for line in answer.stdout.splitlines()
        ]
