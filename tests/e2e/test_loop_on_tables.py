"""The loop on the servers and tables it meets (issue 19, point 6).

Debian's clickhouse-server 18.16: a table made by ``init`` there (the legacy profile), the
specification's column set, and a reader allowed on one database only. Today's engine
(chDB): the specification's DDL run verbatim, read by the loop's own SQL. Every record
is written by the real ``genesis-logging run`` and the real pytest plugin.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

import pytest
from clickhouse_driver.errors import ServerException

from genesis_logging.loop import load_runs, load_tests
from genesis_logging.operations import Features, upgrade_statements
from genesis_logging.schema import FIELDS, SEED_FIELDS
from genesis_logging.settings import ConnectionSettings
from genesis_logging.store import (
    QueryResult,
    TableColumns,
    select_records,
    server_error_cause,
    spec_ids,
)
from tests.support.fakes import run_cli as cli
from tests.support.loop_project import FIXED, Project, assert_loop_answers, no_trace, notices
from tests.support.server import (
    READER_PASSWORD,
    READER_USER,
    LocalServer,
    Target,
    find_server_binary,
    legacy_table_sql,
    unavailable,
)

#: The specification's DDL (§3.4), as written.
SEED_DDL: Final = """CREATE TABLE genesis.logs (
  -- Timestamps
  timestamp DateTime64(3) DEFAULT now64(3),

  -- Level
  level String,
  message String,

  -- Identificação
  spec_id String,
  iteration UInt32,

  -- Output
  stdout String,
  stderr String,
  exit_code Int32,

  -- Código
  code_snapshot String,

  -- Métricas
  duration_ms UInt32,

  -- Contexto
  sprint_id String,
  task_id String,

  -- Metadados
  service String DEFAULT 'genesis-pipeline',
  version String

) ENGINE = MergeTree()
ORDER BY (timestamp, spec_id)
TTL timestamp + INTERVAL 90 DAY;

-- Índices para queries comuns
ALTER TABLE genesis.logs ADD INDEX idx_level (level) TYPE set(10) GRANULARITY 4;
ALTER TABLE genesis.logs ADD INDEX idx_exit_code (exit_code) TYPE set(10) GRANULARITY 4;
"""


# -- Debian's 18.16 ------------------------------------------------------------------------


@pytest.mark.integration
class TestOnTheOldServer:
    """``init`` on 18.16, then the real loop; the specification's columns, degraded."""

    def test_init_then_the_loop(self, running_local_server: LocalServer, tmp_path: Path) -> None:
        database = f"inited_{os.getpid()}"
        url = running_local_server.url(database=database)
        made = cli("init", "--url", url, "--database", database)
        assert made.returncode == 0, made.stderr
        assert "using the legacy profile" in made.stdout
        env = {"CLICKHOUSE_URL": url}
        Project(tmp_path / "proj").red_then_green("spec_init", env)
        assert_loop_answers(env, "spec_init", degraded=False)
        flaky = cli("query", f"SELECT count() AS n FROM {database}.flaky_tests", env=env)
        assert flaky.returncode == 0, flaky.stderr  # the legacy views run on 18.16
        target = Target("local", running_local_server.host, running_local_server.port)
        target.client().execute(f"DROP DATABASE {database}")

    def test_the_specification_columns_degraded_then_upgraded(
        self, running_local_server: LocalServer, tmp_path: Path
    ) -> None:
        database = f"seeded_{os.getpid()}"
        target = Target("local", running_local_server.host, running_local_server.port)
        client = target.client()
        client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.execute(f"DROP TABLE IF EXISTS {database}.logs")
        client.execute(legacy_table_sql(database, "logs", SEED_FIELDS))  # 18.16's types
        env = {"CLICKHOUSE_URL": target.url(database)}
        project = Project(tmp_path / "proj")
        project.red_then_green("spec_seed", env)
        assert_loop_answers(env, "spec_seed", degraded=True)

        failures = cli("failures", "spec_seed", env=env)
        alters = [
            line.strip().rstrip(";")
            for line in failures.stderr.splitlines()
            if line.strip().startswith("ALTER TABLE")
        ]
        assert alters == [
            f"ALTER TABLE {database}.logs ADD COLUMN logger String",
            f"ALTER TABLE {database}.logs ADD COLUMN exception String",
            f"ALTER TABLE {database}.logs ADD COLUMN attributes String",
        ]
        query = cli("query", f"SELECT count() AS n FROM {database}.logs", env=env)
        assert query.returncode == 0
        assert notices(query) == 1

        for statement in alters:  # as printed
            client.execute(statement)
        (project.root / "calc.py").write_text(FIXED + "\n")
        assert project.run("spec_seed", env).returncode == 0
        verified = cli("verify", "spec_seed", env=env)
        assert notices(verified) == 0
        assert verified.returncode == 0, verified.stdout + verified.stderr
        assert "green: iteration 3" in verified.stdout
        old = cli("failures", "spec_seed", env=env)  # the rows from before still read
        assert "test_calc.py::test_add" in old.stdout
        client.execute(f"DROP DATABASE {database}")


