"""``emitted = sent + spooled + dropped + pending`` while callers wait."""

from __future__ import annotations

import time

from genesis_logging import ClickHouseHandler
from tests.support.fakes import FakeInserter
from tests.support.scripts import (
    logging_to,
)


class TestInvariant:
    """Finding 11: ``emitted = sent + spooled + dropped + pending`` while callers wait."""

    def test_stats_balance_while_callers_block(self) -> None:
        import threading

        fake = FakeInserter()
        fake.on_insert = lambda rows: time.sleep(0.002)
        handler = ClickHouseHandler(
            inserter=fake, queue_size=20, batch_size=10, flush_interval=0.001,
            queue_full_policy="block", block_timeout=0.05,
        )  # fmt: skip
        logger = logging_to(handler)
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                logger.info("r")

        producers = [threading.Thread(target=produce) for _ in range(8)]
        for producer in producers:
            producer.start()
        unbalanced = []
        try:
            for _ in range(300):
                stats = handler.stats()
                accounted = stats["sent"] + stats["spooled"] + sum(stats["dropped"].values())
                if stats["emitted"] != accounted + stats["pending"]:
                    unbalanced.append(stats)
        finally:
            stop.set()
            for producer in producers:
                producer.join()
            handler.close()
        assert unbalanced == []
