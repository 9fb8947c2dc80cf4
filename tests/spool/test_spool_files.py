"""The spool directory on its own: atomic files, claims, backoff, cap, recovery."""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genesis_logging.spool import Spool
from tests.support.fakes import OUTSIDE_CHECKOUT, clean_env

#: Claims the spool's one file, says so, then waits to be killed.
HOLD_A_CLAIM = """
import sys, time
from genesis_logging.spool import Spool
assert Spool(sys.argv[1]).claim() is not None
print("claimed", flush=True)
time.sleep(600)
"""


def rows(n: int, prefix: str = "r") -> list[dict[str, object]]:
    return [
        {
            "timestamp": 1_764_078_555_123 + i,
            "level": "info",
            "message": f"{prefix}{i}",
            "service": "s",
            "logger": "l",
            "iteration": i,
            "attributes": {"k": "v"},
        }
        for i in range(n)
    ]


class TestWriteAndRead:
    """Files are JSONEachRow rows of the record schema and read back equal."""

    def test_round_trip(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(3), "a" * 32)
        (name,) = os.listdir(tmp_path)
        assert name.endswith(f"-{'a' * 32}-n3-f0.jsonl")
        lines = (tmp_path / name).read_text().splitlines()
        assert json.loads(lines[0])["timestamp"] == "2025-11-25T13:49:15.123Z"
        entry = spool.claim()
        assert entry is not None
        read, bad = spool.read(entry)
        assert (read, bad) == (rows(3), 0)
        spool.complete(entry)
        assert os.listdir(tmp_path) == []

    def test_files_are_private_to_their_user(self, tmp_path: Path) -> None:
        """Records carry stderr and tracebacks: nobody else may read them (issue 20)."""
        old = os.umask(0o022)
        try:
            spool = Spool(tmp_path / "spool")
            spool.write(rows(1), "a" * 32)
            entry = spool.claim()
            assert entry is not None
            spool.bury(entry)
        finally:
            os.umask(old)
        paths = [tmp_path / "spool", *(tmp_path / "spool").rglob("*")]
        assert len(paths) == 3  # the directory, dead/ and the file
        assert {oct(p.stat().st_mode & 0o077) for p in paths} == {"0o0"}

    def test_no_temporary_file_is_left_on_failure(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path, max_bytes=100)
        with pytest.raises(OSError, match="exceeds the spool cap"):
            spool.write(rows(50), "b" * 32)
        assert os.listdir(tmp_path) == []

    def test_unreadable_lines_are_counted(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(2), "c" * 32)
        (name,) = os.listdir(tmp_path)
        with open(tmp_path / name, "a") as handle:
            handle.write("{not json\n")
        entry = spool.claim()
        assert entry is not None
        read, bad = spool.read(entry)
        assert (len(read), bad) == (2, 1)


