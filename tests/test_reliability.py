"""Issue 12's findings, each reproduced as users meet it: subprocesses, the real server.

Every test here failed on the pipeline before the fix (see docs/reliability.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from genesis_logging import ClickHouseHandler, ConfigurationError
from genesis_logging.spool import Spool

from .clickhouse_server import LocalServer, Target
from .fakes import OUTSIDE_CHECKOUT, FakeInserter, clean_env, wait_until

Table = tuple[Target, str, str]

#: A Python prelude for scripts: warnings off unless the test turns them on.
PRELUDE = "import json, logging, os, sys, time, warnings\n"


def run_script(
    tmp_path: Path, body: str, *, args: tuple[str, ...] = (), timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"app_{time.monotonic_ns()}.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, *args, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=OUTSIDE_CHECKOUT,
        env=clean_env(),
    )


def stored(target: Target, database: str, table: str) -> int:
    ((count,),) = target.client().execute(f"SELECT count() FROM {database}.{table}")
    return int(count)


def last_json(output: str) -> dict[str, Any]:
    return json.loads(output.strip().splitlines()[-1])


class TestSignals:
    """Finding 1: a signal handler that logs while the main thread is inside a logging call."""

    def test_a_logging_signal_handler_never_hangs(self, tmp_path: Path) -> None:
        body = """
            import signal
            from genesis_logging import ClickHouseHandler
            class Null:
                def insert(self, rows, token=None): pass
                def close(self): pass
            handler = ClickHouseHandler(inserter=Null(), queue_size=500, queue_full_policy="block",
                                        block_timeout=0.01, batch_size=100, flush_interval=0.01)
            log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)
            signal.signal(signal.SIGALRM, lambda *a: log.warning("signal received"))
            signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
            for i in range(30000):
                log.info("busy %d", i, extra={"i": i})
            signal.setitimer(signal.ITIMER_REAL, 0)
            handler.close()
            print(json.dumps(handler.stats()))
        """
        for _ in range(3):
            done = run_script(tmp_path, body, timeout=90)
            assert done.returncode == 0, done.stderr
            stats = last_json(done.stdout)
            assert stats["pending"] == 0
            assert stats["emitted"] == stats["sent"] + sum(stats["dropped"].values())
            assert stats["sent"] >= 30000 - stats["dropped"].get("queue_full", 0)


class TestReconfiguration:
    """Finding 2: ``dictConfig`` run twice closes the old handler under logging's lock."""

    @staticmethod
    def script(url: str, table: str, spool_dir: Path | None, records: int) -> str:
        return f"""
            import logging.config
            warnings.simplefilter("ignore")
            handler = {{"class": "genesis_logging.ClickHouseHandler", "url": {url!r},
                        "table": {table!r}, "spool_dir": {str(spool_dir) if spool_dir else None!r},
                        "retry_attempts": 2, "retry_max_delay": 1.0, "shutdown_timeout": 10}}
            logging.config.dictConfig({{"version": 1, "handlers": {{"ch": handler}},
                                        "root": {{"level": "INFO", "handlers": ["ch"]}}}})
            log = logging.getLogger("app")
            for i in range({records}):
                log.info("r%d", i)
            logging.config.dictConfig({{"version": 1, "handlers": {{}}, "root": {{"level": "INFO"}}}})
            log.info("after reconfiguration")
        """

    def test_the_old_handlers_records_are_delivered(
        self, logs_table: Table, tmp_path: Path
    ) -> None:
        target, database, table = logs_table
        done = run_script(tmp_path, self.script(target.url(database), table, None, 50_000))
        assert done.returncode == 0, done.stderr
        assert stored(target, database, table) == 50_000

    def test_with_the_server_down_they_are_spooled(
        self, local_server: LocalServer, tmp_path: Path
    ) -> None:
        url = "clickhouse://default@127.0.0.1:1/genesis"  # nobody listens on port 1
        spool_dir = tmp_path / "spool"
        done = run_script(tmp_path, self.script(url, "logs", spool_dir, 20_000))
        assert done.returncode == 0, done.stderr
        assert Spool(spool_dir).status().rows == 20_000


