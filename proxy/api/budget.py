"""`GET /api/budget/status` (`?by=tag`: also broken down by request tag) and `GET /api/budget/ledger`: the
month's budget figures, for the master key only.

The app supplies the guard and its master-key check as FastAPI dependencies:

    app.include_router(make_budget_router(lambda: guard, require_master_key))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends

from policies.budget.guard import BudgetGuard
from proxy.api.errors import api_error


def make_budget_router(get_guard: Callable[[], BudgetGuard], require_master_key: Callable[..., Any]) -> APIRouter:
    """`require_master_key` is a dependency that raises (401/403) unless the caller holds the master key."""
    router = APIRouter(tags=["budget"])

    @router.get("/api/budget/status", dependencies=[Depends(require_master_key)])
    async def budget_status(by: str | None = None, guard: BudgetGuard = Depends(get_guard)) -> dict[str, Any]:
        if by not in (None, "tag"):
            raise api_error(
                400, f"by={by!r} is not a breakdown of the budget status; the one there is: by=tag", param="by"
            )
        return await guard.status(by_tag=by == "tag")

    @router.get("/api/budget/ledger", dependencies=[Depends(require_master_key)])
    async def budget_ledger(month: str | None = None, guard: BudgetGuard = Depends(get_guard)) -> dict[str, Any]:
        """Every recorded model call of a month ("YYYY-MM", default the current one), oldest first."""
        rows = await guard.records(month)
        return {
            "month": month or (rows[0].month if rows else None),
            "records": [
                {
                    **{k: v for k, v in asdict(r).items() if not k.endswith("_nano")},
                    "cost_usd": r.cost_usd,
                    "baseline_usd": r.baseline_usd,
                }
                for r in rows
            ],
        }

    return router
