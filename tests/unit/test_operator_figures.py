"""The operator views' pure parts: ledger figures, metric counters, the sign-in cookie, agents input."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import HTTPException
from prometheus_client import CollectorRegistry, Counter

from policies.budget.records import LedgerRecord
from proxy.api.agents import LedgerTap, _parse
from proxy.api.models import guide_costs
from proxy.dashboard.figures import budget_marks, daily_series, escalation_by_tier, group_requests, tier_mix
from proxy.dashboard.session import Sessions
from proxy.dashboard.sources import LearningSources, LedgerSources, router_version
from proxy.route_policy import RoutePolicy


def ts(day: int, hour: int = 12) -> float:
    return datetime(2026, 3, day, hour, tzinfo=UTC).timestamp()


def row(
    rid: str, model: str, t: float, cost: float = 0.0, kind: str = "chat", parent: str | None = None, **kw: object
) -> dict:
    return {
        "request_id": rid,
        "served_model": model,
        "requested_model": "auto",
        "ts": t,
        "cost_usd": cost,
        "kind": kind,
        "parent_id": parent,
        "local": model == "local-llama",
        "counts_request": parent is None,
        "leaves_local": False,
        "prompt_tokens": 10,
        "completion_tokens": 5,
        **kw,
    }


def test_daily_series_lists_every_day_and_counts_requests_once() -> None:
    rows = [
        row("a", "local-llama", ts(1)),
        row("a:escalation:deepseek-chat:1", "deepseek-chat", ts(1), 0.002, "escalation", "a", leaves_local=True),
        row("b", "claude-sonnet", ts(3), 0.01),
        row("c", "local-llama", ts(31, 23)),
        row("z", "claude-sonnet", datetime(2026, 4, 1, 0, 30, tzinfo=UTC).timestamp(), 5.0),  # next month: left out
    ]
    days = daily_series(rows, "2026-03", "UTC")
    assert len(days) == 31 and days[0]["date"] == "2026-03-01"
    assert (days[0]["requests"], days[0]["local_requests"], days[0]["cost_usd"]) == (
        1,
        0,
        0.002,
    )  # escalated: not local
    assert (days[2]["requests"], days[2]["cost_usd"]) == (1, 0.01)
    assert days[30]["requests"] == 1 and sum(d["requests"] for d in days) == 3
    # The budget's timezone decides the day: 23:00 UTC on the 31st is April 1st in Tokyo.
    tokyo = daily_series(rows, "2026-03", "Asia/Tokyo")
    assert tokyo[30]["requests"] == 0 and sum(d["requests"] for d in tokyo) == 2


def test_requests_are_grouped_with_their_extra_calls() -> None:
    rows = [
        row("a", "local-llama", ts(2)),
        row("a:escalation:local-llama:1", "local-llama", ts(2) + 1, kind="escalation", parent="a"),  # a rephrase
        row("b", "local-llama", ts(2) + 2),
        row("b:escalation:deepseek-chat:1", "deepseek-chat", ts(2) + 3, 0.001, "escalation", "b"),
        # the escalation's own LiteLLM fallback: parent is the escalation, the group is still b
        row(
            "b:escalation:deepseek-chat:1:fallback:claude-sonnet",
            "claude-sonnet",
            ts(2) + 4,
            0.02,
            "fallback",
            "b:escalation:deepseek-chat:1",
        ),
        # the primary failed (no row) and a fallback answered: still one request
        row("c:fallback:claude-sonnet", "claude-sonnet", ts(2) + 5, 0.03, "fallback", "c", counts_request=True),
    ]
    groups = {g["request_id"]: g for g in group_requests(rows)}
    assert set(groups) == {"a", "b", "c"}
    assert groups["a"]["rephrased"] and not groups["a"]["escalated"]
    b = groups["b"]
    assert b["escalated"] and b["chain"] == ["local-llama", "deepseek-chat", "claude-sonnet"] and b["cost_usd"] == 0.021
    assert groups["c"]["fallback"] and groups["c"]["first"] == "claude-sonnet"


def test_an_escalation_answered_by_a_fallback_is_an_escalation() -> None:
    """The gate escalated the local answer to DeepSeek, which failed (or broke off before its first word) and LiteLLM's
    fallback, Claude, answered: the rows are kind "fallback" under the escalation's id. The request was escalated
    (the dashboard and the report's escalation count said it was not)."""
    rows = [
        row("d", "local-llama", ts(3)),
        row("d:1:broken1", "deepseek-chat", ts(3) + 1, 0.001, "fallback", "d:1"),
        row("d:1:fallback:claude-sonnet", "claude-sonnet", ts(3) + 2, 0.02, "fallback", "d:1", leaves_local=True),
        row("e", "deepseek-chat", ts(3) + 3, 0.001),
        row("e:judge-quality-1", "deepseek-chat", ts(3) + 4, 0.001, "judge", "e"),
    ]
    groups = {g["request_id"]: g for g in group_requests(rows)}
    assert groups["d"]["escalated"] and groups["d"]["fallback"] and not groups["d"]["rephrased"]
    assert not groups["e"]["escalated"], "a judge call is not an escalation"


def test_ledger_sources_give_newest_requests_first_without_text() -> None:
    import asyncio

    rows = [row(f"r{i}", "local-llama", ts(1) + i) for i in range(5)]

    async def month_rows() -> list[dict]:
        return rows

    src = LedgerSources(month_rows, lambda: ({"artifact_sha256": "ab" * 32}, "learned", [0.2, 0.3]))
    recent = asyncio.run(src.recent_requests(3))
    assert [r["request_id"] for r in recent] == ["r4", "r3", "r2"]
    assert all(r["route_score"] is None and "messages" not in r for r in recent)
    info = asyncio.run(src.router_info())
    assert info["version"] == "shipped-" + "ab" * 6 and info["last_learning_run"] is None
    assert asyncio.run(src.learning_runs("2026-03")) == []
    assert router_version({"version": "20261201T000000Z-deadbeef"}) == "20261201T000000Z-deadbeef"


def test_counters_give_tier_mix_and_escalation_by_tier() -> None:
    reg = CollectorRegistry()
    decisions = Counter("d", "d", ["tier", "mode"], registry=reg)
    served = Counter("s", "s", ["first_tier", "served_tier"], registry=reg)
    verdicts = Counter("v", "v", ["tier", "action"], registry=reg)
    decisions.labels(tier="local-llama", mode="live").inc(3)
    decisions.labels(tier="claude-sonnet", mode="live").inc(1)
    decisions.labels(tier="claude-sonnet", mode="shadow").inc(7)  # shadow decisions served nothing
    served.labels(first_tier="local-llama", served_tier="local-llama").inc(2)
    served.labels(first_tier="local-llama", served_tier="deepseek-chat").inc(1)
    verdicts.labels(tier="local-llama", action="deliver").inc(2)
    verdicts.labels(tier="local-llama", action="escalate").inc(1)
    mix = tier_mix(decisions, ["local-llama", "deepseek-chat", "claude-sonnet"])
    assert mix["total"] == 4 and [t["share"] for t in mix["tiers"]] == [0.75, 0.0, 0.25]
    (esc,) = escalation_by_tier(served, verdicts)
    assert (esc["tier"], esc["judged"], esc["escalated"], esc["rate"]) == ("local-llama", 3, 1, 0.3333)
    assert esc["verdicts"] == {"deliver": 2, "escalate": 1}


def test_guide_costs_and_marks_are_the_budget_status_figures() -> None:
    status = {
        "month": "2026-03",
        "requests": 10,
        "local_requests": 8,
        "monthly_used": 1.5,
        "savings": 4.5,
        "savings_percent": 75.0,
        "monthly_limit": 200.0,
        "alert_at": 0.7,
        "stop_at": 0.95,
    }
    assert guide_costs(status) == {
        "month": "2026-03",
        "localInferences": 8,
        "cloudInferences": 2,
        "monthlyCost": 1.5,
        "savings": 4.5,
        "savingsPercentage": 75.0,
    }
    assert budget_marks(status) == {"alert_usd": 140.0, "stop_usd": 190.0}


def test_session_cookie_proves_the_key_without_holding_it() -> None:
    s = Sessions(lifetime_s=60)
    key = "sk-synqra-" + "x" * 40
    token = s.issue(key, now=1000)
    assert key not in token and s.valid(token, key, now=1030)
    assert not s.valid(token, key, now=1061), "expired"
    assert not s.valid(token, "sk-synqra-other", now=1030), "another master key"
    expires, nonce, sig = token.split(".")
    assert not s.valid(f"{int(expires) + 3600}.{nonce}.{sig}", key, now=1030), "a stretched expiry breaks the signature"
    assert not s.valid(None, key) and not s.valid("garbage", key) and not s.valid("1.2", key)
    s.revoke(token, now=1030)
    assert not s.valid(token, key, now=1030), "signed out"
    assert s.valid(s.issue(key, now=1030), key, now=1031), "a new sign-in works"


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        (b"", None, "JSON"),
        (b"not json", None, "JSON"),
        (b"[1, 2]", None, "JSON object"),
        (b"{}", "message", "message"),
        (b'{"message": "   "}', "message", "message"),
        (b'{"message": 5}', "message", "string"),
        (b'{"message": "hi", "max_tokens": 0}', "max_tokens", "greater than 0"),
        (b'{"message": "hi", "max_tokens": "lots"}', "max_tokens", "integer"),
        (b'{"message": "hi", "agent": ""}', "agent", "agent"),
        (b'{"message": "hi", "model": "claude-sonnet"}', "model", "not permitted"),
    ],
)
def test_agents_bad_input_is_a_400_naming_the_field(body: bytes, param: str | None, words: str) -> None:
    with pytest.raises(HTTPException) as e:
        _parse(body)
    assert e.value.status_code == 400
    error = e.value.detail["error"]  # type: ignore[index]
    assert (
        error["type"] == "invalid_request_error"
        and error["param"] == param
        and words.lower() in error["message"].lower()
    )


