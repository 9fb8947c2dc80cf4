"""Where the logs are read from: a ClickHouse server, or the local store on a laptop.

The local store is a directory of JSON-lines files (one per process, rotated by size)
written by :class:`LocalStoreHandler`. Reading goes through chDB with a view named
``genesis.logs`` over those files, so a query written for production runs unchanged.
Every user-supplied value is passed as a query parameter, never formatted into SQL.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import re
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from .ddl import quote_identifier, quote_string, view_statements
from .errors import ConfigurationError
from .schema import FIELDS, Kind
from .settings import ConnectionSettings

__all__ = [
    "LocalStore",
    "LocalStoreHandler",
    "QueryResult",
    "ServerStore",
    "Store",
    "local_log_dir",
    "prepare_mcp_data_path",
    "select_records",
    "spec_ids",
]

CHDB_SUBDIR: Final = ".chdb"
_EMPTY_FILE: Final = "genesis-empty.jsonl"  # keeps the view's glob matching in an empty store


def local_log_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else ``$GENESIS_LOG_DIR``, else ``None``."""
    value = explicit or os.environ.get("GENESIS_LOG_DIR")
    return Path(value) if value else None


class LocalStoreHandler(logging.handlers.RotatingFileHandler):
    """Append genesis JSON lines to ``<log_dir>/genesis-<host>-<pid>.jsonl``, rotated by size.

    Args:
        log_dir: the store's directory (default ``$GENESIS_LOG_DIR``); created if missing.
        max_bytes: size at which a file is rotated (``.1``, ``.2`` … are kept).
        backup_count: rotated files kept per process.
        service, version: as for :class:`GenesisJsonFormatter`.
    """

    def __init__(
        self,
        log_dir: str | os.PathLike[str] | None = None,
        *,
        max_bytes: int = 64 * 1024 * 1024,
        backup_count: int = 10,
        service: str | None = None,
        version: str | None = None,
    ) -> None:
        directory = local_log_dir(log_dir)
        if directory is None:
            raise ConfigurationError("LocalStoreHandler needs log_dir or GENESIS_LOG_DIR")
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigurationError(f"log_dir {directory}: {error}") from None
        name = f"genesis-{socket.gethostname()}-{os.getpid()}.jsonl"
        super().__init__(
            directory / name,
            maxBytes=max_bytes,
            backupCount=backup_count,
            encoding="utf-8",
            delay=True,
        )
        from .formatter import GenesisJsonFormatter  # here: the readers do not need it

        self.setFormatter(GenesisJsonFormatter(service=service, version=version))