class TestMultiprocessing:
    """Finding 3: children of fork and forkserver end with os._exit (no logging.shutdown)."""

    @pytest.mark.parametrize("method", ["fork", "forkserver", "fork-pool"])
    def test_children_deliver_what_they_logged(
        self, logs_table: Table, tmp_path: Path, method: str
    ) -> None:
        target, database, table = logs_table
        body = f"""
            import multiprocessing
            warnings.simplefilter("ignore")
            from genesis_logging import ClickHouseHandler
            handler = ClickHouseHandler(url={target.url(database)!r}, table={table!r},
                                        flush_interval=30, batch_size=100_000)
            log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)

            def child(n):
                for i in range(1000):
                    log.info("child %d record %d", n, i)
                return n

            if __name__ == "__main__":
                method = {method!r}
                context = multiprocessing.get_context(method.removesuffix("-pool"))
                if method.endswith("-pool"):
                    pool = context.Pool(2)
                    pool.map(child, range(4))
                    pool.close(); pool.join()
                else:
                    children = [context.Process(target=child, args=(n,)) for n in range(4)]
                    for p in children: p.start()
                    for p in children: p.join()
                    assert all(p.exitcode == 0 for p in children)
        """
        done = run_script(tmp_path, body)
        assert done.returncode == 0, done.stderr
        assert stored(target, database, table) == 4000


class TestWarningsAsErrors:
    """Finding 8: ``python -W error`` must neither break configuration nor the worker."""

    def test_handler_builds_and_delivers_under_w_error(self, tmp_path: Path) -> None:
        body = """
            from genesis_logging import ClickHouseHandler
            class Flaky:
                calls = 0
                def insert(self, rows, token=None):
                    Flaky.calls += 1
                    if Flaky.calls <= 2:
                        raise ConnectionResetError("reset")  # retried, with a DeliveryWarning
                def close(self): pass
            handler = ClickHouseHandler(inserter=Flaky(), flush_interval=0.01)
            log = logging.getLogger("app"); log.addHandler(handler); log.setLevel(logging.INFO)
            for i in range(10):
                log.info("r%d", i)
            assert handler.drain(10)
            handler.close()
            print(json.dumps(handler.stats()))
        """
        done = run_script(tmp_path, body, args=("-W", "error"))
        assert done.returncode == 0, done.stderr
        stats = last_json(done.stdout)
        assert (stats["sent"], stats["dropped"], stats["retries"]) == (10, {}, 2)


