"""A real ClickHouse cluster (issue 23): 2 shards x 2 replicas behind a ``Distributed`` table.

One cluster for the module (ZooKeeper and four Debian 18.16 servers, 2 to 3 s to start);
``genesis-logging init --cluster`` makes the tables. Every record is written by the real
handler through ``genesis.logs`` (the ``Distributed`` table), with the URL naming all four
servers (``alt_hosts``), while servers are killed with ``SIGKILL`` and restarted. A cluster
that cannot start fails these tests; they never skip.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genesis_logging import ClickHouseHandler
from genesis_logging.ddl import SHARDING_KEY
from genesis_logging.settings import ConnectionSettings
from genesis_logging.transport import ClickHouseInserter
from tests.support.cluster import CLUSTER, Cluster, Replica, running_cluster
from tests.support.fakes import run_cli, wait_until
from tests.support.loop_project import Project, assert_loop_answers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cluster")) as started:
        made = run_cli("init", "--cluster", CLUSTER, env={"CLICKHOUSE_URL": started.url()})
        assert made.returncode == 0, made.stdout + made.stderr
        print(f"\ncluster started in {started.started_in:.1f}s")
        yield started


@pytest.fixture
def cluster_up(cluster: Cluster) -> Cluster:
    """The cluster with every server running (an earlier test may have left one down)."""
    for replica in cluster.replicas:
        replica.thaw()  # a test that failed between freeze and kill left it stopped
        if not replica.running:
            replica.start(timeout=60)
    return cluster


def handler_for(
    cluster: Cluster, service: str, tmp_path: Path, **options: Any
) -> ClickHouseHandler:
    settings: dict[str, Any] = {
        "url": cluster.url(),
        "service": service,
        "batch_size": 250,
        "flush_interval": 0.05,
        "connect_timeout": 1,
        "send_receive_timeout": 10,
        "shutdown_timeout": 60,
        "spool_dir": tmp_path / "spool",
        **options,
    }
    return ClickHouseHandler(**settings)


def attached(handler: ClickHouseHandler, name: str) -> logging.Logger:
    logger = logging.getLogger(f"test.cluster.{name}")
    logger.handlers = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger


def stored(cluster: Cluster, service: str, reader: Replica | None = None) -> tuple[int, int]:
    """(rows, distinct messages) of ``service``, read through the Distributed table."""
    rows = cluster.client(reader).execute(
        "SELECT count(), uniqExact(message) FROM genesis.logs WHERE service = %(s)s",
        {"s": service},
    )
    return int(rows[0][0]), int(rows[0][1])


def per_replica(cluster: Cluster, service: str) -> dict[str, int]:
    """Rows of ``service`` in each server's own replicated table."""
    return {
        replica.name: cluster.count(
            f"SELECT count() FROM genesis.logs_local WHERE service = '{service}'", replica
        )
        for replica in cluster.replicas
    }


def assert_exactly_once(cluster: Cluster, service: str, expected: int) -> dict[str, int]:
    """Every record once through the Distributed table, both replicas of a shard alike,
    and both shards used."""
    cluster.sync_replicas()
    rows, distinct = stored(cluster, service)
    assert (rows, distinct) == (expected, expected), f"{rows} rows, {distinct} distinct"
    copies = per_replica(cluster, service)
    for shard in (1, 2):
        first, second = (copies[r.name] for r in cluster.shard(shard))
        assert first == second > 0, copies
    assert sum(copies.values()) == 2 * expected, copies
    return copies


class TestInit:
    def test_init_made_replicated_tables_behind_a_distributed_one(
        self, cluster_up: Cluster
    ) -> None:
        for replica in cluster_up.replicas:
            tables = dict(
                replica.client().execute(
                    "SELECT name, engine FROM system.tables WHERE database = 'genesis'"
                )
            )
            assert tables["logs_local"] == "ReplicatedMergeTree"
            assert tables["logs"] == "Distributed"
            assert {"failures", "last_iterations", "flaky_tests"} <= set(tables)
            (create,) = replica.client().execute("SHOW CREATE TABLE genesis.logs")[0]
            assert "cityHash64(spec_id)" in create
            assert "rand()" not in create
            (local,) = replica.client().execute("SHOW CREATE TABLE genesis.logs_local")[0]
            assert "replicated_deduplication_window = 1000" in local
        again = run_cli("init", "--cluster", CLUSTER, env={"CLICKHOUSE_URL": cluster_up.url()})
        assert again.returncode == 0, again.stderr  # idempotent on the cluster too
        unknown = run_cli("init", "--cluster", "nosuch", env={"CLICKHOUSE_URL": cluster_up.url()})
        assert unknown.returncode == 1
        assert f"has no cluster 'nosuch' in its remote_servers (it has: {CLUSTER})" in (
            unknown.stderr
        )
        assert "Nothing was changed" in unknown.stderr

    def test_doctor_says_which_host_is_in_use(self, cluster_up: Cluster) -> None:
        doctor = run_cli("doctor", env={"CLICKHOUSE_URL": cluster_up.url()})
        first = cluster_up.replicas[0].address
        assert f"OK   host in use: {first} (of {first}, " in doctor.stdout, doctor.stdout
        assert "OK   this user can insert" in doctor.stdout
        assert (
            "OK   genesis.logs is Distributed, sharded by a key computed from the row"
            in doctor.stdout
        )
        # no dedup tokens on 18.16, but the replicated tables recognise a repeated block
        assert "at-least-once" not in doctor.stdout, doctor.stdout
        assert "INFO Distributed: a repeated batch is stored once" in doctor.stdout