def test_agents_input_accepts_the_guides_shape() -> None:
    r = _parse(b'{"message": "What is your pricing?", "system": "Be brief.", "agent": "support", "max_tokens": 64}')
    assert (r.message, r.system, r.agent, r.max_tokens) == ("What is your pricing?", "Be brief.", "support", 64)


def test_ledger_tap_keeps_a_requests_rows_by_its_client_id() -> None:
    tap = LedgerTap(keep=2)

    def rec(rid: str, parent: str | None, cost: int) -> LedgerRecord:
        return LedgerRecord(rid, "2026-03", 0.0, "auto", "m", 1, 1, cost, 0, parent_id=parent)

    tap(rec("a", None, 1))
    tap(rec("a:escalation:m:1", "a", 2))
    tap(rec("b", None, 3))
    assert [r.cost_nano for r in tap.rows("a")] == [1, 2]
    tap(rec("c", None, 4))
    assert tap.rows("a") == [] and len(tap.rows("c")) == 1, "only the newest requests are kept"


def test_dashboard_routes_are_free_and_nothing_else_under_it() -> None:
    p = RoutePolicy()
    for method, path in (
        ("GET", "/dashboard"),
        ("POST", "/dashboard/login"),
        ("POST", "/dashboard/logout"),
        ("GET", "/dashboard/data"),
        ("GET", "/dashboard/assets/dashboard.js"),
        ("POST", "/api/agents"),
    ):
        assert p.verdict(method, path) == "free", (method, path)
    assert p.verdict("GET", "/dashboard/assets/a/b") == "closed"
    assert p.verdict("DELETE", "/dashboard") == "closed"
    assert p.verdict("GET", "/api/agents") == "closed"


