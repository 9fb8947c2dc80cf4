"""A logger writing genesis JSON lines into memory, for tests that read them."""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from genesis_logging import GenesisJsonFormatter


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
