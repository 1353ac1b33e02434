"""Hypothesis strategies for what a client may send to the accounted routes: request bodies of both APIs
(OpenAI chat, text completions, Responses, embeddings; Anthropic Messages and count_tokens) and headers,
valid and broken.

A body is drawn valid first (every field of its API, content parts of every type, tools with JSON schemas,
images, streaming flags), then broken in one to three places anywhere in its tree: a field dropped, replaced
by any JSON value (wrong types, unicode, huge numbers, NaN, deep nesting, big strings) or an unknown field
added. Encodings are broken too (NaN and Infinity literals, lone surrogates, non-UTF-8 bytes, bodies that are
not JSON objects). Every address in a body is 127.0.0.1 (an image URL the proxy might fetch is refused there
at once), and the local model is held to one output token, so a run stays on this machine and takes minutes.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from dataclasses import dataclass, field
from typing import Any

from hypothesis import strategies as st

# --- JSON values of every kind -----------------------------------------------------------------------

HUGE_INTS = (2**31, 2**53 + 1, 2**63, 2**64 + 7, -(2**63) - 1, 10**12, 10**30, -(10**30), 10**400)
ODD_FLOATS = (float("nan"), float("inf"), float("-inf"), 1e308, -0.0, 5e-324, 1e-300, 0.5)
ODD_TEXTS = (
    "",
    " ",
    "\x00",
    "\u202e\u0635\u0644\u0627\u0629",
    "😀" * 5,
    "\ud800",
    "a\udfffb",
    "null",
    "{}",
    "[]",
    "true",
    "0",
    "-1",
    "\\u0000",
    "\r\n\r\n",
    "' OR 1=1 --",
    "<|im_end|>",
    "\ufeff",
)


def _big_text(n: int) -> str:
    return "word " * n


texts = st.one_of(
    st.text(max_size=24),
    st.sampled_from(ODD_TEXTS),
    st.text(alphabet=st.characters(codec="utf-8", min_codepoint=0x80), max_size=12),
    # 40 KB to 400 KB: past the local model's context window (refused before it runs), large for a paid one
    st.integers(8_000, 80_000).map(_big_text),
)
numbers = st.one_of(
    st.integers(-5, 10),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from(HUGE_INTS),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.sampled_from(ODD_FLOATS),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)


# A value nested this deep (lists and objects in turn), past orjson's 1,024 levels and Python's recursion
# limit, stands in the drawn body as a marker string and is written out by `encode`.
DEEP_MARK = "\x00deep:"


def _nested_json(depth: int) -> str:
    return (
        "".join("[" if i % 2 else '{"k": ' for i in range(depth))
        + '"deep"'
        + "".join("]" if i % 2 else "}" for i in reversed(range(depth)))
    )


json_values = st.one_of(
    st.recursive(
        scalars,
        lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
        max_leaves=10,
    ),
    st.sampled_from((30, 200, 1100, 5000)).map(lambda n: f"{DEEP_MARK}{n}"),
)

# --- content and its parts ---------------------------------------------------------------------------

PNG_1PX = base64.b64encode(
    b"\x89PNG\r\n\x1a\n"
    + b"\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
    + b"\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N"
    + b"\x00\x00\x00\x00IEND\xaeB`\x82"
).decode()
# Image and document URLs are data URLs or strings no HTTP client fetches: LiteLLM downloads an http(s) URL for
# Anthropic models, and an unreachable one is a fault that falls back to a paid model (the one case the fuzz
# leaves out; test_fuzz_input.py keeps it as an expected failure). Nothing here reaches past 127.0.0.1.
NO_FETCH_URLS = (
    "data:image/png;base64,!!!not-base64!!!",
    "data:,",
    "data:image/png;base64,",
    "not a url",
    "file:///etc/passwd",
    "ftp://127.0.0.1:9/x.png",
    "",
)
image_urls = st.one_of(
    st.just(f"data:image/png;base64,{PNG_1PX}"),
    st.sampled_from(NO_FETCH_URLS),
    texts.filter(lambda t: not t.lower().startswith(("http:", "https:"))),
)
small_texts = st.one_of(st.text(max_size=24), st.sampled_from(ODD_TEXTS))
tool_names = st.one_of(st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True), small_texts)

# JSON schemas as tools and structured outputs carry them: mostly sensible, some nonsense.
# An empty `enum` (llama.cpp built an empty grammar for it and crashed; now a 400 before generation) has its own
# regular test in test_fuzz_input.py rather than a place here: a crash would take the shared server down.
schema_leaf = st.fixed_dictionaries(
    {"type": st.sampled_from(["string", "integer", "number", "boolean", "null", "wat"])},
    optional={"description": small_texts, "enum": st.lists(scalars, min_size=1, max_size=3)},
)
json_schemas = st.one_of(
    st.recursive(
        schema_leaf,
        lambda inner: st.one_of(
            st.fixed_dictionaries(
                {"type": st.just("object"), "properties": st.dictionaries(tool_names, inner, max_size=3)},
                optional={"required": st.lists(tool_names, max_size=3), "additionalProperties": st.booleans()},
            ),
            st.fixed_dictionaries({"type": st.just("array"), "items": inner}),
            st.fixed_dictionaries({"anyOf": st.lists(inner, min_size=1, max_size=3)}),
        ),
        max_leaves=6,
    ),
    st.just({"$ref": "#/definitions/nowhere"}),
    json_values,
)

openai_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries(
                {"url": image_urls}, optional={"detail": st.sampled_from(["auto", "low", "high", "x"])}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("input_audio"),
            "input_audio": st.fixed_dictionaries(
                {"data": st.just("UklGRg=="), "format": st.sampled_from(["wav", "mp3", "ogg"])}
            ),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("file"),
            "file": st.fixed_dictionaries(
                {},
                optional={
                    "file_data": st.just("data:application/pdf;base64,JVBERi0="),
                    "file_id": small_texts,
                    "filename": small_texts,
                },
            ),
        }
    ),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": small_texts}),
    # Anthropic's part types inside an OpenAI message, and parts of no type
    st.fixed_dictionaries(
        {
            "type": st.sampled_from(
                [
                    "tool_result",
                    "tool_use",
                    "image",
                    "document",
                    "thinking",
                    "input_text",
                    "input_image",
                    "video_url",
                    "audio",
                    "",
                ]
            )
        }
    ),
    st.dictionaries(st.sampled_from(["type", "text", "image_url", "content", "source"]), json_values, max_size=3),
)

anthropic_sources = st.one_of(
    st.fixed_dictionaries(
        {
            "type": st.just("base64"),
            "media_type": st.sampled_from(["image/png", "image/jpeg", "text/plain", "x"]),
            "data": st.sampled_from([PNG_1PX, "!!!", ""]),
        }
    ),
    st.fixed_dictionaries({"type": st.just("url"), "url": st.sampled_from(NO_FETCH_URLS)}),
    st.fixed_dictionaries({"type": st.just("text"), "media_type": st.just("text/plain"), "data": small_texts}),
    json_values,
)
anthropic_text_block = st.fixed_dictionaries(
    {"type": st.just("text"), "text": texts}, optional={"cache_control": st.just({"type": "ephemeral"})}
)
anthropic_blocks = st.one_of(
    anthropic_text_block,
    st.fixed_dictionaries({"type": st.just("image"), "source": anthropic_sources}),
    st.fixed_dictionaries({"type": st.just("document"), "source": anthropic_sources}, optional={"title": small_texts}),
    st.fixed_dictionaries({"type": st.just("tool_use"), "id": small_texts, "name": tool_names, "input": json_values}),
    st.fixed_dictionaries(
        {"type": st.just("tool_result"), "tool_use_id": small_texts},
        optional={
            "content": st.one_of(texts, st.lists(anthropic_text_block, max_size=2), json_values),
            "is_error": st.booleans(),
        },
    ),
    st.fixed_dictionaries({"type": st.just("thinking"), "thinking": small_texts, "signature": small_texts}),
    st.fixed_dictionaries({"type": st.just("redacted_thinking"), "data": small_texts}),
    st.fixed_dictionaries(
        {
            "type": st.just("search_result"),
            "source": small_texts,
            "title": small_texts,
            "content": st.lists(anthropic_text_block, max_size=2),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("server_tool_use"),
            "id": small_texts,
            "name": st.just("web_search"),
            "input": st.just({"query": "q"}),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("web_search_tool_result"), "tool_use_id": small_texts, "content": json_values}
    ),
    # OpenAI's part types inside an Anthropic message, and blocks of no type
    st.fixed_dictionaries({"type": st.sampled_from(["image_url", "input_audio", "file", "refusal", "", "video"])}),
    st.dictionaries(st.sampled_from(["type", "text", "source", "content", "input"]), json_values, max_size=3),
)


def _content(parts: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(texts, st.lists(parts, min_size=1, max_size=4), st.just([]), st.none())


# --- messages and tools ------------------------------------------------------------------------------

openai_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": small_texts,
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": tool_names, "arguments": st.one_of(st.just('{"city": "Oslo"}'), small_texts, json_values)}
            ),
        }
    ),
    min_size=1,
    max_size=2,
)
openai_messages = st.one_of(
    st.fixed_dictionaries(
        {"role": st.sampled_from(["user", "system", "developer"]), "content": _content(openai_parts)},
        optional={"name": small_texts},
    ),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": _content(openai_parts)},
        optional={"tool_calls": openai_tool_calls, "refusal": small_texts},
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "content": _content(openai_parts), "tool_call_id": small_texts}),
    st.fixed_dictionaries({"role": st.just("function"), "content": texts, "name": tool_names}),
    st.fixed_dictionaries({"role": st.sampled_from(["", "robot", "USER"]), "content": texts}),
)
openai_tools = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {
                "type": st.just("function"),
                "function": st.fixed_dictionaries(
                    {"name": tool_names},
                    optional={"description": small_texts, "parameters": json_schemas, "strict": st.booleans()},
                ),
            }
        ),
        st.fixed_dictionaries({"type": st.sampled_from(["web_search", "code_interpreter", "custom", "file_search"])}),
        json_values,
    ),
    max_size=3,
)
anthropic_messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "assistant", "system", "tool", ""]), "content": _content(anthropic_blocks)}
)
anthropic_tools = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"name": tool_names, "input_schema": json_schemas}, optional={"description": small_texts}
        ),
        st.fixed_dictionaries(
            {
                "type": st.sampled_from(
                    ["web_search_20250305", "bash_20250124", "text_editor_20250124", "computer_20250124", "custom"]
                ),
                "name": tool_names,
            }
        ),
        json_values,
    ),
    max_size=3,
)
response_formats = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": tool_names, "schema": json_schemas}, optional={"strict": st.booleans()}
            ),
        }
    ),
    json_values,
)
stream_flags = st.one_of(st.booleans(), st.none(), st.sampled_from([0, 1, "true", "yes", [], {}]))
token_counts = st.one_of(st.integers(1, 64), st.integers(-3, 0), st.sampled_from(HUGE_INTS), numbers, texts)
temperatures = st.one_of(st.floats(0, 2), numbers, texts)
stops = st.one_of(small_texts, st.lists(small_texts, max_size=5), json_values)

# --- models: fast answers only (instant fake providers; the local model held to one token) -------------

PAID_MODELS = ("gpt-4o", "deepseek-chat", "claude-sonnet")
LOCAL_MODELS = ("local-llama",)
# The fake OpenAI speaks chat completions only: LiteLLM sends gpt-4o's Messages and Responses API calls to
# OpenAI's /v1/responses and its embeddings to /v1/embeddings, which answer 404 there (and a 404 cools the
# deployment down). Those routes fuzz the other models; embeddings fuzz the embedding model.
MODELS_BY_ROUTE = {
    "chat": PAID_MODELS,
    "completions": PAID_MODELS,
    "messages": PAID_MODELS[1:],
    "responses": PAID_MODELS[1:],
    "count_tokens": PAID_MODELS,
    "embeddings": ("local-embed",),
}
models = st.one_of(
    st.sampled_from(PAID_MODELS),
    st.sampled_from(LOCAL_MODELS),
    st.sampled_from(("claude-opus-4-1", "claude-3-5-sonnet-20241022", "no-such-model", "", "auto ", "gpt-4o\x00")),
    st.just("auto"),
    json_values,
)

CHAT_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "max_tokens": token_counts,
    "max_completion_tokens": token_counts,
    "temperature": temperatures,
    "top_p": temperatures,
    "n": st.one_of(st.integers(1, 3), numbers),
    "stream": stream_flags,
    "stream_options": st.one_of(st.fixed_dictionaries({"include_usage": st.booleans()}), json_values),
    "stop": stops,
    "tools": openai_tools,
    "tool_choice": st.one_of(st.sampled_from(["auto", "none", "required"]), json_values),
    "functions": json_values,
    "function_call": json_values,
    "response_format": response_formats,
    "seed": numbers,
    "logprobs": st.one_of(st.booleans(), json_values),
    "top_logprobs": numbers,
    "user": small_texts,
    "presence_penalty": numbers,
    "frequency_penalty": numbers,
    "logit_bias": json_values,
    "parallel_tool_calls": st.one_of(st.booleans(), json_values),
    "reasoning_effort": st.one_of(st.sampled_from(["low", "high"]), json_values),
    "metadata": json_values,
    "modalities": json_values,
    "audio": json_values,
    "prediction": json_values,
    "store": json_values,
    "service_tier": json_values,
    "web_search_options": json_values,
}
MESSAGES_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "system": st.one_of(texts, st.lists(anthropic_blocks, max_size=3), json_values),
    "tools": anthropic_tools,
    "tool_choice": st.one_of(
        st.fixed_dictionaries(
            {"type": st.sampled_from(["auto", "any", "none", "tool"])}, optional={"name": tool_names}
        ),
        json_values,
    ),
    "stream": stream_flags,
    "temperature": temperatures,
    "top_p": temperatures,
    "top_k": numbers,
    "stop_sequences": stops,
    "metadata": st.one_of(st.fixed_dictionaries({"user_id": small_texts}), json_values),
    "thinking": st.one_of(
        st.fixed_dictionaries({"type": st.just("enabled"), "budget_tokens": token_counts}), json_values
    ),
    "service_tier": json_values,
    "output_format": response_formats,
    "container": json_values,
    "mcp_servers": json_values,
}
COMPLETION_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "n": st.one_of(st.integers(1, 3), numbers),
    "stream": stream_flags,
    "echo": st.one_of(st.booleans(), json_values),
    "suffix": st.one_of(small_texts, json_values),
    "logprobs": st.one_of(st.integers(0, 5), json_values),
    "stop": stops,
    "temperature": temperatures,
    "best_of": numbers,
    "logit_bias": json_values,
    "seed": numbers,
    "user": small_texts,
}
RESPONSES_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "instructions": st.one_of(texts, json_values),
    "stream": stream_flags,
    "tools": openai_tools,
    "tool_choice": json_values,
    "temperature": temperatures,
    "top_p": temperatures,
    "text": st.one_of(st.fixed_dictionaries({"format": response_formats}), json_values),
    "reasoning": st.one_of(st.fixed_dictionaries({"effort": st.sampled_from(["low", "high"])}), json_values),
    "previous_response_id": small_texts,
    "store": json_values,
    "metadata": json_values,
    "parallel_tool_calls": json_values,
    "truncation": json_values,
    "include": json_values,
}
EMBEDDING_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "dimensions": st.one_of(st.just(384), numbers),
    "encoding_format": st.one_of(st.sampled_from(["float", "base64"]), json_values),
    "user": small_texts,
}
responses_items = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.sampled_from(["user", "system", "developer", "assistant"]),
            "content": st.one_of(
                texts,
                st.lists(
                    st.one_of(
                        st.fixed_dictionaries({"type": st.just("input_text"), "text": texts}),
                        st.fixed_dictionaries({"type": st.just("input_image"), "image_url": image_urls}),
                        st.fixed_dictionaries(
                            {
                                "type": st.just("input_file"),
                                "file_data": st.just("data:application/pdf;base64,JVBERi0="),
                            }
                        ),
                        st.fixed_dictionaries({"type": st.just("output_text"), "text": texts}),
                        openai_parts,
                    ),
                    max_size=3,
                ),
            ),
        },
        optional={"type": st.just("message")},
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call"), "call_id": small_texts, "name": tool_names, "arguments": small_texts}
    ),
    st.fixed_dictionaries(
        {"type": st.just("function_call_output"), "call_id": small_texts, "output": st.one_of(texts, json_values)}
    ),
    st.fixed_dictionaries({"type": st.sampled_from(["reasoning", "web_search_call", "item_reference", "x"])}),
    json_values,
)
token_ids = st.lists(st.integers(0, 100_000), min_size=1, max_size=8)
embedding_inputs = st.one_of(
    texts,
    st.lists(texts, min_size=1, max_size=4),
    token_ids,
    st.lists(token_ids, min_size=1, max_size=3),
    st.sampled_from([[[], []], [], [[]], [""], [1, "a"], [[1], ["a"]], [-1], [2**64], [[2**64]], [1.5], [True]]),
    json_values,
)
prompts = st.one_of(
    texts,
    st.lists(texts, min_size=1, max_size=3),
    token_ids,
    st.lists(token_ids, min_size=1, max_size=2),
    st.sampled_from([[], [[]], [""], [-1], [2**64]]),
    json_values,
)


@dataclass(frozen=True)
class Route:
    path: str
    anthropic: bool  # errors in Anthropic's format ({"type": "error", ...}) rather than OpenAI's
    required: dict[str, st.SearchStrategy[Any]]
    optional: dict[str, st.SearchStrategy[Any]] = field(default_factory=dict)
    generates: bool = True  # a model writes an answer (max_tokens applies)
    models: tuple[str, ...] = PAID_MODELS  # the named models it sends to


_ROUTES: dict[str, Route] = {
    "chat": Route(
        "/v1/chat/completions", False, {"messages": st.lists(openai_messages, min_size=1, max_size=4)}, CHAT_FIELDS
    ),
    "messages": Route(
        "/v1/messages",
        True,
        {"messages": st.lists(anthropic_messages, min_size=1, max_size=4), "max_tokens": token_counts},
        MESSAGES_FIELDS,
    ),
    "completions": Route(
        "/v1/completions", False, {"prompt": prompts}, {"max_tokens": token_counts, **COMPLETION_FIELDS}
    ),
    "responses": Route(
        "/v1/responses",
        False,
        {"input": st.one_of(texts, st.lists(responses_items, min_size=1, max_size=4))},
        {"max_output_tokens": token_counts, **RESPONSES_FIELDS},
    ),
    "embeddings": Route("/v1/embeddings", False, {"input": embedding_inputs}, EMBEDDING_FIELDS, generates=False),
    "count_tokens": Route(
        "/v1/messages/count_tokens",
        True,
        {"messages": st.lists(anthropic_messages, min_size=1, max_size=4)},
        {k: MESSAGES_FIELDS[k] for k in ("system", "tools", "tool_choice", "thinking")},
        generates=False,
    ),
}
ROUTES = {
    name: Route(r.path, r.anthropic, r.required, r.optional, r.generates, MODELS_BY_ROUTE[name])
    for name, r in _ROUTES.items()
}
MAX_TOKEN_KEYS = ("max_tokens", "max_completion_tokens", "max_output_tokens")

# --- breaking a body ---------------------------------------------------------------------------------


# Fields of the other APIs, and LiteLLM's own keyword arguments (the proxy passes the body on as keywords).
FOREIGN_FIELDS = (
    "messages",
    "prompt",
    "input",
    "system",
    "model",
    "stream",
    "mock_response",
    "mock_tool_calls",
    "api_base",
    "base_url",
    "api_key",
    "api_version",
    "timeout",
    "num_retries",
    "max_retries",
    "metadata",
    "litellm_metadata",
    "model_list",
    "custom_llm_provider",
    "fallbacks",
    "context_window_fallback_dict",
    "caching",
    "cache",
    "no-log",
    "proxy_server_request",
    "secret_fields",
    "user_api_key",
    "deployment_id",
    "headers",
    "extra_headers",
    "extra_body",
    "litellm_call_id",
    "litellm_trace_id",
    "tags",
    "guardrails",
    "acompletion",
    "aembedding",
    "client",
    "logger_fn",
    "verbose",
    "functions",
    "max_output_tokens",
    "instructions",
    "encoding_format",
    "dimensions",
    "input_type",
    "litellm_logging_obj",
    "disable_fallbacks",
    "specific_deployment",
    "model_info",
    "litellm_params",
)


@st.composite
def broken(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """`value` with one thing changed somewhere inside it: a key dropped, a value replaced, a key added."""
    if isinstance(value, dict) and value and depth < 8 and draw(st.integers(0, 2)):
        key = draw(st.sampled_from(sorted(value, key=str)))
        how = draw(st.sampled_from(["inside", "inside", "drop", "replace", "add"]))
        out = dict(value)
        if how == "inside":
            out[key] = draw(broken(value[key], depth + 1))
        elif how == "drop":
            del out[key]
        elif how == "replace":
            out[key] = draw(json_values)
        else:
            out[draw(st.one_of(st.text(max_size=12), st.sampled_from(FOREIGN_FIELDS)))] = draw(json_values)
        return out
    if isinstance(value, list) and value and depth < 8 and draw(st.integers(0, 2)):
        i = draw(st.integers(0, len(value) - 1))
        how = draw(st.sampled_from(["inside", "inside", "drop", "replace", "add"]))
        out = list(value)
        if how == "inside":
            out[i] = draw(broken(value[i], depth + 1))
        elif how == "drop":
            del out[i]
        elif how == "replace":
            out[i] = draw(json_values)
        else:
            out.insert(i, draw(json_values))
        return out
    return draw(json_values)


def _fast(body: Any, route: Route) -> Any:
    """Keep a run quick: the local model writes at most one token and one choice (invalid values stay)."""
    if not isinstance(body, dict):
        return body
    if body.get("model") in (*LOCAL_MODELS, "auto") and route.generates:
        key = "max_output_tokens" if route.path.endswith("/responses") else "max_tokens"
        for k in MAX_TOKEN_KEYS:
            v = body.get(k)
            if k != key and isinstance(v, int) and not isinstance(v, bool) and v > 1:
                del body[k]
        v = body.get(key)
        if v is None or (isinstance(v, int) and not isinstance(v, bool) and v > 1):
            body[key] = 1
    for k in ("n", "best_of"):  # many choices from an instant fake are still many megabytes of answer
        v = body.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and 8 < v < 2**63:
            body[k] = 8
    return body


@st.composite
def bodies(draw: st.DrawFn, route: Route, mutations: tuple[int, int] = (0, 3)) -> Any:
    """A request body for `route`: drawn valid, then broken `mutations` times (0 keeps it valid)."""
    body = {
        "model": draw(
            st.one_of(st.sampled_from(route.models), models.filter(lambda m: m not in PAID_MODELS or m in route.models))
        ),
        **{k: draw(s) for k, s in route.required.items()},
    }
    for k in draw(st.lists(st.sampled_from(sorted(route.optional)), max_size=4, unique=True)):
        body[k] = draw(route.optional[k])
    for _ in range(draw(st.integers(*mutations))):
        body = draw(broken(body))
    return _fast(body, route)


# --- the bytes on the wire, and the headers ---------------------------------------------------------


def encode(body: Any) -> bytes:
    """JSON as Python writes it (NaN and Infinity literals, lone surrogates escaped, ints of any size), with
    each deep-nesting marker written out as its nested value."""
    text = json.dumps(body)
    mark = json.dumps(DEEP_MARK)[:-1]
    return re.sub(re.escape(mark) + r'(\d+)"', lambda m: _nested_json(int(m.group(1))), text).encode()


raw_bodies = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"",
            b"null",
            b"[]",
            b"{",
            b'{"model": "gpt-4o", "messages": [',
            b"\xff\xfe{}",
            b'{"a": 1e999}',
            b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "\xc3\x28"}]}',
            b'{"model": "gpt-4o", "model": 1, "messages": []}',
            b"\x00" * 16,
        ]
    ),
    st.text(max_size=40).map(lambda t: t.encode("utf-8", "surrogatepass")),
)

KEY_PLACEHOLDER = "{key}"  # replaced by the master key when the test sends the request
# An HTTP client will not send a value with an edge space (h11 refuses), so none is drawn.
header_values = st.one_of(
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30).map(str.strip),
    st.sampled_from(["", "0", "-1", "abc", "1e999", "NaN", "true", "\x7f", "a\tb", "9" * 40, "é", "x" * 8000]),
)
header_names = st.sampled_from(
    [
        "x-litellm-timeout",
        "x-litellm-stream-timeout",
        "x-litellm-num-retries",
        "x-litellm-keepalive-seconds",
        "x-litellm-tags",
        "x-litellm-spend-logs-metadata",
        "x-litellm-trace-id",
        "x-litellm-session-id",
        "x-litellm-agent-id",
        "litellm-disable-fallbacks",
        "x-litellm-disable-fallbacks",
        "x-litellm-enable-message-redaction",
        "anthropic-version",
        "anthropic-beta",
        "openai-organization",
        "openai-project",
        "x-stainless-retry-count",
        "x-stainless-timeout",
        "user-agent",
        "accept",
        "accept-encoding",
        "x-synqra-request-id",
        "x-request-id",
        "x-api-key",
        "authorization",
        "api-key",
        "x-goog-api-key",
        "x-forwarded-for",
        "idempotency-key",
        "traceparent",
        "x-litellm-api-key",
        "content-type",
        "content-encoding",
    ]
)
AUTH_FORMS = (
    "Bearer " + KEY_PLACEHOLDER,
    KEY_PLACEHOLDER,
    "Bearer",
    "Basic " + KEY_PLACEHOLDER,
    "Bearer  " + KEY_PLACEHOLDER,
    "Bearer sk-wrong",
    "bearer " + KEY_PLACEHOLDER,
)
CONTENT_TYPES = (
    "application/json",
    "application/json; charset=utf-8",
    "application/json; charset=latin-1",
    "text/plain",
    "application/x-www-form-urlencoded",
    "multipart/form-data",
    "multipart/form-data; boundary=x",
    "application/x-protobuf",
    "",
    "APPLICATION/JSON",
    "application/vnd.api+json",
)


@st.composite
def header_sets(draw: st.DrawFn) -> dict[str, str]:
    """Headers as clients send them, and broken: odd auth forms, content types, LiteLLM's control headers
    with values of every kind. Values are latin-1 text (what HTTP can carry)."""
    headers: dict[str, str] = {}
    auth = draw(st.sampled_from(["authorization", "x-api-key", "both", "none"]))
    if auth in ("authorization", "both"):
        headers["authorization"] = draw(st.sampled_from(AUTH_FORMS))
    if auth in ("x-api-key", "both"):
        headers["x-api-key"] = draw(st.sampled_from((KEY_PLACEHOLDER, "sk-wrong", "")))
    headers["content-type"] = draw(st.sampled_from(CONTENT_TYPES))
    for name in draw(st.lists(header_names, max_size=4, unique=True)):
        headers[name] = draw(header_values)
    return headers


def gzip_of(raw: bytes) -> bytes:
    c = zlib.compressobj(wbits=31)
    return c.compress(raw) + c.flush()


# --- well-formed bodies: what passes the front door, to reach LiteLLM, the hooks and the providers ---------

good_texts = st.one_of(
    # Text, not only whitespace: the front door refuses whitespace-only content (request_models._has_text), and a
    # drawn "\r" failed test_well_formed_bodies_pass at random.
    st.text(min_size=1, max_size=40).filter(str.strip),
    st.sampled_from(["Hello", "What is 2+2?", "😀 ünïcode ☃", "a\x00b"]),
)
good_schemas = st.fixed_dictionaries(
    {
        "type": st.just("object"),
        "properties": st.dictionaries(
            st.from_regex(r"[a-z]{1,8}", fullmatch=True), schema_leaf.filter(lambda s: s["type"] != "wat"), max_size=3
        ),
    }
)
good_tool_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True)
good_openai_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": good_texts}),
    st.fixed_dictionaries(
        {
            "type": st.just("image_url"),
            "image_url": st.fixed_dictionaries({"url": st.just(f"data:image/png;base64,{PNG_1PX}")}),
        }
    ),
    st.fixed_dictionaries(
        {"type": st.just("input_audio"), "input_audio": st.just({"data": "UklGRg==", "format": "wav"})}
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("file"),
            "file": st.just({"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"}),
        }
    ),
)
good_openai_turns = st.one_of(
    st.fixed_dictionaries(
        {"role": st.just("user"), "content": st.one_of(good_texts, st.lists(good_openai_parts, min_size=1, max_size=3))}
    ),
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer", "assistant"]), "content": good_texts}),
    st.builds(
        lambda name, args: [
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": name, "arguments": args}}],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        good_tool_names,
        st.just('{"x": 1}'),
    ),
)


def _flat(turns: list[Any]) -> list[Any]:
    return [m for t in turns for m in (t if isinstance(t, list) else [t])] + [{"role": "user", "content": "Go on."}]


good_chat_tools = st.lists(
    st.fixed_dictionaries(
        {
            "type": st.just("function"),
            "function": st.fixed_dictionaries(
                {"name": good_tool_names}, optional={"description": good_texts, "parameters": good_schemas}
            ),
        }
    ),
    min_size=1,
    max_size=2,
)
good_formats = st.one_of(
    st.just({"type": "json_object"}),
    st.just({"type": "text"}),
    st.builds(lambda s: {"type": "json_schema", "json_schema": {"name": "out", "schema": s}}, good_schemas),
)
good_anthropic_blocks = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": good_texts}),
    st.fixed_dictionaries(
        {
            "type": st.just("image"),
            "source": st.sampled_from([{"type": "base64", "media_type": "image/png", "data": PNG_1PX}]),
        }
    ),
    st.fixed_dictionaries(
        {
            "type": st.just("document"),
            "source": st.just({"type": "text", "media_type": "text/plain", "data": "A short document."}),
        }
    ),
)
good_anthropic_turns = st.one_of(
    st.fixed_dictionaries(
        {
            "role": st.just("user"),
            "content": st.one_of(good_texts, st.lists(good_anthropic_blocks, min_size=1, max_size=3)),
        }
    ),
    st.builds(
        lambda name: [
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": name, "input": {"x": 1}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"}]},
        ],
        good_tool_names,
    ),
)


def _alternating(turns: list[Any]) -> list[Any]:
    """Anthropic turns alternate user / assistant and start with the user."""
    out: list[Any] = [{"role": "user", "content": "Start."}]
    for t in turns:
        for m in t if isinstance(t, list) else [t]:
            if m["role"] == out[-1]["role"]:
                out.append({"role": "assistant" if m["role"] == "user" else "user", "content": "ok"})
            out.append(m)
    if out[-1]["role"] != "user":
        out.append({"role": "user", "content": "Go on."})
    return out


good_anthropic_tools = st.lists(
    st.fixed_dictionaries(
        {"name": good_tool_names, "input_schema": good_schemas}, optional={"description": good_texts}
    ),
    min_size=1,
    max_size=2,
)
good_max = st.integers(1, 64)
GOOD_FIELDS: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "chat": {
        "max_tokens": good_max,
        "temperature": st.floats(0, 2),
        "top_p": st.floats(0, 1),
        "n": st.integers(1, 2),
        "stream": st.booleans(),
        "stream_options": st.just({"include_usage": True}),
        "stop": st.one_of(good_texts, st.lists(good_texts, max_size=2)),
        "tools": good_chat_tools,
        "tool_choice": st.sampled_from(["auto", "none", "required"]),
        "response_format": good_formats,
        "seed": st.integers(0, 2**31),
        "logprobs": st.booleans(),
        "top_logprobs": st.integers(0, 3),
        "user": good_texts,
        "presence_penalty": st.floats(-2, 2),
        "metadata": st.dictionaries(good_tool_names, good_texts, max_size=2),
        "parallel_tool_calls": st.booleans(),
    },
    "messages": {
        "system": st.one_of(
            good_texts,
            st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": good_texts}), min_size=1, max_size=2),
        ),
        "tools": good_anthropic_tools,
        "tool_choice": st.sampled_from([{"type": "auto"}, {"type": "any"}, {"type": "none"}]),
        "stream": st.booleans(),
        "temperature": st.floats(0, 1),
        "top_k": st.integers(1, 50),
        "stop_sequences": st.lists(good_texts, max_size=2),
        "metadata": st.builds(lambda u: {"user_id": u}, good_texts),
        "thinking": st.builds(lambda b: {"type": "enabled", "budget_tokens": b}, st.integers(1024, 4096)),
    },
    "completions": {
        "max_tokens": good_max,
        "n": st.integers(1, 2),
        "stream": st.booleans(),
        "echo": st.booleans(),
        "logprobs": st.integers(0, 3),
        "stop": good_texts,
        "temperature": st.floats(0, 2),
        "seed": st.integers(0, 99),
    },
    "responses": {
        "max_output_tokens": st.integers(16, 64),
        "instructions": good_texts,
        "stream": st.booleans(),
        "temperature": st.floats(0, 2),
        "text": st.builds(
            lambda f: {"format": f}, st.one_of(st.just({"type": "text"}), st.just({"type": "json_object"}))
        ),
        "tools": st.builds(
            lambda n, s: [{"type": "function", "name": n, "parameters": s}], good_tool_names, good_schemas
        ),
    },
    "embeddings": {
        "dimensions": st.just(384),
        "encoding_format": st.sampled_from(["float", "base64"]),
        "user": good_texts,
    },
    "count_tokens": {"system": good_texts, "tools": good_anthropic_tools},
}
GOOD_REQUIRED: dict[str, dict[str, st.SearchStrategy[Any]]] = {
    "chat": {"messages": st.lists(good_openai_turns, min_size=1, max_size=3).map(_flat)},
    "messages": {
        "messages": st.lists(good_anthropic_turns, min_size=0, max_size=3).map(_alternating),
        "max_tokens": good_max,
    },
    "completions": {"prompt": st.one_of(good_texts, st.lists(good_texts, min_size=1, max_size=2))},
    "responses": {
        "input": st.one_of(
            good_texts,
            st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.just("user"),
                        "content": st.one_of(
                            good_texts,
                            st.lists(
                                st.fixed_dictionaries({"type": st.just("input_text"), "text": good_texts}),
                                min_size=1,
                                max_size=2,
                            ),
                        ),
                    }
                ),
                min_size=1,
                max_size=2,
            ),
        )
    },
    "embeddings": {"input": st.one_of(good_texts, st.lists(good_texts, min_size=1, max_size=3), token_ids)},
    "count_tokens": {"messages": st.lists(good_anthropic_turns, min_size=0, max_size=3).map(_alternating)},
}
GOOD_MODELS = {
    "embeddings": st.sampled_from(["local-embed", "auto"]),
    **{
        name: st.one_of(
            st.sampled_from(MODELS_BY_ROUTE[name]), st.sampled_from((*LOCAL_MODELS, "auto", "claude-opus-4-1"))
        )
        for name in ("chat", "messages", "completions", "responses", "count_tokens")
    },
}


@st.composite
def well_formed(draw: st.DrawFn, name: str) -> dict[str, Any]:
    """A body of route `name` every field of which has its documented type (what SDKs send)."""
    body = {"model": draw(GOOD_MODELS[name]), **{k: draw(s) for k, s in GOOD_REQUIRED[name].items()}}
    fields = GOOD_FIELDS[name]
    for k in draw(st.lists(st.sampled_from(sorted(fields)), max_size=4, unique=True)):
        body[k] = draw(fields[k])
    return _fast(body, ROUTES[name])


def requests_for(name: str) -> st.SearchStrategy[Any]:
    """The fuzz mix of a route: well-formed bodies, well-formed bodies broken once, and wild ones."""
    route = ROUTES[name]
    return st.one_of(
        well_formed(name),
        well_formed(name).flatmap(lambda b: broken(b)).map(lambda b: _fast(b, route)),
        bodies(route),
    )
