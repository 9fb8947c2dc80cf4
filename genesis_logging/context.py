"""Context fields of the TDD loop (spec_id, iteration, ...) bound to the running code.

Built on :mod:`contextvars`, one variable per key, so it follows threads started with a
copied context and asyncio tasks, and every :func:`log_context` restores the previous
values on exit.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar, Token
from typing import Any, Final, TypeVar

from ._values import INVALID, coerce_field
from .schema import FIELDS_BY_NAME, SETTABLE_FIELDS

__all__ = [
    "CONTEXT_ATTRIBUTE",
    "ENVIRONMENT_FIELDS",
    "ContextFilter",
    "context_bound",
    "current_context",
    "log_context",
]

#: Record attribute under which :class:`ContextFilter` leaves its snapshot.
CONTEXT_ATTRIBUTE: Final = "_genesis_context"

_F = TypeVar("_F", bound=Callable[..., Any])


class _Unset:
    __slots__ = ()


_UNSET: Final = _Unset()
_VARS: dict[str, ContextVar[object]] = {}
_VAR_ITEMS: tuple[tuple[str, ContextVar[object]], ...] = ()
_VARS_LOCK = threading.Lock()


def _variable(name: str) -> ContextVar[object]:
    var = _VARS.get(name)
    if var is None:
        global _VAR_ITEMS
        with _VARS_LOCK:
            var = _VARS.get(name)
            if var is None:
                var = ContextVar(f"genesis_logging.{name}", default=_UNSET)
                _VARS[name] = var
                _VAR_ITEMS = (*_VAR_ITEMS, (name, var))
    return var


#: Environment variables ``genesis-logging run`` sets for the command it runs, so that a
#: program logging through genesis-logging stamps its records with the run's context.
ENVIRONMENT_FIELDS: Final = {
    "spec_id": "GENESIS_SPEC_ID",
    "iteration": "GENESIS_ITERATION",
    "sprint_id": "GENESIS_SPRINT_ID",
    "task_id": "GENESIS_TASK_ID",
}


def _environment_context(environ: Mapping[str, str]) -> dict[str, object]:
    """The context a parent ``genesis-logging run`` handed down (invalid values ignored)."""
    found: dict[str, object] = {}
    for name, variable in ENVIRONMENT_FIELDS.items():
        value = environ.get(variable)
        if not value:
            continue
        field = SETTABLE_FIELDS[name]
        coerced = coerce_field(field, value)
        if coerced is not INVALID:
            found[name] = coerced
    return found


_INHERITED: Final = _environment_context(os.environ)


def context_bound() -> bool:
    """Whether any context could be current: false until the first :func:`log_context`
    in a process not started by ``genesis-logging run`` (a check cheaper than a copy)."""
    return bool(_VAR_ITEMS or _INHERITED)


def current_context() -> dict[str, object]:
    """Return the fields bound in the current context, innermost values winning over
    those inherited from ``genesis-logging run`` (``GENESIS_SPEC_ID`` ...)."""
    snapshot: dict[str, object] = dict(_INHERITED) if _INHERITED else {}
    for name, var in _VAR_ITEMS:
        value = var.get()
        if value is not _UNSET:
            snapshot[name] = value
    return snapshot


def _validate(fields: Mapping[str, object]) -> dict[str, object]:
    valid: dict[str, object] = {}
    for name, value in fields.items():
        if value is None:
            continue  # "not given": optional parameters pass through untouched
        if name in FIELDS_BY_NAME and name not in SETTABLE_FIELDS:
            raise ValueError(
                f"log_context: {name!r} is derived from the log record and cannot be bound"
            )
        field = SETTABLE_FIELDS.get(name)
        if field is None:
            valid[name] = value
            continue
        if field.bounds is not None:
            coerced = coerce_field(field, value) if isinstance(value, int) else INVALID
            if coerced is INVALID:
                low, high = field.bounds
                raise ValueError(
                    f"log_context: {name} must be an integer in [{low}, {high}], got {value!r}"
                )
            valid[name] = coerced
        elif isinstance(value, str):
            valid[name] = value
        else:
            raise ValueError(f"log_context: {name} must be a string, got {type(value).__name__}")
    return valid


class AsyncAwareDecorator(contextlib.ContextDecorator):
    """A ``ContextDecorator`` that also wraps ``async`` functions around their awaits.

    Subclasses provide ``_recreate_cm`` returning a fresh context manager per call, so a
    decorated function stays re-entrant and thread-safe.
    """

    def __call__(self, func: _F) -> _F:
        if inspect.iscoroutinefunction(func):
            coroutine_function: Callable[..., Awaitable[Any]] = func

            @functools.wraps(func)
            async def run_in_context(*args: Any, **kwargs: Any) -> Any:
                fresh: Any = self._recreate_cm()  # a subclass instance: a context manager
                with fresh:
                    return await coroutine_function(*args, **kwargs)

            return run_in_context  # type: ignore[return-value]
        return super().__call__(func)


class log_context(AsyncAwareDecorator):  # noqa: N801 - used like a function
    """Bind TDD-loop fields for the records logged inside a block or function.

    Usable as ``with log_context(spec_id="spec_001", iteration=2): ...``, as a decorator
    of plain or ``async`` functions, and nested: inner values win, and each exit restores
    exactly what was bound before. ``None`` means "not given" and binds nothing.

    Raises:
        ValueError: a value is invalid for its field (``iteration=-1``,
            ``iteration="abc"``, ``spec_id=1``) or names a derived field (``level``).
    """

    def __init__(
        self,
        *,
        spec_id: str | None = None,
        iteration: int | None = None,
        sprint_id: str | None = None,
        task_id: str | None = None,
        **more: object,
    ) -> None:
        given: dict[str, object] = {
            "spec_id": spec_id,
            "iteration": iteration,
            "sprint_id": sprint_id,
            "task_id": task_id,
        }
        given.update(more)
        self._fields = _validate(given)
        self._tokens: list[list[tuple[ContextVar[object], Token[object]]]] = []

    @property
    def fields(self) -> dict[str, object]:
        """The validated fields this context binds."""
        return dict(self._fields)

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"log_context({inner})"

    def __enter__(self) -> log_context:
        tokens = [
            (var, var.set(value))
            for var, value in ((_variable(k), v) for k, v in self._fields.items())
        ]
        self._tokens.append(tokens)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for var, token in reversed(self._tokens.pop()):
            var.reset(token)

    def _recreate_cm(self) -> log_context:
        # A fresh instance per call keeps decorated functions re-entrant and thread-safe.
        clone = object.__new__(type(self))
        clone._fields = self._fields
        clone._tokens = []
        return clone


class ContextFilter(logging.Filter):
    """Stamp the current context on each record, so it survives a hop between threads.

    Attach it where records are created (a logger, or a handler such as a stdlib
    ``QueueHandler``): it stores a snapshot under :data:`CONTEXT_ATTRIBUTE` and sets each
    field as a record attribute unless ``extra=`` already did, so plain formatters can
    use ``%(spec_id)s`` too. It never rejects a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        attributes = record.__dict__
        if CONTEXT_ATTRIBUTE in attributes:
            return True  # stamped earlier, in the caller's thread: keep that one
        snapshot = current_context()
        attributes[CONTEXT_ATTRIBUTE] = snapshot
        for name, value in snapshot.items():
            attributes.setdefault(name, value)
        return True
