"""Rows in, batches out: the queue, the worker thread, the deliverer and the spool replayer.

Knows nothing of ``logging``: the handler converts records to rows and hands them here.
OpenTelemetry's ``BatchProcessor`` plays the same part for its exporters.
"""

from __future__ import annotations

import atexit
import math
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, Generic, TypeVar, cast

from . import _guard
from ._batch import Batch, Outcome
from ._codec import Row
from ._config import HandlerConfig
from ._deliver import Deliverer
from ._policies import Cooldown, ReplayBackoff, RetryPolicy
from ._queue import ACCEPTED, BatchQueue
from ._replay import SpoolReplayer
from ._warnings import Reporter
from ._worker import Worker
from .backend import Backend
from .signals import keep_signals_for_the_main_thread
from .spool import Spool
from .transport import Inserter, as_backend

__all__ = ["BatchPipeline"]

T = TypeVar("T")  # what callers submit: the handler's snapshots (rows, without ``to_rows``)

_ABORT_GRACE: Final = 0.5  # seconds close() gives the worker to wind down after aborting
_COUNTS: Final = ("emitted", "sent", "spooled", "batches", "failed_batches", "retries")
_SPOOL_KEYS: Final = (
    "written_rows",
    "replayed_rows",
    "evicted_rows",
    "dead_letter_rows",
    "unreadable_lines",
    "write_failures",
)

_LIVE: weakref.WeakSet[BatchPipeline[Any]] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for pipeline in list(_LIVE):
        pipeline.after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _close_orphans_at_exit() -> None:
    """Close, at a normal exit, every pipeline whose owner is gone.

    ``logging.shutdown()`` closes the handlers logging still knows (it keeps a weak
    reference to each); a handler detached without ``close()`` and then collected — a
    framework replacing ``root.handlers`` — leaves its pipeline alive in the worker thread
    but known to nobody, and its queue would die with the daemon thread.
    """
    for pipeline in list(_LIVE):
        owner = pipeline.owner
        if owner is None or owner() is None:
            pipeline.close()


atexit.register(_close_orphans_at_exit)


def _close_at_child_exit(pipeline: BatchPipeline[Any]) -> None:
    """In a ``multiprocessing`` child, close at its exit: it ends with ``os._exit``, which
    runs no ``atexit`` hook and so no ``logging.shutdown()``, but it runs finalizers."""
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is None or multiprocessing.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(None, pipeline.close, exitpriority=10)
    _exit_on_sigterm_in_child()


def _exit_on_sigterm_in_child() -> None:
    """Let SIGTERM end a ``multiprocessing`` child through its finalizers.

    ``Pool.__exit__`` (``terminate()``) sends SIGTERM to the workers; by default that
    kills them where they stand, queues and all. With this handler the worker raises
    ``SystemExit``, which ``multiprocessing`` turns into its normal exit: finalizers run,
    the pipeline is closed, then the process ends. Only where nobody set a handler, and
    only from the main thread (the only one allowed to).
    """
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return
        signal.signal(signal.SIGTERM, _raise_exit)
    except (ValueError, OSError):  # not the main thread of the main interpreter
        return


def _raise_exit(signum: int, frame: object) -> None:
    util = sys.modules.get("multiprocessing.util")
    if util is not None and getattr(util, "_exiting", False):
        # Already ending through its finalizers (a pool's worker that got its stop
        # sentinel, then the SIGTERM ``terminate()`` sends anyway): let them finish.
        return
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    raise SystemExit(128 + signum)


def _replayer(spool: Spool | None, backend: Backend, batch_size: int) -> SpoolReplayer | None:
    """What brings spooled batches back through ``backend`` (none without a spool)."""
    if spool is None:
        return None
    return SpoolReplayer(spool, backend, batch_size=batch_size, backoff=ReplayBackoff())


