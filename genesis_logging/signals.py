"""An opt-in clean exit on ``SIGTERM`` (what container runtimes and ``kill`` send).

Python's default for ``SIGTERM`` ends the process at once, like ``kill -9``: no
``atexit`` hook and so no ``logging.shutdown()`` — queued records are lost. A service
that does not handle ``SIGTERM`` itself calls :func:`exit_on_sigterm` once at start.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

__all__ = ["SIGTERM_EXIT_CODE", "exit_on_sigterm"]

#: The exit status of a process ended by SIGTERM, as shells report it (128 + 15).
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(SIGTERM_EXIT_CODE)  # unwinds the main thread: atexit, logging.shutdown()


def exit_on_sigterm() -> bool:
    """Make ``SIGTERM`` a normal exit (status 143), so queued records are delivered or
    spooled within ``shutdown_timeout``.

    Returns:
        ``True`` when installed; ``False`` when another ``SIGTERM`` handler is already
        set (it is left alone) or when not called from the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return False
    if signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None, _exit):
        return False
    signal.signal(signal.SIGTERM, _exit)
    return True
