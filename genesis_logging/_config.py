"""Every handler option: its default, its validation, once, into a frozen value.

The defaults are the constants below (the handler's signature uses them, and
``tests/house/test_configuration_reference.py`` holds the signature, this class and
``docs/configuration.md`` to one another). Every mistake is a :class:`ConfigurationError`
at configuration time, never in a logging call: wrong types, negative, NaN and infinite
numbers, an unknown policy, and options that contradict each other.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Final

from ._convert import DEFAULT_MAX_FIELD_CHARS
from .errors import ConfigurationError
from .settings import ConnectionSettings
from .signals import check_signal_names

__all__ = [
    "DEFAULT_BATCH_SIZE",
    "DEFAULT_BLOCK_TIMEOUT",
    "DEFAULT_FLUSH_INTERVAL",
    "DEFAULT_MAX_FIELD_CHARS",
    "DEFAULT_QUEUE_FULL_POLICY",
    "DEFAULT_QUEUE_SIZE",
    "DEFAULT_RETRY_ATTEMPTS",
    "DEFAULT_RETRY_MAX_DELAY",
    "DEFAULT_SHUTDOWN_TIMEOUT",
    "DEFAULT_SPOOL_MAX_BYTES",
    "DEFAULT_TABLE",
    "OPTIONS",
    "QUEUE_FULL_POLICIES",
    "HandlerConfig",
    "check_number",
]

#: What the queue does with a record when it is full.
QUEUE_FULL_POLICIES: Final = ("drop_newest", "drop_oldest", "block", "spool")

DEFAULT_TABLE: Final = "logs"
DEFAULT_BATCH_SIZE: Final = 1000
DEFAULT_FLUSH_INTERVAL: Final = 1.0
DEFAULT_QUEUE_SIZE: Final = 100_000
DEFAULT_QUEUE_FULL_POLICY: Final = "drop_newest"
DEFAULT_BLOCK_TIMEOUT: Final = 0.1
DEFAULT_RETRY_ATTEMPTS: Final = 8
DEFAULT_RETRY_MAX_DELAY: Final = 30.0
DEFAULT_SHUTDOWN_TIMEOUT: Final = 5.0
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
    """Everything a :class:`~genesis_logging.ClickHouseHandler` was configured with.

    Build it with :meth:`from_options` from the handler's keywords; the connection's own
    options are validated by :meth:`ConnectionSettings.resolve`.
    """

    connection: ConnectionSettings
    table: str = DEFAULT_TABLE
    batch_size: int = DEFAULT_BATCH_SIZE
    flush_interval: float = DEFAULT_FLUSH_INTERVAL
    queue_size: int = DEFAULT_QUEUE_SIZE
    queue_full_policy: str = DEFAULT_QUEUE_FULL_POLICY
    block_timeout: float = DEFAULT_BLOCK_TIMEOUT
    retry_attempts: int = DEFAULT_RETRY_ATTEMPTS
    retry_max_delay: float = DEFAULT_RETRY_MAX_DELAY
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT
    service: str | None = None  # None: $GENESIS_SERVICE, else the schema's default
    version: str | None = None  # None: $GENESIS_VERSION, else empty
    max_field_chars: int = DEFAULT_MAX_FIELD_CHARS
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
        for name in ("service", "version"):
            if not isinstance(getattr(self, name), (str, type(None))):
                raise ConfigurationError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("batch_size", "queue_size", "retry_attempts", "spool_max_bytes"):
            check_number(name, getattr(self, name), integer=True)
        check_number("max_field_chars", self.max_field_chars, integer=True)
        check_number("flush_interval", self.flush_interval)
        for name in ("block_timeout", "retry_max_delay", "shutdown_timeout"):
            check_number(name, getattr(self, name), zero=True)
        check_signal_names(self.drain_on_signals)
        self._cross_check()

    def _cross_check(self) -> None:
        """Options that are valid alone but not together: each would silently do
        something other than what the person configuring it meant."""
        if self.batch_size > self.queue_size:
            raise ConfigurationError(
                f"batch_size ({self.batch_size}) must not exceed queue_size "
                f"({self.queue_size}): such a batch could never fill"
            )
        if self.queue_full_policy == "spool" and not self.spool_dir:
            raise ConfigurationError("queue_full_policy 'spool' needs spool_dir")
        if self.block_timeout != DEFAULT_BLOCK_TIMEOUT and self.queue_full_policy != "block":
            raise ConfigurationError(
                f"block_timeout applies to queue_full_policy 'block' only "
                f"(queue_full_policy is {self.queue_full_policy!r}): no call would wait"
            )
        if self.spool_max_bytes != DEFAULT_SPOOL_MAX_BYTES and not self.spool_dir:
            raise ConfigurationError("spool_max_bytes needs spool_dir: there is no spool")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> HandlerConfig:
        """The configuration of the handler's keywords (each one forwarded once): this
        class's fields, and the connection's options for :meth:`ConnectionSettings.resolve`
        (which refuses a name it does not know). ``None`` for ``spool_dir`` or
        ``drain_on_signals`` means "none"."""
        own = {name: value for name, value in options.items() if name in OPTIONS}
        connection = ConnectionSettings.resolve(
            **{name: value for name, value in options.items() if name not in OPTIONS}
        )
        spool_dir = own.pop("spool_dir", None)
        signals = own.pop("drain_on_signals", None)
        return cls(
            connection,
            spool_dir=os.fspath(spool_dir) if spool_dir else None,
            drain_on_signals=tuple(signals or ()),
            **own,
        )


#: The handler options this class holds (every one but the connection's).
OPTIONS: Final = frozenset(f.name for f in fields(HandlerConfig)) - {"connection"}
