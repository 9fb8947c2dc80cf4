"""The pipeline's parts alone: queue, worker, deliverer, replayer — no logging, no privates."""

from __future__ import annotations

import math
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import errors

from genesis_logging._batch import Outcome, new_batch
from genesis_logging._codec import Row
from genesis_logging._deliver import Deliverer
from genesis_logging._policies import IMMEDIATE, Cooldown, ReplayBackoff, RetryPolicy
from genesis_logging._queue import BatchQueue
from genesis_logging._replay import SpoolReplayer, insert_in_chunks
from genesis_logging._worker import Worker
from genesis_logging.spool import Spool
from tests.support.fakes import FakeInserter, wait_until


def row(n: int) -> Row:
    return {"timestamp": n, "level": "info", "message": f"m{n}", "logger": "t", "service": "s"}


def balanced(queue: BatchQueue) -> bool:
    ledger = queue.snapshot()
    counts = ledger["counts"]
    settled = counts.get("sent", 0) + counts.get("spooled", 0) + sum(ledger["dropped"].values())
    return counts.get("emitted", 0) == settled + ledger["pending"]


def _blocked_in(thread: threading.Thread, function: str) -> bool:
    """Whether ``thread`` is inside ``function`` right now (its stack, not a guess); only
    public names are asked for (the stdlib's ``Condition.wait``), never ours."""
    frame = sys._current_frames().get(thread.ident or -1)
    while frame is not None:
        if frame.f_code.co_name == function:
            return True
        frame = frame.f_back
    return False


def queue(**options: Any) -> BatchQueue:
    options = {"capacity": 10, "batch_size": 4, "flush_interval": 60.0, **options}
    return BatchQueue(**options)


class TestLockFreePut:
    """The common ``put`` takes no lock (issue 24, point 2): the ledger is exact at every
    read all the same, with callers, a consumer and a reader in threads of their own."""

    @pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "block", "spool"])
    def test_the_ledger_balances_at_every_read_under_concurrent_puts(self, policy: str) -> None:
        q = queue(capacity=500, batch_size=50, flush_interval=0.001, policy=policy)
        done = threading.Event()
        reads: list[bool] = []

        def call(n: int) -> None:
            for i in range(3000):
                put = q.put(row(n * 10_000 + i))
                if put.spill is not None:  # the spool policy: this caller writes it
                    q.settle(put.spill, Outcome(spooled=len(put.spill.rows)))

        def consume() -> None:
            while not done.is_set() or q.snapshot()["queue_depth"]:
                batch = q.take(until=time.monotonic() + 0.01)
                if batch is not None:
                    q.settle(batch, Outcome(sent=len(batch.rows)))

        def read() -> None:
            while not done.is_set():
                reads.append(balanced(q))

        callers = [threading.Thread(target=call, args=(n,)) for n in range(4)]
        helpers = [threading.Thread(target=consume), threading.Thread(target=read)]
        for thread in [*helpers, *callers]:
            thread.start()
        for thread in callers:
            thread.join()
        done.set()
        for thread in helpers:
            thread.join()
        leftovers = q.leftovers()
        if leftovers is not None:
            q.settle(leftovers, Outcome(sent=len(leftovers.rows)))
        assert len(reads) > 10
        assert all(reads)
        ledger = q.snapshot()
        assert ledger["counts"]["emitted"] == 12_000
        assert ledger["pending"] == 0
        assert balanced(q)


