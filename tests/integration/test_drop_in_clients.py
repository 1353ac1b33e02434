"""What real clients send, against the running stack: closed routes, Claude Code's model names and
count_tokens, what the local model honours or refuses, embeddings as LangChain sends them, and headers."""

from __future__ import annotations

import json

import anthropic
import httpx
import numpy as np
import openai
import pytest

from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, RunningStack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
HI = [{"role": "user", "content": "What is the capital of France?"}]
TOOL = {
    "type": "function",
    "function": {"name": "weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}},
}


def nothing_billed(providers: dict[str, FakeProvider]) -> bool:
    return all(not p.requests for p in providers.values())


# --- every route is accounted or closed ------------------------------------------------------------


@pytest.mark.parametrize(
    "path,body",
    [
        ("/v1/images/generations", {"model": "gpt-4o", "prompt": "a cat"}),
        ("/v1/audio/speech", {"model": "gpt-4o", "input": "hi", "voice": "alloy"}),
        ("/v1/rerank", {"model": "claude-sonnet", "query": "q", "documents": ["a"]}),
        ("/anthropic/v1/messages", {"model": "claude-sonnet", "max_tokens": 5, "messages": HI}),
        ("/openai/chat/completions", {"model": "gpt-4o", "messages": HI}),
        ("/v1/batches", {"input_file_id": "f", "endpoint": "/v1/chat/completions", "completion_window": "24h"}),
    ],
)
def test_routes_synqra_does_not_account_are_closed(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, body: dict
) -> None:
    r = httpx.post(stack.base_url + path, json=body, headers=AUTH, timeout=60)
    assert r.status_code == 403, r.text
    err = r.json()
    message = err["error"]["message"]
    assert "closed" in message and "open_routes" in message
    if path.startswith("/anthropic"):
        assert err["type"] == "error" and err["error"]["type"] == "permission_error"
    assert nothing_billed(fresh_providers)


def test_health_that_calls_every_model_is_closed_but_liveness_is_not(stack: RunningStack) -> None:
    assert httpx.get(stack.base_url + "/health", headers=AUTH, timeout=30).status_code == 403
    assert httpx.get(stack.base_url + "/health/liveliness", timeout=30).status_code == 200


def test_internal_addresses_never_leave_in_headers(stack: RunningStack) -> None:
    for path, body in (
        ("/v1/chat/completions", {"model": "local-llama", "messages": HI, "max_tokens": 3}),
        ("/v1/messages", {"model": "claude-sonnet", "messages": HI, "max_tokens": 3}),
        ("/v1/chat/completions", {"model": "claude-sonnet", "messages": HI, "max_tokens": 3, "stream": True}),
    ):
        r = httpx.post(stack.base_url + path, json=body, headers=AUTH, timeout=120)
        assert r.status_code == 200
        assert "x-litellm-model-api-base" not in r.headers and "127.0.0.1" not in " ".join(r.headers.values())


# --- Claude Code: its own model names, count_tokens -----------------------------------------------


@pytest.mark.parametrize(
    "name,routed",
    [
        ("claude-opus-4-1-20250805", False),
        ("claude-sonnet-4-5-20250929", False),
        ("claude-opus-4-5", False),
        ("claude-haiku-4-5-20251001", True),
        ("claude-3-5-haiku-latest", True),
    ],
)
def test_claude_model_names_map_to_tiers(anthropic_client: anthropic.Anthropic, name: str, routed: bool) -> None:
    raw = anthropic_client.messages.with_raw_response.create(model=name, max_tokens=16, messages=HI)
    assert raw.http_response.status_code == 200
    assert raw.parse().content
    if routed:  # Haiku is routed like auto
        assert "x-synqra-route-score" in raw.headers
    else:
        assert raw.headers["x-synqra-route"] == "claude-sonnet"


@pytest.mark.parametrize("model", ["local-llama", "auto", "claude-sonnet", "deepseek-chat", "claude-opus-4-1-20250805"])
def test_count_tokens_answers_for_every_model(
    anthropic_client: anthropic.Anthropic, fresh_providers: dict[str, FakeProvider], model: str
) -> None:
    short = anthropic_client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "Hello"}])
    long = anthropic_client.messages.count_tokens(
        model=model,
        system="You are a careful assistant.",
        tools=[{"name": "weather", "input_schema": {"type": "object"}}],
        messages=[{"role": "user", "content": "Hello, tell me about the weather in Paris and in Rome today."}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert nothing_billed(fresh_providers), "counting tokens calls no provider"


def test_count_tokens_errors_are_anthropic_errors(stack: RunningStack) -> None:
    r = httpx.post(
        stack.base_url + "/v1/messages/count_tokens", json={"model": "nope", "messages": HI}, headers=AUTH, timeout=30
    )
    assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error"
    r = httpx.post(
        stack.base_url + "/v1/messages/count_tokens",
        json={"model": "auto", "messages": HI},
        headers={"x-api-key": "wrong"},
        timeout=30,
    )
    assert r.status_code == 401 and r.json()["type"] == "error"


# --- the local model: honoured, routed up, or refused; never less than asked ---------------------


def test_local_model_refuses_what_it_cannot_do_by_name(
    openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic, fresh_providers: dict[str, FakeProvider]
) -> None:
    with pytest.raises(openai.BadRequestError, match="tools"):
        openai_client.chat.completions.create(model="local-llama", messages=HI, max_tokens=8, tools=[TOOL])
    with pytest.raises(openai.BadRequestError, match="tool_choice|tools"):
        openai_client.chat.completions.create(
            model="local-llama",
            messages=HI,
            max_tokens=8,
            tools=[TOOL],
            tool_choice={"type": "function", "function": {"name": "weather"}},
        )
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        anthropic_client.messages.create(
            model="local-llama", max_tokens=2048, messages=HI, thinking={"type": "enabled", "budget_tokens": 1024}
        )
    assert nothing_billed(fresh_providers)


def test_auto_sends_what_the_local_model_cannot_do_to_a_tier_that_can(
    anthropic_client: anthropic.Anthropic, openai_client: openai.OpenAI
) -> None:
    raw = anthropic_client.messages.with_raw_response.create(
        model="auto", max_tokens=2048, messages=HI, thinking={"type": "enabled", "budget_tokens": 1024}
    )
    assert raw.headers["x-synqra-route"] == "claude-sonnet", "the tier that supports extended thinking"
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=HI, max_tokens=8, tools=[TOOL])
    assert raw.headers["x-synqra-route"] != "local-llama"


def test_local_model_honours_n_top_logprobs_and_json(openai_client: openai.OpenAI) -> None:
    r = openai_client.chat.completions.create(
        model="local-llama", messages=HI, max_tokens=4, n=2, logprobs=True, top_logprobs=2
    )
    assert len(r.choices) == 2
    assert all(len(t.top_logprobs) == 2 for t in r.choices[0].logprobs.content)
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    r = openai_client.chat.completions.create(
        model="local-llama",
        messages=HI,
        max_tokens=48,
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}},
    )
    text = r.choices[0].message.content
    if r.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(text)["city"], str)
    else:
        assert text.lstrip().startswith("{")


