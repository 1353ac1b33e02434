"""`GET /metrics` on the running proxy: what a routed and an explicit request leave in Prometheus."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from policies.learning.store import InferenceLog
from tests.stack import wait_until


def scrape(stack) -> dict[tuple[str, tuple], float]:
    r = httpx.get(f"{stack.base_url}/metrics", headers=stack.headers(), timeout=30)
    assert r.status_code == 200, r.text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(r.text)
        for s in f.samples
    }


def delta(after: dict, before: dict, name: str, **labels: str) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_metrics_count_routes_verdicts_and_spend(stack, openai_client, fresh_providers) -> None:
    assert httpx.get(f"{stack.base_url}/metrics", timeout=30).status_code == 401, "the master key is required"
    before = scrape(stack)
    easy = openai_client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What is your pricing?"}], max_tokens=16
    )
    explicit = openai_client.chat.completions.create(
        model="deepseek-chat", messages=[{"role": "user", "content": "Summarise the plot of Hamlet."}], max_tokens=16
    )
    assert explicit.choices[0].message.content
    served = easy.headers["x-synqra-route"]
    after = scrape(stack)
    assert delta(after, before, "synqra_route_decisions_total", tier="local-llama", mode="live") == 1
    assert delta(after, before, "synqra_route_decision_seconds_count") == 1
    verdicts = sum(
        delta(after, before, "synqra_quality_verdicts_total", tier="local-llama", action=a)
        for a in ("deliver", "rephrase", "escalate")
    )
    assert (
        verdicts == 1
        and delta(after, before, "synqra_quality_served_total", first_tier="local-llama", served_tier=served) == 1
    )
    assert delta(after, before, "synqra_calls_total", model="deepseek-chat", kind="chat", local="false") >= 1
    assert delta(after, before, "synqra_cost_usd_total", model="deepseek-chat") > 0
    assert delta(after, before, "synqra_calls_total", model="local-llama", kind="chat", local="true") == 1
    assert delta(after, before, "synqra_cost_usd_total", model="local-llama") == 0
    # The live verdict is in the inference log with its route score and router version, as route-thresholds
    # --max-escalation reads it.
    score = float(easy.headers["x-synqra-route-score"])
    log = InferenceLog(stack.data_dir / "learning")
    try:

        def row() -> dict | None:
            return log.row(easy.headers["x-synqra-request-id"])

        assert wait_until(lambda: (r := row()) is not None and any(x["source"] == "gate" for x in r["labels"]), 10)
        r = row()
        assert r is not None and abs(r["route_score"] - score) < 5e-5, (score, r)
        assert r["router_version"] == easy.headers["x-synqra-router-version"] and r["scorer"] == "learned"
    finally:
        log.close()
    status = httpx.get(f"{stack.base_url}/api/budget/status", headers=stack.headers(), timeout=30).json()
    assert wait_until(
        lambda: scrape(stack)[("synqra_budget_committed_usd", ())] == pytest.approx(status["monthly_used"], abs=1e-6),
        10,
    )
    assert after[("synqra_budget_limit_usd", ())] == status["monthly_limit"]


def test_budget_alerts_are_counted_once_each_across_workers(stack, providers, fresh_providers, tmp_path) -> None:
    """Paid calls take two workers' shared month past 50% and 70% of its limit: synqra_budget_alerts_total counts each
    level once (there was no metric of the alerts: a webhook that failed left no trace in Prometheus)."""
    from tests.stack import MASTER_KEY, start_stack

    budget = {"monthly_limit_usd": 0.002, "alert_levels": [0.5]}
    s = start_stack(tmp_path, providers, {"budget": budget, "server": {"num_workers": 2}}, backends_of=stack)
    try:
        auth = {"Authorization": f"Bearer {MASTER_KEY}"}
        status = lambda: httpx.get(f"{s.base_url}/api/budget/status", headers=auth, timeout=30).json()  # noqa: E731
        for i in range(60):
            if status()["percentage"] >= 70:
                break
            body = {"model": "claude-sonnet", "max_tokens": 8, "messages": [{"role": "user", "content": f"Hi {i}"}]}
            r = httpx.post(f"{s.base_url}/v1/chat/completions", json=body, headers=auth, timeout=120)
            assert r.status_code == 200, r.text
        assert 70 <= status()["percentage"] < 95, status()

        def alerts() -> dict[str, float]:
            got = scrape(s)
            key = "synqra_budget_alerts_total"
            return {lv: got.get((key, (("level", lv), ("tag", ""))), 0.0) for lv in ("0.5", "0.7", "stop")}

        assert wait_until(lambda: alerts() == {"0.5": 1.0, "0.7": 1.0, "stop": 0.0}, 30), alerts()
    finally:
        s.stop()
