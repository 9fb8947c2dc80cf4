"""setup_logging(): console always, ClickHouse when the environment says so."""

from __future__ import annotations

import io
import json
import logging

import pytest

from genesis_logging import ClickHouseHandler, ConfigurationError, setup_logging
from tests.support.server import Target


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CLICKHOUSE_URL", "CLICKHOUSE_HOST", "LOG_LEVEL", "GENESIS_SERVICE"):
        monkeypatch.delenv(name, raising=False)


class TestConsoleOnly:
    """Without ClickHouse settings: JSON on the console."""

    def test_console_json_at_info(self) -> None:
        stream = io.StringIO()
        handlers = setup_logging(stream=stream, service="worker")
        assert len(handlers) == 1
        logging.getLogger("w").debug("hidden")
        logging.getLogger("w").info("shown")
        (line,) = stream.getvalue().splitlines()
        assert json.loads(line)["message"] == "shown"
        assert json.loads(line)["service"] == "worker"

    def test_level_from_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("LOG_LEVEL", "debug")
        setup_logging(stream=io.StringIO())
        assert logging.getLogger().level == logging.DEBUG

    def test_bad_level(self) -> None:
        with pytest.raises(ConfigurationError, match="verbose"):
            setup_logging(level="verbose", stream=io.StringIO())

    def test_driver_noise_is_quieted_unless_configured(self) -> None:
        driver = logging.getLogger("clickhouse_driver")
        driver.setLevel(logging.NOTSET)
        setup_logging(stream=io.StringIO())
        assert driver.level == logging.ERROR
        driver.setLevel(logging.DEBUG)
        setup_logging(stream=io.StringIO())
        assert driver.level == logging.DEBUG  # a level someone chose is kept

    def test_twice_does_not_double_lines(self) -> None:
        stream = io.StringIO()
        setup_logging(stream=stream)
        setup_logging(stream=stream)
        logging.getLogger("w").warning("once")
        assert len(stream.getvalue().splitlines()) == 1


@pytest.mark.integration
class TestWithClickHouse:
    """With CLICKHOUSE_URL set, the same records also reach the table."""

    def test_console_and_clickhouse(
        self, monkeypatch: pytest.MonkeyPatch, logs_table: tuple[Target, str, str]
    ) -> None:
        target, database, table = logs_table
        monkeypatch.setenv("CLICKHOUSE_URL", target.url(database))
        stream = io.StringIO()
        handlers = setup_logging(stream=stream, table=table, flush_interval=0.1)
        assert isinstance(handlers[1], ClickHouseHandler)
        logging.getLogger("worker").info("Task recebida", extra={"task_id": "T01"})
        handlers[1].close()
        assert json.loads(stream.getvalue())["task_id"] == "T01"
        rows = target.client().execute(f"SELECT message, task_id FROM {database}.{table}")
        assert rows == [("Task recebida", "T01")]
