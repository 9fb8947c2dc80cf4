"""One thread-local mark: is this thread running pipeline code right now?

A record logged while our code runs must not re-enter the queue from inside it (Sentry's
batcher guards the same way). In the worker thread — the driver, tenacity, our warnings —
such a record is dropped and counted. In a caller's thread it is most likely a signal
handler that interrupted a logging call (or a ``__repr__`` the converter called): it is
set aside and submitted right after the interrupted call, outside the queue's lock, for a
few rounds; what is still logged after those is dropped and counted, so nothing recurses.

The exit cannot lose a set-aside record: while records are set aside the mark *is* the
list that holds them, and :func:`leave` takes that very list as it clears the mark. A
signal that lands before the mark is cleared appends to the list :func:`leave` returns; one
that lands after finds no mark and submits its record itself. No check-then-clear window.
"""

from __future__ import annotations

import logging
import threading
from typing import Final, Protocol, TypeAlias

__all__ = ["MARK", "MARKS", "Deferred", "SetAside", "active", "defer", "enter", "leave"]


class Deferred(Protocol):
    """Whoever can submit a record that was set aside (the handler)."""

    def submit_deferred(self, record: logging.LogRecord) -> None: ...

    def discard_deferred(self, record: logging.LogRecord) -> None: ...


#: Records set aside during a call, with who submits them.
SetAside: TypeAlias = "list[tuple[Deferred, logging.LogRecord]]"

# This thread's mark, the key ``MARK`` of its own dict: absent outside our code; inside,
# either ``_DROPPING`` (records logged meanwhile are dropped: the worker, delivery at exit)
# or a list (records logged meanwhile are appended to it). The thread's dict of a
# ``threading.local`` is fetched once per logging call and then used as a plain dict: a
# quarter of the cost of reading and writing an attribute of the local three times.
_DROPPING: Final = "dropping"
_NOTHING: Final[SetAside] = []  # what leave() returns when nothing was set aside; never written
Mode: TypeAlias = "str | SetAside"

#: The key of the mark in this thread's dict.
MARK: Final = "mode"
#: The marks: ``MARKS.__dict__`` is this thread's own dict (gone with the thread; a forked
#: child keeps the forking thread's). For the one caller that inlines :func:`enter` and
#: :func:`leave` (the handler's ``emit``, the path of every record): it sets the mark to a
#: list of its own when there is none, and at the end deletes it and reads that list.
MARKS: Final = threading.local()


def _marks() -> dict[str, Mode]:
    marks: dict[str, Mode] = MARKS.__dict__
    return marks


def active() -> bool:
    """Whether this thread is inside pipeline code."""
    return MARK in _marks()


def enter(*, defer: bool = True) -> bool:
    """Mark this thread as inside pipeline code; returns what :func:`leave` needs.

    With ``defer``, records logged meanwhile are set aside (see :func:`defer`). Inside
    already, nothing changes (and the matching :func:`leave` changes nothing).
    """
    marks = _marks()
    if MARK in marks:
        return False
    marks[MARK] = [] if defer else _DROPPING
    return True


def leave(entered: bool) -> SetAside:
    """Undo the :func:`enter` that returned ``entered``; the records set aside meanwhile
    (the caller submits them, see the module's docstring)."""
    if not entered:
        return _NOTHING
    mode = _marks().pop(MARK, None)  # one step: the list taken as the mark goes
    return mode if type(mode) is list else _NOTHING


def defer(owner: Deferred, record: logging.LogRecord) -> bool:
    """Set ``record`` aside for the interrupted call; ``False`` when that is not allowed
    (the worker thread, or delivery at exit)."""
    mode = _marks().get(MARK)
    if type(mode) is list:
        mode.append((owner, record))
        return True
    return False
