"""Attach a handler to loggers that already exist, idempotently and without duplicates."""

from __future__ import annotations

import logging
from collections.abc import Iterable

__all__ = ["attach_handler"]


def _reaches(logger: logging.Logger, handler: logging.Handler) -> bool:
    """Whether records of ``logger`` already reach ``handler`` through its ancestors."""
    current = logger
    while current.propagate and isinstance(current.parent, logging.Logger):
        current = current.parent
        if handler in current.handlers:
            return True
    return False


def attach_handler(
    handler: logging.Handler,
    loggers: Iterable[str] = ("",),
    *,
    exclusive: bool = False,
) -> list[logging.Logger]:
    """Attach ``handler`` to the named loggers (``""`` is the root) without doubling output.

    - Calling it again, with the same handler or another one of the same ``name``,
      replaces rather than adds: lines are never doubled.
    - A logger whose records already reach ``handler`` by propagation to an ancestor in
      the list is left without it, so each record is written once.
    - ``exclusive=True`` also removes the logger's other handlers (for example the
      plain-text handler that uvicorn installs), so it speaks only through ``handler``.

    Loggers are never disabled; their levels and ``propagate`` flags are left alone.

    Returns:
        the loggers that now hold ``handler`` directly.
    """
    targets = [logging.getLogger(name or None) for name in dict.fromkeys(loggers)]
    for logger in targets:
        for existing in list(logger.handlers):
            same = existing is handler or (
                handler.name is not None and existing.name == handler.name
            )
            if same or exclusive:
                logger.removeHandler(existing)
        logger.addHandler(handler)
    holders = []
    for logger in targets:
        if _reaches(logger, handler):
            logger.removeHandler(handler)
        else:
            holders.append(logger)
    return holders