def test_learning_sources_add_scores_labels_version_and_runs(tmp_path: Path) -> None:
    import asyncio

    from policies.learning.registry import RouterRegistry
    from policies.learning.store import InferenceLog, Label, RouteRow
    from policies.routing.scorer import DEFAULT_ARTIFACT

    log = InferenceLog(tmp_path / "learning")
    log.write(
        routes=[
            RouteRow(
                "r1",
                ts(1),
                "k",
                b"",
                b"",
                b"",
                0,
                '{"messages": "secret text"}',
                0.2345,
                "learned",
                "v1",
                "local-llama",
                "live",
            )
        ],
        labels=[Label("r1", "gate", 1.0, ts(1) + 1)],
    )
    registry = RouterRegistry(tmp_path / "learning" / "routers", DEFAULT_ARTIFACT)
    registry.record_run({"time": "2026-03-02T10:00:00Z", "ts": ts(2), "decision": "kept", "reason": "too few labels"})
    registry.record_run({"ts": ts(3), "decision": "would install", "dry_run": True})
    registry.record_run(
        {
            "time": "2026-04-01T10:00:00Z",
            "ts": datetime(2026, 4, 1, 10, tzinfo=UTC).timestamp(),
            "decision": "installed",
            "version": "20260401T100000Z-abcdef12",
            "reason": "won",
        }
    )
    rows = [
        row("r1", "local-llama", ts(1)),
        row("r2", "claude-sonnet", ts(1) + 5, 0.01, requested_model="claude-sonnet"),
    ]

    async def month_rows() -> list[dict]:
        return rows

    src = LearningSources(month_rows, lambda: (None, "learned", [0.2, 0.3]), registry, log)
    recent = asyncio.run(src.recent_requests(5))
    by_id = {r["request_id"]: r for r in recent}
    assert by_id["r1"]["route_score"] == 0.2345 and by_id["r1"]["labels"] == [{"source": "gate", "value": 1.0}]
    assert by_id["r2"]["route_score"] is None, "asked for by name: not routed, not in the inference log"
    assert "secret text" not in repr(recent)
    info = asyncio.run(src.router_info())
    assert info["last_learning_run"]["outcome"] == "installed" and "dry" not in repr(info["last_learning_run"])
    march = asyncio.run(src.learning_runs("2026-03"))
    assert [r["outcome"] for r in march] == ["kept"], "the month's runs, dry runs left out"
    log.close()


