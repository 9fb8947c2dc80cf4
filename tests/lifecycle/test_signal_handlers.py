"""A signal handler that logs while the main thread is inside a logging call."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fakes import OUTSIDE_CHECKOUT
from tests.support.scripts import NOWHERE, last_json, run_script, spooled, write_script


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


class TestSigterm:
    """``SIGTERM`` ends a process like ``kill -9`` unless handled; the helper makes it clean."""

    @pytest.mark.parametrize("helper", [True, False], ids=["exit_on_sigterm", "default"])
    def test_sigterm(self, tmp_path: Path, helper: bool) -> None:
        import signal

        spool_dir = tmp_path / "spool"
        body = f"""
            warnings.simplefilter("ignore")
            from genesis_logging import ClickHouseHandler, exit_on_sigterm
            if {helper!r}:
                assert exit_on_sigterm()
            handler = ClickHouseHandler(url={NOWHERE!r}, spool_dir={str(spool_dir)!r},
                                        retry_attempts=1, flush_interval=60, shutdown_timeout=2)
            log = logging.getLogger("svc"); log.addHandler(handler); log.setLevel(logging.INFO)
            for i in range(100):
                log.info("r%d", i)
            print("READY", flush=True)
            time.sleep(60)
        """
        script = write_script(tmp_path, body)
        service = subprocess.Popen(
            [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=OUTSIDE_CHECKOUT
        )
        assert service.stdout is not None
        assert service.stdout.readline().strip() == "READY"
        service.send_signal(signal.SIGTERM)
        code = service.wait(30)
        if helper:
            assert code == 143
            assert spooled(spool_dir) == 100
        else:  # documented: the default disposition loses what is queued
            assert code == -signal.SIGTERM
            assert spooled(spool_dir) == 0
