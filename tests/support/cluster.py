"""A real ClickHouse cluster for the end-to-end tests: ZooKeeper and 2 shards x 2 replicas.

Debian's ``zookeeper`` (a plain Java process) and four Debian ``clickhouse-server``
processes on free loopback ports, each in its own directory. ZooKeeper must answer
``ruok`` with ``imok`` before any server starts: a server that meets no ZooKeeper can hang
a later ``ON CLUSTER`` query. A short ``tickTime`` lets a killed replica's session expire
within ``session_timeout_ms`` (10 s), so it can come back quickly. When the cluster cannot
start the tests fail, never skip: the cluster is what they are about.
"""

from __future__ import annotations

import pathlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Final

import pytest
from clickhouse_driver import Client

from .server import (
    _USERS,
    READER_PASSWORD,
    READER_USER,
    WRITER_PASSWORD,
    WRITER_USER,
    LocalServer,
    find_server_binary,
    free_port,
)

CLUSTER: Final = "genesis_cluster"
SHARDS: Final = 2
REPLICAS: Final = 2
_JARS: Final = ("zookeeper.jar", "zookeeper-jute.jar", "slf4j-api.jar", "slf4j-log4j12.jar",
                "log4j-1.2.jar", "netty-handler.jar", "netty-transport.jar", "netty-common.jar",
                "netty-buffer.jar", "netty-codec.jar", "netty-resolver.jar",
                "netty-transport-native-epoll.jar", "netty-transport-native-unix-common.jar",
                "metrics-core.jar", "commons-cli.jar")  # fmt: skip
_JAVA_DIR: Final = pathlib.Path("/usr/share/java")
_PROFILES: Final = (
    "<profiles><default><max_memory_usage>4000000000</max_memory_usage></default>"
    "<readonly><readonly>1</readonly></readonly></profiles>"
)
#: The same users, with ``load_balancing = in_order`` for writers and readers alike: a
#: ``Distributed`` insert and a read right after it pick the same replica of a shard (the
#: first one up), so a read meets the rows just written instead of a replica that has not
#: fetched them yet (``docs/production.md``, a cluster).
_CLUSTER_USERS: Final = _USERS.replace(
    _PROFILES,
    "<profiles><default><max_memory_usage>4000000000</max_memory_usage>"
    "<load_balancing>in_order</load_balancing></default><readonly><readonly>1</readonly>"
    "<load_balancing>in_order</load_balancing></readonly></profiles>",
)

_SERVER_CONFIG: Final = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{dir}/server.log</log><errorlog>{dir}/server.err.log</errorlog></logger>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <interserver_http_port>{interserver}</interserver_http_port>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <listen_host>127.0.0.1</listen_host>
  <path>{dir}/data/</path>
  <tmp_path>{dir}/tmp/</tmp_path>
  <users_config>{dir}/users.xml</users_config>
  <mark_cache_size>5368709</mark_cache_size>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <zookeeper>
    <node><host>127.0.0.1</host><port>{zookeeper}</port></node>
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros><shard>{shard}</shard><replica>{replica}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <remote_servers>{remote_servers}</remote_servers>
</yandex>
"""

_ZOOKEEPER_CONFIG: Final = """tickTime=500
initLimit=10
syncLimit=5
dataDir={dir}/data
clientPort={port}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,stat
"""

_LOG4J: Final = """log4j.rootLogger=WARN, FILE
log4j.appender.FILE=org.apache.log4j.FileAppender
log4j.appender.FILE.File={dir}/zookeeper.log
log4j.appender.FILE.layout=org.apache.log4j.PatternLayout
log4j.appender.FILE.layout.ConversionPattern=%d %p %c: %m%n
"""


def four_letter(port: int, word: str = "ruok", timeout: float = 1.0) -> str:
    """Ask ZooKeeper one of its four-letter questions; '' when it does not answer."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(word.encode())
            chunks = []
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            return b"".join(chunks).decode(errors="replace")
    except OSError:
        return ""


