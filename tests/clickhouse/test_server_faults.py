"""Fault injection against the real server: every record lands once or is counted."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
import weakref
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from genesis_logging import ClickHouseHandler, DeliveryWarning
from tests.support import strategies as hs
from tests.support.fakes import rss_mb, wait_until
from tests.support.server import LocalServer, Target, fresh_table

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def _quiet_delivery_warnings() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeliveryWarning)
        yield


def messages(target: Target, table: str) -> Counter[str]:
    rows = target.client().execute(f"SELECT message FROM genesis_test.{table}")
    return Counter(m for (m,) in rows)


def make_logger(handler: logging.Handler, name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def wait_for_delivery(
    target: Target, table: str, expected: int, timeout: float = 120
) -> Counter[str]:
    deadline = time.monotonic() + timeout
    while True:
        seen = messages(target, table)
        if len(seen) >= expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.2)


class TestServerFaults:
    """The server dies, stops, or never answers."""

    def test_kill_9_three_times_during_100000_records(
        self, local_server: LocalServer, tmp_path: Path
    ) -> None:
        target = fresh_table(local_server, "kill3")
        handler = ClickHouseHandler(
            url=target.url("genesis_test"),
            table="kill3",
            flush_interval=0.05,
            spool_dir=tmp_path / "spool",
            queue_full_policy="spool",
        )
        logger = make_logger(handler, "faults.kill3")
        total = 100_000

        def produce() -> None:
            for i in range(total):
                logger.info("k%d", i)
                if i % 200 == 0:
                    time.sleep(0.005)

        producer = threading.Thread(target=produce)
        producer.start()
        for _ in range(3):
            floor = handler.stats()["sent"]
            wait_until(lambda floor=floor: handler.stats()["sent"] > floor + 2000, timeout=60)
            local_server.kill()
            time.sleep(0.3)
            local_server.start()
        producer.join()
        assert handler.drain(60)
        seen = wait_for_delivery(target, "kill3", total)
        handler.close()
        stats = handler.stats()
        assert stats["dropped"] == {}, stats
        assert set(seen) == {f"k{i}" for i in range(total)}  # 0 lost
        # Debian's 18.16 cannot deduplicate: at-least-once, a batch per fault at most.
        assert sum(seen.values()) - total <= 3 * handler.config.batch_size

    def test_server_stopped_for_30_seconds(
        self, local_server: LocalServer, tmp_path: Path
    ) -> None:
        target = fresh_table(local_server, "outage")
        queue_size = 20_000
        handler = ClickHouseHandler(
            url=target.url("genesis_test"),
            table="outage",
            flush_interval=0.05,
            queue_size=queue_size,
            queue_full_policy="spool",
            spool_dir=tmp_path / "spool",
            connect_timeout=1,
        )
        logger = make_logger(handler, "faults.outage")
        logger.info("warm-up")
        assert handler.drain(30)
        baseline = rss_mb()
        local_server.stop()
        depths, peak = [], baseline
        sent = 1
        started = time.monotonic()
        while time.monotonic() - started < 30:  # continuously, in bursts of 100 every 50 ms
            for _ in range(100):
                logger.info("o%d", sent)
                sent += 1
            depths.append(handler.stats()["queue_depth"])
            peak = max(peak, rss_mb())
            time.sleep(0.05)
        local_server.start()
        assert max(depths) <= queue_size
        assert peak - baseline < 200, f"RSS grew {peak - baseline:.0f} MB"
        assert handler.drain(120)
        seen = wait_for_delivery(target, "outage", sent, timeout=300)
        handler.close()
        stats = handler.stats()
        assert stats["dropped"] == {}, stats
        assert stats["spool"]["evicted_rows"] == 0, stats
        missing = {f"o{i}" for i in range(1, sent)} - set(seen)
        assert not missing, (
            f"{len(missing)} of {sent} not delivered; {stats}; spool: {os.listdir(tmp_path / 'spool')[:5]}"
        )

    def test_a_server_that_never_answers(self, tmp_path: Path) -> None:
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        accepted: list[socket.socket] = []
        stop = threading.Event()

        def accept() -> None:
            listener.settimeout(0.1)
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                    accepted.append(connection)  # hold it open, say nothing
                except OSError:
                    continue

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()
        try:
            handler = ClickHouseHandler(
                host="127.0.0.1",
                port=listener.getsockname()[1],
                connect_timeout=0.5,
                send_receive_timeout=0.5,
                retry_attempts=3,
                shutdown_timeout=1.0,
                spool_dir=tmp_path / "spool",
            )
            logger = make_logger(handler, "faults.silent")
            for i in range(100):
                logger.info("s%d", i)
            started = time.monotonic()
            logging.shutdown([weakref.ref(handler)])
            assert time.monotonic() - started < 1.0 + 1.0
            wait_until(lambda: handler.stats()["pending"] == 0)
            stats = handler.stats()
            assert stats["spooled"] == 100, stats
            assert stats["retries"] >= 1
            assert accepted, "the handler did reach the silent server"
        finally:
            stop.set()
            thread.join()
            for connection in accepted:
                connection.close()
            listener.close()


class TestApplicationFaults:
    """The application dies, forks, or logs garbage."""

    def test_kill_9_of_the_application_with_a_full_spool(
        self, local_server: LocalServer, tmp_path: Path
    ) -> None:
        target = fresh_table(local_server, "appkill")
        spool_dir = tmp_path / "spool"
        local_server.stop()
        script = tmp_path / "app.py"
        script.write_text(
            "import logging, sys, time, warnings\n"
            "warnings.simplefilter('ignore')\n"
            "from genesis_logging import ClickHouseHandler\n"
            f"h = ClickHouseHandler(url={target.url('genesis_test')!r}, table='appkill',\n"
            f"    spool_dir={str(spool_dir)!r}, retry_attempts=1, flush_interval=0.05, batch_size=100)\n"
            "log = logging.getLogger('app'); log.addHandler(h); log.setLevel(logging.INFO)\n"
            "for i in range(2000):\n"
            "    log.info('a%d', i)\n"
            "while h.stats()['spooled'] < 2000:\n"
            "    time.sleep(0.05)\n"
            "print('SPOOLED', flush=True)\n"
            "time.sleep(600)\n"
        )
        app = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        try:
            assert app.stdout is not None
            assert app.stdout.readline().strip() == "SPOOLED"
        finally:
            app.send_signal(signal.SIGKILL)
            app.wait(30)
        local_server.start()
        successor = ClickHouseHandler(
            url=target.url("genesis_test"),
            table="appkill",
            spool_dir=spool_dir,
            flush_interval=0.05,
        )
        make_logger(successor, "faults.successor").info("successor started")
        seen = wait_for_delivery(target, "appkill", 2001, timeout=60)
        successor.close()
        assert seen == Counter({"successor started": 1, **{f"a{i}": 1 for i in range(2000)}})
        assert successor.stats()["spool"]["replayed_rows"] == 2000

    def test_fork_parent_and_child_both_deliver_once(self, local_server: LocalServer) -> None:
        target = fresh_table(local_server, "forked")
        handler = ClickHouseHandler(
            url=target.url("genesis_test"), table="forked", flush_interval=0.05
        )
        logger = make_logger(handler, "faults.fork")
        for i in range(500):
            logger.info("parent-before %d", i)  # some still queued at the fork

        def child() -> None:
            for i in range(500):
                logger.info("child %d", i)
            handler.close()

        process = multiprocessing.get_context("fork").Process(target=child)
        process.start()
        for i in range(500):
            logger.info("parent-after %d", i)
        process.join(60)
        assert process.exitcode == 0
        handler.close()
        seen = messages(target, "forked")
        expected = (
            [f"parent-before {i}" for i in range(500)]
            + [f"child {i}" for i in range(500)]
            + [f"parent-after {i}" for i in range(500)]
        )
        assert seen == Counter(expected)


class TestHostileInputEndToEnd:
    """Any input: no exception in the caller, the worker survives, all delivered or counted."""

    def test_hypothesis_through_the_real_handler(self, local_server: LocalServer) -> None:
        target = fresh_table(local_server, "hostile")
        handler = ClickHouseHandler(
            url=target.url("genesis_test"),
            table="hostile",
            flush_interval=0.05,
            max_field_chars=1_000_000,
        )
        logger = make_logger(handler, "faults.hostile")
        logged = Counter[str]()

        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
        @given(msg=hs.messages, extra=hs.extras, huge=hs.st.booleans())
        def log_one(msg: Any, extra: dict[str, Any], huge: bool) -> None:
            msg, extra = hs.build(msg), hs.build(extra)
            if huge:
                extra = {**extra, "stdout": "x" * 50_000_000}
            logger.error(msg, extra=extra)  # must not raise
            logged["n"] += 1

        log_one()
        assert handler.drain(120)
        handler.close()
        stats = handler.stats()
        assert stats["emitted"] == logged["n"]
        assert stats["worker_restarts"] == 0
        stored = int(target.client().execute("SELECT count() FROM genesis_test.hostile")[0][0])
        assert stored + sum(stats["dropped"].values()) == logged["n"]
        assert stats["dropped"].get("bad_row", 0) == 0  # everything was coerced, not refused
        lengths = target.client().execute("SELECT max(length(stdout)) FROM genesis_test.hostile")
        assert lengths[0][0] <= 1_000_000 * 4  # truncated (bytes of at most 4 per character)
        json.dumps(stats)  # the counters themselves are plain data
