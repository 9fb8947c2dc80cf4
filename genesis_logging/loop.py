"""What the loop asks of its logs: the runs and tests of a spec, what failed and why,
what changed between two iterations, which tests are flaky, and whether green still holds.

Reads through a :class:`~genesis_logging.store.Store` (local store or server) with the
same SQL; the CLI renders the answers.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from .runner import file_hashes
from .store import Store

__all__ = [
    "Cause",
    "Run",
    "TestResult",
    "Verdict",
    "causes",
    "diff_code",
    "failure_line",
    "fingerprint",
    "flaky_runs",
    "flaky_tests",
    "load_runs",
    "load_tests",
    "verify",
]

RUN_LOGGER: Final = "genesis.run"
TEST_LOGGER: Final = "genesis.pytest"
FAILED: Final = frozenset({"failed", "error"})


@dataclass(frozen=True)
class Run:
    """One ``genesis-logging run`` of a spec (the run record)."""

    iteration: int
    exit_code: int
    duration_ms: int
    timestamp: Any
    stdout: str
    stderr: str
    code_hash: str
    snapshot_files: dict[str, str]
    code: str = ""

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


@dataclass(frozen=True)
class TestResult:
    """One test of one run, as the pytest plugin recorded it."""

    __test__ = False

    iteration: int
    test: str
    outcome: str
    text: str
    duration_ms: int
    code_hash: str

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED


def load_runs(
    store: Store, spec: str, *, with_code: bool = False, with_text: bool = True
) -> list[Run]:
    """The runs of ``spec``, oldest first (without their output when not ``with_text``)."""
    columns = ["iteration", "exit_code", "duration_ms", "timestamp"]
    columns += ["stdout", "stderr"] if with_text else []
    columns += ["code_snapshot"] if with_code else []
    records = store.select(spec, RUN_LOGGER, columns, ("code_hash", "snapshot_files"))
    runs = []
    for row in records:
        files = row.pop("snapshot_files") or "{}"
        try:
            parsed = json.loads(files)
        except ValueError:
            parsed = {}
        code = row.pop("code_snapshot", "")
        row.setdefault("stdout", "")
        row.setdefault("stderr", "")
        runs.append(
            Run(**row, code=code, snapshot_files=parsed if isinstance(parsed, dict) else {})
        )
    return runs


def load_tests(store: Store, spec: str, *, with_text: bool = True) -> list[TestResult]:
    """The per-test records of ``spec``, oldest first (without failure text if not
    ``with_text``)."""
    columns = ["iteration", "duration_ms"] + (["stderr"] if with_text else [])
    records = store.select(
        spec, TEST_LOGGER, columns, ("test", "outcome", "code_hash"), kind="test"
    )
    return [
        TestResult(
            iteration=row["iteration"],
            test=row["test"],
            outcome=row["outcome"],
            text=row.get("stderr", ""),
            duration_ms=row["duration_ms"],
            code_hash=row["code_hash"],
        )
        for row in records
    ]


# -- failures ------------------------------------------------------------------------------

_ASSERTION: Final = re.compile(r"^E\s+(.+)$", re.MULTILINE)


def failure_line(text: str) -> str:
    """The line that says what went wrong: pytest's first ``E`` line, else the last line."""
    match = _ASSERTION.search(text)
    if match:
        return match.group(1).strip()
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


_NOISE: Final = (
    (re.compile(r"(/[\w.\-]+)+"), "<path>"),
    (re.compile(r"0x[0-9a-fA-F]+"), "<addr>"),
    (re.compile(r"line \d+"), "line <n>"),
    (re.compile(r"\d+"), "<n>"),
)


def fingerprint(text: str) -> str:
    """A short id of a failure's cause: paths, addresses, line numbers and numbers removed."""
    line = failure_line(text)
    for pattern, replacement in _NOISE:
        line = pattern.sub(replacement, line)
    return hashlib.sha1(line.encode("utf-8", "replace")).hexdigest()[:10]


