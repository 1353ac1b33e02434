"""Quality-gate escalations pay exactly what the providers bill, when things go wrong.

The local answer to "Say hello." with max_tokens 3 is cut off, so the gate escalates it to
DeepSeek. Here DeepSeek either fails (LiteLLM's fallback, Claude, answers instead) or answers
only after the client has hung up. Either way every provider call is in the ledger once, at
the provider's token counts, and nothing stays reserved.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
CUT_OFF = {"model": "auto", "max_tokens": 3, "temperature": 0, "messages": [{"role": "user", "content": "Say hello."}]}
PATHS = ["/v1/chat/completions", "/v1/messages"]


def rows_of(stack: RunningStack, rid: str) -> list[dict]:
    records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return [r for r in records if r["request_id"] == rid or r["request_id"].startswith(rid + ":")]


def status(stack: RunningStack) -> dict:
    return httpx.get(f"{stack.base_url}/api/budget/status", headers=AUTH, timeout=30).json()


def reserved(stack: RunningStack) -> float:
    return status(stack)["reserved"]


def billed_as_recorded(rows: list[dict], provider: FakeProvider, model: str) -> bool:
    """The ledger's tokens for `model` equal what its provider billed (0 calls included)."""
    mine = [r for r in rows if r["served_model"] == model]
    recorded = (sum(r["prompt_tokens"] for r in mine), sum(r["completion_tokens"] for r in mine))
    return recorded == provider.billed_tokens()


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_an_escalation_answered_by_a_fallback_is_billed_once(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, stream: bool
) -> None:
    fresh_providers["deepseek"].push(Scripted(status=500))  # the escalation fails; LiteLLM falls back to Claude
    before = status(stack)
    r = httpx.post(f"{stack.base_url}{path}", json={**CUT_OFF, "stream": stream}, headers=AUTH, timeout=120)
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    claude = fresh_providers["anthropic"]
    assert wait_until(
        lambda: reserved(stack) == 0 and billed_as_recorded(rows_of(stack, rid), claude, "claude-sonnet"), 30
    ), (rows_of(stack, rid), claude.billed_tokens())
    rows = rows_of(stack, rid)
    assert len(claude.requests) >= 1 and claude.billed_tokens()[1] > 0
    assert not [x for x in rows if x["served_model"] == "deepseek-chat"], "DeepSeek failed: it costs nothing"
    assert [x for x in rows if x["kind"] == "fallback" and x["served_model"] == "claude-sonnet"]
    # One client request, not served locally, whose all-Claude baseline is that of one call (the first row).
    after, first = status(stack), next(x for x in rows if x["request_id"] == rid)
    assert (after["requests"] - before["requests"], after["local_requests"] - before["local_requests"]) == (1, 0)
    assert after["baseline_cost"] - before["baseline_cost"] == pytest.approx(first["baseline_usd"], abs=1e-9)
    assert first["served_model"] == "local-llama" and first["baseline_usd"] > 0
    if not stream:  # a non-streamed answer's headers come after the cascade: they name the model that served
        assert r.headers["x-synqra-escalated"] == "local-llama>claude-sonnet"


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("path", PATHS)
def test_a_client_hanging_up_during_an_escalation_loses_no_record(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str, stream: bool
) -> None:
    deepseek = fresh_providers["deepseek"]
    deepseek.push(Scripted(text=" ".join(f"w{i}" for i in range(60)), delay_s=4))  # answers after the client left
    t0 = time.time()  # the client never sees the request id: this request's rows are the ones after t0
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{stack.base_url}{path}", json={**CUT_OFF, "stream": stream}, headers=AUTH, timeout=2.5)
    # The gate may ask DeepSeek once more (a rephrase of the scripted answer): every call it bills counts.
    assert wait_until(lambda: deepseek.billed_tokens()[1] >= 60, 30), "DeepSeek answered (and billed) the escalation"
    seen: list[tuple[int, int]] = []

    def settled() -> bool:
        seen.append(deepseek.billed_tokens())  # settled: the bill stopped growing and every call of it is recorded
        records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
        stable = len(seen) > 1 and seen[-1] == seen[-2]
        return (
            stable
            and reserved(stack) == 0
            and billed_as_recorded([r for r in records if r["ts"] >= t0], deepseek, "deepseek-chat")
        )

    assert wait_until(settled, 30), "the escalation DeepSeek billed is in the ledger and holds no reservation"


@pytest.mark.parametrize("path", PATHS)
def test_an_escalation_failing_everywhere_holds_no_money(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str
) -> None:
    """DeepSeek fails, and so do the fallbacks LiteLLM tries after it: the local answer is delivered
    (escalate_failed) and every reservation the escalation and its fallbacks made goes back."""
    for kind in ("deepseek", "anthropic", "openai"):
        fresh_providers[kind].push(*[Scripted(status=500)] * 4)
    r = httpx.post(f"{stack.base_url}{path}", json=CUT_OFF, headers=AUTH, timeout=120)
    assert r.status_code == 200 and r.headers["x-synqra-quality-note"] == "escalate_failed", r.text
    assert len(fresh_providers["anthropic"].requests) >= 1, "LiteLLM tried the fallback"
    assert wait_until(lambda: reserved(stack) == 0, 30), status(stack)
    rows = rows_of(stack, r.headers["x-synqra-request-id"])
    assert [x["served_model"] for x in rows] == ["local-llama"]


