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
from typing import Final, Protocol, TypeAlias

__all__ = ["Deferred", "active", "defer", "enter", "leave", "pending", "take_deferred"]


class Deferred(Protocol):
    """Whoever can submit a record that was set aside (the handler)."""

    def submit_deferred(self, record: logging.LogRecord) -> None: ...

    def discard_deferred(self, record: logging.LogRecord) -> None: ...


# This thread's mark: ``None`` outside our code; inside, either ``_DROPPING`` (records
# logged meanwhile are dropped: the worker, or set-aside records being submitted),
# ``_DEFERRING`` (they are set aside; none so far) or the list of those set aside. One
# attribute, so that a logging call reads and writes it only once or twice.
_DROPPING: Final = "dropping"
_DEFERRING: Final = "deferring"
Mode: TypeAlias = "str | list[tuple[Deferred, logging.LogRecord]] | None"


class _State(threading.local):
    mode: Mode = None


_state = _State()


def active() -> bool:
    """Whether this thread is inside pipeline code."""
    return _state.mode is not None


def enter(*, defer: bool = True) -> bool:
    """Mark this thread as inside pipeline code; returns what :func:`leave` needs.

    With ``defer``, records logged meanwhile are set aside (see :func:`defer`). Inside
    already, nothing changes (and the matching :func:`leave` changes nothing).
    """
    state = _state
    if state.mode is not None:
        return False
    state.mode = _DEFERRING if defer else _DROPPING
    return True


def leave(entered: bool) -> None:
    """Undo the :func:`enter` that returned ``entered``."""
    if entered:
        _state.mode = None


def defer(owner: Deferred, record: logging.LogRecord) -> bool:
    """Set ``record`` aside for the interrupted call; ``False`` when that is not allowed
    (the worker thread, or while set-aside records are being submitted)."""
    state = _state
    mode = state.mode
    if type(mode) is list:
        mode.append((owner, record))
        return True
    if mode is _DEFERRING:
        state.mode = [(owner, record)]
        return True
    return False


def pending() -> bool:
    """Whether records were set aside since :func:`enter`."""
    return type(_state.mode) is list


def take_deferred(*, last: bool = False) -> list[tuple[Deferred, logging.LogRecord]]:
    """The records set aside so far; with ``last``, later ones are no longer set aside."""
    state = _state
    mode = state.mode
    if mode is None:
        return []
    state.mode = _DROPPING if last or mode is _DROPPING else _DEFERRING
    return mode if type(mode) is list else []