def flaky_tests(tests: list[TestResult]) -> set[str]:
    """Tests that passed and failed on the same code (same code hash)."""
    outcomes: dict[tuple[str, str], set[bool]] = defaultdict(set)
    for test in tests:
        if test.code_hash and test.outcome not in ("skipped", "xfailed"):
            outcomes[(test.test, test.code_hash)].add(test.failed)
    return {name for (name, _), seen in outcomes.items() if len(seen) > 1}


def flaky_runs(runs: list[Run]) -> set[str]:
    """Code hashes whose runs both passed and failed."""
    outcomes: dict[str, set[bool]] = defaultdict(set)
    for run in runs:
        if run.code_hash:
            outcomes[run.code_hash].add(run.passed)
    return {code for code, seen in outcomes.items() if len(seen) > 1}


@dataclass
class Cause:
    """Failures that share a fingerprint, across iterations."""

    fingerprint: str
    example: str
    count: int = 0
    iterations: list[int] = field(default_factory=list)
    tests: set[str] = field(default_factory=set)


def causes(runs: list[Run], tests: list[TestResult]) -> list[Cause]:
    """Failures grouped by cause: tests' failures, else the runs' own output."""
    grouped: dict[str, Cause] = {}
    tested = {test.iteration for test in tests}

    def add(text: str, iteration: int, test: str = "") -> None:
        key = fingerprint(text)
        cause = grouped.setdefault(key, Cause(key, failure_line(text)))
        cause.count += 1
        cause.iterations.append(iteration)
        if test:
            cause.tests.add(test)

    for test in tests:
        if test.failed:
            add(test.text, test.iteration, test.test)
    for run in runs:
        if not run.passed and run.iteration not in tested:
            add(run.stderr or run.stdout, run.iteration)
    return sorted(grouped.values(), key=lambda c: (-c.count, c.iterations[0]))


# -- what changed --------------------------------------------------------------------------


def diff_code(before: str, after: str, a: int, b: int) -> str:
    """The unified diff of two code snapshots."""
    return "".join(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"iteration {a}",
            tofile=f"iteration {b}",
        )
    )


@dataclass(frozen=True)
class Verdict:
    """``verify``'s answer: green on the current code, or why not."""

    ok: bool
    reason: str
    notes: tuple[str, ...] = ()


def verify(runs: list[Run]) -> Verdict:
    """Green only if the latest iteration passed and its files still hash the same."""
    if not runs:
        return Verdict(False, "no run recorded")
    latest = max(runs, key=lambda r: r.iteration)
    if not latest.passed:
        return Verdict(False, f"red: iteration {latest.iteration} exited {latest.exit_code}")
    if not latest.snapshot_files:
        return Verdict(
            False, f"iteration {latest.iteration} recorded no --snapshot: cannot tell the code"
        )
    now = file_hashes([Path(p) for p in latest.snapshot_files])
    changed = sorted(p for p, h in latest.snapshot_files.items() if now.get(p) != h)
    if changed:
        return Verdict(
            False, f"code changed since green iteration {latest.iteration}: {', '.join(changed)}"
        )
    return Verdict(True, f"green: iteration {latest.iteration}", _test_changes(runs, latest))


def _test_changes(runs: list[Run], green: Run) -> tuple[str, ...]:
    """Test files changed between the last red iteration and the first green after it."""
    reds = [r for r in runs if not r.passed and r.iteration < green.iteration]
    if not reds:
        return ()
    red = max(reds, key=lambda r: r.iteration)
    first_green = min(
        (r for r in runs if r.passed and r.iteration > red.iteration), key=lambda r: r.iteration
    )
    changed = [
        path
        for path, digest in first_green.snapshot_files.items()
        if red.snapshot_files.get(path) != digest and _is_test_file(path)
    ]
    if not changed:
        return ()
    return (
        f"test files changed between red iteration {red.iteration} and green iteration "
        f"{first_green.iteration}: {', '.join(sorted(changed))}",
    )


def _is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or "/tests/" in path