# --- embeddings as LangChain sends them ------------------------------------------------------------


def test_embeddings_take_token_ids_and_auto(openai_client: openai.OpenAI) -> None:
    by_text = openai_client.embeddings.create(model="local-embed", input=["hello world"]).data[0].embedding
    by_ids = (
        openai_client.embeddings.create(model="auto", input=[[15339, 1917]]).data[0].embedding
    )  # cl100k "hello world"
    assert len(by_ids) == 384 and np.allclose(by_text, by_ids, atol=1e-5)


def test_embeddings_refuse_sizes_and_empty_inputs(openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="dimensions"):
        openai_client.embeddings.create(model="local-embed", input="hi", dimensions=128)
    assert (
        len(openai_client.embeddings.create(model="local-embed", input="hi", dimensions=384).data[0].embedding) == 384
    )
    with pytest.raises(openai.BadRequestError, match="input"):
        openai_client.embeddings.create(model="auto", input=[[], []])


# --- a client's bad request is that client's ----------------------------------------------------


def assert_served_locally(base_url: str) -> None:
    """A plain local-llama request is answered by the local model, not by a fallback (nothing cooled it down)."""
    r = httpx.post(
        base_url + "/v1/chat/completions",
        json={"model": "local-llama", "messages": HI, "max_tokens": 4},
        headers=AUTH,
        timeout=60,
    )
    assert (
        r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama" and "x-synqra-fallback" not in r.headers
    )


def test_a_client_error_from_the_local_model_is_not_paid_for_and_cools_nothing(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    for body in (
        {"model": "local-llama", "messages": HI, "max_tokens": 4, "n": 99},
        {"model": "local-llama", "messages": HI, "max_tokens": 4, "response_format": {"type": "xml"}},
    ):
        r = httpx.post(stack.base_url + "/v1/chat/completions", json=body, headers=AUTH, timeout=60)
        assert r.status_code == 400, r.text
    for _ in range(2):  # no cooldown: the next requests of every client are still served locally, for free
        assert_served_locally(stack.base_url)
    assert nothing_billed(fresh_providers)


def test_a_404_from_the_local_backend_is_not_retried_on_a_paid_tier(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path
) -> None:
    """A local backend that lacks an endpoint (here /v1/responses, with LiteLLM's bridge switched off) answers
    404: the client gets it; DeepSeek is not paid to answer instead, and the local model is not cooled down."""
    from tests.stack import start_stack

    def no_bridge(cfg: dict) -> None:
        for m in cfg["model_list"]:
            m["litellm_params"].pop("use_chat_completions_api", None)

    other = start_stack(tmp_path / "nobridge", providers, backends_of=stack, edit=no_bridge)
    try:
        for p in providers.values():
            p.reset()
        r = httpx.post(
            other.base_url + "/v1/responses",
            json={"model": "local-llama", "input": "hi", "max_output_tokens": 4},
            headers=AUTH,
            timeout=60,
        )
        assert r.status_code == 404, r.text
        assert "not retried" in r.text
        assert_served_locally(other.base_url)
        assert nothing_billed(providers)
        status = httpx.get(other.base_url + "/api/budget/status", headers=AUTH, timeout=30).json()
        assert wait_until(
            lambda: httpx.get(other.base_url + "/api/budget/status", headers=AUTH, timeout=30).json()["reserved"] == 0,
            10,
        )
        assert status["monthly_used"] == 0
    finally:
        other.stop()
