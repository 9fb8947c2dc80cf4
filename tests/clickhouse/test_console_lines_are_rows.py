"""Console lines are JSONEachRow rows of genesis.logs on today's ClickHouse (chDB)."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pytest

from genesis_logging import log_context
from genesis_logging.ddl import create_database_sql, create_table_sql
from genesis_logging.schema import FIELDS
from tests.support.captured import make_captured


@pytest.fixture
def logs_table(chdb_session: Any) -> str:
    chdb_session.query(create_database_sql("genesis"))
    chdb_session.query("DROP TABLE IF EXISTS genesis.logs")
    chdb_session.query(create_table_sql("genesis", "logs"))
    return "genesis.logs"


def read_back(chdb_session: Any) -> list[dict[str, Any]]:
    columns = ", ".join(
        "toUnixTimestamp64Milli(timestamp) AS timestamp" if f.name == "timestamp" else f.name
        for f in FIELDS
    )
    result = chdb_session.query(
        f"SELECT {columns} FROM genesis.logs ORDER BY timestamp, message", "JSONEachRow"
    )
    return [json.loads(line) for line in str(result).splitlines()]


def emit_sample_lines(keep_empty: bool) -> list[str]:
    captured = make_captured("roundtrip", keep_empty=keep_empty, service="worker", version="1.2.3")
    log = captured.logger
    with log_context(spec_id="spec_001", iteration=1, sprint_id="S030", task_id="T01"):
        log.info("Task recebida", extra={"topic": "orders", "payload": {"n": [1, 2]}})
        log.error(
            "run failed",
            extra={
                "stdout": "collected 3 items\n",
                "stderr": "TypeError: x is not a function\n  at line 15 — ünïcödé ✓ 🚀",
                "exit_code": 1,
                "code_snapshot": "def f():\n\treturn 'quote\" and \\\\ backslash'\n",
                "duration_ms": 1500,
                "iteration": "abc",
            },
        )
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            log.exception("crashed \u2028 separator", extra={"exit_code": -11})
    log.debug("outside any context")
    return captured.lines()


class TestRoundTrip:
    """Formatter lines go in with INSERT ... FORMAT JSONEachRow and come back equal."""

    @pytest.mark.parametrize("keep_empty", [False, True])
    def test_lines_read_back_equal_field_by_field(
        self, chdb_session: Any, logs_table: str, keep_empty: bool
    ) -> None:
        lines = emit_sample_lines(keep_empty)
        chdb_session.query(f"INSERT INTO {logs_table} FORMAT JSONEachRow\n" + "\n".join(lines))
        stored = read_back(chdb_session)
        assert len(stored) == len(lines) == 4

        expected = []
        for line in lines:
            data = json.loads(line)
            full = {f.name: data.get(f.name, f.default) for f in FIELDS}
            full["timestamp"] = None  # compared separately, as an instant
            expected.append((data["timestamp"], full))
        expected.sort(key=lambda item: (item[0], item[1]["message"]))

        for (iso, want), got in zip(expected, stored, strict=True):
            millis = got.pop("timestamp")
            want.pop("timestamp")
            instant = datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc)
            assert instant.isoformat(timespec="milliseconds").replace("+00:00", "Z") == iso
            assert got == want

    def test_failing_run_is_found_by_the_specification_query(
        self, chdb_session: Any, logs_table: str
    ) -> None:
        lines = emit_sample_lines(keep_empty=False)
        chdb_session.query(f"INSERT INTO {logs_table} FORMAT JSONEachRow\n" + "\n".join(lines))
        result = chdb_session.query(
            "SELECT level, stderr, exit_code, duration_ms FROM genesis.logs "
            "WHERE spec_id = 'spec_001' AND exit_code != 0 ORDER BY timestamp DESC LIMIT 10",
            "JSONEachRow",
        )
        rows = [json.loads(line) for line in str(result).splitlines()]
        assert [(r["level"], r["exit_code"]) for r in rows] == [("error", -11), ("error", 1)]
        assert rows[1]["duration_ms"] == 1500
