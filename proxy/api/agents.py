"""`POST /api/agents`: the user's guide's endpoint, served exactly like a chat completion to `auto`.

    {"message": "What is your pricing?", "system": "...", "agent": "support-bot", "max_tokens": 256}
    -> {"response", "model", "request_id", "route_score", "quality_score", "escalated", "escalation", "cost_usd", "tag"}

The request is sent, in process, through the proxy's own ASGI app to `POST /v1/chat/completions` (no
socket: httpx's ASGI transport). So it passes everything a client's chat completion passes: the front
door's checks, LiteLLM's auth and request handling, synqra's pre-call hook (route, reserve), LiteLLM's
router (fallbacks, retries), the post-call hooks (settle, the quality gate's rephrase / escalation) and the
response-header hook. Calling `llm_router.acompletion` directly would skip the pre-call hook (routing and
the budget reservation), which is why proxy/quality_gate.py has to admit its extra calls by hand.
`agent` becomes the request's tag in LiteLLM's `metadata.tags`. The synqra headers of the inner answer are
copied onto this one; `cost_usd` sums the ledger rows written for the request (escalations included).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import httpx
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from policies.budget.records import LedgerRecord
from proxy.api.auth import require_master_key
from proxy.api.errors import api_error
from proxy.runtime import get_runtime

router = APIRouter(prefix="/api", dependencies=[Depends(require_master_key)])

INNER_PATH = "/v1/chat/completions"
LEDGER_WAIT_S = 2.0  # a non-streamed answer is settled before it is returned; this only covers a queued write


class AgentRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    message: str = Field(min_length=1)
    system: str | None = None
    agent: str | None = Field(default=None, min_length=1, max_length=128)
    max_tokens: int | None = Field(default=None, gt=0)


def _bad_request(message: str, param: str | None = None) -> HTTPException:
    return api_error(400, message, param=param, code="400")


def _parse(body: bytes) -> AgentRequest:
    try:
        return AgentRequest.model_validate_json(body or b"null")
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        if first["type"] == "json_invalid":
            raise _bad_request('the body is not valid JSON: send {"message": "..."}') from None
        if first["type"] in ("model_type", "model_attributes_type"):
            raise _bad_request('the body must be a JSON object: {"message": "..."}') from None
        raise _bad_request(f"{where}: {first['msg']}", where) from None


class LedgerTap:
    """The ledger rows the budget guard writes, kept briefly by client request id (a guard listener)."""

    def __init__(self, keep: int = 4096) -> None:
        self.keep = keep
        self._rows: OrderedDict[str, list[LedgerRecord]] = OrderedDict()

    def __call__(self, record: LedgerRecord) -> None:
        root = (record.parent_id or record.request_id).split(":", 1)[0]
        self._rows.setdefault(root, []).append(record)
        self._rows.move_to_end(root)
        while len(self._rows) > self.keep:
            self._rows.popitem(last=False)

    def rows(self, request_id: str) -> list[LedgerRecord]:
        return list(self._rows.get(request_id, ()))


_taps: dict[int, LedgerTap] = {}


def ledger_tap() -> LedgerTap:
    """This process's tap on the guard's ledger rows, attached on first use."""
    guard = get_runtime().budget
    tap = _taps.get(id(guard))
    if tap is None:
        tap = _taps[id(guard)] = LedgerTap()
        guard.listeners.append(tap)
    return tap


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # "unscored", "pending"


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return {
            "message": str(error.get("message") or response.text),
            "type": error.get("type") or "api_error",
            "param": error.get("param"),
            "code": str(error.get("code") or response.status_code),
        }
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, dict) and isinstance(detail.get("error"), dict):
        return {
            "message": str(detail["error"].get("message")),
            "type": detail["error"].get("type") or "api_error",
            "param": None,
            "code": str(response.status_code),
        }
    message = (detail if isinstance(detail, str) else None) or (str(error) if error else response.text[:500])
    return {"message": message, "type": "api_error", "param": None, "code": str(response.status_code)}


def _escalated(chain: str, served: str | None) -> bool:
    """Whether the quality gate's chain (`x-synqra-escalated`: "false", "pending" or "first>...") ended on another tier
    than the first answer's, as the route that served (`x-synqra-route`) says."""
    attempts = chain.split(">")
    return len(attempts) > 1 and served is not None and served != attempts[0]


@router.post("/agents")
async def agents(request: Request) -> JSONResponse:
    req = _parse(await request.body())
    rt = get_runtime()
    tap = ledger_tap()
    messages = ([{"role": "system", "content": req.system}] if req.system else []) + [
        {"role": "user", "content": req.message}
    ]
    body: dict[str, Any] = {"model": rt.config.synqra.routing.virtual_model, "messages": messages}
    if req.max_tokens is not None:
        body["max_tokens"] = req.max_tokens
    if req.agent:
        body["metadata"] = {"tags": [req.agent]}
    transport = httpx.ASGITransport(app=request.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://synqra.internal", timeout=None) as client:
        inner = await client.post(INNER_PATH, json=body, headers={"Authorization": f"Bearer {rt.master_key}"})
    synqra_headers = {k: v for k, v in inner.headers.items() if k.lower().startswith("x-synqra-")}
    if inner.status_code >= 400:
        raise HTTPException(
            status_code=inner.status_code, detail={"error": _error_of(inner)}, headers=synqra_headers or None
        )
    answer = inner.json()
    request_id = inner.headers.get("x-synqra-request-id", "")
    deadline = time.monotonic() + LEDGER_WAIT_S
    while request_id and not tap.rows(request_id) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    rows = tap.rows(request_id)
    chain = inner.headers.get("x-synqra-escalated", "false")
    choices = answer.get("choices") or [{}]
    return JSONResponse(
        {
            "response": (choices[0].get("message") or {}).get("content") or "",
            "model": inner.headers.get("x-synqra-route") or answer.get("model"),
            "request_id": request_id,
            "route_score": _float(inner.headers.get("x-synqra-route-score")),
            "quality_score": _float(inner.headers.get("x-synqra-quality-score")),
            # Served by another tier than the one that answered first (a rephrase on the same tier is not; nor is an
            # escalation whose answer scored below the first: the chain lists every attempt, the route who served).
            "escalated": _escalated(chain, inner.headers.get("x-synqra-route")),
            "escalation": chain if chain not in ("false", "pending", "") else None,
            "cost_usd": round(sum(r.cost_usd for r in rows), 9) if rows else None,
            "tag": req.agent,
            "usage": answer.get("usage"),
        },
        headers=synqra_headers,
    )