class TestConfiguration:
    """Finding 9: NaN and infinity are refused at configuration time, with the option named."""

    @pytest.mark.parametrize(
        "option",
        [
            "flush_interval",
            "block_timeout",
            "retry_max_delay",
            "shutdown_timeout",
            "connect_timeout",
            "send_receive_timeout",
        ],
    )
    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, "nan", "inf"])
    def test_not_a_finite_number(self, option: str, value: object) -> None:
        if isinstance(value, str) and option not in ("connect_timeout", "send_receive_timeout"):
            value = float(value)
        with pytest.raises(ConfigurationError, match=option):
            ClickHouseHandler(inserter=FakeInserter(), **{option: value})

    @pytest.mark.parametrize(
        "url",
        [
            "clickhouse://writer:s3cr?et@db.example:9000/genesis",
            "clickhouse://writer:s3cr#et@db.example:9000/genesis",
            "clickhouse://writer:s3cr/et@db.example:9000/genesis",
            "clickhouse://writer:s3cr%et@db.example:99999/genesis",
            # a fragment is never part of a ClickHouse URL: a "#" cut something off
            "clickhouse://writer:s3cret@db.example:9000/genesis#et",
            "clickhouse://writer:s3cret@db.example:9000/genesis?secure=1#et@x",
        ],
    )
    def test_a_malformed_url_never_echoes_the_password(self, url: str) -> None:
        with pytest.raises(ConfigurationError) as raised:
            ClickHouseHandler(url=url, inserter=FakeInserter())
        assert "s3cr" not in str(raised.value)
        assert "et@" not in str(raised.value)
        assert "percent-encoded" in str(raised.value)

    def test_a_url_in_the_host_variable_is_refused_without_the_password(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("CLICKHOUSE_HOST", "clickhouse://writer:p%40ss@db.example:9000/x")
        with pytest.raises(ConfigurationError, match="CLICKHOUSE_URL") as raised:
            ClickHouseHandler(inserter=FakeInserter())
        assert "p%40ss" not in str(raised.value)
        assert "p@ss" not in str(raised.value)


class TestHostileTimestamps:
    """Finding 10: ``record.created`` in nanoseconds, NaN or infinite: coerced and counted."""

    @pytest.mark.parametrize("created", [1.795e18, math.nan, math.inf, -1e12])  # 1.795e18: ns
    def test_the_record_and_its_batch_survive(self, created: float, tmp_path: Path) -> None:
        fake = FakeInserter()
        fake.always = ConnectionRefusedError("down")
        handler = ClickHouseHandler(
            inserter=fake, spool_dir=tmp_path, retry_attempts=1, flush_interval=60
        )
        logger = logging_to(handler)
        logger.info("before")
        record = logger.makeRecord("hostile", 20, __file__, 1, "hostile", None, None)
        record.created = created
        logger.handle(record)
        logger.info("after")
        handler.close()
        stats = handler.stats()
        assert stats["emitted"] == 3
        assert stats["spooled"] == 3, stats
        assert stats["coerced"] >= 1
        rows, unreadable = read_spool(tmp_path)
        assert unreadable == 0
        (hostile,) = [row for row in rows if row["message"] == "hostile"]
        assert hostile["attributes"]["created.original"] == repr(created)


class TestUncapturableRecord:
    """A record that cannot even be captured (a mapping that raises) is counted, never lost
    silently, and costs no other record."""

    def test_counted_as_capture_failed(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from collections.abc import Iterator, Mapping

        class Hostile(Mapping[str, object]):
            def __getitem__(self, key: str) -> object:
                raise RuntimeError("no")

            def __iter__(self) -> Iterator[str]:
                raise RuntimeError("no")

            def __len__(self) -> int:
                return 1

        fake = FakeInserter()
        handler = ClickHouseHandler(inserter=fake, flush_interval=60)
        errors: list[object] = []
        monkeypatch.setattr(handler, "handleError", errors.append)
        logger = logging_to(handler)
        logger.info("before")
        logger.info(Hostile())  # pino style: the mapping is the message
        logger.info("after")
        assert handler.drain(10)
        stats = handler.stats()
        handler.close()
        assert len(errors) == 1
        assert stats["dropped"] == {"capture_failed": 1}
        assert stats["emitted"] == 3
        assert stats["sent"] == 2
        assert [row["message"] for batch in fake.batches for row in batch] == ["before", "after"]


def logging_to(handler: Any) -> Any:
    import logging

    logger = logging.getLogger(f"reliability.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger


def read_spool(directory: Path) -> tuple[list[dict[str, Any]], int]:
    spool = Spool(directory)
    rows: list[dict[str, Any]] = []
    unreadable = 0
    while (entry := spool.claim()) is not None:
        read, bad = spool.read(entry)
        rows += read
        unreadable += bad
    return rows, unreadable


class TestExitIsBounded:
    """Finding 7: records first logged at interpreter exit (no thread can start on 3.12+)
    are delivered inline, within ``shutdown_timeout``, or spooled."""

    @pytest.mark.parametrize("server", ["refusing", "black-holed"])
    def test_exit_within_the_timeout(self, tmp_path: Path, server: str) -> None:
        import socket

        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        if server == "black-holed":
            listener.listen(16)  # the kernel accepts connections; nobody ever answers
        else:
            listener.close()  # nobody listens: refused at once
        spool_dir = tmp_path / "spool"
        body = f"""
            import atexit
            warnings.simplefilter("ignore")
            from genesis_logging import ClickHouseHandler
            handler = ClickHouseHandler(url="clickhouse://default@127.0.0.1:{port}/genesis",
                                        spool_dir={str(spool_dir)!r}, shutdown_timeout=1,
                                        connect_timeout=10, send_receive_timeout=30)
            log = logging.getLogger("exit"); log.addHandler(handler); log.setLevel(logging.INFO)
            atexit.register(lambda: [log.info("at exit %d", i) for i in range(3)])
        """
        try:
            started = time.monotonic()
            done = run_script(tmp_path, body)
            took = time.monotonic() - started
        finally:
            listener.close()
        assert done.returncode == 0, done.stderr
        assert took < 1 + 4  # shutdown_timeout, plus the interpreter's own start and exit
        assert Spool(spool_dir).status().rows == 3


def spool_rows(n: int, prefix: str = "s") -> list[dict[str, Any]]:
    return [
        {"timestamp": 1_764_078_555_000 + i, "level": "info", "message": f"{prefix}{i}"}
        for i in range(n)
    ]


class TestReplay:
    """Findings 4 and 5: replay commits chunk by chunk and isolates refused rows."""

    def test_a_fault_mid_file_duplicates_nothing(self, tmp_path: Path) -> None:
        from genesis_logging._policies import ReplayBackoff
        from genesis_logging._replay import SpoolReplayer

        spool = Spool(tmp_path, destination=("genesis", "logs"))
        spool.write(spool_rows(7000), "a" * 32)  # one big file, as close() leaves it
        fake = FakeInserter()
        calls = 0

        def flaky(rows: Any) -> None:
            nonlocal calls
            calls += 1
            if calls == 4:
                raise ConnectionResetError("the server went away during chunk 4")

        fake.on_insert = flaky
        replayer = SpoolReplayer(
            spool, fake.insert, batch_size=1000, backoff=ReplayBackoff(transient=0.0)
        )
        first = replayer.replay_one()
        assert first is not None
        assert (first.rows, first.error is not None) == (3000, True)
        second = replayer.replay_one()
        assert second is not None
        assert (second.rows, second.error) == (4000, None)
        assert sorted(fake.messages) == sorted(f"s{i}" for i in range(7000))  # each once
        assert len(fake.tokens) == len(set(fake.tokens)) + 1  # chunk 4's token, tried twice
        assert fake.tokens[3] == fake.tokens[4] == "a" * 32 + "-3000"

    def test_one_refused_row_costs_that_row_only(self, tmp_path: Path) -> None:
        from clickhouse_driver import errors

        from genesis_logging._policies import ReplayBackoff
        from genesis_logging._replay import SpoolReplayer

        spool = Spool(tmp_path, destination=("genesis", "logs"))
        spool.write(spool_rows(100), "b" * 32)
        fake = FakeInserter()

        def refuse(rows: Any) -> None:
            if any(row["message"] == "s42" for row in rows):
                raise errors.ServerException("Cannot parse input", code=27)

        fake.on_insert = refuse
        replayer = SpoolReplayer(spool, fake.insert, batch_size=1000, backoff=ReplayBackoff())
        report = replayer.replay_one()
        assert report is not None
        assert (report.rows, report.refused, report.error) == (99, 1, None)
        status = spool.status()
        assert (status.files, status.dead_rows) == (0, 1)

    def test_the_cli_skips_a_failing_file_and_goes_on(
        self, logs_table: Table, tmp_path: Path
    ) -> None:
        target, database, table = logs_table
        spool_dir = tmp_path / "spool"
        spool = Spool(spool_dir, destination=(database, table))
        spool.write(spool_rows(10, "bad"), "c" * 32)
        with open(next(spool_dir.glob("*.jsonl")), "a") as handle:  # a row no table takes
            handle.write(
                '{"timestamp":"2026-01-01T00:00:00.000Z","level":"info","message":"x","iteration":"not a number"}\n'
            )
        for n in range(3):
            spool.write(spool_rows(100, f"good{n}-"), f"{n:032x}")
        done = subprocess.run(
            [sys.executable, "-m", "genesis_logging", "spool", "replay", "--spool-dir",
             str(spool_dir), "--table", table, "--url", target.url(database)],
            capture_output=True, text=True, timeout=120, cwd=OUTSIDE_CHECKOUT, env=clean_env(),
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        assert "1 records refused by the server: set aside in dead/" in done.stdout
        assert "done: 310 records delivered" in done.stdout
        messages = [
            m for (m,) in target.client().execute(f"SELECT message FROM {database}.{table}")
        ]
        expected = [f"good{n}-{i}" for n in range(3) for i in range(100)]
        assert sorted(messages) == sorted(expected + [f"bad{i}" for i in range(10)])
        assert Spool(spool_dir).status().dead_rows == 1

    def test_a_failing_file_is_skipped_to_reach_the_ones_behind(self, tmp_path: Path) -> None:
        from genesis_logging._policies import IMMEDIATE
        from genesis_logging._replay import SpoolReplayer

        spool = Spool(tmp_path)
        spool.write(spool_rows(5, "first"), "f" * 32)
        spool.write(spool_rows(5, "second"), "1" * 32)
        fake = FakeInserter()
        fake.errors = [ConnectionRefusedError("down")]
        replayer = SpoolReplayer(spool, fake.insert, batch_size=100, backoff=IMMEDIATE)
        failed = replayer.replay_one()
        assert failed is not None
        assert failed.error is not None
        assert failed.file.batch_id == "f" * 32
        behind = replayer.replay_one(skip=frozenset({"f" * 32}))
        assert behind is not None
        assert (behind.file.batch_id, behind.rows, behind.error) == ("1" * 32, 5, None)


class TestSharedSpool:
    """Finding 6: handlers of two tables sharing one spool directory."""

    def test_each_table_gets_its_own_rows(self, local_server: LocalServer, tmp_path: Path) -> None:
        from .test_faults import fresh_table

        target = fresh_table(local_server, "shared_a")
        target.create_logs_table("genesis_test", "shared_b")
        spool_dir = tmp_path / "spool"
        local_server.stop()
        handlers = {
            name: ClickHouseHandler(
                url=target.url("genesis_test"), table=name, spool_dir=spool_dir,
                retry_attempts=1, flush_interval=0.05, shutdown_timeout=2,
            )
            for name in ("shared_a", "shared_b")
        }  # fmt: skip
        for name, handler in handlers.items():
            logger = logging_to(handler)
            for i in range(500):
                logger.info(f"{name} {i}")
        for handler in handlers.values():
            handler.close()
        assert Spool(spool_dir).status().rows == 1000
        local_server.start()
        successors = [
            ClickHouseHandler(url=target.url("genesis_test"), table=name, spool_dir=spool_dir)
            for name in handlers
        ]
        for successor in successors:  # the worker starts with the first record
            logging_to(successor).info("successor")
        wait_until(lambda: Spool(spool_dir).status().rows == 0, timeout=60)
        for successor in successors:
            successor.close()
        for name in handlers:
            rows = target.client().execute(f"SELECT message FROM genesis_test.{name}")
            expected = [f"{name} {i}" for i in range(500)] + ["successor"]
            assert sorted(m for (m,) in rows) == sorted(expected)


class TestSpoolWeaknesses:
    """A deleted spool directory, a clock stepped back, a spool of many files."""

    def test_a_deleted_directory_is_made_again(self, tmp_path: Path) -> None:
        import shutil

        spool = Spool(tmp_path / "spool")
        shutil.rmtree(tmp_path / "spool")
        spool.write(spool_rows(3), "d" * 32)
        assert Spool(tmp_path / "spool").status().rows == 3

    def test_a_clock_stepped_back_does_not_hold_files_back(self, tmp_path: Path) -> None:
        import os

        spool = Spool(tmp_path)
        spool.write(spool_rows(3), "e" * 32)
        (path,) = tmp_path.glob("*.jsonl")
        a_year_ahead = time.time() + 365 * 86400  # written before the clock went back a year
        os.utime(path, (a_year_ahead, a_year_ahead))
        assert spool.claim() is not None

    def test_writing_does_not_list_the_directory_every_time(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        import os

        spool = Spool(tmp_path)
        for n in range(50):
            spool.write(spool_rows(1), f"{n:032x}")
        listings = []
        real_listdir = os.listdir
        monkeypatch.setattr(os, "listdir", lambda p: listings.append(p) or real_listdir(p))
        for n in range(50, 100):
            spool.write(spool_rows(1), f"{n:032x}")
        assert listings == []


class TestInvariant:
    """Finding 11: ``emitted = sent + spooled + dropped + pending`` while callers wait."""

    def test_stats_balance_while_callers_block(self) -> None:
        import threading

        fake = FakeInserter()
        fake.on_insert = lambda rows: time.sleep(0.002)
        handler = ClickHouseHandler(
            inserter=fake, queue_size=20, batch_size=10, flush_interval=0.001,
            queue_full_policy="block", block_timeout=0.05,
        )  # fmt: skip
        logger = logging_to(handler)
        stop = threading.Event()

        def produce() -> None:
            while not stop.is_set():
                logger.info("r")

        producers = [threading.Thread(target=produce) for _ in range(8)]
        for producer in producers:
            producer.start()
        unbalanced = []
        try:
            for _ in range(300):
                stats = handler.stats()
                accounted = stats["sent"] + stats["spooled"] + sum(stats["dropped"].values())
                if stats["emitted"] != accounted + stats["pending"]:
                    unbalanced.append(stats)
        finally:
            stop.set()
            for producer in producers:
                producer.join()
            handler.close()
        assert unbalanced == []


class TestColumnPlan:
    """The table's columns change under a running handler (doctor's ALTERs)."""

    def test_a_dropped_column_costs_no_batch(self, logs_table: Table) -> None:
        target, database, table = logs_table
        handler = ClickHouseHandler(url=target.url(database), table=table, flush_interval=0.05)
        logger = logging_to(handler)
        logger.info("before", extra={"sprint_id": "S030"})
        assert handler.drain(30)
        target.client().execute(f"ALTER TABLE {database}.{table} DROP COLUMN sprint_id")
        logger.info("after", extra={"sprint_id": "S031"})
        assert handler.drain(30)
        handler.close()
        stats = handler.stats()
        assert (stats["sent"], stats["dropped"], stats["spooled"]) == (2, {}, 0)
        assert stored(target, database, table) == 2


class TestSigterm:
    """``SIGTERM`` ends a process like ``kill -9`` unless handled; the helper makes it clean."""

    @pytest.mark.parametrize("helper", [True, False], ids=["exit_on_sigterm", "default"])
    def test_sigterm(self, tmp_path: Path, helper: bool) -> None:
        import signal

        spool_dir = tmp_path / "spool"
        script = tmp_path / "service.py"
        script.write_text(
            PRELUDE
            + textwrap.dedent(f"""
            warnings.simplefilter("ignore")
            from genesis_logging import ClickHouseHandler, exit_on_sigterm
            if {helper!r}:
                assert exit_on_sigterm()
            handler = ClickHouseHandler(url="clickhouse://default@127.0.0.1:1/genesis",
                                        spool_dir={str(spool_dir)!r}, retry_attempts=1,
                                        flush_interval=60, shutdown_timeout=2)
            log = logging.getLogger("svc"); log.addHandler(handler); log.setLevel(logging.INFO)
            for i in range(100):
                log.info("r%d", i)
            print("READY", flush=True)
            time.sleep(60)
            """)
        )
        service = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=OUTSIDE_CHECKOUT
        )
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "READY"
        service.send_signal(signal.SIGTERM)
        code = service.wait(30)
        if helper:
            assert code == 143
            assert Spool(spool_dir).status().rows == 100
        else:  # documented: the default disposition loses what is queued
            assert code == -signal.SIGTERM
            assert Spool(spool_dir).status().rows == 0


class TestColumnPlanRefresh:
    """The columns are learned again (every 60 s, here at once); bisection learns nothing."""

    def test_a_column_added_meanwhile_is_filled(
        self, logs_table: Table, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from genesis_logging import transport

        target, database, table = logs_table
        target.client().execute(f"ALTER TABLE {database}.{table} DROP COLUMN task_id")
        handler = ClickHouseHandler(url=target.url(database), table=table, flush_interval=0.05)
        logger = logging_to(handler)
        logger.info("before", extra={"task_id": "T01"})
        assert handler.drain(30)
        target.client().execute(f"ALTER TABLE {database}.{table} ADD COLUMN task_id String")
        monkeypatch.setattr(transport, "_REDESCRIBE_AFTER", 0.0)  # instead of a 60 s wait
        logger.info("after", extra={"task_id": "T02"})
        assert handler.drain(30)
        handler.close()
        rows = target.client().execute(f"SELECT message, task_id FROM {database}.{table}")
        assert sorted(rows) == [("after", "T02"), ("before", "")]

    def test_isolating_a_refused_row_describes_the_table_once(
        self, local_server: LocalServer, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        from genesis_logging.transport import ClickHouseInserter

        from .clickhouse_server import legacy_table_sql
        from .test_faults import fresh_table

        target = fresh_table(local_server, "narrow")
        ddl = legacy_table_sql("genesis_test", "narrow").replace(
            "iteration UInt32", "iteration UInt8"
        )
        target.client().execute("DROP TABLE genesis_test.narrow")
        target.client().execute(ddl)
        described = []
        original = ClickHouseInserter._describe
        monkeypatch.setattr(
            ClickHouseInserter,
            "_describe",
            lambda self, c: described.append(1) or original(self, c),
        )
        handler = ClickHouseHandler(
            url=target.url("genesis_test"), table="narrow", batch_size=100, flush_interval=60
        )
        logger = logging_to(handler)
        for i in range(100):
            logger.info("r%d", i, extra={"iteration": 300 if i == 37 else 1})
        assert handler.drain(30)
        handler.close()
        stats = handler.stats()
        assert (stats["sent"], stats["dropped"]) == (99, {"bad_row": 1})
        assert len(described) == 1  # bisection reuses what it learned of the table