class TestBatchQueue:
    """Batches by count, interval and flush; the four policies; settlement once per batch."""

    def test_cut_by_count_then_by_flush(self) -> None:
        q = queue()
        for n in range(6):
            assert q.put(row(n)) == (False, None)
        first = q.take(until=time.monotonic())
        assert first is not None
        assert [r["message"] for r in first.rows] == ["m0", "m1", "m2", "m3"]
        assert q.take(until=time.monotonic()) is None  # two rows: not due yet
        assert q.mark_flush() == 6
        second = q.take(until=time.monotonic())
        assert second is not None
        assert len(second.rows) == 2
        assert balanced(q)

    def test_cut_by_interval(self) -> None:
        q = queue(flush_interval=0.05)
        q.put(row(1))
        batch = q.take(until=time.monotonic() + 5)
        assert batch is not None
        assert len(batch.rows) == 1

    def test_settle_counts_each_batch_once(self) -> None:
        q = queue()
        for n in range(4):
            q.put(row(n))
        batch = q.take()
        assert batch is not None
        assert q.snapshot()["pending"] == 4
        assert q.settle(batch, Outcome(sent=4))
        assert not q.settle(batch, Outcome(spooled=4))  # a rescue racing the worker
        ledger = q.snapshot()
        assert ledger["counts"]["sent"] == 4
        assert ledger["counts"].get("spooled", 0) == 0
        assert ledger["pending"] == 0

    def test_an_outcome_short_of_rows_is_counted_not_hidden(self) -> None:
        q = queue()
        for n in range(4):
            q.put(row(n))
        batch = q.take()
        assert batch is not None
        q.settle(batch, Outcome(sent=3))
        assert q.snapshot()["dropped"] == {"unaccounted": 1}
        assert balanced(q)

    @pytest.mark.parametrize(
        ("policy", "kept", "dropped"),
        [("drop_newest", [0, 1], 1), ("drop_oldest", [1, 2], 1), ("block", [0, 1], 1)],
    )
    def test_full_queue_policies(self, policy: str, kept: list[int], dropped: int) -> None:
        q = queue(capacity=2, batch_size=10, policy=policy, block_timeout=0.01)
        results = [q.put(row(n)) for n in range(3)]
        assert [r.dropped for r in results] == [False, False, True]
        q.mark_flush()
        batch = q.take()
        assert batch is not None
        assert [r["timestamp"] for r in batch.rows] == kept
        assert q.snapshot()["dropped"] == {"queue_full": dropped}
        assert balanced(q)

    def test_block_policy_waits_for_room(self) -> None:
        q = queue(capacity=1, batch_size=1, policy="block", block_timeout=5.0)
        q.put(row(0))
        threading.Timer(0.05, q.take).start()
        started = time.monotonic()
        assert q.put(row(1)) == (False, None)
        assert time.monotonic() - started < 5.0

    def test_emitted_is_counted_only_once_room_is_decided(self) -> None:
        """While a caller waits for room its record is not yet emitted (invariant holds)."""
        q = queue(capacity=1, batch_size=5, policy="block", block_timeout=1.0)
        q.put(row(0))
        waiter = threading.Thread(target=q.put, args=(row(1),))
        waiter.start()
        wait_until(lambda: _blocked_in(waiter, "wait"))  # threading.Condition.wait: no room yet
        assert q.snapshot()["counts"]["emitted"] == 1
        assert balanced(q)
        q.close()
        waiter.join()
        assert q.snapshot()["dropped"] == {"closed": 1}
        assert balanced(q)

    def test_spool_policy_hands_a_batch_to_the_caller(self) -> None:
        q = queue(capacity=1, batch_size=2, policy="spool")
        q.put(row(0))
        assert q.put(row(1)).spill is None  # held in overflow
        spill = q.put(row(2)).spill
        assert spill is not None
        assert [r["timestamp"] for r in spill.rows] == [1, 2]
        assert q.snapshot()["pending"] == 3
        assert q.settle(spill, Outcome(spooled=2))
        assert balanced(q)

    def test_a_flush_waits_for_rows_queued_behind_spilled_ones(self) -> None:
        """Issue 20.9: spilled rows settle without having been queued; a flush target
        counted in queued rows only was reached with the queue still full."""
        q = queue(capacity=10, batch_size=4, policy="spool")
        spills = [put.spill for n in range(30) if (put := q.put(row(n))).spill is not None]
        assert len(spills) == 5  # 20 refused rows, spilled 4 at a time
        for spill in spills:
            assert q.settle(spill, Outcome(spooled=4))
        target = q.mark_flush()
        assert target is not None  # 10 rows are still queued
        assert q.settled_rows() < target
        while (batch := q.take(wait=False)) is not None:
            assert q.settle(batch, Outcome(sent=len(batch.rows)))
        assert q.settled_rows() >= target
        assert q.snapshot()["pending"] == 0
        assert balanced(q)

    def test_rows_rejoining_from_overflow_are_waited_for_once(self) -> None:
        q = queue(capacity=2, batch_size=2, policy="spool")
        for n in range(3):
            q.put(row(n))  # the third waits in overflow
        target = q.mark_flush()
        assert target == 3
        while (batch := q.take(wait=False)) is not None:
            assert q.settle(batch, Outcome(sent=len(batch.rows)))
        assert q.settled_rows() == target
        assert q.mark_flush() is None

    def test_overflow_rejoins_when_room_returns(self) -> None:
        q = queue(capacity=2, batch_size=2, policy="spool")
        for n in range(3):
            q.put(row(n))
        first = q.take()
        assert first is not None
        assert q.snapshot()["queue_depth"] == 1  # the refused row is queued again
        assert balanced(q)

    def test_leftovers_are_one_batch_in_flight(self) -> None:
        q = queue()
        for n in range(3):
            q.put(row(n))
        q.close()
        left = q.leftovers()
        assert left is not None
        assert len(left.rows) == 3
        assert q.put(row(9)).dropped
        assert q.settle(left, Outcome(spooled=3))
        assert balanced(q)

    def test_take_returns_when_closed_and_empty(self) -> None:
        q = queue()
        threading.Timer(0.05, q.close).start()
        assert q.take(until=math.inf) is None


