"""ClickHouseHandler against a real server, reading the table back."""

from __future__ import annotations

import json
import logging
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from genesis_logging import ClickHouseHandler, DeliveryWarning
from genesis_logging.schema import FIELDS, SEED_FIELDS
from tests.support.fakes import wait_until
from tests.support.server import (
    WRITER_PASSWORD,
    WRITER_USER,
    LocalServer,
    Target,
    legacy_table_sql,
)

pytestmark = pytest.mark.integration

Table = tuple[Target, str, str]


@pytest.fixture(autouse=True)
def delivery_warnings() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DeliveryWarning)
        yield caught


def read_rows(target: Target, database: str, table: str) -> list[dict[str, Any]]:
    columns = [f.name for f in FIELDS if f.name != "timestamp"]
    rows = target.client().execute(
        f"SELECT {target.timestamp_expression()}, {', '.join(columns)} FROM {database}.{table}"
    )
    result = []
    for values in rows:
        row = dict(zip(["timestamp", *columns], values, strict=True))
        if isinstance(row["attributes"], str):  # a String column on the old server
            row["attributes"] = json.loads(row["attributes"]) if row["attributes"] else {}
        result.append(row)
    return result


def count_rows(target: Target, database: str, table: str) -> int:
    return int(target.client().execute(f"SELECT count() FROM {database}.{table}")[0][0])


def make_logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def handler_for(target: Target, database: str, table: str, **options: Any) -> ClickHouseHandler:
    return ClickHouseHandler(url=target.url(database), table=table, **options)


class TestDelivery:
    """Records arrive exactly once, field by field."""

    def test_50000_records_from_8_threads(self, logs_table: Table) -> None:
        target, database, table = logs_table
        handler = handler_for(target, database, table, service="it", version="9.9.9")
        logger = make_logger(handler, "it.threads")
        big = "x" * 1_000_000
        expected: dict[str, dict[str, Any]] = {}
        lock = threading.Lock()

        def work(n: int) -> None:
            mine = {}
            for i in range(6250):
                message = f"t{n}-{i} olá ✓ 🚀"
                extra: dict[str, Any] = {
                    "spec_id": f"spec_{n:03d}",
                    "iteration": i,
                    "exit_code": -i,
                    "duration_ms": i * 3,
                    "task_id": "T01",
                    "topic": f"tópico {i % 7}",
                }
                if i % 2500 == 0:
                    extra["stdout"] = big
                    extra["stderr"] = "ünïcödé\n" * 1000
                created = time.time()
                logger.warning(message, extra=extra)
                mine[message] = {"extra": extra, "created": created}
            with lock:
                expected.update(mine)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        handler.close()

        stats = handler.stats()
        assert stats["sent"] == 50_000, stats
        assert stats["dropped"] == {}
        rows = read_rows(target, database, table)
        assert len(rows) == 50_000
        by_message = {row["message"]: row for row in rows}
        assert len(by_message) == 50_000  # exactly once
        for message, sent in expected.items():
            row = by_message[message]
            extra = sent["extra"]
            assert row["level"] == "warning"
            assert row["logger"] == "it.threads"
            assert (row["service"], row["version"]) == ("it", "9.9.9")
            for name in ("spec_id", "iteration", "exit_code", "duration_ms", "task_id"):
                assert row[name] == extra[name], name
            assert row["stdout"] == extra.get("stdout", "")
            assert row["stderr"] == extra.get("stderr", "")
            assert row["attributes"] == {"topic": extra["topic"]}
            assert abs(row["timestamp"] / 1000 - sent["created"]) < 1.0  # seconds on 18.16

    def test_exceptions_and_context(self, logs_table: Table) -> None:
        from genesis_logging import log_context

        target, database, table = logs_table
        handler = handler_for(target, database, table)
        logger = make_logger(handler, "it.exc")
        with log_context(spec_id="spec_001", iteration=2, sprint_id="S030"):
            try:
                raise TypeError("x is not a function")
            except TypeError:
                logger.exception("failed", extra={"exit_code": 1})
        handler.close()
        (row,) = read_rows(target, database, table)
        assert (row["spec_id"], row["iteration"], row["sprint_id"]) == ("spec_001", 2, "S030")
        assert row["exception"].endswith("TypeError: x is not a function")
        assert row["level"] == "error"

    def test_a_table_with_only_the_seed_columns(self, clickhouse: Target) -> None:
        database, table = "genesis_test", f"seed_only_{id(self)}"
        client = clickhouse.client()
        client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.execute(f"DROP TABLE IF EXISTS {database}.{table}")
        client.execute(legacy_table_sql(database, table, SEED_FIELDS, modern=clickhouse.modern))
        described = [r[0] for r in client.execute(f"DESCRIBE TABLE {database}.{table}")]
        assert "attributes" not in described
        handler = handler_for(clickhouse, database, table)
        logger = make_logger(handler, "it.seed")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeliveryWarning)
            for i in range(3):
                logger.info("seed %d", i, extra={"spec_id": "s", "topic": "dropped field"})
            handler.close()
        assert count_rows(clickhouse, database, table) == 3
        notes = [str(w.message) for w in caught if "no column for" in str(w.message)]
        assert len(notes) == 1  # reported once, not per row
        assert "logger, exception, attributes" in notes[0]


