"""Complexity routing inside the running proxy: `auto` goes to the cheapest tier that will do."""
from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.stack import MASTER_KEY, start_stack

PIXEL = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
TIERS = ["local-llama", "deepseek-chat", "claude-sonnet"]


def _route(raw) -> tuple[str, float]:
    """(the tier the router chose, its score); the quality gate may have escalated from there."""
    chain = raw.headers["x-synqra-escalated"]
    first = chain.split(">")[0] if chain != "false" else raw.headers["x-synqra-route"]
    return first, float(raw.headers["x-synqra-route-score"])


def test_guide_examples_openai_sdk(openai_client, fresh_providers) -> None:
    easy = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=16
    )
    tier, score = _route(easy)
    assert tier == "local-llama" and 0.0 <= score <= 1.0
    assert easy.headers["x-synqra-request-id"].startswith("synqra-")

    before = len(fresh_providers["anthropic"].requests)  # the easy answer may have been escalated
    brand = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}], max_tokens=64
    )
    assert _route(brand)[0] == "claude-sonnet"
    assert brand.headers["x-synqra-escalated"] == "false", "the top tier is not second-guessed"
    assert brand.parse().choices[0].message.content.strip() == fresh_providers["anthropic"].default_text
    assert len(fresh_providers["anthropic"].requests) == before + 1


def test_guide_examples_anthropic_sdk(anthropic_client, fresh_providers) -> None:
    easy = anthropic_client.messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=[{"role": "user", "content": "What is your pricing?"}]
    )
    assert _route(easy)[0] == "local-llama" and easy.parse().content[0].text.strip()
    brand = anthropic_client.messages.with_raw_response.create(
        model="auto", max_tokens=64, system="You are a marketing writer.",
        messages=[{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}],
    )
    assert _route(brand)[0] == "claude-sonnet"
    assert fresh_providers["anthropic"].requests[-1].body["system"]


def test_images_go_to_a_vision_tier(openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": [{"type": "text", "text": "What colour is this?"}, {"type": "image_url", "image_url": {"url": PIXEL}}]}],
        max_tokens=16,
    )
    assert _route(raw)[0] == "claude-sonnet", "the only vision-capable tier"


def test_tools_skip_the_local_tier(openai_client, fresh_providers) -> None:
    tools = [{"type": "function", "function": {"name": "get_time", "description": "Current time", "parameters": {"type": "object", "properties": {}}}}]
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What time is it?"}], tools=tools, max_tokens=16
    )
    assert _route(raw)[0] in ("deepseek-chat", "claude-sonnet")
    sent = (fresh_providers["deepseek"].requests or fresh_providers["anthropic"].requests)[-1].body
    assert sent.get("tools"), "the tools reach the provider"


def test_long_context_never_goes_to_a_too_small_window(openai_client) -> None:
    long_text = "Here is a document line about quarterly revenue figures. " * 700  # ~6,000 tokens > local 2,048
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": long_text + "\nWhat is your pricing?"}], max_tokens=16
    )
    assert _route(raw)[0] != "local-llama"


def test_multi_turn_and_system_prompt_are_read(openai_client) -> None:
    convo = [
        {"role": "system", "content": "You are the support bot of a SaaS company."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "What is your pricing?"},
    ]
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=convo, max_tokens=16)
    tier, score = _route(raw)
    assert tier in TIERS and 0 <= score <= 1


def test_explicit_models_are_not_routed(openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=8
    )
    assert raw.headers["x-synqra-route"] == "deepseek-chat" and "x-synqra-route-score" not in raw.headers


def test_intercepted_names_are_routed_like_auto(tmp_path: Path, stack, providers, fresh_providers) -> None:
    s = start_stack(tmp_path, providers, {"routing": {"intercept_models": ["claude-3-5-sonnet-*"]}}, backends_of=stack)
    try:
        r = httpx.post(
            f"{s.base_url}/v1/chat/completions",
            json={"model": "claude-3-5-sonnet-20241022", "messages": [{"role": "user", "content": "What is your pricing?"}], "max_tokens": 8},
            headers={"Authorization": f"Bearer {MASTER_KEY}"},
            timeout=120,
        )
        assert r.status_code == 200 and _route(r)[0] == "local-llama", "an easy request starts on the free tier"
    finally:
        s.stop()


@pytest.mark.parametrize("sdk", ["openai", "anthropic"])
def test_budget_stopped_auto_stays_local_and_says_so(tmp_path: Path, stack, providers, fresh_providers, sdk) -> None:
    s = start_stack(tmp_path, providers, {"budget": {"monthly_limit_usd": 0.0004}}, backends_of=stack)
    brand = [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}]
    auth = {"Authorization": f"Bearer {MASTER_KEY}"}
    try:
        # Spend the tiny budget until not even the cheapest paid call fits.
        for model in ("claude-sonnet", "deepseek-chat"):
            for _ in range(400):
                r = httpx.post(f"{s.base_url}/v1/chat/completions", json={"model": model, "messages": brand, "max_tokens": 3}, headers=auth, timeout=60)
                if r.status_code == 429:
                    break
            assert r.status_code == 429
        n = sum(len(p.requests) for p in fresh_providers.values())
        if sdk == "openai":
            r = httpx.post(f"{s.base_url}/v1/chat/completions", json={"model": "auto", "messages": brand, "max_tokens": 16}, headers=auth, timeout=120)
        else:
            r = httpx.post(f"{s.base_url}/v1/messages", json={"model": "auto", "messages": brand, "max_tokens": 16}, headers=auth, timeout=120)
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-route"] == "local-llama" and r.headers["x-synqra-budget"] == "stopped"
        assert sum(len(p.requests) for p in fresh_providers.values()) == n, "no paid call once the budget is stopped"
    finally:
        s.stop()
