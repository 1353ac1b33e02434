"""GET /api/models/status and POST /api/models/init (the user's guide's endpoints).

Status says which local models are loaded and healthy and which cloud models are
configured and have keys, and the month's costs as the guide reads them (`.costs`,
the budget status's figures); it never returns a key. Init loads and warms the local
models with one tiny request each; calling it again does no harm.
"""

from __future__ import annotations

import os
import time
from typing import Any

import httpx
from fastapi import APIRouter, Depends

from policies.common.settings import AppConfig
from proxy.api.auth import require_master_key
from proxy.availability import Availability, env_ref
from proxy.runtime import Runtime, get_runtime

router = APIRouter(prefix="/api/models", dependencies=[Depends(require_master_key)])


def local_backends(cfg: AppConfig) -> dict[str, tuple[str, Any]]:
    """model name -> (kind, backend settings) for the local servers."""
    b = cfg.synqra.backends
    return {b.llama.model_alias: ("llm", b.llama), b.embed.model_alias: ("embedding", b.embed)}


async def _health(client: httpx.AsyncClient, url: str) -> dict[str, Any]:
    try:
        r = await client.get(f"{url}/health", timeout=3.0)
        body = r.json() if r.status_code == 200 else {}
        return {
            "healthy": r.status_code == 200,
            **{k: body[k] for k in ("model_path", "prompt_format", "dimensions") if k in body},
        }
    except (httpx.HTTPError, ValueError) as e:
        return {"healthy": False, "error": type(e).__name__}


def cloud_models(cfg: AppConfig, availability: Availability) -> dict[str, dict[str, Any]]:
    local = set(local_backends(cfg)) | {cfg.synqra.routing.virtual_model}
    out: dict[str, dict[str, Any]] = {}
    for m in cfg.model_list:
        if m.model_name in local:
            continue
        key_var, has_key = env_ref(m.litellm_params.get("api_key"))
        base_var, _ = env_ref(m.litellm_params.get("api_base"))
        out[m.model_name] = {
            "provider_model": m.litellm_params["model"],
            "configured": True,
            "has_key": has_key,
            "key_env": key_var,
            "api_base": (os.environ.get(base_var) if base_var else m.litellm_params.get("api_base"))
            or "provider default",
            # Whether routing, escalations and fallbacks may use it now, and if not why (no key, key refused).
            "available": (why := availability.reason(m.model_name)) is None,
            "unavailable_reason": why,
        }
    return out


async def model_health(rt: Runtime) -> dict[str, Any]:
    """Local backends (health-checked now) and cloud models (configured, available or why not): the status
    without costs."""
    cfg = rt.config
    async with httpx.AsyncClient() as client:
        local = {}
        for name, (kind, b) in local_backends(cfg).items():
            local[name] = {"kind": kind, "enabled": b.enabled, "url": b.url, "managed": not b.external_url}
            if b.enabled:
                local[name].update(await _health(client, b.url))
    return {"local": local, "cloud": cloud_models(cfg, rt.availability), "virtual": cfg.synqra.routing.virtual_model}


def guide_costs(budget: dict[str, Any]) -> dict[str, Any]:
    """The month's figures under the names the user's guide reads (`jq '.costs'`), from the budget status:
    client requests served locally and by a cloud model, spend, and savings against the all-Claude baseline."""
    return {
        "month": budget["month"],
        "localInferences": budget["local_requests"],
        "cloudInferences": budget["requests"] - budget["local_requests"],
        "monthlyCost": budget["monthly_used"],
        "savings": budget["savings"],
        "savingsPercentage": budget["savings_percent"],
    }


@router.get("/status")
async def models_status() -> dict[str, Any]:
    rt = get_runtime()
    health = await model_health(rt)
    # The same figures as GET /api/budget/status (one store read, the guard's own arithmetic).
    return {**health, "costs": guide_costs(await rt.budget.status())}


async def _warm(client: httpx.AsyncClient, kind: str, b: Any) -> dict[str, Any]:
    t0 = time.perf_counter()
    if kind == "llm":
        body = {"model": b.model_alias, "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 1}
        r = await client.post(f"{b.url}/v1/chat/completions", json=body, timeout=120)
    else:
        r = await client.post(f"{b.url}/v1/embeddings", json={"model": b.model_alias, "input": "warm up"}, timeout=60)
    return {
        "status": "ready" if r.status_code == 200 else "error",
        "http_status": r.status_code,
        "warm_ms": round((time.perf_counter() - t0) * 1000, 1),
    }


@router.post("/init")
async def models_init() -> dict[str, Any]:
    cfg = get_runtime().config
    out: dict[str, Any] = {}
    async with httpx.AsyncClient() as client:
        for name, (kind, b) in local_backends(cfg).items():
            if not b.enabled:
                out[name] = {"status": "disabled"}
                continue
            try:
                out[name] = await _warm(client, kind, b)
            except httpx.HTTPError as e:
                out[name] = {"status": "unreachable", "error": type(e).__name__}
    return {"models": out}
