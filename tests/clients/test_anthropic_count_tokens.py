"""`POST /v1/messages/count_tokens` through the official `anthropic` SDK, as Claude Code sends it.

Claude Code counts tokens (its beta endpoint, `?beta=true` with `anthropic-beta` headers) with its own model
names, a system prompt in cache-controlled blocks and its tool definitions; `claude -p` does not call it, so
this drives the SDK directly. Counting is free: no provider is called, no ledger row written, nothing reserved.
Claude's names count as the tier their glob maps to (synqra.routing.alias_patterns in litellm_config.yaml).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.clients.conftest import BillCheck
from tests.stack import MASTER_KEY

SYSTEM = [
    {
        "type": "text",
        "text": "You are Claude Code, a careful coding assistant. Keep answers short.",
        "cache_control": {"type": "ephemeral"},
    }
]
TOOLS = [
    {
        "name": "Read",
        "description": "Read a file from the local filesystem.",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}, "required": ["file_path"]},
    }
]
SHORT = [{"role": "user", "content": "Hello"}]
LONG = [
    {
        "role": "user",
        "content": [
            {
                "type": "text",
                "text": "Read README.md and tell me what this project does, "
                "then list its three most important modules.",
            }
        ],
    }
]
# Claude Code's own names -> the tier each maps to in the default config.
CLAUDE_NAMES = {
    "claude-sonnet-4-5-20250929": "claude-sonnet",
    "claude-opus-4-1-20250805": "claude-sonnet",
    "claude-haiku-4-5-20251001": "auto",
}


def _client(base_url: str):
    import anthropic

    return anthropic.Anthropic(base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=60)


def _count(client: Any, model: str, **kw: Any) -> int:
    # What Claude Code calls: POST /v1/messages/count_tokens?beta=true with an anthropic-beta header (this SDK's
    # beta resource sends the header; the query Claude Code's own bundled SDK adds is added here).
    return client.beta.messages.count_tokens(
        model=model, betas=["token-counting-2024-11-01"], extra_query={"beta": "true"}, **kw
    ).input_tokens


@pytest.mark.parametrize("model", ["auto", "local-llama", "claude-sonnet", *CLAUDE_NAMES])
def test_count_tokens_like_claude_code(client_stack, bill: BillCheck, model: str) -> None:
    client = _client(client_stack.base_url)
    short = _count(client, model, messages=SHORT)
    bare = _count(client, model, messages=LONG)
    full = _count(client, model, messages=LONG, system=SYSTEM, tools=TOOLS)
    assert 0 < short < bare < full, (short, bare, full)
    # A cache_control changes what the prompt may cost, not how many tokens it has (Claude Code sends one).
    uncached = [{k: v for k, v in block.items() if k != "cache_control"} for block in SYSTEM]
    assert full == _count(client, model, messages=LONG, system=uncached, tools=TOOLS)
    if model in CLAUDE_NAMES:  # counted as the tier the name maps to
        assert full == _count(client, CLAUDE_NAMES[model], messages=LONG, system=SYSTEM, tools=TOOLS)
    assert bill.paid_calls() == 0, "counting tokens must call no provider"
    assert not bill.rows(), f"counting tokens wrote ledger rows: {bill.rows()}"
    bill.settled()


def test_count_tokens_errors_are_anthropic_errors(client_stack, bill: BillCheck) -> None:
    import anthropic

    with pytest.raises(anthropic.NotFoundError) as nf:
        _count(_client(client_stack.base_url), "no-such-model", messages=SHORT)
    assert nf.value.body["error"]["type"] == "not_found_error", nf.value.body  # type: ignore[index]
    bad_key = anthropic.Anthropic(base_url=client_stack.base_url, api_key="sk-wrong", max_retries=0, timeout=60)
    with pytest.raises(anthropic.AuthenticationError):
        _count(bad_key, "auto", messages=SHORT)
    bill.settled()


def test_count_tokens_for_an_embedding_model_is_a_400_saying_it_is_not_a_chat_model(
    client_stack, bill: BillCheck
) -> None:
    import anthropic

    with pytest.raises(anthropic.BadRequestError) as bad:
        _count(_client(client_stack.base_url), "local-embed", messages=SHORT)
    body = bad.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error", body  # type: ignore[index]
    message = body["error"]["message"]  # type: ignore[index]
    assert "'local-embed' is not a chat model" in message and "claude-sonnet" in message, message
    assert bill.paid_calls() == 0 and not bill.rows()
    bill.settled()
