"""Stops a user might throw at the signal drain and the lock-free queue (issues 21, 24).

Each attack is a real process (a script run under a signal) or the queue itself driven by
a real timer signal; those that found a defect say what they found before the fix.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from genesis_logging._batch import Outcome
from genesis_logging._queue import BatchQueue
from genesis_logging.spool import Spool

from .fakes import OUTSIDE_CHECKOUT, clean_env

NOWHERE = "clickhouse://default@127.0.0.1:1/genesis"  # refused at once: records are spooled

PRELUDE = textwrap.dedent(f"""
    import logging, os, signal, sys, time, warnings
    warnings.simplefilter("ignore")
    from genesis_logging import ClickHouseHandler

    def make(spool, **options):
        options = {{"retry_attempts": 1, "flush_interval": 60, "shutdown_timeout": 5,
                    **options}}
        handler = ClickHouseHandler(url={NOWHERE!r}, spool_dir=spool, **options)
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
        return handler

    log = logging.getLogger("svc")
""")


def run(
    tmp_path: Path, body: str, *, prefix: tuple[str, ...] = (), timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / f"app_{time.monotonic_ns()}.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    return subprocess.run(
        [*prefix, sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=OUTSIDE_CHECKOUT,
        env=clean_env(),
    )


def spooled(path: Path) -> int:
    return Spool(path).status().rows


def _pid_namespace() -> tuple[str, ...]:
    """A command prefix that runs its command as PID 1 of a new PID namespace, or ``()``."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return ()
    prefix = (unshare, "--user", "--map-root-user", "--pid", "--fork", "--mount-proc")
    probe = subprocess.run(
        [*prefix, sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return prefix if probe.stdout.strip() == "1" else ()


class TestPidOne:
    """A container's init: the kernel ignores the signals it leaves at their default."""

    def test_an_ignored_sigterm_leaves_the_handlers_open_and_the_hook_in_place(
        self, tmp_path: Path
    ) -> None:
        """Before the fix the hook closed every handler, put SIG_DFL back and raised the
        signal, which the kernel ignored for PID 1: the process lived on with its handlers
        closed (the 5 later records dropped as ``closed``) and no hook for the next one."""
        prefix = _pid_namespace()
        if not prefix:
            pytest.skip("no user and PID namespaces here (unshare)")
        spool = tmp_path / "spool"
        done = run(
            tmp_path,
            f"""
            handler = make({str(spool)!r}, drain_on_signals=["SIGTERM"])
            assert os.getpid() == 1
            for i in range(10):
                log.info("r%d", i)
            os.kill(os.getpid(), signal.SIGTERM)  # docker stop, without --init
            print("after the first: spooled", handler.stats()["spooled"], flush=True)
            for i in range(5):
                log.info("after %d", i)
            os.kill(os.getpid(), signal.SIGTERM)
            stats = handler.stats()
            print("after the second: spooled", stats["spooled"],
                  "closed", stats["dropped"].get("closed", 0), flush=True)
            """,
            prefix=prefix,
        )
        assert done.returncode == 0, done.stderr  # ignored, as without the hook
        assert "after the first: spooled 10" in done.stdout, done.stdout + done.stderr
        assert "after the second: spooled 15 closed 0" in done.stdout, done.stdout
        assert spooled(spool) == 15


class TestSignalWhileLoggingIsLocked:
    """The signal lands while the main thread holds logging's lock (``dictConfig`` closing
    the old handler, ``getLogger``): the worker needs that lock for its first log call."""

    def test_a_reconfiguration_interrupted_by_sigterm_spools_the_old_queue(
        self, tmp_path: Path
    ) -> None:
        """Before the fix the hook waited for the old handler's closer, whose worker waited
        for the lock the interrupted ``dictConfig`` held: after its 6 s the process died
        by the signal with the closer still waiting — the 20 records lost (0 spooled)."""
        spool = tmp_path / "spool"
        done = run(
            tmp_path,
            f"""
            import logging.config
            make({str(spool)!r}, drain_on_signals=["SIGTERM"], shutdown_timeout=30)
            for i in range(20):
                log.info("r%d", i)

            class Console(logging.StreamHandler):
                def __init__(self):
                    super().__init__()
                    os.kill(os.getpid(), signal.SIGTERM)  # mid-dictConfig

            logging.config.dictConfig({{  # closes the ClickHouseHandler (a closer thread)
                "version": 1, "disable_existing_loggers": False,
                "handlers": {{"console": {{"()": Console}}}},
                "root": {{"handlers": ["console"]}},
            }})
            time.sleep(30)  # the signal comes back once dictConfig let go of the lock
            print("not reached")
            """,
            timeout=25,  # the old handler's 30 s would not fit
        )
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert "not reached" not in done.stdout
        assert spooled(spool) == 20

    def test_a_sigterm_while_the_console_writes_a_line_costs_no_timeout(
        self, tmp_path: Path
    ) -> None:
        """The console handler's lock is held by the interrupted thread; the driver warns
        through that handler when the server refuses. Before the fix the stop took the
        whole ``shutdown_timeout`` (31 s for 30; killed by the timeout below), after it
        0.7 s."""
        spool = tmp_path / "spool"
        done = run(
            tmp_path,
            f"""
            make({str(spool)!r}, drain_on_signals=["SIGTERM"], shutdown_timeout=30)

            class Console(logging.StreamHandler):
                def emit(self, record):
                    if record.getMessage() == "stop":
                        os.kill(os.getpid(), signal.SIGTERM)  # this handler's lock held
                    super().emit(record)

            logging.getLogger().addHandler(Console(sys.stdout))
            for i in range(20):
                log.info("r%d", i)
            log.info("stop")
            time.sleep(60)
            """,
            timeout=20,
        )
        assert done.returncode == -signal.SIGTERM, done.stderr
        assert spooled(spool) == 21


def _imbalance(queue: BatchQueue[Any]) -> int:
    ledger = queue.snapshot()
    counts = ledger["counts"]
    settled = counts.get("sent", 0) + counts.get("spooled", 0) + sum(ledger["dropped"].values())
    return int(counts.get("emitted", 0) - settled - ledger["pending"])


class TestLedgerReadFromASignalHandler:
    """``stats()`` from a signal handler runs in the thread that may be halfway through
    changing the ledger, holding the (reentrant) lock: it must still balance."""

    @pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest", "block", "spool"])
    def test_every_read_balances(self, policy: str) -> None:
        """Before the fix about a third of the reads were off, by a row (a drop) or by a
        batch (a cut, a settlement): 5194 of 14290 reads under ``drop_newest``."""
        current: list[BatchQueue[Any]] = []
        off: Counter[str] = Counter()
        reads = 0

        def read(signum: int, frame: FrameType | None) -> None:
            nonlocal reads
            if current:
                reads += 1
                if _imbalance(current[0]):
                    off[frame.f_code.co_name if frame else "?"] += 1

        before = signal.signal(signal.SIGALRM, read)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        try:
            end = time.monotonic() + 1.0
            rounds = 0
            while time.monotonic() < end:
                q: BatchQueue[Any] = BatchQueue(
                    capacity=30, batch_size=10, flush_interval=60.0, policy=policy
                )
                current[:] = [q]
                rounds += 1
                for n in range(45):  # past capacity: the policy's path
                    put = q.put({"n": n, "round": rounds})
                    if put.spill is not None:
                        q.settle(put.spill, Outcome(spooled=len(put.spill.rows)))
                batch = q.take(wait=False)
                if batch is not None:
                    outcome = Outcome(sent=len(batch.rows) - 1)
                    outcome.dropped["bad_row"] += 1
                    q.settle(batch, outcome)
                q.close()
                left = q.leftovers()
                if left is not None:
                    q.settle(left, Outcome(spooled=len(left.rows)))
                q.put({"late": rounds})  # after close: dropped, counted
                q.drop("recursion")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, before)
        assert reads > 100
        assert not off, f"{sum(off.values())} of {reads} reads off, in {dict(off)}"
