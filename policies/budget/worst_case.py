"""The worst case of a call, as its reservation counts it: prompt tokens and choices.

Prompt tokens are LiteLLM's tokenizer's count of the messages, the system prompt and the tool definitions
(billed as input by OpenAI and Anthropic alike); content the tokenizer cannot count is bounded by its JSON
size. Never raises: unusual but valid content must reach the provider (which answers invalid content with a
400 in its API's format), not fail here with a 500.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any

from policies.budget.guard import BudgetGuard
from policies.common.api_shapes import EMBEDDING_CALLS, RESPONSES_CALLS, stored_context

log = logging.getLogger("synqra.budget")

# What the tokenizer cannot count is bounded by its JSON size instead: the tokenizers we price average
# 3-4 characters per token of prose, code or JSON, base64 media and encrypted blocks are billed far
# below this bound, and non-ASCII text is escaped to 6 characters a character. An upper bound for all
# but pathological strings, as a reservation guarding the hard monthly limit must be.
JSON_CHARS_PER_TOKEN = 2
# Role and separators of a message estimated that way (LiteLLM counts 3, plus 3 to prime the reply).
MESSAGE_OVERHEAD_TOKENS = 4


def prompt_tokens(guard: BudgetGuard, model: str, data: dict[str, Any], call_type: str = "acompletion") -> int:
    if call_type in EMBEDDING_CALLS:
        raw = data.get("input")
        return guard.count_prompt_tokens(model, text=raw if isinstance(raw, str) else "\n".join(map(str, raw or [])))
    n = _messages_tokens(guard, model, data.get("messages") or [])
    system = data.get("system")
    if system:
        text = (
            system
            if isinstance(system, str)
            else " ".join(str(p.get("text", "")) for p in system if isinstance(p, dict))
        )
        n += guard.count_prompt_tokens(model, text=text)
    # Tool definitions are billed as input by OpenAI and Anthropic alike (JSON schemas can
    # outweigh the messages); counted as their JSON text, whichever API's shape they have.
    defs = [d for key in ("tools", "functions") if isinstance(data.get(key), list) for d in data[key]]
    if defs:
        n += guard.count_prompt_tokens(model, text=json.dumps(defs, separators=(",", ":")))
    if stored_context(data):
        # The provider prepends a conversation it stored, which the request does not show: up to the model's window.
        n = max(n, guard.prices.price(model).max_input_tokens or 0)
    return n


def billed_prompt_tokens(guard: BudgetGuard, model: str, tokens: int, ttls: set[str]) -> int:
    """`tokens` of prompt as input tokens at the worst price they may be billed: a prompt with a `cache_control`
    (its TTLs, `cache_breakpoints`) may be written to the cache whole, billed above the input price."""
    price = guard.prices.price(model)
    write = (price.cache_write_1h_per_token if "1h" in ttls else None) or price.cache_write_per_token
    if ttls and write and price.input_per_token and write > price.input_per_token:
        return math.ceil(tokens * write / price.input_per_token)
    return tokens


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


def choices(data: dict[str, Any]) -> int:
    """OpenAI's `n`: that many completions, each billed (Anthropic has no such field)."""
    try:
        return max(1, int(data.get("n") or 1))
    except (TypeError, ValueError):
        return 1


# Every spelling of an output allowance a client may send. LiteLLM does not pick one consistently: on Claude it
# maps max_tokens and max_completion_tokens both to Anthropic's max_tokens and the last one wins; OpenAI-protocol
# providers are sent both.
OUTPUT_ALLOWANCE_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens")


def output_allowance(data: dict[str, Any], call_type: str) -> tuple[str | None, int | None]:
    """(field, tokens): the most output the provider may be allowed, as the request's largest allowance; (None,
    None) for the model's own ceiling. On the Responses API that is any request without `max_output_tokens`:
    OpenAI's Responses API reads no other spelling (LiteLLM drops them), so the answer is unlimited."""
    if call_type in RESPONSES_CALLS and data.get("max_output_tokens") is None:
        return None, None
    given = [
        (v, k)
        for k in OUTPUT_ALLOWANCE_FIELDS
        if isinstance(v := data.get(k), int) and not isinstance(v, bool) and v > 0
    ]
    if not given:
        return None, None
    tokens, field = max(given)
    return field, tokens


def asked_allowance(data: dict[str, Any]) -> dict[str, Any]:
    """The output allowance as the client gave it (every spelling, and an extended-thinking budget): what a call to
    another model is fitted from, whatever an earlier fit lowered it to for the model tried first."""
    return {k: data[k] for k in (*OUTPUT_ALLOWANCE_FIELDS, "thinking") if k in data}


def clamp_output_allowance(data: dict[str, Any], ceiling: int | None) -> list[str]:
    """Lower every output allowance above `ceiling` (the answering model's) to it; the fields lowered. For a call
    answered by another model than the one the client named (an alias, `auto`'s tier, a fallback): the client
    sized the allowance for the model it named, and the one answering refuses a larger one with a 400 (Claude Code
    asks its Opus names for 128,000 tokens; synqra serves them with Sonnet 4.5, whose ceiling is 64,000). An
    extended-thinking budget is kept below the lowered max_tokens, as Anthropic requires."""
    if not ceiling:
        return []
    lowered = []
    for key in OUTPUT_ALLOWANCE_FIELDS:
        value = data.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > ceiling:
            data[key] = ceiling
            lowered.append(key)
    thinking = data.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    # The allowance Anthropic gets, whichever spelling carried it (LiteLLM sends max_completion_tokens as max_tokens).
    allowed = [v for k in OUTPUT_ALLOWANCE_FIELDS if isinstance(v := data.get(k), int) and not isinstance(v, bool)]
    if lowered and isinstance(budget, int) and allowed and budget >= min(allowed):
        data["thinking"] = {**thinking, "budget_tokens": min(allowed) - 1}  # type: ignore[dict-item]
        lowered.append("thinking.budget_tokens")
    return lowered