def test_the_last_learning_run_is_the_last_fit_and_a_rollback_shows_apart(tmp_path: Path) -> None:
    """`synqra learn --rollback` after an install: the router card's "last learning run" showed the rollback (it learnt
    nothing) and the note counted it as a learning run. The last fit shows, the rollback beside it."""
    import asyncio

    from policies.learning.registry import ROLLED_BACK, RouterRegistry
    from policies.routing.scorer import DEFAULT_ARTIFACT

    registry = RouterRegistry(tmp_path / "routers", DEFAULT_ARTIFACT)

    async def no_rows() -> list[dict]:
        return []

    src = LearningSources(no_rows, lambda: (None, "learned", [0.2, 0.3]), registry)
    registry.record_run({"ts": ts(1), "decision": ROLLED_BACK, "version": "base", "reason": "synqra learn --rollback"})
    info = asyncio.run(src.router_info())
    assert info["last_learning_run"] is None and info["last_rollback"]["version"] == "base"
    assert info["note"] == "no learning runs recorded; 1 rollbacks"
    registry.record_run({"ts": ts(2), "decision": "installed", "version": "20260302T000000Z-abcdef12", "reason": "won"})
    registry.record_run({"ts": ts(3), "decision": ROLLED_BACK, "version": "base", "reason": "synqra learn --rollback"})
    info = asyncio.run(src.router_info())
    assert info["last_learning_run"]["outcome"] == "installed", info
    assert info["last_learning_run"]["version"] == "20260302T000000Z-abcdef12"
    assert info["last_rollback"]["outcome"] == ROLLED_BACK and info["last_rollback"]["ts"] == ts(3)
    assert info["note"] == "1 learning runs recorded; 2 rollbacks"


