"""The two judges on the running stack: the quality gate's judge tier (a 1-10 rating of an unsure local answer)
and the learning loop's pairwise judge (the local answer against the one served, both orders). A judge call is
a paid call: reserved, one ledger row of kind "judge", capped per month, skipped when it cannot be paid or
fails (the scorer then decides alone), never delaying the client's answer."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies.learning.store import InferenceLog
from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, proxy_workers, spend_the_budget, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ASK = {
    "model": "auto",
    "max_tokens": 48,
    "temperature": 0,
    "messages": [{"role": "user", "content": "What is the capital of France?"}],
}
JUDGE_ALL = {"enabled": True, "band": [0.0, 1.0]}  # the judge tier rates every answer that is not a hard failure


def ledger(s: RunningStack, rid: str) -> list[dict]:
    rows = httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return [r for r in rows if r["request_id"] == rid or r["request_id"].startswith(rid + ":")]


def reserved(s: RunningStack) -> float:
    return httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"]


def ask(s: RunningStack) -> httpx.Response:
    return httpx.post(f"{s.base_url}/v1/chat/completions", json=ASK, headers=AUTH, timeout=180)


@contextmanager
def own_proxy(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path, **synqra: dict[str, Any]
) -> Iterator[RunningStack]:
    """A proxy of the test's own with these sections of synqra settings (on the session's backends), stopped
    after."""
    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides=synqra)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def judged(stack: RunningStack, providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory):
    """Every local answer that is not a hard failure goes to the judge (band [0, 1])."""
    with own_proxy(stack, providers, tmp_path_factory.mktemp("judged"), quality={"judge": JUDGE_ALL}) as s:
        yield s


def test_an_unsure_local_answer_is_rated_by_the_judge_and_the_call_is_booked(
    judged: RunningStack, providers: dict[str, FakeProvider]
) -> None:
    deepseek = providers["deepseek"]
    deepseek.reset()
    deepseek.push(Scripted(text="The answer is correct and helpful. Rating: [[9]]"))
    r = ask(judged)
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-route"] == "local-llama"
    assert float(r.headers["x-synqra-quality-score"]) == pytest.approx(0.925), "the judge's 9/10, on the gate's scale"
    rid = r.headers["x-synqra-request-id"]
    assert wait_until(lambda: reserved(judged) == 0, 20)
    judge_rows = [x for x in ledger(judged, rid) if x["kind"] == "judge"]
    assert len(judge_rows) == 1 and judge_rows[0]["served_model"] == "deepseek-chat"
    assert (judge_rows[0]["prompt_tokens"], judge_rows[0]["completion_tokens"]) == deepseek.billed_tokens()
    assert judge_rows[0]["counts_request"] is False and judge_rows[0]["baseline_usd"] == 0, "no request, no baseline"
    assert judge_rows[0]["tag"] == "synqra-judge-quality", "booked to the tag that carries the judge's limit"
    assert "Rating" in deepseek.requests[0].body["messages"][0]["content"], "MT-Bench's single-answer prompt"


def test_a_failing_judge_leaves_the_scorer_to_decide(judged: RunningStack, providers: dict[str, FakeProvider]) -> None:
    deepseek = providers["deepseek"]
    deepseek.reset()
    deepseek.push(Scripted(status=500))
    r = ask(judged)
    assert r.status_code == 200, r.text
    rid = r.headers["x-synqra-request-id"]
    assert float(r.headers["x-synqra-quality-score"]) != pytest.approx(0.925)
    assert wait_until(lambda: reserved(judged) == 0, 20)
    assert not [x for x in ledger(judged, rid) if x["kind"] == "judge"], "a failed judge call costs nothing"


def test_an_escalation_that_did_not_beat_the_local_answer_is_not_served_by_another_tier(
    judged: RunningStack, providers: dict[str, FakeProvider]
) -> None:
    """The judge rates the local answer 3/10: the gate escalates to DeepSeek, whose answer is empty (scored below the
    local one), and Claude and its fallback fail. The local answer is delivered (`x-synqra-route` local-llama,
    synqra_quality_served_total{served_tier="local-llama"}); POST /api/agents said `escalated: true` (it read the
    chain of attempts, not the tier that served), against its documented meaning."""
    for p in providers.values():
        p.reset()
    providers["deepseek"].push(Scripted(text="Poor answer. Rating: [[3]]"), Scripted(text=""), Scripted(text=""))
    for kind in ("anthropic", "openai"):
        providers[kind].push(*[Scripted(status=500)] * 4)
    r = httpx.post(
        f"{judged.base_url}/api/agents",
        json={"message": ASK["messages"][0]["content"], "max_tokens": ASK["max_tokens"]},
        headers=AUTH,
        timeout=180,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "local-llama" and body["escalation"] == "local-llama>deepseek-chat", body
    assert body["escalated"] is False, body
    for p in providers.values():
        p.reset()


def test_no_judge_when_paid_calls_are_stopped(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    with own_proxy(stack, providers, tmp_path, quality={"judge": JUDGE_ALL}, budget={"monthly_limit_usd": 0.0004}) as s:
        spend_the_budget(s, ASK["messages"])
        providers["deepseek"].reset()
        r = ask(s)
        assert r.status_code == 200 and r.headers["x-synqra-budget"] == "stopped"
        assert not providers["deepseek"].requests, "stopped: the scorer decides alone"


def test_the_shadow_judge_labels_the_request_and_books_both_orders(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    with own_proxy(stack, providers, tmp_path, routing={"mode": "shadow", "shadow_eval_share": 1.0}) as s:
        deepseek = providers["deepseek"]
        deepseek.reset()
        # Local answer first (A): the served one wins; served first (A): it wins again. Both orders agree.
        deepseek.push(Scripted(text="Assistant B is better. [[B]]"), Scripted(text="Assistant A is better. [[A]]"))
        r = ask(s)
        assert r.status_code == 200 and r.headers["x-synqra-route-shadow"], r.text
        rid = r.headers["x-synqra-request-id"]
        log = InferenceLog(s.data_dir / "learning")
        try:
            assert wait_until(
                lambda: any(x["source"] == "judge" for x in (log.row(rid) or {"labels": []})["labels"]), 120
            )
            judge = next(x for x in log.row(rid)["labels"] if x["source"] == "judge")
            assert judge["value"] == 1.0 and judge["note"] == "served,served"
        finally:
            log.close()
        assert wait_until(lambda: reserved(s) == 0, 20)
        rows = [x for x in ledger(s, rid) if x["kind"] == "judge"]
        assert len(rows) == 2 and len(deepseek.requests) == 2
        billed = deepseek.billed_tokens()
        assert (sum(x["prompt_tokens"] for x in rows), sum(x["completion_tokens"] for x in rows)) == billed


def test_the_judges_monthly_limit_stops_its_calls(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    with own_proxy(stack, providers, tmp_path, quality={"judge": {**JUDGE_ALL, "monthly_limit_usd": 0.0}}) as s:
        providers["deepseek"].reset()
        r = ask(s)
        assert r.status_code == 200
        assert not providers["deepseek"].requests, "the month's judge spend is at its limit: no judge call"


@pytest.mark.parametrize("stream", [False, True])
def test_a_judge_call_running_when_the_client_hangs_up_is_booked(
    judged: RunningStack, providers: dict[str, FakeProvider], stream: bool
) -> None:
    """The client leaves while the judge rates its local answer: the judge call the provider answers (and bills)
    anyway runs to its end and is booked, and its reservation goes back; it was dropped unbooked and held."""
    deepseek = providers["deepseek"]
    deepseek.reset()
    deepseek.push(Scripted(text="The answer is correct and helpful. Rating: [[9]]", delay_s=4))
    t0 = time.time()
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{judged.base_url}/v1/chat/completions", json={**ASK, "stream": stream}, headers=AUTH, timeout=2.5)
    assert wait_until(lambda: deepseek.billed_tokens()[1] > 0, 30), "DeepSeek answered (and billed) the judge call"

    def booked() -> bool:
        rows = httpx.get(f"{judged.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
        mine = [x for x in rows if x["ts"] >= t0 and x["kind"] == "judge"]
        recorded = (sum(x["prompt_tokens"] for x in mine), sum(x["completion_tokens"] for x in mine))
        return reserved(judged) == 0 and recorded == deepseek.billed_tokens()

    assert wait_until(booked, 30), (deepseek.billed_tokens(), reserved(judged))


@pytest.mark.parametrize("workers", [1, 2])
def test_concurrent_judge_calls_stop_at_the_monthly_limit(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path, workers: int
) -> None:
    """A limit that holds one judge call at its worst case (about $0.00027: its prompt, and 400 tokens of answer at
    DeepSeek's prices): the first call runs; the requests judged while it is in flight find its reservation held
    against the limit and go without. Every one of them called the judge when the limit checked settled spend only.
    The limit is the budget store's, the same for every worker: with 2, each made its own call when each worker
    counted its own calls in flight and re-read the other's spend every 30 s."""
    judge = {"judge": {**JUDGE_ALL, "monthly_limit_usd": 0.0004}}
    with own_proxy(stack, providers, tmp_path, quality=judge, server={"num_workers": workers}) as s:
        assert workers == 1 or wait_until(lambda: len(proxy_workers(s)) == workers, 60)
        deepseek = providers["deepseek"]
        deepseek.reset()
        deepseek.push(*[Scripted(text="Rating: [[9]]", delay_s=6)] * 6)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: ask(s), range(4)))
        assert [r.status_code for r in answers] == [200] * 4
        assert len(deepseek.requests) == 1, [r.body["messages"][0]["content"][:40] for r in deepseek.requests]


