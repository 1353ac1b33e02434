"""The budget steps of a request, as the LiteLLM hooks call them.

admit():  before the call: reserve the worst-case cost of a paid call, or decide
          what happens when the month's money is gone (auto -> local, else 429).
account(): after the call: settle the reservation to the actual cost and write the
          ledger record (free calls are recorded too, for the local share).
release(): after a failed call: give the reservation back.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from policies.budget.guard import BudgetExhausted, BudgetGuard, DuplicateRequest
from policies.budget.records import CallRecord

KIND_BY_CALL_TYPE = {"acompletion": "chat", "completion": "chat", "anthropic_messages": "messages", "aembedding": "embedding", "embedding": "embedding"}


class BudgetRefused(Exception):
    """A paid call refused by the budget; carries the client-facing message."""

    def __init__(self, message: str, status: int = 429) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def key_hash(api_key: str | None) -> str | None:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None


def _prompt_tokens(guard: BudgetGuard, model: str, data: dict[str, Any]) -> int:
    if "input" in data and "messages" not in data:
        raw = data["input"]
        return guard.count_prompt_tokens(model, text=raw if isinstance(raw, str) else "\n".join(map(str, raw)))
    n = guard.count_prompt_tokens(model, messages=data.get("messages") or [])
    system = data.get("system")
    if system:
        text = system if isinstance(system, str) else " ".join(str(p.get("text", "")) for p in system if isinstance(p, dict))
        n += guard.count_prompt_tokens(model, text=text)
    # Tool definitions are billed as input by OpenAI and Anthropic alike (JSON schemas can
    # outweigh the messages); counted as their JSON text, whichever API's shape they have.
    defs = [d for key in ("tools", "functions") if isinstance(data.get(key), list) for d in data[key]]
    if defs:
        n += guard.count_prompt_tokens(model, text=json.dumps(defs, separators=(",", ":")))
    return n


def _choices(data: dict[str, Any]) -> int:
    """OpenAI's `n`: that many completions, each billed (Anthropic has no such field)."""
    try:
        return max(1, int(data.get("n") or 1))
    except (TypeError, ValueError):
        return 1


async def admit(
    guard: BudgetGuard, state: dict[str, Any], data: dict[str, Any], model: str, local_model: str, routed: bool
) -> None:
    """Reserve for a paid call to `model` (a model_list name, aliases resolved).

    `routed`: synqra chose the model, so it may fall back to the local one instead of refusing.
    """
    if guard.is_free(model):
        return
    max_tokens = data.get("max_tokens") or data.get("max_completion_tokens")
    try:
        await guard.reserve(state["request_id"], model, _prompt_tokens(guard, model, data), max_tokens, _choices(data))
        state["reserved"] = True
    except BudgetExhausted as e:
        if routed:
            data["model"] = local_model
            state["route"] = local_model
            state["budget"] = "stopped"
            return
        raise BudgetRefused(e.message) from e
    except DuplicateRequest as e:
        raise BudgetRefused(f"duplicate request id {state['request_id']!r}: {e}", status=400) from e


async def account(guard: BudgetGuard, state: dict[str, Any], call_type: str, usage: dict[str, int], served: str) -> None:
    record = CallRecord(
        request_id=state["request_id"],
        requested_model=state.get("requested_model", served),
        served_model=served,
        prompt_tokens=int(usage.get("prompt_tokens") or 0),
        completion_tokens=int(usage.get("completion_tokens") or 0),
        kind=state.get("kind") or KIND_BY_CALL_TYPE.get(call_type, "chat"),
        api_key_hash=state.get("key_hash"),
        user=state.get("user"),
        parent_id=state.get("parent_id"),
    )
    if state.get("reserved"):
        await guard.settle(state["request_id"], record)
    else:
        await guard.record_free(record)


async def release(guard: BudgetGuard, state: dict[str, Any]) -> None:
    if state.get("reserved"):
        await guard.release(state["request_id"])