class TestWorker:
    """The thread, lazily, once; its exit is reported."""

    def test_runs_once_and_reports_exit(self) -> None:
        stop = threading.Event()
        ended = threading.Event()
        worker = Worker(stop.wait, "t", on_exit=ended.set)
        assert worker.start()
        assert worker.start()  # already running: no second thread
        assert worker.starts == 1
        stop.set()
        assert ended.wait(5)
        wait_until(lambda: not worker.running)

    def test_restart_after_exit_is_counted(self) -> None:
        worker = Worker(lambda: None, "t", on_exit=lambda: None)
        worker.start()
        wait_until(lambda: not worker.running)
        worker.start()
        wait_until(lambda: not worker.running)
        assert worker.starts == 2


def deliverer(fake: FakeInserter, spool: Spool | None = None) -> Deliverer:
    retries: list[BaseException] = []
    return Deliverer(
        fake,
        RetryPolicy(attempts=3, max_delay=1.0, first_wait=0.001, jitter=0.0),
        spool,
        threading.Event(),
        lambda error: f"{type(error).__name__}: {error}",
        retries.append,
    )


class TestDeliverer:
    """Insert, retry, bisect, spool: an outcome, no counters."""

    def test_sent(self) -> None:
        fake = FakeInserter()
        outcome = deliverer(fake).deliver(new_batch([row(1), row(2)]))
        assert (outcome.sent, outcome.spooled, dict(outcome.dropped)) == (2, 0, {})

    def test_transient_errors_are_retried(self) -> None:
        fake = FakeInserter()
        fake.errors = [OSError("reset"), OSError("reset")]
        outcome = deliverer(fake).deliver(new_batch([row(1)]))
        assert outcome.sent == 1
        assert fake.calls == 3

    def test_poisoned_rows_are_isolated(self) -> None:
        fake = FakeInserter()

        def refuse(rows: Any) -> None:
            if any(r["message"] == "m3" for r in rows):
                raise errors.ServerException("bad value", code=27)

        fake.on_insert = refuse
        outcome = deliverer(fake).deliver(new_batch([row(n) for n in range(8)]))
        assert outcome.sent == 7
        assert dict(outcome.dropped) == {"bad_row": 1}
        assert sorted(fake.messages) == sorted(f"m{n}" for n in range(8) if n != 3)

    def test_failure_goes_to_the_spool(self, tmp_path: Path) -> None:
        fake = FakeInserter()
        fake.always = errors.ServerException("no such table", code=60)
        spool = Spool(tmp_path)
        outcome = deliverer(fake, spool).deliver(new_batch([row(1), row(2)]))
        assert (outcome.spooled, outcome.permanent) == (2, True)
        assert spool.status().rows == 2
        assert outcome.notes[0].kind == "permanent_error"

    def test_failure_without_spool_is_dropped_with_its_reason(self) -> None:
        fake = FakeInserter()
        fake.always = OSError("down")
        outcome = deliverer(fake).deliver(new_batch([row(1)]))
        assert dict(outcome.dropped) == {"delivery_failed": 1}


