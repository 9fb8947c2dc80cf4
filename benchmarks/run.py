"""genesis-logging against a real server: delivery, a naive handler, memory under an outage,
batch size and flush interval.

Caller cost, null-sink throughput, the console formatter and delivery beside the peers
are ``peers.py``'s (the README's and ``docs/performance.md``'s tables come from it). This
one then runs ``hot_path.py`` (the profile before and after the hot-path optimisation).
``schema_profiles.py`` (chDB, 5 M rows) is separate: it measures the table, not the logging.

One command, against a real ClickHouse server the benchmark starts itself (Debian's
clickhouse-server, as in the tests):

    python benchmarks/run.py                 # everything, prints a table, writes results/latest.json
    python benchmarks/run.py --quick         # fewer records and rounds

The delivery ratio is the median of rounds in which ours and the ceiling run back to back,
so machine noise hits both alike; absolute times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


from genesis_logging import ClickHouseHandler  # noqa: E402
from genesis_logging.transport import ClickHouseInserter  # noqa: E402
from tests.support.server import LocalServer, Target, find_server_binary  # noqa: E402

RESULTS = Path(__file__).parent / "results"
EXTRA = {
    "spec_id": "spec_001",
    "iteration": 3,
    "task_id": "T01",
    "duration_ms": 12,
    "topic": "orders",
}


def quiet_logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def sample_record() -> logging.LogRecord:
    record = logging.LogRecord(
        "svc.worker", logging.INFO, "/src/w.py", 7, "task %s done", ("T01",), None
    )
    record.__dict__.update(EXTRA)
    return record


# -- 1. caller overhead ----------------------------------------------------------------------


# -- 2. delivery throughput -------------------------------------------------------------------


def count(target: Target, table: str) -> int:
    return int(target.client().execute(f"SELECT count() FROM bench.{table}")[0][0])


def delivery(target: Target, records: int, rounds: int) -> dict[str, Any]:
    rates_ours, rates_ceiling, ratios = [], [], []
    null_logger = quiet_logger("bench.null", logging.NullHandler())
    for round_ in range(rounds):
        table = f"delivery_{round_}"
        target.create_logs_table("bench", table)
        handler = ClickHouseHandler(url=target.url("bench"), table=table, queue_size=records + 1)
        logger = quiet_logger(f"bench.delivery.{round_}", handler)
        started = time.perf_counter()
        for i in range(records):
            logger.info("record %d", i, extra=EXTRA)
        handler.drain(600)
        ours = time.perf_counter() - started
        assert count(target, table) == records, "every record must be committed"
        handler.close()

        # The ceiling: the same logging calls with a NullHandler, plus the raw driver
        # inserting the same rows column-wise, back to back.
        started = time.perf_counter()
        for i in range(records):
            null_logger.info("record %d", i, extra=EXTRA)
        calls = time.perf_counter() - started
        target.create_logs_table("bench", f"{table}_raw")
        inserter = ClickHouseInserter(handler.settings, f"{table}_raw")
        converter = handler.converter
        rows = [converter.convert(sample_record()) for _ in range(min(records, 1000))]
        rows = (rows * (records // len(rows) + 1))[:records]
        inserter.insert(rows[:1])  # connect and learn the columns outside the timing
        started = time.perf_counter()
        for start in range(0, records, 1000):
            inserter.insert(rows[start : start + 1000])
        raw = time.perf_counter() - started
        inserter.close()
        ceiling = calls + raw
        rates_ours.append(records / ours)
        rates_ceiling.append(records / ceiling)
        ratios.append(ceiling / ours)
    return {
        "records": records,
        "records_per_s_ours": statistics.median(rates_ours),
        "records_per_s_ceiling": statistics.median(rates_ceiling),
        "ratio_median": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "rounds": rounds,
    }


class NaiveHandler(logging.Handler):
    """What people write by hand: one synchronous INSERT per record."""

    def __init__(self, target: Target, table: str) -> None:
        super().__init__()
        self.client = target.client()
        self.table = table

    def emit(self, record: logging.LogRecord) -> None:
        self.client.execute(
            f"INSERT INTO bench.{self.table} (level, message) VALUES",
            [(record.levelname.lower(), record.getMessage())],
        )


def naive_factor(target: Target, records: int) -> dict[str, Any]:
    target.create_logs_table("bench", "naive")
    logger = quiet_logger("bench.naive", NaiveHandler(target, "naive"))
    started = time.perf_counter()
    for i in range(records):
        logger.info("record %d", i)
    naive = records / (time.perf_counter() - started)
    return {"records": records, "records_per_s_naive": naive}


# -- 3. memory under outage --------------------------------------------------------------------

MEMORY_SCRIPT = r"""
import json, logging, os, sys, time, warnings
warnings.simplefilter("ignore")
from genesis_logging import ClickHouseHandler

def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024

url, table, records, spool = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
options = {"spool_dir": spool, "queue_full_policy": "spool", "spool_max_bytes": 2**31} if spool != "-" else {}
handler = ClickHouseHandler(url=url, table=table, shutdown_timeout=1, connect_timeout=0.5, **options)
logger = logging.getLogger("m"); logger.addHandler(handler); logger.setLevel(logging.INFO); logger.propagate = False
base = rss(); peak = base
for i in range(records):
    logger.info("record %d", i, extra={"spec_id": "spec_001", "iteration": 1})
    if i % 10000 == 0:
        peak = max(peak, rss())
peak = max(peak, rss())
print(json.dumps({"baseline_mb": base, "peak_mb": peak, "stats": handler.stats()}), flush=True)
sys.stdin.readline()  # the server is started again
handler.drain(600)
deadline = time.monotonic() + 600
while handler.stats()["spool"] and handler.stats()["spool"]["replayed_rows"] < handler.stats()["spooled"] and time.monotonic() < deadline:
    time.sleep(0.5)
