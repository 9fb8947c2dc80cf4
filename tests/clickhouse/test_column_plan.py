"""The table's columns change under a running handler (doctor's ALTERs)."""

from __future__ import annotations

import pytest

from genesis_logging import ClickHouseHandler
from tests.support.scripts import (
    Table,
    logging_to,
    stored,
)
from tests.support.server import LocalServer


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
        from tests.support.server import fresh_table, legacy_table_sql

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
