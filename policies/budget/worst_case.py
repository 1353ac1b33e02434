"""The worst case of a call, as its reservation counts it: prompt tokens and choices.

Prompt tokens are LiteLLM's tokenizer's count of the messages, the system prompt and the tool definitions
(billed as input by OpenAI and Anthropic alike); content the tokenizer cannot count is bounded by its JSON
size. Never raises: unusual but valid content must reach the provider (which answers invalid content with a
400 in its API's format), not fail here with a 500.

A reservation need not be exact, only never below what the call can cost. A short text-only prompt is held at
one token per UTF-8 byte (`byte_bound`) instead of being tokenized: every tokenizer the priced providers use is a
byte-level BPE (tiktoken's, LiteLLM's Claude tokenizer, Llama's, DeepSeek's), whose tokens each cover at least one
byte, so no prompt has more tokens than bytes. That bound is ~4x the count for English or code, ~3x for CJK and
~1.5-2x for emoji, and it costs ~0.3 us where tiktoken takes ~50 us (a 200-token prompt). It is used only while the
prompt it holds costs at most BYTE_BOUND_MAX_USD at the model's input price (`held_prompt_tokens`): 1,666 bytes on
Claude Sonnet ($3/M), 2,000 on GPT-4o ($2.5/M), ~17,800 on DeepSeek ($0.28/M), half that with a one-hour
cache_control on Claude; a longer prompt is counted exactly, as before. So a call holds at most ~0.4 cent more
than before, for as long as it runs; the ledger and /v1/messages/count_tokens still use the exact count.
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


# The most a prompt held at one token per byte may cost at the model's input price (cache write price included).
BYTE_BOUND_MAX_USD = 0.005
# Per message in the byte bound: LiteLLM counts 3 (4 for gpt-3.5-turbo-0301), and 1 more for a `name`.
BYTE_BOUND_MESSAGE_TOKENS = 4
# Priming the reply (LiteLLM's count adds 3 to every prompt).
BYTE_BOUND_REPLY_TOKENS = 3


def _embedding_text(data: dict[str, Any]) -> str:
    raw = data.get("input")
    return raw if isinstance(raw, str) else "\n".join(map(str, raw or []))


def _system_text(system: Any) -> str:
    if isinstance(system, str):
        return system
    return " ".join(str(p.get("text", "")) for p in system if isinstance(p, dict))


def _tool_definitions(data: dict[str, Any]) -> list[Any]:
    return [d for key in ("tools", "functions") if isinstance(data.get(key), list) for d in data[key]]


def prompt_tokens(guard: BudgetGuard, model: str, data: dict[str, Any], call_type: str = "acompletion") -> int:
    """The prompt's tokens by the model's tokenizer (LiteLLM's), tool definitions and system prompt included: what
    /v1/messages/count_tokens answers and what a call booked at its worst case is recorded at."""
    if call_type in EMBEDDING_CALLS:
        return guard.count_prompt_tokens(model, text=_embedding_text(data))
    n = _messages_tokens(guard, model, data.get("messages") or [])
    system = data.get("system")
    if system:
        n += guard.count_prompt_tokens(model, text=_system_text(system))
    # Tool definitions are billed as input by OpenAI and Anthropic alike (JSON schemas can
    # outweigh the messages); counted as their JSON text, whichever API's shape they have.
    defs = _tool_definitions(data)
    if defs:
        n += guard.count_prompt_tokens(model, text=json.dumps(defs, separators=(",", ":")))
    if stored_context(data):
        # The provider prepends a conversation it stored, which the request does not show: up to the model's window.
        n = max(n, guard.prices.price(model).max_input_tokens or 0)
    return n


def _utf8_bytes(text: str) -> int:
    # A lone surrogate (JSON allows "\ud800") is 3 bytes here; tokenizers see it as U+FFFD, 3 bytes too.
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _message_bytes(message: Any) -> int | None:
    if not isinstance(message, dict):
        return None
    n = BYTE_BOUND_MESSAGE_TOKENS
    for key, value in message.items():
        if value is None:
            continue
        if isinstance(value, str):  # content, role, name, tool_call_id... (LiteLLM counts every string field)
            n += _utf8_bytes(value) + (key == "name")
        elif key == "content" and isinstance(value, list):
            for part in value:
                if isinstance(part, str):
                    n += _utf8_bytes(part)
                elif isinstance(part, dict) and part.get("type") == "text":
                    n += _utf8_bytes(str(part.get("text", "")))
                else:  # images, documents, audio, tool blocks: tokenized (or priced) as before
                    return None
        elif key == "tool_calls" and isinstance(value, list):
            for call in value:
                fn = call.get("function") if isinstance(call, dict) else None
                if not isinstance(fn, dict):
                    return None
                n += _utf8_bytes(str(fn.get("arguments", "")))
        elif key in ("function_call", "search_results"):
            return None
        # any other field LiteLLM's count skips, so may this bound
    return n


def byte_bound(data: dict[str, Any], call_type: str = "acompletion") -> int | None:
    """An upper bound of `prompt_tokens` (and of any byte-level BPE tokenizer's count of the same prompt): one token
    per UTF-8 byte of each text LiteLLM's count tokenizes, plus its per-message constants rounded up. None when the
    prompt holds anything but text (images, documents, audio, Anthropic tool blocks...) or stored context: those
    are counted by `prompt_tokens`."""
    if call_type in EMBEDDING_CALLS:
        return _utf8_bytes(_embedding_text(data))
    if stored_context(data):
        return None
    messages = data.get("messages") or []
    if not isinstance(messages, list):
        return None
    n = BYTE_BOUND_REPLY_TOKENS
    for message in messages:
        m = _message_bytes(message)
        if m is None:
            return None
        n += m
    system = data.get("system")
    if system:
        if not isinstance(system, (str, list)):
            return None
        n += _utf8_bytes(_system_text(system))
    defs = _tool_definitions(data)
    if defs:  # JSON escapes every non-ASCII character (ensure_ascii): its length is its byte count
        n += len(json.dumps(defs, separators=(",", ":")))
    return n


def held_prompt_tokens(
    guard: BudgetGuard, model: str, data: dict[str, Any], call_type: str, ttls: set[str]
) -> tuple[int, bool]:
    """(prompt tokens a reservation holds, at the price they may be billed; whether they are the byte bound).

    The byte bound (`byte_bound`) when it costs at most BYTE_BOUND_MAX_USD at the model's input price, else the
    tokenizer's count (`prompt_tokens`). Either is at least what the provider bills for a byte-level BPE
    tokenizer's count of the prompt; the bound holds up to ~4x the prompt's tokens, at most BYTE_BOUND_MAX_USD in
    all, while the call runs (and the guard's prompt_token_margin on top, as on every count)."""
    try:
        bound = byte_bound(data, call_type)
    except Exception:  # an odd request shape: counted as before, where every failure has its fallback
        bound = None
    if bound is not None:
        held = billed_prompt_tokens(guard, model, bound, ttls)
        if held * guard.prices.price(model).input_per_token <= BYTE_BOUND_MAX_USD:
            return held, True
    return billed_prompt_tokens(guard, model, prompt_tokens(guard, model, data, call_type), ttls), False


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
