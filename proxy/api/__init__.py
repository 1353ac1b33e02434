"""synqra's own endpoints, mounted on LiteLLM's FastAPI app next to its /v1 routes."""

from __future__ import annotations

from fastapi import FastAPI

from proxy.api.agents import router as agents_router
from proxy.api.auth import require_master_key
from proxy.api.budget import make_budget_router
from proxy.api.count_tokens import make_count_tokens_router
from proxy.api.feedback import router as feedback_router
from proxy.api.metrics import make_metrics_router
from proxy.api.models import router as models_router
from proxy.runtime import get_runtime


def mount_routes(app: FastAPI) -> None:
    # Ahead of LiteLLM's own /v1/messages/count_tokens (which calls Anthropic, for Anthropic models only).
    first = len(app.router.routes)
    app.include_router(make_count_tokens_router())
    app.router.routes.insert(0, app.router.routes.pop(first))
    app.include_router(models_router)
    app.include_router(feedback_router)
    app.include_router(agents_router)
    app.include_router(make_budget_router(lambda: get_runtime().budget, require_master_key))
    # The guard only once the runtime has built it (warm-up does): a scrape never builds it.
    app.include_router(
        make_metrics_router(
            lambda: vars(get_runtime()).get("budget"), require_master_key, lambda: vars(get_runtime()).get("learning")
        )
    )


__all__ = ["mount_routes", "require_master_key"]