@dataclass
class ZooKeeper:
    """Debian's ZooKeeper, standalone, on a free loopback port."""

    workdir: pathlib.Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> None:
        java = shutil.which("java")
        missing = [jar for jar in _JARS[:5] if not (_JAVA_DIR / jar).exists()]
        if java is None or missing:
            raise RuntimeError(
                f"ZooKeeper needs java and {', '.join(missing) or 'its jars'} in {_JAVA_DIR}: "
                "apt-get install -y zookeeper"
            )
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        (self.workdir / "zoo.cfg").write_text(
            _ZOOKEEPER_CONFIG.format(dir=self.workdir, port=self.port)
        )
        (self.workdir / "log4j.properties").write_text(_LOG4J.format(dir=self.workdir))
        classpath = ":".join(
            [
                str(self.workdir),
                *(str(_JAVA_DIR / jar) for jar in _JARS if (_JAVA_DIR / jar).exists()),
            ]
        )
        log = (self.workdir / "stdout.log").open("ab")
        self.process = subprocess.Popen(
            [java, "-Xmx128m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
             f"-Dlog4j.configuration=file:{self.workdir / 'log4j.properties'}",
             "-cp", classpath, "org.apache.zookeeper.server.ZooKeeperServerMain",
             str(self.workdir / "zoo.cfg")],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while four_letter(self.port) != "imok":
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(
                    "ZooKeeper did not answer ruok: "
                    + (self.workdir / "stdout.log").read_text(errors="replace")[-2000:]
                )
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(30)
        self.process = None


@dataclass
class Replica(LocalServer):
    """One clickhouse-server of the cluster: its shard and replica, ZooKeeper's port."""

    shard: int = 1
    replica: int = 1
    interserver_port: int = field(default_factory=free_port)

    def __post_init__(self) -> None:
        for sub in ("data", "tmp"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        assert _CLUSTER_USERS != _USERS, "tests/support/server.py's profiles changed"
        (self.workdir / "users.xml").write_text(
            _CLUSTER_USERS.format(
                user=WRITER_USER,
                password=WRITER_PASSWORD,
                reader=READER_USER,
                reader_password=READER_PASSWORD,
            )
        )

    def freeze(self) -> None:
        """Stop the process where it stands (``SIGSTOP``): its sockets stay open, silent."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen process go on (``SIGCONT``; nothing for one that runs)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)

    @property
    def name(self) -> str:
        return f"s{self.shard}r{self.replica}"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.tcp_port}"

    def configure(self, zookeeper_port: int, remote_servers: str) -> None:
        (self.workdir / "config.xml").write_text(
            _SERVER_CONFIG.format(
                dir=self.workdir,
                tcp=self.tcp_port,
                http=self.http_port,
                interserver=self.interserver_port,
                zookeeper=zookeeper_port,
                shard=self.shard,
                replica=self.name,
                remote_servers=remote_servers,
            )
        )


@dataclass
class Cluster:
    """ZooKeeper and the replicas, shard by shard; ``replicas[0]`` is the first host."""

    zookeeper: ZooKeeper
    replicas: list[Replica]
    started_in: float = 0.0

    def shard(self, number: int) -> list[Replica]:
        return [r for r in self.replicas if r.shard == number]

    def url(
        self,
        user: str = WRITER_USER,
        password: str = WRITER_PASSWORD,
        database: str = "genesis",
        hosts: list[str] | None = None,
    ) -> str:
        """A URL naming every replica: the first as the host, the rest as ``alt_hosts``."""
        first, *rest = hosts or [r.address for r in self.replicas]
        return f"clickhouse://{user}:{password}@{first}/{database}?alt_hosts={','.join(rest)}"

    def client(self, replica: Replica | None = None) -> Client:
        return (replica or self.replicas[0]).client(send_receive_timeout=60)

    def count(self, sql: str, replica: Replica | None = None) -> int:
        return int(self.client(replica).execute(sql)[0][0])

    def sync_replicas(self, table: str = "genesis.logs_local", timeout: float = 90.0) -> None:
        """Wait until every running replica has fetched every part its shard has."""
        for replica in self.replicas:
            if not replica.running:
                continue
            client = replica.client(send_receive_timeout=timeout)
            try:
                client.execute(f"SYSTEM SYNC REPLICA {table}")
            finally:
                client.disconnect()

    def stop(self) -> None:
        for replica in self.replicas:
            replica.kill()
        self.zookeeper.stop()


def _remote_servers(replicas: list[Replica]) -> str:
    shards = []
    for number in range(1, SHARDS + 1):
        hosts = "".join(
            f"<replica><host>127.0.0.1</host><port>{r.tcp_port}</port></replica>"
            for r in replicas
            if r.shard == number
        )
        shards.append(f"<shard><internal_replication>true</internal_replication>{hosts}</shard>")
    return f"<{CLUSTER}>{''.join(shards)}</{CLUSTER}>"


def start_cluster(workdir: pathlib.Path) -> Cluster:
    """Start ZooKeeper, then the four servers; any failure stops what started and raises."""
    command = find_server_binary()
    if command is None:
        raise RuntimeError("no clickhouse-server binary: apt-get install -y clickhouse-server")
    began = time.monotonic()
    zookeeper = ZooKeeper(workdir / "zookeeper")
    zookeeper.start()
    replicas = [
        Replica(command, workdir / f"s{shard}r{replica}", shard=shard, replica=replica)
        for shard in range(1, SHARDS + 1)
        for replica in range(1, REPLICAS + 1)
    ]
    cluster = Cluster(zookeeper, replicas)
    remote = _remote_servers(replicas)
    try:
        for replica in replicas:
            replica.configure(zookeeper.port, remote)
            replica.start(timeout=60)
    except BaseException:
        cluster.stop()
        raise
    cluster.started_in = time.monotonic() - began
    return cluster


@contextmanager
def running_cluster(workdir: pathlib.Path) -> Iterator[Cluster]:
    """A started cluster, stopped afterwards; a cluster that cannot start fails the tests."""
    try:
        cluster = start_cluster(workdir)
    except Exception as error:
        pytest.fail(f"the ClickHouse cluster could not start: {error}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()
