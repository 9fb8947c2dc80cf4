"""ClickHouseHandler with a spool, through a fake inserter: nothing lost silently."""

from __future__ import annotations

import logging
import os
import select
import signal
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import errors

from genesis_logging import ClickHouseHandler, ConfigurationError, DeliveryWarning
from tests.support.fakes import FakeInserter, balanced, make, wait_until


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        yield


@pytest.fixture
def fake() -> FakeInserter:
    return FakeInserter()


def accounted(stats: dict[str, Any]) -> bool:
    """Live records: emitted = sent + spooled + dropped + pending."""
    return (
        stats["emitted"]
        == stats["sent"] + stats["spooled"] + sum(stats["dropped"].values()) + stats["pending"]
    )


class TestSpoolOnFailure:
    """Batches that cannot be delivered go to disk and come back."""

    def test_a_cooldown_spools_what_it_holds_back(
        self, fake: FakeInserter, tmp_path: Path
    ) -> None:
        """Issue 20: after a permanent error the cooldown held the whole queue back even
        with a spool, and a full queue dropped records (40-53 % at 400 rows/s)."""
        fake.always = errors.ServerException("Table genesis.logs doesn't exist", code=60)
        handler, logger = make(
            fake, spool_dir=tmp_path, queue_size=50, batch_size=10, flush_interval=0.01
        )
        logger.info("first")  # fails: the cooldown starts
        wait_until(lambda: handler.stats()["failed_batches"] >= 1)
        for i in range(500):  # ten times the queue, during the cooldown (1 s)
            logger.info("m%d", i)
            if i % 50 == 49:
                wait_until(lambda: handler.stats()["queue_depth"] == 0)
        stats = handler.stats()
        assert fake.calls <= 5  # still no retry storm (50 batches went by)
        assert stats["dropped"] == {}
        assert accounted(stats)
        handler.close()
        assert handler.stats()["spooled"] == 501

    def test_permanent_error_spools_then_replays_with_the_same_token(
        self, fake: FakeInserter, tmp_path: Path
    ) -> None:
        fake.errors = [errors.ServerException("Table genesis.logs doesn't exist", code=60)]
        handler, logger = make(fake, spool_dir=tmp_path, flush_interval=0.05)
        for i in range(5):
            logger.info("m%d", i)
        wait_until(lambda: handler.stats()["spool"]["replayed_rows"] == 5)
        stats = handler.stats()
        assert stats["spooled"] == 5
        assert stats["dropped"] == {}
        assert fake.messages == [f"m{i}" for i in range(5)]
        assert fake.tokens[0] == fake.tokens[1]  # the replay carries the batch's identity
        assert accounted(stats)
        handler.close()
        assert os.listdir(tmp_path) == []

    def test_retries_exhausted_spools(self, fake: FakeInserter, tmp_path: Path) -> None:
        fake.always = OSError("connection refused")
        handler, logger = make(fake, spool_dir=tmp_path, retry_attempts=2, flush_interval=0.05)
        logger.info("kept")
        wait_until(lambda: handler.stats()["spooled"] == 1)
        fake.always = None
        wait_until(lambda: fake.messages == ["kept"])
        handler.close()

    def test_close_spools_what_is_queued_and_a_new_handler_delivers_it(
        self, fake: FakeInserter, tmp_path: Path
    ) -> None:
        fake.always = OSError("down")
        first, logger = make(fake, spool_dir=tmp_path, shutdown_timeout=0.2, retry_max_delay=60)
        for i in range(20):
            logger.info("m%d", i)
        first.close()
        stats = first.stats()
        assert stats["sent"] == 0
        assert stats["spooled"] == 20
        assert stats["dropped"] == {}
        healthy = FakeInserter()
        second, other = make(healthy, spool_dir=tmp_path, flush_interval=0.05)
        other.info("trigger the worker")
        wait_until(lambda: len(healthy.messages) == 21)
        second.close()
        assert sorted(healthy.messages) == sorted(
            [f"m{i}" for i in range(20)] + ["trigger the worker"]
        )

    def test_full_queue_spills_to_disk_under_the_spool_policy(
        self, fake: FakeInserter, tmp_path: Path
    ) -> None:
        handler, logger = make(
            fake,
            spool_dir=tmp_path,
            queue_size=10,
            batch_size=5,
            queue_full_policy="spool",
            flush_interval=0.05,
        )
        fake.gate.clear()
        logger.info("first")
        wait_until(fake.entered.is_set)
        for i in range(100):
            logger.info("m%d", i)
        stats = handler.stats()
        assert stats["queue_depth"] == 10
        assert stats["spooled"] == 90  # 18 files of batch_size, written by the callers
        assert stats["dropped"] == {}
        assert accounted(stats)
        fake.gate.set()
        wait_until(lambda: len(fake.messages) == 101)
        handler.close()
        assert sorted(fake.messages) == sorted(["first"] + [f"m{i}" for i in range(100)])

    def test_unwritable_spool_counts_drops_without_raising(
        self, fake: FakeInserter, tmp_path: Path
    ) -> None:
        spool_dir = tmp_path / "spool"
        handler, logger = make(fake, spool_dir=spool_dir, retry_attempts=1)
        os.rmdir(spool_dir)
        spool_dir.write_text("a file where the directory was")  # every write now fails
        fake.always = OSError("down")
        for i in range(7):
            logger.info("m%d", i)
        assert handler.drain(10)
        handler.close()
        stats = handler.stats()
        assert stats["dropped"] == {"spool_failed": 7}
        assert stats["spool"]["write_failures"] >= 1
        assert accounted(stats)

    def test_spool_cap_evicts_oldest_counted(self, fake: FakeInserter, tmp_path: Path) -> None:
        fake.always = OSError("down")  # one attempt per batch, then the spool
        handler, logger = make(
            fake, spool_dir=tmp_path, spool_max_bytes=3000, retry_attempts=1, flush_interval=0.01
        )
        for i in range(60):
            logger.info("evict me %d", i)
            assert handler.drain(5)
        handler.close()
        stats = handler.stats()
        assert stats["spool"]["evicted_rows"] > 0
        total = sum(
            int(n.split("-n")[1].split("-")[0])
            for n in os.listdir(tmp_path)
            if n.endswith(".jsonl")
        )
        assert total + stats["spool"]["evicted_rows"] == 60


