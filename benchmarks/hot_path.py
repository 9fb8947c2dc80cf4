"""The caller's hot path — record → row → JSON line — now and at an earlier revision.

    python benchmarks/hot_path.py [--before a45f99e]

Times ``GenesisJsonFormatter.format`` (which runs the record → row conversion shared with
the ClickHouse handler) for the working tree and for ``--before`` (checked out into a
temporary git worktree), alternating the two in separate processes, and prints the
cProfile of each: the profile before and after an optimisation, side by side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = r"""
import cProfile, io, json, logging, pstats, sys, time
from genesis_logging import GenesisJsonFormatter
record = logging.LogRecord("svc.worker", logging.INFO, "/src/w.py", 7, "task %s done", ("T01",), None)
record.__dict__.update(spec_id="spec_001", iteration=3, task_id="T01", duration_ms=12, topic="orders")
formatter = GenesisJsonFormatter()
for _ in range(2000):
    formatter.format(record)
n = 50000
started = time.perf_counter()
for _ in range(n):
    formatter.format(record)
elapsed = (time.perf_counter() - started) / n * 1e6
profile = None
if sys.argv[1] == "profile":
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20000):
        formatter.format(record)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(8)
    profile = out.getvalue()
print(json.dumps({"us_per_record": elapsed, "profile": profile}))
"""


def probe(src: Path, mode: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, "-c", PROBE, mode],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(src), "PATH": "/usr/bin:/bin"},
    )
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="a45f99e", help="the revision to compare with")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        worktree = Path(tmp) / "before"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), args.before],
            check=True,
            capture_output=True,
        )
        try:
            before_src, after_src = worktree / "src", ROOT  # the layout moved to the top level
            before, after = [], []
            for i in range(args.rounds):
                pair = (before_src, after_src) if i % 2 == 0 else (after_src, before_src)
                for src in pair:
                    (before if src == before_src else after).append(
                        float(probe(src, "time")["us_per_record"])
                    )  # type: ignore[arg-type]
            ratios = sorted(b / a for b, a in zip(before, after, strict=True))
            profiles = {
                name: probe(src, "profile")["profile"]
                for name, src in (("before", before_src), ("after", after_src))
            }
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                check=False,
                capture_output=True,
            )
    result = {
        "before_revision": args.before,
        "us_per_record_before": statistics.median(before),
        "us_per_record_after": statistics.median(after),
        "speedup_median": statistics.median(ratios),
        "speedup_min": ratios[0],
        "speedup_max": ratios[-1],
        "profiles": profiles,
    }
    print(
        f"record -> JSON line: before ({args.before}) {result['us_per_record_before']:.2f} us, "
        f"after {result['us_per_record_after']:.2f} us, speed-up {result['speedup_median']:.2f}x "
        f"({ratios[0]:.2f}..{ratios[-1]:.2f})"
    )
    for name, text in profiles.items():
        print(f"\n--- profile {name} ---\n{text}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "hot_path.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
