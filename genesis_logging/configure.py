"""One call for scripts and workers: console JSON always, ClickHouse when configured."""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

from .attach import attach_handler
from .errors import ConfigurationError
from .formatter import GenesisJsonFormatter
from .handler import ClickHouseHandler

__all__ = ["CLICKHOUSE_HANDLER_NAME", "CONSOLE_HANDLER_NAME", "setup_logging"]

CONSOLE_HANDLER_NAME = "genesis-console"
CLICKHOUSE_HANDLER_NAME = "genesis-clickhouse"


def _level(value: str | int) -> int:
    if isinstance(value, int):
        return value
    level = logging.getLevelName(value.strip().upper())
    if not isinstance(level, int):
        raise ConfigurationError(f"unknown log level {value!r}")
    return level


def setup_logging(
    *,
    level: str | int | None = None,
    service: str | None = None,
    version: str | None = None,
    stream: TextIO | None = None,
    console: bool = True,
    clickhouse: bool | None = None,
    **clickhouse_options: Any,
) -> list[logging.Handler]:
    """Configure the root logger the way the specification's worker template does.

    - a console handler writing genesis JSON lines (to ``stream``, default stderr), unless
      ``console`` is false (``genesis-logging run`` keeps the terminal for the command);
    - a :class:`ClickHouseHandler` too when ``clickhouse`` is true, or, by default, when
      ``CLICKHOUSE_URL`` or ``CLICKHOUSE_HOST`` is set; ``clickhouse_options`` go to it,
      and ``GENESIS_SPOOL_DIR``, when set, turns its disk spool on;
    - the root level from ``level``, else ``LOG_LEVEL``, else ``info``;
    - the ``clickhouse_driver`` logger at ``ERROR`` unless it has a level already (it
      prints a traceback for every failed connection attempt).

    Calling it again replaces the handlers it installed (the old ClickHouse handler is
    closed, delivering what it holds); other handlers of the root logger are kept.

    Returns:
        the handlers installed.

    Raises:
        ConfigurationError: an unknown level or an invalid ClickHouse option.
    """
    root = logging.getLogger()
    root_level = _level(level if level is not None else os.environ.get("LOG_LEVEL", "info"))
    handlers: list[logging.Handler] = []
    if console:
        printer = logging.StreamHandler(stream if stream is not None else sys.stderr)
        printer.set_name(CONSOLE_HANDLER_NAME)
        printer.setFormatter(GenesisJsonFormatter(service=service, version=version))
        handlers.append(printer)

    if clickhouse is None:
        clickhouse = bool(os.environ.get("CLICKHOUSE_URL") or os.environ.get("CLICKHOUSE_HOST"))
    if clickhouse:
        spool_dir = os.environ.get("GENESIS_SPOOL_DIR")
        if spool_dir:
            clickhouse_options.setdefault("spool_dir", spool_dir)
        shipper = ClickHouseHandler(service=service, version=version, **clickhouse_options)
        shipper.set_name(CLICKHOUSE_HANDLER_NAME)
        handlers.append(shipper)

    for old in list(root.handlers):
        if old.name in (CONSOLE_HANDLER_NAME, CLICKHOUSE_HANDLER_NAME):
            root.removeHandler(old)
            old.close()
    for handler in handlers:
        attach_handler(handler, [""])
    root.setLevel(root_level)
    driver = logging.getLogger("clickhouse_driver")
    if driver.level == logging.NOTSET:
        # The driver logs a traceback at WARNING for every failed connection attempt; our
        # handler retries and reports delivery problems itself, once per interval.
        driver.setLevel(logging.ERROR)
    return handlers
