"""Every API shape settles: chat, Messages, text completions and Responses, streamed or not, with and without the
client's own `metadata`, answered locally, by a paid model, by a LiteLLM fallback, or after a quality escalation.

After each request nothing stays reserved, the request is counted once, and for every paid model the ledger's
tokens equal what its fake provider billed (so cost equals the bill at the configured prices).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import httpx
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
PROVIDER_OF = {"deepseek-chat": "deepseek", "claude-sonnet": "anthropic", "gpt-4o": "openai"}


def body(api: str, model: str, text: str, max_tokens: int, stream: bool, metadata: bool) -> tuple[str, dict[str, Any]]:
    extra: dict[str, Any] = {"stream": stream, "temperature": 0}
    if metadata:  # what real clients put there (Claude Code always sends metadata.user_id)
        extra["metadata"] = {"user_id": "client-user-1"}
    if api == "chat":
        return "/v1/chat/completions", {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            **extra,
        }
    if api == "messages":
        return "/v1/messages", {
            "model": model,
            "messages": [{"role": "user", "content": text}],
            "max_tokens": max_tokens,
            **extra,
        }
    if api == "completions":
        return "/v1/completions", {
            "model": model,
            "prompt": f"Question: {text}\nAnswer:",
            "max_tokens": max_tokens,
            **extra,
        }
    return "/v1/responses", {"model": model, "input": text, "max_output_tokens": max_tokens, **extra}


# scenario -> (model asked for, prompt, max_tokens, what the fakes are scripted to do)
SCENARIOS = {
    "local": ("local-llama", "What is the capital of France?", 8, None),
    "paid": ("claude-sonnet", "What is the capital of France?", 64, None),
    "fallback": ("deepseek-chat", "What is the capital of France?", 64, ("deepseek", Scripted(status=500))),
    # The local answer to "Say hello." with 3 tokens is cut off: the quality gate escalates it to DeepSeek.
    "escalation": ("auto", "Say hello.", 3, None),
}


def ledger_rows(stack: RunningStack, rid: str) -> list[dict[str, Any]]:
    records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return [r for r in records if r["request_id"] == rid or r["request_id"].startswith(rid + ":")]


def status(stack: RunningStack) -> dict[str, Any]:
    return httpx.get(f"{stack.base_url}/api/budget/status", headers=AUTH, timeout=30).json()


def bill_matches(rows: list[dict[str, Any]], providers: dict[str, FakeProvider]) -> bool:
    for model, provider in PROVIDER_OF.items():
        mine = [r for r in rows if r["served_model"] == model]
        if (sum(r["prompt_tokens"] for r in mine), sum(r["completion_tokens"] for r in mine)) != providers[
            provider
        ].billed_tokens():
            return False
    return True


@pytest.mark.parametrize("scenario", list(SCENARIOS))
@pytest.mark.parametrize("metadata", [False, True], ids=["no-metadata", "metadata"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", ["chat", "messages", "completions", "responses"])
def test_every_shape_settles_and_matches_the_bill(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], api: str, stream: bool, metadata: bool, scenario: str
) -> None:
    model, text, max_tokens, script = SCENARIOS[scenario]
    if script is not None:
        fresh_providers[script[0]].push(script[1])
    path, payload = body(api, model, text, max_tokens, stream, metadata)
    before = status(stack)
    r = httpx.post(f"{stack.base_url}{path}", json=payload, headers=AUTH, timeout=180)
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    ok = wait_until(
        lambda: status(stack)["reserved"] == 0 and bill_matches(ledger_rows(stack, rid), fresh_providers), 30
    )
    rows = ledger_rows(stack, rid)
    assert ok, (rows, {k: p.billed_tokens() for k, p in fresh_providers.items()}, status(stack)["reserved"])
    assert rows, "every request leaves a ledger row, local ones too"
    after = status(stack)
    assert after["requests"] - before["requests"] == 1, "one client request, counted once"
    paid = [x for x in rows if x["served_model"] != "local-llama"]
    if scenario == "local":
        assert not paid and after["local_requests"] - before["local_requests"] == 1
    elif scenario == "escalation":
        assert rows[0]["served_model"] == "local-llama" and paid, (
            "the cut-off local answer was escalated to a paid tier"
        )
        assert after["local_requests"] == before["local_requests"], "an escalated request is not a local one"
    else:
        assert paid and all(x["served_model"] == "claude-sonnet" for x in paid)
        assert sum(p.billed_tokens()[1] for p in fresh_providers.values()) > 0


# Anthropic prompt caching (what Claude Code sends on every turn: cache_control on its system prompt and tools).
# Anthropic reports cached prompt tokens outside input_tokens, as cache_creation_input_tokens (billed at 1.25x the
# input price, 5-minute cache) and cache_read_input_tokens (0.1x). Claude's list prices (litellm_config.yaml):
IN, OUT = 0.000003, 0.000015
CACHE_WRITE, CACHE_READ = 1.25 * IN, 0.1 * IN
CACHE_WRITE_1H = 2 * IN  # a write for cache_control's one-hour TTL (`"ttl": "1h"`)
SYSTEM = " ".join(f"rule{i}" for i in range(2000))  # 2,000 prompt tokens by the fakes' count, all cached


def claude_bill(provider: FakeProvider) -> float:
    """What the fake Anthropic billed in dollars, cache writes and reads at their own prices."""
    total = 0.0
    for rec in provider.requests:
        b = rec.body
        write, read = b.get("_cache_write_tokens", 0), b.get("_cache_read_tokens", 0)
        uncached = b.get("_prompt_tokens", 0) - write - read
        hour = b.get("_cache_write_1h_tokens", write if b.get("_cache_write_ttl") == "1h" else 0)
        writes = hour * CACHE_WRITE_1H + (write - hour) * CACHE_WRITE  # Anthropic's split of a request's writes by TTL
        total += uncached * IN + writes + read * CACHE_READ + b.get("_completion_tokens", 0) * OUT
    return total


# "write-1h-top": Anthropic's automatic caching, a `cache_control` at the top of the request (LiteLLM forwards it on
# both APIs), not on a block: its one-hour writes were priced at the five-minute 1.25x.
# "write-mixed": a one-hour breakpoint on the system prompt and a five-minute one on the newest turn (Anthropic's way to
# mix TTLs: the longer first); Anthropic bills each write at its own TTL's price and says which in
# usage.cache_creation. Here 500 of the 2,000 written were the hour's: every write was priced at the hour's 2x
# ($0.012051 recorded for a $0.008676 bill), and a turn that read the hour's prefix and wrote only the newest turn
# paid the hour's price for five-minute writes.
@pytest.mark.parametrize("cache", ["write", "read", "write-1h", "write-1h-top", "write-mixed"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", ["messages", "chat", "responses"])
def test_prompt_cache_tokens_are_in_the_ledger_at_their_bill(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], api: str, stream: bool, cache: str
) -> None:
    claude = fresh_providers["anthropic"]
    mixed = cache == "write-mixed"
    if api == "responses" and mixed and not stream:
        # LiteLLM's non-streamed Responses usage keeps the writes but drops Anthropic's split by TTL
        # (usage.cache_creation): all are priced at the TTL the request asked, one hour's, above the bill, never below.
        pytest.xfail("LiteLLM's Responses usage drops the per-TTL split: mixed writes priced at the one-hour rate")
    claude.push(
        Scripted(
            cache_write=0 if cache == "read" else 2000,
            cache_read=2000 if cache == "read" else 0,
            cache_write_1h=500 if mixed else None,
        )
    )
    hour = cache.startswith("write-1h") or mixed
    control = {"type": "ephemeral", "ttl": "1h"} if hour else {"type": "ephemeral"}
    top = cache == "write-1h-top"
    block = [{"type": "text", "text": SYSTEM, **({} if top else {"cache_control": control})}]
    question: dict[str, Any] = {"role": "user", "content": "hello there"}
    if mixed:
        question["content"] = [{"type": "text", "text": "hello there", "cache_control": {"type": "ephemeral"}}]
    limit: dict[str, Any] = {"max_tokens": 20}
    if api == "messages":
        path, payload = "/v1/messages", {"system": block, "messages": [question]}
    elif api == "chat":
        path, payload = "/v1/chat/completions", {"messages": [{"role": "system", "content": block}, question]}
    else:  # LiteLLM's Responses usage carries the writes as input_tokens_details.cache_write_tokens
        parts = [{**part, "type": "input_text"} for part in block]
        if isinstance(question["content"], list):
            question["content"] = [{**part, "type": "input_text"} for part in question["content"]]
        path, payload = "/v1/responses", {"input": [{"role": "system", "content": parts}, question]}
        limit = {"max_output_tokens": 20}
    body = {
        "model": "claude-sonnet",
        **limit,
        "stream": stream,
        **payload,
        **({"cache_control": control} if top else {}),
    }
    r = httpx.post(f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    assert wait_until(lambda: status(stack)["reserved"] == 0 and ledger_rows(stack, rid), 30)
    rows = ledger_rows(stack, rid)
    billed_in = claude.billed_tokens()[0]
    assert billed_in == 2002 and len(claude.requests) == 1
    recorded_in = sum(x["prompt_tokens"] for x in rows)
    assert recorded_in >= billed_in, f"billed {billed_in} prompt tokens ({cache} 2,000 cached), recorded {recorded_in}"
    cost, bill = sum(x["cost_usd"] for x in rows), claude_bill(claude)
    # Reads too: Claude Code reads its cached prefix on almost every turn, and at the input price they were recorded
    # at 10x their bill ($0.006006 for $0.000606), stopping clients at a budget they had not spent.
    assert cost == pytest.approx(bill, abs=1e-9), f"ledger ${cost:.6f}, Anthropic's bill ${bill:.6f} ({cache})"
    # The all-Claude baseline caches the same prompt: a request Claude served claims no savings.
    assert sum(x["baseline_usd"] for x in rows) == pytest.approx(cost, abs=1e-9)


# OpenAI and DeepSeek cache a repeated prompt prefix by themselves and bill the tokens read from it below the input
# price (list prices: litellm_config.yaml; read prices: LiteLLM's cost map).
OPENAI_PRICES = {"gpt-4o": (2.5e-6, 1.25e-6, 10e-6), "deepseek-chat": (0.28e-6, 0.028e-6, 0.42e-6)}  # in, read, out


# DeepSeek has no Responses API (LiteLLM bridges it to chat completions: the chat case).
@pytest.mark.parametrize(
    ("model", "path"),
    [("gpt-4o", "/v1/chat/completions"), ("gpt-4o", "/v1/responses"), ("deepseek-chat", "/v1/chat/completions")],
)
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_prompt_tokens_an_openai_protocol_provider_read_from_its_cache_are_in_the_ledger_at_their_bill(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], model: str, stream: bool, path: str
) -> None:
    provider = fresh_providers["openai" if model == "gpt-4o" else "deepseek"]
    provider.push(Scripted(cache_read=2000))
    body: dict[str, Any] = {"model": model, "stream": stream}
    if path == "/v1/responses":
        body.update(input=SYSTEM + " hello there", max_output_tokens=20)
    else:
        body.update(messages=[{"role": "user", "content": SYSTEM + " hello there"}], max_tokens=20)
    r = httpx.post(f"{stack.base_url}{path}", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    assert wait_until(lambda: status(stack)["reserved"] == 0 and ledger_rows(stack, rid), 30)
    rows = ledger_rows(stack, rid)
    (p, c), (price_in, price_read, price_out) = provider.billed_tokens(), OPENAI_PRICES[model]
    assert len(provider.requests) == 1 and p > 2000
    bill = (p - 2000) * price_in + 2000 * price_read + c * price_out
    assert sum(x["cost_usd"] for x in rows) == pytest.approx(bill, abs=1e-9), rows
    claude = (p - 2000) * IN + 2000 * CACHE_READ + c * OUT  # the all-Claude setup reads the same prompt cached
    assert sum(x["baseline_usd"] for x in rows) == pytest.approx(claude, abs=1e-9), rows


# Claude Code marks its long system prompt for Anthropic's cache, and its small tasks (Haiku names) may be routed to
# another model. The all-Claude baseline priced the marked prefix at the full input price though Claude would have
# read it from its cache at 0.1x: savings overstated by 0.9x the prefix's input price on every such request.
@pytest.mark.parametrize("api", ["messages", "chat"])
def test_a_prefix_marked_for_claudes_cache_is_read_from_it_in_the_baseline_when_another_model_answered(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], api: str
) -> None:
    deepseek = fresh_providers["deepseek"]
    block = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    question = {"role": "user", "content": "hello there"}
    if api == "messages":
        path, payload = "/v1/messages", {"system": block, "messages": [question]}
    else:
        path, payload = "/v1/chat/completions", {"messages": [{"role": "system", "content": block}, question]}
    r = httpx.post(
        f"{stack.base_url}{path}",
        json={"model": "deepseek-chat", "max_tokens": 20, **payload},
        headers=AUTH,
        timeout=120,
    )
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    assert wait_until(lambda: status(stack)["reserved"] == 0 and ledger_rows(stack, rid), 30)
    rows = ledger_rows(stack, rid)
    (p, c), (price_in, _, price_out) = deepseek.billed_tokens(), OPENAI_PRICES["deepseek-chat"]
    assert len(deepseek.requests) == 1 and p >= 2000
    assert sum(x["cost_usd"] for x in rows) == pytest.approx(p * price_in + c * price_out, abs=1e-9)  # no cache use
    full = p * IN + c * OUT
    cached = (p - 2000) * IN + 2000 * CACHE_READ + c * OUT  # the 2,000-token system prompt read from Claude's cache
    baseline = sum(x["baseline_usd"] for x in rows)
    # the prefix is estimated by its share of the request's characters: within 2% of the discount
    assert abs(baseline - cached) <= 0.02 * (full - cached), (baseline, cached, full)


# LiteLLM serves some APIs on some providers through a bridge inside the call (a Responses API request to Claude
# goes through chat completions), and runs the deployment hooks again for it. Read as a retry of the call, the
# bridge's request was reserved a second time, without the client's output allowance: at Claude's 64,000-token
# ceiling, $0.96 held for a call whose worst case is $0.0003 (refusals near the stop level, and under a tag cap
# below $1 every such call refused as too costly).
BRIDGED = [
    ("/v1/responses", {"model": "claude-sonnet", "input": "What is the capital of Japan?", "max_output_tokens": 16}),
    (
        "/v1/messages",
        {"model": "gpt-4o", "messages": [{"role": "user", "content": "Capital of Japan?"}], "max_tokens": 16},
    ),
]


@pytest.mark.parametrize(("path", "payload"), BRIDGED, ids=[f"{p}-{b['model']}" for p, b in BRIDGED])
def test_a_call_is_reserved_once_at_its_own_worst_case(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, payload: dict[str, Any]
) -> None:
    fresh_providers[PROVIDER_OF[payload["model"]]].push(Scripted(delay_s=3))
    done: list[httpx.Response] = []
    call = threading.Thread(
        target=lambda: done.append(httpx.post(f"{stack.base_url}{path}", json=payload, headers=AUTH, timeout=60))
    )
    call.start()
    time.sleep(1.5)
    held = status(stack)["reserved"]
    call.join(60)
    assert done and done[0].status_code == 200, done
    assert 0 < held < 0.001, f"${held} held for a call of at most 16 output tokens"
    assert wait_until(lambda: status(stack)["reserved"] == 0, 30)
