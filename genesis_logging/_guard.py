"""One thread-local mark: is this thread running pipeline code right now?

A record logged while our code runs must not re-enter the queue from inside it (Sentry's
batcher guards the same way). In the worker thread — the driver, tenacity, our warnings —
such a record is dropped and counted. In a caller's thread it is most likely a signal
handler that interrupted a logging call (or a ``__repr__`` the converter called): it is
set aside and submitted right after the interrupted call, outside the queue's lock, for a
few rounds; what is still logged after those is dropped and counted, so nothing recurses.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

__all__ = ["Deferred", "active", "defer", "enter", "leave", "take_deferred"]


class Deferred(Protocol):
    """Whoever can submit a record that was set aside (the handler)."""

    def submit_deferred(self, record: logging.LogRecord) -> None: ...

    def discard_deferred(self, record: logging.LogRecord) -> None: ...


_state = threading.local()


def active() -> bool:
    """Whether this thread is inside pipeline code."""
    return getattr(_state, "active", False)


def enter(*, defer: bool = True) -> tuple[bool, object]:
    """Mark this thread as inside pipeline code; returns what :func:`leave` restores.

    With ``defer``, records logged meanwhile are set aside (see :func:`defer`).
    """
    previous = (getattr(_state, "active", False), getattr(_state, "deferred", None))
    _state.active = True
    if not previous[0]:
        _state.deferred = [] if defer else None
    return previous


def leave(previous: tuple[bool, object]) -> None:
    """Restore the mark :func:`enter` returned."""
    _state.active, _state.deferred = previous


def defer(owner: Deferred, record: logging.LogRecord) -> bool:
    """Set ``record`` aside for the interrupted call; ``False`` when that is not allowed
    (the worker thread, or while set-aside records are being submitted)."""
    deferred = getattr(_state, "deferred", None)
    if deferred is None:
        return False
    deferred.append((owner, record))
    return True


def take_deferred(*, last: bool = False) -> list[tuple[Deferred, logging.LogRecord]]:
    """The records set aside so far; with ``last``, later ones are no longer set aside."""
    deferred: list[tuple[Deferred, logging.LogRecord]] = getattr(_state, "deferred", None) or []
    _state.deferred = None if last else []
    return deferred
