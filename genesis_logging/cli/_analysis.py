"""``genesis-logging failures|diff|verify``: what failed, what changed, is it green.

Each answer opens with where the spec stands now, and is bounded: what it leaves out is
marked, with the option that shows it.
"""

from __future__ import annotations

import argparse
import os
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

from genesis_logging.loop import (
    FileDiff,
    IterationState,
    Run,
    TestResult,
    add_failure_text,
    causes,
    diff_files,
    failure_line,
    flaky_runs,
    flaky_tests,
    iterations_sharing_code,
    latest_state,
    load_runs,
    load_summaries,
    load_test_records,
    load_tests,
    verify,
)
from genesis_logging.runner import split_snapshot
from genesis_logging.store import Store

from ._common import (
    CommandError,
    add_format_option,
    describe,
    number_argument,
    open_log_store,
    require_spec,
    store_options,
    text_argument,
)
from ._output import json_line

__all__ = ["add_analysis_commands"]

_T = TypeVar("_T")
_NAMES = 20  # file names listed before "and N more"
DIFF_CHARS = 10_000  # default size of diff's code part


def _read(
    args: argparse.Namespace, read: Callable[[Store], _T], found: Callable[[_T], bool]
) -> _T:
    """``read(store)``; when it ``found`` nothing, an unknown spec is an error in words."""
    store: Store = open_log_store(args)
    try:
        try:
            answer = read(store)
        except Exception as error:
            raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
        if not found(answer):
            require_spec(store, args.spec)
        return answer
    finally:
        store.close()


# -- failures ------------------------------------------------------------------------------


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:]  # the end of a log says the most


_SUBTESTS_FAILED = re.compile(r"contains \d+ failed subtests?$")


def _failing_tests(
    tests: list[TestResult], flaky: set[str], limit: int
) -> tuple[list[dict[str, Any]], int]:
    """The failing tests that fit in ``limit`` characters, and how many did not."""
    shown: list[dict[str, Any]] = []
    used = 0
    failing = [t for t in tests if t.failed]
    for test in failing:
        first = test.text.lstrip().split("\n", 1)[0]
        # a test failed by its subtests: they are listed with their own assertions
        line = first if _SUBTESTS_FAILED.match(first) else failure_line(test.text)
        used += len(test.test) + len(line) + 16
        if shown and used > limit:
            break
        shown.append(
            {
                "test": test.test,
                "outcome": test.outcome,
                "kind": test.kind,
                "detail": test.detail,
                "line": line,
                "flaky": test.test in flaky,
            }
        )
    return shown, len(failing) - len(shown)


def _report(
    state: IterationState, flaky: set[str], flaky_code: set[str], limit: int, *, latest: bool
) -> dict[str, Any]:
    """One iteration's failures (or its green) as the JSON object both formats render."""
    run, passed = state.run, state.passed
    tests, omitted = _failing_tests(state.tests, flaky, limit)
    stderr = run.stderr if run is not None and not passed else ""
    stdout = run.stdout if run is not None and not passed and not stderr.strip() else ""
    return {
        "latest": latest,
        "state": "green" if passed else "red",
        "iteration": state.iteration,
        "exit_code": run.exit_code if run is not None else None,
        "duration_ms": run.duration_ms if run is not None else None,
        "timestamp": str(run.timestamp) if run is not None else None,
        "level": "info" if passed else "error",
        "summary": state.summary,
        "flaky": run is not None and run.code_hash in flaky_code,
        "stderr": _bounded(stderr, limit),
        "stdout": _bounded(stdout, limit),
        "tests": tests,
        "tests_not_shown": omitted,
    }


