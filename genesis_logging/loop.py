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
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, NamedTuple

from .runner import file_hashes, split_snapshot
from .schema import RUN_FIELDS
from .store import Store

__all__ = [
    "Cause",
    "FileDiff",
    "IterationState",
    "Run",
    "TestRecords",
    "TestResult",
    "TreeChanges",
    "Verdict",
    "add_failure_text",
    "causes",
    "compare_tree",
    "diff_code",
    "diff_files",
    "failure_line",
    "fingerprint",
    "flaky_runs",
    "flaky_tests",
    "iterations_sharing_code",
    "latest_state",
    "load_runs",
    "load_summaries",
    "load_test_records",
    "load_tests",
    "verify",
]

RUN_LOGGER: Final = "genesis.run"
TEST_LOGGER: Final = "genesis.pytest"
FAILED: Final = frozenset({"failed", "error"})
_NAMES: Final = 20  # file names listed in one answer before "and N more"


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
    snapshot_roots: tuple[str, ...] = ()

    @property
    def passed(self) -> bool:
        return self.exit_code == 0


class TestResult(NamedTuple):
    """One test of one run, as the pytest plugin recorded it (a tuple: a spec holds tens
    of thousands of them, and a tuple is made several times faster than a frozen
    dataclass)."""

    iteration: int
    test: str
    outcome: str
    text: str
    duration_ms: int
    code_hash: str
    kind: str = "test"  # "test", or what the plugin calls a finer record (a subtest)
    detail: str = ""  # a subtest's name and parameters, as pytest prints them

    @property
    def failed(self) -> bool:
        return self.outcome in FAILED


TestResult.__test__ = False  # type: ignore[attr-defined]  # pytest: not a test class


def load_runs(
    store: Store,
    spec: str,
    *,
    with_code: bool = False,
    with_text: bool = True,
    iterations: Collection[int] | None = None,
) -> list[Run]:
    """The runs of ``spec`` (of ``iterations`` only, when given), oldest first, without
    their output when not ``with_text``, with their code only ``with_code``."""
    columns = list(RUN_FIELDS)
    columns += ["stdout", "stderr"] if with_text else []
    columns += ["code_snapshot"] if with_code else []
    records = store.select(
        spec,
        RUN_LOGGER,
        columns,
        ("code_hash", "snapshot_files", "snapshot_roots"),
        iterations=iterations,
    )
    runs = []
    for row in records:
        files = _json(row.pop("snapshot_files"), dict)
        roots = _json(row.pop("snapshot_roots"), list)
        code = row.pop("code_snapshot", "")
        row.setdefault("stdout", "")
        row.setdefault("stderr", "")
        runs.append(
            Run(
                **row,
                code=code,
                snapshot_files=files,
                snapshot_roots=tuple(str(root) for root in roots),
            )
        )
    return runs


def _json(text: Any, kind: type[Any]) -> Any:
    """A JSON attribute of the expected kind, or an empty one (absent, old or damaged)."""
    try:
        parsed = json.loads(text or "null")
    except (TypeError, ValueError):
        return kind()
    return parsed if isinstance(parsed, kind) else kind()


def load_tests(
    store: Store,
    spec: str,
    *,
    with_text: bool = True,
    iterations: Collection[int] | None = None,
) -> list[TestResult]:
    """The per-test records of ``spec`` (of ``iterations`` only, when given), oldest
    first (without failure text if not ``with_text``)."""
    columns = ["iteration", "duration_ms"] + (["stderr"] if with_text else [])
    records = store.select(
        spec,
        TEST_LOGGER,
        columns,
        ("test", "outcome", "code_hash"),
        kind="test",
        iterations=iterations,
    )
    return [_test_result(row) for row in records if row["test"] and row["outcome"]]


def _test_result(row: dict[str, Any]) -> TestResult:
    return TestResult(
        iteration=row["iteration"],
        test=row["test"],
        outcome=row["outcome"],
        text=row.get("stderr", ""),
        duration_ms=row["duration_ms"],
        code_hash=row["code_hash"],
        kind=row.get("kind") or "test",
        detail=row.get("subtest") or "",
    )


@dataclass(frozen=True)
class TestRecords:
    """What pytest recorded for a spec: every outcome record, and each session's summary."""

    __test__ = False

    tests: list[TestResult]
    summaries: dict[int, str]  # iteration -> the session's counts ("1 failed, 3 passed")


_TEST_ATTRIBUTES: Final = ("test", "outcome", "code_hash", "kind", "subtest")
_TEST_COLUMNS: Final = ("iteration", "duration_ms")


