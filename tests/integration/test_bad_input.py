"""Bad input gets a clear 4xx in the API's own error format, and the proxy keeps serving."""
from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.stack import MASTER_KEY

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
MSG = [{"role": "user", "content": "hi"}]
TWO_MB = "word " * (2 * 1024 * 1024 // 5)

OPENAI_CASES: list[tuple[str, dict[str, Any], int, str]] = [
    ("malformed json", {"content": b'{"model": "local-llama", "messages": [', "headers": {**AUTH, "content-type": "application/json"}}, 400, "json"),
    ("missing messages", {"json": {"model": "local-llama"}, "headers": AUTH}, 400, "messages"),
    ("unknown model", {"json": {"model": "no-such-model", "messages": MSG}, "headers": AUTH}, 400, "no-such-model"),
    ("wrong key", {"json": {"model": "local-llama", "messages": MSG}, "headers": {"Authorization": "Bearer sk-wrong"}}, 401, "invalid api key"),
    ("absent key", {"json": {"model": "local-llama", "messages": MSG}}, 401, "missing api key"),
    ("2 MB message", {"json": {"model": "local-llama", "messages": [{"role": "user", "content": TWO_MB}]}, "headers": AUTH}, 400, "too long"),
    ("negative max_tokens", {"json": {"model": "local-llama", "messages": MSG, "max_tokens": -1}, "headers": AUTH}, 400, "max_tokens"),
    ("string max_tokens", {"json": {"model": "local-llama", "messages": MSG, "max_tokens": "ten"}, "headers": AUTH}, 400, "max_tokens"),
]

ANTHROPIC_CASES: list[tuple[str, dict[str, Any], int, str, str]] = [
    ("malformed json", {"content": b'{"model": ', "headers": {**AUTH, "content-type": "application/json"}}, 400, "invalid_request_error", "json"),
    ("missing messages", {"json": {"model": "claude-sonnet", "max_tokens": 10}, "headers": AUTH}, 400, "invalid_request_error", "messages"),
    ("unknown model", {"json": {"model": "no-such-model", "max_tokens": 10, "messages": MSG}, "headers": AUTH}, 400, "invalid_request_error", "no-such-model"),
    ("wrong key", {"json": {"model": "claude-sonnet", "max_tokens": 10, "messages": MSG}, "headers": {"x-api-key": "sk-wrong"}}, 401, "authentication_error", "invalid api key"),
    ("absent key", {"json": {"model": "claude-sonnet", "max_tokens": 10, "messages": MSG}}, 401, "authentication_error", "missing api key"),
    ("2 MB message", {"json": {"model": "claude-sonnet", "max_tokens": 10, "messages": [{"role": "user", "content": TWO_MB * 2}]}, "headers": AUTH}, 400, "invalid_request_error", "too long"),
    ("zero max_tokens", {"json": {"model": "claude-sonnet", "max_tokens": 0, "messages": MSG}, "headers": AUTH}, 400, "invalid_request_error", "max_tokens"),
]


def _still_serving(base_url: str) -> None:
    r = httpx.post(
        f"{base_url}/v1/chat/completions",
        json={"model": "local-llama", "messages": [{"role": "user", "content": "Say yes."}], "max_tokens": 4},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("name", "kwargs", "status", "needle"), OPENAI_CASES, ids=[c[0] for c in OPENAI_CASES])
def test_openai_route_errors(stack, fresh_providers, name, kwargs, status, needle) -> None:
    r = httpx.post(f"{stack.base_url}/v1/chat/completions", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert needle in err["message"].lower()
    assert err["type"] and "param" in err and "code" in err
    assert not any(p.requests for p in fresh_providers.values()), "rejected before any paid call"
    _still_serving(stack.base_url)


@pytest.mark.parametrize(("name", "kwargs", "status", "etype", "needle"), ANTHROPIC_CASES, ids=[c[0] for c in ANTHROPIC_CASES])
def test_anthropic_route_errors(stack, fresh_providers, name, kwargs, status, etype, needle) -> None:
    r = httpx.post(f"{stack.base_url}/v1/messages", timeout=60, **kwargs)
    assert r.status_code == status, r.text
    body = r.json()
    assert body["type"] == "error" and body["error"]["type"] == etype
    assert needle in body["error"]["message"].lower()
    assert not any(p.requests for p in fresh_providers.values())
    _still_serving(stack.base_url)


def test_sdk_raises_typed_errors(openai_client, anthropic_client) -> None:
    import anthropic
    import openai

    with pytest.raises(openai.BadRequestError):
        openai_client.chat.completions.create(model="local-llama", messages=MSG, max_tokens=-3)
    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client.with_options(api_key="sk-wrong").messages.create(model="claude-sonnet", max_tokens=5, messages=MSG)
