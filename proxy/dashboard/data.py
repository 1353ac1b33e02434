"""The dashboard's JSON: one snapshot of the month, built from the code behind the admin endpoints.

- budget: the guard's `status(by_tag=True)` (`GET /api/budget/status?by=tag`), plus the spend bar's marks;
- daily series and recent requests: the month's ledger rows (`GET /api/budget/ledger`'s store read);
- tier mix and escalation by tier: synqra's Prometheus counters (`GET /metrics`; summed over the workers when
  there are several), since the proxy started;
- model health: `proxy.api.models.model_health` (`GET /api/models/status`);
- recent requests' route scores, router version and learning runs: an OperatorSources
  (proxy/dashboard/sources.py; the learning loop's inference log, registry and run log).

The ledger is re-read only when the month's totals moved (a new row changes the request count, spend or
tokens), never sooner than 20 times its last read took (a large month is re-read rarely; its figures from
`status()` stay live), and summarised off the event loop; local backends' health is checked at most every
few seconds. An open dashboard costs the proxy little (bench/dashboard_cost.py).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar
from zoneinfo import ZoneInfo

from prometheus_client.metrics_core import Metric

from policies.budget.guard import BudgetGuard
from policies.budget.records import LedgerRecord
from proxy import metrics
from proxy.dashboard.figures import budget_marks, daily_series, escalation_by_tier, row_of, tier_mix
from proxy.dashboard.sources import LearningSources, LedgerSources, OperatorSources, artifact_manifest
from proxy.runtime import Runtime

PROCESS_STARTED = time.time()
RECENT_LIMIT = 15
TAIL_ROWS = 400  # the newest ledger rows kept for the recent requests (a request and its extra calls are adjacent)


async def budget_status(guard: BudgetGuard) -> dict[str, Any]:
    """`GET /api/budget/status`'s figures, broken down by tag when the guard can (`?by=tag`)."""
    return await guard.status(by_tag=True)  # what `?by=tag` calls


def worker_sums() -> list[Metric] | None:
    """With several workers, the counters summed over all of them, as `/metrics` reads them (prometheus-client's
    multiprocess files); None with one process (each counter's own values are the sums)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return None
    from prometheus_client.multiprocess import MultiProcessCollector

    return list(MultiProcessCollector(None).collect())


V = TypeVar("V")


class _Cached(Generic[V]):
    """An async value recomputed when its key changes or after `ttl_s`, one computation at a time, and never
    sooner than `spacing` times the last computation took after the previous one (at least `min_gap_s`): a
    costly read (a large month's ledger) is repeated rarely, a cheap one at once."""

    def __init__(self, ttl_s: float, spacing: float = 0.0, min_gap_s: float = 0.0) -> None:
        self.ttl_s = ttl_s
        self.spacing = spacing
        self.min_gap_s = min_gap_s
        self._key: object = None
        self._at = 0.0
        self._took = 0.0
        self._value: V | None = None
        self._lock = asyncio.Lock()

    async def get(self, key: object, compute: Callable[[], Awaitable[V]]) -> V:
        async with self._lock:
            age = time.monotonic() - self._at
            stale = key != self._key and age >= max(self.min_gap_s, self.spacing * self._took)
            if self._value is None or stale or age > self.ttl_s:
                t0 = time.monotonic()
                self._value = await compute()
                self._took = time.monotonic() - t0
                self._key, self._at = key, time.monotonic()
            return self._value


@dataclass(frozen=True)
class LedgerView:
    """What the page needs of the month's ledger: the daily series, and the newest rows (recent requests)."""

    month: str
    daily: list[dict[str, Any]]
    tail: list[dict[str, Any]]


def ledger_view(records: list[LedgerRecord], month: str | None, tz: str) -> LedgerView:
    month = month or (records[0].month if records else time.strftime("%Y-%m"))
    return LedgerView(
        month,
        daily_series((vars(r) | {"cost_usd": r.cost_usd} for r in records), month, tz),
        [row_of(r) for r in records[-TAIL_ROWS:]],
    )


class DashboardData:
    def __init__(self, rt: Runtime, sources: OperatorSources | None = None, health_ttl_s: float = 5.0) -> None:
        self.rt = rt
        # A month of 100,000 rows takes seconds to read: re-read when the totals moved, but at most every 20x
        # the last read's time (a few seconds for a small ledger), and every minute regardless.
        self._ledger: _Cached[LedgerView] = _Cached(ttl_s=60.0, spacing=20.0, min_gap_s=2.0)
        self._ledger_key: object = None
        self._month: str | None = None  # the budget's month as status() last said (None: the guard's current one)
        self._tz = rt.config.synqra.budget.timezone
        self._health: _Cached[dict[str, Any]] = _Cached(ttl_s=health_ttl_s)
        self.sources = sources or self._learning_sources()

    def _learning_sources(self) -> OperatorSources:
        """The ledger plus the learning loop's log, registry and run log (the ledger alone if it cannot start)."""
        try:
            loop = self.rt.learning
        except Exception:  # noqa: BLE001  # a broken learning store must not take the dashboard down
            return LedgerSources(self.month_rows, self._router)
        store = loop.writer.store if loop.writer is not None else None
        return LearningSources(self.month_rows, self._router, loop.registry, store, lambda: loop.version, self._tz)

    def _router(self) -> tuple[dict[str, Any] | None, str, list[float]]:
        router = self.rt.router
        scorer = router.scorer
        manifest = getattr(scorer, "manifest", None)
        if manifest is None and scorer.name != "heuristic":
            from policies.routing.scorer import DEFAULT_ARTIFACT

            manifest = artifact_manifest(DEFAULT_ARTIFACT)
        return manifest, scorer.name, router.thresholds

    async def ledger(self) -> LedgerView:
        guard, tz, month = self.rt.budget, self._tz, self._month

        async def read() -> LedgerView:
            records = await guard.records(month)
            # Summarised off the event loop: requests keep flowing while a large month is read.
            return await asyncio.to_thread(ledger_view, records, month, tz)

        return await self._ledger.get(self._ledger_key, read)

    async def month_rows(self) -> list[dict[str, Any]]:
        """The month's newest ledger rows (enough for the recent requests), as OperatorSources reads them."""
        return (await self.ledger()).tail

    async def snapshot(self) -> dict[str, Any]:
        from proxy.api.models import model_health

        rt = self.rt
        cfg = rt.config
        status, health = await asyncio.gather(
            budget_status(rt.budget), self._health.get(None, lambda: model_health(rt))
        )
        tokens = status.get("tokens") or {}
        # Any new ledger row moves one of these: re-read the rows only then (or after the cache's ttl).
        self._month = status["month"]
        self._ledger_key = (
            status["month"],
            status["requests"],
            status["monthly_used"],
            tokens.get("prompt"),
            tokens.get("completion"),
        )
        view = await self.ledger()
        recent, router = await asyncio.gather(self.sources.recent_requests(RECENT_LIMIT), self.sources.router_info())
        tiers = list(cfg.synqra.routing.tiers)
        families = await asyncio.to_thread(worker_sums)
        return {
            "generated_at": time.time(),
            "budget": status,
            "marks": budget_marks(status),
            "daily": view.daily,
            "today": datetime.now(ZoneInfo(status["timezone"])).strftime("%Y-%m-%d"),
            "tier_mix": tier_mix(metrics.ROUTE_DECISIONS, tiers, families),
            "escalation": escalation_by_tier(metrics.QUALITY_SERVED, metrics.QUALITY_VERDICTS, families),
            "counters_since": PROCESS_STARTED,
            "models": health,
            "router": router,
            "recent": recent,
        }
