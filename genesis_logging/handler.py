"""Track 2: ship records to ClickHouse without the application ever feeling it.

The handler is thin: it turns keyword options into a validated configuration (once, in
:class:`~._config.HandlerConfig`), converts each record to a row in the caller's thread
and submits it to a :class:`BatchPipeline` (queue, worker thread, deliverer, spool
replayer). Nothing in a logging call does I/O.
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any, Final

from . import _guard
from ._columns import ColumnBuilder
from ._config import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_BLOCK_TIMEOUT,
    DEFAULT_FLUSH_INTERVAL,
    DEFAULT_MAX_FIELD_CHARS,
    DEFAULT_QUEUE_FULL_POLICY,
    DEFAULT_QUEUE_SIZE,
    DEFAULT_RETRY_ATTEMPTS,
    DEFAULT_RETRY_MAX_DELAY,
    DEFAULT_SHUTDOWN_TIMEOUT,
    DEFAULT_SPOOL_MAX_BYTES,
    DEFAULT_TABLE,
    QUEUE_FULL_POLICIES,
    HandlerConfig,
)
from ._convert import RecordConverter
from ._pipeline import BatchPipeline
from ._warnings import Reporter
from .backend import Backend
from .errors import ConfigurationError
from .settings import ConnectionSettings
from .signals import watch_signals
from .spool import Spool
from .transport import ClickHouseInserter, Inserter

__all__ = ["QUEUE_FULL_POLICIES", "ClickHouseHandler"]

_MARK: Final = _guard.MARK
_DEFERRED_ROUNDS = 8  # rounds of records logged during a logging call (signal handlers)
#: The parameters of ``__init__`` that are not options of the configuration: the stdlib
#: ``Handler``'s own (``level``), and the inserter.
_NOT_OPTIONS = frozenset(
    {*inspect.signature(logging.Handler.__init__).parameters, "inserter", "__class__"}
)


def _holds_logging_lock() -> bool:
    """Whether this thread holds the logging module's lock (``dictConfig`` does)."""
    is_owned = getattr(logging._lock, "_is_owned", None)  # type: ignore[attr-defined]
    return bool(is_owned()) if is_owned is not None else False


