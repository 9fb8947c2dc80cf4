"""Records queued at exit are delivered (or spooled), whoever forgot to close the handler.

``logging.shutdown()`` closes the handlers logging still knows; these are the ways a real
application loses track of its handler before exit (issue 20, finding 10).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import warnings
from pathlib import Path

import pytest

from genesis_logging import ClickHouseHandler, DeliveryWarning
from genesis_logging.spool import Spool
from tests.support.fakes import FakeInserter
from tests.support.scripts import NOWHERE, Table, children_script, run_script, stored
from tests.support.server import LocalServer

DETACHED = """
    import gc
    warnings.simplefilter("ignore")
    from genesis_logging import ClickHouseHandler, DeliveryWarning
    handler = ClickHouseHandler(url={url!r}, table={table!r}, spool_dir={spool!r},
                                flush_interval=60, batch_size=10_000, retry_attempts=1,
                                shutdown_timeout=10)
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    for i in range({records}):
        logging.getLogger("app").info("r%d", i)
    {detach}
    gc.collect()
"""

WAYS_TO_DETACH = {
    # a framework resets the root logger's handlers and the app keeps no reference
    "handlers list replaced": "logging.getLogger().handlers = []; del handler",
    # removed without close(): the handler object itself is gone
    "removed without close": "logging.getLogger().removeHandler(handler); del handler",
}


class TestDetachedHandler:
    """A handler detached without ``close()`` still delivers its queue at a normal exit."""

    @pytest.mark.parametrize("detach", list(WAYS_TO_DETACH.values()), ids=list(WAYS_TO_DETACH))
    def test_the_queue_is_delivered(self, logs_table: Table, tmp_path: Path, detach: str) -> None:
        target, database, table = logs_table
        body = DETACHED.format(
            url=target.url(database), table=table, spool=None, records=500, detach=detach
        )
        done = run_script(tmp_path, body)
        assert done.returncode == 0, done.stderr
        assert stored(target, database, table) == 500

    def test_with_the_server_down_the_queue_is_spooled(
        self, local_server: LocalServer, tmp_path: Path
    ) -> None:
        spool_dir = tmp_path / "spool"
        body = DETACHED.format(
            url=NOWHERE,
            table="logs",
            spool=str(spool_dir),
            records=500,
            detach=WAYS_TO_DETACH["handlers list replaced"],
        )
        done = run_script(tmp_path, body)
        assert done.returncode == 0, done.stderr
        assert Spool(spool_dir).status().rows == 500


class TestCloseBeyondTheSpoolCap:
    """Issue 20.5: ``close()`` with more queued than ``spool_max_bytes`` wrote the whole queue
    as one file, which the spool refused: everything was dropped although much would fit."""

    def test_the_newest_records_that_fit_are_spooled(self, tmp_path: Path) -> None:
        fake = FakeInserter()
        fake.always = OSError("server down")
        spool_dir = tmp_path / "spool"
        handler = ClickHouseHandler(
            inserter=fake,
            spool_dir=str(spool_dir),
            spool_max_bytes=256 * 1024,
            batch_size=10_000,  # never cut before close: the whole queue is left over
            queue_size=10_000,
            flush_interval=3600,
            retry_attempts=1,
            shutdown_timeout=2,
        )
        logger = logging.getLogger("beyond-the-cap")
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        for i in range(6_000):
            logger.info("record %05d %s", i, "x" * 60)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DeliveryWarning)
            handler.close()
        assert any("oldest spooled records evicted" in str(w.message) for w in caught)
        stats = handler.stats()
        status = Spool(spool_dir).status()
        assert "spool_failed" not in stats["dropped"], stats
        assert status.rows > 1_000  # roughly 2 000 of these records fit in 256 KiB
        assert status.bytes <= 256 * 1024
        assert stats["spooled"] == 6_000
        assert stats["spool"]["evicted_rows"] == 6_000 - status.rows
        spooled = "".join(path.read_text() for path in spool_dir.glob("*.jsonl"))
        assert "record 05999" in spooled  # eviction keeps the newest
        assert "record 00000" not in spooled


class TestPoolUsedWithWith:
    """Issue 20.11: ``with Pool() as pool:`` ends with ``terminate()``: SIGTERM to workers
    whose queues still hold records (the most common way to use a pool). A pool ended by
    ``close()`` and ``join()``, whose workers leave by ``os._exit``, is in
    ``test_multiprocessing.py``."""

    @pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
    def test_the_workers_records_are_delivered(
        self, logs_table: Table, tmp_path: Path, method: str
    ) -> None:
        target, database, table = logs_table
        main = f"""
            with multiprocessing.get_context({method!r}).Pool(2) as pool:
                assert sorted(pool.map(child, range(4))) == [0, 1, 2, 3]
        """
        done = run_script(tmp_path, children_script(target.url(database), table, main))
        assert done.returncode == 0, done.stderr
        assert stored(target, database, table) == 4000


class _TricklingProxy:
    """A TCP proxy to a real server that passes the server's bytes on at ``rate`` bytes a
    second: every read succeeds within any socket timeout, the answer takes minutes."""

    def __init__(self, upstream: tuple[str, int], rate: float) -> None:
        self.upstream = upstream
        self.delay = 1.0 / rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.sockets: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                continue
            server = socket.create_connection(self.upstream)
            self.sockets += [client, server]
            threading.Thread(target=self._pipe, args=(client, server, 0.0), daemon=True).start()
            threading.Thread(
                target=self._pipe, args=(server, client, self.delay), daemon=True
            ).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, delay: float) -> None:
        try:
            while not self.stop.is_set() and (data := source.recv(1 if delay else 65536)):
                sink.sendall(data)
                if delay:
                    time.sleep(delay)
        except OSError:
            pass

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        for sock in [*self.sockets, self.listener]:
            sock.close()


class TestTricklingServer:
    """Issue 20: a server answering 10 bytes a second held delivery for as long as it
    liked — every read succeeded within the socket timeout; no retry, no error."""

    def test_an_insert_attempt_is_bounded_then_retried_then_spooled(
        self, running_local_server: LocalServer, tmp_path: Path
    ) -> None:
        warnings.simplefilter("ignore", DeliveryWarning)  # restored by pytest after the test
        proxy = _TricklingProxy((running_local_server.host, running_local_server.port), 10.0)
        try:
            handler = ClickHouseHandler(
                url=f"clickhouse://default@127.0.0.1:{proxy.port}/genesis_test",
                table="trickle",
                connect_timeout=1.0,
                send_receive_timeout=1.0,
                retry_attempts=2,
                retry_max_delay=10.0,
                spool_dir=str(tmp_path / "spool"),
            )
            logger = logging.getLogger("trickle")
            logger.propagate = False
            logger.setLevel(logging.INFO)
            logger.addHandler(handler)
            for i in range(10):
                logger.info("t%d", i)
            assert handler.drain(30)
            stats = handler.stats()
            assert stats["spooled"] == 10, stats
            assert stats["retries"] == 1, str(stats)
            assert "budget" in (stats["last_error"] or ""), stats["last_error"]
            handler.close()
        finally:
            proxy.close()
