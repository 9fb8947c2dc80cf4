"""A picture of the loop: per iteration red or green, how long, how many tests failed.

The numbers come from the same records as every other command (through a
:class:`~genesis_logging.store.Store`); :func:`render_terminal` draws them for a person at
a terminal and :func:`render_html` as one self-contained page (inline SVG and CSS, nothing
fetched, no JavaScript).
"""

from __future__ import annotations

import html
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Final

from .loop import Run, TestResult, diff_code, flaky_runs, flaky_tests, load_runs, load_tests
from .store import Store

__all__ = [
    "IterationLine",
    "SpecReport",
    "SpecSummary",
    "build_report",
    "load_summaries",
    "render_html",
    "render_summaries_html",
    "render_summaries_terminal",
    "render_terminal",
]

_GREEN, _RED, _DIM, _RESET = "\033[32m", "\033[31m", "\033[2m", "\033[0m"
_BAR: Final = 30  # characters of the longest duration bar


@dataclass(frozen=True)
class IterationLine:
    """One iteration of a spec: its (latest) run and its tests."""

    iteration: int
    passed: bool
    exit_code: int
    duration_ms: int
    failing_tests: int | None  # None: no per-test records for this iteration
    flaky: bool


@dataclass
class SpecReport:
    """Everything the report shows of one spec."""

    spec: str
    iterations: list[IterationLine]
    failing: dict[int, list[str]] = field(default_factory=dict)  # iteration -> failing tests
    slowest_to_green: list[tuple[str, int, int]] = field(default_factory=list)  # test, red, green
    diff: str = ""  # code diff between the last red and the first green iteration
    diff_between: tuple[int, int] | None = None

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

    def as_json(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "iterations": [asdict(line) for line in self.iterations],
            "iterations_to_green": self.iterations_to_green,
            "total_ms": self.total_ms,
            "failing_tests": {str(k): v for k, v in self.failing.items()},
            "slowest_to_green": [
                {"test": t, "first_red": r, "green": g} for t, r, g in self.slowest_to_green
            ],
        }


def build_report(store: Store, spec: str) -> SpecReport:
    """The report of ``spec``: two light queries, and the code of two runs for the diff."""
    runs = load_runs(store, spec, with_text=False)
    tests = load_tests(store, spec, with_text=False)
    latest: dict[int, Run] = {}
    for run in runs:
        latest[run.iteration] = run  # oldest first: the last one wins
    failing: dict[int, list[str]] = defaultdict(list)
    tested: set[int] = set()
    for test in tests:
        tested.add(test.iteration)
        if test.failed:
            failing[test.iteration].append(test.test)
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
    report.slowest_to_green = _slowest_to_green(tests)
    _add_diff(store, spec, report)
    return report


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


def _add_diff(store: Store, spec: str, report: SpecReport) -> None:
    reds = [line.iteration for line in report.iterations if not line.passed]
    greens = [line.iteration for line in report.iterations if line.passed]
    if not reds or not greens or max(greens) < min(reds):
        return
    green = min(g for g in greens if g > min(reds))
    red = max(r for r in reds if r < green)
    code = store.query(
        f"SELECT iteration, code_snapshot FROM {store.logs} WHERE spec_id = {{spec:String}} "
        "AND logger = 'genesis.run' AND iteration IN ({a:UInt32}, {b:UInt32}) "
        "ORDER BY timestamp",
        {"spec": spec, "a": red, "b": green},
    )
    snapshots = {int(row[0]): str(row[1]) for row in code.rows}
    report.diff = diff_code(snapshots.get(red, ""), snapshots.get(green, ""), red, green)
    report.diff_between = (red, green)


# -- the terminal ----------------------------------------------------------------------------


def render_terminal(report: SpecReport, *, colour: bool) -> str:
    """One line per iteration, then iterations to green and total time."""
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


