"""The delivery thread, and nothing else: one per pipeline (a handler), started lazily.

The parent's thread does not exist in a forked child: the pipeline makes a new Worker
there. When no thread can be started any more
(interpreter shutdown), :meth:`Worker.start` says so and the pipeline delivers inline.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from . import _guard
from .signals import keep_signals_for_the_main_thread

__all__ = ["Worker"]


class Worker:
    """Runs ``loop`` in one daemon thread; ``on_exit`` is called when it returns.

    Args:
        loop: the work; returns when there is nothing more to do.
        name: the thread's name.
        on_exit: called in the thread after ``loop`` returned or raised.
    """

    def __init__(self, loop: Callable[[], None], name: str, on_exit: Callable[[], None]) -> None:
        self._loop, self._name, self._on_exit = loop, name, on_exit
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self.running = (
            False  # written under the lock; read without (a plain attribute: the hot path)
        )
        self.starts = 0
        self.inline = False  # no thread could be started: the caller delivers

    def start(self) -> bool:
        """Start the thread unless it runs; ``False`` when no thread can be started."""
        with self._lock:
            if self.running:
                return True
            if self.inline:
                return False
            thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self.running = True
            try:
                thread.start()
            except RuntimeError:  # "can't create new thread at interpreter shutdown"
                self.running = False
                self.inline = True
                return False
            self._thread = thread
            self.starts += 1
            return True

    def _run(self) -> None:
        keep_signals_for_the_main_thread()
        _guard.enter(defer=False)  # everything this thread logs is ours: never queued
        try:
            self._loop()
        finally:
            with self._lock:
                self.running = False
            self._on_exit()