class TestReplayer:
    """One file at a time; chunks keep distinct tokens; failures back off."""

    def test_replays_in_chunks_with_tokens(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write([row(n) for n in range(5)], "a" * 32)
        fake = FakeInserter()
        replayer = SpoolReplayer(spool, fake.insert, batch_size=2, backoff=ReplayBackoff())
        report = replayer.replay_one()
        assert report is not None
        assert (report.rows, report.error) == (5, None)
        assert fake.tokens == ["a" * 32 + "-0", "a" * 32 + "-2", "a" * 32 + "-4"]
        assert replayer.replay_one() is None

    def test_a_single_chunk_keeps_the_batch_token(self) -> None:
        tokens: list[str | None] = []
        insert_in_chunks(lambda rows, token: tokens.append(token), [row(1)], 10, "b" * 32)
        assert tokens == ["b" * 32]

    def test_failure_puts_the_file_back_with_a_delay(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write([row(1)], "c" * 32)
        fake = FakeInserter()
        fake.always = OSError("down")
        replayer = SpoolReplayer(spool, fake.insert, batch_size=10, backoff=ReplayBackoff())
        report = replayer.replay_one()
        assert report is not None
        assert report.transient
        assert report.retry_in == ReplayBackoff().transient
        assert not replayer.due(time.monotonic())
        assert spool.status().files == 1

    def test_immediate_backoff_never_buries(self) -> None:
        assert not IMMEDIATE.buries(transient=False, failures=100)
        assert ReplayBackoff().buries(transient=False, failures=4)


class TestPolicies:
    def test_cooldown_doubles_up_to_its_longest(self) -> None:
        assert [Cooldown().pause(n) for n in (1, 2, 3, 10)] == [1.0, 2.0, 4.0, 60.0]


class TestAfterClose:
    """A record logged after close is counted, and starts no thread."""

    def test_no_worker_after_close(self) -> None:
        import logging

        from genesis_logging import ClickHouseHandler

        handler = ClickHouseHandler(inserter=FakeInserter())
        logger = logging.getLogger("parts.after_close")
        logger.handlers[:] = [handler]
        logger.propagate = False
        handler.close()
        before = threading.active_count()
        for _ in range(50):
            logger.warning("late")
        assert threading.active_count() == before
        assert handler.stats()["dropped"] == {"closed": 50}
        assert handler.stats()["worker_restarts"] == 0


class TestConversionFault:
    """A bug turning a batch into rows costs that batch, counted; the worker goes on."""

    def test_counted_as_internal_error_and_the_next_batch_is_delivered(self) -> None:
        from genesis_logging._config import HandlerConfig
        from genesis_logging._pipeline import BatchPipeline
        from genesis_logging._warnings import Reporter
        from genesis_logging.settings import ConnectionSettings

        def to_rows(items: list[Any]) -> list[Row]:
            if "poison" in items:
                raise RuntimeError("a bug in the conversion")
            return [row(int(item)) for item in items]

        fake = FakeInserter()
        config = HandlerConfig(ConnectionSettings.resolve(), batch_size=2, flush_interval=0.05)
        pipeline = BatchPipeline(config, fake, Reporter(where="test"), to_rows=to_rows)
        for item in ("1", "poison", "3", "4"):
            pipeline.submit(item)
        assert pipeline.drain(10)
        stats = pipeline.stats()
        pipeline.close()
        assert stats["dropped"] == {"internal_error": 2}
        assert stats["sent"] == 2
        assert [r["timestamp"] for batch in fake.batches for r in batch] == [3, 4]
        assert stats["last_error"]
        assert "a bug in the conversion" in stats["last_error"]
