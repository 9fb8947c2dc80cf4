"""How long ``genesis-logging report`` spends querying a large spec.

    python benchmarks/report_scale.py              # 10 000 iterations, 3 tests each, local store
    python benchmarks/report_scale.py --iterations 100 --snapshot-kb 600   # a real project's code

Writes the records as the local store would (JSON lines), then times the report's reads
(``build_report``: every run with its code snapshot, every test with its failure text) and
the rendering, median of 5, and the peak memory of the process. Figures go to
docs/tdd-loop.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from genesis_logging._codec import row_to_json_line  # noqa: E402
from genesis_logging.report import build_report, render_html, render_terminal  # noqa: E402
from genesis_logging.store import LocalStore  # noqa: E402


def write_store(directory: Path, iterations: int, snapshot_kb: int = 0) -> None:
    started = 1_764_300_000_000
    filler = "".join(f"# ===== src/m{k}.py\n" + "x = 1\n" * 170 for k in range(snapshot_kb))
    with open(directory / "genesis-bench-1.jsonl", "w", encoding="utf-8") as out:
        for i in range(1, iterations + 1):
            red = i < iterations * 0.9 and i % 3 != 0
            for t in range(3):
                failed = red and t == 0
                out.write(row_to_json_line({
                    "timestamp": started + i * 1000 + t, "level": "error" if failed else "info",
                    "message": f"test {'failed' if failed else 'passed'}: test_{t}", "spec_id": "big",
                    "iteration": i, "exit_code": int(failed), "duration_ms": 10 + t,
                    "logger": "genesis.pytest", "service": "bench", "stderr": "E assert 1 == 2" if failed else "",
                    "attributes": {"kind": "test", "test": f"test_{t}", "outcome": "failed" if failed else "passed", "code_hash": f"h{i}"},
                }))  # fmt: skip
            out.write(row_to_json_line({
                "timestamp": started + i * 1000 + 5, "level": "error" if red else "info",
                "message": "run", "spec_id": "big", "iteration": i, "exit_code": int(red),
                "duration_ms": 100 + i % 50, "logger": "genesis.run", "service": "bench",
                "code_snapshot": f"# ===== src/f.py\ndef f():\n    return {i}\n{filler}",
                "attributes": {"code_hash": f"h{i}"},
            }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument(
        "--snapshot-kb", type=int, default=0, help="about this many KB of code per snapshot"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        write_store(directory, args.iterations, args.snapshot_kb)
        queries, renders = [], []
        for _ in range(5):
            store = LocalStore(directory)
            started = time.perf_counter()
            report = build_report(store, "big")
            queries.append(time.perf_counter() - started)
            store.close()
            started = time.perf_counter()
            render_terminal(report, colour=False)
            render_html(report)
            renders.append(time.perf_counter() - started)
    print(
        f"{args.iterations} iterations ({len(report.iterations)} shown): "
        f"queries {statistics.median(queries):.2f} s, rendering {statistics.median(renders):.2f} s "
        f"(median of 5); peak memory {peak_mb():.0f} MB"
    )


def peak_mb() -> float:
    """Peak resident memory of this process (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


if __name__ == "__main__":
    main()
