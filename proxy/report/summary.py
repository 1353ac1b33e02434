"""A month's economics, gathered for `synqra report` without a running proxy.

The ledger is read through the store the proxy writes (`BudgetGuard.from_config`, then `records(month)`);
the current month's totals are the guard's own `status()` (the figures of `GET /api/budget/status`), a past
month's the store's month totals with the month fully elapsed. Quality verdicts are read from the proxy's
log (the quality gate logs each one); the live Prometheus counters belong to a running process and are not
available offline. The router's version and the month's learning runs come from the learning loop's registry
and run log (policies/learning), also files the report can read.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from policies.budget.guard import BudgetGuard, month_alerts
from policies.budget.policy import alert_level
from policies.budget.records import to_usd
from policies.budget.window import month_window, utc_now
from policies.common.settings import AppConfig
from proxy.dashboard.data import budget_status
from proxy.dashboard.figures import (
    budget_marks,
    daily_series,
    group_requests,
    ledger_counts,
    row_of,
    served_requests,
)
from proxy.dashboard.sources import LearningSources, OperatorSources, artifact_manifest

# The user's guide: "Reduce costs from $150/month to $30-40/month".
PLAN_BEFORE_USD = 150.0
PLAN_TARGET_USD = (30.0, 40.0)

# The quality gate's verdict line (proxy/quality_gate.py, `_pick`), live or shadow:
# "<YYYY-MM-DD hh:mm:ss,ms> synqra.quality INFO [shadow ]quality 0.812 deliver (...) ... first=local-llama ..."
_VERDICT = re.compile(
    r"^(\d{4}-\d{2})-\d{2} \S+ synqra\.quality INFO (shadow )?quality \d+(?:\.\d+)? (\w+) .* first=(\S+)"
)


@dataclass(frozen=True)
class PlanVerdict:
    projected_usd: float
    before_usd: float
    target_low_usd: float
    target_high_usd: float

    @property
    def verdict(self) -> str:
        if self.projected_usd <= self.target_high_usd:
            return "within or below the target"
        return "above the target" if self.projected_usd < self.before_usd else "above the bill before synqra"


def logged_verdicts(lines: Iterable[str], month: str) -> dict[str, dict[str, dict[str, int]]]:
    """{"live" | "shadow": {first tier: {action: count}}} of the quality verdicts logged in `month`
    (by the log's own timestamps, the proxy's local time)."""
    out: dict[str, dict[str, dict[str, int]]] = {"live": defaultdict(dict), "shadow": defaultdict(dict)}
    for line in lines:
        m = _VERDICT.match(line)
        if m and m.group(1) == month:
            mode = "shadow" if m.group(2) else "live"
            tier_counts = out[mode][m.group(4)]
            tier_counts[m.group(3)] = tier_counts.get(m.group(3), 0) + 1
    return {k: dict(v) for k, v in out.items()}


def _log_lines(path: Path) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()
    except OSError:
        return []


async def past_month_status(guard: BudgetGuard, month: str) -> dict[str, Any]:
    """A closed month's figures in `status(by_tag=True)`'s names, from the store's month totals (the month fully
    elapsed: the projection is the spend, the local servers' flat cost is the whole month's). As in `status()`,
    `alerts_fired` is the month's own levels: a tag's alerts ("tag:0.7@20:docs-bot") are the tag's, not the
    month's; a level fired against any limit the month had counts."""
    s = guard.settings
    t = await guard.store.totals(month)
    committed, baseline = to_usd(t.committed_nano), to_usd(t.baseline_nano)
    actual = committed + s.local_flat_monthly_usd
    return {
        "month": month,
        "timezone": s.timezone,
        "monthly_limit": s.monthly_limit_usd,
        "monthly_used": round(committed, 6),
        "reserved": 0.0,
        "percentage": round(100 * committed / s.monthly_limit_usd, 2),
        "alert_at": s.alert_at,
        "stop_at": s.stop_at,
        "alerts_fired": sorted({alert_level(k) for k in month_alerts(t.alerts)}),  # against any limit it had
        "state": "closed",
        "projected_month_end": round(committed, 6),
        "elapsed_share": 1.0,
        "requests": t.requests,
        "local_requests": t.local_requests,
        "local_share": round(t.local_requests / t.requests, 4) if t.requests else 0.0,
        "tokens": {"prompt": t.prompt_tokens, "completion": t.completion_tokens},
        "baseline_model": s.baseline_model,
        "baseline_cost": round(baseline, 6),
        "local_flat_cost": round(s.local_flat_monthly_usd, 6),
        "savings": round(baseline - actual, 6),
        "savings_percent": round(100 * (baseline - actual) / baseline, 2) if baseline > 0 else 0.0,
        "by_tag": await guard.month_by_tag(month, t, s.local_flat_monthly_usd),
    }


