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
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any, Final, Protocol

from ._readonly import check_read_only
from .ddl import quote_identifier, quote_string, view_statements
from .errors import ConfigurationError
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
    "prepare_mcp_data_path",
    "project_root",
    "reserve_iteration",
    "select_records",
    "server_error_cause",
    "spec_ids",
]

CHDB_SUBDIR: Final = ".chdb"
_EMPTY_FILE: Final = "genesis-empty.jsonl"  # keeps the view's glob matching in an empty store


#: What marks a project's root folder: a relative ``GENESIS_LOG_DIR`` starts there.
PROJECT_MARKERS: Final = ("pyproject.toml", "setup.cfg", "setup.py", ".git")


def project_root(start: str | os.PathLike[str] | None = None) -> Path:
    """The nearest folder from ``start`` (default the cwd) up holding a project marker.

    Markers are :data:`PROJECT_MARKERS`; with none up to ``/``, ``start`` itself, so a
    relative store path means the same folder from anywhere inside one project.
    """
    here = Path(start if start is not None else os.getcwd()).absolute()
    for folder in (here, *here.parents):
        if any((folder / marker).exists() for marker in PROJECT_MARKERS):
            return folder
    return here


def local_log_dir(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """``explicit``, else ``$GENESIS_LOG_DIR``, else ``None``; always absolute.

    An explicit (``--log-dir``) relative path is relative to the cwd, as any command-line
    path is. A relative ``$GENESIS_LOG_DIR`` is relative to :func:`project_root`, so an
    ``export GENESIS_LOG_DIR=.genesis/logs`` names one store from every subfolder of
    the project (the CLI, :class:`LocalStoreHandler` and the pytest plugin agree).
    """
    if explicit:
        return Path(explicit).absolute()
    value = os.environ.get("GENESIS_LOG_DIR")
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() else project_root() / path


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
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
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

    def _open(self) -> Any:
        """The file, private to its user (``0600``): records carry output, tracebacks,
        code and environment fragments."""
        descriptor = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        return open(descriptor, "a", encoding=self.encoding, errors=self.errors)


def reserve_iteration(directory: Path, spec: str, recorded: int) -> int:
    """The next iteration of ``spec`` in a local store, reserved for the caller.

    A run writes its record when it ends, so two runs started together would both see
    the same last iteration; the numbers handed out are kept in ``.index/iterations.json``
    under an ``flock``, and the next one is past both the recorded and the reserved.
    """
    import fcntl
    import json

    folder = directory / ".index"
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = folder / "iterations.json"
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    with open(descriptor, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        try:
            reserved = json.loads(handle.read() or "{}")
        except ValueError:
            reserved = {}
        if not isinstance(reserved, dict):
            reserved = {}
        last = reserved.get(spec)
        number = max(recorded, last if isinstance(last, int) else 0) + 1
        reserved[spec] = number
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps(reserved))
    return number


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
    from ._report import describe_error

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
