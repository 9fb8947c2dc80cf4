"""Where the logs are read from: a ClickHouse server, or the local store on a laptop.

The local store is a directory of JSON-lines files (one per process, rotated by size)
written by :class:`~genesis_logging.local_store.LocalStoreHandler`. Reading goes through
chDB with a view named ``genesis.logs`` over those files (:mod:`genesis_logging._chdb`),
so a query written for production runs unchanged.
Every user-supplied value is passed as a query parameter, never formatted into SQL.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from ._chdb import chdb_session, create_view
from ._readonly import check_read_only
from .ddl import quote_identifier, quote_string
from .errors import ConfigurationError
from .local_store import LocalStoreHandler, local_log_dir  # the store's writer, re-exported
from .schema import FIELDS, FIELDS_BY_NAME, Kind
from .settings import ConnectionSettings

__all__ = [
    "LocalStore",
    "LocalStoreHandler",
    "QueryResult",
    "ServerStore",
    "Store",
    "TableColumns",
    "local_log_dir",
    "open_store",
    "select_records",
    "server_error_cause",
    "spec_ids",
]


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
        iterations: Collection[int] | None = None,
    ) -> list[dict[str, Any]]:
        """The records of ``spec`` written by ``logger`` (and, when given, whose
        ``kind`` attribute is ``kind`` and whose iteration is one of ``iterations``),
        oldest first by iteration then timestamp.

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
    iterations: Collection[int] | None = None,
) -> list[dict[str, Any]]:
    """:meth:`Store.select` in SQL, for any store that runs it."""
    selected = [f"{store.column(name)} AS {name}" for name in columns]
    selected += [f"{store.attribute(name)} AS {name}" for name in attributes]
    where = f"spec_id = {{spec:String}} AND {store.column('logger')} = {{logger:String}}"
    params: dict[str, Any] = {"spec": spec, "logger": logger}
    if kind is not None:
        where += f" AND {store.attribute('kind')} = {{kind:String}}"
        params["kind"] = kind
    if iterations is not None:  # whole numbers only: nothing of the caller's text in SQL
        where += f" AND iteration IN ({', '.join(str(int(n)) for n in iterations) or 'NULL'})"
    result = store.query(
        f"SELECT {', '.join(selected)} FROM {store.logs} WHERE {where} "
        "ORDER BY iteration, timestamp",
        params,
    )
    return result.dicts()


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
            self._chdb = chdb_session(":memory:")
            create_view(self._chdb, self.directory)
        return self._chdb

    def ensure_view(self) -> None:
        """(Re)create the view ``genesis.logs`` over the store's files."""
        if self._chdb is not None:
            create_view(self._chdb, self.directory)

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
        iterations: Collection[int] | None = None,
    ) -> list[dict[str, Any]]:
        from ._local_index import UnindexableError

        index = self._fresh_index()
        if index is not None:
            try:
                return list(
                    index.select(
                        spec, logger, columns, attributes, kind=kind, iterations=iterations
                    )
                )
            except UnindexableError:
                self._index = False
        return select_records(
            self, spec, logger, columns, attributes, kind=kind, iterations=iterations
        )

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
        check_read_only(sql)  # from the text: one statement that reads, nothing run yet
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


#: How the loop's own records read on a table without ``logger`` / ``attributes`` (the
#: specification's DDL): by the messages ``run_and_log`` ("run succeeded: …", "run failed
#: with exit code 1: …") and the pytest plugin ("test failed: NODEID", "test session: …")
#: write. ClickHouse (re2) regular expressions, the same on 18.16 and today's engine.
_RUN_MESSAGE: Final = (
    "^run (succeeded|failed with exit code -?[0-9]+|timed out after [^:]*|"
    "interrupted by SIG[A-Z]+|could not be started): "
)
_TEST_MESSAGE: Final = "^test [a-z]+: "
_SESSION_MESSAGE: Final = "^test session: "
_STAND_IN_EFFECTS: Final = {
    "logger": "runs and tests are told apart by their messages",
    "attributes": "test names and outcomes are read from the messages; code hashes and "
    "snapshotted file lists are unknown (verify cannot tell the code, no flaky tests)",
    "exception": "tracebacks logged with exc_info are not stored",
}


