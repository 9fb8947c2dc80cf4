"""ClickHouseHandler through a fake inserter: batching, flush, queue policies, faults."""

from __future__ import annotations

import logging
import logging.config
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
from clickhouse_driver import errors

from genesis_logging import ClickHouseHandler, ConfigurationError, DeliveryWarning
from tests.support.fakes import FakeInserter, balanced, make, wait_until


@pytest.fixture
def fake() -> FakeInserter:
    return FakeInserter()


@pytest.fixture(autouse=True)
def _quiet_delivery_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        yield


class TestBatching:
    """Batches are cut by count, by interval, and on flush."""

    def test_cut_by_count(self, fake: FakeInserter) -> None:
        handler, logger = make(fake, batch_size=10)
        for i in range(25):
            logger.info("m%d", i)
        wait_until(lambda: len(fake.batches) == 2)
        assert [len(b) for b in fake.batches] == [10, 10]
        assert handler.drain(5)
        assert [len(b) for b in fake.batches] == [10, 10, 5]
        assert fake.messages == [f"m{i}" for i in range(25)]
        handler.close()

    def test_cut_by_interval(self, fake: FakeInserter) -> None:
        handler, logger = make(fake, batch_size=1000, flush_interval=0.05)
        for i in range(3):
            logger.info("m%d", i)
        wait_until(lambda: len(fake.batches) == 1)
        assert fake.messages == ["m0", "m1", "m2"]
        handler.close()

    def test_rows_carry_the_record(self, fake: FakeInserter) -> None:
        handler, logger = make(fake, service="svc", version="3")
        logger.error("x", extra={"spec_id": "s1", "exit_code": 2, "topic": "t"})
        handler.close()
        (row,) = fake.batches[0]
        assert row["spec_id"] == "s1"
        assert row["exit_code"] == 2
        assert row["service"] == "svc"
        assert row["attributes"] == {"topic": "t"}
        assert row["level"] == "error"

    def test_message_and_context_are_captured_in_the_callers_thread(
        self, fake: FakeInserter
    ) -> None:
        from genesis_logging import log_context

        handler, logger = make(fake)
        payload = ["before"]
        with log_context(spec_id="ctx"):
            logger.info("%s", payload)
        payload[0] = "after"
        handler.close()
        assert fake.batches[0][0]["message"] == "['before']"
        assert fake.batches[0][0]["spec_id"] == "ctx"


class TestFlushAndClose:
    """flush waits for delivery; close is idempotent and bounded."""

    def test_drain_waits_for_commit(self, fake: FakeInserter) -> None:
        handler, logger = make(fake)
        fake.gate.clear()
        logger.info("held")
        assert handler.drain(0.1) is False
        fake.gate.set()
        assert handler.drain(5) is True
        assert fake.messages == ["held"]
        handler.close()

    def test_close_delivers_and_is_idempotent(self, fake: FakeInserter) -> None:
        handler, logger = make(fake)
        for i in range(5):
            logger.info("m%d", i)
        handler.close()
        handler.close()
        assert len(fake.messages) == 5
        assert fake.closed >= 1

    def test_records_after_close_are_counted(self, fake: FakeInserter) -> None:
        handler, logger = make(fake)
        handler.close()
        logger.info("late")
        stats = handler.stats()
        assert stats["dropped"] == {"closed": 1}
        assert balanced(stats)

    def test_shutdown_is_bounded_when_delivery_never_succeeds(self, fake: FakeInserter) -> None:
        fake.always = OSError("connection refused")
        handler, logger = make(
            fake, shutdown_timeout=0.5, retry_attempts=1000, retry_max_delay=600.0
        )
        for i in range(50):
            logger.info("m%d", i)
        started = time.monotonic()
        handler.flush()  # what logging.shutdown() does ...
        handler.close()  # ... then this
        elapsed = time.monotonic() - started
        assert elapsed < 0.5 + 1.0, f"shutdown took {elapsed:.2f}s"
        wait_until(lambda: handler.stats()["pending"] == 0)
        stats = handler.stats()
        assert stats["sent"] == 0
        assert sum(stats["dropped"].values()) == 50
        assert balanced(stats)

    def test_flush_never_waits_under_the_logging_lock(self, fake: FakeInserter) -> None:
        handler, logger = make(fake, shutdown_timeout=30.0)
        fake.gate.clear()
        logger.info("held")
        started = time.monotonic()
        with logging._lock:  # type: ignore[attr-defined]  # what dictConfig holds
            handler.flush()
            handler.close()
        assert time.monotonic() - started < 5
        fake.gate.set()
        wait_until(lambda: fake.messages == ["held"])  # delivered in the background


