"""Where the operator's views read routed requests, the router's version and learning runs.

One small interface, `OperatorSources`, so the dashboard and `synqra report` do not care where these
come from. Two implementations:
- `LedgerSources`: recent requests from the budget ledger (time, models called, escalation, fallback, cost,
  tag; the ledger keeps no route or quality score, so those are None), the router's version from the
  artifact's manifest, no learning runs;
- `LearningSources`: the same, plus what the learning loop (policies/learning) keeps: each routed request's
  route score, router version and labels from the inference log, the serving version from the router
  registry, and the runs of `synqra learn` from its run log.
No method ever returns prompt or answer text (the inference log's kept text, if any, is not read).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from zoneinfo import ZoneInfo

from policies.learning.registry import ROLLED_BACK
from proxy.dashboard.figures import group_requests, served_requests

if TYPE_CHECKING:
    from policies.learning.registry import RouterRegistry
    from policies.learning.store import InferenceLog

NO_RUNS_NOTE = "no learning runs recorded (synqra learn has not run: the router serves its base artifact)"


class OperatorSources(Protocol):
    async def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        """The newest client requests first, at most `limit`. Each: ts, request_id, requested_model,
        first (the model of the request's own call), chain (every model called), escalated, fallback,
        route_score and quality_score (None when unknown), cost_usd, tag."""
        ...

    async def router_info(self) -> dict[str, Any]:
        """version, scorer, embedder, thresholds, last_learning_run (a fit's run record or None), last_rollback (when
        there was one), note."""
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
        # A request that only left billed failures (a timed-out call) is spend, not a served request.
        groups = served_requests(group_requests(await self._rows()))
        newest = groups[-limit:] if limit > 0 else []
        return [{**g, "route_score": None, "quality_score": None} for g in reversed(newest)]

    async def router_info(self) -> dict[str, Any]:
        return router_info_of(*self._router())

    async def learning_runs(self, month: str) -> list[dict[str, Any]]:
        return []


def run_summary(record: Mapping[str, Any]) -> dict[str, Any]:
    """A `synqra learn` run-log record as the views show it."""
    return {
        "ts": record.get("ts"),
        "time": record.get("time"),
        "outcome": record.get("decision"),
        "version": record.get("version"),
        "reason": record.get("reason"),
        "labelled_rows": record.get("labelled_rows"),
    }


def _month_of(ts: float, tz: str) -> str:
    """The budget month ("YYYY-MM", in the budget's timezone `tz`) of a unix time."""
    return datetime.fromtimestamp(ts, ZoneInfo(tz)).strftime("%Y-%m")


class LearningSources(LedgerSources):
    """LedgerSources plus the learning loop's inference log, router registry and run log.

    `log`: the inference log (None when logging is off); `version`: the serving router's version as the
    proxy knows it (None: ask the registry); `tz`: the budget's timezone, which decides a run's month."""

    def __init__(
        self,
        rows: Callable[[], Awaitable[list[dict[str, Any]]]],
        router: Callable[[], tuple[Mapping[str, Any] | None, str, list[float]]],
        registry: RouterRegistry,
        log: InferenceLog | None = None,
        version: Callable[[], str | None] = lambda: None,
        tz: str = "UTC",
    ) -> None:
        super().__init__(rows, router)
        self.tz = tz
        self.registry = registry
        self.log = log
        self._version = version

    async def recent_requests(self, limit: int) -> list[dict[str, Any]]:
        out = await super().recent_requests(limit)
        log = self.log
        if log is None or not out:
            return out
        logged = await asyncio.to_thread(lambda: [log.row(r["request_id"]) for r in out])
        for r, row in zip(out, logged):
            if row is not None:  # routed requests only; the row's kept text (request_json) is not passed on
                r["route_score"] = row.get("route_score")
                r["router_version"] = row.get("router_version")
                r["labels"] = [{"source": x["source"], "value": x["value"]} for x in row.get("labels") or []]
        return out

    async def _runs(self) -> list[dict[str, Any]]:
        runs = await asyncio.to_thread(self.registry.runs)
        return [run_summary(r) for r in runs if not r.get("dry_run")]

    async def router_info(self) -> dict[str, Any]:
        info = await super().router_info()
        current = self._version() or await asyncio.to_thread(self.registry.current_version)
        if current and current != "base":
            info["version"] = current
        runs = await self._runs()
        # A rollback learnt nothing: it was shown as the last learning run (and counted as one).
        fits = [r for r in runs if r["outcome"] != ROLLED_BACK]
        rollbacks = [r for r in runs if r["outcome"] == ROLLED_BACK]
        if fits:
            info["last_learning_run"] = fits[-1]
            info["note"] = f"{len(fits)} learning runs recorded"
        if rollbacks:
            info["last_rollback"] = rollbacks[-1]
            runs_note = info["note"] if fits else "no learning runs recorded"
            info["note"] = f"{runs_note}; {len(rollbacks)} rollbacks"
        return info

    async def learning_runs(self, month: str) -> list[dict[str, Any]]:
        return [
            r for r in await self._runs() if isinstance(r["ts"], (int, float)) and _month_of(r["ts"], self.tz) == month
        ]