class TestBadRows:
    """One poisoned row does not take its batch down."""

    def test_offender_isolated(self, fake: FakeInserter) -> None:
        def refuse_poison(rows: Any) -> None:
            if any(row["message"] == "poison" for row in rows):
                raise TypeError("value does not fit the column")

        fake.on_insert = refuse_poison
        handler, logger = make(fake, batch_size=8)
        for i in range(7):
            logger.info("ok %d", i)
            if i == 3:
                logger.info("poison")
        handler.close()
        stats = handler.stats()
        assert sorted(fake.messages) == sorted(f"ok {i}" for i in range(7))
        assert stats["dropped"] == {"bad_row": 1}
        assert stats["sent"] == 7
        assert balanced({**stats, "sent": stats["sent"] + stats["spooled"]})


def test_spool_policy_needs_a_directory() -> None:
    with pytest.raises(ConfigurationError, match="spool_dir"):
        ClickHouseHandler(queue_full_policy="spool")


def test_fork_child_starts_clean(fake: FakeInserter) -> None:
    """The child has its own empty queue, free locks and its own worker."""
    handler, logger = make(fake)
    fake.gate.clear()
    logger.info("parent pending")
    assert not handler.drain(0.05)  # cut now ...
    wait_until(fake.entered.is_set)  # ... and the parent's worker holds it, inside insert
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            stats = handler.stats()
            ok = stats["pending"] == 0 and stats["emitted"] == 0
            fake.gate.set()  # the child's copy of the fake; the parent's stays shut
            logger.info("child record")
            handler.close()
            ok = ok and fake.messages == ["child record"]
            os.write(write_end, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(write_end)
    ready, _, _ = select.select([read_end], [], [], 30)
    if not ready:  # a lock inherited in a held state would hang the child
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert ready, "the child hung"
    assert os.read(read_end, 1) == b"1"
    fake.gate.set()
    handler.close()
    assert fake.messages == ["parent pending"]
    logging.getLogger().debug("done")


def test_refused_rows_rejoin_the_queue_when_room_returns(
    fake: FakeInserter, tmp_path: Path
) -> None:
    """Under the spool policy, rows refused by a full queue are not left behind."""
    fake.always = OSError("down")
    handler, logger = make(
        fake,
        spool_dir=tmp_path,
        queue_size=100,
        batch_size=100,
        queue_full_policy="spool",
        flush_interval=0.02,
        retry_max_delay=0.5,
    )
    for i in range(1450):
        logger.info("r%d", i)
    fake.always = None
    wait_until(lambda: len(set(fake.messages)) == 1450, timeout=30)
    stats = handler.stats()
    assert stats["pending"] == 0
    assert accounted(stats)
    handler.close()