def router_of(cfg: AppConfig) -> tuple[dict[str, Any] | None, str, list[float]]:
    """The configured router as the report can know it offline: its artifact's manifest and thresholds."""
    from policies.routing.scorer import DEFAULT_ARTIFACT

    r = cfg.synqra.routing
    manifest = artifact_manifest(Path(r.artifact_path) if r.artifact_path else DEFAULT_ARTIFACT)
    thresholds = list(r.thresholds or (manifest or {}).get("recommended_thresholds") or [])
    return manifest, "learned" if manifest else "heuristic", thresholds


async def month_report(
    cfg: AppConfig,
    guard: BudgetGuard,
    month: str | None,
    sources: OperatorSources | None = None,
    now: Callable[[], datetime] = utc_now,
) -> dict[str, Any]:
    """The report's figures for `month` (default the budget's current month; `now` is the guard's clock)."""
    current = month_window(now(), guard.settings.timezone).key  # the budget's month, in its timezone
    month = month or current
    status = await budget_status(guard) if month == current else await past_month_status(guard, month)
    rows = [row_of(r) for r in await guard.records(month)]

    async def month_rows() -> list[dict[str, Any]]:
        return rows

    if sources is None:
        from policies.learning.registry import RouterRegistry
        from policies.routing.scorer import DEFAULT_ARTIFACT

        r = cfg.synqra.routing
        base = Path(r.artifact_path).expanduser() if r.artifact_path else DEFAULT_ARTIFACT
        folder = cfg.synqra.learning.store_path(cfg.synqra.server.data_path)
        registry = RouterRegistry(folder / "routers", base)
        sources = LearningSources(month_rows, lambda: router_of(cfg), registry, tz=guard.settings.timezone)
    groups = group_requests(rows)
    # A request whose every call failed is not a served request (status() does not count it), but what its timed-out
    # or broken calls were billed is spend: shown on its own line, so that the spend adds up.
    requests = served_requests(groups)
    failed = [g for g in groups if not g["served"]]
    counts = ledger_counts(rows)
    flat = guard.settings.local_flat_monthly_usd
    baseline_projected = status["baseline_cost"] / max(status["elapsed_share"], 1 / 31)
    return {
        "month": month,
        "current": month == current,
        "budget": status,
        "marks": budget_marks(status),
        "daily": daily_series(rows, month, status["timezone"]),
        "by_model": counts["by_model"],
        "calls_by_kind": counts["by_kind"],
        "escalated_requests": sum(g["escalated"] for g in requests),
        "rephrased_requests": sum(g["rephrased"] for g in requests),
        "fallback_requests": sum(g["fallback"] for g in requests),
        "client_requests_in_ledger": len(requests),
        "failed_billed_requests": len(failed),
        "failed_billed_usd": round(sum(g["cost_usd"] for g in failed), 9),
        "verdicts": logged_verdicts(_log_lines(cfg.synqra.server.data_path / "logs" / "proxy.log"), month),
        "plan": PlanVerdict(status["projected_month_end"] + flat, PLAN_BEFORE_USD, *PLAN_TARGET_USD),
        "baseline_projected": round(baseline_projected, 6),
        "router": await sources.router_info(),
        "learning_runs": await sources.learning_runs(month),
        "store": guard.store.name,
    }
