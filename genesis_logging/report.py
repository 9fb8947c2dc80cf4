"""A picture of the loop: per iteration red or green, how long, which tests failed and why.

The numbers come from the same records as every other command (read through
:func:`~genesis_logging.loop.load_runs` and :func:`~genesis_logging.loop.load_tests`, so
any :class:`~genesis_logging.store.Store` answers them); :func:`render_terminal` draws them
for a person at a terminal and :func:`render_html` as one self-contained page (HTML and CSS,
nothing fetched, no JavaScript). Everything the page shows is text on the page, not only in
a tooltip, and bounded: a large suite or a long loop is cut with a visible "N more".
"""

from __future__ import annotations

import difflib
import html
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from .loop import (
    RUN_LOGGER,
    Run,
    TestResult,
    failure_line,
    fingerprint,
    flaky_runs,
    flaky_tests,
    load_runs,
    load_tests,
)
from .runner import split_snapshot
from .store import Store

__all__ = [
    "Failure",
    "FileChange",
    "IterationLine",
    "SpecReport",
    "SpecSummary",
    "TestRow",
    "build_report",
    "file_changes",
    "load_summaries",
    "render_html",
    "render_summaries_html",
    "render_summaries_terminal",
    "render_terminal",
]

_GREEN, _RED, _DIM, _RESET = "\033[32m", "\033[31m", "\033[2m", "\033[0m"
_BAR: Final = 30  # characters of the longest duration bar
GRID_TESTS: Final = 40  # rows of the tests x iterations grid; the rest is counted
FAILURES: Final = 30  # rows of the failure table; the rest is counted
DIFF_LINES: Final = 400  # lines of code diff shown per file; the rest is counted


@dataclass(frozen=True)
class IterationLine:
    """One iteration of a spec: its (latest) run and its tests."""

    iteration: int
    passed: bool
    exit_code: int
    duration_ms: int
    failing_tests: int | None  # None: no per-test records for this iteration
    flaky: bool


@dataclass(frozen=True)
class TestRow:
    """One test across the iterations: its outcome in each (latest record of each)."""

    __test__ = False

    test: str
    outcomes: dict[int, str]


@dataclass(frozen=True)
class Failure:
    """Failures of one test with one cause (same fingerprint), and the latest line of it."""

    test: str  # "" when the run failed without per-test records
    line: str
    iterations: tuple[int, ...]


@dataclass(frozen=True)
class FileChange:
    """One file that differs between two snapshots."""

    path: str  # "" for a snapshot without file headers (one file, or literal text)
    status: str  # "added", "removed" or "changed"
    diff: str  # unified diff lines, without the ---/+++ header
    added: int
    removed: int


@dataclass
class SpecReport:
    """Everything the report shows of one spec."""

    spec: str
    iterations: list[IterationLine]
    failing: dict[int, list[str]] = field(default_factory=dict)  # iteration -> failing tests
    slowest_to_green: list[tuple[str, int, int]] = field(default_factory=list)  # test, red, green
    runs: int = 0
    passed_runs: int = 0
    grid: list[TestRow] = field(default_factory=list)  # tests that failed at least once
    grid_more: int = 0  # tests that failed at least once, not in ``grid``
    never_failed: int = 0  # tests that never failed (not in ``grid``)
    failures: list[Failure] = field(default_factory=list)  # latest first
    changes: list[FileChange] = field(default_factory=list)
    unchanged_files: int = 0
    diff_between: tuple[int, int] | None = None  # last red, first green after it

    @property
    def iterations_to_green(self) -> int | None:
        """How many iterations it took to the first green one (``None``: never green)."""
        for position, line in enumerate(self.iterations, 1):
            if line.passed:
                return position
        return None

    @property
    def total_ms(self) -> int:
        return sum(line.duration_ms for line in self.iterations)

    @property
    def pass_rate(self) -> float:
        """Share of runs that exited 0 (every run, as ``report --all`` counts them)."""
        return self.passed_runs / self.runs if self.runs else 0.0

    def as_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "iterations": [asdict(line) for line in self.iterations],
            "iterations_to_green": self.iterations_to_green,
            "total_ms": self.total_ms,
            "runs": self.runs,
            "passed_runs": self.passed_runs,
            "pass_rate": self.pass_rate,
            "failing_tests": {str(k): v for k, v in self.failing.items()},
            "failures": [asdict(f) for f in self.failures],
            "slowest_to_green": [
                {"test": t, "first_red": r, "green": g} for t, r, g in self.slowest_to_green
            ],
            "changed_files": [
                {"path": c.path, "status": c.status, "added": c.added, "removed": c.removed}
                for c in self.changes
            ],
        }