def load_test_records(
    store: Store,
    spec: str,
    *,
    with_text: bool = True,
    iterations: Collection[int] | None = None,
) -> TestRecords:
    """The plugin's records of ``spec`` (of ``iterations`` only, when given): tests of
    every kind (subtests too, whatever the plugin names them) and the session summaries.
    Without ``with_text`` the failure text is left out (it is most of the bytes):
    :func:`add_failure_text` reads it for the iterations an answer shows."""
    columns = [*_TEST_COLUMNS, *(["stderr"] if with_text else [])]
    rows = store.select(spec, TEST_LOGGER, columns, _TEST_ATTRIBUTES, iterations=iterations)
    tests = [
        _test_result(row)
        for row in rows
        if row["kind"] != "test_summary" and row["test"] and row["outcome"]
    ]
    return TestRecords(tests, load_summaries(store, spec))


def load_summaries(store: Store, spec: str) -> dict[int, str]:
    """Each pytest session's counts, by iteration ("3 failed, 611 passed, …")."""
    return {
        row["iteration"]: str(row["message"]).removeprefix("test session: ")
        for row in store.select(spec, TEST_LOGGER, ["iteration", "message"], kind="test_summary")
    }


def iterations_sharing_code(runs: list[Run], iterations: Collection[int]) -> set[int]:
    """``iterations`` and every other iteration whose run ran the same code: what telling
    a flaky test (passed and failed on the same code) about them needs."""
    hashes = {run.code_hash for run in runs if run.iteration in iterations and run.code_hash}
    return set(iterations) | {run.iteration for run in runs if run.code_hash in hashes}


def add_failure_text(
    store: Store, spec: str, records: TestRecords, iterations: Collection[int]
) -> TestRecords:
    """``records`` with the failure text of the tests of ``iterations`` read in."""
    if not iterations:
        return records
    texts = [
        _test_result(row)
        for row in store.select(
            spec,
            TEST_LOGGER,
            [*_TEST_COLUMNS, "stderr"],
            _TEST_ATTRIBUTES,
            iterations=iterations,
        )
        if row["kind"] != "test_summary" and row["test"] and row["outcome"]
    ]
    kept = [test for test in records.tests if test.iteration not in iterations]
    tests = sorted([*kept, *texts], key=lambda test: test.iteration)  # stable: time order
    return TestRecords(tests, records.summaries)


@dataclass(frozen=True)
class IterationState:
    """Where one iteration stands: its (latest) run, if any, and what pytest recorded."""

    iteration: int
    run: Run | None
    tests: list[TestResult]
    summary: str  # pytest's counts, or ours from the test records ("" without tests)

    @property
    def passed(self) -> bool:
        if self.run is not None:
            return self.run.passed
        return not any(test.failed for test in self.tests)

    @property
    def failing(self) -> list[TestResult]:
        return [test for test in self.tests if test.failed]


def latest_state(
    runs: list[Run], tests: list[TestResult], summaries: dict[int, str] | None = None
) -> IterationState | None:
    """The latest iteration of a spec and its outcome (``None`` when nothing is recorded)."""
    iterations = {run.iteration for run in runs} | {test.iteration for test in tests}
    if not iterations:
        return None
    latest = max(iterations)
    matching = [run for run in runs if run.iteration == latest]
    own = [test for test in tests if test.iteration == latest]
    summary = (summaries or {}).get(latest) or _count(own)
    return IterationState(latest, matching[-1] if matching else None, own, summary)


def _count(tests: Iterable[TestResult]) -> str:
    counts = Counter(test.outcome for test in tests if test.kind == "test")
    return ", ".join(f"{n} {outcome}" for outcome, n in sorted(counts.items()))


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
    passed: set[tuple[str, str]] = set()
    failed: set[tuple[str, str]] = set()
    for test in tests:
        if test.code_hash and test.outcome not in ("skipped", "xfailed"):
            (failed if test.outcome in FAILED else passed).add((test.test, test.code_hash))
    return {name for name, _ in passed & failed}


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

_LEFT_OUT: Final = re.compile(r"^# ===== (.+?) \(not included: snapshot limit reached\)$", re.M)


@dataclass(frozen=True)
class FileDiff:
    """One file's change between two code snapshots."""

    path: str
    change: str  # "changed", "added", "removed", or "left out" (past the snapshot limit)
    text: str  # the unified diff, headed by the iteration and the file's name