class TestClaims:
    """Oldest first, each file to one claimant, backoff honoured, dead claims recovered."""

    def test_oldest_first(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        for i in range(3):
            spool.write(rows(1, f"f{i}-"), f"{i:032x}")
        order = []
        while (entry := spool.claim()) is not None:
            order.append(entry.batch_id)
            spool.complete(entry)
        assert order == [f"{i:032x}" for i in range(3)]

    def test_a_claimed_file_is_invisible_to_others(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(1), "d" * 32)
        assert spool.claim() is not None
        assert Spool(tmp_path).claim() is None

    def test_released_file_waits_for_its_retry_time(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(1), "e" * 32)
        entry = spool.claim()
        assert entry is not None
        spool.release(entry, retry_in=60)
        assert spool.claim() is None  # not due yet: no hot loop
        (name,) = os.listdir(tmp_path)
        assert name.endswith("-f1.jsonl")  # one failure recorded
        os.utime(tmp_path / name, (time.time() - 1, time.time() - 1))
        assert spool.claim() is not None

    def test_claims_of_dead_processes_are_recovered(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(2), "f" * 32)
        (name,) = os.listdir(tmp_path)
        dead = multiprocessing.get_context("spawn").Process(target=time.sleep, args=(0,))
        dead.start()
        dead.join()
        os.rename(tmp_path / name, tmp_path / f"{name}.claimed-{dead.pid}")
        assert spool.recover_stale_claims() == 1
        assert spool.claim() is not None

    def test_a_claim_named_after_a_live_pid_is_recovered_when_nobody_holds_it(
        self, tmp_path: Path
    ) -> None:
        """Issue 20.8: in a container the application is PID 1, always alive; a claim
        left by a previous run of it was never taken back."""
        spool = Spool(tmp_path)
        spool.write(rows(2), "9" * 32)
        (name,) = os.listdir(tmp_path)
        os.rename(tmp_path / name, tmp_path / f"{name}.claimed-1")
        assert spool.recover_stale_claims() == 1
        assert spool.claim() is not None

    def test_a_live_claim_of_another_process_is_left_alone(self, tmp_path: Path) -> None:
        Spool(tmp_path).write(rows(2), "8" * 32)
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_A_CLAIM, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=OUTSIDE_CHECKOUT,
            env=clean_env(),
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline().strip() == "claimed"
            spool = Spool(tmp_path)
            assert spool.recover_stale_claims() == 0
            assert spool.claim() is None
        finally:
            holder.kill()
            holder.wait()
        assert spool.recover_stale_claims() == 1  # its holder is gone now
        assert spool.claim() is not None

    def test_this_process_does_not_take_back_its_own_live_claim(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(1), "7" * 32)
        entry = spool.claim()
        assert entry is not None
        assert Spool(tmp_path).recover_stale_claims() == 0
        spool.complete(entry)
        assert os.listdir(tmp_path) == []

    def test_a_rewritten_claim_stays_held(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(4), "6" * 32)
        entry = spool.claim()
        assert entry is not None
        rest = spool.rewrite(entry, rows(2), 2)
        assert Spool(tmp_path).recover_stale_claims() == 0
        spool.release(rest, retry_in=0)
        again = Spool(tmp_path).claim()
        assert again is not None
        assert again.offset == 2

    def test_bury_moves_to_dead_letters(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(4), "1" * 32)
        entry = spool.claim()
        assert entry is not None
        spool.bury(entry)
        status = spool.status()
        assert (status.files, status.dead_files, status.dead_rows) == (0, 1, 4)


class TestCap:
    """The spool never grows past its cap: the oldest files go, counted."""

    def test_processes_sharing_a_directory_share_one_cap(self, tmp_path: Path) -> None:
        """Issue 20: each process sized the cap from its own writes: N writers held up to
        N times the cap."""
        one, two = Spool(tmp_path, max_bytes=20_000), Spool(tmp_path, max_bytes=20_000)
        sizes = []
        for n in range(40):
            (one if n % 2 else two).write(rows(10, f"w{n}-"), f"{n:032x}")
            sizes.append(one.status().bytes)
        assert max(sizes) <= 20_000

    def test_oldest_evicted(self, tmp_path: Path) -> None:
        one = len(b"".join(json.dumps(r).encode() for r in rows(10)))
        spool = Spool(tmp_path, max_bytes=int(one * 2.5))
        evicted = [spool.write(rows(10, f"b{i}-"), f"{i:032x}") for i in range(4)]
        assert evicted == [0, 0, 10, 10]
        status = spool.status()
        assert status.files == 2
        assert status.bytes <= spool.max_bytes

    def test_status_and_purge(self, tmp_path: Path) -> None:
        spool = Spool(tmp_path)
        spool.write(rows(3), "2" * 32)
        spool.write(rows(4), "3" * 32)
        status = spool.status()
        assert (status.files, status.rows) == (2, 7)
        assert spool.purge() == 7
        assert spool.status().files == 0


def test_invalid_cap() -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        Spool("/tmp/never-created-genesis-spool", max_bytes=0)
