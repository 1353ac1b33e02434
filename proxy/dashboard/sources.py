"""Where the operator's views read routed requests, the router's version and learning runs.

One small interface, `OperatorSources`, so the dashboard and `synqra report` do not care where these
come from. Today's implementation, `LedgerSources`, reads what exists:
- recent requests from the budget ledger (time, models called, escalation, fallback, cost, tag): the
  ledger keeps no route or quality score, so those are None;
- the router's version from the serving artifact's manifest;
- no learning runs (the learning loop is not wired into the proxy yet).
The inference log (route scores, labels, versioned routers, the run log) will implement the same three
methods; nothing else changes. No method ever returns prompt or answer text.
"""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from proxy.dashboard.figures import group_requests

NO_RUNS_NOTE = "no learning runs yet: the router serves its shipped artifact (synqra learn is not wired into this proxy)"


class OperatorSources(Protocol):
    async def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        """The newest client requests first, at most `limit`. Each: ts, request_id, requested_model,
        first (the model of the request's own call), chain (every model called), escalated, fallback,
        route_score and quality_score (None when unknown), cost_usd, tag."""
        ...

    async def router_info(self) -> dict[str, Any]:
        """version, scorer, embedder, thresholds, last_learning_run (a run record or None), note."""
        ...

    async def learning_runs(self, month: str) -> list[dict[str, Any]]:
        """Learning runs of `month` ("YYYY-MM"), oldest first. Each: ts, version, outcome, reason."""
        ...


def artifact_manifest(artifact: Path) -> dict[str, Any] | None:
    """The manifest beside a router artifact (`router.npz` -> `router.manifest.json`), if readable."""
    try:
        data = json.loads(artifact.with_suffix(".manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def router_version(manifest: Mapping[str, Any] | None) -> str:
    """A router's version: its manifest's `version`, else `shipped-<sha12 of the weights>` (the name the
    learning registry gives an unversioned base artifact)."""
    if not manifest:
        return "none (structural fallback rule)"
    v = manifest.get("version")
    if isinstance(v, str) and v:
        return v
    sha = str(manifest.get("artifact_sha256") or "")
    return f"shipped-{sha[:12]}" if sha else "shipped-unknown"


def router_info_of(manifest: Mapping[str, Any] | None, scorer: str, thresholds: list[float]) -> dict[str, Any]:
    m = manifest or {}
    return {
        "version": router_version(manifest) if scorer != "heuristic" else "none (structural fallback rule)",
        "scorer": scorer,
        "embedder": m.get("embedder"),
        "thresholds": [round(float(t), 6) for t in thresholds],
        "training_code": str(m.get("training_code_sha256") or "")[:12] or None,
        "last_learning_run": None,
        "note": NO_RUNS_NOTE,
    }


class LedgerSources:
    """OperatorSources from the ledger and the router artifact.

    `rows`: the current month's ledger rows as dicts (the caller caches them); `router`: a function
    returning (artifact manifest or None, scorer name, thresholds) of the router that serves."""

    def __init__(
        self,
        rows: Callable[[], Awaitable[list[dict[str, Any]]]],
        router: Callable[[], tuple[Mapping[str, Any] | None, str, list[float]]],
    ) -> None:
        self._rows = rows
        self._router = router

    async def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        groups = group_requests(await self._rows())
        newest = groups[-limit:] if limit > 0 else []
        return [{**g, "route_score": None, "quality_score": None} for g in reversed(newest)]

    async def router_info(self) -> dict[str, Any]:
        return router_info_of(*self._router())

    async def learning_runs(self, month: str) -> list[dict[str, Any]]:
        return []
