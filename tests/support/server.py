"""A real ClickHouse server for the integration tests.

The suite starts Debian's ``clickhouse-server`` itself: free ports, a temporary
directory, a small config file. ``GENESIS_TEST_CLICKHOUSE_URL`` names a further (modern)
server to run the same tests against. When no server can be had the tests fail with a
clear message — they skip only when ``GENESIS_TEST_ALLOW_SKIP=1`` is set (never in CI).
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
from clickhouse_driver import Client

from genesis_logging.ddl import create_table_sql, quote_identifier
from genesis_logging.schema import FIELDS, Field, Kind

WRITER_USER = "writer"
WRITER_PASSWORD = "s3cret-Pa55-do-not-print"
READER_USER = "reader"
READER_PASSWORD = "reader-Pa55"

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/server.err.log</errorlog></logger>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>{dir}/users.xml</users_config>
  <mark_cache_size>5368709</mark_cache_size>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
</yandex>
"""

_USERS = """<?xml version="1.0"?>
<yandex>
  <profiles><default><max_memory_usage>4000000000</max_memory_usage></default><readonly><readonly>1</readonly></readonly></profiles>
  <users>
    <default><password></password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></default>
    <{user}><password>{password}</password><networks><ip>::/0</ip></networks><profile>default</profile><quota>default</quota></{user}>
    <{reader}><password>{reader_password}</password><networks><ip>::/0</ip></networks><profile>readonly</profile><quota>default</quota></{reader}>
  </users>
  <quotas><default><interval><duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval></default></quotas>
</yandex>
"""


def allow_skip() -> bool:
    return os.environ.get("GENESIS_TEST_ALLOW_SKIP") == "1"


def unavailable(message: str) -> None:
    """Fail (default, and always in CI) or skip when explicitly allowed."""
    if allow_skip():
        pytest.skip(message)
    pytest.fail(message + " (set GENESIS_TEST_ALLOW_SKIP=1 to skip locally)", pytrace=False)


def find_server_binary() -> list[str] | None:
    explicit = os.environ.get("CLICKHOUSE_SERVER_BINARY")
    if explicit:
        return [explicit]
    for name in ("clickhouse-server", "/usr/sbin/clickhouse-server", "/usr/bin/clickhouse-server"):
        found = shutil.which(name)
        if found:
            return [found]
    found = shutil.which("clickhouse")
    return [found, "server"] if found else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LocalServer:
    """A clickhouse-server process of our own that tests may stop, kill and restart."""

    command: list[str]
    workdir: pathlib.Path
    tcp_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    host: str = "127.0.0.1"

    def __post_init__(self) -> None:
        for sub in ("data", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        (self.workdir / "config.xml").write_text(
            _CONFIG.format(dir=self.workdir, tcp=self.tcp_port, http=self.http_port)
        )
        (self.workdir / "users.xml").write_text(
            _USERS.format(
                user=WRITER_USER,
                password=WRITER_PASSWORD,
                reader=READER_USER,
                reader_password=READER_PASSWORD,
            )
        )

    @property
    def port(self) -> int:
        return self.tcp_port

    def url(self, user: str = "default", password: str = "", database: str = "genesis") -> str:
        credentials = f"{user}:{password}" if password else user
        return f"clickhouse://{credentials}@{self.host}:{self.tcp_port}/{database}"

    def client(self, **kwargs: Any) -> Client:
        return Client(host=self.host, port=self.tcp_port, connect_timeout=2, **kwargs)

    def start(self, timeout: float = 30.0) -> None:
        log = (self.workdir / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [*self.command, f"--config-file={self.workdir / 'config.xml'}"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"clickhouse-server exited with {self.process.returncode}: "
                    + (self.workdir / "stdout.log").read_text(errors="replace")[-2000:]
                )
            try:
                self.client().execute("SELECT 1")
                return
            except Exception:
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(
                        f"clickhouse-server did not answer within {timeout}s"
                    ) from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        self.process = None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


def start_local_server(workdir: pathlib.Path) -> LocalServer:
    command = find_server_binary()
    if command is None:
        unavailable(
            "integration tests need a real ClickHouse server: install Debian's "
            "clickhouse-server (apt-get install -y clickhouse-server) or set "
            "GENESIS_TEST_CLICKHOUSE_URL"
        )
        raise AssertionError  # unreachable: unavailable() fails or skips
    server = LocalServer(command, workdir)
    try:
        server.start()
    except Exception as error:
        unavailable(f"could not start clickhouse-server ({command[0]}): {error}")
    return server


@dataclass
class Target:
    """A server the tests log into: our local process or the user's modern server."""

    name: str
    host: str
    port: int
    user: str = "default"
    password: str = field(default="", repr=False)
    secure: bool = False
    local: LocalServer | None = None

    def client(self, database: str | None = None) -> Client:
        return Client(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            secure=self.secure,
            database=database or "default",
            connect_timeout=5,
        )

    def url(self, database: str) -> str:
        scheme = "clickhouses" if self.secure else "clickhouse"
        credentials = f"{self.user}:{self.password}" if self.password else self.user
        return f"{scheme}://{credentials}@{self.host}:{self.port}/{database}"

    @property
    def modern(self) -> bool:
        (version,) = self.client().execute("SELECT version()")[0]
        return int(str(version).split(".")[0]) >= 22

    def create_logs_table(self, database: str, table: str) -> None:
        """The full schema on a modern server; the types 18.16 has on the old one."""
        client = self.client()
        client.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        client.execute(
            f"DROP TABLE IF EXISTS {quote_identifier(database)}.{quote_identifier(table)}"
        )
        client.execute(self.table_ddl(database, table))

    def table_ddl(self, database: str, table: str) -> str:
        if self.modern:
            return create_table_sql(database, table)
        return legacy_table_sql(database, table)

    def timestamp_expression(self) -> str:
        return (
            "toUnixTimestamp64Milli(timestamp)"
            if self.modern
            else "toUnixTimestamp(timestamp) * 1000"
        )


def legacy_table_sql(
    database: str, table: str, fields: tuple[Field, ...] = FIELDS, *, modern: bool = False
) -> str:
    """The record schema in the types Debian's 18.16 server supports (or, with
    ``modern``, the schema's own types) for a chosen subset of fields."""
    legacy = {} if modern else {Kind.TIMESTAMP: "DateTime", Kind.STRING_MAP: "String"}
    columns = ",\n    ".join(f"{f.name} {legacy.get(f.kind, f.clickhouse_type)}" for f in fields)
    return (
        f"CREATE TABLE {quote_identifier(database)}.{quote_identifier(table)} (\n    {columns}\n)"
        " ENGINE = MergeTree() ORDER BY (timestamp, spec_id)"
    )


def external_target() -> Target | None:
    from genesis_logging.settings import ConnectionSettings

    url = os.environ.get("GENESIS_TEST_CLICKHOUSE_URL")
    if not url:
        return None
    settings = ConnectionSettings.resolve(url=url, environ={})
    return Target(
        "external",
        settings.host,
        settings.port,
        settings.user,
        settings.password,
        settings.secure,
    )


def fresh_table(server: LocalServer, name: str) -> Target:
    if not server.running:
        server.start()
    target = Target("local", server.host, server.port, local=server)
    target.create_logs_table("genesis_test", name)
    return target
