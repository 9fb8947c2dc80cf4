"""Track 2: ship records to ClickHouse without the application ever feeling it.

``emit()`` converts the record in the caller's thread and appends the row to a bounded
queue; one daemon thread per handler cuts batches by count or interval and inserts them,
retrying transient failures with tenacity. Nothing in a logging call does I/O.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
import warnings
import weakref
from collections import Counter, deque
from typing import Any, Final, NamedTuple

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    sleep_using_event,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential_jitter,
)

from ._convert import DEFAULT_MAX_FIELD_CHARS, RecordConverter, Row
from ._faults import is_row_error, is_transient
from .errors import ConfigurationError, DeliveryWarning
from .settings import ConnectionSettings
from .spool import DEFAULT_SPOOL_MAX_BYTES, Spool, SpoolFile
from .transport import ClickHouseInserter, Inserter

__all__ = ["QUEUE_FULL_POLICIES", "ClickHouseHandler"]

#: What ``emit`` does when the queue is full.
QUEUE_FULL_POLICIES: Final = ("drop_newest", "drop_oldest", "block", "spool")

_WARNING_INTERVAL: Final = 30.0  # seconds between two warnings of the same kind
_PERMANENT_COOLDOWN: Final = (1.0, 60.0)  # first and longest pause after a permanent error
_REPLAY_INTERVAL: Final = 1.0  # seconds between two looks into an idle spool
_DEAD_LETTER_AFTER: Final = 5  # permanent failures before a spool file is set aside
_REPLAY_TRANSIENT_DELAY: Final = 5.0  # seconds before a file is tried again (server down)
_REPLAY_PERMANENT_DELAY: Final = 60.0  # ... after a permanent error, doubling each time
_ABORT_GRACE: Final = 0.5  # seconds close() gives the worker to wind down after aborting


class _Batch(NamedTuple):
    """Rows inserted together, with the identity that makes retries idempotent."""

    id: str
    rows: list[Row]


_REPLAY: Final = _Batch("replay", [])  # marker: the worker should replay the spool

_LIVE_HANDLERS: weakref.WeakSet[ClickHouseHandler] = weakref.WeakSet()


def _reinit_after_fork() -> None:
    for handler in list(_LIVE_HANDLERS):
        handler._after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reinit_after_fork)


def _positive(name: str, value: object, *, integer: bool = False, zero: bool = False) -> Any:
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigurationError(
            f"{name} must be a {'whole ' if integer else ''}number, got {value!r}"
        )
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return value


def _holds_logging_lock() -> bool:
    """Whether this thread holds the logging module's lock (``dictConfig`` does)."""
    is_owned = getattr(logging._lock, "_is_owned", None)  # type: ignore[attr-defined]
    return bool(is_owned()) if is_owned is not None else False


