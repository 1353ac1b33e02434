"""The dashboard's JSON: one snapshot of the month, built from the code behind the admin endpoints.

- budget: the guard's `status()` (`GET /api/budget/status`; with the per-tag breakdown when the guard
  offers it), plus the spend bar's marks;
- daily series and recent requests: the month's ledger rows (`GET /api/budget/ledger`'s store read);
- tier mix and escalation by tier: synqra's Prometheus counters (`GET /metrics`), since this process started;
- model health: `proxy.api.models.model_health` (`GET /api/models/status`);
- recent requests' route scores, router version and learning runs: an OperatorSources
  (proxy/dashboard/sources.py; the learning loop's inference log, registry and run log).

The ledger is re-read only when the month's totals moved (a new row changes the request count, spend or
tokens), and local backends' health at most every few seconds, so an open dashboard costs the proxy little.
"""
from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from policies.budget.guard import BudgetGuard
from proxy import metrics
from proxy.dashboard.figures import budget_marks, daily_series, escalation_by_tier, row_of, tier_mix
from proxy.dashboard.sources import LearningSources, LedgerSources, OperatorSources, artifact_manifest
from proxy.runtime import Runtime

PROCESS_STARTED = time.time()
RECENT_LIMIT = 15


async def budget_status(guard: BudgetGuard) -> dict[str, Any]:
    """`GET /api/budget/status`'s figures, broken down by tag when the guard can (`?by=tag`)."""
    # `status(by_tag=True)` is what `?by=tag` calls; a guard without tag support gives the month alone.
    if "by_tag" in inspect.signature(guard.status).parameters:
        return await guard.status(by_tag=True)  # type: ignore[call-arg]
    return await guard.status()


class _Cached:
    """An async value recomputed when its key changes, or after `ttl_s`; at most one computation at a time."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._key: object = None
        self._at = 0.0
        self._value: Any = None
        self._lock = asyncio.Lock()

    async def get(self, key: object, compute: Callable[[], Awaitable[Any]]) -> Any:
        async with self._lock:
            if self._value is None or key != self._key or time.monotonic() - self._at > self.ttl_s:
                self._value = await compute()
                self._key, self._at = key, time.monotonic()
            return self._value


class DashboardData:
    def __init__(self, rt: Runtime, sources: OperatorSources | None = None, health_ttl_s: float = 5.0) -> None:
        self.rt = rt
        self._rows = _Cached(ttl_s=60.0)
        self._rows_key: object = None
        self._health = _Cached(ttl_s=health_ttl_s)
        self.sources = sources or self._learning_sources()

    def _learning_sources(self) -> OperatorSources:
        """The ledger plus the learning loop's log, registry and run log (the ledger alone if it cannot start)."""
        try:
            loop = self.rt.learning
        except Exception:  # noqa: BLE001  # a broken learning store must not take the dashboard down
            return LedgerSources(self.month_rows, self._router)
        store = loop.writer.store if loop.writer is not None else None
        return LearningSources(self.month_rows, self._router, loop.registry, store, lambda: loop.version)

    def _router(self) -> tuple[dict[str, Any] | None, str, list[float]]:
        router = self.rt.router
        scorer = router.scorer
        manifest = getattr(scorer, "manifest", None)
        if manifest is None and scorer.name != "heuristic":
            from policies.routing.scorer import DEFAULT_ARTIFACT

            manifest = artifact_manifest(DEFAULT_ARTIFACT)
        return manifest, scorer.name, router.thresholds

    async def month_rows(self) -> list[dict[str, Any]]:
        guard = self.rt.budget
        return await self._rows.get(self._rows_key, lambda: self._read_rows(guard))  # type: ignore[no-any-return]

    @staticmethod
    async def _read_rows(guard: BudgetGuard) -> list[dict[str, Any]]:
        return [row_of(r) for r in await guard.records()]

    async def snapshot(self) -> dict[str, Any]:
        from proxy.api.models import model_health

        rt = self.rt
        cfg = rt.config
        status, health = await asyncio.gather(
            budget_status(rt.budget), self._health.get(None, lambda: model_health(rt))
        )
        tokens = status.get("tokens") or {}
        # Any new ledger row moves one of these: re-read the rows only then (or after the cache's ttl).
        self._rows_key = (status["month"], status["requests"], status["monthly_used"], tokens.get("prompt"), tokens.get("completion"))
        rows = await self.month_rows()
        recent, router = await asyncio.gather(self.sources.recent_requests(RECENT_LIMIT), self.sources.router_info())
        tiers = list(cfg.synqra.routing.tiers)
        return {
            "generated_at": time.time(),
            "budget": status,
            "marks": budget_marks(status),
            "daily": daily_series(rows, status["month"], status["timezone"]),
            "today": datetime.now(ZoneInfo(status["timezone"])).strftime("%Y-%m-%d"),
            "tier_mix": tier_mix(metrics.ROUTE_DECISIONS, tiers),
            "escalation": escalation_by_tier(metrics.QUALITY_SERVED, metrics.QUALITY_VERDICTS),
            "counters_since": PROCESS_STARTED,
            "models": health,
            "router": router,
            "recent": recent,
        }