class TestQueueFullPolicies:
    """drop_newest, drop_oldest and block, each counted."""

    def fill(
        self, fake: FakeInserter, policy: str, **options: Any
    ) -> tuple[ClickHouseHandler, logging.Logger]:
        handler, logger = make(
            fake, batch_size=1, queue_size=5, queue_full_policy=policy, **options
        )
        fake.gate.clear()
        logger.info("m0")
        wait_until(fake.entered.is_set)  # the worker holds m0 in flight
        for i in range(1, 6):
            logger.info("m%d", i)
        return handler, logger

    def test_drop_newest(self, fake: FakeInserter) -> None:
        handler, logger = self.fill(fake, "drop_newest")
        for i in range(6, 9):
            logger.info("m%d", i)
        assert handler.stats()["dropped"] == {"queue_full": 3}
        assert balanced(handler.stats())
        fake.gate.set()
        handler.close()
        assert fake.messages == ["m0", "m1", "m2", "m3", "m4", "m5"]

    def test_drop_oldest(self, fake: FakeInserter) -> None:
        handler, logger = self.fill(fake, "drop_oldest")
        for i in range(6, 9):
            logger.info("m%d", i)
        assert handler.stats()["dropped"] == {"queue_full": 3}
        fake.gate.set()
        handler.close()
        assert fake.messages == ["m0", "m4", "m5", "m6", "m7", "m8"]
        assert balanced(handler.stats())

    def test_block_gives_up_after_its_timeout(self, fake: FakeInserter) -> None:
        handler, logger = self.fill(fake, "block", block_timeout=0.2)
        started = time.monotonic()
        logger.info("m6")
        elapsed = time.monotonic() - started
        assert 0.15 <= elapsed < 5
        assert handler.stats()["dropped"] == {"queue_full": 1}
        fake.gate.set()
        handler.close()

    def test_block_admits_when_room_appears(self, fake: FakeInserter) -> None:
        handler, logger = self.fill(fake, "block", block_timeout=10.0)
        threading.Timer(0.1, fake.gate.set).start()
        logger.info("m6")
        handler.close()
        assert handler.stats()["dropped"] == {}
        assert fake.messages == [f"m{i}" for i in range(7)]

    def test_memory_is_bounded(self, fake: FakeInserter) -> None:
        handler, logger = self.fill(fake, "drop_newest")
        for i in range(10_000):
            logger.info("flood %d", i)
        assert handler.stats()["queue_depth"] == 5
        fake.gate.set()
        handler.close()


