"""The four request shapes a client may send, read one way.

LiteLLM hands synqra's hooks the request as the client sent it: an OpenAI chat completion, an Anthropic
message, an OpenAI text completion (`prompt`) or an OpenAI Responses API request (`input`, `instructions`,
`max_output_tokens`). The router, the budget and the quality gate read a *chat view* of it: the same
request as chat messages with OpenAI's field names, so each of them has one reader, not four.
"""

from __future__ import annotations

from typing import Any, Literal

# LiteLLM's call types (the hooks' `call_type`), grouped by request shape.
CHAT_CALLS = frozenset({"acompletion", "completion"})
MESSAGES_CALLS = frozenset({"anthropic_messages"})
TEXT_CALLS = frozenset({"atext_completion", "text_completion"})
RESPONSES_CALLS = frozenset({"aresponses", "responses"})
EMBEDDING_CALLS = frozenset({"aembedding", "embedding"})
GENERATION_CALLS = CHAT_CALLS | MESSAGES_CALLS | TEXT_CALLS | RESPONSES_CALLS

# Responses API fields that refer to a conversation the provider stored: only a provider that keeps them can answer
# with it (routing, `stores_responses`), and it bills that conversation as prompt tokens of this call. `prompt` too,
# as the Responses API's stored prompt template (an object naming its id; OpenAI expands it into instructions and
# input), not a text completion's prompt (text or token ids): `stored_context` tells them apart.
STORED_CONTEXT_FIELDS = ("previous_response_id", "conversation", "prompt")


def stored_context(data: dict[str, Any]) -> str | None:
    """The field by which a request refers to context its provider stored (STORED_CONTEXT_FIELDS), or None."""
    for key in STORED_CONTEXT_FIELDS:
        value = data.get(key)
        if value and (key != "prompt" or isinstance(value, dict)):
            return key
    return None


# A text completion's chat view: the answers the client asked for each prompt (the view's `n` counts them over every
# prompt, with the extra answers `best_of` has generated and billed).
ANSWERS_ASKED = "_answers_asked"

# The ledger's `kind` of a client's call, by call type.
ClientKind = Literal["chat", "messages", "completion", "responses", "embedding"]
KIND_BY_CALL_TYPE: dict[str, ClientKind] = {
    **{c: "chat" for c in CHAT_CALLS},
    **{c: "messages" for c in MESSAGES_CALLS},
    **{c: "completion" for c in TEXT_CALLS},
    **{c: "responses" for c in RESPONSES_CALLS},
    **{c: "embedding" for c in EMBEDDING_CALLS},
}


# Where a request's prompt is, in the order Anthropic caches it: tools, then the system prompt (a Responses request's
# `instructions` is its system prompt), then the conversation.
PROMPT_PARTS = ("tools", "system", "instructions", "messages", "input")


def cache_breakpoints(data: dict[str, Any]) -> tuple[set[str], float]:
    """(the cache TTLs the request's `cache_control`s ask, the share of its prompt Anthropic would cache), one walk.

    TTLs: on a tool, a system block or a message's content block, and the request's own top-level `cache_control`
    (Anthropic's automatic caching, which LiteLLM forwards on /v1/messages and chat completions alike). Anthropic
    writes the prompt up to each to its cache, billed above the input price: 1.25x for the five-minute TTL (the
    default, "5m"), 2x for the hour's ("1h").
    Share: by the characters of the prompt's text, everything up to the last element holding a `cache_control`
    (a marked block's whole message counts), in PROMPT_PARTS' order; all of it with a top-level one; 0 without one."""
    ttls: set[str] = set()
    top = data.get("cache_control")
    if isinstance(top, dict):
        ttls.add(_ttl(top))
    sizes: list[int] = []
    last = -1
    for key in PROMPT_PARTS:
        value = data.get(key)
        for part in value if isinstance(value, list) else () if value is None else (value,):
            chars, marked = _scan(part, ttls)
            if marked:
                last = len(sizes)
            sizes.append(chars)
    total = sum(sizes)
    if not total or (last < 0 and not isinstance(top, dict)):
        return ttls, 0.0
    return ttls, 1.0 if isinstance(top, dict) else sum(sizes[: last + 1]) / total


def _ttl(control: dict[str, Any]) -> str:
    return "1h" if control.get("ttl") == "1h" else "5m"


def _scan(node: Any, ttls: set[str]) -> tuple[int, bool]:
    """(characters of the strings in node, whether it holds a `cache_control`), adding each one's TTL to ttls."""
    chars, marked = 0, False
    pending = [node]
    while pending:
        n = pending.pop()
        if isinstance(n, str):
            chars += len(n)
        elif isinstance(n, dict):
            control = n.get("cache_control")
            if isinstance(control, dict):
                ttls.add(_ttl(control))
                marked = True
            pending.extend(n.values())
        elif isinstance(n, list):
            pending.extend(n)
    return chars, marked


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
        view[ANSWERS_ASKED] = _int_or_1(data.get("n"))  # best_of's extras are not returned
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