handler.close()
print(json.dumps({"stats": handler.stats()}), flush=True)
"""


def memory(server: LocalServer, target: Target, records: int, with_spool: bool) -> dict[str, Any]:
    table = f"memory_{'spool' if with_spool else 'queue'}"
    target.create_logs_table("bench", table)
    server.stop()
    spool = tempfile.mkdtemp() if with_spool else "-"
    process = subprocess.Popen(
        [sys.executable, "-c", MEMORY_SCRIPT, target.url("bench"), table, str(records), spool],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert process.stdin is not None
    assert process.stdout is not None
    outage = json.loads(process.stdout.readline())
    server.start()
    process.stdin.write("\n")
    process.stdin.flush()
    after = json.loads(process.stdout.readline())
    process.wait(60)
    stored = count(target, table)
    kept = after["stats"]["sent"] + after["stats"]["spooled"]
    return {
        "records": records,
        "spool": with_spool,
        "rss_over_baseline_mb": outage["peak_mb"] - outage["baseline_mb"],
        "kept_by_policy": kept,
        "dropped": after["stats"]["dropped"],
        "delivered_after_restart": stored,
    }


# -- 4. console formatter -----------------------------------------------------------------------


def sweep(target: Target, records: int) -> list[dict[str, Any]]:
    rows = []
    for batch_size in (100, 1000, 10_000):
        for flush_interval in (0.1, 1.0):
            table = f"sweep_{batch_size}_{int(flush_interval * 10)}"
            target.create_logs_table("bench", table)
            handler = ClickHouseHandler(
                url=target.url("bench"),
                table=table,
                batch_size=batch_size,
                flush_interval=flush_interval,
                queue_size=records + 10,
            )
            logger = quiet_logger(f"bench.sweep.{table}", handler)
            started = time.perf_counter()
            for i in range(records):
                logger.info("record %d", i, extra=EXTRA)
            handler.drain(600)
            rate = records / (time.perf_counter() - started)
            # Emit-to-visible latency of a lone record on an idle handler.
            latencies = []
            for probe in range(3):
                started = time.perf_counter()
                logger.info("probe %d", probe)
                client = target.client()
                while not client.execute(
                    f"SELECT count() FROM bench.{table} WHERE message = 'probe {probe}'"
                )[0][0]:
                    time.sleep(0.005)
                latencies.append(time.perf_counter() - started)
            handler.close()
            rows.append(
                {
                    "batch_size": batch_size,
                    "flush_interval": flush_interval,
                    "records_per_s": rate,
                    "latency_s_median": statistics.median(latencies),
                }
            )
    return rows


# -- main -----------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer records and rounds")
    parser.add_argument("--skip-hot-path", action="store_true", help="do not run hot_path.py")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    command = find_server_binary()
    if command is None:
        sys.exit("benchmarks need Debian's clickhouse-server (apt-get install clickhouse-server)")
    workdir = Path(tempfile.mkdtemp(prefix="genesis-bench-"))
    server = LocalServer(command, workdir)
    server.start()
    target = Target("local", server.host, server.port)
    results: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "processor": platform.processor(),
        },
        "date": time.strftime("%Y-%m-%d"),
    }
    try:
        print("delivery throughput ...", flush=True)
        results["delivery"] = delivery(target, records=200_000 // scale, rounds=3)
        results["naive"] = naive_factor(target, records=2000 // scale)
        results["naive"]["factor"] = (
            results["delivery"]["records_per_s_ours"] / results["naive"]["records_per_s_naive"]
        )
        print("sweep ...", flush=True)
        results["sweep"] = sweep(target, records=100_000 // scale)
        print("memory under outage ...", flush=True)
        results["memory"] = [
            memory(server, target, 1_000_000 // scale, spool) for spool in (False, True)
        ]
    finally:
        server.stop()
    report(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(results, indent=2))
    if not args.skip_hot_path:  # the profile before/after of the hot path, same run
        print(flush=True)
        subprocess.run([sys.executable, str(Path(__file__).parent / "hot_path.py")], check=True)


def report(r: dict[str, Any]) -> None:
    d = r["delivery"]
    print()
    print(f"{'measure':<44} {'ours':>12} {'reference':>12} {'ratio (min..max)':>22} {'target':>8}")
    print(
        f"{'delivery, records/s (vs ceiling)':<44} {d['records_per_s_ours']:>12.0f} {d['records_per_s_ceiling']:>12.0f} {d['ratio_median']:>8.2f} ({d['ratio_min']:.2f}..{d['ratio_max']:.2f}) {'>= 0.7':>8}"
    )
    print(
        f"{'naive synchronous handler, records/s':<44} {r['naive']['records_per_s_naive']:>12.0f} {'':>12} ours {r['naive']['factor']:.0f}x faster"
    )
    for m in r["memory"]:
        label = f"outage, {m['records']} records, {'spool' if m['spool'] else 'queue only'}"
        print(
            f"{label:<44} RSS +{m['rss_over_baseline_mb']:.0f} MB (target <= 64), kept {m['kept_by_policy']}, delivered {m['delivered_after_restart']}, dropped {m['dropped']}"
        )
    print()
    print(f"{'batch_size':>10} {'flush_interval':>15} {'records/s':>12} {'latency (s)':>12}")
    for s in r["sweep"]:
        print(
            f"{s['batch_size']:>10} {s['flush_interval']:>15} {s['records_per_s']:>12.0f} {s['latency_s_median']:>12.3f}"
        )


if __name__ == "__main__":
    main()