def _summary_line(report: SpecReport) -> str:
    to_green = report.iterations_to_green
    green = f"green after {to_green} iterations" if to_green else "not green yet"
    return f"  {green}; {len(report.iterations)} iterations, {_seconds(report.total_ms)} in all"


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
.green { fill: #2e9e5b; } .red { fill: #d64545; } .flaky { fill: #e0a030; }
table { border-collapse: collapse; } td, th { padding: .2em .8em; text-align: left; }
tr:nth-child(even) { background: #f3f4f7; }
pre.diff { background: #f7f7f9; padding: 1em; overflow-x: auto; }
pre.diff .add { color: #1f7a45; } pre.diff .del { color: #b03030; }
.axis { font-size: 10px; fill: #667; }
"""
# Nothing may be fetched: the page works from a file, offline, and leaks nothing.
_CSP: Final = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def _page(title: str, body: str) -> str:
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}\n</body></html>\n"
    )


def _timeline(report: SpecReport) -> str:
    lines = report.iterations
    width = max(320, min(1200, 12 * len(lines)))
    height, top = 160, 10
    step = width / max(1, len(lines))
    slowest = max((line.duration_ms for line in lines), default=1) or 1
    bars = []
    for position, line in enumerate(lines):
        h = max(2.0, (height - top - 20) * line.duration_ms / slowest)
        kind = "green" if line.passed else ("flaky" if line.flaky else "red")
        bars.append(
            f'<rect class="{kind}" x="{position * step:.2f}" y="{height - 20 - h:.2f}" '
            f'width="{max(1.0, step * 0.8):.2f}" height="{h:.2f}">'
            f"<title>iteration {line.iteration}: exit {line.exit_code}, "
            f"{_seconds(line.duration_ms)}</title></rect>"
        )
    labels = (
        f'<text class="axis" x="0" y="{height - 5}">iteration {lines[0].iteration}</text>'
        f'<text class="axis" x="{width}" y="{height - 5}" text-anchor="end">'
        f"iteration {lines[-1].iteration}</text>"
        if lines
        else ""
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of iterations">'
        f"{''.join(bars)}{labels}</svg>"
    )


def _diff_html(diff: str) -> str:
    rows = []
    for line in diff.splitlines():
        css = "add" if line.startswith("+") else "del" if line.startswith("-") else ""
        text = html.escape(line)
        rows.append(f'<span class="{css}">{text}</span>' if css else text)
    return '<pre class="diff">' + "\n".join(rows) + "</pre>"


def render_html(report: SpecReport) -> str:
    """One self-contained page for one spec."""
    e = html.escape
    parts = [f"<h1>spec {e(report.spec)}</h1>", f"<p>{e(_summary_line(report).strip())}</p>"]
    parts.append(_timeline(report))
    if report.failing:
        rows = "".join(
            f"<tr><td>{i}</td><td>{len(names)}</td><td>{e(', '.join(names))}</td></tr>"
            for i, names in report.failing.items()
        )
        parts.append(
            "<h2>Failing tests per iteration</h2><table><tr><th>iteration</th>"
            f"<th>failing</th><th>tests</th></tr>{rows}</table>"
        )
    if report.slowest_to_green:
        rows = "".join(
            f"<tr><td>{e(t)}</td><td>{r}</td><td>{g}</td><td>{g - r}</td></tr>"
            for t, r, g in report.slowest_to_green
        )
        parts.append(
            "<h2>Tests that took longest to go green</h2><table><tr><th>test</th>"
            f"<th>first red</th><th>green</th><th>iterations</th></tr>{rows}</table>"
        )
    if report.diff_between:
        red, green = report.diff_between
        parts.append(f"<h2>What changed from red iteration {red} to green iteration {green}</h2>")
        parts.append(_diff_html(report.diff) if report.diff else "<p>(the code is equal)</p>")
    return _page(f"genesis-logging: spec {report.spec}", "\n".join(parts))


def render_summaries_html(summaries: list[SpecSummary]) -> str:
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s.spec)}</td><td>{s.iterations}</td>"
        f"<td>{s.first_green if s.first_green is not None else '—'}</td>"
        f"<td>{s.pass_rate:.0%}</td><td>{_seconds(s.total_ms)}</td></tr>"
        for s in summaries
    )
    width = 400
    bars = "".join(
        f'<rect class="{"green" if s.first_green is not None else "red"}" x="0" y="{i * 18}" '
        f'width="{max(2, round(width * s.pass_rate))}" height="14"><title>{e(s.spec)}: '
        f"{s.pass_rate:.0%} of runs passed</title></rect>"
        for i, s in enumerate(summaries)
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{max(18, 18 * len(summaries))}" '
        f'role="img" aria-label="pass rate per spec">{bars}</svg>'
    )
    body = (
        "<h1>All specs</h1><table><tr><th>spec</th><th>iterations</th><th>first green</th>"
        f"<th>pass rate</th><th>time</th></tr>{rows}</table><h2>Pass rate</h2>{svg}"
    )
    return _page("genesis-logging: all specs", body)
