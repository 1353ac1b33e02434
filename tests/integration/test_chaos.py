"""The chaos run, short: 3 proxies on one Redis budget, faulty fake providers, 60 mixed SDK requests, and
during them kill -9 of a proxy, a Redis restart and kill -9 of llama.cpp mid-stream (tests/chaos_run.py;
`python -m bench.chaos` is the 300-request version). Then the invariants.

How the ledger may differ from the providers' bill, and why (every other request and model must match to the
token): a call in flight on the proxy killed with -9 is billed by its provider and recorded by nobody (its
reservation lapses after the TTL); a stream the provider cut off, mid-answer or before any of its answer
came through, is recorded at its worst case (prompt and the whole output allowance,
tests/integration/test_stream_breaks.py), above the fake's bill for the words it sent; a non-streamed call that
timed out is recorded at its worst case, above the fake's bill for a hang (nothing; a real provider bills the
answer it goes on generating).
"""

from __future__ import annotations

from pathlib import Path

from tests.chaos_run import LOST_IN_KILL, ChaosConfig, ChaosRun, format_report
from tests.stack import MASTER_KEY

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
    # The ledger equals what the providers billed, request by request and model by model, except for the calls
    # the docstring names.
    assert abs(f["ledger_usd"] - f["committed_final_usd"]) < 1e-6
    explained = [m for m in rep.mismatches if why_billed_differently(m)]
    unexplained = [m for m in rep.mismatches if m not in explained]
    assert not unexplained, unexplained
    assert any(m["on_killed_proxy_at_kill"] for m in explained), "the killed proxy's slow streams were billed"
    assert abs(f["ledger_minus_bill_usd"] + sum(-m["diff_usd"] for m in explained)) < 1e-6


def why_billed_differently(m: dict) -> str | None:
    """Why the ledger and the bill may differ for this request and model (None: they must not)."""
    unrecorded = m["ledger_tokens"] == [0, 0]
    if unrecorded and m["on_killed_proxy_at_kill"]:
        return "in flight on the killed proxy"
    if "cut" in m["provider_faults"] and not unrecorded and m["ledger_tokens"][1] > 0:
        return "cut off by the provider: recorded at its worst case"
    if "timeout" in m["provider_faults"] and not m["stream"] and m["ledger_tokens"][1] > m["bill_tokens"][1]:
        return (
            "timed out: recorded at its worst case (a real provider bills what it generates; the fake's hang nothing)"
        )
    if "cut" in m["provider_faults"] and m["ledger_tokens"][0] > 0 and m["ledger_tokens"][1] == 0:
        # Allowed, not expected: a cut attempt the worst-case rule might not see would show up here.
        return "cut before any answer came through and tried again: recorded at its prompt only"
    return None
