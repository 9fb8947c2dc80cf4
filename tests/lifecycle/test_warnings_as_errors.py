"""``python -W error`` must neither break configuration nor the worker."""

from __future__ import annotations

from pathlib import Path

from tests.support.scripts import (
    last_json,
    run_script,
)


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
