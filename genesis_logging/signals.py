"""Deliver what is queued when a stop signal arrives, whoever owns the signal handlers.

Python's default for ``SIGTERM`` ends the process at once, like ``kill -9``: no
``atexit`` hook and so no ``logging.shutdown()`` — queued records are lost. Servers make
it worse on purpose: uvicorn, after its graceful shutdown, puts back the disposition it
found and raises the signal again so that the process "dies by the signal" as its
supervisor expects — again without ``logging.shutdown()``.

Two answers live here:

* ``drain_on_signals`` (a handler option, so the logging YAML can set it): when the
  handler is built — at configuration time, *before* a server installs its own handlers
  — one hook per signal is installed. A server that saves "the original handler" and
  restores it at the end saves ours; when the signal reaches the hook, every live handler
  that asked for it is drained (or spooled) within ``shutdown_timeout``, then the signal
  goes on to whatever was there before us: a Python handler is called; the default
  disposition is put back and the signal raised again, so the process still ends by the
  signal (a shell reports 143 for ``SIGTERM``, 130 for ``SIGINT``); ``SIGINT``'s default
  handler raises ``KeyboardInterrupt``. The signal's meaning is never swallowed. (A
  signal that finds its thread holding a lock of ``logging``, which the worker takes to
  log, is drained by a helper thread once the lock is released, then sent again.)
* :func:`exit_on_sigterm` for a plain script that handles no signal: ``SIGTERM``
  becomes ``sys.exit(143)``, a normal exit that runs ``logging.shutdown()``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any, Final, Protocol, TypeAlias

from .errors import ConfigurationError, GenesisLoggingWarning

__all__ = [
    "DRAIN_SIGNALS",
    "SIGTERM_EXIT_CODE",
    "STOP_SIGNALS",
    "check_signal_names",
    "exit_on_sigterm",
    "flush_handlers",
    "install_drain_hooks",
    "keep_signals_for_the_main_thread",
    "watch_signals",
]

#: The exit status of a process ended by SIGTERM, as shells report it (128 + 15).
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM

#: The signals ``drain_on_signals`` accepts: the ones that ask a process to stop (or, for
#: gunicorn and uvicorn supervisors, to reload its workers).
DRAIN_SIGNALS: Final = tuple(
    name for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT") if hasattr(signal, name)
)

_CLOSE_GRACE: Final = 1.0  # seconds beyond shutdown_timeout a closer thread may take
_DEFAULT_BUDGET: Final = 5.0  # seconds for closers of handlers already gone (the default)

SignalHandler: TypeAlias = "Callable[[int, FrameType | None], Any] | int | signal.Handlers | None"


class Drainable(Protocol):
    """A handler the hook can drain: the :class:`~genesis_logging.ClickHouseHandler`."""

    @property
    def config(self) -> Any: ...

    def drain(self, timeout: float | None = None) -> bool: ...

    def close(self) -> None: ...


#: Signals a process is asked to stop (or reload) by, and the timers' signals.
STOP_SIGNALS: Final = frozenset(
    getattr(signal, name)
    for name in ("SIGTERM", "SIGINT", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM")
    if hasattr(signal, name)
)


def keep_signals_for_the_main_thread() -> None:
    """Block :data:`STOP_SIGNALS` in the calling thread (one of ours), so the kernel hands
    them to the main thread.

    Python runs signal handlers in the main thread only, when it next gets to run. A
    signal the kernel gave to one of our threads leaves a main thread blocked in a C
    call (a pool worker waiting for a lock a killed sibling held) asleep for ever: the
    handler — ``drain_on_signals``' hook, or the server's own — never ran, and the
    process never ended. Delivered to the main thread, the call is interrupted and the
    handler runs.
    """
    if threading.current_thread() is threading.main_thread():
        return  # the caller's own thread (a close that waits): it must keep taking them
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)


def check_signal_names(names: tuple[str, ...]) -> None:
    """Raise :class:`ConfigurationError` unless every name is one of :data:`DRAIN_SIGNALS`."""
    if names and all(isinstance(name, str) and len(name) == 1 for name in names):
        raise ConfigurationError(
            "drain_on_signals must be a list of signal names, such as [SIGTERM, SIGINT], "
            f"not the string {''.join(names)!r}"
        )
    for name in names:
        if name not in DRAIN_SIGNALS:
            raise ConfigurationError(
                f"drain_on_signals: unknown signal {name!r}; use any of {', '.join(DRAIN_SIGNALS)}"
            )


class _Hook:
    """The one handler of one signal: drain every open handler of ours, then chain.

    The handlers that asked for it (watchers) are held weakly: one closed by
    ``dictConfig`` or collected leaves.
    """

    def __init__(self, signum: int) -> None:
        self.signum = signum
        self.previous: SignalHandler = signal.SIG_DFL
        self.watchers: weakref.WeakSet[Drainable] = weakref.WeakSet()
        self.draining = False

    def live(self) -> list[Drainable]:
        return [h for h in list(self.watchers) if not getattr(h, "_closed", False)]

    def prune(self) -> None:
        for closed in [h for h in list(self.watchers) if getattr(h, "_closed", False)]:
            self.watchers.discard(closed)

    def __call__(self, signum: int, frame: FrameType | None) -> Any:
        previous = self.previous
        # The default ends the process, except for PID 1 (a container's init), whose
        # defaulted signals the kernel ignores: the process lives on, and so do its handlers.
        ending = not callable(previous) and previous is not signal.SIG_IGN and os.getpid() != 1
        if ending and _in_threading_internals(frame):
            # threading's own locks may be held: no thread can start (a drain would
            # hang for ever). Inside the exit's wait for threads, the exit goes on and
            # delivers (atexit, finalizers); elsewhere the signal takes its default course.
            signal.signal(signum, signal.SIG_DFL)
            if not _in_threading_internals(frame, names=_EXITING):
                signal.raise_signal(signum)
            return None
        held = [] if callable(previous) else _logging_locks_held()
        if held and _drain_once_free(signum, self.live(), held, ending=ending):
            # The worker may need those locks to log: nothing drains before we return.
            # A helper drains once they are free; its signal then ends the process. (A
            # Python handler is promised the drain before it runs: it waits here.)
            if ending:
                signal.signal(signum, signal.SIG_DFL)
            return None
        if not self.draining:  # a second signal while we drain: go on at once
            self.draining = True
            try:
                inline = _inside_our_code(frame)
                _deliver(_open_handlers(self.live()), close=ending, inline=inline)
            finally:
                self.draining = False
        if callable(previous):
            return previous(signum, frame)
        if ending:  # SIG_DFL (or a handler set outside Python): end by the signal
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
        return None


_HOOKS: dict[int, _Hook] = {}


def _logging_locks_held() -> list[Any]:
    """The locks of ``logging`` this thread holds: the module's (``dictConfig``, a first
    ``getLogger``) and those of handlers (a console handler writing a line)."""
    handlers = [ref() for ref in list(logging._handlerList)]  # type: ignore[attr-defined]
    locks = [logging._lock, *(getattr(h, "lock", None) for h in handlers)]  # type: ignore[attr-defined]
    return [lock for lock in locks if getattr(lock, "_is_owned", lambda: False)()]


def _drain_once_free(
    signum: int, watchers: list[Drainable], held: list[Any], *, ending: bool
) -> bool:
    """The signal interrupted a thread holding ``held``, which the worker takes to log
    (the driver's warnings go through the console handler; a logger's first call after
    ``dictConfig`` takes the module's lock): no drain could progress before the hook
    returns. Once they are free (or the budget is spent), a helper thread drains and,
    when the signal ends the process, sends it again (the hook put SIG_DFL back).
    ``False`` when no thread can be started for it."""
    handlers = _open_handlers(watchers)
    deadline = time.monotonic() + max(
        (h.config.shutdown_timeout for h in handlers), default=_DEFAULT_BUDGET
    )

    def drain_then_signal() -> None:
        for lock in held:
            if lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
                lock.release()
        _deliver(_open_handlers(watchers), close=ending)
        if ending:
            os.kill(os.getpid(), signum)

    # Not a daemon: an interpreter that ends meanwhile waits for it, then gets the signal.
    try:
        threading.Thread(target=drain_then_signal, name="genesis-logging-resignal").start()
    except RuntimeError:
        return False
    return True


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _install(hook: _Hook) -> bool:
    """Put ``hook`` in front of the current disposition (once); ``False`` off the main thread."""
    if not _in_main_thread():
        return False
    try:
        current = signal.getsignal(hook.signum)
        if current is not hook:
            signal.signal(hook.signum, hook)
            hook.previous = current
    except (ValueError, OSError):  # not the main interpreter
        return False
    return True


def watch_signals(handler: Drainable, names: Iterable[str]) -> None:
    """Drain ``handler`` when one of the signals ``names`` arrives (its ``drain_on_signals``).

    Installs the signal's hook unless it is installed already. Off the main thread no
    signal handler can be set: the handler is watched anyway and a warning says so;
    :func:`install_drain_hooks` from the main thread installs the hooks later.
    """
    missed = []
    for name in names:
        signum = int(getattr(signal, name))
        hook = _HOOKS.setdefault(signum, _Hook(signum))
        hook.prune()
        hook.watchers.add(handler)
        if not _install(hook):
            missed.append(name)
    if missed:
        warnings.warn(
            f"drain_on_signals: {', '.join(missed)} not hooked: signal handlers can only be "
            "set from the main thread; configure logging there, or call "
            "genesis_logging.install_drain_hooks() from it",
            GenesisLoggingWarning,
            stacklevel=3,
        )


def install_drain_hooks() -> bool:
    """(Re)install the hooks of every handler's ``drain_on_signals`` in front of the
    signal handlers set now; ``False`` off the main thread.

    For servers that reset every signal after the logging configuration: gunicorn resets
    them in each worker (call this from ``post_worker_init``).
    """
    installed = [_install(hook) for hook in _HOOKS.values() if hook.live()]  # every one
    return all(installed)


def flush_handlers(*, close: bool = False, timeout: float | None = None) -> bool:
    """Drain every open :class:`~genesis_logging.ClickHouseHandler` of this process at once.

    For shutdown paths that are not a signal: an ASGI lifespan's shutdown, Celery's
    ``worker_process_shutdown`` (its pool processes end with ``os._exit``, which skips
    ``logging.shutdown()``). With ``close``, what cannot be delivered within
    ``shutdown_timeout`` is spooled and the handlers are closed (the process is ending).

    Returns:
        ``True`` when everything queued before the call settled.
    """
    return _deliver(_open_handlers([]), close=close, timeout=timeout)


def _open_handlers(watchers: list[Drainable]) -> list[Drainable]:
    """``watchers`` and every other open handler of ours in this process: when it is
    about to end, a handler without the option would lose its queue all the same (a
    ``multiprocessing`` pool's worker inherits the hook and is ended by ``SIGTERM``)."""
    found = list(watchers)
    module = sys.modules.get("genesis_logging.handler")
    if module is None:
        return found
    for ref in list(logging._handlerList):  # type: ignore[attr-defined]
        handler = ref()
        if (
            isinstance(handler, module.ClickHouseHandler)
            and not getattr(handler, "_closed", False)
            and all(handler is not known for known in found)
        ):
            found.append(handler)
    return found


def _deliver(
    handlers: list[Drainable],
    *,
    close: bool,
    timeout: float | None = None,
    inline: bool = False,
) -> bool:
    """Drain (or, with ``close``, close: what is left is spooled) ``handlers`` side by
    side, each in a thread of its own, so that the longest ``shutdown_timeout`` (or
    ``timeout``) bounds the whole, not their sum.

    ``inline`` (the signal interrupted our own code, which may hold a queue's lock that
    another thread would wait for in vain): the work runs here, one handler after the
    other, where that lock can be re-entered.
    """
    longest = max((h.config.shutdown_timeout for h in handlers), default=_DEFAULT_BUDGET)
    budget = longest if timeout is None else timeout
    deadline = time.monotonic() + budget
    settled: list[bool] = []

    def settle(handler: Drainable, finished: threading.Event | None = None) -> None:
        keep_signals_for_the_main_thread()
        try:
            if close:
                handler.close()  # at once when a close is under way already (this
                # thread's, interrupted by the signal, or dictConfig's): drain waits for it
            settled.append(handler.drain(max(0.0, deadline - time.monotonic())))
        finally:
            if finished is not None:
                finished.set()

    # Not daemons, and waited for through an event, not join(): Ctrl-C during the drain
    # raises KeyboardInterrupt here, and a join() it interrupts marks the thread stopped
    # (CPython's bpo-45274 fix), so the interpreter's exit would not wait for the close
    # under way (``close()`` of a handler closing already returns at once) — lost queue.
    events = [threading.Event() for _ in handlers]
    threads = [
        threading.Thread(target=settle, args=(h, e), name="genesis-logging-drain")
        for h, e in zip(handlers, events, strict=True)
    ]
    started = 0
    if not inline:
        try:
            for thread in threads:
                thread.start()
                started += 1
        except RuntimeError:  # interpreter shutdown: no thread can start
            pass
    for handler in handlers[started:]:
        settle(handler)
    for event in events[:started]:
        event.wait(max(0.0, deadline - time.monotonic()) + _CLOSE_GRACE)
    if close:  # handlers a new dictConfig closed may still be winding down: wait for them
        for thread in [t for t in threading.enumerate() if _closing_thread(t.name)]:
            if thread is not threading.current_thread():
                thread.join(max(0.0, deadline - time.monotonic()) + _CLOSE_GRACE)
    return len(settled) == len(handlers) and all(settled)


_PACKAGE_DIR: Final = os.path.dirname(os.path.abspath(__file__)) + os.sep


#: threading's functions that hold its module locks (a thread starting, stopping, or the
#: exit waiting for threads): a pool worker's SIGTERM that landed in ``_shutdown`` and
#: started the drain's thread waited for ever on the lock its own frame held.
_THREADING_LOCKED: Final = frozenset(
    {"_shutdown", "_maintain_shutdown_locks", "_set_tstate_lock", "_stop", "_delete"}
)
_EXITING: Final = frozenset({"_shutdown"})


def _in_threading_internals(
    frame: FrameType | None, names: frozenset[str] = _THREADING_LOCKED
) -> bool:
    """Whether the interrupted code is inside one of threading's ``names``."""
    while frame is not None:
        code = frame.f_code
        if code.co_name in names and code.co_filename == threading.__file__:
            return True
        frame = frame.f_back
    return False


def _inside_our_code(frame: FrameType | None) -> bool:
    """Whether the interrupted frame, or one of its callers, is this package's code."""
    while frame is not None:
        if frame.f_code.co_filename.startswith(_PACKAGE_DIR):
            return True
        frame = frame.f_back
    return False


def _closing_thread(name: str) -> bool:
    """A pipeline's closer, which ``close()`` starts when it must not wait itself."""
    return name.startswith("genesis-logging") and name.endswith("-close")


def _exit(signum: int, frame: FrameType | None) -> None:
    sys.exit(SIGTERM_EXIT_CODE)  # unwinds the main thread: atexit, logging.shutdown()


def exit_on_sigterm() -> bool:
    """Make ``SIGTERM`` a normal exit (status 143), so queued records are delivered or
    spooled within ``shutdown_timeout``.

    Returns:
        ``True`` when installed (also behind a ``drain_on_signals`` hook that would
        otherwise end the process by the signal); ``False``, with a warning that says
        why and what to do, when another ``SIGTERM`` handler is set (it is left alone)
        or when not called from the main thread.
    """
    if not _in_main_thread():
        _refuse("it was not called from the main thread, the only one that may set them")
        return False
    current = signal.getsignal(signal.SIGTERM)
    if isinstance(current, _Hook):
        if current.previous in (signal.SIG_DFL, None, _exit):
            current.previous = _exit
            return True
        current = current.previous
    elif current in (signal.SIG_DFL, None, _exit):
        signal.signal(signal.SIGTERM, _exit)
        return True
    _refuse(f"SIGTERM already has a handler ({_describe(current)}), left alone")
    return False


def _describe(handler: SignalHandler) -> str:
    if handler is signal.SIG_IGN:
        return "SIG_IGN"
    module = getattr(handler, "__module__", None) or type(handler).__module__
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


def _refuse(why: str) -> None:
    warnings.warn(
        f"exit_on_sigterm() did not install: {why}. A server that owns SIGTERM (uvicorn, "
        "gunicorn) may end the process without logging.shutdown(); set "
        "drain_on_signals: [SIGTERM, SIGINT] on the ClickHouseHandler in the logging "
        "configuration instead",
        GenesisLoggingWarning,
        stacklevel=3,
    )