class TestExactlyOnce:
    @pytest.mark.parametrize("victim", ["connected", "other-shard"])
    def test_10000_records_with_a_replica_killed_midway(
        self, victim: str, cluster_up: Cluster, tmp_path: Path
    ) -> None:
        """The "done when" figure: 10 000 records, a replica hung (``SIGSTOP``) half-way,
        killed with -9 while hung and restarted; 10 000 distinct rows, no duplicate, both
        replicas of each shard alike.

        ``connected``: the server the handler writes through (it fails over to the next
        host in the URL). ``other-shard``: a replica the Distributed insert reaches remotely.
        """
        service = f"kill-{victim}"
        handler = handler_for(cluster_up, service, tmp_path)
        logger = attached(handler, service)
        logger.info("warm-up", extra={"spec_id": "spec_warm"})
        assert handler.drain(30)
        connected = handler.stats()["host"]
        entry = next(r for r in cluster_up.replicas if r.address == connected)
        target = (
            entry
            if victim == "connected"
            else next(r for r in cluster_up.replicas if r.shard != entry.shard)
        )
        killed_at = None
        try:
            for number in range(1, 10_000):
                extra = {"spec_id": f"spec_{number % 40:02d}"} if number % 5 else {}
                logger.info("record %d", number, extra=extra)
                if number == 5_000:  # hung first, so inserts in flight meet it, then killed
                    target.freeze()
                    killed_at = handler.stats()["sent"]
                elif number == 7_500:
                    target.kill()
                if number % 100 == 0:
                    time.sleep(0.02)  # records keep flowing while the replica is down
            target.start(timeout=60)
            assert handler.drain(120)
            wait_until(lambda: spool_replayed(handler), 120)
            stats = handler.stats()
        finally:
            handler.close()
        assert stats["sent"] + stats["spooled"] == 10_000, stats
        copies = assert_exactly_once(cluster_up, service, 10_000)
        print(
            f"\n{victim}: hung then killed {target.name} after {killed_at} sent; host now "
            f"{stats['host']}; retries {stats['retries']}, spooled {stats['spooled']}; "
            f"rows per replica {copies}"
        )
        if victim == "connected":
            assert stats["host"] != connected  # it went on through the next host

    def test_a_retried_batch_is_stored_once(self, cluster_up: Cluster) -> None:
        """The same batch twice (a retry after a lost answer): stored once, because the
        deterministic key splits it into the same blocks and each shard drops the repeat.
        The same through a ``rand()`` Distributed table: stored twice."""
        rows = [
            {
                "timestamp": 1_700_000_000_000 + number,
                "message": f"retried {number}",
                "spec_id": f"spec_{number % 7}" if number % 3 else "",
                "service": "retry",
            }
            for number in range(1_000)
        ]
        settings = ConnectionSettings.resolve(url=cluster_up.url(), environ={})
        inserter = ClickHouseInserter(settings)
        try:
            inserter.insert(rows, token="batch-1")
            # Synchronous: each shard has its rows on one of its replicas when insert()
            # returns (the other replica fetches them afterwards).
            on_shards = [
                max(
                    cluster_up.count(
                        "SELECT count() FROM genesis.logs_local WHERE service = 'retry'", r
                    )
                    for r in cluster_up.shard(shard)
                )
                for shard in (1, 2)
            ]
            inserter.insert(rows, token="batch-1")
        finally:
            inserter.close()
        assert sum(on_shards) == 1_000, on_shards
        assert min(on_shards) > 0, on_shards
        assert assert_exactly_once(cluster_up, "retry", 1_000)

        client = cluster_up.client()
        client.execute(
            f"CREATE TABLE IF NOT EXISTS genesis.logs_rand ON CLUSTER {CLUSTER} AS "
            f"genesis.logs_local ENGINE = Distributed({CLUSTER}, genesis, logs_local, rand())"
        )
        try:
            at_random = ClickHouseInserter(settings, "logs_rand")
            for _ in range(2):
                at_random.insert([{**row, "service": "retry-rand"} for row in rows])
            at_random.close()
            cluster_up.sync_replicas()
            twice, _ = stored(cluster_up, "retry-rand")
            doctor = run_cli(
                "doctor", "--table", "logs_rand", env={"CLICKHOUSE_URL": cluster_up.url()}
            )
            assert "WARN genesis.logs_rand is Distributed, sharded by rand()" in doctor.stdout
        finally:
            client.execute(f"DROP TABLE IF EXISTS genesis.logs_rand ON CLUSTER {CLUSTER}")
        print(f"\nthe same 1000 rows twice: {SHARDING_KEY!r} 1000, rand() {twice}")
        assert twice > 1_000  # why the key matters: rand() splits the repeat differently


