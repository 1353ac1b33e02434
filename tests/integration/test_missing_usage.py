"""A stream whose provider leaves out its usage figures is recorded at LiteLLM's count, never as nearly free.

Each count is read apart: a prompt reported as 0 tokens, or an answer reported at a small fraction of the
tokens its delivered text holds, is a missing figure (review: an Anthropic-protocol stream whose message_delta
had no usage was billed 302 in / 40 out and recorded at message_start's 302 / 1). Figures a provider does
report, and that fit the answer, are recorded as they are, to the token.
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.integration.test_stream_breaks import AUTH, recorded
from tests.stack import RunningStack

ANSWER = " ".join(f"word{i}" for i in range(40))
PROMPT = "Summarise this: " + " ".join(f"fact{i}" for i in range(300))
PROVIDER_OF = {"gpt-4o": "openai", "claude-sonnet": "anthropic", "deepseek-chat": "deepseek"}


def _body(path: str, model: str) -> dict:
    if path == "/v1/responses":
        return {"model": model, "input": PROMPT, "max_output_tokens": 200, "stream": True}
    return {"model": model, "max_tokens": 200, "stream": True, "messages": [{"role": "user", "content": PROMPT}]}


def _stream(stack: RunningStack, provider: FakeProvider, path: str, model: str, usage: str) -> dict:
    """One stream read to its end, its provider reporting `usage` (Scripted.stream_usage); its ledger row."""
    provider.push(Scripted(text=ANSWER, stream_usage=usage))
    t0 = time.time()
    with httpx.stream("POST", stack.base_url + path, json=_body(path, model), headers=AUTH, timeout=60) as r:
        assert r.status_code == 200, r.read()
        text = r.read().decode()
    assert "word39" in text, "the whole answer reached the client"
    return recorded(stack, t0, model)


CASES = [
    ("/v1/chat/completions", "claude-sonnet", "start"),
    ("/v1/messages", "claude-sonnet", "start"),
    ("/v1/responses", "claude-sonnet", "start"),
    ("/v1/messages", "deepseek-chat", "start"),
    ("/v1/messages", "claude-sonnet", "none"),
    ("/v1/messages", "deepseek-chat", "none"),
    ("/v1/chat/completions", "gpt-4o", "none"),
    ("/v1/responses", "gpt-4o", "none"),
]


@pytest.mark.parametrize(("path", "model", "usage"), CASES, ids=[f"{p[4:]}-{m}-{u}" for p, m, u in CASES])
def test_a_stream_without_its_usage_is_recorded_at_no_less_than_the_bill(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, model: str, usage: str
) -> None:
    provider = fresh_providers[PROVIDER_OF[model]]
    row = _stream(stack, provider, path, model, usage)
    billed_in, billed_out = provider.billed_tokens()
    assert billed_in >= 302 and billed_out == 40
    assert row["prompt_tokens"] >= billed_in and row["completion_tokens"] >= billed_out, (row, billed_in, billed_out)


@pytest.mark.parametrize("usage", ["all", "cumulative"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_a_stream_with_its_usage_is_recorded_at_the_providers_figures(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, usage: str
) -> None:
    # The fake counts a word as one token, fewer than LiteLLM's tokenizer finds in "word12": its figures are
    # still within what a real tokenizer can report, so they stand. "cumulative": message_delta repeats the input
    # count beside output_tokens, as the current Messages API does (totals, not to be added to message_start's).
    provider = fresh_providers["anthropic"]
    row = _stream(stack, provider, path, "claude-sonnet", usage)
    assert (row["prompt_tokens"], row["completion_tokens"]) == provider.billed_tokens()


def test_more_cache_reads_than_prompt_tokens_never_record_a_row_below_zero(stack: RunningStack, openai_client) -> None:
    """The fake OpenAI reports 1,000 cached tokens of a 2-token prompt: the row was -$0.001235 (baseline -$0.002679)."""
    stack.providers["openai"].push(Scripted(text="ok", cache_read=1000))
    t0 = time.time()
    r = openai_client.chat.completions.with_raw_response.create(
        model="gpt-4o", max_tokens=5, messages=[{"role": "user", "content": "hi there"}]
    )
    assert r.parse().usage.prompt_tokens_details.cached_tokens == 1000
    rid = r.headers["x-synqra-request-id"]
    row = recorded(stack, t0, "gpt-4o")
    assert row["request_id"] == rid
    assert row["cost_usd"] >= 0 and row["baseline_usd"] >= 0, row
    log = (stack.data_dir / "logs" / "proxy.log").read_text()
    assert any(rid in line and " WARNING " in line for line in log.splitlines())