class TableColumns:
    """What a logs table has, and the SQL of a record column or attribute on it.

    A column the table lacks reads as a stand-in (``''``, ``0``); ``logger`` and the
    test attributes are read from the messages the loop writes, so the loop's questions
    still get answers on a table made by the specification's DDL.
    """

    def __init__(self, described: Sequence[Sequence[Any]]) -> None:
        self.types = {str(row[0]): str(row[1]) for row in described}
        #: The record fields the table lacks, in schema order.
        self.missing = [field.name for field in FIELDS if field.name not in self.types]

    def column(self, name: str) -> str:
        if name == "logger":
            told = (
                f"multiIf(match(message, {quote_string(_RUN_MESSAGE)}), 'genesis.run', "
                f"match(message, {quote_string(_TEST_MESSAGE)}), 'genesis.pytest', '')"
            )
            # Rows stored before an ALTER added the column hold '' there: told as well.
            return f"if(logger != '', logger, {told})" if "logger" in self.types else told
        if name in self.types:
            return quote_identifier(name)
        field = FIELDS_BY_NAME.get(name)
        if field is not None and field.kind in (Kind.UINT32, Kind.INT32):
            return "0"
        if field is not None and field.kind is Kind.TIMESTAMP:
            return "toDateTime(0)"
        return "''"

    def attribute(self, name: str) -> str:
        """``attributes['k']`` on a Map column; on a String column (JSON text, an old
        server's), the JSON key; without the column, what the message tells."""
        kind = self.types.get("attributes")
        stored = None
        if kind is not None and kind.startswith("Map"):
            stored = f"attributes[{quote_string(name)}]"
        elif kind is not None:
            stored = f"visitParamExtractString(attributes, {quote_string(name)})"
        told = self._told(name)
        if stored is not None and told is not None:
            # Rows stored before an ALTER added the column have no attributes: told.
            return f"if({stored} != '', {stored}, {told})"
        return stored or told or "''"

    @staticmethod
    def _told(name: str) -> str | None:
        """What the pytest plugin's message tells of attribute ``name``, if anything."""
        test, session = quote_string(_TEST_MESSAGE), quote_string(_SESSION_MESSAGE)
        is_test = f"match(message, {test}) AND NOT match(message, {session})"
        if name == "kind":
            return f"multiIf(match(message, {session}), 'test_summary', {is_test}, 'test', '')"
        if name == "test":
            return f"if({is_test}, replaceRegexpOne(message, {test}, ''), '')"
        if name == "outcome":
            return f"if({is_test}, extract(message, '^test ([a-z]+): '), '')"
        return None

    def notice(self, table: str, alters: Sequence[str]) -> str | None:
        """What the loop gives up on this table and the statements that add the rest."""
        if not self.missing:
            return None
        effects = [_STAND_IN_EFFECTS.get(name, f"{name} reads as empty") for name in self.missing]
        lines = [
            f"note: {table} has no {', '.join(self.missing)} column, so answers are degraded:",
            *(f"  - {effect}" for effect in effects),
            "To store everything from now on (no data is lost), run on the server:",
            *(f"  {statement};" for statement in alters),
        ]
        return "\n".join(lines)


