"""Prometheus metrics: ledger counters add up to the ledger, budget gauges match the status, /metrics is guarded."""

from __future__ import annotations

import asyncio
import random
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI, Header, HTTPException
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from policies.budget.guard import BudgetExhausted, BudgetGuard
from policies.budget.records import CallRecord
from proxy import metrics
from proxy.api.metrics import make_metrics_router
from tests.unit.test_budget_guard import PRICES, START, Clock, app_config, cost


def sqlite_guard(tmp_path: Path, **budget: object) -> BudgetGuard:
    return BudgetGuard.from_config(app_config(tmp_path, {"store": "sqlite", **budget}), now=Clock(START), env={})


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def spend(guard: BudgetGuard, calls: list[tuple[str, int, int]], prefix: str) -> None:
    for i, (m, p, c) in enumerate(calls):
        rec = CallRecord(f"{prefix}{i}", "auto", m, p, c, kind="chat")
        if guard.is_free(m):
            await guard.record_free(rec)
        else:
            await guard.settle(await guard.reserve(f"{prefix}{i}", m, p, c), rec)


def test_ledger_counters_add_up_to_the_ledger(tmp_path: Path) -> None:
    rng = random.Random(7)
    calls = [(rng.choice(list(PRICES)), rng.randint(1, 4000), rng.randint(1, 2000)) for _ in range(120)]
    models = sorted(PRICES)
    before = {
        m: (
            sample("synqra_cost_usd_total", model=m),
            sample("synqra_baseline_usd_total", model=m),
            sample("synqra_tokens_total", model=m, direction="prompt"),
            sample("synqra_calls_total", model=m, kind="chat", local=str(m == "local-llama").lower()),
        )
        for m in models
    }

    async def main() -> None:
        g = sqlite_guard(tmp_path, monthly_limit_usd=1000.0)
        g.listeners.append(metrics.observe_ledger)
        await spend(g, calls, "m")
        await g.aclose()

    asyncio.run(main())
    for m in models:
        mine = [(p, c) for mm, p, c in calls if mm == m]
        c0, b0, t0, n0 = before[m]
        expected = sum((cost(m, p, c) for p, c in mine), Decimal(0))
        baseline = sum((cost("claude-sonnet", p, c) for p, c in mine), Decimal(0))
        assert sample("synqra_cost_usd_total", model=m) - c0 == pytest.approx(float(expected), abs=1e-6)
        assert sample("synqra_baseline_usd_total", model=m) - b0 == pytest.approx(float(baseline), abs=1e-6)
        assert sample("synqra_tokens_total", model=m, direction="prompt") - t0 == sum(p for p, _ in mine)
        local = str(m == "local-llama").lower()
        assert sample("synqra_calls_total", model=m, kind="chat", local=local) - n0 == len(mine)


def test_spend_by_kind_shows_what_judges_and_escalations_cost(tmp_path: Path) -> None:
    """synqra_cost_usd_total{model} mixes a judge's DeepSeek calls with the clients' own: the by-kind counter tells
    them apart (a judge's monthly limit is on its own spend)."""
    rows = [
        ("c", "chat", "deepseek-chat", 1000, 200),
        ("c:esc", "escalation", "claude-sonnet", 1200, 300),
        ("c:judge-quality-1", "judge", "deepseek-chat", 700, 180),
        ("d:judge-learning-1", "judge", "deepseek-chat", 900, 20),
    ]
    kinds = ("chat", "escalation", "judge")
    before = {k: sample("synqra_cost_by_kind_usd_total", kind=k) for k in kinds}

    async def main() -> None:
        g = sqlite_guard(tmp_path, monthly_limit_usd=1000.0)
        g.listeners.append(metrics.observe_ledger)
        for rid, kind, m, p, c in rows:
            rec = CallRecord(rid, "auto", m, p, c, kind=kind, counts_request=kind == "chat")
            await g.settle(await g.reserve(rid, m, p, c), rec)
        await g.aclose()

    asyncio.run(main())
    for k in kinds:
        expected = sum((cost(m, p, c) for _, kind, m, p, c in rows if kind == k), Decimal(0))
        assert sample("synqra_cost_by_kind_usd_total", kind=k) - before[k] == pytest.approx(float(expected), abs=1e-9)


def test_a_failing_listener_loses_no_record(tmp_path: Path) -> None:
    def broken(_: object) -> None:
        raise RuntimeError("metrics bug")

    async def main() -> int:
        g = sqlite_guard(tmp_path)
        g.listeners.append(broken)
        await spend(g, [("deepseek-chat", 100, 50), ("local-llama", 10, 10)], "f")
        n = len(await g.records())
        await g.aclose()
        return n

    assert asyncio.run(main()) == 2


def test_budget_gauges_follow_the_guard(tmp_path: Path) -> None:
    registry = CollectorRegistry()

    async def main() -> tuple[dict[str, float], dict[str, float], dict, dict[str, float]]:
        g = sqlite_guard(tmp_path, monthly_limit_usd=0.05)
        metrics.register_budget(lambda: g, registry)
        empty = _gauges(registry)
        await spend(g, [("claude-sonnet", 1000, 500)] * 3, "g")  # $0.0315 of $0.05
        status = await g.status()
        mid = _gauges(registry)
        await spend(g, [("claude-sonnet", 1000, 500)], "h")  # $0.042: the next such call does not fit under 95%
        with pytest.raises(BudgetExhausted):
            await g.reserve("i", "claude-sonnet", 1000, 500)
        end = _gauges(registry)
        await g.aclose()
        return empty, mid, status, end

    empty, mid, status, end = asyncio.run(main())
    assert empty["synqra_budget_committed_usd"] == 0 and empty["synqra_budget_limit_usd"] == 0.05
    assert mid["synqra_budget_committed_usd"] == pytest.approx(status["monthly_used"], abs=1e-6)
    assert mid["synqra_budget_used_ratio"] == pytest.approx(status["monthly_used"] / 0.05, rel=1e-6)
    assert mid["synqra_budget_stopped"] == 0 and end["synqra_budget_stopped"] == 1
    assert end["synqra_budget_pressure"] == 1.0


def _gauges(registry: CollectorRegistry) -> dict[str, float]:
    return {s.name: s.value for fam in registry.collect() for s in fam.samples}


def test_metrics_endpoint_needs_the_master_key_and_speaks_prometheus() -> None:
    def require_master_key(authorization: str = Header("")) -> None:
        if authorization != "Bearer sk-master":
            raise HTTPException(401, "master key required")

    metrics.observe_route("local-llama", "shadow", 0.0012)
    app = FastAPI()
    app.include_router(make_metrics_router(lambda: None, require_master_key))

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            return await c.get("/metrics"), await c.get("/metrics", headers={"Authorization": "Bearer sk-master"})

    denied, ok = asyncio.run(main())
    assert denied.status_code == 401
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/plain; version=")
    families = {f.name: f for f in text_string_to_metric_families(ok.text)}
    decided = [
        s for s in families["synqra_route_decisions"].samples if s.labels == {"tier": "local-llama", "mode": "shadow"}
    ]
    assert decided and decided[0].value >= 1
    assert "synqra_route_decision_seconds" in families
