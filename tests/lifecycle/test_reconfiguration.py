"""``dictConfig`` run twice closes the old handler under logging's lock."""

from __future__ import annotations

from pathlib import Path

from genesis_logging.spool import Spool
from tests.support.scripts import (
    Table,
    run_script,
    stored,
)
from tests.support.server import LocalServer


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
