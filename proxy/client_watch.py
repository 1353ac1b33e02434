"""Whether the client of the request being handled is still connected.

ASGI middleware keeps each HTTP request's `receive` in a context variable; `client_gone()` asks it, without
waiting, whether the client has disconnected. The quality gate asks before each paid escalation of a non-streamed
answer: a client that timed out and left would otherwise have its cascade run on (local, then DeepSeek, then
Claude), paid for with nobody to deliver to, and an SDK that retries on a timeout starts it all again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
App = Callable[[MutableMapping[str, Any], Receive, Callable[[Message], Awaitable[None]]], Awaitable[None]]

_RECEIVE: ContextVar[Receive | None] = ContextVar("synqra_client_receive", default=None)


class ClientWatch:
    """Outermost middleware: the server's own `receive` (no wrapper between) is the one that reports a disconnect."""

    def __init__(self, app: App) -> None:
        self.app = app

    async def __call__(
        self, scope: MutableMapping[str, Any], receive: Receive, send: Callable[[Message], Awaitable[None]]
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        token = _RECEIVE.set(receive)
        try:
            await self.app(scope, receive, send)
        finally:
            _RECEIVE.reset(token)


async def client_gone() -> bool:
    """True once the client of the current request has disconnected. Only for a request whose body has been read
    and whose response is not being streamed: nothing else may be reading `receive` meanwhile."""
    receive = _RECEIVE.get()
    if receive is None:
        return False
    try:
        message = await asyncio.wait_for(receive(), timeout=0.001)
    except TimeoutError:
        return False
    return message.get("type") == "http.disconnect"