# -- a reader allowed on one database ------------------------------------------------------

LIMITED_USER: Final = "genesis_only"
LIMITED_PASSWORD: Final = "only-Pa55-never-shown"
_LIMITED_USERS: Final = """<?xml version="1.0"?>
<yandex>
  <profiles><default></default><readonly><readonly>1</readonly></readonly></profiles>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
    <{user}><password>{password}</password><networks><ip>::/0</ip></networks><profile>readonly</profile><quota>default</quota>
      <allow_databases><database>genesis</database></allow_databases></{user}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


@pytest.fixture(scope="module")
def limiting_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """An 18.16 server whose reader may use database ``genesis`` only (users.xml)."""
    command = find_server_binary()
    if command is None:
        unavailable("this test needs Debian's clickhouse-server")
        raise AssertionError
    server = LocalServer(command, tmp_path_factory.mktemp("limiting"))
    (server.workdir / "users.xml").write_text(
        _LIMITED_USERS.format(user=LIMITED_USER, password=LIMITED_PASSWORD)
    )
    server.start()
    yield server
    server.stop()


@pytest.mark.integration
class TestAccess:
    """Reads go to the URL's database; a refusal says why, never the password."""

    def test_a_reader_allowed_on_genesis_only(
        self, limiting_server: LocalServer, tmp_path: Path
    ) -> None:
        admin = {"CLICKHOUSE_URL": limiting_server.url(database="genesis")}
        assert cli("init", env=admin).returncode == 0
        Project(tmp_path / "proj").red_then_green("spec_ro", admin)
        reader = {"CLICKHOUSE_URL": limiting_server.url(LIMITED_USER, LIMITED_PASSWORD, "genesis")}
        assert_loop_answers(reader, "spec_ro", degraded=False)

        elsewhere = limiting_server.url(LIMITED_USER, LIMITED_PASSWORD, "default")
        refused = cli("failures", "spec_ro", "--url", elsewhere)
        no_trace(refused)
        assert refused.returncode == 1
        assert "EOFError" not in refused.stderr
        assert f"{LIMITED_USER} may not use default" in refused.stderr
        assert LIMITED_PASSWORD not in refused.stdout + refused.stderr

        wrong = limiting_server.url(LIMITED_USER, "not-the-Pa55", "genesis")
        login = cli("tail", "--url", wrong)
        no_trace(login)
        assert login.returncode == 1
        assert f"cannot log in as {LIMITED_USER}: wrong password" in login.stderr
        assert "not-the-Pa55" not in login.stdout + login.stderr

    def test_a_missing_table_says_how_to_make_it(self, running_local_server: LocalServer) -> None:
        url = running_local_server.url(READER_USER, READER_PASSWORD, "system")
        result = cli("failures", "spec_x", "--url", url)
        no_trace(result)
        assert result.returncode == 1
        assert "table system.logs does not exist: create it with 'genesis-logging init'" in (
            result.stderr
        )
        assert READER_PASSWORD not in result.stderr


# -- today's engine: the specification's DDL verbatim ---------------------------------------


class ChdbTableStore:
    """The loop's reads over a chDB table, with the stand-ins a server store uses."""

    name = "chdb"

    def __init__(self, session: Any, logs: str) -> None:
        self.session = session
        self.logs = logs
        described = self.query(f"DESCRIBE TABLE {logs}")
        self.columns = TableColumns(described.rows)

    def query(
        self, sql: str, params: dict[str, Any] | None = None, *, readonly: bool = False
    ) -> QueryResult:
        result = self.session.query(sql, "JSONCompactEachRowWithNames", params=params or {})
        lines = str(result).splitlines()
        if not lines:
            return QueryResult([], [])
        return QueryResult(json.loads(lines[0]), [json.loads(line) for line in lines[1:]])

    def attribute(self, name: str) -> str:
        return self.columns.attribute(name)

    def column(self, name: str) -> str:
        return self.columns.column(name)

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
        pass


def seed_table(session: Any) -> None:
    """``genesis.logs`` by the specification's DDL, statement by statement."""
    session.query("CREATE DATABASE IF NOT EXISTS genesis")
    session.query("DROP TABLE IF EXISTS genesis.logs SYNC")
    for statement in SEED_DDL.split(";"):
        code = "\n".join(
            line for line in statement.splitlines() if not line.strip().startswith("--")
        )
        if code.strip():
            session.query(code)


def insert_lines(session: Any, lines: list[str]) -> None:
    """Console records into the table: the columns it has (as the handler sends them)."""
    session.query(
        "INSERT INTO genesis.logs SETTINGS input_format_skip_unknown_fields = 1, "
        "date_time_input_format = 'best_effort' FORMAT JSONEachRow\n" + "\n".join(lines)
    )