def test_the_ledger_is_reread_on_new_rows_but_a_slow_read_rarely(monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from proxy.dashboard import data

    clock = [1000.0]
    monkeypatch.setattr(data.time, "monotonic", lambda: clock[0])
    reads: list[int] = []

    async def read() -> int:
        reads.append(1)
        clock[0] += 2.0  # this read took 2 s
        return len(reads)

    cache = data._Cached(ttl_s=60.0, spacing=20.0, min_gap_s=2.0)

    async def main() -> None:
        assert await cache.get("a", read) == 1
        clock[0] += 10
        assert await cache.get("b", read) == 1, "new rows, but a 2 s read is not repeated within 40 s"
        clock[0] += 31
        assert await cache.get("b", read) == 2, "41 s later: re-read"
        clock[0] += 1
        assert await cache.get("b", read) == 2, "same totals: kept"
        clock[0] += 61
        assert await cache.get("b", read) == 3, "a minute old: re-read regardless"

    asyncio.run(main())


def test_ledger_view_keeps_the_daily_series_and_the_newest_rows() -> None:
    from proxy.dashboard.data import TAIL_ROWS, ledger_view

    records = [
        LedgerRecord(f"r{i}", "2026-03", ts(1 + i % 28), "auto", "deepseek-chat", 1, 1, 1000, 2000)
        for i in range(TAIL_ROWS + 50)
    ]
    view = ledger_view(records, "2026-03", "UTC")
    assert sum(d["requests"] for d in view.daily) == TAIL_ROWS + 50
    assert sum(d["cost_usd"] for d in view.daily) == pytest.approx((TAIL_ROWS + 50) * 1e-6)
    assert len(view.tail) == TAIL_ROWS and view.tail[-1]["request_id"] == records[-1].request_id
    assert view.tail[-1]["cost_usd"] == 1e-6


def test_a_sign_out_in_one_worker_ends_the_session_in_the_others(tmp_path: Path) -> None:
    key = "sk-synqra-" + "y" * 40
    shared = tmp_path / "run" / "dashboard_signed_out"
    one, other = Sessions(revoked_file=shared), Sessions(revoked_file=shared)
    token = one.issue(key)
    assert other.valid(token, key)
    one.revoke(token)
    assert not other.valid(token, key) and not Sessions(revoked_file=shared).valid(token, key), "and after a restart"
    assert key not in shared.read_text()


def test_counters_summed_over_workers_come_from_the_collected_families() -> None:
    from prometheus_client.metrics_core import CounterMetricFamily

    reg = CollectorRegistry()
    decisions = Counter("d2", "d", ["tier", "mode"], registry=reg)
    decisions.labels(tier="local-llama", mode="live").inc(1)  # this worker's own count
    summed = CounterMetricFamily("d2", "d", labels=["tier", "mode"])
    summed.add_metric(["local-llama", "live"], 5)  # what the multiprocess collector sums over every worker
    summed.add_metric(["claude-sonnet", "live"], 5)
    mix = tier_mix(decisions, ["local-llama", "claude-sonnet"], [summed])
    assert mix["total"] == 10 and mix["tiers"][0]["share"] == 0.5


def test_a_request_that_only_timed_out_is_spend_not_a_recent_request() -> None:
    """A non-streamed call that timed out (and whose fallback timed out too) leaves only rows that count no request:
    `<id>:timeout1` and `<id>:fallback:<model>:timeout1`. status() counts no request for it; the recent requests
    listed it as one (with the timed-out model as first and a fallback)."""
    import asyncio

    rows = [
        row("a", "local-llama", ts(4)),
        row("t:timeout1", "claude-sonnet", ts(4) + 1, 0.05, parent="t", counts_request=False),
        row(
            "t:fallback:deepseek-chat:timeout1",
            "deepseek-chat",
            ts(4) + 2,
            0.001,
            "fallback",
            "t:fallback:deepseek-chat",
        ),
        # timed out, then LiteLLM's retry on the same model answered: one served request
        row("u:timeout1", "claude-sonnet", ts(4) + 3, 0.05, parent="u", counts_request=False),
        row("u", "claude-sonnet", ts(4) + 4, 0.01),
    ]
    groups = {g["request_id"]: g for g in group_requests(rows)}
    assert not groups["t"]["served"] and groups["t"]["cost_usd"] == 0.051
    assert groups["u"]["served"] and groups["u"]["cost_usd"] == 0.06 and groups["a"]["served"]

    async def month_rows() -> list[dict]:
        return rows

    recent = asyncio.run(LedgerSources(month_rows, lambda: (None, "heuristic", [])).recent_requests(10))
    assert [r["request_id"] for r in recent] == ["u", "a"]
    days = daily_series(rows, "2026-03", "UTC")
    assert days[3]["requests"] == 2 and days[3]["cost_usd"] == 0.111


def test_an_attempt_that_gave_no_answer_is_no_escalation_and_no_fallback() -> None:
    """Billed attempts that gave no answer: the gate's escalation timed out (`<id>:1:timeout1`, kind escalation) and
    the gate delivered the local answer; a stream's first attempt broke off before answering and LiteLLM's retry on
    the same model answered (`<id>:broken1`, kind fallback). The recent requests and the report called the first
    escalated and the second answered by a fallback; the gate's own count (synqra_quality_served_total) says the
    first was served by its first tier, and no fallback answered the second."""
    rows = [
        row("g", "local-llama", ts(5)),
        row("g:1:timeout1", "deepseek-chat", ts(5) + 1, 0.001, "escalation", "g:1"),
        row("h:broken1", "deepseek-chat", ts(5) + 2, 0.0001, "fallback", "h"),
        row("h", "deepseek-chat", ts(5) + 3, 0.001),
        row("k", "local-llama", ts(5) + 4),
        row("k:1:timeout1", "local-llama", ts(5) + 5, kind="escalation", parent="k:1"),  # a rephrase that timed out
    ]
    groups = {g["request_id"]: g for g in group_requests(rows)}
    assert not groups["g"]["escalated"] and groups["g"]["cost_usd"] == 0.001 and groups["g"]["served"]
    assert not groups["h"]["fallback"] and groups["h"]["cost_usd"] == 0.0011
    assert not groups["k"]["rephrased"]