def cmd_failures(args: argparse.Namespace, out: TextIO) -> int:
    def read(store: Store) -> tuple[list[Run], Any]:
        runs = load_runs(store, args.spec)
        if args.by_cause:  # every failure's text: its cause is read from it
            records = load_test_records(store, args.spec, with_text=False)
            failed = {test.iteration for test in records.tests if test.failed}
            return runs, add_failure_text(store, args.spec, records, failed)
        summaries = load_summaries(store, args.spec)
        known = {run.iteration for run in runs} | set(summaries)
        if not known:  # tests without runs or sessions (a killed pytest): read them all
            return runs, load_test_records(store, args.spec)
        latest = max(known)
        latest_run = next((r for r in reversed(runs) if r.iteration == latest), None)
        shown = {latest} | {r.iteration for r in _earlier_failing(runs, latest_run, args.limit)}
        needed = iterations_sharing_code(runs, shown)  # and what flakiness needs
        return runs, load_test_records(store, args.spec, iterations=needed)

    runs, records = _read(args, read, lambda found: bool(found[0] or found[1].tests))
    tests = records.tests
    state = latest_state(runs, tests, records.summaries)
    if state is None:
        out.write(f"spec {args.spec}: no run or test recorded\n")
        return 0
    flaky, flaky_code = flaky_tests(tests), flaky_runs(runs)
    latest = _report(state, flaky, flaky_code, args.max_chars, latest=True)
    if args.by_cause:
        return _by_cause(args, out, runs, tests, latest)
    by_iteration: dict[int, list[TestResult]] = defaultdict(list)
    for test in tests:
        by_iteration[test.iteration].append(test)
    earlier = _earlier_failing(runs, state.run, args.limit)
    history = [
        _report(
            IterationState(
                r.iteration, r, by_iteration[r.iteration], records.summaries.get(r.iteration, "")
            ),
            flaky,
            flaky_code,
            args.max_chars,
            latest=False,
        )
        for r in earlier
    ]
    if args.format == "json":
        out.writelines(json_line(r) for r in [latest, *history])
        return 0
    out.write(_render(args.spec, latest, args.max_chars))
    if history:
        out.write("\nhistory: earlier failing iterations, newest first\n")
    elif len({r.iteration for r in runs}) > 1:
        out.write("\nhistory: no earlier failing iteration\n")
    out.writelines(_render(args.spec, report, args.max_chars) for report in history)
    return 0


def _earlier_failing(runs: list[Run], latest: Run | None, limit: int) -> list[Run]:
    """The failing runs before the latest one, newest first, at most ``limit``."""
    return [r for r in reversed(runs) if not r.passed and r is not latest][:limit]


def _headline(spec: str, report: dict[str, Any]) -> str:
    """``spec X: iteration 3 is green (exit code 0; 3 passed) · 1491 ms · when``."""
    counts = f"; {report['summary']}" if report["summary"] else ""
    if report["exit_code"] is None:
        said = f"no run record{counts}"
    else:
        said = f"exit code {report['exit_code']}{counts}"
    timing = (
        f" · {report['duration_ms']} ms · {report['timestamp']}"
        if report["duration_ms"] is not None
        else ""
    )
    mark = " · flaky: this code also passed" if report["flaky"] else ""
    if report["latest"]:
        state = f"iteration {report['iteration']} is {report['state']}"
        return f"spec {spec}: {state} ({said}){timing}{mark}"
    return f"spec {spec} · iteration {report['iteration']} · {said}{timing}{mark}"


def _render(spec: str, report: dict[str, Any], limit: int) -> str:
    lines = [_headline(spec, report)]
    for test in report["tests"]:
        flag = " (flaky)" if test["flaky"] else ""
        if test["kind"] == "test":
            lines.append(f"  {test['outcome'].upper():<6} {test['test']}{flag} — {test['line']}")
        else:  # as pytest prints it: SUBFAILED[msg] (params) test
            shown = test["detail"] or f"[{test['kind']}]"
            outcome = (
                f"SUB{test['outcome'].upper()}"
                if test["kind"] == "subtest"
                else test["outcome"].upper()
            )
            lines.append(f"  {outcome}{shown} {test['test']}{flag} — {test['line']}")
    if report["tests_not_shown"]:
        lines.append(
            f"  … {report['tests_not_shown']} more failing tests not shown (--max-chars "
            f"{limit * 4} shows more, --format json for tools)"
        )
    if not report["tests"] and report["state"] == "red":
        stream = "stderr" if report["stderr"].strip() else "stdout"
        text = report[stream]
        if text.strip():
            lines.append(f"  {stream}:")
            lines.extend(_tail_lines(text, limit - sum(len(line) + 1 for line in lines)))
    return "\n".join(lines) + "\n"


def _tail_lines(text: str, budget: int) -> list[str]:
    """The last lines of ``text``, indented, that fit in ``budget`` characters."""
    kept: list[str] = []
    for line in reversed(text.rstrip().splitlines()):
        shown = f"    {line}"
        if len(shown) + 1 > budget - 6:
            kept.append("    …")
            break
        kept.append(shown)
        budget -= len(shown) + 1
    return kept[::-1]