def build_report(store: Store, spec: str, *, with_changes: bool = True) -> SpecReport:
    """The report of ``spec``: its runs and tests. The output of a red run without test
    records is read only when there is one, the code (for the changes per file) only
    ``with_changes``: it is the bulkiest column of the store."""
    runs = load_runs(store, spec, with_text=False)
    tests = load_tests(store, spec)
    latest: dict[int, Run] = {}
    for run in runs:
        latest[run.iteration] = run  # oldest first: the last one wins
    outcomes: dict[str, dict[int, TestResult]] = defaultdict(dict)
    for test in tests:
        outcomes[test.test][test.iteration] = test  # oldest first: the last one wins
    failing: dict[int, list[str]] = defaultdict(list)
    tested: set[int] = set()
    for name, by_iteration in outcomes.items():
        for iteration, test in by_iteration.items():
            tested.add(iteration)
            if test.failed:
                failing[iteration].append(name)
    flaky_code, flaky = flaky_runs(runs), flaky_tests(tests)
    lines = [
        IterationLine(
            iteration=run.iteration,
            passed=run.passed,
            exit_code=run.exit_code,
            duration_ms=run.duration_ms,
            failing_tests=len(failing[run.iteration]) if run.iteration in tested else None,
            flaky=run.code_hash in flaky_code or any(t in flaky for t in failing[run.iteration]),
        )
        for run in sorted(latest.values(), key=lambda r: r.iteration)
    ]
    report = SpecReport(spec, lines, {k: sorted(v) for k, v in sorted(failing.items()) if v})
    report.runs, report.passed_runs = len(runs), sum(run.passed for run in runs)
    report.slowest_to_green = _slowest_to_green(tests)
    _add_grid(report, outcomes)
    untested = {r.iteration for r in latest.values() if not r.passed} - tested
    report.failures = _failures(outcomes, _run_output(store, spec, untested))
    if with_changes:
        _add_changes(store, report)
    return report


def _latest_runs(
    store: Store, spec: str, columns: list[str], wanted: set[int]
) -> dict[int, dict[str, Any]]:
    """Bulky columns of the (latest) run of each ``wanted`` iteration, read only if any."""
    if not wanted:
        return {}
    rows = store.select(spec, RUN_LOGGER, ["iteration", *columns], iterations=wanted)
    return {row["iteration"]: row for row in rows}


def _run_output(store: Store, spec: str, wanted: set[int]) -> dict[int, str]:
    """What red runs without per-test records said (stderr, else stdout)."""
    rows = _latest_runs(store, spec, ["stderr", "stdout"], wanted)
    return {i: str(row["stderr"] or row["stdout"]) for i, row in rows.items()}


def _add_grid(report: SpecReport, outcomes: dict[str, dict[int, TestResult]]) -> None:
    """Tests that failed at least once, the ones failing most recently first, capped."""
    failed = {
        name: max(i for i, t in by_iteration.items() if t.failed)
        for name, by_iteration in outcomes.items()
        if any(t.failed for t in by_iteration.values())
    }
    ranked = sorted(failed, key=lambda name: (-failed[name], name))
    report.grid = [
        TestRow(name, {i: t.outcome for i, t in sorted(outcomes[name].items())})
        for name in ranked[:GRID_TESTS]
    ]
    report.grid_more = max(0, len(ranked) - GRID_TESTS)
    report.never_failed = len(outcomes) - len(failed)


