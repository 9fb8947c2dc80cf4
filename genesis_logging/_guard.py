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

__all__ = ["Deferred", "active", "defer", "enter", "leave", "pending", "take_deferred"]


class Deferred(Protocol):
    """Whoever can submit a record that was set aside (the handler)."""

    def submit_deferred(self, record: logging.LogRecord) -> None: ...

    def discard_deferred(self, record: logging.LogRecord) -> None: ...


class _State(threading.local):
    active = False
    deferring = False  # records logged meanwhile are set aside (not in the worker)
    deferred: list[tuple[Deferred, logging.LogRecord]] | None = None


_state = _State()


def active() -> bool:
    """Whether this thread is inside pipeline code."""
    return _state.active


def enter(*, defer: bool = True) -> bool:
    """Mark this thread as inside pipeline code; returns what :func:`leave` needs.

    With ``defer``, records logged meanwhile are set aside (see :func:`defer`). Inside
    already, nothing changes (and the matching :func:`leave` changes nothing).
    """
    state = _state
    if state.active:
        return False
    state.active = True
    state.deferring = defer
    state.deferred = None
    return True


def leave(entered: bool) -> None:
    """Undo the :func:`enter` that returned ``entered``."""
    if entered:
        state = _state
        state.active = state.deferring = False
        state.deferred = None


def defer(owner: Deferred, record: logging.LogRecord) -> bool:
    """Set ``record`` aside for the interrupted call; ``False`` when that is not allowed
    (the worker thread, or while set-aside records are being submitted)."""
    state = _state
    if not state.deferring:
        return False
    if state.deferred is None:
        state.deferred = []
    state.deferred.append((owner, record))
    return True


def pending() -> bool:
    """Whether records were set aside since :func:`enter`."""
    return _state.deferred is not None


def take_deferred(*, last: bool = False) -> list[tuple[Deferred, logging.LogRecord]]:
    """The records set aside so far; with ``last``, later ones are no longer set aside."""
    state = _state
    deferred = state.deferred
    state.deferred = None
    if last:
        state.deferring = False
    return deferred or []