class TestOutages:
    """The server comes and goes; records wait and arrive."""

    def test_server_down_when_logging_starts(self, running_local_server: LocalServer) -> None:
        target = Target("local", running_local_server.host, running_local_server.port)
        target.create_logs_table("genesis_test", "late_start")
        running_local_server.stop()
        handler = handler_for(target, "genesis_test", "late_start", flush_interval=0.1)
        logger = make_logger(handler, "it.late")
        for i in range(100):
            logger.info("waiting %d", i)
        wait_until(lambda: handler.stats()["retries"] >= 1)
        assert handler.stats()["sent"] == 0
        running_local_server.start()
        assert handler.drain(30)
        handler.close()
        assert handler.stats()["sent"] == 100
        assert count_rows(target, "genesis_test", "late_start") == 100

    def test_kill_9_and_restart_mid_stream(self, running_local_server: LocalServer) -> None:
        server = running_local_server
        target = Target("local", server.host, server.port)
        target.create_logs_table("genesis_test", "killed")
        batch_size = 500
        handler = handler_for(
            target, "genesis_test", "killed", batch_size=batch_size, flush_interval=0.05
        )
        logger = make_logger(handler, "it.kill")
        total = 20_000
        killed = threading.Event()

        def produce() -> None:
            for i in range(total):
                logger.info("r%d", i)
                if i % 1000 == 0:
                    time.sleep(0.01)

        producer = threading.Thread(target=produce)
        producer.start()
        wait_until(lambda: handler.stats()["sent"] >= 3000)
        server.kill()
        killed.set()
        time.sleep(0.5)
        server.start()
        producer.join()
        assert handler.drain(60)
        handler.close()
        stats = handler.stats()
        assert stats["dropped"] == {}, stats
        counts = Counter(
            m for (m,) in target.client().execute("SELECT message FROM genesis_test.killed")
        )
        assert set(counts) == {f"r{i}" for i in range(total)}  # none lost
        duplicates = sum(c - 1 for c in counts.values())
        assert duplicates <= batch_size  # at most one batch per fault

    def test_shutdown_is_bounded_with_the_server_down(
        self, running_local_server: LocalServer
    ) -> None:
        target = Target("local", running_local_server.host, running_local_server.port)
        running_local_server.stop()
        handler = handler_for(
            target, "genesis_test", "nowhere", shutdown_timeout=1.0, retry_max_delay=120
        )
        logger = make_logger(handler, "it.down")
        for i in range(1000):
            logger.info("lost %d", i)
        started = time.monotonic()
        logging.shutdown([weakref.ref(handler)])
        elapsed = time.monotonic() - started
        assert elapsed < 1.0 + 1.0, f"logging.shutdown() took {elapsed:.2f}s"
        wait_until(lambda: handler.stats()["pending"] == 0)
        stats = handler.stats()
        assert stats["emitted"] == 1000
        assert sum(stats["dropped"].values()) == 1000


