"""ClickHouse behind the backend seam, and plain inserters brought to it.

:class:`ClickHouseInserter` is the real backend (native protocol, column-wise), with
ClickHouse's error codes as its classification. Users may pass any
:class:`~genesis_logging.backend.Backend` to the handler instead, or an object with only
``insert`` and ``close`` (:class:`Inserter`), which :func:`as_backend` wraps.
"""

from __future__ import annotations

import contextlib
import math
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol, runtime_checkable

from clickhouse_driver import errors

from ._codec import Row, RowValue, compact_json
from ._columns import ColumnBlock
from ._faults import Fault
from ._inserts import Insert
from .backend import Backend
from .ddl import quote_identifier
from .schema import FIELDS, Field, Kind
from .settings import ConnectionSettings

__all__ = ["ClickHouseInserter", "Inserter", "as_backend", "classify_clickhouse_error"]


@runtime_checkable
class Inserter(Protocol):
    """The least a destination must have: ``insert`` and ``close``, duck-typed.

    Every :class:`~genesis_logging.backend.Backend` is one. A plain object gets the
    backend defaults through :func:`as_backend`, except its errors: they are judged by
    ClickHouse's rules, as they were before the seam had a ``classify``.
    """

    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        """Insert ``rows`` or raise (see :meth:`Backend.insert`)."""

    def close(self) -> None:
        """Release connections; may be followed by more ``insert`` calls."""


#: Server error codes that say "try again later", not "this can never work".
TRANSIENT_SERVER_CODES: Final = frozenset(
    {
        3,  # UNEXPECTED_END_OF_FILE
        32,  # ATTEMPT_TO_READ_AFTER_EOF
        159,  # TIMEOUT_EXCEEDED
        173,  # CANNOT_ALLOCATE_MEMORY
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        203,  # NO_FREE_CONNECTION
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        236,  # ABORTED
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        279,  # ALL_CONNECTION_TRIES_FAILED
        285,  # TOO_FEW_LIVE_REPLICAS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        425,  # SYSTEM_ERROR
        439,  # CANNOT_SCHEDULE_TASK
        999,  # KEEPER_EXCEPTION
    }
)

#: Server error codes that blame the data of some rows, not the connection or the table.
ROW_ERROR_SERVER_CODES: Final = frozenset({6, 26, 27, 38, 41, 53, 69, 70, 72, 117, 131, 349})

_TRANSIENT_TYPES: Final = (
    EOFError,  # the driver's answer to a connection closed mid-query
    OSError,  # ConnectionError, socket.timeout, refused, reset, unreachable
    socket.timeout,
    errors.NetworkError,
    errors.SocketTimeoutError,
    errors.UnexpectedPacketFromServerError,
    errors.UnknownPacketFromServerError,
)
#: What the driver raises while serialising a value its column type cannot hold.
_ROW_TYPES: Final = (TypeError, ValueError, OverflowError, UnicodeError, struct.error)


def classify_clickhouse_error(error: BaseException) -> Fault:
    """ClickHouse's and clickhouse-driver's errors sorted into the seam's three kinds.

    Network failures, timeouts and server overload are transient. A value a column type
    cannot hold (the driver raises plain Python errors while serialising it; the server
    names bad data with its own codes) blames some rows: splitting the batch isolates
    them. Authentication failures, unknown databases or tables are permanent: retrying
    them only adds load.
    """
    if isinstance(error, _TRANSIENT_TYPES):
        return Fault.TRANSIENT
    if isinstance(error, errors.Error):
        if error.code in TRANSIENT_SERVER_CODES:
            return Fault.TRANSIENT
        return Fault.REFUSED_ROWS if error.code in ROW_ERROR_SERVER_CODES else Fault.PERMANENT
    if isinstance(error, _ROW_TYPES):
        return Fault.REFUSED_ROWS
    return Fault.PERMANENT