class ClickHouseHandler(logging.Handler):
    """A logging handler that inserts records into ``genesis.logs`` in the background.

    Every option is a keyword argument, so ``dictConfig`` can build it with ``class:``;
    their defaults and validation live in :class:`~._config.HandlerConfig`.
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
        inserter: deliver through this :class:`~genesis_logging.backend.Backend` (or a
            plain object with ``insert`` and ``close``) instead of a ClickHouse connection.
        alt_hosts: other hosts to try when ``host`` cannot be reached, as
            clickhouse-driver spells them: ``"h2:9000,h3:9000"``; each one that refuses
            or times out costs one ``connect_timeout`` (or ``send_receive_timeout``).
        round_robin: with ``alt_hosts``, spread the connections over every host instead
            of keeping to the first that answers.
        drain_on_signals: signal names (``SIGTERM``, ``SIGINT``) whose arrival drains or
            spools the queue within ``shutdown_timeout`` before the process's own handling
            goes on (issue 21).

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
        alt_hosts: str | None = None,
        round_robin: bool | str | None = None,
        table: str = DEFAULT_TABLE,
        batch_size: int = DEFAULT_BATCH_SIZE,
        flush_interval: float = DEFAULT_FLUSH_INTERVAL,
        queue_size: int = DEFAULT_QUEUE_SIZE,
        queue_full_policy: str = DEFAULT_QUEUE_FULL_POLICY,
        block_timeout: float = DEFAULT_BLOCK_TIMEOUT,
        retry_attempts: int = DEFAULT_RETRY_ATTEMPTS,
        retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        service: str | None = None,
        version: str | None = None,
        max_field_chars: int = DEFAULT_MAX_FIELD_CHARS,
        spool_dir: str | os.PathLike[str] | None = None,
        spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES,
        inserter: Backend | Inserter | None = None,
        drain_on_signals: Sequence[str] | None = None,
    ) -> None:
        # Every keyword but these is an option, forwarded once; validated before
        # Handler.__init__ registers us for logging.shutdown().
        options = {k: v for k, v in locals().items() if k not in _NOT_OPTIONS}
        self.config = config = HandlerConfig.from_options(options)
        connection = config.connection
        try:
            self.converter = RecordConverter(
                service=config.service,
                version=config.version,
                max_field_chars=config.max_field_chars,
            )
            destination = (connection.database, config.table)
            spool = (
                Spool(config.spool_dir, max_bytes=config.spool_max_bytes, destination=destination)
                if config.spool_dir
                else None
            )
        except (OSError, TypeError, ValueError) as error:
            raise ConfigurationError(str(error)) from None
        super().__init__(level)
        self._capture = self.converter.capture
        self._pipeline = BatchPipeline(
            config,
            inserter if inserter is not None else ClickHouseInserter(connection, config.table),
            Reporter(
                where=f"{connection.redacted_url()} table={config.table}",
                secret=connection.password,
            ),
            to_rows=ColumnBuilder(self.converter).build,
            spool=spool,
            name=f"genesis-logging-{config.table}",
            owner=self,
        )
        watch_signals(self, self.config.drain_on_signals)  # before a server sets its own

    @property
    def settings(self) -> ConnectionSettings:
        """Where the records go (the password stays out of ``repr``)."""
        return self.config.connection

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        return f"<{type(self).__name__} {self.settings.redacted_url()} table={self.config.table} ({level})>"

    def handle(self, record: logging.LogRecord) -> logging.LogRecord | bool:  # type: ignore[override]
        """Filter and emit without the handler lock: ``emit`` is thread-safe itself.

        The stdlib holds ``self.lock`` around ``emit``; here that would make callers
        queue behind one another, so one caller blocked by a full queue (``block``
        policy) would hold up every other caller beyond ``block_timeout``.
        """
        if not self.filters:  # the common case, without the call
            self.emit(record)
            return True
        result = self.filter(record)
        if isinstance(result, logging.LogRecord):
            record = result  # Python 3.12+: a filter may return a replacement record
        if result:
            self.emit(record)
        return result

    def emit(self, record: logging.LogRecord) -> None:
        """Convert the record here, queue the row, return. No I/O, never raises.

        Safe from signal handlers: a record logged while this thread is inside our code
        (a signal handler, a ``__repr__`` that logs) is submitted right after it: while
        the call runs, the guard's mark is a list of its own, which the exit reads after
        clearing the mark — a signal landing at any point is delivered or counted.
        """
        marks = _guard.MARKS.__dict__  # _guard.enter() and leave(), inlined: every record's path
        if _MARK in marks:  # inside our code already: a signal handler, or the worker
            if not _guard.defer(self, record):  # the worker's own logging, or delivery at exit
                self._pipeline.drop("recursion")
            return
        set_aside: _guard.SetAside = []
        marks[_MARK] = set_aside  # a signal from here on appends to this very list
        try:
            try:  # submit_deferred, inlined
                snapshot = self._capture(record)
            except Exception:
                self._pipeline.drop("capture_failed")
                self.handleError(record)
            else:
                try:
                    self._pipeline.submit(snapshot)
                except Exception:
                    self.handleError(record)
        finally:
            del marks[_MARK]  # then the list: whatever a signal set aside before is in it
            if set_aside:
                self._submit_set_aside(set_aside)

    def _submit_set_aside(self, set_aside: _guard.SetAside) -> None:
        """Records logged during the call (signal handlers), a few rounds at most; those
        still set aside after the last round are counted (a ``__repr__`` that logs every
        time it is called would recurse for ever)."""
        for _ in range(_DEFERRED_ROUNDS):
            entered = _guard.enter()
            try:
                for owner, later in set_aside:
                    owner.submit_deferred(later)
            finally:
                set_aside = _guard.leave(entered)
            if not set_aside:
                return
        for owner, later in set_aside:
            owner.discard_deferred(later)

    def submit_deferred(self, record: logging.LogRecord) -> None:
        """A record set aside during another call (a signal handler's), after it: capture
        and queue it (``emit`` does the same inline); errors go to ``handleError``, and a record that
        cannot even be captured (a mapping whose ``items()`` raises) is counted as
        dropped (``capture_failed``)."""
        try:
            snapshot = self._capture(record)
        except Exception:
            self._pipeline.drop("capture_failed")
            self.handleError(record)
            return
        try:
            self._pipeline.submit(snapshot)
        except Exception:
            self.handleError(record)

    def discard_deferred(self, record: logging.LogRecord) -> None:
        """Count a record that was set aside too often (recursion)."""
        self._pipeline.drop("recursion")

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
        return self._pipeline.drain(timeout, wait=not _holds_logging_lock())

    def close(self) -> None:
        """Deliver what is queued within ``shutdown_timeout``, stop the worker. Idempotent.

        Records emitted afterwards are counted as dropped (``closed``).
        """
        try:
            self._pipeline.close(wait=not _holds_logging_lock())
        finally:
            super().close()

    def stats(self) -> dict[str, Any]:
        """Counters of this handler (a snapshot; the password never appears).

        ``emitted`` = ``sent`` + ``spooled`` + sum of ``dropped`` + ``pending`` at
        every moment. ``spool`` counts what happened on disk (any process's files).
        """
        inserter = self._pipeline._deliverer.inserter
        return {
            **self._pipeline.stats(),
            "coerced": self.converter.coerced,
            "host": getattr(inserter, "host_in_use", None),  # which of the hosts, if several
        }
