"""Input checks LiteLLM leaves to the provider, answered before any money is spent.

Each returns an error message or None; the hook turns a message into a 400 in
the API's own error format.
"""
from __future__ import annotations

from typing import Any

from policies.common.api_shapes import RESPONSES_CALLS, TEXT_CALLS

# A cheap upper bound on tokens without running a tokenizer on megabytes of text:
# no tokenizer we route to packs more than ~1 token per 1.5 characters of prose,
# so chars / 4 under-estimates and is safe to reject on.
CHARS_PER_TOKEN_LOWER_BOUND = 4.0


def check_max_tokens(data: dict[str, Any]) -> str | None:
    for key in ("max_tokens", "max_completion_tokens"):
        if key in data and data[key] is not None:
            v = data[key]
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                return f"'{key}' must be a positive integer, got {v!r}"
    return None


def check_messages(data: dict[str, Any]) -> str | None:
    msgs = data.get("messages")
    if not isinstance(msgs, list) or not msgs:
        return "'messages' must be a non-empty list"
    for i, m in enumerate(msgs):
        if not isinstance(m, dict) or "role" not in m:
            return f"messages[{i}] must be an object with a 'role'"
    return None


def check_request(data: dict[str, Any], view: dict[str, Any], call_type: str) -> str | None:
    """The request's own content field, in the API it came in: messages, prompt or input."""
    if call_type in TEXT_CALLS:
        return None if view["messages"] and all(m["content"] for m in view["messages"]) else (
            "'prompt' must be a non-empty string, a list of non-empty strings, or token ids")
    if call_type in RESPONSES_CALLS:
        raw = data.get("input")
        if not (isinstance(raw, str) and raw) and not (isinstance(raw, list) and raw):
            return "'input' must be a non-empty string or a non-empty list of input items"
        return None
    return check_messages(data)


def _is_token_ids(x: Any) -> bool:
    return isinstance(x, list) and bool(x) and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in x)


def check_embedding_input(data: dict[str, Any]) -> str | None:
    """OpenAI's embedding inputs: a string, strings, token ids, or lists of token ids, none of them empty."""
    raw = data.get("input")
    if isinstance(raw, str) and raw:
        return None
    if isinstance(raw, list) and raw:
        if all(isinstance(t, str) and t for t in raw) or _is_token_ids(raw) or all(_is_token_ids(t) for t in raw):
            return None
    return ("'input' must be a non-empty string, a list of non-empty strings, a list of token ids, "
            "or a list of non-empty lists of token ids")


def check_dimensions(data: dict[str, Any], model_info: dict[str, Any]) -> str | None:
    """`dimensions` the embedding model cannot give (LiteLLM would drop it and answer with its own size)."""
    asked, size = data.get("dimensions"), model_info.get("output_vector_size")
    if asked is None or size is None or asked == size:
        return None
    return f"'dimensions' must be {size} for model '{data.get('model')}' (its only size), got {asked!r}"


def _text_chars(content: Any) -> int:
    """Characters of text in a message's content or a system prompt: a string, or a list of blocks
    (OpenAI content parts, Anthropic blocks) whose text is counted; other parts add nothing, which
    keeps the estimate a lower bound."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        return sum(len(str(p.get("text", ""))) for p in content if isinstance(p, dict))
    return 0


def approx_prompt_chars(data: dict[str, Any]) -> int:
    # `system` is the Messages API's: a string or, as often, a list of text blocks.
    messages = data.get("messages") or []
    return sum(_text_chars(m.get("content")) for m in messages if isinstance(m, dict)) + _text_chars(data.get("system"))


def check_context_window(data: dict[str, Any], model: str, max_input_tokens: int | None) -> str | None:
    if not max_input_tokens:
        return None
    est = approx_prompt_chars(data) / CHARS_PER_TOKEN_LOWER_BOUND
    if est > max_input_tokens:
        return (
            f"this request is too long for model '{model}': at least {int(est)} prompt tokens, "
            f"its context window is {max_input_tokens} tokens"
        )
    return None


# Why a model cannot serve a request (policies.routing.tiers.unmet) -> the request fields that asked for it.
_CAPABILITY_PARAMS = {
    "no tools": ("tools", "tool_choice", "functions"),
    "no reasoning": ("thinking", "reasoning_effort", "reasoning"),
    "no vision": ("messages",),
}


def capability_error(model: str, why: str | None, data: dict[str, Any]) -> str | None:
    """The 400 message for a request to a model that cannot do what it asks (never a silent 200 with less)."""
    if why is None or why not in _CAPABILITY_PARAMS:
        return None  # context windows are checked by check_context_window, with the numbers
    asked = next((p for p in _CAPABILITY_PARAMS[why] if data.get(p)), _CAPABILITY_PARAMS[why][0])
    what = {"no tools": "tools", "no reasoning": "extended thinking", "no vision": "images"}[why]
    return (f"model '{model}' does not support {what} ('{asked}'): send the request to a model that does, "
            "or to 'auto', which picks one")


def body_problem(path: str, body: Any) -> str | None:
    """Checks at the front door, before LiteLLM parses the body: shapes that crash LiteLLM's own handlers
    (e.g. embeddings [[], []] indexes input[0][0]) or that no provider could accept, as a clear 400."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "'model' must be a non-empty string"
    if path.endswith("/embeddings"):
        return check_embedding_input(body)
    problem = check_max_tokens(body)
    if problem:
        return problem
    if path.endswith("/chat/completions") or path.endswith("/messages"):
        problem = check_messages(body)
        system = body.get("system")
        if not problem and system is not None and not isinstance(system, (str, list)):
            problem = "'system' must be a string or a list of content blocks"
        tools = body.get("tools")
        if not problem and tools is not None and not isinstance(tools, list):
            problem = "'tools' must be a list"
        return problem
    if path.endswith("/completions") and body.get("prompt") is None:
        return "'prompt' is required"
    if path.endswith("/responses") and body.get("input") is None:
        return "'input' is required"
    return None
