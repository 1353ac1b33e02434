"""Quality-gated escalation in the running proxy, with the real local model's real answers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.stack import MASTER_KEY, RunningStack, spend_the_budget, start_stack

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
GOOD = [{"role": "user", "content": "What is the capital of Japan?"}]  # Gemma 270M: "Tokyo"
CUT = [{"role": "user", "content": "Say hello."}]  # Gemma 270M: "Hello, my name is John." (cut at 3 tokens)
CLOUD_TEXTS = {"Fake DeepSeek answer.", "Fake Claude answer.", "Fake GPT-4o answer."}


def ledger(base_url: str) -> dict[str, dict]:
    rows = httpx.get(f"{base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return {r["request_id"]: r for r in rows}


def test_good_local_answer_is_delivered_without_a_cloud_call(openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=GOOD, max_tokens=16, temperature=0
    )
    assert raw.headers["x-synqra-route"] == "local-llama" and raw.headers["x-synqra-escalated"] == "false"
    assert float(raw.headers["x-synqra-quality-score"]) > 0.8
    r = raw.parse()
    assert "tokyo" in r.choices[0].message.content.lower()
    assert r.choices[0].logprobs is None, "logprobs asked for scoring are not leaked to a client that did not ask"
    assert not any(p.requests for p in fresh_providers.values())


def test_cut_off_local_answer_is_escalated_openai(stack, openai_client, fresh_providers) -> None:
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=CUT, max_tokens=3, temperature=0
    )
    chain = raw.headers["x-synqra-escalated"].split(">")
    assert chain[0] == "local-llama" and len(chain) >= 2, raw.headers
    assert float(raw.headers["x-synqra-quality-score"]) < 0.6
    assert raw.headers["x-synqra-route"] == chain[-1] != "local-llama"
    assert raw.parse().choices[0].message.content.strip() in CLOUD_TEXTS
    rows = ledger(stack.base_url)
    rid = raw.headers["x-synqra-request-id"]
    children = [r for r in rows.values() if r["parent_id"] == rid]
    assert rows[rid]["served_model"] == "local-llama" and [c["served_model"] for c in children] == chain[1:]
    assert all(c["kind"] == "escalation" and c["cost_usd"] > 0 for c in children), "each call of the chain is billed"


def test_cut_off_local_stream_is_replaced_not_spliced(openai_client, fresh_providers) -> None:
    stream = openai_client.chat.completions.create(model="auto", messages=CUT, max_tokens=3, temperature=0, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.strip() in CLOUD_TEXTS, f"the client sees one model's whole answer, got {text!r}"
    assert fresh_providers["deepseek"].requests, "escalated to the next tier"


def test_cut_off_local_answer_is_escalated_anthropic(anthropic_client, fresh_providers) -> None:
    raw = anthropic_client.messages.with_raw_response.create(model="auto", max_tokens=3, messages=CUT)
    assert raw.headers["x-synqra-escalated"].startswith("local-llama>")
    assert raw.parse().content[0].text.strip() in CLOUD_TEXTS
    with anthropic_client.messages.stream(model="auto", max_tokens=3, messages=CUT) as s:
        text = "".join(s.text_stream)
    assert text.strip() in CLOUD_TEXTS


def ask_auto(s: RunningStack, messages: list[dict], max_tokens: int) -> httpx.Response:
    """A deterministic (temperature 0) request for `auto`."""
    return httpx.post(
        f"{s.base_url}/v1/chat/completions",
        json={"model": "auto", "messages": messages, "max_tokens": max_tokens, "temperature": 0},
        headers=AUTH,
        timeout=120,
    )


def _quality_stack(tmp: Path, stack, providers, **overrides):
    return start_stack(tmp, providers, overrides, backends_of=stack)


def test_rephrase_path(tmp_path: Path, stack, providers, fresh_providers) -> None:
    # Bands chosen so a decent answer lands in the rephrase band: ask once more on the same tier.
    s = _quality_stack(tmp_path, stack, providers, quality={"deliver_above": 0.9999, "escalate_below": 0.0001})
    try:
        r = ask_auto(s, GOOD, 16)
        chain = r.headers["x-synqra-escalated"].split(">")
        assert r.status_code == 200 and chain[:2] == ["local-llama", "local-llama"], "rephrased once on the same tier"
        assert chain.count("local-llama") == 2, "a rephrase is asked once, then the answer escalates or is delivered"
        rows = ledger(s.base_url)
        children = [x for x in rows.values() if x["parent_id"] == r.headers["x-synqra-request-id"]]
        assert [c["served_model"] for c in children] == chain[1:]
        assert children[0]["cost_usd"] == 0
    finally:
        s.stop()


def test_escalation_limit(tmp_path: Path, stack, providers, fresh_providers) -> None:
    s = _quality_stack(tmp_path, stack, providers, quality={"max_extra_calls": 1})
    try:
        r = ask_auto(s, CUT, 3)
        assert r.status_code == 200 and r.headers["x-synqra-escalated"] == "local-llama>deepseek-chat"
        assert not fresh_providers["anthropic"].requests
    finally:
        s.stop()


def test_budget_stopped_escalation_delivers_the_best_available_and_marks_it(
    tmp_path: Path, stack, providers, fresh_providers
) -> None:
    s = _quality_stack(tmp_path, stack, providers, budget={"monthly_limit_usd": 0.0004})
    try:
        spend_the_budget(s, CUT)
        paid = sum(len(p.requests) for p in fresh_providers.values())
        r = ask_auto(s, CUT, 3)
        assert r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama"
        assert r.headers["x-synqra-quality-note"] == "budget_stopped"
        assert float(r.headers["x-synqra-quality-score"]) < 0.6
        assert r.json()["choices"][0]["message"]["content"].strip()
        assert sum(len(p.requests) for p in fresh_providers.values()) == paid, "no paid escalation once stopped"
    finally:
        s.stop()


@pytest.mark.parametrize("kind", ["top tier", "explicit model"])
def test_no_validation_where_it_does_not_apply(openai_client, fresh_providers, kind) -> None:
    if kind == "top tier":
        msgs = [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}]
        raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=msgs, max_tokens=3)
        assert raw.headers["x-synqra-quality-score"] == "unscored" and raw.headers["x-synqra-escalated"] == "false"
    else:
        raw = openai_client.chat.completions.with_raw_response.create(
            model="local-llama", messages=CUT, max_tokens=3, temperature=0
        )
        assert "x-synqra-quality-score" not in raw.headers and raw.headers["x-synqra-route"] == "local-llama"
        assert not any(p.requests for p in fresh_providers.values()), "an explicit model is the caller's choice"


def test_an_escalation_is_sent_the_allowance_the_client_asked_fitted_to_its_tier(
    tmp_path: Path, stack, providers, fresh_providers
) -> None:
    """`auto` asked for 20,000 tokens is served locally under the local model's ceiling (1,024); an escalation is
    sized from the client's 20,000, fitted to its own tier (DeepSeek 8,192, Claude 64,000), not from the local 1,024
    (Claude's answer was cut at 1,024 tokens of the 20,000 the client allowed)."""
    s = _quality_stack(tmp_path, stack, providers, quality={"deliver_above": 0.9999, "escalate_below": 0.9998})
    try:
        r = ask_auto(s, CUT, 20000)
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat"), r.headers
        assert [q.body["max_tokens"] for q in fresh_providers["deepseek"].requests] == [8192]
        assert [q.body["max_tokens"] for q in fresh_providers["anthropic"].requests] in ([], [20000])
        assert httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"] == 0
    finally:
        s.stop()