class TestFaults:
    """Transient errors are retried, permanent ones are not; all is counted."""

    def test_transient_errors_are_retried(self, fake: FakeInserter) -> None:
        fake.errors = [EOFError("Unexpected EOF while reading bytes"), OSError("reset")]
        handler, logger = make(fake)
        logger.info("survives")
        handler.close()
        stats = handler.stats()
        assert fake.messages == ["survives"]
        assert (stats["retries"], stats["sent"], stats["dropped"]) == (2, 1, {})
        assert "reset" in stats["last_error"]

    def test_transient_server_errors_are_retried(self, fake: FakeInserter) -> None:
        fake.errors = [errors.ServerException("Too many parts", code=252)]
        handler, logger = make(fake)
        logger.info("x")
        handler.close()
        assert handler.stats()["retries"] == 1
        assert fake.messages == ["x"]

    @pytest.mark.parametrize("code", [516, 193, 81, 60, 164])  # 164: READONLY user (issue 20)
    def test_permanent_errors_are_not_retried(self, fake: FakeInserter, code: int) -> None:
        fake.errors = [errors.ServerException("refused", code=code)]
        handler, logger = make(fake)
        for i in range(3):
            logger.info("m%d", i)
        handler.close()
        stats = handler.stats()
        assert fake.calls == 1
        assert stats["retries"] == 0
        assert stats["dropped"] == {"permanent_error": 3}
        assert stats["failed_batches"] == 1

    def test_no_retry_storm_after_a_permanent_error(self, fake: FakeInserter) -> None:
        fake.always = errors.ServerException("Authentication failed", code=516)
        handler, logger = make(fake, batch_size=1, flush_interval=0.01, shutdown_timeout=0.2)
        for i in range(200):
            logger.info("m%d", i)
        time.sleep(0.5)
        assert fake.calls <= 3  # a cooldown after each permanent error, not 200 attempts
        handler.close()
        assert balanced(handler.stats())

    def test_gives_up_after_the_attempt_limit(self, fake: FakeInserter) -> None:
        fake.always = OSError("unreachable")
        handler, logger = make(fake, retry_attempts=3)
        logger.info("lost")
        assert handler.drain(10)
        stats = handler.stats()
        assert fake.calls == 3
        assert stats["retries"] == 2
        assert stats["dropped"] == {"delivery_failed": 1}
        handler.close()

    def test_failures_are_reported_as_warnings_not_logs(self, fake: FakeInserter) -> None:
        fake.always = errors.ServerException("Table genesis.logs doesn't exist", code=60)
        handler, logger = make(fake)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeliveryWarning)
            logger.info("x")
            handler.close()
        texts = [str(w.message) for w in caught if issubclass(w.category, DeliveryWarning)]
        assert any("permanent error" in t and "doesn't exist" in t for t in texts)

    def test_what_the_worker_logs_does_not_come_back(self, fake: FakeInserter) -> None:
        handler, logger = make(fake)
        fake.on_insert = lambda rows: logger.warning("from the worker")  # e.g. the driver
        logger.info("outer")
        handler.close()
        assert fake.messages == ["outer"]
        assert handler.stats()["dropped"] == {"recursion": 1}

    def test_a_value_that_logs_while_converted_is_logged_after_the_call(
        self, fake: FakeInserter
    ) -> None:
        """The guard covers the caller's thread too: the nested record waits its turn."""
        handler, logger = make(fake)

        class Chatty:
            def __repr__(self) -> str:
                logger.warning("rendering Chatty")  # e.g. an ORM object that logs
                return "chatty"

        logger.info("outer", extra={"thing": Chatty()})
        handler.close()
        assert fake.messages == ["outer", "rendering Chatty"]
        assert fake.batches[0][0]["attributes"] == {"thing": "chatty"}
        assert handler.stats()["dropped"] == {}

    def test_a_value_that_always_logs_itself_cannot_recurse(self, fake: FakeInserter) -> None:
        handler, logger = make(fake)

        class Loop:
            def __repr__(self) -> str:
                logger.warning("rendering", extra={"again": self})
                return "loop"

        logger.info("outer", extra={"thing": Loop()})
        handler.close()
        stats = handler.stats()
        assert fake.messages == ["outer"] + ["rendering"] * 8  # a few rounds, then counted
        assert stats["dropped"] == {"recursion": 1}
        assert balanced(stats)

    def test_a_dead_worker_is_restarted_and_counted(self, fake: FakeInserter) -> None:
        class Fatal(BaseException):
            pass

        fake.errors = [Fatal()]
        handler, logger = make(fake)
        previous_hook = threading.excepthook
        threading.excepthook = lambda args: None
        try:
            logger.info("dies")
            assert not handler.drain(0.05) or True
            wait_until(lambda: handler.stats()["dropped"].get("worker_died") == 1)
            logger.info("lives")
            handler.close()
        finally:
            threading.excepthook = previous_hook
        stats = handler.stats()
        assert stats["worker_restarts"] == 1
        assert fake.messages == ["lives"]
        assert balanced(stats)


class TestManyThreads:
    """Concurrent callers: every record counted exactly once."""

    def test_eight_threads(self, fake: FakeInserter) -> None:
        handler, logger = make(fake, batch_size=100, flush_interval=0.01)

        def work(n: int) -> None:
            for i in range(500):
                logger.info("t%d-%d", n, i)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        handler.close()
        assert sorted(fake.messages) == sorted(f"t{n}-{i}" for n in range(8) for i in range(500))
        assert handler.stats()["sent"] == 4000


class TestConfiguration:
    """Invalid options fail at construction with a clear, password-free message."""

    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"queue_full_policy": "drop_random"}, "queue_full_policy"),
            ({"batch_size": -1}, "batch_size"),
            ({"batch_size": 0}, "batch_size"),
            ({"queue_size": 2.5}, "queue_size"),
            ({"flush_interval": -1}, "flush_interval"),
            ({"shutdown_timeout": "soon"}, "shutdown_timeout"),
            ({"url": "http://u:hunter2@h:9000/db"}, "scheme"),
            ({"url": "clickhouse://u:hunter2@h:notaport/db"}, "malformed"),
            ({"url": "clickhouse://u:hunter2@h:9000/a/b"}, "single database"),
            ({"port": 70000}, "port"),
            ({"secure": "maybe"}, "secure"),
            ({"compression": "brotli"}, "compression"),
            ({"table": ""}, "table"),
        ],
    )
    def test_rejected(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigurationError, match=match) as info:
            ClickHouseHandler(**options)
        assert "hunter2" not in str(info.value)

    def test_missing_codec_package(self, monkeypatch: pytest.MonkeyPatch) -> None:
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util,
            "find_spec",
            lambda name, *a: None if name == "zstd" else real(name, *a),
        )
        with pytest.raises(ConfigurationError, match=r"genesis-logging\[zstd\]"):
            ClickHouseHandler(compression="zstd")

    def test_dictconfig_reports_bad_options(self) -> None:
        config = {
            "version": 1,
            "handlers": {"ch": {"class": "genesis_logging.ClickHouseHandler", "batch_size": -5}},
        }
        with pytest.raises(ValueError, match="Unable to configure handler 'ch'") as info:
            logging.config.dictConfig(config)
        assert isinstance(info.value.__cause__, ConfigurationError)
        assert "batch_size must be > 0" in str(info.value.__cause__)

    def test_password_stays_out_of_repr(self) -> None:
        handler = ClickHouseHandler(url="clickhouse://writer:hunter2@db.example:9000/genesis")
        assert "hunter2" not in repr(handler)
        assert "hunter2" not in repr(handler.settings)
        assert "hunter2" not in str(handler.stats())
        assert repr(handler) == (
            "<ClickHouseHandler clickhouse://writer@db.example:9000/genesis table=logs (NOTSET)>"
        )
        handler.close()

    def test_no_thread_until_the_first_record(self, fake: FakeInserter) -> None:
        before = threading.active_count()
        handler, logger = make(fake)
        assert threading.active_count() == before
        logger.info("x")
        names = [t.name for t in threading.enumerate()]
        assert "genesis-logging-logs" in names
        handler.close()


