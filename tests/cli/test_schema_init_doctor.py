"""genesis-logging schema / init / doctor, end to end in subprocesses."""

from __future__ import annotations

import os
import subprocess

import pytest

from genesis_logging.schema import FIELDS, SEED_FIELDS
from tests.support.fakes import run_cli as cli
from tests.support.server import (
    READER_PASSWORD,
    READER_USER,
    WRITER_PASSWORD,
    WRITER_USER,
    Target,
    legacy_table_sql,
)


def no_trace(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stdout + result.stderr


class TestSchemaCommand:
    """schema prints what init would apply."""

    def test_default_profile(self) -> None:
        result = cli("schema")
        assert result.returncode == 0
        assert result.stdout.count(";\n") == 5  # database, table, the assistant's three views
        assert "ORDER BY (spec_id, timestamp)" in result.stdout
        assert "CREATE VIEW IF NOT EXISTS genesis.failures AS" in result.stdout
        assert "COMMENT 'how long the run or task took, in milliseconds'" in result.stdout

    def test_seed_profile_with_options(self) -> None:
        result = cli(
            "schema", "--profile", "seed", "--database", "g2", "--table", "t2", "--ttl-days", "30"
        )
        assert "CREATE TABLE IF NOT EXISTS g2.t2" in result.stdout
        assert "TTL timestamp + INTERVAL 30 DAY" in result.stdout
        assert result.stdout.count("ADD INDEX IF NOT EXISTS") == 2

    def test_legacy_profile(self) -> None:
        result = cli("schema", "--profile", "legacy")
        assert result.returncode == 0
        assert "timestamp DateTime('UTC') DEFAULT now()" in result.stdout
        assert "DateTime64" not in result.stdout
        assert "TTL" not in result.stdout

    def test_cluster_and_readonly_user(self) -> None:
        result = cli("schema", "--cluster", "prod", "--readonly-user", "genesis_readonly")
        assert "ReplicatedMergeTree" in result.stdout
        assert (
            "Distributed(prod, genesis, logs_local, if(spec_id = '', "
            "cityHash64(service, timestamp), cityHash64(spec_id)))" in result.stdout
        )
        assert "CREATE USER IF NOT EXISTS genesis_readonly ON CLUSTER prod" in result.stdout
        assert "<password from the environment>" in result.stdout

    def test_bad_ttl_is_a_plain_error(self) -> None:
        result = cli("schema", "--ttl-days", "0")
        assert result.returncode == 1
        assert "ttl_days" in result.stderr
        no_trace(result)


class TestInitCommand:
    """init makes a usable table on every server (the legacy profile on old ones);
    idempotent; what a server cannot hold is refused with a command that works."""

    def test_password_only_from_the_environment(self) -> None:
        result = cli("init", "--readonly-user", "ro", "--url", "clickhouse://h:9000")
        assert result.returncode == 1
        assert "--readonly-password-env" in result.stderr
        result = cli("init", "--readonly-user", "ro", "--readonly-password-env", "GENESIS_NOPE")
        assert result.returncode == 1
        assert "GENESIS_NOPE is empty or not set" in result.stderr

    @pytest.mark.integration
    def test_init_on_each_server(self, clickhouse: Target) -> None:
        database = f"init_{os.getpid()}"
        url = clickhouse.url(database)
        first = cli("init", "--url", url, "--database", database)
        no_trace(first)
        assert first.returncode == 0, first.stderr
        profile = "default" if clickhouse.modern else "legacy"
        assert f"ready: {database}.logs ({profile} profile)" in first.stdout
        if not clickhouse.modern:  # Debian's 18.16: old types instead of a refusal
            assert "server 18.16" in first.stdout
            assert "lacks DateTime64" in first.stdout
            assert "using the legacy profile" in first.stdout
            described = clickhouse.client().execute(f"DESCRIBE TABLE {database}.logs")
            columns = {str(row[0]): str(row[1]) for row in described}
            assert columns["timestamp"] == "DateTime('UTC')"
            assert columns["attributes"] == "String"
            assert set(columns) == {f.name for f in FIELDS}
        before = clickhouse.client().execute(f"SHOW CREATE TABLE {database}.logs")
        second = cli("init", "--url", url, "--database", database)
        assert second.returncode == 0
        assert clickhouse.client().execute(f"SHOW CREATE TABLE {database}.logs") == before
        clickhouse.client().execute(f"DROP DATABASE {database}")

    @pytest.mark.integration
    def test_a_profile_the_server_cannot_hold_is_refused_with_a_command_that_works(
        self, clickhouse: Target
    ) -> None:
        if clickhouse.modern:
            pytest.skip("this case is about the old server")  # local server always runs it
        database = f"refused_{os.getpid()}"
        url = clickhouse.url(database)
        for profile in ("default", "seed"):
            refused = cli("init", "--url", url, "--database", database, "--profile", profile)
            no_trace(refused)
            assert refused.returncode == 1
            assert f"needed by the {profile} profile. Nothing was changed." in refused.stderr
            databases = [name for (name,) in clickhouse.client().execute("SHOW DATABASES")]
            assert database not in databases
        advice = refused.stderr.split("On this server run: ")[1].strip()
        assert advice.startswith("genesis-logging init ")
        followed = cli(*advice.split()[1:])  # the advice, as printed
        assert followed.returncode == 0, followed.stderr
        assert f"ready: {database}.logs (legacy profile)" in followed.stdout
        clickhouse.client().execute(f"DROP DATABASE {database}")

    @pytest.mark.integration
    def test_no_create_user_on_the_old_server(self, clickhouse: Target) -> None:
        if clickhouse.modern:
            pytest.skip("this case is about the old server")
        database = f"nouser_{os.getpid()}"
        result = cli(
            "init",
            "--url",
            clickhouse.url(database),
            "--database",
            database,
            "--readonly-user",
            "ro",
            "--readonly-password-env",
            "RO_PASSWORD",
            env={"RO_PASSWORD": "ro-secret-77"},
        )
        assert result.returncode == 1
        assert "has no CREATE USER" in result.stderr
        assert "<allow_databases>" in result.stderr
        assert "ro-secret-77" not in result.stdout + result.stderr
        databases = [name for (name,) in clickhouse.client().execute("SHOW DATABASES")]
        assert database not in databases


@pytest.mark.integration
class TestDoctorCommand:
    """doctor speaks plain words and answers with its exit status."""

    def test_legacy_seed_table_is_usable_degraded_with_fixes(self, clickhouse: Target) -> None:
        if clickhouse.modern:
            pytest.skip("this case is about the old server's types")  # local server always runs it
        client = clickhouse.client()
        client.execute("CREATE DATABASE IF NOT EXISTS doctor_db")
        client.execute("DROP TABLE IF EXISTS doctor_db.logs")
        client.execute(legacy_table_sql("doctor_db", "logs", SEED_FIELDS))
        result = cli("doctor", "--url", clickhouse.url("doctor_db"), "--database", "doctor_db")
        no_trace(result)
        assert result.returncode == 0, result.stdout
        out = result.stdout
        assert "OK   connected and authenticated as default" in out
        assert "OK   server version 18.16" in out
        assert "DateTime64 no" in out
        assert "timestamp is DateTime: DateTime keeps seconds" in out
        assert "missing columns logger, exception, attributes" in out
        assert "OK   this user can insert" in out
        assert "verdict: usable (degraded" in out
        fixes = [
            line.strip().rstrip(";")
            for line in out.splitlines()
            if line.strip().startswith("ALTER TABLE")
        ]
        assert fixes == [
            "ALTER TABLE doctor_db.logs ADD COLUMN logger String",
            "ALTER TABLE doctor_db.logs ADD COLUMN exception String",
            "ALTER TABLE doctor_db.logs ADD COLUMN attributes String",
        ]
        client.execute("INSERT INTO doctor_db.logs (message) VALUES", [{"message": "kept"}])
        for statement in fixes:
            client.execute(statement)
        again = cli("doctor", "--url", clickhouse.url("doctor_db"), "--database", "doctor_db")
        assert again.returncode == 0
        assert "missing columns" not in again.stdout
        assert "attributes is String: attributes are stored as JSON text" in again.stdout
        assert client.execute("SELECT message FROM doctor_db.logs") == [("kept",)]  # no data lost

    def test_missing_table(self, clickhouse: Target) -> None:
        clickhouse.client().execute("CREATE DATABASE IF NOT EXISTS doctor_db")
        result = cli(
            "doctor",
            "--url",
            clickhouse.url("doctor_db"),
            "--database",
            "doctor_db",
            "--table",
            "nope",
        )
        assert result.returncode == 1
        assert "table doctor_db.nope does not exist" in result.stdout
        assert "genesis-logging init" in result.stdout
        no_trace(result)

    def test_missing_database(self, clickhouse: Target) -> None:
        result = cli(
            "doctor", "--url", clickhouse.url("no_such_db_x"), "--database", "no_such_db_x"
        )
        assert result.returncode == 1
        assert "database no_such_db_x does not exist" in result.stdout

    def test_the_advice_is_a_command_that_works_on_this_server(self, clickhouse: Target) -> None:
        database = f"advised_{os.getpid()}"
        url = clickhouse.url(database)
        result = cli("doctor", "--url", url, "--database", database)
        assert result.returncode == 1
        (advice,) = [
            line.split("create it with: ")[1]
            for line in result.stdout.splitlines()
            if "create it with: " in line
        ]
        assert advice.startswith(f"genesis-logging init --url {url} --database {database}")
        followed = cli(*advice.split()[1:])  # exactly as printed
        assert followed.returncode == 0, followed.stderr
        again = cli("doctor", "--url", url, "--database", database)
        assert again.returncode == 0, again.stdout
        assert "missing columns" not in again.stdout
        clickhouse.client().execute(f"DROP DATABASE {database}")

    def test_wrong_password(self, running_local_server: object) -> None:
        server = running_local_server
        url = server.url(WRITER_USER, "wrong-pass-77", "genesis")  # type: ignore[attr-defined]
        result = cli("doctor", "--url", url)
        assert result.returncode == 1
        assert "cannot connect" in result.stderr
        assert "wrong-pass-77" not in result.stdout + result.stderr
        assert WRITER_PASSWORD not in result.stdout + result.stderr
        no_trace(result)

    def test_read_only_user_cannot_insert(self, running_local_server: object) -> None:
        server = running_local_server
        target = Target("local", server.host, server.port)  # type: ignore[attr-defined]
        target.create_logs_table("doctor_ro", "logs")
        url = server.url(READER_USER, READER_PASSWORD, "doctor_ro")  # type: ignore[attr-defined]
        result = cli("doctor", "--url", url, "--database", "doctor_ro")
        assert result.returncode == 1
        assert "FAIL this user cannot insert" in result.stdout
        assert "readonly" in result.stdout.lower()
        assert READER_PASSWORD not in result.stdout
