"""Findings 4 and 5: replay commits chunk by chunk and isolates refused rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from genesis_logging.spool import Spool
from tests.support.fakes import OUTSIDE_CHECKOUT, FakeInserter, clean_env
from tests.support.scripts import (
    Table,
    spool_rows,
)


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
