"""The worker's cost per record, alone: captured records -> columns -> delivered -> settled.

    python benchmarks/worker.py            # µs per record (thread CPU), then a cProfile

50 000 records of the benchmark's shape (``run.EXTRA``) are captured and queued (not
timed), then taken batch by batch through the handler's own pipeline into a null inserter,
in this thread: what the worker thread does for them, without a caller competing for the
GIL. The snapshots stay alive (the list holds them), so freeing them is not counted here. The same
figure inside the running pipeline is in ``peers.py`` (the worker thread's CPU clock).
"""

from __future__ import annotations

import cProfile
import logging
import pstats
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from run import EXTRA  # noqa: E402 - the same record as the other benchmarks

from genesis_logging import ClickHouseHandler  # noqa: E402

RECORDS = 50_000


class NullInserter:
    def insert(self, rows: Any, token: str | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def main() -> None:
    handler = ClickHouseHandler(inserter=NullInserter(), queue_size=10 * RECORDS)
    pipeline = handler._pipeline
    queue = pipeline._queue
    log = logging.getLogger("svc.worker")
    records = [
        log.makeRecord(
            "svc.worker", logging.INFO, __file__, 1, "Task concluída %d", (i,), None, extra=EXTRA
        )
        for i in range(RECORDS)
    ]
    snapshots = [handler.converter.capture(r) for r in records]

    def fill() -> None:  # the callers' part, not timed
        for snapshot in snapshots:
            queue.put(snapshot)

    def work() -> None:
        while (batch := queue.take(wait=False)) is not None:
            pipeline._deliver(batch)

    figures = []
    for _ in range(7):
        fill()
        started = time.thread_time()
        work()
        figures.append((time.thread_time() - started) / RECORDS * 1e6)
    print(
        f"the worker alone (take, columns, settle), µs per record: "
        f"{statistics.median(figures):.2f} ({min(figures):.2f}..{max(figures):.2f})"
    )
    fill()
    profile = cProfile.Profile()
    profile.runcall(work)
    pstats.Stats(profile).sort_stats("tottime").print_stats(12)
    handler.close()


if __name__ == "__main__":
    main()