def _failures(
    outcomes: dict[str, dict[int, TestResult]], run_output: dict[int, str]
) -> list[Failure]:
    """Each failing test's assertion line, grouped by cause; a red run without test
    records by its own output. The most recent failure first."""
    grouped: dict[tuple[str, str], list[tuple[int, str]]] = defaultdict(list)
    for name, by_iteration in outcomes.items():
        for iteration, test in sorted(by_iteration.items()):
            if test.failed:
                grouped[(name, fingerprint(test.text))].append((iteration, test.text))
    for iteration, text in sorted(run_output.items()):
        grouped[("", fingerprint(text))].append((iteration, text))
    found = [
        Failure(name, failure_line(seen[-1][1]), tuple(i for i, _ in seen))
        for (name, _), seen in grouped.items()
    ]
    return sorted(found, key=lambda f: (-f.iterations[-1], f.test, f.line))


def _slowest_to_green(tests: list[TestResult]) -> list[tuple[str, int, int]]:
    """Tests that failed, then passed: (test, first red iteration, first green after it)."""
    first_red: dict[str, int] = {}
    healed: dict[str, tuple[int, int]] = {}
    for test in sorted(tests, key=lambda t: t.iteration):
        if test.failed:
            first_red.setdefault(test.test, test.iteration)
        elif test.outcome == "passed" and test.test in first_red and test.test not in healed:
            healed[test.test] = (first_red[test.test], test.iteration)
    ranked = sorted(healed.items(), key=lambda item: (item[1][0] - item[1][1], item[0]))
    return [(name, red, green) for name, (red, green) in ranked[:10]]


def _add_changes(store: Store, report: SpecReport) -> None:
    """The code changes from the last red iteration to the first green one after it."""
    reds = [line.iteration for line in report.iterations if not line.passed]
    greens = [line.iteration for line in report.iterations if line.passed]
    if not reds or not greens or max(greens) < min(reds):
        return
    green = min(g for g in greens if g > min(reds))
    red = max(r for r in reds if r < green)
    report.diff_between = (red, green)
    code = _latest_runs(store, report.spec, ["code_snapshot"], {red, green})
    report.changes, report.unchanged_files = file_changes(
        str(code.get(red, {}).get("code_snapshot", "")),
        str(code.get(green, {}).get("code_snapshot", "")),
    )


def file_changes(before: str, after: str) -> tuple[list[FileChange], int]:
    """What changed between two code snapshots, per file, and how many files did not."""
    old, new = split_snapshot(before), split_snapshot(after)
    if old == {"": ""}:
        old = {}
    if new == {"": ""}:
        new = {}
    changes: list[FileChange] = []
    unchanged = 0
    for path in sorted(old.keys() | new.keys()):
        if old.get(path) == new.get(path):
            unchanged += 1
            continue
        status = "added" if path not in old else "removed" if path not in new else "changed"
        body = list(
            difflib.unified_diff(
                old.get(path, "").splitlines(), new.get(path, "").splitlines(), lineterm=""
            )
        )[2:]  # without the ---/+++ header: the file is named above it
        added = sum(1 for line in body if line.startswith("+"))
        removed = sum(1 for line in body if line.startswith("-"))
        changes.append(FileChange(path, status, "\n".join(body), added, removed))
    return changes, unchanged


# -- the terminal ----------------------------------------------------------------------------


def render_terminal(report: SpecReport, *, colour: bool) -> str:
    """One line per iteration, then iterations to green, total time and pass rate."""
    if not report.iterations:
        return f"spec {report.spec}: no run recorded\n"
    slowest = max(line.duration_ms for line in report.iterations) or 1
    out = [f"spec {report.spec}"]
    for line in report.iterations:
        mark = "✔" if line.passed else "✘"
        if colour:
            mark = f"{_GREEN if line.passed else _RED}{mark}{_RESET}"
        bar = "█" * max(1, round(_BAR * line.duration_ms / slowest))
        tests = "" if line.failing_tests is None else f"  {line.failing_tests} failing tests"
        flaky = "  flaky" if line.flaky else ""
        out.append(
            f"  {mark} {line.iteration:>5}  exit {line.exit_code:>3}  {bar:<{_BAR}} "
            f"{_seconds(line.duration_ms):>8}{tests}{flaky}"
        )
    out.append(_summary_line(report))
    return "\n".join(out) + "\n"