def _by_cause(
    args: argparse.Namespace,
    out: TextIO,
    runs: list[Run],
    tests: list[TestResult],
    latest: dict[str, Any],
) -> int:
    grouped = causes(runs, tests)
    if args.format == "json":
        out.write(json_line(latest))
        for cause in grouped:
            record = {
                "fingerprint": cause.fingerprint,
                "count": cause.count,
                "first_iteration": min(cause.iterations),
                "last_iteration": max(cause.iterations),
                "example": cause.example,
                "tests": sorted(cause.tests),
            }
            out.write(json_line(record))
        return 0
    out.write(_headline(args.spec, latest) + "\n")
    if not grouped:
        out.write(f"no failure recorded for spec {args.spec!r}\n")
    for cause in grouped:
        span = f"iterations {min(cause.iterations)}–{max(cause.iterations)}"
        out.write(
            f"{cause.count}× [{cause.fingerprint}] {span}: {cause.example[: args.max_chars]}\n"
        )
        for test in sorted(cause.tests):
            out.write(f"    {test}\n")
    return 0


# -- diff ----------------------------------------------------------------------------------


def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    def read(store: Store) -> tuple[list[Run], list[TestResult]]:
        runs = load_runs(store, args.spec, with_text=False)
        iterations = sorted({r.iteration for r in runs})
        if len(iterations) >= 2 or (args.a is not None and args.b is not None):
            pair = {
                args.a if args.a is not None else iterations[-2],
                args.b if args.b is not None else iterations[-1],
            }  # only these two runs' code: it is the store's bulkiest column
            coded = load_runs(store, args.spec, with_code=True, with_text=False, iterations=pair)
            runs = [r for r in runs if r.iteration not in pair] + coded
            needed = iterations_sharing_code(runs, pair)  # the pair, and what flakiness needs
            return runs, load_tests(store, args.spec, with_text=False, iterations=needed)
        return runs, load_tests(store, args.spec, with_text=False)

    runs, tests = _read(args, read, lambda found: bool(found[0]))
    iterations = sorted({r.iteration for r in runs})
    if len(iterations) < 2 and (args.a is None or args.b is None):
        raise CommandError(f"spec {args.spec!r} has fewer than two iterations to compare")
    a = args.a if args.a is not None else iterations[-2]
    b = args.b if args.b is not None else iterations[-1]
    runs.sort(key=lambda r: (r.iteration, str(r.timestamp)))
    run_a, run_b = _latest_run(runs, a, args.spec), _latest_run(runs, b, args.spec)
    outcome_a = {t.test: t.failed for t in tests if t.iteration == a}
    outcome_b = {t.test: t.failed for t in tests if t.iteration == b}
    flaky = flaky_tests(tests)
    newly = sorted(t for t, f in outcome_b.items() if f and not outcome_a.get(t, False))
    fixed = sorted(t for t, f in outcome_a.items() if f and t in outcome_b and not outcome_b[t])
    still = sorted(t for t, f in outcome_b.items() if f and outcome_a.get(t, False))
    out.write(
        f"spec {args.spec}: iteration {a} → {b}\n"
        f"  exit code {run_a.exit_code} → {run_b.exit_code}; "
        f"duration {run_a.duration_ms} ms → {run_b.duration_ms} ms\n"
    )
    for title, names in (("newly failing", newly), ("fixed", fixed), ("still failing", still)):
        out.write(f"  {title}: {len(names)}\n")
        out.writelines(f"    {n}{' (flaky)' if n in flaky else ''}\n" for n in names)
    out.write("\n" + _code_changes(args, run_a, run_b))
    return 0


def _code_changes(args: argparse.Namespace, run_a: Run, run_b: Run) -> str:
    """The code part of ``diff``: which files differ, then their diffs, within the cap."""
    a, b = run_a.iteration, run_b.iteration
    if not run_a.code and not run_b.code:
        return f"(no code snapshot recorded for iterations {a} and {b}: run with --snapshot)\n"
    files = run_b.snapshot_files or run_a.snapshot_files
    name = next(iter(files)) if len(files) == 1 else ""
    diffs = diff_files(run_a.code, run_b.code, a, b, name=name)
    if args.file:
        diffs = _only(diffs, args.file, run_a, run_b)
        if not diffs:
            return f"({', '.join(args.file)}: equal in iterations {a} and {b})\n"
    if not diffs:
        return "(the code snapshots are equal)\n"
    listed = "; ".join(f"{d.change} {d.path}" for d in diffs[:_NAMES])
    more = f"; and {len(diffs) - _NAMES} more" if len(diffs) > _NAMES else ""
    count = "1 file differs" if len(diffs) == 1 else f"{len(diffs)} files differ"
    return f"code: {count}: {listed}{more}\n" + _capped(diffs, args.max_chars)


