"""The DDL of both profiles, run on today's ClickHouse engine (chDB)."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime, timezone
from typing import Any

import pytest

from genesis_logging import log_context
from genesis_logging._codec import row_to_json_object
from genesis_logging.ddl import (
    SHARDING_KEY,
    TableSpec,
    readonly_user_statements,
    render_statements,
)
from genesis_logging.operations import Features, upgrade_statements
from genesis_logging.schema import FIELDS, SEED_FIELDS
from tests.support.captured import make_captured

# Recent: the tables' TTL (90 days) drops older rows as soon as they are inserted.
BASE = int(time.time()) - 3600 + 0.123


def query(chdb: Any, sql: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in str(chdb.query(sql, "JSONEachRow")).splitlines()]


def apply(chdb: Any, spec: TableSpec) -> None:
    for statement in render_statements(spec):
        chdb.query(statement)


@pytest.fixture
def fresh(chdb_session: Any) -> Any:
    chdb_session.query("DROP DATABASE IF EXISTS ddl_test SYNC")
    return chdb_session


def sample_records() -> tuple[list[dict[str, Any]], list[str]]:
    """The same records as handler rows and as console lines."""
    captured = make_captured("ddl.sample", service="worker", version="2")
    rows = []
    with log_context(spec_id="spec_001", sprint_id="S030", task_id="T01"):
        for iteration, (exit_code, stderr) in enumerate(
            [(0, ""), (1, "TypeError: line 15"), (2, "boom")], 1
        ):
            record = logging.LogRecord(
                "ddl",
                logging.ERROR if exit_code else logging.INFO,
                "p",
                1,
                "run %d",
                (iteration,),
                None,
            )
            record.__dict__.update(
                iteration=iteration,
                exit_code=exit_code,
                stderr=stderr,
                stdout="ok\n",
                duration_ms=100 * iteration,
                code_snapshot="def f(): ...",
                topic="t",
            )
            record.created = BASE + iteration
            rows.append(captured.formatter.record_converter.convert(record))
            captured.logger.handle(record)
    other = logging.LogRecord("ddl", logging.ERROR, "p", 1, "other spec", None, None)
    other.__dict__.update(spec_id="spec_002", exit_code=9)
    rows.append(captured.formatter.record_converter.convert(other))
    return rows, captured.lines()


class TestProfilesOnChdb:
    """Every statement runs; data goes in and comes back; TTL and indexes are there."""

    @pytest.mark.parametrize("profile", ["seed", "default"])
    def test_statements_run_and_data_round_trips(self, fresh: Any, profile: str) -> None:
        spec = TableSpec("ddl_test", "logs", profile)
        apply(fresh, spec)
        columns = [
            r["name"]
            for r in query(
                fresh,
                "SELECT name FROM system.columns WHERE database='ddl_test' AND table='logs' ORDER BY position",
            )
        ]
        assert columns == [f.name for f in spec.fields]

        rows, lines = sample_records()
        handler_lines = [json.dumps(row_to_json_object(row)) for row in rows]
        fresh.query(
            "INSERT INTO ddl_test.logs SETTINGS input_format_skip_unknown_fields = 1 FORMAT JSONEachRow\n"
            + "\n".join(handler_lines + lines)
        )
        stored = query(
            fresh,
            "SELECT * EXCEPT timestamp, toUnixTimestamp64Milli(timestamp) AS ts FROM ddl_test.logs ORDER BY ts, message",
        )
        assert len(stored) == len(rows) + len(lines)
        expected = []
        for row in rows + [json.loads(line) for line in lines]:
            data = (
                row_to_json_object(row)
                if "timestamp" in row and isinstance(row["timestamp"], int)
                else row
            )
            expected.append(
                {f.name: data.get(f.name, f.default) for f in spec.fields if f.name != "timestamp"}
            )
        key = lambda r: (r["message"], r["iteration"], r["exit_code"])  # noqa: E731
        got = sorted(({k: v for k, v in r.items() if k != "ts"} for r in stored), key=key)
        assert got == sorted(expected, key=key)

        ddl = query(
            fresh,
            "SELECT create_table_query FROM system.tables WHERE database='ddl_test' AND name='logs'",
        )[0]["create_table_query"]
        assert "TTL" in ddl
        assert "INTERVAL 90 DAY" in ddl.replace("toIntervalDay(90)", "INTERVAL 90 DAY")
        indexes = {
            r["name"]: r["type"]
            for r in query(
                fresh,
                "SELECT name, type FROM system.data_skipping_indices WHERE database='ddl_test' AND table='logs'",
            )
        }
        assert indexes["idx_level"] == "set"
        assert indexes["idx_exit_code"] == "set"
        if profile == "default":
            assert indexes["idx_message"] == "tokenbf_v1"
            assert "non_replicated_deduplication_window = 1000" in ddl
            assert "ORDER BY (spec_id, timestamp)" in ddl
        else:
            assert "ORDER BY (timestamp, spec_id)" in ddl

    @pytest.mark.parametrize("profile", ["seed", "default"])
    def test_specification_query_returns_the_failures(self, fresh: Any, profile: str) -> None:
        apply(fresh, TableSpec("ddl_test", "logs", profile))
        rows, _ = sample_records()
        fresh.query(
            "INSERT INTO ddl_test.logs SETTINGS input_format_skip_unknown_fields = 1 FORMAT JSONEachRow\n"
            + "\n".join(json.dumps(row_to_json_object(r)) for r in rows)
        )
        result = query(
            fresh,
            "SELECT timestamp, level, stderr, exit_code, duration_ms FROM ddl_test.logs "
            "WHERE spec_id = 'spec_001' AND exit_code != 0 ORDER BY timestamp DESC LIMIT 10",
        )
        assert [(r["exit_code"], r["stderr"], r["duration_ms"]) for r in result] == [
            (2, "boom", 300),
            (1, "TypeError: line 15", 200),
        ]
        assert [r["timestamp"] for r in result] == [
            datetime.fromtimestamp(BASE + n, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.123")
            for n in (3, 2)
        ]

    @pytest.mark.parametrize("profile", ["seed", "default"])
    def test_applying_twice_changes_nothing(self, fresh: Any, profile: str) -> None:
        spec = TableSpec("ddl_test", "logs", profile, ttl_days=30)
        apply(fresh, spec)
        fresh.query("INSERT INTO ddl_test.logs (message) VALUES ('kept')")
        before = str(fresh.query("SHOW CREATE TABLE ddl_test.logs"))
        apply(fresh, spec)  # init run again
        assert str(fresh.query("SHOW CREATE TABLE ddl_test.logs")) == before
        assert query(fresh, "SELECT count() AS n FROM ddl_test.logs") == [{"n": 1}]
        assert "toIntervalDay(30)" in before

    def test_user_and_grant_parse(self, fresh: Any) -> None:
        for statement in readonly_user_statements(
            "genesis_readonly", "s3nh'a\\\\segura", "genesis"
        ):
            assert str(fresh.query(f"EXPLAIN AST {statement}")).strip()

    def test_cluster_rendering_parses(self, fresh: Any) -> None:
        statements = render_statements(TableSpec(cluster="prod"))
        assert any("ReplicatedMergeTree" in s for s in statements)
        assert any(
            f"ENGINE = Distributed(prod, genesis, logs_local, {SHARDING_KEY})" in s
            for s in statements
        )
        assert not any("rand()" in s for s in statements)  # a retry must split the same way
        assert (
            "SETTINGS replicated_deduplication_window = 1000, ttl_only_drop_parts"
            in (statements[1])
        )
        assert "non_replicated_deduplication_window" not in statements[1]
        assert all("ON CLUSTER prod" in s for s in statements)
        for statement in statements + readonly_user_statements("ro", "x", cluster="prod"):
            assert str(fresh.query(f"EXPLAIN AST {statement}")).strip()

    def test_seed_table_upgraded_in_place(self, fresh: Any) -> None:
        apply(fresh, TableSpec("ddl_test", "logs", "seed"))
        fresh.query(
            "INSERT INTO ddl_test.logs (message, spec_id, exit_code) VALUES ('old', 'spec_001', 1)"
        )
        missing = [f for f in FIELDS if f not in SEED_FIELDS]
        for statement in upgrade_statements(
            "ddl_test", "logs", missing, Features.from_version("26.9.0")
        ):
            fresh.query(statement)
            fresh.query(statement)  # IF NOT EXISTS: idempotent too
        fresh.query(
            """INSERT INTO ddl_test.logs FORMAT JSONEachRow {"message":"new","logger":"w","attributes":{"k":"v"}}"""
        )
        stored = query(
            fresh,
            "SELECT message, spec_id, exit_code, logger, attributes FROM ddl_test.logs ORDER BY message",
        )
        assert stored == [
            {
                "message": "new",
                "spec_id": "",
                "exit_code": 0,
                "logger": "w",
                "attributes": {"k": "v"},
            },
            {
                "message": "old",
                "spec_id": "spec_001",
                "exit_code": 1,
                "logger": "",
                "attributes": {},
            },
        ]


class TestLegacyProfile:
    """Old types for old servers (Debian's 18.16 runs it in test_cli_ops/test_loop_on_tables);
    today's engine takes the same statements."""

    def test_types_every_server_has(self) -> None:
        statements = render_statements(TableSpec(profile="legacy"))
        table = statements[1]
        assert "timestamp DateTime('UTC') DEFAULT now()" in table
        assert "attributes String COMMENT" in table
        assert "visitParamExtractString(attributes, \\'test\\')" in table  # said in its comment
        for absent in (
            "DateTime64",
            "Map(",
            "LowCardinality",
            "CODEC",
            "TTL",
            "INDEX",
            "SETTINGS",
        ):
            assert absent not in table, absent
        assert "PARTITION BY toYYYYMM(timestamp)" in table
        assert len(statements) == 5  # database, table, the assistant's three views
        assert "visitParamExtractString(attributes, 'kind') = 'test'" in statements[4]
        assert "reverseUTF8(substringUTF8(reverseUTF8(stderr), 1, 2000))" in statements[2]

    def test_statements_run_and_the_views_answer(self, fresh: Any) -> None:
        apply(fresh, TableSpec("ddl_test", "logs", "legacy"))
        types = {
            r["name"]: r["type"]
            for r in query(
                fresh,
                "SELECT name, type FROM system.columns WHERE database='ddl_test' AND table='logs'",
            )
        }
        assert list(types) == [f.name for f in FIELDS]
        assert (types["timestamp"], types["attributes"]) == ("DateTime('UTC')", "String")
        rows = [
            {"timestamp": "2026-11-28 10:00:00", "spec_id": "s", "iteration": 1,
             "logger": "genesis.pytest", "exit_code": 1, "stderr": "x" * 3000 + "THE END",
             "attributes": '{"kind":"test","test":"t::a","outcome":"failed","code_hash":"c1"}'},
            {"timestamp": "2026-11-28 10:01:00", "spec_id": "s", "iteration": 2,
             "logger": "genesis.pytest", "exit_code": 0,
             "attributes": '{"kind":"test","test":"t::a","outcome":"passed","code_hash":"c1"}'},
            {"timestamp": "2026-11-28 10:01:01", "spec_id": "s", "iteration": 2,
             "logger": "genesis.run", "exit_code": 0, "attributes": "{}"},
        ]  # fmt: skip
        fresh.query(
            "INSERT INTO ddl_test.logs FORMAT JSONEachRow\n" + "\n".join(map(json.dumps, rows))
        )
        (failure,) = query(fresh, "SELECT stderr_tail FROM ddl_test.failures")
        assert len(failure["stderr_tail"]) == 2000
        assert failure["stderr_tail"].endswith("THE END")
        (flaky,) = query(fresh, "SELECT test, code_hash FROM ddl_test.flaky_tests")
        assert flaky == {"test": "t::a", "code_hash": "c1"}
        (last,) = query(fresh, "SELECT last_iteration, exit_code FROM ddl_test.last_iterations")
        assert last == {"last_iteration": 2, "exit_code": 0}


class TestMadeForTheAssistant:
    """Column comments and the two views, on today's engine (issue 14, point 8)."""

    def test_every_column_has_a_comment(self, fresh: Any) -> None:
        apply(fresh, TableSpec("ddl_test", "logs", "default"))
        comments = query(
            fresh,
            "SELECT name, comment FROM system.columns WHERE database='ddl_test' AND table='logs'",
        )
        assert {r["name"]: r["comment"] for r in comments} == {f.name: f.doc for f in FIELDS}

    def test_the_views_answer_with_bounded_text(self, fresh: Any) -> None:
        apply(fresh, TableSpec("ddl_test", "logs", "default"))
        rows = [
            {"timestamp": "2026-11-28 10:00:00.000", "spec_id": "s", "iteration": 1,
             "logger": "genesis.run", "exit_code": 1, "stderr": "x" * 100_000 + "THE END"},
            {"timestamp": "2026-11-28 10:01:00.000", "spec_id": "s", "iteration": 2,
             "logger": "genesis.run", "exit_code": 0, "duration_ms": 5},
            {"timestamp": "2026-11-28 10:00:30.000", "spec_id": "s", "iteration": 1,
             "logger": "genesis.pytest", "exit_code": 1, "stderr": "E assert 1 == 2"},
        ]  # fmt: skip
        fresh.query(
            "INSERT INTO ddl_test.logs FORMAT JSONEachRow\n" + "\n".join(map(json.dumps, rows))
        )
        failures = query(
            fresh, "SELECT iteration, logger, stderr_tail FROM ddl_test.failures ORDER BY logger"
        )
        assert [(r["iteration"], r["logger"]) for r in failures] == [
            (1, "genesis.pytest"),
            (1, "genesis.run"),
        ]
        assert len(failures[1]["stderr_tail"]) == 2000
        assert failures[1]["stderr_tail"].endswith("THE END")
        (last,) = query(fresh, "SELECT * FROM ddl_test.last_iterations")
        assert (last["spec_id"], last["last_iteration"], last["exit_code"], last["runs"]) == (
            "s",
            2,
            0,
            2,
        )


class TestRendering:
    """Names and options."""

    def test_seed_profile_is_the_specification(self) -> None:
        statements = render_statements(TableSpec(profile="seed"))
        assert statements[0] == "CREATE DATABASE IF NOT EXISTS genesis"
        assert "timestamp DateTime64(3) DEFAULT now64(3)" in statements[1]
        assert "service String DEFAULT 'genesis-pipeline'" in statements[1]
        assert "TTL timestamp + INTERVAL 90 DAY" in statements[1]
        assert statements[2:] == [
            "ALTER TABLE genesis.logs ADD INDEX IF NOT EXISTS idx_level (level) TYPE set(10) GRANULARITY 4",
            "ALTER TABLE genesis.logs ADD INDEX IF NOT EXISTS idx_exit_code (exit_code) TYPE set(10) GRANULARITY 4",
        ]

    def test_odd_names_are_quoted(self) -> None:
        statement = render_statements(TableSpec("my-db", "logs`x"))[1]
        assert "`my-db`.`logs\\`x`" in statement

    @pytest.mark.parametrize(
        ("bad", "match"),
        [
            ({"profile": "fast"}, "profile"),
            ({"ttl_days": 0}, "ttl_days"),
            ({"table": ""}, "empty"),
        ],
    )
    def test_invalid_specs(self, bad: dict[str, Any], match: str) -> None:
        with pytest.raises(ValueError, match=match):
            TableSpec(**bad)

    def test_password_is_quoted(self) -> None:
        (create, _) = readonly_user_statements("ro", "it's")
        assert "BY 'it\\'s'" in create


MILLIS = 1_700_000_000_000


class TestShardingKey:
    """The cluster profile's key (issue 23): computed from the row, so a retried batch
    splits into the same blocks on every shard; a spec's rows stay together."""

    def shard_of(self, fresh: Any, rows: str, shards: int = 2) -> list[dict[str, Any]]:
        return query(
            fresh,
            f"SELECT spec_id, service, ({SHARDING_KEY}) % {shards} AS shard FROM "
            "(SELECT spec_id, service, toDateTime64(t / 1000, 3, 'UTC') AS timestamp "
            f"FROM values('spec_id String, service String, t UInt64', {rows}))",
        )

    def test_a_spec_stays_on_one_shard_and_service_logs_spread(self, fresh: Any) -> None:
        spec_rows = ", ".join(f"('spec_7', 'svc', {MILLIS + n})" for n in range(50))
        assert len({row["shard"] for row in self.shard_of(fresh, spec_rows)}) == 1
        service_rows = ", ".join(f"('', 'api', {MILLIS + n})" for n in range(50))
        assert {row["shard"] for row in self.shard_of(fresh, service_rows)} == {0, 1}

    def test_the_same_rows_go_to_the_same_shards(self, fresh: Any) -> None:
        rows = ", ".join(f"('spec_{n % 5}', 'svc', {MILLIS + n})" for n in range(40))
        assert self.shard_of(fresh, rows) == self.shard_of(fresh, rows)


class TestReplicatedOnOldServers:
    def test_legacy_cluster_columns_have_no_comment(self) -> None:
        """18.16 refuses a second replica of a table whose columns have comments."""
        (local,) = [
            s
            for s in render_statements(TableSpec(profile="legacy", cluster="c"))
            if "ReplicatedMergeTree" in s
        ]
        assert "COMMENT" not in local
        assert local.endswith("SETTINGS replicated_deduplication_window = 1000")
        single = render_statements(TableSpec(profile="legacy"))[1]
        assert "COMMENT" in single  # one server: the comments stay for the assistant
        modern = render_statements(TableSpec(cluster="c"))[1]
        assert "COMMENT" in modern