def _seconds(milliseconds: int) -> str:
    return f"{milliseconds / 1000:.1f} s"


def state(report: SpecReport) -> str:
    """The latest iteration's outcome first, then how the spec got there."""
    if not report.iterations:
        return "no run recorded"
    latest = report.iterations[-1]
    now = f"iteration {latest.iteration} is {'green' if latest.passed else 'red'}"
    to_green = report.iterations_to_green
    if to_green is None:
        return f"{now}; never green yet"
    if latest.passed:
        return f"{now}; first green after {to_green} iteration{'' if to_green == 1 else 's'}"
    greens = [line.iteration for line in report.iterations if line.passed]
    return f"{now}; last green at iteration {greens[-1]}"


def _summary_line(report: SpecReport) -> str:
    return (
        f"  {state(report)}; {len(report.iterations)} iterations, {_seconds(report.total_ms)} in all; "
        f"pass rate {report.pass_rate:.0%} ({report.passed_runs} of {report.runs} runs)"
    )


@dataclass(frozen=True)
class SpecSummary:
    """One spec in ``report --all``."""

    spec: str
    iterations: int
    runs: int
    passed_runs: int
    first_green: int | None
    total_ms: int

    @property
    def pass_rate(self) -> float:
        return self.passed_runs / self.runs if self.runs else 0.0


def load_summaries(store: Store) -> list[SpecSummary]:
    """Every spec of the store, aggregated by the server (one query)."""
    result = store.query(
        "SELECT spec_id, uniqExact(iteration) AS iterations, count() AS runs, "
        "countIf(exit_code = 0) AS passed_runs, minIf(iteration, exit_code = 0) AS first_green, "
        f"sum(duration_ms) AS total_ms FROM {store.logs} WHERE logger = 'genesis.run' "
        "GROUP BY spec_id ORDER BY spec_id"
    )
    return [
        SpecSummary(
            spec=str(row["spec_id"]),
            iterations=int(row["iterations"]),
            runs=int(row["runs"]),
            passed_runs=int(row["passed_runs"]),
            first_green=int(row["first_green"]) if int(row["passed_runs"]) else None,
            total_ms=int(row["total_ms"]),
        )
        for row in result.dicts()
    ]


def render_summaries_terminal(summaries: list[SpecSummary], *, colour: bool) -> str:
    out = ["spec                 iterations  first green  pass rate   time"]
    for s in summaries:
        green = f"{s.first_green}" if s.first_green is not None else "—"
        if colour:
            green = f"{_GREEN if s.first_green is not None else _RED}{green:>11}{_RESET}"
        else:
            green = f"{green:>11}"
        out.append(
            f"{s.spec:<20} {s.iterations:>10}  {green}  {s.pass_rate:>8.0%}  {_seconds(s.total_ms):>8}"
        )
    return "\n".join(out) + "\n"


# -- the page ----------------------------------------------------------------------------------