class BatchPipeline(Generic[T]):
    """Deliver rows in batches from one background thread.

    Args:
        config: sizes, intervals, policies and timeouts.
        inserter: the seam to the database; a forked child delivers through its
            ``renew()`` (a plain :class:`Inserter` is wrapped as a ``Backend``).
        reporter: describes errors and warns people.
        to_rows: turns a batch of submitted items into its rows, in the worker (``None``:
            items are rows) — the handler's snapshots become columns here.
        spool: where undeliverable rows go.
        name: the worker thread's name.
        owner: the object that closes this pipeline (the handler); while it lives, its
            ``close()`` is relied upon, once it is gone the pipeline is closed at exit.
    """

    def __init__(
        self,
        config: HandlerConfig,
        inserter: Backend | Inserter,
        reporter: Reporter,
        *,
        to_rows: Callable[[Sequence[T]], Sequence[Row]] | None = None,
        spool: Spool | None = None,
        name: str = "genesis-logging",
        owner: object | None = None,
    ) -> None:
        self.config = config
        self.owner = weakref.ref(owner) if owner is not None else None
        self.reporter = reporter
        self.spool = spool
        self._to_rows = to_rows
        self._cooldown_policy = Cooldown()
        self._retry = RetryPolicy(config.retry_attempts, config.retry_max_delay)
        self._queue: BatchQueue[T] = BatchQueue(
            capacity=config.queue_size,
            batch_size=config.batch_size,
            flush_interval=config.flush_interval,
            policy=config.queue_full_policy,
            block_timeout=config.block_timeout,
        )
        self._name = name
        self._build(as_backend(inserter))
        _LIVE.add(self)

    def _build(self, inserter: Backend) -> None:
        """The parts a forked child must not share with its parent."""
        self._worker = Worker(self._loop, self._name, on_exit=self._worker_ended)
        self._abort = threading.Event()  # cuts retries and backoffs short at shutdown
        self._deliverer = Deliverer(
            inserter, self._retry, self.spool, self._abort, self.reporter.describe, self._on_retry
        )
        self._replayer = _replayer(self.spool, self._deliverer.inserter, self.config.batch_size)
        self._current: Batch[Row] | None = None  # the batch the worker is delivering
        self._permanent_failures = 0
        self._cooldown_until = 0.0
        self._stalled: tuple[float, int] | None = None  # a flush that got nowhere

    def after_fork(self) -> None:
        """Start afresh in a forked child: own locks, empty queue, no worker, no socket.

        The backend's ``renew()`` says what the child delivers through; the inherited
        connection is abandoned, not closed: closing it would cut the parent's socket too.
        """
        self._queue.reset_after_fork()
        self.reporter = self.reporter.fresh()
        backend = self._deliverer.inserter
        try:
            backend = backend.renew()
        except Exception as error:  # keep delivering through the inherited one
            self.reporter.error(self.reporter.describe(error))
        self._build(backend)

    # -- the callers' side -----------------------------------------------------------------

    def submit(self, item: T) -> None:
        """Queue a row (or an item ``to_rows`` turns into one); never blocks beyond the
        ``block`` policy's timeout."""
        put = self._queue.put(item)
        if put is not ACCEPTED:
            if put.spill is not None:  # ``spool`` policy: this caller writes one batch
                spill = self._rows(put.spill)
                self._finish(spill, self._deliverer.spool(spill, "spool_failed"))
            elif self._queue.closing:
                return  # counted as ``closed``; no worker is started after close
            else:
                policy = self.config.queue_full_policy
                self.reporter.warn("queue_full", f"queue full ({policy}): records dropped")
        worker = self._worker  # a row that raced with close starts nothing
        if not (worker.running or self._queue.closing) and worker.start() and worker.starts == 1:
            _close_at_child_exit(self)

    def drop(self, reason: str) -> None:
        """Count a row that could not even be queued."""
        self._queue.drop(reason)

    def _loop(self) -> None:
        queue = self._queue
        while not (queue.closing and self._abort.is_set()):
            now = time.monotonic()
            cooling = now < self._cooldown_until and not queue.closing
            replayer = self._replayer
            if replayer is not None and not queue.closing and not cooling and replayer.due(now):
                self._replay_once(replayer)
                continue
            until = replayer.next_at if replayer is not None else math.inf
            if cooling:
                until = min(until, self._cooldown_until)
            spooling = cooling and self.spool is not None
            batch = queue.take(until=until, hold=cooling and not spooling)
            if batch is None:
                if queue.closing:
                    return
            elif spooling:  # the server is left alone; the spool holds what waits for it
                spilled = self._rows(batch)
                self._finish(spilled, self._deliverer.spool(spilled, "cooldown"))
            else:
                self._deliver(batch)

    def _worker_ended(self) -> None:
        self._queue.wake()
        self._deliverer.close()

    def _rows(self, batch: Batch[T]) -> Batch[Row]:
        """The batch with its items turned into rows (captured records are converted here,
        off the caller's thread)."""
        to_rows = self._to_rows
        if to_rows is None:  # the items are rows
            return cast("Batch[Row]", batch)
        return Batch(batch.id, to_rows(batch.rows))

    def _deliver(self, queued: Batch[T]) -> None:
        batch: Batch[Any] = queued  # the same identity, rows or not: settled either way
        try:
            batch = rows = self._rows(queued)
            self._current = rows
            outcome = self._deliverer.deliver(rows)
        except BaseException as error:  # only reachable through a bug: count, never hide
            outcome = Outcome(error=self.reporter.describe(error))
            reason = "internal_error" if isinstance(error, Exception) else "worker_died"
            outcome.dropped[reason] += len(batch.rows)
            if reason == "worker_died":  # SystemExit, KeyboardInterrupt: the thread ends
                self._finish(batch, outcome)
                raise
        finally:
            self._current = None
        self._finish(batch, outcome)

    def _finish(self, batch: Batch[Any], outcome: Outcome) -> None:
        """Count the outcome (once per batch), report it, cool down after permanent errors."""
        if not self._queue.settle(batch, outcome):
            return  # close() settled it already (rescued to the spool)
        if outcome.error is not None:
            self.reporter.error(outcome.error)
        for note in outcome.notes:
            self.reporter.warn(note.kind, note.text, force=note.force, once=note.once)
        if outcome.spooled and self._replayer is not None:
            self._replayer.soon()
        if outcome.permanent:
            self._permanent_failures += 1
            pause = self._cooldown_policy.pause(self._permanent_failures)
            self._cooldown_until = time.monotonic() + pause
        elif outcome.sent:
            self._permanent_failures = 0

    def _on_retry(self, error: BaseException) -> None:
        message = self.reporter.describe(error)
        self._queue.count("retries")
        self.reporter.error(message)
        self.reporter.warn("retrying", f"insert failed, retrying: {message}")

    def _replay_once(self, replayer: SpoolReplayer) -> None:
        report = replayer.replay_one()
        if report is None:
            return
        for name, amount in report.counts().items():
            self._queue.count(name, amount, spool=True)
        if report.error is not None:
            self.reporter.error(self.reporter.describe(report.error))
        for note in report.notes(self.reporter.describe):
            self.reporter.warn(note.kind, note.text, force=note.force)

    # -- flush and close -------------------------------------------------------------------

    def drain(self, timeout: float | None = None, *, wait: bool = True) -> bool:
        """Wait until every row submitted before this call is committed or has failed.

        Returns ``False`` when ``timeout`` (default ``shutdown_timeout``) ran out first, or
        at once when ``wait`` is false and rows are still pending.
        """
        limit = self.config.shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        target = self._queue.mark_flush()
        if target is None:
            return True
        settled_before = self._queue.settled_rows()
        if self._worker.inline:
            self._deliver_inline(deadline)
        elif not self._worker.running:
            self._worker.start()
        if not wait:
            return False
        worker = self._worker
        self._queue.wait_for(
            lambda: self._queue.settled_rows() >= target or not (worker.running or worker.inline),
            deadline,
        )
        settled = self._queue.settled_rows()
        if settled >= target:
            return True
        self._stalled = (time.monotonic(), settled) if settled == settled_before else None
        return False

    def _deliver_inline(self, deadline: float) -> None:
        """No thread can run (interpreter exit): deliver from the caller's thread."""
        entered = _guard.enter(defer=False)
        self._deliverer.deadline = deadline  # no retry, sleep or socket wait beyond it
        try:
            while (batch := self._queue.take(wait=False)) is not None:
                self._deliver(batch)  # past the deadline: straight to the spool
        finally:
            self._deliverer.deadline = math.inf
            _guard.leave(entered)

    def close(self, *, wait: bool = True) -> None:
        """Deliver what is queued within ``shutdown_timeout``, stop the worker. Idempotent.

        When the server is unreachable, at most ``shutdown_timeout`` is spent — less if a
        ``drain()`` just spent it without any progress. Without ``wait`` (the caller holds
        a lock the worker may need, as ``dictConfig`` does) the same happens in a
        non-daemon thread, which the interpreter waits for before it exits.
        """
        if self._queue.closing:
            return
        self._queue.close()
        if wait:
            self._wind_down()
            return
        closer = threading.Thread(target=self._wind_down, name=f"{self._name}-close")
        try:
            closer.start()
        except RuntimeError:  # interpreter shutdown: stop now, keep what we can
            self._abort.set()
            self._spool_leftovers()

    def _wind_down(self) -> None:
        keep_signals_for_the_main_thread()  # when this is the closer thread (not the caller's)
        entered = _guard.enter(defer=False)
        try:
            self._wait_then_stop()
        finally:
            _guard.leave(entered)

    def _wait_then_stop(self) -> None:
        limit = self.config.shutdown_timeout
        stalled = self._stalled
        if (
            stalled is not None
            and stalled[1] == self._queue.settled_rows()
            and time.monotonic() - stalled[0] < limit
        ):
            limit = 0.0  # a drain() just waited the whole timeout for nothing
        worker = self._worker
        try:
            if worker.inline:
                self._deliver_inline(time.monotonic() + limit)
            else:
                self._queue.wait_for(lambda: not worker.running, time.monotonic() + limit)
        finally:
            finished = not worker.running
            if not finished:
                self._abort.set()  # stop retrying: the worker spools its batch and ends
                self._queue.wait_for(lambda: not worker.running, time.monotonic() + _ABORT_GRACE)
                self._rescue_in_flight()
            self._spool_leftovers()
            if finished:
                self._deliverer.close()

    def _rescue_in_flight(self) -> None:
        """The worker is stuck (a server that never answers): spool its batch from here.

        Should the worker still deliver it later, the copy on disk carries the same batch
        identity, which servers that deduplicate recognise; the queue counts it once.
        """
        batch = self._current
        if batch is None or self.spool is None or not self._worker.running:
            return
        outcome = self._deliverer.spool(batch, "shutdown")
        if outcome.spooled:
            self._finish(batch, outcome)

    def _spool_leftovers(self) -> None:
        """At close: rows never cut into a batch go to the spool, else are dropped."""
        if not self._abort.is_set() and self._worker.running:
            return  # still delivering in the background (reconfiguration)
        queued = self._queue.leftovers()
        if queued is not None:
            batch = self._rows(queued)
            self._finish(batch, self._deliverer.spool(batch, "shutdown"))

    def stats(self) -> dict[str, Any]:
        """Counters (a consistent snapshot): ``emitted`` = ``sent`` + ``spooled`` +
        sum of ``dropped`` + ``pending``."""
        ledger = self._queue.snapshot()
        counts = ledger["counts"]
        return {
            **{key: counts.get(key, 0) for key in _COUNTS},
            "dropped": ledger["dropped"],
            "queue_depth": ledger["queue_depth"],
            "pending": ledger["pending"],
            "worker_restarts": max(0, self._worker.starts - 1),
            "last_error": self.reporter.last_error,
            "spool": {key: ledger["spool"].get(key, 0) for key in _SPOOL_KEYS}
            if self.spool is not None
            else None,
        }
