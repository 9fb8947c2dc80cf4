"""Delivery policies as small values: retry, cooldown after a permanent error, replay backoff.

Each is immutable; whoever holds the state (attempts, failures) asks the policy what to do.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    sleep_using_event,
    stop_after_attempt,
    stop_after_delay,
    stop_when_event_set,
    wait_exponential,
    wait_random,
)
from tenacity.stop import stop_base

from ._config import DEFAULT_RETRY_ATTEMPTS, DEFAULT_RETRY_MAX_DELAY

__all__ = ["Cooldown", "ReplayBackoff", "RetryPolicy"]


class _StopAtDeadline(stop_base):
    """Stop once ``deadline()`` (a ``time.monotonic()`` value) has passed."""

    def __init__(self, deadline: Callable[[], float]) -> None:
        self._deadline = deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return time.monotonic() >= self._deadline()


@dataclass(frozen=True)
class RetryPolicy:
    """Retry transient insert errors with exponential backoff and jitter.

    Built from tenacity pieces that exist, without deprecation warnings, in every
    tenacity version we allow.
    """

    attempts: int = DEFAULT_RETRY_ATTEMPTS
    max_delay: float = DEFAULT_RETRY_MAX_DELAY
    first_wait: float = 0.1
    longest_wait: float = 5.0
    jitter: float = 0.2

    def retrying(
        self,
        abort: threading.Event,
        before_sleep: Callable[[BaseException], None],
        deadline: Callable[[], float] = lambda: math.inf,
        *,
        transient: Callable[[BaseException], bool],
    ) -> Retrying:
        """A tenacity ``Retrying`` of the errors ``transient`` accepts (the backend's
        classification), that ``abort`` cuts short, sleep included, and that never
        retries or sleeps past ``deadline()`` (a ``time.monotonic()`` value)."""

        def report(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            if error is not None:
                before_sleep(error)

        backoff = wait_exponential(
            multiplier=self.first_wait, max=self.longest_wait
        ) + wait_random(0, self.jitter)

        def wait(state: RetryCallState) -> float:
            return max(0.0, min(backoff(state), deadline() - time.monotonic()))

        return Retrying(
            stop=(
                stop_after_attempt(self.attempts)
                | stop_after_delay(self.max_delay)
                | stop_when_event_set(abort)
                | _StopAtDeadline(deadline)
            ),
            wait=wait,
            sleep=sleep_using_event(abort),
            retry=retry_if_exception(transient),
            before_sleep=report,
            reraise=True,
        )


@dataclass(frozen=True)
class Cooldown:
    """After a permanent error, leave the server alone a while: no retry storm."""

    first: float = 1.0
    longest: float = 60.0

    def pause(self, failures: int) -> float:
        """Seconds to wait after ``failures`` permanent errors in a row (``failures`` >= 1)."""
        return min(self.first * 2.0 ** max(0, failures - 1), self.longest)


@dataclass(frozen=True)
class ReplayBackoff:
    """When to look into the spool again, and when a file is set aside as a dead letter."""

    idle: float = 1.0  # between two looks into a spool with nothing due
    transient: float = 5.0  # before a file is tried again when the server is down
    permanent: float = 60.0  # ... after a permanent error, doubling each time
    longest: float = 3600.0
    dead_after: int = 5  # permanent failures before a file goes to dead/

    def delay(self, *, transient: bool, failures: int) -> float:
        """Seconds before a file that failed ``failures`` times before is tried again."""
        if transient:
            return self.transient
        return min(self.permanent * 2.0**failures, self.longest)

    def buries(self, *, transient: bool, failures: int) -> bool:
        """Whether a file failing now (after ``failures`` earlier failures) goes to dead/."""
        return not transient and failures + 1 >= self.dead_after


#: For a person replaying by hand: no waiting, nothing set aside.
IMMEDIATE = ReplayBackoff(idle=0.0, transient=0.0, permanent=0.0, dead_after=1 << 30)