def test_a_judge_pair_runs_whole_or_not_at_all_at_the_monthly_limit(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """The learning judge asks twice (both orders) and labels only with both verdicts. Its reservation was made call by
    call: with a limit that holds one call at its worst case (about $0.000244 here) but not two, the first call ran
    and settled ($0.000216 for a long verdict), the second was refused, and the month paid for a call that gave no
    label. Both calls are now reserved before the first is made: at this limit neither is."""
    judge = {"judge": {"monthly_limit_usd": 0.0004}}
    with own_proxy(
        stack, providers, tmp_path, routing={"mode": "shadow", "shadow_eval_share": 1.0}, learning=judge
    ) as s:
        deepseek = providers["deepseek"]
        deepseek.reset()
        deepseek.push(Scripted(text=" ".join(["word"] * 390) + " [[B]]"), Scripted(text="[[A]]"))
        r = ask(s)
        assert r.status_code == 200 and r.headers["x-synqra-route-shadow"], r.text
        rid = r.headers["x-synqra-request-id"]
        proxy_log = s.data_dir / "logs" / "proxy.log"
        refused = f"judge (learning) for {rid} refused by the budget"
        assert wait_until(lambda: refused in proxy_log.read_text(), 120), "the pair reached the judge's limit"
        assert wait_until(lambda: reserved(s) == 0, 20)
        assert not deepseek.requests, "no call of a pair that cannot be paid in full"
        assert not [x for x in ledger(s, rid) if x["kind"] == "judge"]
        log = InferenceLog(s.data_dir / "learning")
        try:
            assert not [x for x in log.row(rid)["labels"] if x["source"] == "judge"]
        finally:
            log.close()
