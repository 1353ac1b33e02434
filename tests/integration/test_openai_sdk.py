"""The official openai SDK against the running proxy: local model, embeddings, cloud models."""

from __future__ import annotations

import base64

import numpy as np
import pytest


def test_chat_local_llama_generates_text_and_counts_usage(openai_client) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="local-llama", messages=[{"role": "user", "content": "What is the capital of France?"}], max_tokens=24
    )
    r = raw.parse()
    assert r.choices[0].message.content.strip(), "the local model must generate non-empty text"
    assert r.usage.prompt_tokens > 0 and r.usage.completion_tokens > 0
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens
    assert raw.headers["x-synqra-route"] == "local-llama"
    assert raw.headers["x-synqra-request-id"].startswith("synqra-")


def test_streaming_chat_local_llama(openai_client) -> None:
    stream = openai_client.chat.completions.create(
        model="local-llama",
        messages=[{"role": "user", "content": "Name three colours."}],
        max_tokens=24,
        temperature=0,  # greedy: a sampled answer of the small test model was once only whitespace
        stream=True,
        stream_options={"include_usage": True},
    )
    text, usage, chunks = [], None, 0
    for ch in stream:
        chunks += 1
        if ch.choices and ch.choices[0].delta.content:
            text.append(ch.choices[0].delta.content)
        if ch.usage:
            usage = ch.usage
    assert "".join(text).strip()
    assert chunks > 2, "a stream, not one blob"
    assert usage is not None and usage.completion_tokens > 0


@pytest.mark.parametrize("model", ["local-llama", "gpt-4o", "deepseek-chat", "claude-sonnet"])
@pytest.mark.parametrize("asked", [None, False, True], ids=["unasked", "include_usage-false", "include_usage-true"])
def test_a_streamed_text_completion_has_a_usage_chunk_only_when_asked(openai_client, model: str, asked) -> None:
    """synqra asks every stream for its usage (to record the bill); a client that did not ask gets none. It leaked on
    text completions: gpt-4o and the local model sent a usage-only last chunk (choices [{"index": 0}]) unasked."""
    extra = {} if asked is None else {"stream_options": {"include_usage": asked}}
    stream = openai_client.completions.create(
        model=model, prompt="Question: What is the capital of France?\nAnswer:", max_tokens=6, stream=True, **extra
    )
    chunks = list(stream)
    assert "".join(c.choices[0].text or "" for c in chunks if c.choices), "the answer was relayed"
    assert [c.usage is not None for c in chunks].count(True) == (1 if asked else 0), [c.usage for c in chunks]


def test_embeddings_dimensions_and_semantics(openai_client) -> None:
    r = openai_client.embeddings.create(
        model="local-embed",
        input=["How do I reset my password?", "I forgot my password, how can I change it?", "The tide is high today."],
    )
    assert len(r.data) == 3 and all(len(d.embedding) == 384 for d in r.data)
    assert r.usage.prompt_tokens > 0
    v = np.array([d.embedding for d in r.data])
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.2, "a paraphrase must be closer than an unrelated sentence"


def test_embeddings_base64_and_single_string(openai_client) -> None:
    # Asked for explicitly, base64 comes back as the packed little-endian float32 string.
    r = openai_client.embeddings.create(model="local-embed", input="hello world", encoding_format="base64")
    assert len(r.data) == 1 and isinstance(r.data[0].embedding, str)
    packed = np.frombuffer(base64.b64decode(r.data[0].embedding), dtype="<f4")
    r2 = openai_client.embeddings.create(model="local-embed", input="hello world", encoding_format="float")
    assert packed.shape == (384,)
    assert np.allclose(packed, np.array(r2.data[0].embedding), atol=1e-5)


@pytest.mark.parametrize(
    ("model", "provider", "auth_header", "auth_value", "upstream_model"),
    [
        ("deepseek-chat", "deepseek", "authorization", "Bearer sk-fake-deepseek", "deepseek-chat"),
        ("gpt-4o", "openai", "authorization", "Bearer sk-fake-openai", "gpt-4o"),
        ("claude-sonnet", "anthropic", "x-api-key", "sk-ant-fake", "claude-sonnet-4-5"),
        ("claude-3-5-sonnet-20241022", "anthropic", "x-api-key", "sk-ant-fake", "claude-sonnet-4-5"),
    ],
)
def test_cloud_models_reach_the_right_provider(
    openai_client, fresh_providers, model, provider, auth_header, auth_value, upstream_model
) -> None:
    r = openai_client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], max_tokens=16
    )
    fake = fresh_providers[provider]
    assert r.choices[0].message.content.strip() == fake.default_text
    assert len(fake.requests) == 1
    req = fake.requests[0]
    assert req.headers.get(auth_header) == auth_value
    assert req.body["model"] == upstream_model
    others = [p for name, p in fresh_providers.items() if name != provider]
    assert all(not p.requests for p in others)
    assert r.usage.prompt_tokens == 2 and r.usage.completion_tokens == len(fake.default_text.split())


