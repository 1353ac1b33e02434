"""The four request shapes a client may send, read one way.

LiteLLM hands synqra's hooks the request as the client sent it: an OpenAI chat completion, an Anthropic
message, an OpenAI text completion (`prompt`) or an OpenAI Responses API request (`input`, `instructions`,
`max_output_tokens`). The router, the budget and the quality gate read a *chat view* of it: the same
request as chat messages with OpenAI's field names, so each of them has one reader, not four.
"""

from __future__ import annotations

import json
from typing import Any, Literal

# LiteLLM's call types (the hooks' `call_type`), grouped by request shape.
CHAT_CALLS = frozenset({"acompletion", "completion"})
MESSAGES_CALLS = frozenset({"anthropic_messages"})
TEXT_CALLS = frozenset({"atext_completion", "text_completion"})
RESPONSES_CALLS = frozenset({"aresponses", "responses"})
EMBEDDING_CALLS = frozenset({"aembedding", "embedding"})
GENERATION_CALLS = CHAT_CALLS | MESSAGES_CALLS | TEXT_CALLS | RESPONSES_CALLS

# Responses API fields that refer to a conversation the provider stored: only a provider that keeps them can answer
# with it (routing, `stores_responses`), and it bills that conversation as prompt tokens of this call.
STORED_CONTEXT_FIELDS = ("previous_response_id", "conversation")

# The ledger's `kind` of a client's call, by call type.
ClientKind = Literal["chat", "messages", "completion", "responses", "embedding"]
KIND_BY_CALL_TYPE: dict[str, ClientKind] = {
    **{c: "chat" for c in CHAT_CALLS},
    **{c: "messages" for c in MESSAGES_CALLS},
    **{c: "completion" for c in TEXT_CALLS},
    **{c: "responses" for c in RESPONSES_CALLS},
    **{c: "embedding" for c in EMBEDDING_CALLS},
}


def cache_ttls(data: dict[str, Any]) -> set[str]:
    """The cache TTLs the request's `cache_control`s ask (on a system block, a message's content block or a tool):
    Anthropic writes the prompt up to each to its cache, billed above the input price, 1.25x for the five-minute
    TTL (the default, "5m") and 2x for the hour's ("1h"). Also the request's own top-level `cache_control`
    (Anthropic's automatic caching, which LiteLLM forwards on /v1/messages and chat completions alike)."""
    ttls: set[str] = set()
    pending: list[Any] = [data.get(k) for k in ("system", "messages", "tools", "input")]
    pending.append({"cache_control": data.get("cache_control")})
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            control = node.get("cache_control")
            if isinstance(control, dict):
                ttls.add("1h" if control.get("ttl") == "1h" else "5m")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return ttls


def _marked(node: Any) -> bool:
    """Whether a `cache_control` sits anywhere in node (a tool, a system block, a message or its content)."""
    pending = [node]
    while pending:
        n = pending.pop()
        if isinstance(n, dict):
            if isinstance(n.get("cache_control"), dict):
                return True
            pending.extend(n.values())
        elif isinstance(n, list):
            pending.extend(n)
    return False


def cached_prefix_share(data: dict[str, Any]) -> float:
    """The share of the prompt, by the characters of its JSON, that Anthropic would cache: everything up to the last
    element holding a `cache_control`, in the order it caches (tools, system, messages: a marked block's whole
    message counts; a Responses request's `instructions` is its system prompt, before `input`); all of it with a
    top-level `cache_control` (automatic caching). 0 without a breakpoint."""
    parts: list[Any] = []
    for key in ("tools", "system", "instructions", "messages", "input"):
        value = data.get(key)
        if isinstance(value, list):
            parts.extend(value)
        elif value is not None:
            parts.append(value)
    if not parts:
        return 0.0
    if isinstance(data.get("cache_control"), dict):
        return 1.0
    last = max((i for i, p in enumerate(parts) if _marked(p)), default=-1)
    if last < 0:
        return 0.0
    sizes = [len(json.dumps(p, default=str)) for p in parts]
    return sum(sizes[: last + 1]) / max(1, sum(sizes))


def prompt_texts(prompt: Any) -> list[str]:
    """A text completion's prompts: a string, strings, or token ids (read as their JSON for counting and routing)."""
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return list(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, list) for p in prompt):
        return [" ".join(map(str, p)) for p in prompt]
    if isinstance(prompt, list):
        return [" ".join(map(str, prompt))]
    return []


def _responses_messages(data: dict[str, Any]) -> list[Any]:
    from litellm.responses.litellm_completion_transformation.transformation import LiteLLMCompletionResponsesConfig

    raw = data.get("input")
    if not isinstance(raw, (str, list)):
        return []
    try:
        return list(
            LiteLLMCompletionResponsesConfig.transform_responses_api_input_to_messages(
                raw, {"instructions": data.get("instructions")}
            )
        )
    except Exception:  # an item LiteLLM cannot read: the provider answers it with a 400 in its format
        return [{"role": "user", "content": str(raw)}]


def _responses_format(data: dict[str, Any]) -> dict[str, Any] | None:
    """`text.format` of the Responses API as chat's `response_format`."""
    fmt = (data.get("text") or {}).get("format") if isinstance(data.get("text"), dict) else None
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt.get("type") == "json_schema":
        return {"type": "json_schema", "json_schema": {"name": fmt.get("name"), "schema": fmt.get("schema")}}
    return {"type": fmt.get("type")}


def chat_view(data: dict[str, Any], call_type: str) -> dict[str, Any]:
    """The request as a chat completion (messages, max_tokens, n, tools, response_format...). Chat and
    Anthropic requests are returned as they are (the readers already take both); the others are new dicts,
    `data` itself is never changed."""
    if call_type in TEXT_CALLS:
        prompts = prompt_texts(data.get("prompt"))
        view = {k: v for k, v in data.items() if k != "prompt"}
        view["messages"] = [{"role": "user", "content": p} for p in prompts]
        # Each prompt gets its own n answers, each billed; `best_of` makes that many server-side and bills them all.
        view["n"] = max(1, len(prompts)) * max(_int_or_1(data.get("n")), _int_or_1(data.get("best_of")))
        return view
    if call_type in RESPONSES_CALLS:
        view = {k: v for k, v in data.items() if k not in ("input", "instructions", "max_output_tokens", "text")}
        view["messages"] = _responses_messages(data)
        if data.get("max_output_tokens") is not None:
            view["max_tokens"] = data["max_output_tokens"]
        rf = _responses_format(data)
        if rf is not None:
            view["response_format"] = rf
        return view
    return data


def question_of(view: dict[str, Any]) -> str:
    """The newest user turn of a chat view: what a judge is told the user asked."""
    from policies.common.message_content import message_text

    for m in reversed(view.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            return message_text(m.get("content"))
    return ""


def _int_or_1(v: Any) -> int:
    try:
        return max(1, int(v or 1))
    except (TypeError, ValueError):
        return 1
