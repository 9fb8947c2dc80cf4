"""The handler's options, validated once into a frozen value.

Every mistake is a :class:`ConfigurationError` at configuration time, never in a logging
call: wrong types, negative, NaN and infinite numbers, an unknown policy.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Final

from .errors import ConfigurationError
from .settings import ConnectionSettings
from .signals import check_signal_names

__all__ = ["DEFAULT_SPOOL_MAX_BYTES", "QUEUE_FULL_POLICIES", "HandlerConfig", "check_number"]

#: What the queue does with a record when it is full.
QUEUE_FULL_POLICIES: Final = ("drop_newest", "drop_oldest", "block", "spool")

#: Default cap of the spool directory, in bytes.
DEFAULT_SPOOL_MAX_BYTES: Final = 256 * 1024 * 1024


def check_number(name: str, value: object, *, integer: bool = False, zero: bool = False) -> Any:
    """``value`` if it is a finite number > 0 (>= 0 with ``zero``); else a clear error."""
    kind = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind):
        raise ConfigurationError(
            f"{name} must be a {'whole ' if integer else ''}number, got {value!r}"
        )
    if not math.isfinite(value):
        raise ConfigurationError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (value == 0 and not zero):
        raise ConfigurationError(f"{name} must be {'>= 0' if zero else '> 0'}, got {value!r}")
    return value


@dataclass(frozen=True)
class HandlerConfig:
    """Everything a :class:`~genesis_logging.ClickHouseHandler` was configured with."""

    connection: ConnectionSettings
    table: str = "logs"
    batch_size: int = 1000
    flush_interval: float = 1.0
    queue_size: int = 100_000
    queue_full_policy: str = "drop_newest"
    block_timeout: float = 0.1
    retry_attempts: int = 8
    retry_max_delay: float = 30.0
    shutdown_timeout: float = 5.0
    spool_dir: str | None = None
    spool_max_bytes: int = DEFAULT_SPOOL_MAX_BYTES
    drain_on_signals: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.queue_full_policy not in QUEUE_FULL_POLICIES:
            raise ConfigurationError(
                f"queue_full_policy must be one of {', '.join(QUEUE_FULL_POLICIES)}, "
                f"got {self.queue_full_policy!r}"
            )
        if not isinstance(self.table, str) or not self.table:
            raise ConfigurationError("table must be a non-empty string")
        if self.queue_full_policy == "spool" and not self.spool_dir:
            raise ConfigurationError("queue_full_policy 'spool' needs spool_dir")
        for name in ("batch_size", "queue_size", "retry_attempts", "spool_max_bytes"):
            check_number(name, getattr(self, name), integer=True)
        check_number("flush_interval", self.flush_interval)
        for name in ("block_timeout", "retry_max_delay", "shutdown_timeout"):
            check_number(name, getattr(self, name), zero=True)
        check_signal_names(self.drain_on_signals)

    @staticmethod
    def spool_path(spool_dir: str | os.PathLike[str] | None) -> str | None:
        return os.fspath(spool_dir) if spool_dir else None
