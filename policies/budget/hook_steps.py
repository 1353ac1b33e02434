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
import logging
import math
from typing import Any

from policies.budget.guard import BudgetExhausted, BudgetGuard, CallTooCostly, DuplicateRequest
from policies.budget.records import CallRecord
from policies.common.api_shapes import EMBEDDING_CALLS, KIND_BY_CALL_TYPE, chat_view

log = logging.getLogger("synqra.budget")

# What the tokenizer cannot count is bounded by its JSON size instead: the tokenizers we price average
# 3-4 characters per token of prose, code or JSON, base64 media and encrypted blocks are billed far
# below this bound, and non-ASCII text is escaped to 6 characters a character. An upper bound for all
# but pathological strings, as a reservation guarding the hard monthly limit must be.
JSON_CHARS_PER_TOKEN = 2
# Role and separators of a message estimated that way (LiteLLM counts 3, plus 3 to prime the reply).
MESSAGE_OVERHEAD_TOKENS = 4


class BudgetRefused(Exception):
    """A paid call refused by the budget; carries the client-facing message."""

    def __init__(self, message: str, status: int = 429) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def key_hash(api_key: str | None) -> str | None:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None


def prompt_tokens(guard: BudgetGuard, model: str, data: dict[str, Any], call_type: str = "acompletion") -> int:
    if call_type in EMBEDDING_CALLS:
        raw = data.get("input")
        return guard.count_prompt_tokens(model, text=raw if isinstance(raw, str) else "\n".join(map(str, raw or [])))
    n = _messages_tokens(guard, model, data.get("messages") or [])
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


def _json_tokens(value: Any) -> int:
    return math.ceil(len(json.dumps(value, separators=(",", ":"), default=str)) / JSON_CHARS_PER_TOKEN)


def _try_count(guard: BudgetGuard, model: str, messages: list[Any]) -> int | None:
    try:
        return guard.count_prompt_tokens(model, messages=messages)
    except Exception:  # LiteLLM's counter raises on content it does not know (input_audio, refusal, server_tool_use...)
        return None


def _messages_tokens(guard: BudgetGuard, model: str, messages: list[Any]) -> int:
    """The tokenizer's count; where it fails, each message and then each content part it cannot
    count is bounded by its JSON size. Never raises: unusual but valid content must reach the
    provider (which answers invalid content with a 400 in its API's format), not fail here with a 500."""
    n = _try_count(guard, model, messages)
    if n is not None:
        return n
    log.debug("token counter cannot count the messages for %s; bounding the parts it cannot count by JSON size", model)
    return sum(_message_tokens(guard, model, m) for m in messages)


def _message_tokens(guard: BudgetGuard, model: str, message: Any) -> int:
    n = _try_count(guard, model, [message])
    if n is not None:
        return n
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, list):
        return _json_tokens(message) + MESSAGE_OVERHEAD_TOKENS
    role = message.get("role")
    rest = {k: v for k, v in message.items() if k not in ("role", "content")}  # tool_calls, name...
    total = (_json_tokens(rest) if rest else 0) + MESSAGE_OVERHEAD_TOKENS
    for part in content:
        counted = _try_count(guard, model, [{"role": role, "content": [part]}])
        total += counted if counted is not None else _json_tokens(part)
    return total


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
    call_type = state.get("call_type", "acompletion")
    view = chat_view(data, call_type)  # completions and Responses API requests read as chat
    max_tokens = view.get("max_tokens") or view.get("max_completion_tokens")
    try:
        await guard.reserve(state["request_id"], model, prompt_tokens(guard, model, view, call_type), max_tokens, _choices(view))
        state["reserved"] = True
    except BudgetExhausted as e:
        if routed:  # synqra picked the paid tier: the free one serves instead (also when the call is too costly)
            data["model"] = local_model
            state["route"] = local_model
            state["budget"] = "stopped"
            return
        if isinstance(e, CallTooCostly):  # no month pays for it: a retry after the reset would fail too
            raise BudgetRefused(_too_costly_message(data, e), status=400) from e
        raise BudgetRefused(e.message) from e
    except DuplicateRequest as e:
        raise BudgetRefused(f"duplicate request id {state['request_id']!r}: {e}", status=400) from e


def _too_costly_message(data: dict[str, Any], e: CallTooCostly) -> str:
    # Named as the client sent it: max_output_tokens on the Responses API.
    key = next((k for k in ("max_tokens", "max_completion_tokens", "max_output_tokens") if data.get(k)), None)
    if key is None:  # the model's output ceiling was assumed
        return f"this request is too large for the monthly budget: {e.message}; set a smaller max_tokens"
    return f"'{key}' ({data[key]}) is too large for the monthly budget: {e.message}; lower {key}"


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
        counts_request=state.get("counts_request", True),
        leaves_local=bool(state.get("leaves_local")),
    )
    if state.get("reserved"):
        await guard.settle(state["request_id"], record)
    else:
        await guard.record_free(record)


async def release(guard: BudgetGuard, state: dict[str, Any]) -> None:
    if state.get("reserved"):
        await guard.release(state["request_id"])
