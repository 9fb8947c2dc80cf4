"""Instructions per logging call, beside the peers: a count that a noisy machine cannot move.

    python benchmarks/instructions.py            # prints a table, writes results/instructions.json
    python benchmarks/instructions.py --quick

``peers.py`` times the same calls; on a shared VM its rounds swing twofold (another guest
takes the core), so a ratio of 0.8 against 0.85 is inside the noise. Valgrind's callgrind
counts the instructions each thread executes, which is the same number run after run
whatever the machine is doing. Each contender runs in a child process under
``valgrind --tool=callgrind --separate-threads=yes`` twice, with ``LOW`` and ``HIGH``
calls after the same warm-up; the difference over ``HIGH - LOW`` calls is the cost of one
call, start-up and warm-up cancelled out:

- **caller**: the logging thread's instructions per call (the figure ``thread_time``
  approximates);
- **other threads**: every other thread's, per call (our worker building columns,
  OpenTelemetry's batch processor; 0 for ``QueueHandler`` with nobody consuming);
- **all threads**: the sum, the CPU work a record costs the process.

Instructions are not time (a cache miss costs more than an add), so this complements the
timed ratios of ``peers.py`` rather than replacing them. Needs Debian's ``valgrind`` and the
``peers.py`` extras (``pip install opentelemetry-sdk python-logstash-async``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CONTENDERS = ("null", "stdlib_queue", "ours", "opentelemetry", "logstash_async")
WARM_UP = 2_000


def child(name: str, calls: int) -> None:
    """One contender: warm up, settle, ``calls`` logging calls, settle, close."""
    sys.path.insert(0, str(Path(__file__).parent))
    import peers
    from run import EXTRA

    contender = getattr(peers, name)()
    log = contender.logger
    for i in range(WARM_UP):
        log.info("Task concluída %d", i, extra=EXTRA)
    contender.settle()
    for i in range(calls):
        log.info("Task concluída %d", i, extra=EXTRA)
    contender.settle()
    contender.handler.close()


def counted(name: str, calls: int) -> dict[int, int]:
    """Instructions per thread (thread number 1 is the main thread) of one child run."""
    directory = Path(tempfile.mkdtemp(prefix="genesis-instructions-"))
    try:
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--separate-threads=yes",
                f"--callgrind-out-file={directory}/out.%p",
                sys.executable,
                __file__,
                "--child",
                name,
                str(calls),
            ],
            check=True,
            capture_output=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},  # the same dict layouts every run
        )
        threads = {}
        for path in directory.glob("out.*-*"):
            thread = int(path.name.rsplit("-", 1)[1])
            summary = re.search(r"^(?:summary|totals): (\d+)", path.read_text(), re.M)
            assert summary is not None, path
            threads[thread] = int(summary.group(1))
        return threads
    finally:
        shutil.rmtree(directory)


def per_call(name: str, low: int, high: int) -> dict[str, float]:
    """Instructions of one call: the difference of two runs over their calls' difference."""
    with ThreadPoolExecutor(2) as pool:  # the counts do not depend on the machine's load
        few, many = pool.map(counted, (name, name), (low, high))
    calls = high - low
    caller = (many[1] - few[1]) / calls
    other = (
        sum(v for t, v in many.items() if t != 1) - sum(v for t, v in few.items() if t != 1)
    ) / calls
    return {"caller": caller, "other_threads": other, "all_threads": caller + other}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls")
    parser.add_argument("--child", nargs=2, metavar=("CONTENDER", "CALLS"), help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=CONTENDERS, action="append", help="these contenders")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    if shutil.which("valgrind") is None:
        sys.exit("needs valgrind (apt-get install valgrind)")
    low, high = (1_000, 4_000) if args.quick else (2_000, 12_000)
    figures = {name: per_call(name, low, high) for name in args.only or CONTENDERS}
    result = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "calls": [low, high],
        "instructions_per_call": figures,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "instructions.json").write_text(json.dumps(result, indent=2) + "\n")
    queue = figures.get("stdlib_queue")
    otel = figures.get("opentelemetry")
    print(f"instructions per call ({high - low} calls; Python {platform.python_version()})")
    print(f"  {'':<16} {'caller':>9} {'× Queue':>8} {'others':>9} {'all':>9} {'× OTel':>7}")
    for name, row in figures.items():
        print(
            f"  {name:<16} {row['caller']:>9.0f} "
            f"{row['caller'] / queue['caller'] if queue else float('nan'):>8.2f} "
            f"{row['other_threads']:>9.0f} {row['all_threads']:>9.0f} "
            f"{row['all_threads'] / otel['all_threads'] if otel else float('nan'):>7.2f}"
        )


if __name__ == "__main__":
    main()
