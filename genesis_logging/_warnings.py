"""Telling people about delivery problems: one error description, rate-limited warnings.

Never through ``logging`` (that would feed the pipeline its own problems) and never by
raising: under ``python -W error`` a warning becomes an exception, which must not kill
the worker or reach the caller.
"""

from __future__ import annotations

import contextlib
import threading
import time
import warnings
from typing import Final
from urllib.parse import quote

from .errors import DeliveryWarning

__all__ = ["Reporter", "describe_error", "scrub"]

_WARNING_INTERVAL: Final = 30.0  # seconds between two warnings of the same kind


def scrub(text: str, secret: str) -> str:
    """``text`` without ``secret``, plain or URL-encoded."""
    if not secret:
        return text
    for form in {secret, quote(secret, safe=""), quote(secret)}:
        text = text.replace(form, "***")
    return text


def describe_error(error: BaseException, *, secret: str = "", where: str = "") -> str:
    """One line a person reads: type and message, no server stack trace, no secret."""
    text = f"{type(error).__name__}: {error}".split("Stack trace:")[0]
    text = " ".join(text.split())
    if where:
        text = f"{text} [{where}]"
    return scrub(text, secret)


class Reporter:
    """Error descriptions and warnings of one pipeline; remembers the last error.

    Args:
        where: what the messages are about (a redacted URL and table).
        secret: text never to show (the password).
        interval: seconds between two warnings of the same kind.
    """

    def __init__(self, *, where: str = "", secret: str = "", interval: float = _WARNING_INTERVAL):
        self._where = where
        self._secret = secret
        self._interval = interval
        self._last_warned: dict[str, float] = {}
        self._lock = threading.RLock()
        self._warned_once: set[str] = set()
        self.last_error: str | None = None

    def fresh(self) -> Reporter:
        """A reporter like this one with nothing remembered (a forked child's)."""
        return Reporter(where=self._where, secret=self._secret, interval=self._interval)

    def describe(self, error: BaseException) -> str:
        return describe_error(error, secret=self._secret, where=self._where)

    def error(self, message: str) -> None:
        """Remember ``message`` as the last error (shown by ``stats()``)."""
        self.last_error = scrub(message, self._secret)

    def warn(self, kind: str, message: str, *, force: bool = False, once: bool = False) -> None:
        """Warn at most once per interval and kind (``force``: always; ``once``: ever)."""
        now = time.monotonic()
        with self._lock:
            if once:
                if kind in self._warned_once:
                    return
                self._warned_once.add(kind)
            last = self._last_warned.get(kind)
            if not (force or once) and last is not None and now - last < self._interval:
                return
            self._last_warned[kind] = now
        # Warnings turned into errors (python -W error) must not hurt anybody.
        with contextlib.suppress(Exception):
            warnings.warn(
                f"genesis-logging: {scrub(message, self._secret)}", DeliveryWarning, stacklevel=3
            )
