"""Error fallbacks: a failed model hands over to the next configured one, and pays its way."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.fake_providers import Scripted, free_port
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
Q = [{"role": "user", "content": "What is the capital of Japan?"}]


def chat(base: str, model: str, path: str = "/v1/chat/completions", **body: Any) -> httpx.Response:
    """A short question to `model`; `body` adds or replaces fields (None leaves one out)."""
    sent = {k: v for k, v in {"model": model, "messages": Q, "max_tokens": 16, **body}.items() if v is not None}
    return httpx.post(f"{base}{path}", json=sent, headers=AUTH, timeout=120)


def ledger(base: str) -> dict[str, dict]:
    return {
        r["request_id"]: r for r in httpx.get(f"{base}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    }


def reserved(base: str) -> float:
    return httpx.get(f"{base}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"]


def stack_with_the_local_model_down(tmp_path: Path, providers: Any, stack: RunningStack) -> RunningStack:
    """A second stack whose local model (and `auto`'s local tier) points at a port nobody listens on."""
    dead = f"http://127.0.0.1:{free_port()}"

    def point_local_at_a_dead_port(cfg: dict) -> None:
        cfg["synqra"]["backends"]["llama"]["external_url"] = dead
        for m in cfg["model_list"]:
            if m["model_name"] in ("local-llama", "auto"):
                m["litellm_params"]["api_base"] = dead + "/v1"

    return start_stack(tmp_path, providers, backends_of=stack, edit=point_local_at_a_dead_port)


def test_local_backend_down_falls_back_up_the_tiers(tmp_path: Path, stack, providers, fresh_providers) -> None:
    s = stack_with_the_local_model_down(tmp_path, providers, stack)
    try:
        for model in ("auto", "local-llama"):
            r = chat(s.base_url, model)
            assert r.status_code == 200, r.text
            assert r.headers["x-synqra-fallback"] == "local-llama>deepseek-chat"
            assert r.json()["choices"][0]["message"]["content"].strip()
            row = ledger(s.base_url)[r.headers["x-synqra-request-id"] + ":fallback:deepseek-chat"]
            assert row["kind"] == "fallback" and row["served_model"] == "deepseek-chat" and row["cost_usd"] > 0
            assert r.headers["x-synqra-request-id"] not in ledger(s.base_url), ledger(s.base_url).get(
                r.headers["x-synqra-request-id"]
            )
        assert reserved(s.base_url) == 0
    finally:
        s.stop()


def test_cloud_5xx_and_429_fall_back_to_the_next_model(stack, fresh_providers) -> None:
    fresh_providers["anthropic"].push(Scripted(status=500))
    r = chat(stack.base_url, "claude-sonnet")
    assert r.status_code == 200 and r.headers["x-synqra-fallback"] == "claude-sonnet>gpt-4o"
    assert r.json()["choices"][0]["message"]["content"].strip() == fresh_providers["openai"].default_text
    fresh_providers["deepseek"].push(Scripted(status=429))
    r = chat(stack.base_url, "deepseek-chat")
    assert r.status_code == 200 and r.headers["x-synqra-fallback"] == "deepseek-chat>claude-sonnet"


def test_every_option_failing_gives_one_clear_error(stack, fresh_providers) -> None:
    fresh_providers["anthropic"].push(Scripted(status=500), Scripted(status=500))
    fresh_providers["openai"].push(Scripted(status=503), Scripted(status=503))
    r = chat(stack.base_url, "claude-sonnet")
    assert r.status_code >= 500 and r.json()["error"]["message"]
    r = chat(stack.base_url, "claude-sonnet", "/v1/messages")
    body = r.json()
    assert r.status_code >= 500 and body["type"] == "error" and body["error"]["message"]
    assert reserved(stack.base_url) == 0, "failed calls hold no money"


def test_paid_fallbacks_obey_the_budget_stop(tmp_path: Path, stack, providers, fresh_providers) -> None:
    s = start_stack(tmp_path, providers, {"budget": {"monthly_limit_usd": 0.0004}}, backends_of=stack)
    try:
        for _ in range(400):  # spend until Claude no longer fits
            r = chat(s.base_url, "claude-sonnet")
            if r.status_code == 429:
                break
        assert r.status_code == 429
        n_claude = len(fresh_providers["anthropic"].requests)
        fresh_providers["deepseek"].push(Scripted(status=500))
        r = chat(s.base_url, "deepseek-chat")  # fits, fails; its fallback Claude no longer fits
        assert len(fresh_providers["anthropic"].requests) == n_claude, "the paid fallback was refused, not sent"
        if r.status_code == 200:  # a later fallback that still fits answered: reserved and billed like any call
            fb = r.headers["x-synqra-fallback"]
            assert fb.startswith("deepseek-chat>") and "claude-sonnet" not in fb
            row = ledger(s.base_url)[f"{r.headers['x-synqra-request-id']}:fallback:{fb.split('>')[-1]}"]
            assert row["kind"] == "fallback" and row["cost_usd"] > 0
        else:
            assert r.status_code >= 429 and r.json()["error"]["message"], r.text
        status = httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()
        assert status["reserved"] == 0 and status["monthly_used"] <= 0.0004
    finally:
        s.stop()


def _stream(base: str, model: str, path: str) -> httpx.Response:
    """A streamed request read to its end (the stream's usage is logged, and settled, once it ends)."""
    body = {"model": model, "messages": Q, "max_tokens": 16, "stream": True}
    with httpx.stream("POST", f"{base}{path}", json=body, headers=AUTH, timeout=120) as r:
        r.read()
    return r


def _chunks(r: httpx.Response) -> list[dict[str, Any]]:
    """The JSON data events of a read SSE response."""
    lines = [line[len("data: ") :] for line in r.text.splitlines() if line.startswith("data: ")]
    return [json.loads(x) for x in lines if x.strip() != "[DONE]"]


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_streamed_fallback_bills_the_model_that_answered(stack, fresh_providers, path: str) -> None:
    """LiteLLM runs the success-deployment hook for non-streamed answers only: a streamed fallback
    must still be billed to the model that answered, at its tokens, and hold nothing afterwards."""
    for failed, served in (("claude-sonnet", "gpt-4o"), ("deepseek-chat", "claude-sonnet")):
        provider = {"gpt-4o": "openai", "claude-sonnet": "anthropic"}[served]
        fresh_providers["anthropic" if failed == "claude-sonnet" else "deepseek"].push(Scripted(status=500))
        r = _stream(stack.base_url, failed, path)
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-fallback"] == f"{failed}>{served}"
        assert r.headers["x-synqra-route"] == served
        rid = r.headers["x-synqra-request-id"]
        assert wait_until(lambda key=f"{rid}:fallback:{served}": key in ledger(stack.base_url), timeout_s=30)
        row = ledger(stack.base_url)[f"{rid}:fallback:{served}"]
        billed_in, billed_out = fresh_providers[provider].billed_tokens()
        assert row["served_model"] == served and row["kind"] == "fallback"
        # At the provider's own figures: LiteLLM decides whether to ask a stream's usage from the model the client
        # named (Claude: not asked), so the GPT-4o fallback's stream was opened without it and recorded at
        # LiteLLM's token count, 2.45x its bill (17 in / 8 out for the fake's 8 / 3: $0.0001225 for $0.00005).
        assert (row["prompt_tokens"], row["completion_tokens"]) == (billed_in, billed_out) and billed_out > 0
        if path == "/v1/chat/completions":  # asked for the provider, not shown to a client that did not ask
            assert not [c for c in _chunks(r) if "usage" in c and not c.get("choices")], "an unasked usage chunk"
        assert row["cost_usd"] > 0
        assert rid not in ledger(stack.base_url), "the failed primary costs nothing"
        assert wait_until(lambda: reserved(stack.base_url) == 0, timeout_s=30)
        fresh_providers["openai"].reset()
        fresh_providers["anthropic"].reset()


def test_while_the_local_model_cools_down_paid_fallbacks_are_billed(
    tmp_path: Path, stack, providers, fresh_providers
) -> None:
    """One failed local call (a fault: 503) puts the local model's only deployment into LiteLLM's cooldown;
    for the next seconds LiteLLM sends local requests straight to the fallback. Each of those paid answers
    is in the ledger. Its own proxy, whose local model is a fake that can fail: the cooldown would send the
    next tests' local requests to DeepSeek too."""
    import time

    from tests.fakes.fake_providers import FakeProvider

    local = FakeProvider("openai", default_text="Tokyo is the capital of Japan.").start()
    local.push(Scripted(status=503))

    def local_model_is_the_fake(cfg: dict) -> None:
        cfg["synqra"]["backends"]["llama"]["external_url"] = local.base_url
        for m in cfg["model_list"]:
            if m["model_name"] in ("local-llama", "auto"):
                m["litellm_params"]["api_base"] = local.base_url + "/v1"

    s = start_stack(tmp_path, providers, backends_of=stack, edit=local_model_is_the_fake)
    try:
        chat(s.base_url, "local-llama")  # the local model fails: a fault, so LiteLLM cools it down
        deepseek = fresh_providers["deepseek"]
        deepseek.reset()
        t0 = time.time()
        for model in ("local-llama", "auto", "auto"):  # explicit, and routed to the local tier (quality-gated)
            r = chat(s.base_url, model)
            assert r.status_code == 200, r.text
            if model == "local-llama":
                assert r.headers.get("x-synqra-fallback") == "local-llama>deepseek-chat", "the cooldown did not start"

        def recorded() -> tuple[int, int]:
            rows = [x for x in ledger(s.base_url).values() if x["ts"] >= t0 and x["served_model"] == "deepseek-chat"]
            return sum(x["prompt_tokens"] for x in rows), sum(x["completion_tokens"] for x in rows)

        assert wait_until(lambda: recorded() == deepseek.billed_tokens() and reserved(s.base_url) == 0, timeout_s=30), (
            recorded(),
            deepseek.billed_tokens(),
        )
    finally:
        s.stop()
        local.stop()


# A non-streamed call that times out (LiteLLM's request_timeout, or the client's own `timeout`) was sent: its
# provider goes on generating and bills an answer nobody receives (the fakes bill an answer delayed past the
# caller's timeout, as OpenAI and Anthropic do). LiteLLM reports a failed call and falls back; the timed-out calls
# used to leave no ledger row at all. The ledger cannot know how much of the allowance was written: each is
# recorded at its worst case (the prompt and max_tokens), as a row of its own that counts no request.
TIMEOUT_PATHS = ["/v1/chat/completions", "/v1/messages", "/v1/responses"]


def _timeout_body(path: str) -> dict:
    if path == "/v1/responses":
        return {"model": "claude-sonnet", "input": Q[0]["content"], "max_output_tokens": 16, "timeout": 1}
    return {"model": "claude-sonnet", "messages": Q, "max_tokens": 16, "timeout": 1}


@pytest.mark.parametrize("fallback_answers", [False, True], ids=["all-time-out", "fallback-answers"])
@pytest.mark.parametrize("path", TIMEOUT_PATHS)
def test_a_call_that_timed_out_after_it_was_sent_is_recorded(
    stack, fresh_providers, path: str, fallback_answers: bool
) -> None:
    claude, openai = fresh_providers["anthropic"], fresh_providers["openai"]
    claude.push(Scripted(delay_s=3))  # answers (and bills) after the 1 s timeout
    openai.push(Scripted(delay_s=0 if fallback_answers else 3))
    status = lambda: httpx.get(f"{stack.base_url}/api/budget/status", headers=AUTH, timeout=30).json()  # noqa: E731
    before, t0 = status(), time.time()  # a Messages error carries no request id: this request's rows are after t0
    r = httpx.post(f"{stack.base_url}{path}", json=_timeout_body(path), headers=AUTH, timeout=60)
    assert r.status_code == (200 if fallback_answers else 408), r.text
    assert wait_until(lambda: claude.billed_tokens()[1] > 0 and openai.billed_tokens()[1] > 0, 15)
    assert wait_until(lambda: reserved(stack.base_url) == 0, 30)
    rows = [x for x in ledger(stack.base_url).values() if x["ts"] >= t0]
    for model, provider in (("claude-sonnet", claude), ("gpt-4o", openai)):
        mine = [x for x in rows if x["served_model"] == model]
        billed = provider.billed_tokens()
        recorded = (sum(x["prompt_tokens"] for x in mine), sum(x["completion_tokens"] for x in mine))
        assert recorded[0] >= billed[0] and recorded[1] >= billed[1], (model, billed, rows)
    timed_out = [x for x in rows if ":timeout" in x["request_id"]]
    assert {x["served_model"] for x in timed_out} == (
        {"claude-sonnet"} if fallback_answers else {"claude-sonnet", "gpt-4o"}
    )
    assert all(x["completion_tokens"] == 16 and not x["counts_request"] for x in timed_out), timed_out
    assert status()["requests"] - before["requests"] == (1 if fallback_answers else 0), "counted once, if served"


@contextmanager
def unreachable_address() -> Iterator[str]:
    """An address whose connections never open (a provider behind a dropped route): a listener that accepts
    nothing, its queue filled, so the kernel drops every new connection's SYN and a client's connect times out."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(0)
    queued = socket.create_connection(server.getsockname(), timeout=2)  # fills the queue
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        queued.close()
        server.close()


@pytest.mark.parametrize("path", TIMEOUT_PATHS)
def test_a_call_whose_connection_never_opened_is_not_recorded(tmp_path: Path, stack, providers, path: str) -> None:
    """Found by review16: a call that timed out before its connection to the provider opened (httpx.ConnectTimeout:
    no request was sent, nothing is billed) was recorded at its worst case as if it had been sent: a row of 16 output
    tokens here; without max_tokens GPT-4o's 16,384, $0.163863 in the ledger for a request OpenAI never saw (seen
    with a client's `timeout` of 0.0001 s; a provider unreachable for LiteLLM's whole request_timeout books every
    request of the outage so, Claude's at $0.96 each)."""
    with unreachable_address() as dead:

        def gpt_4o_unreachable(cfg: dict) -> None:
            for m in cfg["model_list"]:
                if m["model_name"] == "gpt-4o":
                    m["litellm_params"]["api_base"] = dead + "/v1"

        s = start_stack(tmp_path, providers, backends_of=stack, edit=gpt_4o_unreachable)
        try:
            body = {**_timeout_body(path), "model": "gpt-4o"}
            r = httpx.post(f"{s.base_url}{path}", json=body, headers=AUTH, timeout=60)
            assert r.status_code == 408, r.text
            assert wait_until(lambda: reserved(s.base_url) == 0, 30), "the call's reservation is still held"
            time.sleep(1)  # a row would be written before the client's answer; the failure event runs beside it
            assert not [x for x in ledger(s.base_url).values() if x["served_model"] == "gpt-4o"], ledger(s.base_url)
        finally:
            s.stop()


def test_a_streamed_local_fallback_is_validated_as_the_model_that_answered(
    tmp_path: Path, stack, providers, fresh_providers
) -> None:
    """The local backend is down and DeepSeek, its fallback, streams an empty answer for `auto`: the gate judges it
    as DeepSeek's (as it does a non-streamed fallback's) and escalates to the tier above DeepSeek. It judged it as
    the local model's: it escalated to DeepSeek again, and that paid escalation took the request out of the local
    share it was never in (the month's local_requests went down by one)."""
    s = stack_with_the_local_model_down(tmp_path, providers, stack)
    try:
        fresh_providers["deepseek"].push(Scripted(text=""))  # the fallback's answer: empty, a certain escalation
        before = httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()
        r = _stream(s.base_url, "auto", "/v1/chat/completions")
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-fallback"] == "local-llama>deepseek-chat"
        rid = r.headers["x-synqra-request-id"]
        assert wait_until(lambda: reserved(s.base_url) == 0 and f"{rid}:1" in ledger(s.base_url), timeout_s=60)
        rows = [x for k, x in ledger(s.base_url).items() if k.startswith(rid)]
        assert ledger(s.base_url)[f"{rid}:1"]["served_model"] == "claude-sonnet", rows
        assert not [x for x in rows if x["leaves_local"]], rows
        after = httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()
        assert (after["requests"] - before["requests"], after["local_requests"] - before["local_requests"]) == (1, 0)
    finally:
        s.stop()


def test_a_streamed_top_tier_fallback_is_not_validated_again(stack, fresh_providers) -> None:
    """`auto` with tools goes to DeepSeek; DeepSeek fails and Claude, the top tier, streams the answer (empty). The
    top tier's answer is delivered as it is (as a non-streamed fallback's is). It was scored as DeepSeek's and
    escalated to Claude: a second paid Claude call for one request."""
    tools = [
        {"type": "function", "function": {"name": "now", "description": "The time", "parameters": {"type": "object"}}}
    ]
    fresh_providers["deepseek"].push(Scripted(status=500))
    fresh_providers["anthropic"].push(Scripted(text=""))
    body = {"model": "auto", "messages": Q, "max_tokens": 16, "stream": True, "tools": tools}
    with httpx.stream("POST", f"{stack.base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=120) as r:
        r.read()
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-fallback"] == "deepseek-chat>claude-sonnet"
    rid = r.headers["x-synqra-request-id"]
    assert wait_until(
        lambda: reserved(stack.base_url) == 0 and f"{rid}:fallback:claude-sonnet" in ledger(stack.base_url)
    )
    time.sleep(1)
    assert len(fresh_providers["anthropic"].requests) == 1, [k for k in ledger(stack.base_url) if k.startswith(rid)]
    assert [k for k in ledger(stack.base_url) if k.startswith(rid)] == [f"{rid}:fallback:claude-sonnet"]


# --- an output allowance sized for another model ------------------------------------------------------------------


def test_claude_codes_allowance_for_an_opus_name_is_fitted_to_sonnet(stack, fresh_providers) -> None:
    """Claude Code asks its Opus names for 128,000 output tokens with thinking; synqra serves them with Sonnet 4.5,
    which refuses more than 64,000 (the fake answers it with Anthropic's 400)."""
    thinking = {"type": "enabled", "budget_tokens": 100000}
    r = chat(stack.base_url, "claude-opus-4-6", "/v1/messages", max_tokens=128000, thinking=thinking)
    assert r.status_code == 200, r.text
    sent = fresh_providers["anthropic"].requests[-1].body
    assert sent["max_tokens"] == 64000 and sent["thinking"]["budget_tokens"] == 63999
    row = ledger(stack.base_url)[r.headers["x-synqra-request-id"]]
    assert row["served_model"] == "claude-sonnet" and row["cost_usd"] > 0
    assert reserved(stack.base_url) == 0


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
@pytest.mark.parametrize("model", ["claude-sonnet-4-5", "claude-sonnet-4-5-20250929"])
def test_an_alias_gets_the_allowance_fitted_like_a_dated_name(stack, fresh_providers, model: str, path: str) -> None:
    """claude-sonnet-4-5 (router_settings.model_group_alias) and claude-sonnet-4-5-20250929 (synqra.routing.alias_patterns)
    both name claude-sonnet, whose ceiling is 64,000. The dated name's 100,000 was lowered to it; the alias's went to
    Anthropic as it was, which answered its 400 ("max_tokens: 100000 > 64000")."""
    r = chat(stack.base_url, model, path, max_tokens=100000)
    assert r.status_code == 200, r.text
    assert fresh_providers["anthropic"].requests[-1].body["max_tokens"] == 64000
    row = ledger(stack.base_url)[r.headers["x-synqra-request-id"]]
    assert row["served_model"] == "claude-sonnet" and row["cost_usd"] > 0
    assert reserved(stack.base_url) == 0


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
def test_a_thinking_budget_is_kept_below_the_fitted_allowance_in_any_spelling(stack, fresh_providers, field) -> None:
    """On chat completions the allowance may be max_completion_tokens (LiteLLM sends it to Claude as max_tokens): the
    thinking budget is kept below the allowance fitted to Sonnet whichever spelling carried it (it stayed at 90,000
    against 64,000, and Anthropic refused the request)."""
    thinking = {"type": "enabled", "budget_tokens": 90000}
    r = chat(stack.base_url, "claude-opus-4-6", thinking=thinking, **{"max_tokens": None, field: 100000})
    assert r.status_code == 200, r.text
    sent = fresh_providers["anthropic"].requests[-1].body
    assert sent["max_tokens"] == 64000 and sent["thinking"]["budget_tokens"] == 63999
    assert ledger(stack.base_url)[r.headers["x-synqra-request-id"]]["cost_usd"] > 0
    assert reserved(stack.base_url) == 0


def test_a_fallback_gets_an_allowance_it_accepts(stack, fresh_providers) -> None:
    """Claude Sonnet (64,000) fails and GPT-4o (16,384) answers: the allowance the client gave Sonnet is fitted."""
    fresh_providers["anthropic"].push(Scripted(status=500))
    r = chat(stack.base_url, "claude-sonnet", max_tokens=30000)
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-fallback"] == "claude-sonnet>gpt-4o"
    assert fresh_providers["anthropic"].requests[-1].body["max_tokens"] == 30000  # named: sent as the client gave it
    assert fresh_providers["openai"].requests[-1].body["max_tokens"] == 16384
    assert ledger(stack.base_url)[r.headers["x-synqra-request-id"] + ":fallback:gpt-4o"]["cost_usd"] > 0
    assert reserved(stack.base_url) == 0


def test_an_allowance_over_the_named_models_ceiling_is_the_providers_400(stack, fresh_providers) -> None:
    r = chat(stack.base_url, "deepseek-chat", max_tokens=9000)
    assert r.status_code == 400 and "8192" in r.json()["error"]["message"], r.text
    assert r.headers["x-synqra-request-id"] not in ledger(stack.base_url)
    assert len(fresh_providers["anthropic"].requests) == 0  # a client error: no fallback pays for it


def test_a_fallback_for_the_local_model_gets_the_allowance_the_client_asked(
    tmp_path: Path, stack, providers, fresh_providers
) -> None:
    """`auto` asked for 20,000 tokens, routed to the local model (ceiling 1,024) that is down: DeepSeek answers with
    the client's allowance fitted to its own ceiling (8,192), not the local model's 1,024."""
    s = stack_with_the_local_model_down(tmp_path, providers, stack)
    try:
        r = chat(s.base_url, "auto", max_tokens=20000)
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-fallback"] == "local-llama>deepseek-chat"
        assert [q.body["max_tokens"] for q in fresh_providers["deepseek"].requests] == [8192]
        assert ledger(s.base_url)[r.headers["x-synqra-request-id"] + ":fallback:deepseek-chat"]["cost_usd"] > 0
        assert reserved(s.base_url) == 0
    finally:
        s.stop()


@pytest.mark.parametrize(("effort", "max_tokens", "budget"), [("high", 2000, 1999), ("minimal", 600, None)])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_an_openai_reasoning_effort_reaches_claude_as_a_thinking_budget_it_accepts(
    stack, fresh_providers, api, effort, max_tokens, budget
) -> None:
    """An OpenAI client's reasoning effort has no tie to its allowance; LiteLLM turns it into a fixed thinking
    budget (high: 4,096; minimal: 1,024) that Anthropic refuses unless it is at least 1,024 and below max_tokens. The
    budget is kept below the allowance, and thinking is left off when the allowance cannot hold Anthropic's least."""
    if api == "chat":
        r = chat(stack.base_url, "claude-sonnet", max_tokens=max_tokens, reasoning_effort=effort)
    else:
        body = {"model": "claude-sonnet", "input": "What is the capital of Japan?", "max_output_tokens": max_tokens}
        body["reasoning"] = {"effort": effort}
        r = httpx.post(f"{stack.base_url}/v1/responses", json=body, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    sent = fresh_providers["anthropic"].requests[-1].body
    assert sent["max_tokens"] == max_tokens
    assert (sent.get("thinking") or {}).get("budget_tokens") == budget
    assert ledger(stack.base_url)[r.headers["x-synqra-request-id"]]["cost_usd"] > 0
    assert reserved(stack.base_url) == 0
