"""Every route LiteLLM's proxy mounts is accounted, free or closed: a route a LiteLLM upgrade adds is closed.

LiteLLM's route table is walked in a fresh interpreter with its lazily loaded routers registered up front
(LITELLM_DISABLE_LAZY_ROUTES), as a running proxy would have them after their first use.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from proxy.route_guard import RouteGuard
from proxy.route_policy import ACCOUNTED, FREE, RoutePolicy

REPO = Path(__file__).resolve().parents[2]
WALK = r"""
import json, os, sys
from policies.common.offline import apply_offline_env
apply_offline_env()
os.environ["LITELLM_DISABLE_LAZY_ROUTES"] = "1"
os.environ["CONFIG_FILE_PATH"] = sys.argv[1]
from litellm.proxy import _lazy_features
from litellm.proxy.proxy_server import app
for feat in _lazy_features.LAZY_FEATURES:  # what the first matching request would register
    try:
        _lazy_features._register_feature(app, feat, __import__("importlib").import_module(feat.module_path), _lazy_features.LAZY_FEATURES)
    except Exception:
        pass
def walk(routes, prefix=""):
    for r in routes:
        kind = type(r).__name__
        if kind == "_IncludedRouter":
            yield from walk(r.original_router.routes, prefix + r.include_context.prefix)
        elif kind == "Mount":
            yield ["MOUNT", prefix + r.path]
        elif kind == "APIWebSocketRoute" or kind == "WebSocketRoute":
            yield ["WS", prefix + r.path]
        else:
            for m in sorted(getattr(r, "methods", None) or ["GET"]):
                yield [m, prefix + r.path]
print(json.dumps(sorted({tuple(x) for x in walk(app.routes)})))
"""


@pytest.fixture(scope="module")
def litellm_routes() -> list[tuple[str, str]]:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run(
        [sys.executable, "-c", WALK, str(REPO / "litellm_config.yaml")],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return [tuple(x) for x in json.loads(out.stdout.strip().splitlines()[-1])]


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


@pytest.mark.stack
def test_the_table_is_walked_whole(litellm_routes: list[tuple[str, str]]) -> None:
    paths = {p for _, p in litellm_routes}
    # Routes of the lazily loaded routers are in the walk too (e.g. /v1/messages, pass-through, images).
    assert {"/v1/chat/completions", "/v1/messages", "/v1/images/generations", "/v1/audio/speech"} <= paths
    assert len(litellm_routes) > 500


@pytest.mark.stack
def test_only_the_allow_list_is_served_and_all_of_it_exists(litellm_routes: list[tuple[str, str]]) -> None:
    policy = RoutePolicy()
    served = {
        (m, p) for m, p in litellm_routes if m not in ("MOUNT", "WS") and policy.verdict(m, _concrete(p)) != "closed"
    }
    # Exactly the templates of the allow-list that LiteLLM mounts: nothing else (e.g. GET /v1/responses/{id},
    # /v1/messages/batches, /anthropic/...) slips through by a loose pattern.
    allowed = set(ACCOUNTED) | set(FREE)
    allowed_paths = {p for _, p in allowed}
    assert served == {(m, p) for m, p in litellm_routes if (m, p) in allowed or (m == "OPTIONS" and p in allowed_paths)}
    # Every accounted route is one LiteLLM still has (a rename by an upgrade would otherwise go unnoticed).
    assert set(ACCOUNTED) <= set(litellm_routes)
    closed = [r for r in litellm_routes if r not in served]
    assert len(closed) > 500, "images, audio, rerank, batches, files, fine-tuning, realtime, pass-through, management"


@pytest.mark.stack
def test_every_closed_route_is_answered_before_litellm(litellm_routes: list[tuple[str, str]]) -> None:
    """The guard in front of an app that records what reaches it: closed routes never do."""
    reached: list[str] = []

    async def downstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"x-litellm-model-api-base", b"http://10.0.0.1")],
            }
        )
        await send({"type": "http.response.body", "body": b"{}"})

    guard = RouteGuard(downstream, RoutePolicy())

    async def call(method: str, path: str) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        sent: list[dict[str, Any]] = []
        # A body every open route's check accepts (text completions refuse a 'messages' field).
        text_completion = path.endswith("/completions") and "chat" not in path
        fields = {"prompt": "x"} if text_completion else {"messages": [{"role": "user", "content": "x"}], "input": "x"}
        body = json.dumps({"model": "m", **fields}).encode()
        inbox = [{"type": "http.request", "body": body, "more_body": False}]
        kind = "websocket" if method == "WS" else "http"
        scope = {"type": kind, "path": path, "method": "GET" if kind == "websocket" else method, "headers": []}

        async def receive() -> dict[str, Any]:
            return inbox.pop(0) if inbox else {"type": "http.disconnect"}

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await guard(scope, receive, send)
        if kind == "websocket":
            return (403 if sent and sent[0]["type"] == "websocket.close" else 101), b"", []
        start = next(m for m in sent if m["type"] == "http.response.start")
        return (
            start["status"],
            b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"),
            start["headers"],
        )

    policy = RoutePolicy()
    for method, path in litellm_routes:
        concrete = _concrete(path) + ("/anything" if method == "MOUNT" else "")
        m = "GET" if method == "MOUNT" else method
        reached.clear()
        status, body, headers = asyncio.run(call(m, concrete))
        if policy.verdict(m if m != "WS" else "WS", concrete) == "closed":
            assert status == 403, (method, path, status)
            assert concrete not in reached, (method, path)
            if method != "WS":
                error = json.loads(body)
                message = error["error"]["message"]
                assert "closed" in message and "open_routes" in message
        else:
            assert status == 200 and concrete in reached, (method, path, status)
            assert all(k != b"x-litellm-model-api-base" for k, _ in headers), "internal addresses stay inside"


def test_an_operator_can_open_a_route_by_name() -> None:
    p = RoutePolicy(("GET /key/info", "/v1/rerank"))
    assert p.verdict("GET", "/key/info") == "opened" and p.verdict("POST", "/key/info") == "closed"
    assert p.verdict("POST", "/v1/rerank") == "opened"
    assert p.verdict("POST", "/v1/images/generations") == "closed"
    assert p.verdict("OPTIONS", "/v1/chat/completions") == "accounted", "a CORS preflight of a served route"


def test_bad_bodies_of_accounted_routes_are_a_400_in_the_apis_format() -> None:
    async def downstream(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise AssertionError("a bad body must not reach LiteLLM")

    guard = RouteGuard(downstream, RoutePolicy())

    async def call(path: str, body: Any) -> tuple[int, dict[str, Any]]:
        sent: list[dict[str, Any]] = []
        inbox = [{"type": "http.request", "body": json.dumps(body).encode(), "more_body": False}]

        async def receive() -> dict[str, Any]:
            return inbox.pop(0)

        async def send(m: dict[str, Any]) -> None:
            sent.append(m)

        await guard({"type": "http", "path": path, "method": "POST", "headers": []}, receive, send)
        return sent[0]["status"], json.loads(sent[1]["body"])

    status, err = asyncio.run(call("/v1/embeddings", {"model": "auto", "input": [[], []]}))
    assert status == 400 and "input" in err["error"]["message"]
    status, err = asyncio.run(
        call("/v1/messages", {"model": "m", "system": 10**12, "messages": [{"role": "user", "content": "x"}]})
    )
    assert status == 400 and err["type"] == "error" and err["error"]["type"] == "invalid_request_error"
    status, err = asyncio.run(call("/v1/chat/completions", [1, 2]))
    assert status == 400 and "JSON object" in err["error"]["message"]