class _PlainInserter(Backend):
    """An :class:`Inserter` (or a bare ``insert`` function) that is no :class:`Backend`:
    its own ``insert`` and ``close``, the defaults for the rest, and ClickHouse's
    classification (what every inserter got before the seam said otherwise; a user's
    object often wraps a ClickHouse client)."""

    def __init__(self, inserter: Inserter | Insert) -> None:
        self.wrapped = inserter
        self._insert = inserter.insert if isinstance(inserter, Inserter) else inserter

    def __repr__(self) -> str:
        return repr(self.wrapped)

    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        self._insert(rows, token)

    def close(self) -> None:
        if isinstance(self.wrapped, Inserter):
            self.wrapped.close()

    def classify(self, error: BaseException) -> Fault:
        return classify_clickhouse_error(error)


def as_backend(inserter: Backend | Inserter | Insert) -> Backend:
    """``inserter`` itself when it is a :class:`Backend`; else an object with ``insert``
    and ``close``, or an ``insert(rows, token)`` function, wrapped as one."""
    return inserter if isinstance(inserter, Backend) else _PlainInserter(inserter)


_REDESCRIBE_AFTER: Final = 60.0  # seconds before the table's columns are looked up again
#: Server errors that mean the table's columns changed since they were learned:
#: NO_SUCH_COLUMN_IN_TABLE, THERE_IS_NO_COLUMN, UNKNOWN_IDENTIFIER.
_COLUMN_CHANGED: Final = frozenset({16, 8, 47})
_DATETIME_MAX: Final = 2**32 - 1
_DATETIME64 = re.compile(r"DateTime64\((\d+)")
ColumnAdapter = Callable[[list[Any]], list[Any]]