@pytest.mark.parametrize("path", PATHS)
def test_a_streamed_escalation_cut_mid_answer_is_recorded_at_what_it_sent(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str
) -> None:
    """DeepSeek's escalation stream breaks after ten words (LiteLLM does not fall back mid-stream): the words
    and the prompt it billed are in the ledger, and nothing stays reserved. Broken on the provider's side, it is
    booked at its worst case (max_tokens 3), or at what it sent when that is more (the fake ignores max_tokens)."""
    deepseek = fresh_providers["deepseek"]
    deepseek.push(
        Scripted(text="Hello there, this answer is going to be cut off after ten words or so.", cut_after_words=10)
    )
    with httpx.stream(
        "POST", f"{stack.base_url}{path}", json={**CUT_OFF, "stream": True}, headers=AUTH, timeout=120
    ) as r:
        assert r.status_code == 200
        rid = r.headers["x-synqra-request-id"]
        r.read()
    assert deepseek.billed_tokens()[1] == 10, "DeepSeek sent (and billed) ten words"

    def recorded() -> bool:
        mine = [x for x in rows_of(stack, rid) if x["served_model"] == "deepseek-chat"]
        return bool(mine) and reserved(stack) == 0

    assert wait_until(recorded, 30), (rows_of(stack, rid), status(stack))
    row = next(x for x in rows_of(stack, rid) if x["served_model"] == "deepseek-chat")
    billed_in, billed_out = deepseek.billed_tokens()
    # Never below what was billed.
    assert row["completion_tokens"] >= billed_out and row["prompt_tokens"] > 0, (row, billed_in, billed_out)


def stream_cut_off(stack: RunningStack) -> str:
    """Stream the cut-off `auto` request to its end; its request id."""
    with httpx.stream(
        "POST", f"{stack.base_url}/v1/chat/completions", json={**CUT_OFF, "stream": True}, headers=AUTH, timeout=120
    ) as r:
        assert r.status_code == 200
        r.read()
        return r.headers["x-synqra-request-id"]