@pytest.fixture(scope="module")
def loop_lines(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The records of a real red-then-green loop (local store), as JSON lines."""
    root = tmp_path_factory.mktemp("seed_loop")
    Project(root / "proj").red_then_green("spec_chdb", {"GENESIS_LOG_DIR": str(root / "logs")})
    return [
        line
        for path in sorted((root / "logs").glob("*.jsonl*"))
        for line in path.read_text().splitlines()
    ]


EXPECTED_TESTS: Final = [
    (1, "test_calc.py::test_add", "failed"),
    (1, "test_calc.py::test_zero", "passed"),
    (2, "test_calc.py::test_add", "passed"),
    (2, "test_calc.py::test_zero", "passed"),
]


class TestTheSpecificationDdlOnTodaysEngine:
    """The seed's DDL as written, in chDB; the loop's SQL reads it degraded, and reads the
    rows from before an upgrade once the columns are added."""

    def test_the_loop_reads_the_seed_table(self, chdb_session: Any, loop_lines: list[str]) -> None:
        seed_table(chdb_session)
        insert_lines(chdb_session, loop_lines)
        store = ChdbTableStore(chdb_session, "genesis.logs")
        assert store.columns.missing == [f.name for f in FIELDS if not f.seed]
        assert spec_ids(store) == ["spec_chdb"]

        runs = load_runs(store, "spec_chdb", with_code=True)
        assert [(r.iteration, r.exit_code) for r in runs] == [(1, 1), (2, 0)]
        assert "return a - b" in runs[0].code
        tests = load_tests(store, "spec_chdb")
        assert sorted((t.iteration, t.test, t.outcome) for t in tests) == EXPECTED_TESTS
        (failed,) = [t for t in tests if t.failed]
        assert "assert -1 == 3" in failed.text
        kinds = store.query(
            f"SELECT {store.attribute('kind')} AS kind, toUInt32(count()) AS n "
            "FROM genesis.logs GROUP BY kind ORDER BY kind"
        )
        assert kinds.rows == [("", 2), ("test", 4), ("test_summary", 2)]
        chdb_session.query("DROP TABLE genesis.logs SYNC")

    def test_rows_from_before_the_alter_still_read(
        self, chdb_session: Any, loop_lines: list[str]
    ) -> None:
        red = [line for line in loop_lines if json.loads(line)["iteration"] == 1]
        green = [line for line in loop_lines if json.loads(line)["iteration"] == 2]
        seed_table(chdb_session)
        insert_lines(chdb_session, red)
        missing = [f for f in FIELDS if not f.seed]
        for statement in upgrade_statements(
            "genesis", "logs", missing, Features.from_version("26.1")
        ):
            chdb_session.query(statement)
        insert_lines(chdb_session, green)  # now with logger and a Map of attributes
        store = ChdbTableStore(chdb_session, "genesis.logs")
        assert store.columns.missing == []
        assert store.columns.types["attributes"].startswith("Map")
        runs = load_runs(store, "spec_chdb")
        assert [(r.iteration, r.exit_code) for r in runs] == [(1, 1), (2, 0)]
        assert runs[1].snapshot_files  # stored in attributes since the upgrade
        tests = load_tests(store, "spec_chdb")
        assert sorted((t.iteration, t.test, t.outcome) for t in tests) == EXPECTED_TESTS
        chdb_session.query("DROP TABLE genesis.logs SYNC")


class TestCauses:
    """What a current server's refusals read as (18.16 has no RBAC to produce them)."""

    SETTINGS: Final = ConnectionSettings.resolve(
        url="clickhouse://reader:Secret-Pa55@db.internal:9000/genesis", environ={}
    )

    @pytest.mark.parametrize(
        ("code", "text", "expected"),
        [
            (
                497,
                "DB::Exception: reader: Not enough privileges. To execute this query, it's "
                "necessary to have the grant SELECT(message) ON genesis.logs",
                "user reader may not read genesis.logs (reader: Not enough privileges.",
            ),
            (
                516,
                "DB::Exception: reader: Authentication failed: password is incorrect, or there "
                "is no user with such name.",
                "cannot log in as reader: wrong password or no such user",
            ),
            (
                291,
                "DB::Exception: Access denied to database default for user reader",
                "user reader may not use database genesis",
            ),
        ],
    )
    def test_each_refusal_names_its_cause(self, code: int, text: str, expected: str) -> None:
        error = ServerException(f"{text} Secret-Pa55. Stack trace:\n0. x", code)
        cause = server_error_cause(error, self.SETTINGS, "genesis.logs")
        assert expected in cause
        assert "Secret-Pa55" not in cause
        assert "Stack trace" not in cause