class ClickHouseHandler(logging.Handler):
    """A logging handler that inserts records into ``genesis.logs`` in the background.

    Every option is a keyword argument, so ``dictConfig`` can build it with ``class:``.
    Connection options fall back to ``CLICKHOUSE_URL``, ``CLICKHOUSE_HOST``,
    ``CLICKHOUSE_PORT``, ``CLICKHOUSE_USER``, ``CLICKHOUSE_PASSWORD``,
    ``CLICKHOUSE_SECURE`` and ``CLICKHOUSE_DATABASE``.

    Args:
        level: handler level.
        url: ``clickhouse://user:password@host:9000/genesis`` or, for TLS on the secure
            native port, ``clickhouses://user:password@host:9440/genesis``.
        host, port, user, password, database, secure, verify, ca_certs,
        connect_timeout, send_receive_timeout, compression: connection options; they win
            over the URL and the environment.
        table: table inside ``database``.
        batch_size: rows per insert, at most.
        flush_interval: seconds a row may wait for its batch to fill.
        queue_size: rows held in memory, at most.
        queue_full_policy: ``drop_newest``, ``drop_oldest``, ``block`` (wait up to
            ``block_timeout`` seconds for room, then drop the newest) or ``spool``
            (write the overflow to ``spool_dir``, a batch at a time).
        block_timeout: see ``queue_full_policy``.
        retry_attempts: attempts per batch for transient errors.
        retry_max_delay: seconds a batch may spend retrying.
        shutdown_timeout: seconds ``flush()``/``close()`` may wait for delivery.
        service, version: the ``service`` and ``version`` fields.
        max_field_chars: longest text of one field; longer text is cut with a marker
            and its original length kept in ``attributes``.
        spool_dir: directory for batches that cannot be delivered (off when ``None``);
            they are replayed, oldest first, when the server is back.
        spool_max_bytes: cap of the spool; the oldest files are evicted past it.
        inserter: deliver through this object instead of a ClickHouse connection.

    Raises:
        ConfigurationError: an invalid option; raised here, never in a logging call.
    """

    def __init__(
        self,
        level: int | str = logging.NOTSET,
        *,
        url: str | None = None,
        host: str | None = None,
        port: int | str | None = None,
        user: str | None = None,
        password: str | None = None,
        database: str | None = None,
        secure: bool | str | None = None,
        verify: bool | str | None = None,
        ca_certs: str | None = None,
        connect_timeout: float | str | None = None,
        send_receive_timeout: float | str | None = None,
        compression: str | None = None,
        table: str = "logs",
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        queue_size: int = 100_000,
        queue_full_policy: str = "drop_newest",
        block_timeout: float = 0.1,
        retry_attempts: int = 8,
        retry_max_delay: float = 30.0,
        shutdown_timeout: float = 5.0,
        service: str | None = None,
        version: str | None = None,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        inserter: Inserter | None = None,
    ) -> None:
        # Validate everything before Handler.__init__ registers us for logging.shutdown().
        if queue_full_policy not in QUEUE_FULL_POLICIES:
            raise ConfigurationError(
                f"queue_full_policy must be one of {', '.join(QUEUE_FULL_POLICIES)}, "
                f"got {queue_full_policy!r}"
            )
        if not isinstance(table, str) or not table:
            raise ConfigurationError("table must be a non-empty string")
        if queue_full_policy == "spool" and not spool_dir:
            raise ConfigurationError("queue_full_policy 'spool' needs spool_dir")
        try:
            self._spool = Spool(spool_dir, max_bytes=spool_max_bytes) if spool_dir else None
        except (OSError, ValueError) as error:
            raise ConfigurationError(f"spool_dir: {error}") from None
        self.batch_size: int = _positive("batch_size", batch_size, integer=True)
        self.queue_size: int = _positive("queue_size", queue_size, integer=True)
        self.flush_interval: float = _positive("flush_interval", flush_interval)
        self.block_timeout: float = _positive("block_timeout", block_timeout, zero=True)
        self.retry_attempts: int = _positive("retry_attempts", retry_attempts, integer=True)
        self.retry_max_delay: float = _positive("retry_max_delay", retry_max_delay, zero=True)
        self.shutdown_timeout: float = _positive("shutdown_timeout", shutdown_timeout, zero=True)
        self.queue_full_policy = queue_full_policy
        self.table = table
        self.settings = ConnectionSettings.resolve(
            url=url,
            host=host,
            port=port,
            user=user,
            password=password,
            database=database,
            secure=secure,
            verify=verify,
            ca_certs=ca_certs,
            connect_timeout=connect_timeout,
            send_receive_timeout=send_receive_timeout,
            compression=compression,
        )
        try:
            self.converter = RecordConverter(
                service=service, version=version, max_field_chars=max_field_chars
            )
        except (TypeError, ValueError) as error:
            raise ConfigurationError(str(error)) from None
        super().__init__(level)
        self._inserter: Inserter = inserter or ClickHouseInserter(
            self.settings, table, on_missing_columns=self._report_missing_columns
        )

        self._mutex = threading.Lock()
        self._work = threading.Condition(self._mutex)  # worker waits: rows, flush, close
        self._progress = threading.Condition(self._mutex)  # flushers and blocked callers wait
        self._rows: deque[Row] = deque()
        self._oldest_at = 0.0  # monotonic time the queue last became non-empty
        self._enqueued = 0  # rows ever queued
        self._settled = 0  # rows committed, failed or evicted from the queue
        self._in_flight = 0
        self._flush_target = 0
        self._closing = False
        self._cooldown_until = 0.0
        self._cooldown = _PERMANENT_COOLDOWN[0]
        self._stalled: tuple[float, int] | None = None
        self._abort = threading.Event()  # cuts retries and backoffs short at shutdown
        self._worker: threading.Thread | None = None
        self._worker_ident: int | None = None
        self._worker_running = False
        self._inline = False  # no thread could be started: deliver in flush()/close()

        self._overflow: list[Row] = []  # queue_full_policy "spool": rows bound for disk
        self._spilling = 0  # overflow rows being written by a caller right now
        self._current: _Batch | None = None  # the batch the worker is delivering
        self._rescued: str | None = None  # id of a batch close() spooled for the worker
        self._next_replay_at = time.monotonic() if self._spool is not None else math.inf
        self._spool_counts: Counter[str] = Counter()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._last_error: str | None = None
        self._last_warned: dict[str, float] = {}
        self._missing_reported = False
        self._retrying = self._make_retrying()
        _LIVE_HANDLERS.add(self)

    def _make_retrying(self) -> Retrying:
        return Retrying(
            stop=(
                stop_after_attempt(self.retry_attempts)
                | stop_after_delay(self.retry_max_delay)
                | stop_when_event_set(self._abort)
            ),
            wait=wait_exponential_jitter(initial=0.1, max=5.0, jitter=0.2),
            sleep=sleep_using_event(self._abort),
            retry=retry_if_exception(is_transient),
            before_sleep=self._before_retry,
            reraise=True,
        )

    def _after_fork_in_child(self) -> None:
        """Start afresh in a forked child: own locks, empty queue, no worker, no socket.

        The parent's pending rows stay the parent's to deliver; the child never sends
        them a second time. The inherited connection is abandoned, not closed: closing it
        would cut the parent's socket too.
        """
        self._mutex = threading.Lock()
        self._work = threading.Condition(self._mutex)
        self._progress = threading.Condition(self._mutex)
        self._rows = deque()
        self._overflow = []
        self._spilling = 0
        self._enqueued = self._settled = self._in_flight = self._flush_target = 0
        self._counts = Counter()
        self._dropped = Counter()
        self._spool_counts = Counter()
        self._worker = None
        self._worker_ident = None
        self._worker_running = False
        self._abort = threading.Event()
        self._retrying = self._make_retrying()
        if isinstance(self._inserter, ClickHouseInserter):
            self._inserter = ClickHouseInserter(
                self.settings, self.table, on_missing_columns=self._report_missing_columns
            )

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return (
            f"<{type(self).__name__} {self.settings.redacted_url()} table={self.table} ({level})>"
        )

    # -- the caller's side -------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        """Filter and emit without the handler lock: ``emit`` is thread-safe itself.

        The stdlib holds ``self.lock`` around ``emit``; here that would make callers
        queue behind one another, so one caller blocked by a full queue (``block``
        policy) would hold up every other caller beyond ``block_timeout``.
        """
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):
            record = result  # Python 3.12+: a filter may return a replacement record
        if result:
            self.emit(record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Convert the record here, queue the row, return. No I/O, never raises."""
        try:
            if threading.get_ident() == self._worker_ident:
                self._drop("recursion")  # our own thread logging (driver, tenacity, warnings)
                return
            if self._closing:
                self._drop("closed")
                return
            self._enqueue(self.converter.convert(record))
            if not self._worker_running:
                self._start_worker()
        except Exception:
            self.handleError(record)

    def _drop(self, reason: str, count: int = 1) -> None:
        with self._mutex:
            self._counts["emitted"] += count
            self._dropped[reason] += count

    def _enqueue(self, row: Row) -> None:
        dropped = False
        spill: list[Row] = []
        with self._mutex:
            self._counts["emitted"] += 1
            rows = self._rows
            if len(rows) >= self.queue_size:
                policy = self.queue_full_policy
                if policy == "spool":
                    self._overflow.append(row)  # pending, on its way to disk
                    if len(self._overflow) >= self.batch_size:
                        spill, self._overflow = self._overflow, []
                    row = {}
                elif policy == "drop_oldest":
                    rows.popleft()
                    self._settled += 1
                    self._dropped["queue_full"] += 1
                    dropped = True
                elif policy == "drop_newest" or not self._wait_for_room():
                    self._dropped["queue_full"] += 1
                    row = {}
                    dropped = True
            if row:
                if not rows:
                    self._oldest_at = time.monotonic()
                    self._work.notify()
                rows.append(row)
                self._enqueued += 1
                if len(rows) == self.batch_size:
                    self._work.notify()
        if spill:  # the caller writes one spool file per batch_size refused records
            self._spill(spill)
        if dropped:  # outside the lock: warnings may come back through logging
            self._warn("queue_full", f"queue full ({self.queue_full_policy}): records dropped")

    def _spill(self, rows: list[Row]) -> None:
        """Write refused rows to the spool (``_spool_rows`` counts the outcome)."""
        with self._mutex:
            self._spilling += len(rows)
        try:
            self._spool_rows(rows, uuid.uuid4().hex)
        finally:
            with self._mutex:
                self._spilling -= len(rows)

    def _wait_for_room(self) -> bool:
        deadline = time.monotonic() + self.block_timeout
        while len(self._rows) >= self.queue_size and not self._closing:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self._progress.wait(remaining)
        return not self._closing

    # -- the worker ----------------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._mutex:
            if self._worker_running or self._closing or self._inline:
                return
            if self._worker is not None:
                self._counts["worker_restarts"] += 1
            thread = threading.Thread(
                target=self._run, name=f"genesis-logging-{self.table}", daemon=True
            )
            try:
                thread.start()
            except RuntimeError:
                # "can't create new thread at interpreter shutdown": deliver from
                # flush()/close() in the caller's thread instead.
                self._inline = True
                return
            self._worker = thread
            self._worker_running = True

    def _run(self) -> None:
        self._worker_ident = threading.get_ident()
        try:
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                if batch is _REPLAY:
                    self._replay_one()
                else:
                    self._deliver(batch)
        finally:
            with self._mutex:
                if self._in_flight:  # only reachable through a bug: count, never hide
                    self._dropped["worker_died"] += self._in_flight
                    self._settled += self._in_flight
                    self._in_flight = 0
                self._worker_running = False
                self._worker_ident = None
                self._progress.notify_all()
            self._inserter.close()

    def _next_batch(self, *, wait: bool = True) -> _Batch | None:
        """Block until a batch (or a replay from the spool) is due; ``None`` to stop."""
        with self._mutex:
            while True:
                now = time.monotonic()
                count = len(self._rows)
                if self._closing and self._abort.is_set():
                    return None
                cooling = now < self._cooldown_until and not self._closing
                replay_at = self._next_replay_at if self._spool is not None else math.inf
                if wait and not self._closing and not cooling and now >= replay_at:
                    return _REPLAY
                due = count >= self.batch_size or (
                    count
                    and (
                        self._closing
                        or self._flush_target > self._settled
                        or now - self._oldest_at >= self.flush_interval
                    )
                )
                if due and not cooling:
                    take = min(count, self.batch_size)
                    rows = [self._rows.popleft() for _ in range(take)]
                    self._in_flight += take
                    if self._overflow:  # room again: refused rows rejoin the queue
                        moved = self._overflow[: self.queue_size - len(self._rows)]
                        del self._overflow[: len(moved)]
                        self._rows.extend(moved)
                        self._enqueued += len(moved)
                    if self._rows:
                        self._oldest_at = now
                    self._progress.notify_all()  # room for blocked callers
                    return _Batch(uuid.uuid4().hex, rows)
                if not count and self._closing:
                    return None
                if not wait:
                    return None
                deadlines = [replay_at]
                if cooling:
                    deadlines.append(self._cooldown_until)
                elif count:
                    deadlines.append(self._oldest_at + self.flush_interval)
                wake = min(deadlines)
                self._work.wait(None if wake == math.inf else max(0.0, wake - now))

    def _deliver(self, batch: _Batch) -> None:
        self._current = batch
        try:
            self._retrying(self._inserter.insert, batch.rows, batch.id)
        except Exception as error:
            if is_row_error(error) and len(batch.rows) > 1:
                self._isolate(batch, error)
            else:
                self._record_failure(batch, error)
        else:
            self._record_success(batch)
        finally:
            self._current = None

    def _was_rescued(self, batch: _Batch) -> bool:
        """close() spooled this batch (or its whole) already and counted it."""
        return self._rescued is not None and batch.id.startswith(self._rescued)

    def _record_success(self, batch: _Batch) -> None:
        count = len(batch.rows)
        with self._mutex:
            if self._was_rescued(batch):
                return
            self._counts["sent"] += count
            self._counts["batches"] += 1
            self._settled += count
            self._in_flight = max(0, self._in_flight - count)
            self._cooldown = _PERMANENT_COOLDOWN[0]
            self._progress.notify_all()

    def _isolate(self, batch: _Batch, error: Exception) -> None:
        """Split a batch that some rows poison until only the offenders are left out."""
        if len(batch.rows) == 1:
            with self._mutex:
                self._last_error = self._describe(error)
            self._record_failure(batch, error, reason="bad_row")
            return
        middle = len(batch.rows) // 2
        for suffix, rows in (("a", batch.rows[:middle]), ("b", batch.rows[middle:])):
            half = _Batch(f"{batch.id}{suffix}", rows)
            try:
                self._retrying(self._inserter.insert, half.rows, half.id)
            except Exception as inner:
                if is_row_error(inner):
                    self._isolate(half, inner)
                else:
                    self._record_failure(half, inner)
            else:
                self._record_success(half)

    def _record_failure(
        self, batch: _Batch, error: Exception, *, reason: str | None = None
    ) -> None:
        if self._was_rescued(batch):
            return
        transient = is_transient(error)
        reason = reason or ("delivery_failed" if transient else "permanent_error")
        message = self._describe(error)
        spooled = None if reason == "bad_row" else self._spool_rows(batch.rows, batch.id)
        with self._mutex:
            if spooled is None:
                self._dropped[reason] += len(batch.rows)
            self._counts["failed_batches"] += 1
            self._settled += len(batch.rows)
            self._in_flight = max(0, self._in_flight - len(batch.rows))
            self._last_error = message
            if not transient and reason != "bad_row":
                # No retry storm: leave the server alone for a while; records queue up.
                self._cooldown_until = time.monotonic() + self._cooldown
                self._cooldown = min(self._cooldown * 2, _PERMANENT_COOLDOWN[1])
            self._progress.notify_all()
        outcome = "spooled to disk" if spooled else "not delivered"
        kind = {
            "delivery_failed": "gave up after retries",
            "permanent_error": "permanent error, not retried",
            "bad_row": "the server refused this row",
        }[reason]
        self._warn(reason, f"{len(batch.rows)} records {outcome} ({kind}): {message}")

    # -- the spool -----------------------------------------------------------------------

    def _spool_rows(self, rows: list[Row], batch_id: str) -> bool | None:
        """Write rows to the spool and count the outcome.

        Returns:
            ``True`` when they are safe on disk, ``False`` when writing failed (counted
            as dropped, ``spool_failed``), ``None`` when there is no spool.
        """
        spool = self._spool
        if spool is None:
            return None
        try:
            evicted = spool.write(rows, batch_id)
        except OSError as error:
            with self._mutex:
                self._dropped["spool_failed"] += len(rows)
                self._spool_counts["write_failures"] += 1
                self._last_error = f"spool: {error}"
            self._warn("spool_failed", f"{len(rows)} records could not be spooled: {error}")
            return False
        with self._mutex:
            self._counts["spooled"] += len(rows)
            self._spool_counts["written_rows"] += len(rows)
            self._spool_counts["evicted_rows"] += evicted
            self._next_replay_at = min(self._next_replay_at, time.monotonic() + _REPLAY_INTERVAL)
        if evicted:
            self._warn("spool_evicted", f"spool full: {evicted} oldest spooled records evicted")
        return True

    def _replay_one(self) -> None:
        """Deliver the oldest due spool file, once; reschedule the next attempt."""
        spool = self._spool
        assert spool is not None
        try:
            entry = spool.claim()
        except OSError:
            entry = None
        if entry is None:
            self._schedule_replay(_REPLAY_INTERVAL)
            return
        try:
            rows, unreadable = spool.read(entry)
            for index in range(0, len(rows), self.batch_size):
                chunk = rows[index : index + self.batch_size]
                token = (
                    entry.batch_id if len(rows) <= self.batch_size else f"{entry.batch_id}-{index}"
                )
                self._inserter.insert(chunk, token)
        except Exception as error:
            self._replay_failed(spool, entry, error)
            return
        spool.complete(entry)
        with self._mutex:
            self._spool_counts["replayed_rows"] += len(rows)
            self._spool_counts["unreadable_lines"] += unreadable
            self._next_replay_at = time.monotonic()  # more may wait: go on at once

    def _replay_failed(self, spool: Spool, entry: SpoolFile, error: Exception) -> None:
        """Put a file back with a backoff; after repeated permanent failures, aside."""
        transient = isinstance(error, OSError) or is_transient(error)
        message = self._describe(error)
        if transient:
            delay = _REPLAY_TRANSIENT_DELAY
        else:  # e.g. a missing table an operator may still create: wait longer each time
            delay = min(_REPLAY_PERMANENT_DELAY * 2.0**entry.failures, 3600.0)
        try:
            if not transient and entry.failures + 1 >= _DEAD_LETTER_AFTER:
                spool.bury(entry)
                with self._mutex:
                    self._spool_counts["dead_letter_rows"] += entry.rows
                self._warn(
                    "dead_letter",
                    f"spool file set aside in dead/ after {_DEAD_LETTER_AFTER} permanent "
                    f"failures ({message}); 'genesis-logging spool replay --dead' retries it",
                    force=True,
                )
            else:
                spool.release(entry, retry_in=delay, failed=not transient)
        except OSError:
            pass  # a claim left behind is recovered once this process has gone
        with self._mutex:
            self._last_error = message
        self._schedule_replay(delay)
        self._warn(
            "replay_failed", f"replaying the spool failed, next try in {delay:.0f}s: {message}"
        )

    def _schedule_replay(self, delay: float) -> None:
        with self._mutex:
            self._next_replay_at = time.monotonic() + delay

    def _before_retry(self, state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        message = self._describe(error) if error else "unknown error"
        with self._mutex:
            self._counts["retries"] += 1
            self._last_error = message
        self._warn("retrying", f"insert failed, retrying: {message}")

    def _describe(self, error: BaseException) -> str:
        # Server messages end in a long stack trace: keep only what a person reads.
        text = f"{type(error).__name__}: {error}".split("Stack trace:")[0]
        text = " ".join(text.split())
        return self.settings.scrub(f"{text} [{self.settings.redacted_url()} table={self.table}]")

    def _report_missing_columns(self, missing: list[str]) -> None:
        if self._missing_reported:
            return
        self._missing_reported = True
        self._warn(
            "missing_columns",
            f"table {self.settings.database}.{self.table} has no column for "
            f"{', '.join(missing)}: those fields are not stored",
            force=True,
        )

    def _warn(self, kind: str, message: str, *, force: bool = False) -> None:
        """Report a delivery problem, at most once per interval and kind; never via logging."""
        now = time.monotonic()
        last = self._last_warned.get(kind)
        if not force and last is not None and now - last < _WARNING_INTERVAL:
            return
        self._last_warned[kind] = now
        warnings.warn(f"genesis-logging: {message}", DeliveryWarning, stacklevel=2)

    # -- flush, close, stats -------------------------------------------------------------

    def flush(self) -> None:
        """Wait (up to ``shutdown_timeout``) until earlier records are delivered or failed."""
        self.drain()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every record emitted before this call is committed or has failed.

        Returns:
            ``True`` when all of them settled, ``False`` when ``timeout`` (default
            ``shutdown_timeout``) ran out first. Never waits while the calling thread
            holds the logging module's lock (``dictConfig`` re-configuring), since the
            worker may need that lock to make progress.
        """
        limit = self.shutdown_timeout if timeout is None else timeout
        with self._mutex:
            target = self._enqueued
            if self._settled >= target:
                return True
            self._flush_target = max(self._flush_target, target)
            self._work.notify()
            settled_before = self._settled
        if self._inline:
            self._deliver_inline(time.monotonic() + limit)
        elif not self._worker_running:
            self._start_worker()
        if _holds_logging_lock():
            return False
        deadline = time.monotonic() + limit
        with self._mutex:
            while self._settled < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not (self._worker_running or self._inline):
                    stalled = self._settled == settled_before
                    self._stalled = (time.monotonic(), self._settled) if stalled else None
                    return False
                self._progress.wait(remaining)
            return True

    def _deliver_inline(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            batch = self._next_batch(wait=False)
            if batch is None:
                return
            self._deliver(batch)

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout``, stop the worker. Idempotent.

        Records emitted afterwards are counted as dropped (``closed``). When the server
        is unreachable, at most ``shutdown_timeout`` is spent here — less if a ``flush()``
        just spent it without any progress (``logging.shutdown()`` calls both).
        """
        with self._mutex:
            if self._closing:
                return
            self._closing = True
            self._work.notify_all()
            self._progress.notify_all()
            stalled = self._stalled
        limit = self.shutdown_timeout
        if (
            stalled is not None
            and stalled[1] == self._settled
            and time.monotonic() - stalled[0] < limit
        ):
            limit = 0.0  # a flush() just waited the whole timeout for nothing
        try:
            if self._inline:
                self._deliver_inline(time.monotonic() + limit)
            elif not _holds_logging_lock():
                self._wait_for_worker(time.monotonic() + limit)
        finally:
            with self._mutex:
                finished = not self._worker_running
            if not finished and not _holds_logging_lock():
                self._abort.set()  # stop retrying: the worker spools its batch and ends
                self._wait_for_worker(time.monotonic() + _ABORT_GRACE)
                self._rescue_in_flight()
            self._drop_leftovers()
            if finished:
                self._inserter.close()
            super().close()

    def _rescue_in_flight(self) -> None:
        """The worker is stuck (a server that never answers): spool its batch from here.

        Should the worker still deliver it later, the copy on disk carries the same batch
        identity, which servers that deduplicate recognise.
        """
        with self._mutex:
            batch = self._current if self._worker_running else None
            if batch is None or self._spool is None:
                return
            self._rescued = batch.id
        if self._spool_rows(batch.rows, batch.id):
            with self._mutex:
                self._in_flight = max(0, self._in_flight - len(batch.rows))
                self._settled += len(batch.rows)
                self._progress.notify_all()

    def _wait_for_worker(self, deadline: float) -> None:
        with self._mutex:
            while self._worker_running:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._progress.wait(remaining)

    def _drop_leftovers(self) -> None:
        """At close: queued rows that were not delivered go to the spool, else are dropped."""
        with self._mutex:
            if not self._abort.is_set() and self._worker_running:
                return  # still delivering in the background (reconfiguration)
            left = list(self._rows) + self._overflow
            self._settled += len(self._rows)
            self._rows.clear()
            self._overflow = []
        if not left:
            return
        if self._spool_rows(left, uuid.uuid4().hex) is not None:
            return  # on disk, or counted as spool_failed
        with self._mutex:
            self._dropped["shutdown"] += len(left)
        self._warn("shutdown", f"{len(left)} records not delivered before shutdown", force=True)

    def stats(self) -> dict[str, Any]:
        """Counters of this handler (a snapshot; the password never appears).

        ``emitted`` = ``sent`` + ``spooled`` + sum of ``dropped`` + ``pending`` at
        every moment. ``spool`` counts what happened on disk (any process's files).
        """
        with self._mutex:
            return {
                "emitted": self._counts["emitted"],
                "sent": self._counts["sent"],
                "spooled": self._counts["spooled"],
                "batches": self._counts["batches"],
                "failed_batches": self._counts["failed_batches"],
                "retries": self._counts["retries"],
                "dropped": dict(self._dropped),
                "queue_depth": len(self._rows),
                "pending": len(self._rows)
                + self._in_flight
                + len(self._overflow)
                + self._spilling,
                "coerced": self.converter.coerced,
                "worker_restarts": self._counts["worker_restarts"],
                "last_error": self._last_error,
                "spool": {
                    key: self._spool_counts[key]
                    for key in (
                        "written_rows",
                        "replayed_rows",
                        "evicted_rows",
                        "dead_letter_rows",
                        "unreadable_lines",
                        "write_failures",
                    )
                }
                if self._spool is not None
                else None,
            }
