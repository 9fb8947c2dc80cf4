"""Handlers of two tables sharing one spool directory."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from genesis_logging import ClickHouseHandler
from genesis_logging.spool import Spool
from tests.support.fakes import wait_until
from tests.support.scripts import (
    logging_to,
    spool_rows,
)
from tests.support.server import LocalServer


class TestSharedSpool:
    """Finding 6: handlers of two tables sharing one spool directory."""

    def test_each_table_gets_its_own_rows(self, local_server: LocalServer, tmp_path: Path) -> None:
        from tests.support.server import fresh_table

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