def diff_files(before: str, after: str, a: int, b: int, *, name: str = "") -> list[FileDiff]:
    """The files that differ between two snapshots, in path order, each with its diff.

    Snapshots are split into their files (:func:`~genesis_logging.runner.split_snapshot`),
    so each hunk says which file it is in. ``name`` names the code of a snapshot without
    file headers (one file, or a literal string).
    """
    old, new = split_snapshot(before), split_snapshot(after)
    left_out = set(_LEFT_OUT.findall(before)) | set(_LEFT_OUT.findall(after))
    diffs = []
    for path in sorted(old.keys() | new.keys()):
        shown = path or name or "(the code snapshot)"
        if path in left_out:
            if old.get(path) != new.get(path) or path not in old or path not in new:
                diffs.append(FileDiff(shown, "left out", ""))
            continue
        if old.get(path) == new.get(path):
            continue
        change = "added" if path not in old else "removed" if path not in new else "changed"
        text = "".join(
            difflib.unified_diff(
                old.get(path, "").splitlines(keepends=True),
                new.get(path, "").splitlines(keepends=True),
                fromfile=f"iteration {a}: {shown}" + (" (absent)" if change == "added" else ""),
                tofile=f"iteration {b}: {shown}" + (" (absent)" if change == "removed" else ""),
            )
        )
        diffs.append(FileDiff(shown, change, text if text.endswith("\n") else text + "\n"))
    return diffs


def diff_code(before: str, after: str, a: int, b: int) -> str:
    """The unified diff of two code snapshots, file by file, each headed by its name."""
    return "".join(
        diff.text or f"(iteration {a} → {b}: {diff.path} {diff.change})\n"
        for diff in diff_files(before, after, a, b)
    )


@dataclass(frozen=True)
class TreeChanges:
    """How the snapshotted files differ now from when they were recorded."""

    changed: tuple[str, ...] = ()
    added: tuple[str, ...] = ()
    deleted: tuple[str, ...] = ()
    renamed: tuple[tuple[str, str], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changed or self.added or self.deleted or self.renamed)

    def describe(self, limit: int = _NAMES) -> str:
        """Each change by name (at most ``limit`` names, then how many more)."""
        items = (
            [f"changed {p}" for p in self.changed]
            + [f"added {p}" for p in self.added]
            + [f"deleted {p}" for p in self.deleted]
            + [f"renamed {a} → {b}" for a, b in self.renamed]
        )
        more = f"; and {len(items) - limit} more" if len(items) > limit else ""
        return "; ".join(items[:limit]) + more


def compare_tree(recorded: dict[str, str], roots: Sequence[str]) -> TreeChanges:
    """The recorded files against the files as they are now.

    With the ``roots`` the snapshot was taken from, they are walked again (the same rules
    as the snapshot) so a file added, deleted or renamed is seen; without them (records
    made before roots were kept) only the recorded files are compared.
    """
    now = file_hashes([Path(root) for root in roots] or [Path(p) for p in recorded])
    changed = sorted(p for p in recorded.keys() & now.keys() if recorded[p] != now[p])
    added = sorted(now.keys() - recorded.keys())
    deleted = sorted(recorded.keys() - now.keys())
    unclaimed: dict[str, list[str]] = defaultdict(list)  # content hash -> added files
    for path in added:
        if now[path] != "unreadable":
            unclaimed[now[path]].append(path)
    renamed = []
    for old in deleted:
        if unclaimed.get(recorded[old]):
            renamed.append((old, unclaimed[recorded[old]].pop(0)))
    moved = {path for pair in renamed for path in pair}
    return TreeChanges(
        tuple(changed),
        tuple(p for p in added if p not in moved),
        tuple(p for p in deleted if p not in moved),
        tuple(renamed),
    )


@dataclass(frozen=True)
class Verdict:
    """``verify``'s answer: green on the current code, or why not."""

    ok: bool
    reason: str
    notes: tuple[str, ...] = ()


def verify(runs: list[Run]) -> Verdict:
    """Green only if the latest iteration passed and its snapshotted trees are unchanged:
    no file edited, added, deleted or renamed."""
    if not runs:
        return Verdict(False, "no run recorded")
    latest = max(runs, key=lambda r: r.iteration)
    if not latest.passed:
        return Verdict(False, f"red: iteration {latest.iteration} exited {latest.exit_code}")
    if not latest.snapshot_files and not latest.snapshot_roots:
        return Verdict(
            False, f"iteration {latest.iteration} recorded no --snapshot: cannot tell the code"
        )
    changes = compare_tree(latest.snapshot_files, latest.snapshot_roots)
    if changes:
        return Verdict(
            False, f"code changed since green iteration {latest.iteration}: {changes.describe()}"
        )
    notes = _test_changes(runs, latest)
    if not latest.snapshot_roots:
        notes += (
            f"iteration {latest.iteration} recorded its files but not their directories: "
            "files added since are not seen",
        )
    return Verdict(True, f"green: iteration {latest.iteration}", notes)


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
    names = ", ".join(sorted(changed)[:_NAMES])
    more = f" and {len(changed) - _NAMES} more" if len(changed) > _NAMES else ""
    return (
        f"test files changed between red iteration {red.iteration} and green iteration "
        f"{first_green.iteration}: {names}{more}",
    )


def _is_test_file(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return name.startswith("test_") or name.endswith("_test.py") or "/tests/" in path
