"""A fake inserter: the handler's seam, for unit tests without a server."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final

from genesis_logging import ClickHouseHandler
from genesis_logging._codec import Row


class FakeInserter:
    """Records batches; can be held shut (``gate``) or told to fail."""

    def __init__(self) -> None:
        self.batches: list[list[Row]] = []
        self.errors: list[BaseException] = []  # raised by the next calls, in order
        self.always: BaseException | None = None  # raised by every call when set
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()  # set when an insert call starts
        self.calls = 0
        self.tokens: list[str | None] = []
        self.closed = 0
        self.on_insert: Callable[[Sequence[Row]], None] | None = None

    def insert(self, rows: Sequence[Row], token: str | None = None) -> None:
        self.calls += 1
        self.tokens.append(token)
        self.entered.set()
        if not self.gate.wait(30):
            raise TimeoutError("gate never opened")
        if self.on_insert is not None:
            self.on_insert(rows)
        if self.always is not None:
            raise self.always
        if self.errors:
            raise self.errors.pop(0)
        self.batches.append(list(rows))

    def close(self) -> None:
        self.closed += 1

    @property
    def messages(self) -> list[Any]:
        return [row["message"] for batch in self.batches for row in batch]


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Poll ``condition`` until true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(0.005)


def rss_mb() -> float:
    """This process's resident memory, in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


#: Where test subprocesses start: ``python -m`` puts the working directory on sys.path,
#: and the checkout's ``genesis_logging/`` must never shadow the installed wheel.
OUTSIDE_CHECKOUT: Final = tempfile.gettempdir()


def cli_command(*args: str) -> list[str]:
    """The command line of ``python -m genesis_logging ARGS``."""
    return [sys.executable, "-m", "genesis_logging", *args]


def clean_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CLICKHOUSE_* / GENESIS_*, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLICKHOUSE_", "GENESIS_"))}
    return {**base, **(env or {})}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m genesis_logging ARGS`` with no CLICKHOUSE_* / GENESIS_* inherited."""
    return subprocess.run(
        cli_command(*args),
        capture_output=True,
        text=True,
        timeout=120,
        env=clean_env(env),
        cwd=OUTSIDE_CHECKOUT,
    )


def make(fake: FakeInserter, **options: Any) -> tuple[ClickHouseHandler, logging.Logger]:
    options.setdefault("flush_interval", 60.0)
    handler = ClickHouseHandler(inserter=fake, **options)
    logger = logging.getLogger(f"unit.{id(handler)}")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return handler, logger


def balanced(stats: dict[str, Any]) -> bool:
    return stats["emitted"] == stats["sent"] + sum(stats["dropped"].values()) + stats["pending"]