class TestFailures:
    def test_a_whole_shard_down_spools_then_delivers_once(
        self, cluster_up: Cluster, tmp_path: Path
    ) -> None:
        """Both replicas of shard 2 down: a synchronous insert fails at once (code 279), so
        batches go to the spool (the server queues nothing); once the shard is back the
        spool is replayed and every record is stored exactly once."""
        handler = handler_for(
            cluster_up, "shard-down", tmp_path, retry_attempts=2, retry_max_delay=1
        )
        logger = attached(handler, "shard-down")
        down = cluster_up.shard(2)
        for replica in down:
            replica.kill()
        try:
            for number in range(600):
                logger.info(
                    "while shard 2 is down %d", number, extra={"spec_id": f"s{number % 9}"}
                )
            assert handler.drain(60)
            during = handler.stats()
            assert during["spooled"] == 600, during
            assert during["sent"] == 0, during
            assert "279" in str(during["last_error"]) or "ALL_CONNECTION_TRIES_FAILED" in str(
                during["last_error"]
            ), during["last_error"]
            for replica in down:
                replica.start(timeout=60)
            wait_until(lambda: spool_replayed(handler), 120)
        finally:
            handler.close()
        assert_exactly_once(cluster_up, "shard-down", 600)

    def test_the_first_host_down_records_go_to_the_next(
        self, cluster_up: Cluster, tmp_path: Path
    ) -> None:
        first, second = cluster_up.replicas[:2]
        first.kill()
        handler = handler_for(cluster_up, "first-down", tmp_path)
        logger = attached(handler, "first-down")
        try:
            for number in range(500):
                logger.info("first host down %d", number, extra={"spec_id": f"f{number % 11}"})
            assert handler.drain(60)
            stats = handler.stats()
        finally:
            handler.close()
        assert (stats["sent"], stats["spooled"], stats["retries"]) == (500, 0, 0), stats
        assert stats["host"] == second.address
        cluster_up.sync_replicas()  # replication is asynchronous: a read may hit a laggard
        rows, distinct = stored(cluster_up, "first-down", reader=second)
        assert (rows, distinct) == (500, 500)
        first.start(timeout=60)
        assert_exactly_once(cluster_up, "first-down", 500)


class TestTheLoop:
    def test_the_loops_commands_read_through_the_distributed_table(
        self, cluster_up: Cluster, tmp_path: Path
    ) -> None:
        """``run`` logs through the cluster; ``failures``, ``diff``, ``verify``, ``show``,
        ``tail`` and ``report`` read it back through ``genesis.logs``, with the URL's first
        host down (the CLI reads through the same list of hosts)."""
        env = {"CLICKHOUSE_URL": cluster_up.url()}
        Project(tmp_path / "proj").red_then_green("spec_cluster", env)
        cluster_up.sync_replicas()  # a replica killed before its peer fetched its parts
        cluster_up.replicas[0].kill()  # would hide them until it returns (no insert_quorum)
        assert_loop_answers(env, "spec_cluster", degraded=False)
        report = run_cli("report", "spec_cluster", env=env)
        assert report.returncode == 0, report.stderr
        assert "spec_cluster" in report.stdout
        assert "Traceback" not in report.stderr
        cluster_up.replicas[0].start(timeout=60)
        cluster_up.sync_replicas()
        copies = {
            r.name: cluster_up.count(
                "SELECT count() FROM genesis.logs_local WHERE spec_id = 'spec_cluster'", r
            )
            for r in cluster_up.replicas
        }
        holding = {r.shard for r in cluster_up.replicas if copies[r.name]}
        assert len(holding) == 1, copies  # the key keeps a spec's rows on one shard
        (shard,) = holding
        first, second = (copies[r.name] for r in cluster_up.shard(shard))
        assert first == second > 0, copies


def spool_replayed(handler: ClickHouseHandler) -> bool:
    """Whether every spooled row went back to the server (none set aside as dead)."""
    stats = handler.stats()
    assert stats["spool"]["dead_letter_rows"] == 0, stats
    return bool(stats["spool"]["replayed_rows"] == stats["spooled"])
