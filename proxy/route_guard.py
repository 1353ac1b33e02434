"""The ASGI front door: closes the routes synqra does not account for, and keeps internal addresses in.

In front of LiteLLM's app (and its lazily registered routes): a closed route is answered here with a 403 in
the API's error format (Anthropic's on the Messages paths, OpenAI's elsewhere) before LiteLLM sees it; a
closed WebSocket is refused at the handshake. The body of an accounted route is checked here first
(request_checks.body_problem: a 400 for shapes LiteLLM's own handlers would crash on), then handed on.
On every response LiteLLM's `x-litellm-model-api-base` header, which names the provider address a call went
to (the local backends' loopback ports included), is dropped.
"""
from __future__ import annotations

import json
from typing import Any

import orjson

from proxy.error_format import ANTHROPIC_PATHS
from policies.common.request_checks import body_problem
from proxy.route_policy import RoutePolicy, closed_message

# Response headers that would tell a client where the proxy's backends live.
INTERNAL_HEADERS = frozenset({b"x-litellm-model-api-base"})


def _error_body(path: str, message: str, kind: str, code: str) -> bytes:
    if path.startswith(ANTHROPIC_PATHS):
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _replaying(messages: list[dict[str, Any]], receive: Any) -> Any:
    """A receive() that hands on the messages already read, then the live ones (disconnects)."""
    pending = list(messages)

    async def replay() -> dict[str, Any]:
        return pending.pop(0) if pending else await receive()

    return replay


async def _read_body(receive: Any) -> tuple[bytes, list[dict[str, Any]]]:
    """The whole request body, and the messages that carried it (to hand on unchanged)."""
    chunks, messages = [], []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks), messages


class RouteGuard:
    def __init__(self, app: Any, policy: RoutePolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        method = scope.get("method", "GET") if kind == "http" else "WS"
        verdict = self.policy.verdict(method, path)
        if verdict == "closed":
            if kind == "websocket":
                await send({"type": "websocket.close", "code": 1008, "reason": "route closed by synqra-proxy"})
                return
            await _respond(send, 403, _error_body(path, closed_message(method, path), "permission_error", "route_closed"))
            return
        if verdict == "accounted" and method == "POST":
            raw, messages = await _read_body(receive)
            try:
                problem = body_problem(path, orjson.loads(raw))
            except orjson.JSONDecodeError:
                problem = None  # LiteLLM answers malformed JSON itself, in the API's format
            if problem:
                await _respond(send, 400, _error_body(path, problem, "invalid_request_error", "400"))
                return
            receive = _replaying(messages, receive)

        async def scrubbed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(k.lower() in INTERNAL_HEADERS for k, _ in headers):
                    message = {**message, "headers": [(k, v) for k, v in headers if k.lower() not in INTERNAL_HEADERS]}
            await send(message)

        await self.app(scope, receive, scrubbed if kind == "http" else send)
