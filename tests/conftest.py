"""Shared fixtures: a clean logging state per test, and a capturing JSON logger."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from genesis_logging import GenesisJsonFormatter


@pytest.fixture(autouse=True)
def _reset_logging() -> Iterator[None]:
    """Give every test the logging configuration it started with."""
    manager = logging.Logger.manager
    root = logging.getLogger()
    saved_root = (list(root.handlers), root.level, list(root.filters))
    saved_loggers = {
        name: (list(lg.handlers), lg.level, lg.propagate, lg.disabled, list(lg.filters))
        for name, lg in manager.loggerDict.items()
        if isinstance(lg, logging.Logger)
    }
    yield
    root.handlers[:], root.level, root.filters[:] = saved_root
    for name, lg in list(manager.loggerDict.items()):
        if not isinstance(lg, logging.Logger):
            continue
        if name in saved_loggers:
            lg.handlers[:], lg.level, lg.propagate, lg.disabled, lg.filters[:] = saved_loggers[
                name
            ]
        else:
            lg.handlers.clear()
            lg.filters.clear()
            lg.setLevel(logging.NOTSET)
            lg.propagate = True
            lg.disabled = False


@dataclass
class Captured:
    """A logger writing genesis JSON lines into memory."""

    logger: logging.Logger
    stream: io.StringIO
    formatter: GenesisJsonFormatter
    handler: logging.Handler
    _read: int = field(default=0)

    def lines(self) -> list[str]:
        return self.stream.getvalue().splitlines()

    def records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.lines()]

    def one(self) -> dict[str, Any]:
        records = self.records()
        assert len(records) == 1, records
        return records[0]


def make_captured(name: str = "test.captured", **formatter_options: Any) -> Captured:
    stream = io.StringIO()
    formatter = GenesisJsonFormatter(**formatter_options)
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return Captured(logger, stream, formatter, handler)


@pytest.fixture
def captured() -> Captured:
    """A DEBUG logger with a :class:`GenesisJsonFormatter` writing to memory."""
    return make_captured()


@pytest.fixture(scope="session")
def chdb_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Today's ClickHouse engine in-process (chDB); one session for the whole run."""
    from chdb import session as chdb_session_module

    chdb = chdb_session_module.Session(str(tmp_path_factory.mktemp("chdb")))
    yield chdb
    chdb.close()
