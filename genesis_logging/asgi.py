"""Deliver queued records when an ASGI app's lifespan ends (no framework imported).

For apps that prefer their lifespan to a signal hook: ``FastAPI(lifespan=lifespan)``, or
any ASGI app wrapped as ``DeliverOnShutdown(app)``. At the lifespan's shutdown every open
:class:`~genesis_logging.ClickHouseHandler` is drained within its ``shutdown_timeout``
(in a thread, so the event loop keeps serving what still runs). Records logged after it
— the server's own "Finished server process" — are only delivered by a normal exit or
by ``drain_on_signals``; see ``docs/services.md``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

from .signals import flush_handlers

__all__ = ["DeliverOnShutdown", "lifespan"]

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]


async def _flush() -> None:
    await asyncio.to_thread(flush_handlers)


@asynccontextmanager
async def lifespan(app: object = None) -> AsyncIterator[None]:
    """A lifespan that drains the handlers at shutdown: ``FastAPI(lifespan=lifespan)``.

    Inside an app's own lifespan, ``async with lifespan():`` around its ``yield`` does
    the same.
    """
    try:
        yield
    finally:
        await _flush()


class DeliverOnShutdown:
    """ASGI middleware: before the server hears "shutdown complete", drain the handlers.

    Args:
        app: the ASGI application; every scope other than ``lifespan`` passes through.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def send_after_flush(message: Message) -> None:
            if message["type"] in ("lifespan.shutdown.complete", "lifespan.shutdown.failed"):
                await _flush()
            await send(message)

        await self.app(scope, receive, send_after_flush)
