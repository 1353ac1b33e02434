"""`GET /metrics`: Prometheus text format, for the master key only (scrapers send it as a bearer token).

Renders prometheus_client's default registry: synqra's metrics (proxy.metrics), the process's own,
and LiteLLM's when its `prometheus` callback is configured. This route is registered before LiteLLM
mounts its own /metrics at start-up, so it answers first; both render the same registry.

With several worker processes (prometheus-client's multiprocess mode, PROMETHEUS_MULTIPROC_DIR set by
proxy.server), counters and histograms are summed over every worker's files, whichever worker answers the
scrape; the budget and learning gauges are that worker's view of what the workers share.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from policies.budget.guard import BudgetGuard
from proxy.metrics import register_budget, register_learning

_budget_registered = False


def _scrape_registry() -> CollectorRegistry:
    """The default registry, or with several workers one summing every worker's files plus this worker's own
    collectors (the budget and learning gauges)."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    return registry


def make_metrics_router(
    get_guard: Callable[[], BudgetGuard | None],
    require_master_key: Callable[..., Any],
    get_learning: Callable[[], Any] = lambda: None,
) -> APIRouter:
    global _budget_registered
    registry = _scrape_registry()
    if not _budget_registered or registry is not REGISTRY:  # one collector of each per registry
        register_budget(get_guard, registry)
        register_learning(get_learning, registry)
        _budget_registered = True
    router = APIRouter(tags=["metrics"])

    @router.get("/metrics", dependencies=[Depends(require_master_key)])
    async def metrics(request: Request) -> Response:
        # The format the scraper asks for (Accept: OpenMetrics or the classic text format).
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        # Rendered off the event loop: with LiteLLM's per-key labels the registry can grow large.
        body = await asyncio.to_thread(encoder, registry)
        return Response(content=body, headers={"Content-Type": content_type})

    return router