def _adapter(field: Field, clickhouse_type: str) -> ColumnAdapter | None:
    """How a column of row values must change to suit the table's column type."""
    base = clickhouse_type
    for wrapper in ("LowCardinality(", "Nullable("):
        if base.startswith(wrapper):
            base = base[len(wrapper) : -1]
    match = _DATETIME64.match(base)
    if match:
        scale = int(match.group(1))
        if scale == 3:
            return None  # our milliseconds are already DateTime64(3) ticks
        if scale > 3:
            factor = 10 ** (scale - 3)
            return lambda values: [v * factor for v in values]
        divisor = 10 ** (3 - scale)
        return lambda values: [v // divisor for v in values]
    if base.startswith("DateTime"):
        # Whole seconds; DateTime holds 1970 to 2106 only: a time outside is stored at
        # the edge (the record keeps the rest; DateTime64 tables keep 1900 to 2299).
        return lambda values: [min(max(v // 1000, 0), _DATETIME_MAX) for v in values]
    if field.kind is Kind.STRING_MAP and base == "String":
        # A String column for a map (old servers have no Map type): JSON text.
        # Compact: ClickHouse's visitParam* functions read keys without spaces only.
        return lambda values: [v if isinstance(v, str) else compact_json(v) for v in values]
    return None


class ClickHouseInserter(Backend):
    """Insert rows column-wise over the native protocol with clickhouse-driver.

    Learns the table's columns once per connection (``DESCRIBE TABLE``) and sends only
    the record fields the table has. Not thread-safe: one per worker thread.

    Args:
        settings: where to connect.
        table: table name inside ``settings.database``.
    Attributes:
        missing_columns: the record fields the table lacks (learned on connecting); the
            deliverer reports them.
    """

    def __init__(
        self,
        settings: ConnectionSettings,
        table: str = "logs",
    ) -> None:
        self.settings = settings
        self.table = table
        self._target = f"{quote_identifier(settings.database)}.{quote_identifier(table)}"
        self.missing_columns: list[str] = []
        self._deadline = math.inf
        self._described_at = 0.0
        self._client: Any = None
        self._connecting: Any = None  # the client being connected (the watchdog may cut it)
        self._cut_off = False
        self._plan: list[tuple[str, RowValue, ColumnAdapter | None]] = []
        self._types: dict[str, str] = {}
        self._statement = ""
        self._insert_settings: dict[str, Any] = {}
        #: Whether the connected server honours ``insert_deduplication_token``.
        self.deduplicates = False

    def classify(self, error: BaseException) -> Fault:
        """ClickHouse's codes: see :func:`classify_clickhouse_error`."""
        return classify_clickhouse_error(error)

    def renew(self) -> ClickHouseInserter:
        """A fresh inserter for a forked child: the parent's socket is left alone."""
        return type(self)(self.settings, self.table)

    def __repr__(self) -> str:
        return f"<ClickHouseInserter {self.settings.redacted_url()} table={self.table}>"

    def _connect(self) -> Any:
        from clickhouse_driver import Client

        client = Client(**self.settings.client_kwargs())
        self._apply_deadline(client)
        self._connecting = client
        try:
            self._describe(client)
            info = client.connection.server_info
            # async_insert exists since 21.11; pin it off so the server's default
            # cannot turn our inserts into fire-and-forget.
            version = (info.version_major, info.version_minor)
            self._insert_settings = {"async_insert": 0} if version >= (21, 11) else {}
            if self._distributed(client):
                # A Distributed table acknowledges only once every shard has the rows:
                # async mode queues them on disk, where a replica's crash can lose a block.
                self._insert_settings["insert_distributed_sync"] = 1
            # insert_deduplication_token (22.2+) makes a retried batch land once, given a
            # deduplication window on the table (non_replicated_deduplication_window).
            self.deduplicates = version >= (22, 2)
        except BaseException:
            client.disconnect()
            raise
        finally:
            self._connecting = None
        return client

    def _distributed(self, client: Any) -> bool:
        """Whether the table is a ``Distributed`` one (unknown counts as no)."""
        try:
            rows = client.execute(
                "SELECT engine FROM system.tables WHERE database = %(d)s AND name = %(t)s",
                {"d": self.settings.database, "t": self.table},
            )
        except errors.ServerException:
            return False
        return bool(rows) and rows[0][0] == "Distributed"

    @property
    def host_in_use(self) -> str | None:
        """``host:port`` of the server the open connection reached (``None`` when closed)."""
        connection = getattr(self._client, "connection", None)
        host = getattr(connection, "host", None)
        return None if host is None else f"{host}:{getattr(connection, 'port', '')}"

    def _describe(self, client: Any) -> None:
        self.learn(client.execute(f"DESCRIBE TABLE {self._target}"))
        self._described_at = time.monotonic()

    def learn(self, described: Sequence[Sequence[Any]]) -> None:
        """Take the table's columns from a ``DESCRIBE TABLE`` result (name, type, ...)."""
        types = {str(row[0]): str(row[1]) for row in described}
        self._types = types
        self._plan = [
            (field.name, field.default, _adapter(field, types[field.name]))
            for field in FIELDS
            if field.name in types
        ]
        self.missing_columns = [field.name for field in FIELDS if field.name not in types]
        names = ", ".join(name for name, _, _ in self._plan)
        self._statement = f"INSERT INTO {self._target} ({names}) VALUES"

    @property
    def columns(self) -> list[str]:
        """The record fields sent, as learned from the table (empty before connecting)."""
        return [name for name, _, _ in self._plan]

    @property
    def column_types(self) -> list[tuple[str, str]]:
        """``(name, type)`` of the columns sent, in the order of :meth:`to_columns`."""
        return [(name, self._types[name]) for name, _, _ in self._plan]

    def to_columns(self, rows: Sequence[Row]) -> list[list[Any]]:
        """Rows to one list per sent column, with defaults and type adaptations; a
        :class:`ColumnBlock` (the handler's batches) gives its columns as they are."""
        columns: list[list[Any]] = []
        block = rows if isinstance(rows, ColumnBlock) else None
        for name, default, adapt in self._plan:
            values = (
                block.column(name)
                if block is not None
                else [row.get(name, default) for row in rows]
            )
            columns.append(adapt(values) if adapt is not None else values)
        return columns

    def limit_time(self, deadline: float) -> None:
        """Let no connect or socket wait of the next inserts outlast ``deadline``
        (``time.monotonic()``; ``math.inf`` restores the configured timeouts)."""
        self._deadline = deadline
        if self._client is not None:
            self._apply_deadline(self._client)

    def _apply_deadline(self, client: Any) -> None:
        remaining = max(0.05, self._deadline - time.monotonic())
        timeout = min(self.settings.send_receive_timeout, remaining)
        # One connection per host with round_robin: the deadline holds for each.
        for connection in (client.connection, *getattr(client, "connections", ())):
            connection.connect_timeout = min(self.settings.connect_timeout, remaining)
            connection.send_receive_timeout = connection.sync_request_timeout = timeout
            if getattr(connection, "socket", None) is not None:
                with contextlib.suppress(OSError):
                    connection.socket.settimeout(timeout)

    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        """Insert ``rows`` in one attempt of at most :meth:`attempt_budget` seconds.

        The driver's timeouts bound each socket read; a server that trickles its answer
        a few bytes at a time passes every one of them. A watchdog cuts the connection
        when the whole attempt outlasts its budget, and the attempt fails with a
        ``TimeoutError`` (retried, then spooled, like any network fault).
        """
        if not rows:
            return
        budget = self.attempt_budget()
        self._cut_off = False
        watchdog = threading.Timer(budget, self._cut_connection)
        watchdog.daemon = True
        # At interpreter exit 3.12+ starts no thread: the deadline close() sets on every
        # socket wait bounds the attempt then.
        with contextlib.suppress(RuntimeError):
            watchdog.start()
        try:
            self._insert(rows, token)
        except Exception as error:
            if self._cut_off:
                self.close()
                raise TimeoutError(
                    f"insert cut off after its {budget:g}s budget: the server answers too "
                    "slowly (connect_timeout + 2 × send_receive_timeout)"
                ) from error
            raise
        finally:
            watchdog.cancel()

    def attempt_budget(self) -> float:
        """Seconds one insert may take in all: connecting, sending, the server's answer."""
        budget = self.settings.connect_timeout + 2 * self.settings.send_receive_timeout
        return max(0.05, min(budget, self._deadline - time.monotonic()))

    def _cut_connection(self) -> None:
        """From the watchdog's thread: shut the socket, so the worker's read returns."""
        self._cut_off = True
        for client in (self._client, self._connecting):
            sock = getattr(getattr(client, "connection", None), "socket", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _insert(self, rows: Sequence[Row], token: str | None) -> None:
        if self._client is None:
            self._client = self._connect()
        elif time.monotonic() - self._described_at > _REDESCRIBE_AFTER:
            self._describe(self._client)  # a column added by an ALTER gets filled
        settings = self._insert_settings
        if token is not None and self.deduplicates:
            settings = {**settings, "insert_deduplication_token": token}
        try:
            self._execute(rows, settings)
        except errors.ServerException as error:
            if error.code not in _COLUMN_CHANGED:
                raise  # what we know of the table still holds (e.g. rows refused)
            self._describe(self._client)  # a column was dropped or renamed: once more
            self._execute(rows, settings)
        except Exception as error:
            if self.classify(error) is not Fault.REFUSED_ROWS:
                self.close()  # a fresh connection (and a fresh DESCRIBE) for the next try
            raise  # a value the column cannot hold: the plan stands; the driver reconnects

    def _execute(self, rows: Sequence[Row], settings: dict[str, Any]) -> None:
        self._client.execute(
            self._statement,
            self.to_columns(rows),
            columnar=True,
            types_check=False,
            settings=settings,
        )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):  # a broken socket must not mask the error
                client.disconnect()