def test_cloud_streaming_through_proxy(openai_client, fresh_providers) -> None:
    stream = openai_client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "stream please"}], stream=True
    )
    text = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices)
    assert text.strip() == fresh_providers["deepseek"].default_text


def test_models_list(openai_client) -> None:
    ids = {m.id for m in openai_client.models.list().data}
    assert {"local-llama", "local-embed", "deepseek-chat", "claude-sonnet", "gpt-4o", "auto"} <= ids


def test_auto_model_is_routed_by_the_hook(openai_client) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=16
    )
    assert raw.headers["x-synqra-route"] in {"local-llama", "deepseek-chat", "claude-sonnet", "gpt-4o"}
    assert raw.parse().choices[0].message.content.strip()


def test_every_call_is_in_the_ledger_with_cost_and_baseline(stack, openai_client, anthropic_client) -> None:
    import httpx

    calls = [
        openai_client.chat.completions.with_raw_response.create(
            model="local-llama", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        ),
        openai_client.chat.completions.with_raw_response.create(
            model="claude-3-5-sonnet-20241022", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        ),
        openai_client.chat.completions.with_raw_response.create(
            model="deepseek-chat", messages=[{"role": "user", "content": "hi"}], max_tokens=8
        ),
        openai_client.embeddings.with_raw_response.create(model="local-embed", input="hi"),
        anthropic_client.messages.with_raw_response.create(
            model="claude-sonnet", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ),
    ]
    ids = [c.headers["x-synqra-request-id"] for c in calls]
    rows = {
        r["request_id"]: r
        for r in httpx.get(f"{stack.base_url}/api/budget/ledger", headers=stack.headers(), timeout=30).json()["records"]
    }
    local, alias, deepseek, embed, messages = (rows[i] for i in ids)
    assert local["cost_usd"] == 0 and local["baseline_usd"] > 0 and local["local"] is True
    assert alias["served_model"] == "claude-sonnet" and alias["requested_model"] == "claude-3-5-sonnet-20241022"
    assert alias["cost_usd"] == pytest.approx(alias["prompt_tokens"] * 3e-6 + alias["completion_tokens"] * 15e-6)
    assert deepseek["cost_usd"] == pytest.approx(
        deepseek["prompt_tokens"] * 0.28e-6 + deepseek["completion_tokens"] * 0.42e-6
    )
    assert deepseek["baseline_usd"] > deepseek["cost_usd"]
    assert embed["kind"] == "embedding" and embed["cost_usd"] == 0
    assert messages["kind"] == "messages" and messages["cost_usd"] > 0


def test_client_metadata_cannot_stand_in_for_synqra_state(stack, openai_client) -> None:
    """synqra carries its per-request state under metadata["synqra"]; a client sending that key must not
    choose the request id the ledger keys on, nor claim the call is already accounted."""
    import httpx

    forged = {"request_id": "synqra-client-chosen", "accounted": True, "call_type": "acompletion"}
    raw = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=[{"role": "user", "content": "hello there"}], max_tokens=8, metadata={"synqra": forged}
    )
    rid = raw.headers["x-synqra-request-id"]
    assert rid != forged["request_id"] and raw.parse().choices[0].message.content
    body = {
        "model": "claude-sonnet",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "metadata": {"synqra": forged},
        "litellm_metadata": {"synqra": forged},
    }
    r = httpx.post(f"{stack.base_url}/v1/messages", json=body, headers=stack.headers(), timeout=60)
    assert r.status_code == 200 and r.headers["x-synqra-request-id"] != forged["request_id"], r.text
    rows = {
        x["request_id"]: x
        for x in httpx.get(f"{stack.base_url}/api/budget/ledger", headers=stack.headers(), timeout=30).json()["records"]
    }
    assert rows[rid]["served_model"] == "gpt-4o" and rows[rid]["cost_usd"] > 0
    assert rows[r.headers["x-synqra-request-id"]]["served_model"] == "claude-sonnet"
    assert forged["request_id"] not in rows
    status = httpx.get(f"{stack.base_url}/api/budget/status", headers=stack.headers(), timeout=30).json()
    assert status["reserved"] == 0
