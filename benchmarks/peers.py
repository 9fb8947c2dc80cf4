"""genesis-logging beside its peers, in one process, measured in alternating rounds.

    python benchmarks/peers.py            # prints a table, writes results/peers.json
    python benchmarks/peers.py --quick

Caller cost of ``logger.info("Task concluída %d", i, extra={5 fields})`` through:
``NullHandler`` (the floor), the stdlib ``QueueHandler`` on a ``SimpleQueue``, ours
(``ClickHouseHandler`` with a null inserter, its worker running), OpenTelemetry's SDK
(``LoggingHandler`` + ``BatchLogRecordProcessor``, no-op exporter) and
python-logstash-async (no-op transport). Then end-to-end throughput into a null sink,
the console formatter against python-json-logger's ``JsonFormatter`` with the same
fields, and delivery to a real server (Debian's ``clickhouse-server``, started here)
against the ceiling: the same calls into a ``NullHandler`` plus the raw driver inserting
the same rows column-wise, back to back. Every figure is the median over rounds in which
the contenders take turns. Needs the ``bench`` extras:
``pip install opentelemetry-sdk python-logstash-async``. Memory under an outage and the
batch-size sweep are in ``run.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import os
import platform
import queue
import statistics
import sys
import time
from collections.abc import Callable
from logging.handlers import QueueHandler
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run import EXTRA, delivery  # noqa: E402 - the same record as the server benchmarks

RESULTS = Path(__file__).parent / "results"


class NullInserter:
    def insert(self, rows: Any, token: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class Contender:
    """A handler under test, with how to wait until it has processed what it was given."""

    def __init__(self, name: str, handler: logging.Handler, settle: Callable[[], None]) -> None:
        self.name = name
        self.handler = handler
        self.settle = settle
        self.logger = logging.getLogger(f"peers.{name}")
        self.logger.handlers[:] = [handler]
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)


def ours() -> Contender:
    from genesis_logging import ClickHouseHandler

    handler = ClickHouseHandler(inserter=NullInserter(), queue_size=10_000_000)
    return Contender("genesis-logging", handler, lambda: handler.drain(600) and None)


def stdlib_queue() -> Contender:
    sink: queue.SimpleQueue[Any] = queue.SimpleQueue()

    def settle() -> None:
        while not sink.empty():
            sink.get_nowait()

    return Contender("stdlib QueueHandler", QueueHandler(sink), settle)


def null() -> Contender:
    return Contender("NullHandler (floor)", logging.NullHandler(), lambda: None)


def opentelemetry() -> Contender:
    from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
    from opentelemetry.sdk._logs.export import (
        BatchLogRecordProcessor,
        LogRecordExporter,
        LogRecordExportResult,
    )

    class NoOpExporter(LogRecordExporter):
        def export(self, batch: Any) -> LogRecordExportResult:
            return LogRecordExportResult.SUCCESS

        def shutdown(self) -> None:
            pass

        def force_flush(self, timeout_millis: int = 30_000) -> bool:
            return True

    provider = LoggerProvider()
    provider.add_log_record_processor(
        BatchLogRecordProcessor(NoOpExporter(), max_queue_size=10_000_000)
    )
    handler = LoggingHandler(logger_provider=provider)
    return Contender("OpenTelemetry SDK", handler, lambda: provider.force_flush(600_000) and None)


def logstash_async() -> Contender:
    from logstash_async.handler import AsynchronousLogstashHandler

    class NoOpTransport:
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def send(self, events: Any, **kwargs: Any) -> None:
            pass

        def close(self) -> None:
            pass

    handler = AsynchronousLogstashHandler(
        "localhost", 5959, database_path=None, transport=NoOpTransport()
    )
    return Contender("python-logstash-async", handler, lambda: handler.flush())


def _timed_calls(contender: Contender, calls: int, *, until_delivered: bool) -> float:
    """Seconds for ``calls`` logging calls, or until they are delivered too."""
    log = contender.logger
    gc.collect()
    started = time.perf_counter()
    for i in range(calls):
        log.info("Task concluída %d", i, extra=EXTRA)
    if until_delivered:
        contender.settle()
    elapsed = time.perf_counter() - started
    contender.settle()
    return elapsed


def costs(contender: Contender, calls: int) -> dict[str, float]:
    """Microseconds per call: the caller thread's CPU (``thread_time``) and wall time over
    the calls (every pipeline's thread running meanwhile), and the CPU of all the
    process's threads (``process_time``) from the first call until the records are
    processed (``settle``: drained, delivered to the null sink)."""
    log = contender.logger
    gc.collect()
    wall, caller, cpu = time.perf_counter(), time.thread_time(), time.process_time()
    for i in range(calls):
        log.info("Task concluída %d", i, extra=EXTRA)
    caller = time.thread_time() - caller
    wall = time.perf_counter() - wall
    contender.settle()
    cpu = time.process_time() - cpu
    return {
        "caller_cpu": caller / calls * 1e6,
        "wall": wall / calls * 1e6,
        "cpu_all_threads": cpu / calls * 1e6,
    }


def per_call(contender: Contender, calls: int) -> float:
    """Microseconds per logging call (the caller's cost; the worker runs meanwhile)."""
    return _timed_calls(contender, calls, until_delivered=False) / calls * 1e6


def throughput(contender: Contender, records: int) -> float:
    """Records per second from the call to the sink (drained)."""
    return records / _timed_calls(contender, records, until_delivered=True)


def rounds_of(
    measure: Callable[[Contender], Any], contenders: list[Contender], rounds: int
) -> dict[str, list[Any]]:
    results: dict[str, list[Any]] = {c.name: [] for c in contenders}
    for round_ in range(rounds):
        order = contenders[round_ % len(contenders) :] + contenders[: round_ % len(contenders)]
        for contender in order:  # everybody goes first once in a while
            results[contender.name].append(measure(contender))
    return results


def paired_ratios(
    results: dict[str, list[dict[str, float]]], metric: str, base: str
) -> dict[str, dict[str, float]]:
    """Each contender's ``metric`` over the base's, round by round (both measured in the
    same round): the median ratio and its spread."""
    ratios: dict[str, dict[str, float]] = {}
    for name, rounds in results.items():
        paired = [
            mine[metric] / theirs[metric]
            for mine, theirs in zip(rounds, results[base], strict=True)
        ]
        values = [r[metric] for r in rounds]
        ratios[name] = {
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "ratio_median": statistics.median(paired),
            "ratio_min": min(paired),
            "ratio_max": max(paired),
        }
    return ratios


def worker_cost(contender: Contender, calls: int, rounds: int) -> dict[str, float]:
    """Microseconds of the worker thread's CPU per record (``pthread_getcpuclockid``):
    ``ColumnBuilder`` turning snapshots into columns, the batch's settlement, the wait."""
    worker = contender.handler._pipeline._worker  # type: ignore[attr-defined]
    log = contender.logger
    figures = []
    for _ in range(rounds):
        contender.settle()
        thread = worker._thread
        clock = time.pthread_getcpuclockid(thread.ident)
        before = time.clock_gettime(clock)
        for i in range(calls):
            log.info("Task concluída %d", i, extra=EXTRA)
        contender.settle()
        figures.append((time.clock_gettime(clock) - before) / calls * 1e6)
    return {
        "median": statistics.median(figures),
        "min": min(figures),
        "max": max(figures),
    }


def formatter_cost(rounds: int, calls: int) -> dict[str, list[float]]:
    from pythonjsonlogger.json import JsonFormatter

    from genesis_logging import GenesisJsonFormatter

    record = logging.getLogger("peers").makeRecord(
        "svc.worker", logging.INFO, __file__, 1, "Task concluída %d", (7,), None, extra=EXTRA
    )
    formatters = {
        "genesis-logging GenesisJsonFormatter": GenesisJsonFormatter(),
        "python-json-logger JsonFormatter": JsonFormatter(
            "%(levelname)s %(name)s %(message)s", timestamp=True
        ),
    }
    results: dict[str, list[float]] = {name: [] for name in formatters}
    for round_ in range(rounds):
        items = list(formatters.items())
        for name, formatter in items if round_ % 2 == 0 else reversed(items):
            started = time.thread_time()  # CPU: one thread, no waits, less noise
            for _ in range(calls):
                formatter.format(record)
            results[name].append((time.thread_time() - started) / calls * 1e6)
    return results


def summary(results: dict[str, list[float]], base: str) -> list[dict[str, Any]]:
    base_median = statistics.median(results[base])
    return [
        {
            "name": name,
            "median": statistics.median(values),
            "min": min(values),
            "max": max(values),
            "ratio_to_base": statistics.median(values) / base_median,
        }
        for name, values in results.items()
    ]


def delivery_to_server(records: int, rounds: int) -> dict[str, Any]:
    """``run.delivery`` against a server started for this run."""
    import tempfile

    from tests.support.server import LocalServer, Target, find_server_binary

    logging.getLogger("clickhouse_driver").setLevel(logging.CRITICAL)  # polls while it starts
    command = find_server_binary()
    if command is None:
        sys.exit("the delivery figure needs Debian's clickhouse-server")
    server = LocalServer(command, Path(tempfile.mkdtemp(prefix="genesis-peers-")))
    server.start()
    try:
        return delivery(Target("local", server.host, server.port), records, rounds)
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer calls and rounds")
    parser.add_argument("--no-server", action="store_true", help="skip the delivery figure")
    args = parser.parse_args()
    calls, records, rounds = (5_000, 20_000, 5) if args.quick else (20_000, 100_000, 9)
    load_before = os.getloadavg()
    contenders = [null(), stdlib_queue(), ours(), opentelemetry(), logstash_async()]
    for contender in contenders:  # warm up: threads started, caches filled
        per_call(contender, 2_000)
    measured = rounds_of(lambda c: costs(c, calls), contenders, rounds)
    caller = {
        metric: paired_ratios(measured, metric, base)
        for metric, base in (
            ("caller_cpu", "stdlib QueueHandler"),
            ("wall", "stdlib QueueHandler"),
            ("cpu_all_threads", "OpenTelemetry SDK"),
        )
    }
    sinks = [
        c
        for c in contenders
        if c.name in ("genesis-logging", "OpenTelemetry SDK", "python-logstash-async")
    ]
    sink = summary(
        rounds_of(lambda c: throughput(c, records), sinks, max(3, rounds // 2)),
        "OpenTelemetry SDK",
    )
    formatter = summary(formatter_cost(rounds, calls), "python-json-logger JsonFormatter")
    worker = worker_cost(contenders[2], calls, rounds)
    for contender in contenders:
        contender.handler.close()
    server = (
        None
        if args.no_server
        else delivery_to_server(records // 2 if args.quick else records * 2, 3)
    )
    result = {
        "machine": {
            "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
        },
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "per_call_us": caller,
        "null_sink_records_per_s": sink,
        "formatter_us": formatter,
        "worker_us_per_record": worker,
        "delivery": server,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "peers.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"load average before {load_before}, after {os.getloadavg()}")
    for metric, unit in (
        ("caller_cpu", "× QueueHandler"),
        ("wall", "× QueueHandler"),
        ("cpu_all_threads", "× OpenTelemetry"),
    ):
        print(f"\n{metric}, µs per call: median (min..max), paired ratio median (min..max)")
        for name, row in caller[metric].items():
            print(
                f"  {name:<40} {row['median']:>7.2f} ({row['min']:.2f}..{row['max']:.2f})"
                f"   {row['ratio_median']:.2f} ({row['ratio_min']:.2f}..{row['ratio_max']:.2f})"
                f" {unit}"
            )
    for title, rows, unit in (
        ("null sink, records/s", sink, "× OpenTelemetry"),
        ("formatter, µs per record", formatter, "× JsonFormatter"),
    ):
        print(f"\n{title}")
        for row in rows:
            print(
                f"  {row['name']:<40} {row['median']:>12.1f}   {row['ratio_to_base']:.2f} {unit}"
            )
    print(
        f"\nthe worker's CPU per record, µs: {worker['median']:.2f} "
        f"({worker['min']:.2f}..{worker['max']:.2f})"
    )
    if server is None:
        return
    print(
        f"\ndelivery to the server, {server['records']} records, records/s\n"
        f"  {'genesis-logging':<40} {server['records_per_s_ours']:>12.0f}   "
        f"{server['ratio_median']:.2f} × the ceiling "
        f"({server['ratio_min']:.2f}..{server['ratio_max']:.2f})\n"
        f"  {'ceiling (NullHandler + raw driver)':<40} {server['records_per_s_ceiling']:>12.0f}"
    )


if __name__ == "__main__":
    main()
