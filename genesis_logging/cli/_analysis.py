"""``genesis-logging failures|diff|verify``: what failed, what changed, is it green."""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from typing import Any, TextIO

from genesis_logging.loop import (
    Run,
    TestResult,
    causes,
    diff_code,
    failure_line,
    flaky_runs,
    flaky_tests,
    load_runs,
    load_tests,
    verify,
)
from genesis_logging.store import Store

from ._common import CommandError, add_format_option, describe, open_log_store, store_options

__all__ = ["add_analysis_commands"]


def _load(
    args: argparse.Namespace, *, with_code: bool = False
) -> tuple[list[Run], list[TestResult]]:
    store: Store = open_log_store(args)
    try:
        return load_runs(store, args.spec, with_code=with_code), load_tests(store, args.spec)
    except Exception as error:
        raise CommandError(f"query failed on {store.name}: {describe(error)}") from None
    finally:
        store.close()


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return "…" + text[-limit:]  # the end of a log says the most


def _run_failures(
    run: Run, tests: list[TestResult], flaky: set[str], limit: int
) -> dict[str, Any]:
    failing = [t for t in tests if t.failed]
    return {
        "iteration": run.iteration,
        "exit_code": run.exit_code,
        "duration_ms": run.duration_ms,
        "timestamp": str(run.timestamp),
        "level": "error",
        "stderr": _bounded(run.stderr, limit),
        "stdout": "" if run.stderr.strip() else _bounded(run.stdout, limit),
        "tests": [
            {
                "test": t.test,
                "outcome": t.outcome,
                "line": failure_line(t.text),
                "flaky": t.test in flaky,
            }
            for t in failing
        ],
    }


def cmd_failures(args: argparse.Namespace, out: TextIO) -> int:
    runs, tests = _load(args)
    if args.by_cause:
        return _by_cause(args, out, runs, tests)
    flaky = flaky_tests(tests)
    flaky_code = flaky_runs(runs)
    by_iteration: dict[int, list[TestResult]] = defaultdict(list)
    for test in tests:
        by_iteration[test.iteration].append(test)
    failed = [r for r in reversed(runs) if not r.passed][: args.limit]
    reports = [_run_failures(r, by_iteration[r.iteration], flaky, args.max_chars) for r in failed]
    if args.format == "json":
        out.writelines(json.dumps(report, ensure_ascii=False) + "\n" for report in reports)
        return 0
    if not reports:
        out.write(f"no failing run recorded for spec {args.spec!r}\n")
    for run, report in zip(failed, reports, strict=True):
        out.write(_render_run(args.spec, run, report, run.code_hash in flaky_code, args.max_chars))
    return 0


def _render_run(spec: str, run: Run, report: dict[str, Any], flaky: bool, limit: int) -> str:
    mark = " · flaky: this code also passed" if flaky else ""
    lines = [
        f"spec {spec} · iteration {run.iteration} · exit code {run.exit_code} · "
        f"{run.duration_ms} ms · {run.timestamp}{mark}"
    ]
    if report["tests"]:
        for test in report["tests"]:
            flag = " (flaky)" if test["flaky"] else ""
            lines.append(f"  {test['outcome'].upper():<6} {test['test']}{flag} — {test['line']}")
    else:
        stream, text = (
            ("stderr", report["stderr"])
            if report["stderr"].strip()
            else ("stdout", report["stdout"])
        )
        lines.append(f"  {stream}:")
        lines.extend(_tail_lines(text, limit - sum(len(line) + 1 for line in lines)))
    return "\n".join(lines) + "\n\n"


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
    args: argparse.Namespace, out: TextIO, runs: list[Run], tests: list[TestResult]
) -> int:
    grouped = causes(runs, tests)
    if args.format == "json":
        for cause in grouped:
            record = {
                "fingerprint": cause.fingerprint,
                "count": cause.count,
                "first_iteration": min(cause.iterations),
                "last_iteration": max(cause.iterations),
                "example": cause.example,
                "tests": sorted(cause.tests),
            }
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        return 0
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


def cmd_diff(args: argparse.Namespace, out: TextIO) -> int:
    runs, tests = _load(args, with_code=True)
    iterations = sorted({r.iteration for r in runs})
    if len(iterations) < 2 and (args.a is None or args.b is None):
        raise CommandError(f"spec {args.spec!r} has fewer than two iterations to compare")
    a = args.a if args.a is not None else iterations[-2]
    b = args.b if args.b is not None else iterations[-1]
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
    code = diff_code(run_a.code, run_b.code, a, b)
    out.write("\n" + (code or "(the code snapshots are equal)\n"))
    return 0


def _latest_run(runs: list[Run], iteration: int, spec: str) -> Run:
    matching = [r for r in runs if r.iteration == iteration]
    if not matching:
        raise CommandError(f"spec {spec!r} has no run for iteration {iteration}")
    return matching[-1]


def cmd_verify(args: argparse.Namespace, out: TextIO) -> int:
    runs, _ = _load(args)
    verdict = verify(runs)
    out.write(f"{verdict.reason}\n")
    out.writelines(f"{note}\n" for note in verdict.notes)
    return 0 if verdict.ok else 1


def add_analysis_commands(commands: Any) -> None:
    reads = store_options(writes=False)
    failures = commands.add_parser(
        "failures", parents=[reads], help="what failed in a spec, readably and bounded"
    )
    add_format_option(failures, "table", "json")
    failures.add_argument("spec", help="spec_id")
    failures.add_argument("--limit", type=int, default=10, help="failing runs shown, newest first")
    failures.add_argument(
        "--max-chars", type=int, default=2000, help="characters shown per run (default 2000)"
    )
    failures.add_argument(
        "--by-cause", action="store_true", help="group failures across iterations by their cause"
    )
    failures.set_defaults(handler=cmd_failures)

    diff = commands.add_parser(
        "diff", parents=[reads], help="what changed between two iterations of a spec"
    )
    diff.add_argument("spec", help="spec_id")
    diff.add_argument(
        "a", type=int, nargs="?", help="the earlier iteration (default: the one before b)"
    )
    diff.add_argument("b", type=int, nargs="?", help="the later iteration (default: the last)")
    diff.set_defaults(handler=cmd_diff)

    check = commands.add_parser(
        "verify",
        parents=[reads],
        help="exit 0 only if the latest iteration passed and its code is unchanged (stop hooks)",
    )
    check.add_argument("spec", help="spec_id")
    check.set_defaults(handler=cmd_verify)