class TestPermanentErrors:
    """Wrong credentials, missing database or table: clear, counted, no retry storm."""

    def run(
        self, handler: ClickHouseHandler, caught: list[warnings.WarningMessage]
    ) -> dict[str, Any]:
        logger = make_logger(handler, f"it.perm.{id(handler)}")
        started = time.monotonic()
        for i in range(20):
            logger.error("app keeps going %d", i)
        assert time.monotonic() - started < 1.0  # no I/O in the caller
        handler.close()
        stats = handler.stats()
        assert stats["retries"] == 0
        assert stats["dropped"] == {"permanent_error": 20}
        assert stats["failed_batches"] == 1
        texts = " ".join(str(w.message) for w in caught) + repr(handler) + str(stats)
        assert WRITER_PASSWORD not in texts
        assert "wrong-password-123" not in texts
        return stats

    def test_wrong_password(
        self, running_local_server: LocalServer, delivery_warnings: list[Any]
    ) -> None:
        server = running_local_server
        handler = ClickHouseHandler(
            url=server.url(WRITER_USER, "wrong-password-123", "genesis_test"), table="x"
        )
        stats = self.run(handler, delivery_warnings)
        assert "password" in stats["last_error"].lower()

    def test_missing_database(self, clickhouse: Target, delivery_warnings: list[Any]) -> None:
        stats = self.run(handler_for(clickhouse, "no_such_db", "logs"), delivery_warnings)
        assert "no_such_db" in stats["last_error"]

    def test_missing_table(self, clickhouse: Target, delivery_warnings: list[Any]) -> None:
        clickhouse.client().execute("CREATE DATABASE IF NOT EXISTS genesis_test")
        stats = self.run(
            handler_for(clickhouse, "genesis_test", "no_such_table"), delivery_warnings
        )
        assert "no_such_table" in stats["last_error"]
        assert "Stack trace" not in stats["last_error"]

    def test_right_password_works(self, running_local_server: LocalServer) -> None:
        server = running_local_server
        target = Target("local", server.host, server.port)
        target.create_logs_table("genesis_test", "with_password")
        handler = ClickHouseHandler(
            url=server.url(WRITER_USER, WRITER_PASSWORD, "genesis_test"),
            table="with_password",
            compression="lz4",
        )
        make_logger(handler, "it.pw").info("authenticated")
        handler.close()
        assert handler.stats()["sent"] == 1
        assert count_rows(target, "genesis_test", "with_password") == 1


class TestInterpreterExit:
    """A normal exit delivers everything, even records logged from atexit hooks."""

    @pytest.mark.parametrize(
        "before_exit", [10, 0], ids=["worker-running", "first-record-at-exit"]
    )
    def test_records_logged_at_exit_are_delivered(
        self, logs_table: Table, tmp_path: Any, before_exit: int
    ) -> None:
        import subprocess
        import sys

        target, database, table = logs_table
        script = tmp_path / "worker.py"
        script.write_text(
            "import atexit, logging, sys\n"
            "from genesis_logging import ClickHouseHandler\n"
            f"handler = ClickHouseHandler(url={target.url(database)!r}, table={table!r})\n"
            "logger = logging.getLogger('exit')\n"
            "logger.addHandler(handler)\n"
            "logger.setLevel(logging.INFO)\n"
            f"for i in range({before_exit}):\n"
            "    logger.info('normal %d', i)\n"
            # Runs during interpreter shutdown, before logging.shutdown(); on 3.12+ no
            # new thread may be started there.
            "atexit.register(lambda: logger.info('from atexit'))\n"
        )
        done = subprocess.run(
            [sys.executable, str(script)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr, done.stderr
        messages = sorted(
            m for (m,) in target.client().execute(f"SELECT message FROM {database}.{table}")
        )
        assert messages == sorted([f"normal {i}" for i in range(before_exit)] + ["from atexit"])
