"""proxy/client_watch.py: the request's own `receive` tells whether its client has gone, without waiting."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.client_watch import ClientWatch, client_gone


def _gone_inside_a_request(receive: Any) -> bool | None:
    seen: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await client_gone())

    asyncio.run(ClientWatch(app)({"type": "http"}, receive, None))
    return seen[0] if seen else None


def test_a_disconnected_client_is_gone() -> None:
    async def disconnected() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    assert _gone_inside_a_request(disconnected) is True


def test_a_client_still_there_is_not_and_the_check_does_not_wait() -> None:
    async def waiting() -> dict[str, Any]:  # uvicorn's receive once the body is read: waits for a disconnect
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    assert _gone_inside_a_request(waiting) is False


def test_outside_a_request_nobody_is_gone() -> None:
    assert asyncio.run(client_gone()) is False