class ServerStore:
    """A ClickHouse server over the native protocol, in the URL's database.

    ``{name:Type}`` parameters become the driver's ``%(name)s`` placeholders, whose
    values the driver escapes (servers as old as 18.16 have no server-side parameters).
    The table's columns are read once (``DESCRIBE``): a column it lacks reads as a
    stand-in (:class:`TableColumns`), and :meth:`notice` says what that costs.
    """

    def __init__(self, settings: ConnectionSettings, table: str = "logs") -> None:
        from clickhouse_driver import Client

        self.settings = settings
        self.name = settings.redacted_url()
        self.table = table
        self.logs = logs_table(settings.database, table)
        # The URL's database: a user allowed on that database only must get in.
        self._client = Client(**settings.client_kwargs())
        self._columns: TableColumns | None = None

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, readonly: bool = False
    ) -> QueryResult:
        text = sql.replace("%", "%%") if params else sql
        text = _PARAM.sub(lambda m: f"%({m.group(1)})s", text)
        if readonly:
            check_read_only(sql)  # the server's readonly mode lets KILL QUERY through
        settings = {"readonly": 1} if readonly else None
        rows, types = self._client.execute(
            text, params or None, with_column_types=True, settings=settings
        )
        return QueryResult([name for name, _ in types], rows)

    @property
    def columns(self) -> TableColumns:
        """The logs table's columns, learned on first use."""
        if self._columns is None:
            self._columns = TableColumns(self._client.execute(f"DESCRIBE TABLE {self.logs}"))
        return self._columns

    def attribute(self, name: str) -> str:
        return self.columns.attribute(name)

    def column(self, name: str) -> str:
        return self.columns.column(name)

    def check(self) -> None:
        """Log in, learn the table's columns and try a read; a refusal raises
        :class:`ConfigurationError` naming its cause (:func:`server_error_cause`)."""
        try:
            _ = self.columns
            self._client.execute(f"SELECT * FROM {self.logs} LIMIT 0")
        except Exception as error:
            cause = server_error_cause(error, self.settings, self.logs)
            raise ConfigurationError(f"cannot read {self.logs} on {self.name}: {cause}") from None

    def upgrade_statements(self) -> list[str]:
        """The ``ALTER TABLE … ADD COLUMN`` statements for the columns the table lacks."""
        from .operations import Features, upgrade_statements

        missing = [FIELDS_BY_NAME[name] for name in self.columns.missing]
        if not missing:
            return []
        version = str(self._client.execute("SELECT version()")[0][0])
        return upgrade_statements(
            self.settings.database, self.table, missing, Features.from_version(version)
        )

    def notice(self) -> str | None:
        """What is missing from the table and how to add it; ``None`` when nothing is."""
        if not self.columns.missing:
            return None
        return self.columns.notice(self.logs, self.upgrade_statements())

    def select(
        self,
        spec: str,
        logger: str,
        columns: Sequence[str],
        attributes: Sequence[str] = (),
        *,
        kind: str | None = None,
        iterations: Collection[int] | None = None,
    ) -> list[dict[str, Any]]:
        return select_records(
            self, spec, logger, columns, attributes, kind=kind, iterations=iterations
        )

    def specs(self) -> list[str]:
        return spec_ids(self)

    def close(self) -> None:
        self._client.disconnect()


#: Server error codes of a refused login: UNKNOWN_USER, WRONG_PASSWORD,
#: REQUIRED_PASSWORD, AUTHENTICATION_FAILED.
_LOGIN_REFUSED: Final = frozenset({192, 193, 194, 516})


def server_error_cause(error: BaseException, settings: ConnectionSettings, table: str) -> str:
    """Why the server refused, in words (never the password), for an error met while
    logging in or reading ``table``."""
    from ._warnings import describe_error

    user, database = settings.user, settings.database
    code = getattr(error, "code", None)
    server_text = describe_error(error, secret=settings.password).split("DB::Exception: ")[-1]
    if isinstance(error, EOFError):  # 18.16 hangs up on a login to a database it refuses
        return (
            f"the server closed the connection when {user} logged in to database "
            f"{database}: {user} may not use {database} (users.xml <allow_databases>, or "
            "GRANT) or the database does not exist"
        )
    if code in _LOGIN_REFUSED:
        return f"cannot log in as {user}: wrong password or no such user ({server_text})"
    if code == 195:  # IP_ADDRESS_NOT_ALLOWED
        return f"user {user} may not log in from this address (users.xml <networks>)"
    if code == 291:  # DATABASE_ACCESS_DENIED
        return f"user {user} may not use database {database} ({server_text})"
    if code == 497:  # ACCESS_DENIED
        return f"user {user} may not read {table} ({server_text})"
    if code == 81:  # UNKNOWN_DATABASE
        return f"database {database} does not exist: create it with 'genesis-logging init'"
    if code == 60:  # UNKNOWN_TABLE
        return f"table {table} does not exist: create it with 'genesis-logging init'"
    if code == 210:  # NETWORK_ERROR
        return f"cannot reach {settings.host}:{settings.port} ({server_text})"
    return describe_error(error, secret=settings.password)


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
