"""The chaos run, short: 3 proxies on one Redis budget, faulty fake providers, 60 mixed SDK requests, and
during them kill -9 of a proxy, a Redis restart and kill -9 of llama.cpp mid-stream (tests/chaos_run.py;
`python -m bench.chaos` is the 300-request version). Then the invariants.

Known findings (issue 19, chaos run): a call in flight on a proxy killed with -9 is billed by its provider and
recorded by nobody (its reservation lapses after the TTL instead of being charged); a provider stream cut off mid-answer is billed by the provider (prompt and
the words it sent) but the proxy releases its reservation and records nothing. The run asserts that this is
the only way the ledger and the providers' bill differ; `test_a_stream_cut_off_mid_answer_is_recorded` is the
minimal reproduction, expected to fail until the proxy records such calls.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.chaos_run import LOST_IN_KILL, ChaosConfig, ChaosRun, format_report
from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}


def test_chaos_run_keeps_the_budget_invariants(tmp_path: Path) -> None:
    # A limit small enough that 60 requests run it out whatever the faults cost (a fallback, a cut).
    rep = ChaosRun(tmp_path, ChaosConfig(n_requests=60, ramp_s=20.0, limit_usd=0.0012)).run()
    print(format_report(rep))
    f = rep.figures
    happened = " | ".join(what for _, what in rep.events)
    assert "kill -9 proxy B" in happened and "proxy B back" in happened, happened
    assert "Redis stopped" in happened and "Redis started" in happened, happened
    assert "kill -9 llama.cpp" in happened and "llama.cpp back" in happened, happened
    assert f["spend_samples_failed_redis_down"] > 0, "the sampler saw Redis go down"
    # No process of the stacks, no Redis, no fake left.
    o = f["orphans"]
    assert not o["alive_after_stop"] and not o["stray_processes"] and not o["fake_ports_open"], o
    # Every client got a 2xx or an error in its API's format (or lost its connection with the killed proxy).
    assert (
        len(rep.outcomes) == 63
    )  # the 60 requests, 2 slow streams on the killed proxy, the local stream llama.cpp died under
    bad = [(x.spec.api, x.kind, x.detail) for x in rep.outcomes if not x.well_formed and x.kind != LOST_IN_KILL]
    assert not bad, bad
    assert sum(x.kind == "2xx" for x in rep.outcomes) >= 20
    # The money ran out midway, committed spend never passed the limit, and reservations lapse.
    assert f["budget_state"] in ("alert", "stopped") and "stop" in f["alerts"]
    assert any("monthly budget is exhausted" in x.detail for x in rep.outcomes)
    assert not f["committed_over_limit"] and f["committed_max_sampled_usd"] <= f["limit_usd"]
    assert f["reserved_at_traffic_end_usd"] > 0, "the killed proxy's paid streams left reservations behind"
    assert f["reserved_zero_after_ttl"]
    assert f["alert_70_fired"] == 1, f["alerts"]
    # The ledger equals what the providers billed, request by request and model by model, except for calls
    # the ledger lacks entirely for a known reason: a stream a provider cut off mid-answer (the finding
    # above), or a call in flight on the proxy that was killed (it never learnt what the provider sent).
    assert abs(f["ledger_usd"] - f["committed_final_usd"]) < 1e-6
    explained = [
        m
        for m in rep.mismatches
        if m["ledger_tokens"] == [0, 0] and ("cut" in m["provider_faults"] or m["on_killed_proxy_at_kill"])
    ]
    unexplained = [m for m in rep.mismatches if m not in explained]
    assert not unexplained, unexplained
    assert any(m["on_killed_proxy_at_kill"] for m in explained), "the killed proxy's slow streams were billed"
    assert abs(f["ledger_minus_bill_usd"] + sum(-m["diff_usd"] for m in explained)) < 1e-6


@pytest.mark.xfail(
    strict=True,
    reason="finding (issue 19 chaos run): a stream cut off mid-answer is billed by the "
    "provider but recorded by nobody: the proxy releases its reservation as if the call had failed",
)
def test_a_stream_cut_off_mid_answer_is_recorded(stack: RunningStack, fresh_providers: dict[str, FakeProvider]) -> None:
    deepseek = fresh_providers["deepseek"]
    deepseek.push(Scripted(cut_after_words=3))
    client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=60)
    t0 = time.time()
    with pytest.raises(openai.APIError):  # the client learns the answer broke off
        for _ in client.chat.completions.create(
            model="deepseek-chat",
            stream=True,
            max_tokens=40,
            messages=[{"role": "user", "content": "Tell me about lighthouses please"}],
        ):
            pass
    assert deepseek.billed_tokens() == (5, 3), "the provider billed the prompt and the 3 words it sent"

    def rows() -> list[dict]:
        records = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
        return [r for r in records if r["ts"] >= t0 and r["served_model"] == "deepseek-chat"]

    assert wait_until(lambda: rows(), timeout_s=10), "a ledger row for the call the provider billed"
    assert rows()[0]["prompt_tokens"] > 0 and rows()[0]["completion_tokens"] > 0
