"""`POST /v1/messages/count_tokens` for every model, answered here: no provider is called.

Anthropic clients (Claude Code) ask before sending how many input tokens a request holds. LiteLLM answers
only for Anthropic models, by calling Anthropic; here every model answers: the local model (and `auto`, whose
answer may come from it) with the llama.cpp server's own tokenizer, a paid model with LiteLLM's tokenizer's count
for that model, tool definitions and system blocks included (what the budget records a call booked at its worst
case at; its reservation may hold a short prompt at its byte count instead, policies/budget/worst_case.py). Errors
are in Anthropic's format.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from policies.budget.worst_case import prompt_tokens
from policies.common.message_content import join_parts
from proxy.api.auth import holds_master_key
from proxy.runtime import get_runtime

PATH = "/v1/messages/count_tokens"
# LiteLLM's model_info modes of a model that answers a prompt (an embedding model has none to count for).
CHAT_MODES = ("chat", "completion", "responses")


def _error(status: int, kind: str, message: str) -> JSONResponse:
    return JSONResponse({"type": "error", "error": {"type": kind, "message": message}}, status_code=status)


def _part_text(part: Any) -> str:
    if isinstance(part, dict) and part.get("type") == "text":
        return str(part.get("text", ""))
    return json.dumps(part)  # tool_use / tool_result / images: their JSON, as the prompt carries them


def request_text(body: dict[str, Any]) -> str:
    """Everything of a Messages request the model reads, as one text: system, turns, tool definitions."""
    parts = [join_parts(body.get("system"), _part_text)]
    parts += [join_parts(m.get("content"), _part_text) for m in body.get("messages") or [] if isinstance(m, dict)]
    if body.get("tools"):
        parts.append(json.dumps(body["tools"]))
    return "\n".join(p for p in parts if p)


async def _local_count(url: str, text: str) -> int:
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{url}/extras/tokenize", json={"input": text})
        r.raise_for_status()
        return int(r.json()["count"])


def make_count_tokens_router() -> APIRouter:
    router = APIRouter(tags=["anthropic"])

    @router.post(PATH)
    async def count_tokens(request: Request) -> JSONResponse:
        rt = get_runtime()
        if not holds_master_key(request):
            return _error(401, "authentication_error", "invalid API key")
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_request_error", "request body is not valid JSON")
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("messages"), list)
            or not isinstance(body.get("model"), str)
        ):
            return _error(400, "invalid_request_error", "'model' (a string) and 'messages' (a list) are required")
        cfg = rt.config
        name = cfg.canonical(cfg.resolve_requested(body["model"]))
        entry = cfg.model(name)
        if entry is None:
            return _error(
                404,
                "not_found_error",
                f"model {body['model']!r} is not served here; models: {', '.join(cfg.model_names)}",
            )
        mode = entry.model_info.get("mode", "chat")  # LiteLLM's own default
        if mode not in CHAT_MODES:
            chat = [m.model_name for m in cfg.model_list if m.model_info.get("mode", "chat") in CHAT_MODES]
            return _error(
                400,
                "invalid_request_error",
                f"model {body['model']!r} is not a chat model (its mode is {mode!r}): tokens are counted for a "
                f"model that answers a Messages request; use one of {', '.join(chat)}",
            )
        local = cfg.synqra.backends.llama
        if name in (rt.router.settings.virtual_model, local.model_alias):
            try:
                return JSONResponse({"input_tokens": await _local_count(local.url, request_text(body))})
            except (httpx.HTTPError, KeyError, ValueError) as e:
                return _error(
                    529, "overloaded_error", f"the local model's tokenizer is unavailable: {type(e).__name__}"
                )
        return JSONResponse({"input_tokens": prompt_tokens(rt.budget, name, body, "anthropic_messages")})

    return router
