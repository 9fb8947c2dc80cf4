"""One thread-local flag: is this thread running pipeline code right now?

A record logged while our code runs — by the driver, tenacity, a filter, a ``__repr__``
the converter calls, in the worker or in the caller's thread — must not re-enter the
queue (Sentry's batcher does the same). The handler checks :func:`active` first.
"""

from __future__ import annotations

import threading

__all__ = ["active", "enter", "leave"]

_state = threading.local()


def active() -> bool:
    """Whether this thread is inside pipeline code."""
    return getattr(_state, "active", False)


def enter() -> bool:
    """Mark this thread as inside pipeline code; returns the previous mark for :func:`leave`."""
    previous: bool = getattr(_state, "active", False)
    _state.active = True
    return previous


def leave(previous: bool) -> None:
    """Restore the mark :func:`enter` returned."""
    _state.active = previous