_STYLE: Final = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #1d2330; }
h1 { font-size: 1.4em; } h2 { font-size: 1.1em; margin-top: 2em; }
h3 { font-size: 1em; margin: 1.2em 0 .3em; font-family: ui-monospace, monospace; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; text-align: left; }
table.rows tr:nth-child(even) { background: #f3f4f7; }
.summary b { font-size: 1.1em; } .note { color: #556; }
.scroll { overflow-x: auto; width: fit-content; max-width: 100%; direction: rtl; }
.scroll > table { direction: ltr; }  /* the grid opens scrolled to the latest iterations */
table.grid td, table.grid th { padding: 2px 3px; text-align: center; min-width: 2.6em;
  font-size: 12px; white-space: nowrap; }
table.grid th.label { text-align: right; position: sticky; left: 0; background: #fff;
  font-weight: normal; color: #556; padding-right: .8em; max-width: 32em;
  overflow: hidden; text-overflow: ellipsis; }
table.grid tbody th.label { color: #1d2330; font-family: ui-monospace, monospace; }
table.grid tr.bars td { vertical-align: bottom; height: 64px; }
.bar { margin: 0 auto; width: 1.8em; }
.bar.green { background: #2e9e5b; } .bar.red { background: #d64545; }
.bar.flaky { background: #e0a030; }
table.grid td.it { font-weight: bold; } table.grid td.gap { color: #889; }
td.cell { color: #fff; font-weight: bold; border: 1px solid #fff; }
td.passed { background: #2e9e5b; } td.failed { background: #d64545; }
td.error { background: #8f1d1d; } td.skipped { background: #9aa3b5; }
td.xfailed, td.xpassed { background: #e0a030; } td.other { background: #6b5bd6; }
td.none { background: #eef0f4; color: #99a; }
.legend span { display: inline-block; padding: 0 .4em; margin-right: .4em; color: #fff; }
.legend .passed { background: #2e9e5b; } .legend .failed { background: #d64545; }
.legend .error { background: #8f1d1d; } .legend .skipped { background: #9aa3b5; }
.legend .xfailed, .legend .xpassed { background: #e0a030; } .legend .none { background: #eef0f4; color: #99a; }
td.line { font-family: ui-monospace, monospace; white-space: pre-wrap; color: #8f1d1d; }
pre.diff { background: #f7f7f9; padding: 1em; overflow-x: auto; margin-top: 0; }
pre.diff .add { color: #1f7a45; } pre.diff .del { color: #b03030; } pre.diff .hunk { color: #667; }
.status { font-family: system-ui, sans-serif; font-weight: normal; color: #556; }
.rate { display: inline-block; width: 200px; background: #eef0f4; vertical-align: middle; }
.rate div { height: 12px; } .rate .green { background: #2e9e5b; } .rate .red { background: #d64545; }
"""
# Nothing may be fetched: the page works from a file, offline, and leaks nothing.
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
_COLUMNS: Final = 60  # iterations in the grid; more: the first _HEAD, a gap, the latest
_HEAD: Final = 10
_BAR_PX: Final = 60  # height of the slowest iteration's bar
_CELLS: Final = {
    "passed": "✔",
    "failed": "✘",
    "error": "E",
    "skipped": "s",
    "xfailed": "x",
    "xpassed": "X",
}


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _columns(lines: list[IterationLine]) -> list[IterationLine | int]:
    """The iterations the grid shows; an ``int`` stands for that many left out."""
    if len(lines) <= _COLUMNS:
        return list(lines)
    tail = _COLUMNS - _HEAD
    return [*lines[:_HEAD], len(lines) - _COLUMNS, *lines[-tail:]]


def _grid(report: SpecReport) -> str:
    """One column per iteration (bar, number, duration, exit code, failing count), one
    row per test that failed at least once."""
    columns = _columns(report.iterations)
    slowest = max((line.duration_ms for line in report.iterations), default=1) or 1

    def row(css: str, label: str, cell: Callable[[IterationLine], str]) -> str:
        cells = "".join(
            cell(c) if isinstance(c, IterationLine) else f'<td class="gap">… {c} …</td>'
            for c in columns
        )
        return f'<tr class="{css}"><th class="label">{label}</th>{cells}</tr>'

    def bar(line: IterationLine) -> str:
        kind = "green" if line.passed else ("flaky" if line.flaky else "red")
        height = max(2, round(_BAR_PX * line.duration_ms / slowest))
        return (
            f'<td><div class="bar {kind}" style="height:{height}px" title="iteration '
            f'{line.iteration}: exit {line.exit_code}, {_seconds(line.duration_ms)}"></div></td>'
        )

    def failing(line: IterationLine) -> str:
        return f"<td>{'—' if line.failing_tests is None else line.failing_tests}</td>"

    head = [
        row("bars", "", bar),
        row("iteration", "iteration", lambda line: f'<td class="it">{line.iteration}</td>'),
        row("duration", "duration", lambda line: f"<td>{_seconds(line.duration_ms)}</td>"),
        row("exit", "exit code", lambda line: f"<td>{line.exit_code}</td>"),
        row("failing", "failing tests", failing),
    ]
    if any(line.flaky for line in report.iterations):  # same code, both outcomes
        head.append(row("flaky", "flaky", lambda line: f"<td>{'flaky' * line.flaky}</td>"))
    body = [_test_row(test, columns) for test in report.grid]
    return (
        '<div class="scroll"><table class="grid"><thead>'
        + "".join(head)
        + "</thead><tbody>"
        + "".join(body)
        + "</tbody></table></div>"
    )


def _test_row(test: TestRow, columns: list[IterationLine | int]) -> str:
    cells = []
    for column in columns:
        if not isinstance(column, IterationLine):
            cells.append('<td class="gap">…</td>')
            continue
        outcome = test.outcomes.get(column.iteration)
        if outcome is None:
            cells.append('<td class="cell none" title="not run">·</td>')
            continue
        css = outcome if outcome in _CELLS else "other"
        title = html.escape(f"{test.test}, iteration {column.iteration}: {outcome}")
        mark = _CELLS.get(outcome, "?")
        cells.append(f'<td class="cell {css}" title="{title}">{mark}</td>')
    name = html.escape(test.test)
    return f'<tr class="test"><th class="label" title="{name}">{name}</th>{"".join(cells)}</tr>'


def _grid_notes(report: SpecReport) -> str:
    notes = []
    if report.grid_more:
        notes.append(
            f"{_count(report.grid_more, 'more test')} failed at least once (not shown; "
            f"<code>genesis-logging failures {html.escape(report.spec)}</code> lists them)"
        )
    if report.never_failed:
        notes.append(f"{_count(report.never_failed, 'test')} never failed (not shown)")
    if len(report.iterations) > _COLUMNS:
        notes.append(
            f"{len(report.iterations) - _COLUMNS} iterations between {_HEAD} and "
            f"the latest {_COLUMNS - _HEAD} not shown"
        )
    legend = "".join(f'<span class="{css}">{mark} {css}</span>' for css, mark in _CELLS.items())
    legend += '<span class="none">· not run</span>'
    text = f'<p class="note">{"; ".join(notes)}.</p>' if notes else ""
    return f'<p class="legend">{legend}</p>{text}'


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _ranges(iterations: tuple[int, ...]) -> str:
    """``1, 2, 3, 7`` as ``1-3, 7`` (with an en dash, as people write ranges)."""
    parts: list[str] = []
    start = previous = iterations[0]
    for i in [*iterations[1:], None]:
        if i is not None and i == previous + 1:
            previous = i
            continue
        parts.append(str(start) if start == previous else f"{start}–{previous}")
        if i is not None:
            start = previous = i
    return ", ".join(parts)


_NO_LINE: Final = "<i>(no message recorded)</i>"


def _failures_html(report: SpecReport) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(f.test) if f.test else '<i>the command (no test records)</i>'}</td>"
        f'<td>{_ranges(f.iterations)}</td><td class="line">{e(f.line) or _NO_LINE}</td></tr>'
        for f in report.failures[:FAILURES]
    )
    more = len(report.failures) - FAILURES
    note = f'<p class="note">{_count(more, "more failure")} not shown.</p>' if more > 0 else ""
    return (
        "<h2>Why tests failed, latest first</h2>"
        '<table class="rows failures"><tr><th>test</th><th>iterations</th><th>assertion</th></tr>'
        f"{rows}</table>{note}"
    )


def _root(paths: list[str]) -> str:
    """The folder the snapshot's files share, named once instead of on every file."""
    named = [p for p in paths if p]
    if not named:
        return ""
    try:
        root = os.path.commonpath(named)
    except ValueError:  # absolute and relative paths mixed
        return ""
    return os.path.dirname(root) if root in named else root


def _change_html(change: FileChange, root: str) -> str:
    e = html.escape
    name = e(os.path.relpath(change.path, root) if root else change.path) or "the snapshot"
    if change.status == "changed":
        status = f"changed: +{change.added} −{change.removed}"
    else:
        status = f"{change.status}: {_count(max(change.added, change.removed), 'line')}"
    lines = change.diff.splitlines()
    rows = []
    for line in lines[:DIFF_LINES]:
        css = (
            "add" if line.startswith("+") else "del" if line.startswith("-")
            else "hunk" if line.startswith("@@") else ""
        )  # fmt: skip
        rows.append(f'<span class="{css}">{e(line)}</span>' if css else e(line))
    if len(lines) > DIFF_LINES:
        rows.append(f'<span class="hunk">… {len(lines) - DIFF_LINES} more lines</span>')
    body = '<pre class="diff">' + "\n".join(rows) + "</pre>" if rows else ""
    return f'<h3>{name} <span class="status">{status}</span></h3>{body}'


def _changes_html(report: SpecReport) -> str:
    assert report.diff_between is not None
    red, green = report.diff_between
    parts = [f"<h2>What changed from red iteration {red} to green iteration {green}</h2>"]
    if not report.changes and not report.unchanged_files:
        parts.append("<p>(no code snapshot recorded: run with <code>--snapshot</code>)</p>")
    elif not report.changes:
        parts.append("<p>(the code is equal)</p>")
    else:
        root = _root([change.path for change in report.changes])
        counts = (
            f"{_count(len(report.changes), 'file')} changed, {report.unchanged_files} unchanged"
        )
        where = f" in <code>{html.escape(root)}</code>" if root else ""
        parts.append(f'<p class="note">{counts}{where}.</p>')
        parts.extend(_change_html(change, root) for change in report.changes)
    return "".join(parts)


def render_html(report: SpecReport) -> str:
    """One self-contained page for one spec."""
    e = html.escape
    parts = [
        f"<h1>spec {e(report.spec)}</h1>",
        f'<p class="summary">{e(state(report))}; {len(report.iterations)} iterations, '
        f"{_seconds(report.total_ms)} in all; pass rate <b>{report.pass_rate:.0%}</b> "
        f"({report.passed_runs} of {report.runs} runs passed)</p>",
    ]
    if report.iterations:
        parts += ["<h2>Iterations and tests</h2>", _grid(report), _grid_notes(report)]
    if report.failures:
        parts.append(_failures_html(report))
    if report.slowest_to_green:
        rows = "".join(
            f"<tr><td>{e(t)}</td><td>{r}</td><td>{g}</td><td>{g - r}</td></tr>"
            for t, r, g in report.slowest_to_green
        )
        parts.append(
            '<h2>Tests that took longest to go green</h2><table class="rows"><tr><th>test</th>'
            f"<th>first red</th><th>green</th><th>iterations</th></tr>{rows}</table>"
        )
    if report.diff_between:
        parts.append(_changes_html(report))
    return _page(f"genesis-logging: spec {report.spec}", "\n".join(parts))


def render_summaries_html(summaries: list[SpecSummary]) -> str:
    """Every spec: one row each, its pass rate as a bar with the number beside it."""
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s.spec)}</td><td>{s.iterations}</td>"
        f"<td>{s.first_green if s.first_green is not None else '—'}</td>"
        f'<td><span class="rate"><div class="{"green" if s.first_green is not None else "red"}" '
        f'style="width:{max(1, round(200 * s.pass_rate))}px"></div></span> '
        f'<span class="pct">{s.pass_rate:.0%}</span> ({s.passed_runs} of {s.runs} runs)</td>'
        f"<td>{_seconds(s.total_ms)}</td></tr>"
        for s in summaries
    )
    body = (
        '<h1>All specs</h1><table class="rows"><tr><th>spec</th><th>iterations</th>'
        f"<th>first green</th><th>pass rate</th><th>time</th></tr>{rows}</table>"
    )
    return _page("genesis-logging: all specs", body)
