"""Errors on the Anthropic Messages route in Anthropic's format.

LiteLLM formats errors raised before its /v1/messages handler runs (bad JSON,
authentication) the OpenAI way: {"error": {"message", "type", ...}}. The
Anthropic SDK expects {"type": "error", "error": {"type", "message"}}; this ASGI
middleware rewrites such bodies on the Messages routes and leaves everything
else untouched (no buffering of successful or streamed responses).
"""

from __future__ import annotations

import json
from typing import Any

ANTHROPIC_PATHS = ("/v1/messages", "/anthropic/v1/messages")

# HTTP status -> Anthropic error type (https://docs.anthropic.com/en/api/errors)
ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}


def to_anthropic_error(status: int, body: Any) -> dict[str, Any] | None:
    """The Anthropic form of an OpenAI-style error body, or None if it is not one."""
    if not isinstance(body, dict) or body.get("type") == "error" or not isinstance(body.get("error"), dict):
        return None
    message = str(body["error"].get("message") or "error")
    return {"type": "error", "error": {"type": ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": message}}


class AnthropicErrorFormat:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(ANTHROPIC_PATHS):
            await self.app(scope, receive, send)
            return
        held: dict[str, Any] = {}
        chunks: list[bytes] = []

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                if message["status"] < 400:
                    await send(message)
                    return
                held["start"] = message
                return
            if "start" not in held:
                await send(message)
                return
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return
            start, raw = held.pop("start"), b"".join(chunks)
            try:
                converted = to_anthropic_error(start["status"], json.loads(raw))
            except ValueError:
                converted = None
            if converted is not None:
                raw = json.dumps(converted).encode()
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            headers.append((b"content-length", str(len(raw)).encode()))
            await send({**start, "headers": headers})
            await send({"type": "http.response.body", "body": raw})

        await self.app(scope, receive, wrapped)