class TestDictConfig:
    """Every option is a plain keyword argument that dictConfig can pass."""

    def test_every_option_through_dictconfig(self, tmp_path: Any) -> None:
        ca = tmp_path / "ca.pem"
        ca.write_text("not used until a TLS connection is made")
        options = {
            "host": "clickhouse.internal",
            "port": 9440,
            "user": "writer",
            "password": "hunter2",
            "database": "genesis",
            "secure": True,
            "verify": False,
            "ca_certs": str(ca),
            "connect_timeout": 2.5,
            "send_receive_timeout": 12.0,
            "compression": "lz4",
            "table": "logs",
            "batch_size": 250,
            "flush_interval": 0.5,
            "queue_size": 5000,
            "queue_full_policy": "block",
            "block_timeout": 0.05,
            "retry_attempts": 4,
            "retry_max_delay": 9.0,
            "shutdown_timeout": 3.0,
            "service": "svc",
            "version": "2.0",
        }
        logging.config.dictConfig(
            {
                "version": 1,
                "disable_existing_loggers": False,
                "handlers": {
                    "ch": {
                        "class": "genesis_logging.ClickHouseHandler",
                        "level": "INFO",
                        **options,
                    }
                },
                "loggers": {"configured": {"handlers": ["ch"]}},
            }
        )
        (handler,) = logging.getLogger("configured").handlers
        assert isinstance(handler, ClickHouseHandler)
        assert handler.level == logging.INFO
        for key, value in options.items():
            if key in ("service", "version"):
                assert getattr(handler.converter, key) == value
            elif hasattr(handler.settings, key):
                assert getattr(handler.settings, key) == value, key
            else:
                assert getattr(handler.config, key) == value, key
        assert "hunter2" not in repr(handler)
        assert "hunter2" not in repr(handler.config)
        handler.close()

    def test_url_and_environment_fallbacks(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv(
            "CLICKHOUSE_URL", "clickhouses://u:p%40ss@h.example/db1?compression=lz4"
        )
        monkeypatch.setenv("CLICKHOUSE_HOST", "ignored-host")
        monkeypatch.setenv("CLICKHOUSE_USER", "ignored-user")
        monkeypatch.setenv("CLICKHOUSE_DATABASE", "ignored-db")
        handler = ClickHouseHandler(database="explicit")
        settings = handler.settings
        assert (settings.host, settings.port, settings.secure) == ("h.example", 9440, True)
        assert (settings.user, settings.password) == ("u", "p@ss")
        assert settings.database == "explicit"  # keyword > URL > variable
        assert settings.compression == "lz4"
        handler.close()

    def test_individual_variables(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CLICKHOUSE_URL", raising=False)
        monkeypatch.setenv("CLICKHOUSE_HOST", "ch.example")
        monkeypatch.setenv("CLICKHOUSE_PORT", "19000")
        monkeypatch.setenv("CLICKHOUSE_USER", "writer")
        monkeypatch.setenv("CLICKHOUSE_PASSWORD", "pw")
        monkeypatch.setenv("CLICKHOUSE_SECURE", "true")
        monkeypatch.setenv("CLICKHOUSE_DATABASE", "logsdb")
        settings = ClickHouseHandler().settings
        assert (settings.host, settings.port, settings.user) == ("ch.example", 19000, "writer")
        assert (settings.password, settings.secure, settings.database) == ("pw", True, "logsdb")