def test_a_streamed_escalation_broken_before_its_first_word_takes_the_request_out_of_the_local_share_once(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    """DeepSeek's escalation stream breaks off before its first word and LiteLLM falls back to Claude: the broken
    attempt is billed at its prompt (a `:broken` row), and the request leaves the local share once, not once for the
    broken attempt and again for the fallback that answered (the month's local_requests went down by 2)."""
    deepseek = fresh_providers["deepseek"]
    deepseek.push(Scripted(text="Hello there, this answer breaks off before its first word.", cut_after_words=0))
    before = status(stack)
    rid = stream_cut_off(stack)
    assert deepseek.requests and deepseek.requests[0].body.get("_fault") == "cut"

    def settled() -> bool:
        rows = rows_of(stack, rid)
        return reserved(stack) == 0 and any(
            x["kind"] == "fallback" and x["served_model"] == "claude-sonnet" for x in rows
        )

    assert wait_until(settled, 30), (rows_of(stack, rid), status(stack))
    rows = rows_of(stack, rid)
    assert [x for x in rows if x["request_id"].endswith(":broken1") and x["served_model"] == "deepseek-chat"], rows
    assert [x["request_id"] for x in rows if x["leaves_local"]] == [f"{rid}:1:fallback:claude-sonnet"], rows
    after = status(stack)
    assert (after["requests"] - before["requests"], after["local_requests"] - before["local_requests"]) == (1, 0)


def test_a_streamed_escalation_cut_mid_answer_leaves_the_local_answer_and_the_request_local(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    """DeepSeek's escalation stream breaks after three words: it is billed at what it sent, and the client gets the
    local answer (escalate_failed), so the request stays in the local share, as when an escalation times out or
    fails outright. The cut escalation's row took it out (the month's local_requests did not move)."""
    deepseek = fresh_providers["deepseek"]
    deepseek.push(
        Scripted(text="Hello there, this answer is going to be cut off after three words.", cut_after_words=3)
    )
    before = status(stack)
    rid = stream_cut_off(stack)

    def recorded() -> bool:
        return reserved(stack) == 0 and any(x["served_model"] == "deepseek-chat" for x in rows_of(stack, rid))

    assert wait_until(recorded, 30), (rows_of(stack, rid), status(stack))
    rows = rows_of(stack, rid)
    assert not [x for x in rows if x["leaves_local"]], rows
    after = status(stack)
    assert (after["requests"] - before["requests"], after["local_requests"] - before["local_requests"]) == (1, 1)


@pytest.mark.parametrize("path", PATHS)
def test_a_client_gone_is_not_escalated_for_any_further(
    stack: RunningStack, fresh_providers: dict[str, FakeProvider], path: str
) -> None:
    """The client times out while DeepSeek answers the escalation, empty (which the gate would escalate to Claude):
    with nobody to deliver to, the cascade stops there. DeepSeek's call was sent before the client left: it is
    billed and recorded; Claude is never called (it was, after the client left, and an SDK retry paid it all again).
    (On a machine so loaded that the local answer takes over 5 s, the client leaves before DeepSeek is asked, and
    nothing after the local answer is called: that passes too.)"""
    deepseek, claude = fresh_providers["deepseek"], fresh_providers["anthropic"]
    deepseek.push(Scripted(text="", delay_s=8))
    t0 = time.time()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{stack.base_url}{path}", json=CUT_OFF, headers=AUTH, timeout=5)
    # DeepSeek's call answered and recorded (or, the machine that slow, never made)
    assert wait_until(lambda: len(deepseek.requests) == 1 and reserved(stack) == 0, 30) or not deepseek.requests
    assert not wait_until(lambda: claude.requests, 8), "Claude was asked after the client had gone"
    assert len(deepseek.requests) <= 1, "DeepSeek was asked again (a rephrase) after the client had gone"
    records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    assert billed_as_recorded([r for r in records if r["ts"] >= t0], deepseek, "deepseek-chat")


# A code question the shipped router sends to Claude (score about 0.40 against the thresholds 0.29 / 0.33), and local
# under full thrift pressure (the cuts raised halfway to 1: 0.65 / 0.67). max_tokens 3 cuts the local answer off.
CODE = {
    "model": "auto",
    "max_tokens": 3,
    "temperature": 0,
    "messages": [
        {
            "role": "user",
            "content": "Write a Python function that parses a CSV file and returns the rows as dictionaries, "
            "with error handling.",
        }
    ],
}


def cost_of(stack: RunningStack, rid: str) -> float:
    return sum(x["cost_usd"] for x in rows_of(stack, rid))


def test_under_budget_pressure_an_escalation_costs_no_more_than_the_route_without_pressure(
    tmp_path: Path, stack: RunningStack, fresh_providers: dict[str, FakeProvider]
) -> None:
    """Spend ahead of the calendar (thrift pressure 1) moves the code question from Claude to the local model; its
    cut-off local answer is escalated. It climbed local > DeepSeek > Claude (DeepSeek's answer empty): DeepSeek's call
    and then Claude's, more than routing to Claude without pressure. It now goes from the local model straight to
    Claude, the tier the router would have picked without the pressure, and the request costs no more than that
    route did (the local attempt is free)."""
    thrift = {"start_share": 0.0, "full_gap": 0.02}  # any spend ahead of the calendar is full pressure
    budget = {"monthly_limit_usd": 0.01, "stop_at": 1.0, "thrift": thrift}
    s = start_stack(tmp_path, fresh_providers, {"budget": budget}, backends_of=stack)
    try:
        unpressured = httpx.post(f"{s.base_url}/v1/chat/completions", json=CODE, headers=AUTH, timeout=120)
        assert unpressured.status_code == 200, unpressured.text
        assert unpressured.headers["x-synqra-route"] == "claude-sonnet", "no pressure yet: the router picks Claude"
        rid0 = unpressured.headers["x-synqra-request-id"]
        assert wait_until(lambda: reserved(s) == 0 and cost_of(s, rid0) > 0, 30)
        route_cost = cost_of(s, rid0)
        # Spend Claude calls (about 2% of the limit each) to 55% of the limit, or further ahead of the calendar.
        target = 100 * max(0.55, status(s)["elapsed_share"] + 0.03)
        if target > 97:
            pytest.skip("the month's last hours: no spend can run ahead of the calendar below the limit")
        for i in range(200):
            if status(s)["percentage"] >= target:
                break
            r = httpx.post(
                f"{s.base_url}/v1/chat/completions",
                json={"model": "claude-sonnet", "max_tokens": 16, "messages": [{"role": "user", "content": f"Hi {i}"}]},
                headers=AUTH,
                timeout=120,
            )
            assert r.status_code == 200, r.text
        assert status(s)["thrift"]["pressure"] == 1.0, status(s)
        fresh_providers["deepseek"].push(Scripted(text=""))  # were DeepSeek asked, its answer would not do
        pressured = httpx.post(f"{s.base_url}/v1/chat/completions", json=CODE, headers=AUTH, timeout=120)
        assert pressured.status_code == 200, pressured.text
        rid = pressured.headers["x-synqra-request-id"]
        assert wait_until(lambda: reserved(s) == 0, 30)
        rows = rows_of(s, rid)
        chain = pressured.headers["x-synqra-escalated"]
        assert cost_of(s, rid) <= route_cost + 1e-12, (chain, cost_of(s, rid), route_cost, rows)
        assert chain == "local-llama>claude-sonnet", rows
        assert not fresh_providers["deepseek"].requests, "no intermediate tier"
    finally:
        s.stop()
