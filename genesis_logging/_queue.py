"""A bounded queue of rows that cuts batches and alone keeps the ledger.

No threads and no I/O here: callers put rows, the worker takes batches, and every batch
is settled exactly once by its identity with an :class:`Outcome` (sent, spooled, dropped
by reason). So ``emitted = sent + spooled + dropped + pending`` holds at every moment,
and a batch settled twice (a rescue at close racing the worker) counts once.

The lock is reentrant: a signal handler that logs runs on top of whatever the main
thread was doing, possibly inside :meth:`BatchQueue.put`. So is one that reads
:meth:`BatchQueue.snapshot`: Python runs signal handlers only at a call (or a loop's
jump), so every change of the ledger does its calls first and then stores its terms with
no call between them — a handler sees the ledger before or after, never half-way.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from itertools import repeat, starmap
from typing import Any, Final, Generic, NamedTuple, TypeVar

from ._batch import Batch, Outcome, new_batch
from ._config import QUEUE_FULL_POLICIES

__all__ = ["ACCEPTED", "BatchQueue", "Put"]

T = TypeVar("T")  # what is queued: the handler's snapshots, or rows


class Put(NamedTuple):
    """What :meth:`BatchQueue.put` did with a row."""

    dropped: bool = False
    spill: Batch[Any] | None = None  # ``spool`` policy: rows the caller must write to the spool


#: What ``put`` returns for a row queued without anything else to do.
ACCEPTED: Final = Put()
_DROPPED: Final = Put(dropped=True)


class BatchQueue(Generic[T]):
    """Rows waiting for delivery, at most ``capacity``; batches of ``batch_size``.

    A row is whatever is queued (``T``: the handler's snapshots, turned into rows by the
    worker). Callers racing for the last free places may overshoot ``capacity`` by one
    row each: the check and the append are not one step, by design (no lock).

    Args:
        capacity: rows held, at most.
        batch_size: rows per batch, at most.
        flush_interval: seconds a row may wait for its batch to fill.
        policy: one of :data:`QUEUE_FULL_POLICIES`.
        block_timeout: seconds ``put`` waits for room under the ``block`` policy.
    """

    def __init__(
        self,
        *,
        capacity: int,
        batch_size: int,
        flush_interval: float,
        policy: str = "drop_newest",
        block_timeout: float = 0.0,
    ) -> None:
        if policy not in QUEUE_FULL_POLICIES:
            raise ValueError(f"unknown queue-full policy {policy!r}")
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.policy = policy
        self.block_timeout = block_timeout
        self._reset()

    def _reset(self) -> None:
        self._lock = threading.RLock()
        self._ready = threading.Condition(self._lock)  # the worker waits: rows, flush, close
        self._progress = threading.Condition(self._lock)  # flushers and blocked callers wait
        # Callers append here without the lock (``deque.append`` is atomic under the GIL);
        # only the lock's holder removes, and counts what it removed in ``_taken``.
        self._rows: deque[T] = deque()
        self._overflow: list[T] = []  # ``spool`` policy: refused rows bound for disk
        self._oldest_at: float | None = None  # monotonic: rows are waiting since (None: unknown)
        self._empty_at = time.monotonic()  # when the worker last saw the queue empty
        self._sleeping = False  # the worker waits for rows: the next caller wakes it
        self._closed_out = False  # leftovers taken at close: later rows are dropped
        self._in_flight: dict[str, int] = {}  # batch id -> rows, until settled
        self._taken = 0  # rows removed from ``_rows``: cut, evicted or taken at close
        self._overflowed = 0  # rows that went to ``_overflow`` (the spool policy)
        self._settled = 0  # rows of settled batches, and rows evicted from the queue
        self._flush_target = 0
        self.closing = False
        self._counts: Counter[str] = Counter()  # "emitted" here: rows never queued
        self._dropped: Counter[str] = Counter()
        self._spool: Counter[str] = Counter()

    def reset_after_fork(self) -> None:
        """A forked child starts empty, with its own locks: the parent's rows stay its own."""
        self._reset()

    # -- callers ---------------------------------------------------------------------------

    def put(self, row: T) -> Put:
        """Queue a row, or apply the queue-full policy. Counts it as emitted either way.

        The common call takes no lock: it appends and returns. The lock is taken when the
        queue is full or closing, to wake a sleeping worker, and once per batch.
        """
        rows = self._rows
        if len(rows) < self.capacity and not self.closing:
            rows.append(row)
            if self._sleeping or self.closing or len(rows) % self.batch_size == 0:
                return self._poke()
            return ACCEPTED
        with self._lock:
            if self.closing:
                self._count_drop("closed")
                return _DROPPED
            if len(rows) >= self.capacity:
                if self.policy == "spool":
                    return self._overflow_row(row)
                if self.policy == "drop_oldest":
                    rows.popleft()  # out of the queue: emitted and pending both one less
                    dropped = self._dropped.get("queue_full", 0) + 1
                    self._taken += 1  # no call from here to the append: see the module
                    self._settled += 1
                    self._dropped["queue_full"] = dropped
                    rows.append(row)
                    return _DROPPED
                if self.policy == "drop_newest" or not self._wait_for_room():
                    self._count_drop("closed" if self.closing else "queue_full")
                    return _DROPPED
            rows.append(row)
            self._ready.notify()
            return ACCEPTED

    def _poke(self) -> Put:
        """After an append: wake the worker; a row that raced with close is dropped."""
        with self._lock:
            if self._closed_out and self._rows:  # close took the leftovers already
                late = len(self._take(len(self._rows)))
                dropped = self._dropped.get("closed", 0) + late
                self._taken += late  # no call from here on: see the module
                self._settled += late
                self._dropped["closed"] = dropped
                return _DROPPED
            self._sleeping = False  # one caller wakes it: the next ones need not
            self._ready.notify()
            return ACCEPTED

    def _take(self, count: int) -> list[T]:
        """The ``count`` oldest rows, removed (under the lock); the caller adds them to
        ``_taken`` together with wherever they go (emitted and pending drop together)."""
        return list(starmap(self._rows.popleft, repeat((), count)))

    def _overflow_row(self, row: T) -> Put:
        self._counts["emitted"] += 1
        self._overflowed += 1  # a flush waits for it too, spilled or rejoining the queue
        self._overflow.append(row)
        if len(self._overflow) < self.batch_size:
            return ACCEPTED
        count = len(self._overflow)
        spill = new_batch(self._overflow)
        self._overflow = []  # no call from here to the next line: see the module
        self._in_flight[spill.id] = count
        return Put(spill=spill)

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.block_timeout
        while len(self._rows) >= self.capacity and not self.closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.wait(remaining)
        return not self.closing

    def drop(self, reason: str, count: int = 1) -> None:
        """Count rows that never entered the queue (closed, recursion) as emitted and dropped."""
        with self._lock:
            self._count_drop(reason, count)

    def _count_drop(self, reason: str, count: int = 1) -> None:
        emitted = self._counts.get("emitted", 0) + count
        dropped = self._dropped.get(reason, 0) + count
        self._counts["emitted"] = emitted  # no call between the two: see the module
        self._dropped[reason] = dropped

    # -- the worker ------------------------------------------------------------------------

    def take(
        self, *, until: float = math.inf, hold: bool = False, wait: bool = True
    ) -> Batch[T] | None:
        """The next due batch; ``None`` when ``until`` (monotonic) passes first or the
        queue is closed and empty. ``hold`` keeps rows back (a cooldown) unless closing."""
        with self._lock:
            while True:
                now = time.monotonic()
                count = len(self._rows)
                if count == 0:
                    self._empty_at = now
                elif self._oldest_at is None:  # they came after the worker last saw none
                    self._oldest_at = self._empty_at
                oldest = self._oldest_at if self._oldest_at is not None else now
                due = count >= self.batch_size or (
                    count > 0
                    and (
                        self.closing
                        or self._flush_target > self._settled
                        or now - oldest >= self.flush_interval
                    )
                )
                if due and (self.closing or not hold):
                    return self._cut(now)
                if not wait or (self.closing and count == 0):
                    return None
                wake = until if hold or count == 0 else min(until, oldest + self.flush_interval)
                if wake <= now:
                    return None
                self._sleeping = count == 0  # callers wake it; then re-checked, not waited
                if not self._sleeping or not self._rows:
                    self._ready.wait(None if wake == math.inf else wake - now)
                if count == 0:
                    self._sleeping = False
                    self._empty_at = time.monotonic()  # woken by the first row, or the time

    def _cut(self, now: float) -> Batch[T]:
        count = min(len(self._rows), self.batch_size)
        batch = new_batch(self._take(count))
        self._taken += count  # no call between the two: see the module
        self._in_flight[batch.id] = count
        if self._overflow:  # room again: refused rows rejoin the queue
            moved = self._overflow[: self.capacity - len(self._rows)]
            rejoined = len(moved)
            emitted = self._counts.get("emitted", 0) - rejoined
            del self._overflow[:rejoined]  # no call from here to the extend: see the module
            self._overflowed -= rejoined  # counted again as queued rows from here on
            self._counts["emitted"] = emitted
            self._rows.extend(moved)
        if self._rows:
            self._oldest_at = now
        else:
            self._oldest_at = None
            self._empty_at = now
        self._progress.notify_all()  # room for blocked callers
        return batch

    def settle(self, batch: Batch[Any], outcome: Outcome) -> bool:
        """Count what became of ``batch``; ``False`` (and nothing counted) if it was already."""
        with self._lock:
            rows = self._in_flight.get(batch.id)
            if rows is None:
                return False
            unaccounted = rows - outcome.accounted()
            if unaccounted > 0:  # only reachable through a bug: count, never hide
                outcome.dropped["unaccounted"] += unaccounted
            counts, dropped = self._counts.copy(), self._dropped.copy()  # the new ledger
            counts["sent"] += outcome.sent
            counts["spooled"] += outcome.spooled
            counts["batches"] += 1 if outcome.sent else 0
            counts["failed_batches"] += outcome.failed_batches
            dropped.update(outcome.dropped)
            del self._in_flight[batch.id]  # no call from here to the swap: see the module
            self._settled += rows
            self._counts, self._dropped = counts, dropped
            self._spool.update(outcome.spool)
            self._progress.notify_all()
            return True

    def count(self, name: str, amount: int = 1, *, spool: bool = False) -> None:
        """Add to a counter that is not about rows (retries, worker restarts, replays)."""
        with self._lock:
            (self._spool if spool else self._counts)[name] += amount

    def leftovers(self) -> Batch[T] | None:
        """At close: everything still queued, as one batch in flight (to spool or drop)."""
        with self._lock:
            self._closed_out = self.closing
            taken = self._take(len(self._rows))
            rows = [*taken, *self._overflow]
            if not rows:
                return None
            count, queued = len(rows), len(taken)
            batch = new_batch(rows)
            self._overflow = []  # no call from here on: see the module
            self._taken += queued
            self._in_flight[batch.id] = count
            return batch

    # -- flush and close -------------------------------------------------------------------

    def mark_flush(self) -> int | None:
        """Ask for everything queued so far to be cut now; the row count to wait for,
        ``None`` when it has all settled already."""
        with self._lock:
            target = self._taken + len(self._rows) + self._overflowed
            if self._settled >= target:
                return None
            self._flush_target = max(self._flush_target, target)
            self._ready.notify()
            return target

    def wait_for(self, condition: Callable[[], bool], deadline: float) -> bool:
        """Wait until ``condition()`` (checked under the lock, after every settlement or
        :meth:`wake`) holds; ``False`` if the deadline passed first."""
        with self._lock:
            while not condition():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._progress.wait(remaining)
            return True

    def settled_rows(self) -> int:
        return self._settled

    def close(self) -> None:
        """No more rows: blocked callers return, the worker cuts what is left."""
        with self._lock:
            self.closing = True
            self._ready.notify_all()
            self._progress.notify_all()

    def wake(self) -> None:
        """Wake everybody waiting (the worker ended, or something changed outside)."""
        with self._lock:
            self._ready.notify_all()
            self._progress.notify_all()

    # -- reading ---------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """The ledger, consistent at one instant."""
        with self._lock:
            queued = len(self._rows)  # read once: callers may append meanwhile
            counts = dict(self._counts)
            counts["emitted"] = counts.get("emitted", 0) + self._taken + queued
            return {
                "counts": counts,
                "dropped": dict(self._dropped),
                "spool": dict(self._spool),
                "queue_depth": queued,
                "pending": queued + len(self._overflow) + sum(self._in_flight.values()),
            }