def _capped(diffs: list[FileDiff], limit: int) -> str:
    """The diffs, cut at ``limit`` characters (0: no cap) with a marker saying what is
    left out and how to see it."""
    parts: list[str] = []
    used = 0
    for position, diff in enumerate(diffs):
        text = diff.text or f"({diff.path}: {diff.change}, past the snapshot limit)\n"
        if limit and used + len(text) > limit:
            room = max(limit - used, 0)
            parts.append(text[: text.rfind("\n", 0, room) + 1])
            rest = [d.path for d in diffs[position:]]
            names = ", ".join(rest[:5]) + (f" and {len(rest) - 5} more" if len(rest) > 5 else "")
            parts.append(
                f"… [diff cut at {limit} characters; not shown in full: {names}. "
                f"See more with --max-chars N (0: everything) or one file with --file PATH]\n"
            )
            break
        parts.append(text)
        used += len(text)
    return "".join(parts)


def _only(diffs: list[FileDiff], wanted: list[str], run_a: Run, run_b: Run) -> list[FileDiff]:
    """The diffs of the files asked for (a path as recorded, or any tail of it)."""
    known = list(dict.fromkeys([*split_snapshot(run_a.code), *split_snapshot(run_b.code)]))
    for path in wanted:
        if not any(_same_file(k, path) for k in known):
            names = ", ".join(known[:_NAMES]) + (" …" if len(known) > _NAMES else "")
            raise CommandError(
                f"no file {path!r} in the snapshots of iterations {run_a.iteration} and "
                f"{run_b.iteration}; their files: {names}"
            )
    return [d for d in diffs if any(_same_file(d.path, path) for path in wanted)]


def _same_file(recorded: str, given: str) -> bool:
    recorded, given = os.path.normpath(recorded), os.path.normpath(given)
    return (
        recorded == given
        or recorded.endswith(os.sep + given)
        or given.endswith(os.sep + recorded.lstrip(os.sep))
    )


def _latest_run(runs: list[Run], iteration: int, spec: str) -> Run:
    matching = [r for r in runs if r.iteration == iteration]
    if not matching:
        raise CommandError(f"spec {spec!r} has no run for iteration {iteration}")
    return matching[-1]


# -- verify --------------------------------------------------------------------------------


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    runs = _read(args, lambda store: load_runs(store, args.spec, with_text=False), bool)
    verdict = verify(runs)
    out.write(f"{verdict.reason}\n")
    out.writelines(f"{note}\n" for note in verdict.notes)
    return 0 if verdict.ok else 1


def add_analysis_commands(commands: Any) -> None:
    reads = store_options(writes=False)
    failures = commands.add_parser(
        "failures",
        parents=[reads],
        help="where a spec stands, then what failed before it, readably and bounded",
    )
    add_format_option(failures, "table", "json")
    failures.add_argument("spec", type=text_argument("the spec id"), help="spec_id")
    failures.add_argument(
        "--limit",
        type=number_argument(int, 0, "a whole number >= 0"),
        default=10,
        help="earlier failing runs shown, newest first",
    )
    failures.add_argument(
        "--max-chars",
        type=number_argument(int, 100, "a whole number >= 100"),
        default=2000,
        help="characters shown per run (default 2000)",
    )
    failures.add_argument(
        "--by-cause", action="store_true", help="group failures across iterations by their cause"
    )
    failures.set_defaults(handler=cmd_failures)

    diff = commands.add_parser(
        "diff", parents=[reads], help="what changed between two iterations of a spec, per file"
    )
    diff.add_argument("spec", type=text_argument("the spec id"), help="spec_id")
    diff.add_argument(
        "a", type=int, nargs="?", help="the earlier iteration (default: the one before b)"
    )
    diff.add_argument("b", type=int, nargs="?", help="the later iteration (default: the last)")
    diff.add_argument(
        "--max-chars",
        type=number_argument(int, 0, "a whole number >= 0"),
        default=DIFF_CHARS,
        help=f"characters of code diff shown (default {DIFF_CHARS}; 0: everything)",
    )
    diff.add_argument(
        "--file",
        action="append",
        metavar="PATH",
        help="only this file's diff (as recorded, or its last parts); repeatable",
    )
    diff.set_defaults(handler=cmd_diff)

    check = commands.add_parser(
        "verify",
        parents=[reads],
        help="exit 0 only if the latest iteration passed and its snapshotted trees are "
        "unchanged: no file edited, added, deleted or renamed (stop hooks)",
    )
    check.add_argument("spec", type=text_argument("the spec id"), help="spec_id")
    check.set_defaults(handler=cmd_verify)
