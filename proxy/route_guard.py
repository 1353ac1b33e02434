"""The ASGI front door: closes the routes synqra does not account for, and keeps internal addresses in.

In front of LiteLLM's app (and its lazily registered routes): a closed route is answered here with a 403 in
the API's error format (Anthropic's on the Messages paths, OpenAI's elsewhere) before LiteLLM sees it; a
closed WebSocket is refused at the handshake. The headers and body of an accounted route (and of
count_tokens) are checked here first (request_checks: a 400 naming the field for shapes LiteLLM's handlers
or provider layer would crash on, or that no provider could accept), then handed on.
On every response LiteLLM's `x-litellm-model-api-base` header, which names the provider address a call went
to (the local backends' loopback ports included), is dropped.
"""

from __future__ import annotations

import json
from typing import Any

from policies.common.cache_ttls import anthropic_ttls_apply
from policies.common.request_checks import (
    banned_field_problem,
    body_problem,
    checks_body,
    header_problem,
    parse_body,
)
from proxy.error_format import ANTHROPIC_PATHS
from proxy.route_policy import RoutePolicy, closed_message
from proxy.runtime import get_runtime

# Bodies LiteLLM reads as form fields rather than JSON (litellm/proxy/common_utils/http_parsing_utils.py).
FORM_TYPES = frozenset({b"application/x-www-form-urlencoded", b"multipart/form-data"})
# Response headers that would tell a client where the proxy's backends live.
INTERNAL_HEADERS = frozenset({b"x-litellm-model-api-base"})


def _error_body(path: str, message: str, kind: str, code: str) -> bytes:
    if path.startswith(ANTHROPIC_PATHS):
        return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()
    return json.dumps({"error": {"message": message, "type": kind, "param": None, "code": code}}).encode()


async def _respond(send: Any, status: int, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _takes_token_ids(model: str) -> bool:
    """Only the local model reads a prompt of token ids (its own vocabulary, local_backends/llama_server.py)."""
    try:
        cfg = get_runtime().config
    except RuntimeError:  # the guard in front of an app without synqra's runtime: nothing to say
        return True
    return cfg.canonical(cfg.resolve_requested(model)) == cfg.synqra.backends.llama.model_alias


def _anthropic_ttls(model: str) -> bool:
    """Whether `model` may reach a deployment of Anthropic's API (its cache_control TTLs are "5m" and "1h" only)."""
    try:
        cfg = get_runtime().config
    except RuntimeError:  # no synqra runtime: every model is checked
        return True
    return anthropic_ttls_apply(cfg, model)


def _banned_field(path: str, body: Any) -> str | None:
    """A field LiteLLM bans from the body, judged with the proxy's own settings and deployments."""
    from litellm.proxy import proxy_server  # LiteLLM's app, which this guard is in front of

    return banned_field_problem(path, body, proxy_server.general_settings, proxy_server.llm_router)


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

    @staticmethod
    async def _check(scope: dict[str, Any], receive: Any) -> tuple[str | None, Any]:
        """(problem, receive) for a request whose body synqra checks: its headers, then its JSON body
        (request_checks), read here and handed on unchanged."""
        headers = scope.get("headers") or []
        problem = header_problem(headers)
        if problem:
            return problem, receive
        raw, messages = await _read_body(receive)
        receive = _replaying(messages, receive)
        content_type = next((v for k, v in headers if k.lower() == b"content-type"), b"").split(b";")[0].strip().lower()
        if content_type in FORM_TYPES:  # LiteLLM reads form fields, not JSON; the hooks check what it reads
            return None, receive
        body, problem = parse_body(raw)
        problem = problem or body_problem(scope["path"], body, _takes_token_ids, _anthropic_ttls)
        return problem or _banned_field(scope["path"], body), receive

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
            await _respond(
                send, 403, _error_body(path, closed_message(method, path), "permission_error", "route_closed")
            )
            return
        if verdict in ("accounted", "free") and method == "POST" and checks_body(path):
            problem, receive = await self._check(scope, receive)
            if problem:
                await _respond(send, 400, _error_body(path, problem, "invalid_request_error", "400"))
                return

        async def scrubbed(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if any(k.lower() in INTERNAL_HEADERS for k, _ in headers):
                    message = {**message, "headers": [(k, v) for k, v in headers if k.lower() not in INTERNAL_HEADERS]}
            await send(message)

        await self.app(scope, receive, scrubbed if kind == "http" else send)