class QueryResult:
    """Column names and rows of a query."""

    def __init__(self, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
        self.columns = list(columns)
        self.rows = [tuple(row) for row in rows]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


class Store(Protocol):
    """Runs SQL with named, typed parameters written ``{name:Type}`` in the text."""

    name: str
    logs: str  # the qualified name of the logs table in this store

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, readonly: bool = False
    ) -> QueryResult: ...

    def attribute(self, name: str) -> str:
        """The SQL expression of one key of ``attributes`` (``''`` when absent)."""
        ...

    def column(self, name: str) -> str:
        """The SQL expression of a record column (a stand-in when the table lacks it)."""
        ...

    def select(
        self,
        spec: str,
        logger: str,
        columns: Sequence[str],
        attributes: Sequence[str] = (),
        *,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        """The records of ``spec`` written by ``logger`` (and, when given, whose
        ``kind`` attribute is ``kind``), oldest first by iteration then timestamp.

        Each record is a dict of the named columns and attributes (``''`` for an
        attribute the record lacks). The loop's questions go through here, so a store
        may answer them without SQL.
        """
        ...

    def specs(self) -> list[str]:
        """Every ``spec_id`` the store holds, sorted."""
        ...

    def close(self) -> None: ...


def spec_ids(store: Store) -> list[str]:
    """:meth:`Store.specs` in SQL, for any store that runs it."""
    result = store.query(f"SELECT DISTINCT spec_id FROM {store.logs} ORDER BY spec_id")
    return [str(row[0]) for row in result.rows if row[0]]


def select_records(
    store: Store,
    spec: str,
    logger: str,
    columns: Sequence[str],
    attributes: Sequence[str] = (),
    *,
    kind: str | None = None,
) -> list[dict[str, Any]]:
    """:meth:`Store.select` in SQL, for any store that runs it."""
    selected = [f"{store.column(name)} AS {name}" for name in columns]
    selected += [f"{store.attribute(name)} AS {name}" for name in attributes]
    where = f"spec_id = {{spec:String}} AND {store.column('logger')} = {{logger:String}}"
    params: dict[str, Any] = {"spec": spec, "logger": logger}
    if kind is not None:
        where += f" AND {store.attribute('kind')} = {{kind:String}}"
        params["kind"] = kind
    result = store.query(
        f"SELECT {', '.join(selected)} FROM {store.logs} WHERE {where} "
        "ORDER BY iteration, timestamp",
        params,
    )
    return result.dicts()


def _structure() -> str:
    types = {Kind.TIMESTAMP: "DateTime64(3, 'UTC')", Kind.STRING_MAP: "Map(String, String)"}
    return ", ".join(f"{f.name} {types.get(f.kind, f.clickhouse_type)}" for f in FIELDS)


def _chdb_session(path: str) -> Any:
    from chdb import session as chdb_session_module

    chdb_session: Any = chdb_session_module  # untyped third-party API
    return chdb_session.Session(path)


def _create_view(session: Any, directory: Path) -> None:
    """(Re)create the view ``genesis.logs`` over the JSON-lines files in ``directory``."""
    (directory / _EMPTY_FILE).touch()
    pattern = quote_string(str(directory / "*.jsonl*"))
    session.query("CREATE DATABASE IF NOT EXISTS genesis")
    session.query(
        "CREATE OR REPLACE VIEW genesis.logs AS SELECT * FROM "
        f"file({pattern}, 'JSONEachRow', {quote_string(_structure())}) "
        "SETTINGS date_time_input_format = 'best_effort'"
    )
    for statement in view_statements("genesis", "logs"):  # the assistant's views
        session.query(statement)


def prepare_mcp_data_path(log_dir: str | os.PathLike[str]) -> tuple[Path, bool]:
    """Create ``genesis.logs`` in ``<log_dir>/.chdb``, the chDB path the MCP server opens.

    Returns the path and whether it was prepared now. A running MCP server holds the
    path's lock; the path was then prepared before that server started, so it is left
    alone (``False``).
    """
    directory = Path(log_dir).resolve()
    path = directory / CHDB_SUBDIR
    if _locked_by_another_process(path):
        return path, False
    session = _chdb_session(str(path))
    try:
        _create_view(session, directory)
    finally:
        session.close()
    return path, True


def _locked_by_another_process(chdb_path: Path) -> bool:
    """Whether a chDB (or ClickHouse) process holds ``<chdb_path>/status``'s ``flock``."""
    import fcntl

    try:
        descriptor = os.open(chdb_path / "status", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        return False
    finally:
        os.close(descriptor)


class LocalStore:
    """The local store read through chDB, exposed as ``genesis.logs``.

    The loop's own reads (:meth:`select`, :meth:`specs`, :meth:`latest`) are answered from
    an index of the files (:mod:`genesis_logging._local_index`) without starting chDB, whose
    start-up costs most of a second; chDB starts on the first SQL query.

    The session is in memory: the store's files are the only state, and no lock is held
    on a path, so any number of readers run beside the MCP server (which owns
    ``<log_dir>/.chdb`` for as long as the assistant is connected).
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        self.directory = Path(log_dir).resolve()
        if not self.directory.is_dir():
            raise ConfigurationError(f"log directory {self.directory} does not exist")
        self.name = f"local store {self.directory}"
        self.logs = "genesis.logs"
        self._chdb: Any = None
        self._index: Any = None  # a LocalIndex, or False when the files need chDB

    @property
    def _session(self) -> Any:
        """The chDB session, started (and the view created) on first use."""
        if self._chdb is None:
            self._chdb = _chdb_session(":memory:")
            _create_view(self._chdb, self.directory)
        return self._chdb

    def ensure_view(self) -> None:
        """(Re)create the view ``genesis.logs`` over the store's files."""
        if self._chdb is not None:
            _create_view(self._chdb, self.directory)

    def _fresh_index(self) -> Any:
        """The index, current with the files; ``None`` when only chDB can read them."""
        from ._local_index import LocalIndex, UnindexableError

        if self._index is False:
            return None
        try:
            if self._index is None:
                self._index = LocalIndex(self.directory)
            self._index.refresh()
            self._index.save()
        except UnindexableError:
            self._index = False
            return None
        return self._index

    def attribute(self, name: str) -> str:
        return f"attributes[{quote_string(name)}]"

    def column(self, name: str) -> str:
        return quote_identifier(name)

    def select(
        self,
        spec: str,
        logger: str,
        columns: Sequence[str],
        attributes: Sequence[str] = (),
        *,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        from ._local_index import UnindexableError

        index = self._fresh_index()
        if index is not None:
            try:
                return list(index.select(spec, logger, columns, attributes, kind=kind))
            except UnindexableError:
                self._index = False
        return select_records(self, spec, logger, columns, attributes, kind=kind)

    def specs(self) -> list[str]:
        index = self._fresh_index()
        return list(index.specs()) if index is not None else spec_ids(self)

    def latest(
        self, limit: int, *, spec: str | None = None, level: str | None = None, since: Any = None
    ) -> QueryResult | None:
        """``tail``'s newest ``limit`` records (newest first) from the index, ``since`` a
        timestamp as this returns it; ``None`` when the files need chDB."""
        from ._local_index import TAIL_COLUMNS, UnindexableError, clickhouse_milliseconds

        index = self._fresh_index()
        if index is None:
            return None
        after = clickhouse_milliseconds(since) if since is not None else None
        try:
            rows = index.latest(limit, spec=spec, level=level, since=after)
        except UnindexableError:
            self._index = False
            return None
        return QueryResult(TAIL_COLUMNS, [[row[c] for c in TAIL_COLUMNS] for row in rows])

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, readonly: bool = False
    ) -> QueryResult:
        """Run ``sql``; with ``readonly``, only a query that reads (no DDL, no writing
        through table functions or ``INTO OUTFILE``)."""
        import json

        if readonly:
            self._check_reads_only(sql)
        result = self._session.query(sql, "JSONCompactEachRowWithNames", params=params or {})
        lines = str(result).split("\n")  # not splitlines(): U+2028 and NEL are text
        lines = [line for line in lines if line]
        if not lines:
            return QueryResult([], [])
        columns = json.loads(lines[0])
        return QueryResult(columns, [json.loads(line) for line in lines[1:]])

    def _check_reads_only(self, sql: str) -> None:
        if _WRITES.search(sql):
            raise ConfigurationError("query is read-only: it may not write (INTO OUTFILE)")
        ast = str(self._session.query(f"EXPLAIN AST {sql}", "TSVRaw")).splitlines()
        kind = ast[0].split()[0] if ast else ""
        if kind not in _READING_QUERIES or any("InsertQuery" in line for line in ast):
            raise ConfigurationError(
                f"query is read-only: {kind or 'this statement'} is not allowed"
            )
        self._session.query("SET readonly = 2")  # no DDL from here on in this session

    def close(self) -> None:
        if self._chdb is not None:
            self._chdb.close()
            self._chdb = None


_PARAM: Final = re.compile(r"\{(\w+):([^}]+)\}")
_WRITES: Final = re.compile(r"\bINTO\s+OUTFILE\b", re.IGNORECASE)
_READING_QUERIES: Final = frozenset(
    {
        "SelectWithUnionQuery",
        "SelectQuery",
        "ShowTables",
        "ShowTablesQuery",
        "DescribeQuery",
        "ExplainQuery",
        "ShowCreateTableQuery",
        "ExistsTableQuery",
    }
)


class ServerStore:
    """A ClickHouse server over the native protocol.

    ``{name:Type}`` parameters become the driver's ``%(name)s`` placeholders, whose
    values the driver escapes (servers as old as 18.16 have no server-side parameters).
    """

    def __init__(self, settings: ConnectionSettings) -> None:
        from clickhouse_driver import Client

        self.settings = settings
        self.name = settings.redacted_url()
        self.logs = logs_table(settings.database)
        self._client = Client(**{**settings.client_kwargs(), "database": "default"})
        self._attributes_type: str | None = None

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, readonly: bool = False
    ) -> QueryResult:
        text = sql.replace("%", "%%") if params else sql
        text = _PARAM.sub(lambda m: f"%({m.group(1)})s", text)
        settings = {"readonly": 1} if readonly else None
        rows, types = self._client.execute(
            text, params or None, with_column_types=True, settings=settings
        )
        return QueryResult([name for name, _ in types], rows)

    def attribute(self, name: str) -> str:
        """``attributes['k']`` on a Map column; on an old server's String column (JSON),
        the JSON key."""
        if self._attributes_type is None:
            described = self._client.execute(f"DESCRIBE TABLE {self.logs}")
            types = {str(row[0]): str(row[1]) for row in described}
            self._attributes_type = types.get("attributes", "")
        if self._attributes_type.startswith("Map"):
            return f"attributes[{quote_string(name)}]"
        if self._attributes_type:
            return f"visitParamExtractString(attributes, {quote_string(name)})"
        return "''"

    def column(self, name: str) -> str:
        return quote_identifier(name)

    def select(
        self,
        spec: str,
        logger: str,
        columns: Sequence[str],
        attributes: Sequence[str] = (),
        *,
        kind: str | None = None,
    ) -> list[dict[str, Any]]:
        return select_records(self, spec, logger, columns, attributes, kind=kind)

    def specs(self) -> list[str]:
        return spec_ids(self)

    def close(self) -> None:
        self._client.disconnect()


def open_store(
    *,
    url: str | None = None,
    log_dir: str | os.PathLike[str] | None = None,
    prefer_local: bool = False,
) -> Store:
    """The server named by ``url`` / ``CLICKHOUSE_*``, or the local store.

    The local store wins when ``log_dir`` is given (or ``prefer_local``), or when no server
    is configured but ``GENESIS_LOG_DIR`` is.
    """
    directory = local_log_dir(log_dir)
    server_configured = bool(
        url or os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST")
    )
    if log_dir is not None or prefer_local or (directory is not None and not server_configured):
        if directory is None:
            raise ConfigurationError("no local store: pass --log-dir or set GENESIS_LOG_DIR")
        return LocalStore(directory)
    if not server_configured:
        raise ConfigurationError(
            "no log store: set CLICKHOUSE_URL (or pass --url) for a server, "
            "or GENESIS_LOG_DIR (or --log-dir) for the local store"
        )
    return ServerStore(ConnectionSettings.resolve(url=url))


def logs_table(database: str = "genesis", table: str = "logs") -> str:
    return f"{quote_identifier(database)}.{quote_identifier(table)}"
