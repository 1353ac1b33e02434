"""Input checks LiteLLM leaves to the provider, answered before any money is spent.

Each returns an error message or None; the hook turns a message into a 400 in
the API's own error format.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from policies.common import request_models
from policies.common.api_shapes import RESPONSES_CALLS, STORED_CONTEXT_FIELDS, TEXT_CALLS, stored_context
from policies.common.cache_ttls import without_ttls

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


# Fields the budget reads or prices (the model, how many answers, how long, streamed or not, the prompt, the
# tools, the tier of service). LiteLLM merges a body's `extra_body` into the provider's request over the
# checked top-level fields, so a client could otherwise call another model or ask for n answers of any length
# against a reservation made for one short answer.
PRICED_FIELDS = frozenset(
    {
        "model",
        "n",
        "best_of",
        "max_tokens",
        "max_completion_tokens",
        "max_output_tokens",
        "max_tokens_to_sample",
        "stream",
        "stream_options",
        "service_tier",
        "inference_geo",
        "speed",
        "context_management",
        "compaction",
        "messages",
        "input",
        "prompt",
        "system",
        "tools",
        "functions",
        "thinking",
        "reasoning",
        "reasoning_effort",
        "modalities",
        "audio",
        "prediction",
        "background",
        "dimensions",
        # The Responses API's `instructions` are prompt; a stored conversation is prompt the budget holds the whole
        # context window for, and only a model that keeps it may continue it (stored_context_error); web searches are
        # billed per search (check_unpriced_extras). LiteLLM merges each into the provider's request from extra_body.
        "instructions",
        *STORED_CONTEXT_FIELDS,
        "web_search_options",
    }
)


def check_extra_body(data: dict[str, Any]) -> str | None:
    extra = data.get("extra_body")
    if extra is None:
        return None
    if not isinstance(extra, dict):
        return f"'extra_body' must be an object, got {type(extra).__name__}"
    priced = sorted(k for k in extra if k in PRICED_FIELDS)
    if priced:
        return (
            f"'extra_body.{priced[0]}' is not accepted: set '{priced[0]}' at the top level of the request, "
            "where it is checked and priced"
        )
    return None


# An HTTP header field name (RFC 9110's token), and a value of printable ASCII (httpx encodes values as ASCII).
HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
HEADER_VALUE = re.compile(r"[\t\x20-\x7e]*")


def check_forwarded_headers(data: dict[str, Any]) -> str | None:
    """A body's `extra_headers` or `headers`, which LiteLLM sends on to the provider: an object of header names to
    string values, or a 400 (else LiteLLM's provider layer fails on it with a 500, and cools the deployment down)."""
    for field in ("extra_headers", "headers"):
        sent = data.get(field)
        if sent is None:
            continue
        if not isinstance(sent, dict):
            return f"'{field}' must be an object of header names to string values, got {type(sent).__name__}"
        for name, value in sent.items():
            if not HEADER_NAME.fullmatch(name):
                return f"'{field}' has an invalid header name {name[:80]!r}"
            if not isinstance(value, str) or not HEADER_VALUE.fullmatch(value):
                return f"'{field}.{name[:80]}' must be a header value: a string of printable ASCII"
    return None


# What a provider bills beyond tokens at list price, which the budget can neither reserve nor price: OpenAI's
# priority processing (a higher price per token) and server-side tools billed per use or per container (web
# search, file search, code execution, image generation; Anthropic's types carry a date, "web_search_20250305").
UNPRICED_SERVICE_TIERS = frozenset({"priority"})
# Anthropic's surcharged request options, which LiteLLM forwards on /v1/messages: US-only inference
# (`inference_geo` "us", 1.1x the list price on its current models) and fast mode (`speed` "fast", 6x).
LIST_PRICED_OPTIONS = {"inference_geo": ("global",), "speed": ("standard",)}
UNPRICED_TOOL_TYPES = ("web_search", "file_search", "code_interpreter", "code_execution", "image_generation")


# Anthropic betas billed above the list price: the 1M-token context window bills a prompt above 200,000 tokens at
# the long-context price (twice the input price, 1.5 times the output price). Without it Anthropic refuses such a
# prompt, unbilled. LiteLLM forwards a client's anthropic-beta header, and a body's `extra_headers` or `headers`.
UNPRICED_BETAS = ("context-1m",)


def _unpriced_beta(value: str) -> str | None:
    return next((b.strip() for b in value.split(",") if b.strip().lower().startswith(UNPRICED_BETAS)), None)


def _beta_message(where: str, beta: str) -> str:
    return (
        f"{where} asks for {beta!r}, which is not accepted: Anthropic bills a prompt above 200,000 tokens at its "
        "long-context price, which synqra's budget and ledger cannot price; leave it out (prompts up to 200,000 "
        "tokens work without it)"
    )


def _compaction_field(data: dict[str, Any]) -> str | None:
    """Where a request asks for server-side compaction: Anthropic's `compaction` or a `compact_*` context edit, or the
    Responses API's `context_management` compaction (which LiteLLM turns into Anthropic's for Claude). Anthropic bills
    the summarising pass as an extra sampling iteration, outside the top-level usage the ledger records."""
    if data.get("compaction") is not None:
        return "compaction"
    managed = data.get("context_management")
    if isinstance(managed, dict):
        edits = managed.get("edits")
        for i, edit in enumerate(edits if isinstance(edits, list) else []):
            if isinstance(edit, dict) and str(edit.get("type", "")).startswith("compact"):
                return f"context_management.edits[{i}]"
    for i, entry in enumerate(managed if isinstance(managed, list) else []):
        if isinstance(entry, dict) and str(entry.get("type", "")).startswith("compact"):
            return f"context_management[{i}]"
    return None


def check_unpriced_extras(data: dict[str, Any]) -> str | None:
    for field in ("extra_headers", "headers"):  # LiteLLM sends both on to the provider
        sent = data.get(field)
        for name, value in sent.items() if isinstance(sent, dict) else ():
            beta = _unpriced_beta(value) if str(name).lower() == "anthropic-beta" and isinstance(value, str) else None
            if beta:
                return _beta_message(f"'{field}.{name}'", beta)
    if data.get("background"):
        # The Responses API's background mode answers at once (queued, no usage) and bills the answer it
        # generates afterwards: the ledger would record the prompt alone.
        return (
            "'background' is not accepted: a background response is generated and billed after the call returns, "
            "out of sight of synqra's budget and ledger; send the request without it (stream it if it is long)"
        )
    tier = data.get("service_tier")
    if isinstance(tier, str) and tier in UNPRICED_SERVICE_TIERS:
        return (
            f"'service_tier' {tier!r} is not accepted: the provider bills it above the list price synqra's budget "
            "and ledger use; leave service_tier out or use 'auto'/'default'"
        )
    for option, list_priced in LIST_PRICED_OPTIONS.items():
        value = data.get(option)
        if value is not None and value not in list_priced:
            return (
                f"'{option}' {value!r} is not accepted: Anthropic bills it above the list price synqra's budget "
                f"and ledger use; leave {option} out or use {list_priced[0]!r}"
            )
    compaction = _compaction_field(data)
    if compaction:
        return (
            f"'{compaction}' (server-side compaction) is not accepted: the provider bills its summarising pass outside "
            "the usage synqra's budget and ledger record; compact the conversation on the client instead"
        )
    if data.get("web_search_options") is not None:
        return "'web_search_options' is not accepted: web searches are billed per search, which synqra cannot price"
    tools = data.get("tools")
    for i, tool in enumerate(tools if isinstance(tools, list) else []):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if isinstance(kind, str) and kind.startswith(UNPRICED_TOOL_TYPES):
            return (
                f"'tools[{i}]' of type {kind!r} is not accepted: the provider bills this tool per use, which "
                "synqra's budget and ledger cannot price"
            )
    return None


def unknown_model(name: str, offered: list[str]) -> str:
    """The 400 for a model name that is not a model_list name or alias. LiteLLM itself would still route a
    deployment's provider string ("anthropic/claude-sonnet-4-5"), a deployment id, or a comma-separated list
    (one call to each) past synqra's checks, budget and ledger."""
    return f"model '{name}' is not offered by this proxy: use one of {', '.join(offered)} (GET /v1/models lists them)"


# A request's own fallback lists, in LiteLLM's shapes: model names, {"model": ...} objects (client-side fallbacks)
# or {"<model group>": [model names]} as in router_settings.
FALLBACK_FIELDS = ("fallbacks", "context_window_fallbacks", "content_policy_fallbacks")


def _fallback_names(entry: Any) -> list[Any]:
    if isinstance(entry, dict) and "model" in entry:
        return [entry["model"]]
    if isinstance(entry, dict):
        return [n for chain in entry.values() for n in (chain if isinstance(chain, list) else [chain])]
    return [entry]


def unknown_fallback(data: dict[str, Any], offered: Callable[[str], bool], names: list[str]) -> str | None:
    """The 400 for a request fallback that names no model_list model: LiteLLM would send a provider string
    through its provider layer (a 500 there), outside the names synqra reserves and records."""
    for key in FALLBACK_FIELDS:
        value = data.get(key)
        if value is None:
            continue
        if not isinstance(value, list):
            return f"'{key}' must be a list of model names"
        for entry in value:
            for name in _fallback_names(entry):
                if not isinstance(name, str) or not offered(name):
                    return f"'{key}': {unknown_model(str(name), names)}"
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
        return (
            None
            if view["messages"] and all(m["content"] for m in view["messages"])
            else ("'prompt' must be a non-empty string, a list of non-empty strings, or token ids")
        )
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
    return (
        "'input' must be a non-empty string, a list of non-empty strings, a list of token ids, "
        "or a list of non-empty lists of token ids"
    )


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
    "no stored conversations": STORED_CONTEXT_FIELDS,
    "no n": ("n",),
    "no logprobs": ("logprobs", "top_logprobs"),
}


def capability_param(why: str | None, data: dict[str, Any]) -> str | None:
    """The request parameter that asks what the model cannot do (`unmet`'s `why`): an OpenAI error's `param`."""
    if why is None or why not in _CAPABILITY_PARAMS:
        return None
    return next((p for p in _CAPABILITY_PARAMS[why] if data.get(p)), _CAPABILITY_PARAMS[why][0])


def capability_error(model: str, why: str | None, data: dict[str, Any]) -> str | None:
    """The 400 message for a request to a model that cannot do what it asks (never a silent 200 with less); the
    parameter it names is `capability_param`'s."""
    asked = capability_param(why, data)
    if why is None or asked is None:
        return None  # context windows are checked by check_context_window, with the numbers
    what = {
        "no tools": "tools",
        "no reasoning": "extended thinking",
        "no vision": "images",
        "no stored conversations": "stored Responses conversations",
        "no n": "several answers",
        "no logprobs": "log-probabilities",
    }[why]
    advice = ", or the whole conversation in `input`" if why == "no stored conversations" else ""
    return (
        f"model '{model}' does not support {what} ('{asked}'): send the request to a model that does, "
        f"or to 'auto', which picks one{advice}"
    )


def stored_context_error(requested: str, data: dict[str, Any], caps: Mapping[str, Any], served: str) -> str | None:
    """The 400 message when a routed request refers to a stored Responses conversation (previous_response_id,
    conversation) and the model picked for it does not keep one (no tier of `requested` does, or the budget moved it
    to the local model): LiteLLM would send the turn without its history, and the answer would be a 200 that never
    saw it. `caps`: each model's TierInfo."""
    asked = stored_context(data)
    info = caps.get(served)
    if asked is None or getattr(info, "stores_responses", False):
        return None
    keepers = sorted(name for name, c in caps.items() if getattr(c, "stores_responses", False))
    named = f" by name ({', '.join(keepers)})" if keepers else ""
    return (
        f"'{requested}' was routed to '{served}', which does not keep stored Responses conversations ('{asked}'): "
        f"send the whole conversation in `input`, or ask a model that keeps them{named}"
    )


# --- the front door (proxy/route_guard.py): before LiteLLM parses the body -----------------------------

# Request shape by route (the path's end: LiteLLM also mounts /engines/{model}/... and /openai/deployments/{model}/...).
_SHAPES: tuple[tuple[str, type[request_models.Shape]], ...] = (
    ("/chat/completions", request_models.ChatRequest),
    ("/messages/count_tokens", request_models.MessagesFields),
    ("/messages", request_models.MessagesRequest),
    ("/completions", request_models.CompletionRequest),
    ("/responses", request_models.ResponsesRequest),
    ("/embeddings", request_models.EmbeddingRequest),
)
# Routes whose model is in the path: the body may leave it out.
_MODEL_IN_PATH = ("/engines/", "/openai/deployments/")


def checks_body(path: str) -> bool:
    """Whether the front door checks this route's body."""
    return any(path.rstrip("/").endswith(suffix) for suffix, _ in _SHAPES)


def _token_ids(prompt: Any) -> bool:
    return isinstance(prompt, list) and bool(prompt) and not any(isinstance(p, str) for p in prompt)


def _prompt_count(prompt: Any) -> int:
    """Prompts in a text completion's `prompt`: a list of texts or of token-id lists holds one each."""
    if isinstance(prompt, list) and prompt and all(isinstance(p, (str, list)) for p in prompt):
        return len(prompt)
    return 1


def body_problem(
    path: str,
    body: Any,
    takes_token_ids: Callable[[str], bool] | None = None,
    anthropic_ttls: Callable[[str], bool] | None = None,
) -> str | None:
    """Checks at the front door, before LiteLLM parses the body: shapes that crash LiteLLM's own handlers
    or its provider layer (e.g. embeddings [[], []] indexes input[0][0]; a content part of a type LiteLLM
    does not know; a `response_format` that is not an object), as a clear 400 naming the field.

    `takes_token_ids(model)`: whether that model reads a text completion's prompt given as token ids
    (ids are one model's own vocabulary; LiteLLM fails with a 500 on any other provider's). Only that model (the
    local one) also answers a list of prompts each on its own: LiteLLM joins them into one message for the others.
    `anthropic_ttls(model)`: whether that model may be sent to Anthropic's API, whose `cache_control` TTLs are "5m"
    and "1h" only (cache_ttls.anthropic_ttls_apply); other models' TTLs pass unchecked. None: checked for every model."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    path = path.rstrip("/")
    shape = next((model for suffix, model in _SHAPES if path.endswith(suffix)), None)
    if shape is None:
        return None
    if "model" not in body and path.startswith(_MODEL_IN_PATH):
        body = {**body, "model": path.split("/")[2 if path.startswith("/engines/") else 3]}
    problem = request_models.shape_problem(shape, body) or request_models.litellm_params_problem(shape, body)
    if problem is not None and anthropic_ttls is not None and not anthropic_ttls(str(body.get("model"))):
        # The TTL rule is Anthropic's: a Gemini model's "3600s" was refused. Checked again without the TTLs.
        bare = without_ttls(body)
        problem = request_models.shape_problem(shape, bare) or request_models.litellm_params_problem(shape, bare)
    if problem is None and shape is request_models.EmbeddingRequest:
        problem = check_embedding_input(body)  # non-empty, and one kind of input throughout
    if (
        problem is None
        and shape is request_models.CompletionRequest
        and takes_token_ids is not None
        and _token_ids(body["prompt"])
        and not takes_token_ids(body["model"])
    ):
        problem = (
            f"'prompt' as token ids is read in one model's own vocabulary, and model '{body['model']}' does not "
            "take it: send the prompt as text"
        )
    if (
        problem is None
        and shape is request_models.CompletionRequest
        and takes_token_ids is not None
        and (count := _prompt_count(body["prompt"])) > 1
        and not takes_token_ids(body["model"])
    ):
        problem = (
            f"'prompt' holds {count} prompts, and model '{body['model']}' would answer them as one (LiteLLM joins "
            "them into one message, one answer for all): send one request per prompt"
        )
    return problem


# Fields LiteLLM's check lets through that still choose where a call goes, and why each is refused: `custom_llm_provider`
# makes LiteLLM call the deployment through another provider's client, at that provider's default host when the
# deployment sets no api_base, with the deployment's key; `specific_deployment` reads `model` as a deployment id
# (refused in `model` itself, unknown_model), and a model name then finds none: a 429 the SDKs retry.
REFUSED_ROUTING_FIELDS = {
    "custom_llm_provider": "it chooses which provider a model's key is sent to",
    "specific_deployment": "it reads the model as a deployment id; name a model of GET /v1/models",
}


def banned_field_problem(path: str, body: Any, general_settings: dict[str, Any], llm_router: Any) -> str | None:
    """A field LiteLLM bans from a request body (api_base, base_url, user_config, custom pricing ...), by
    LiteLLM's own check (`is_request_body_safe`, so the list stays LiteLLM's and so do the operator's opt-ins in
    `general_settings` and on the deployments), or one of REFUSED_ROUTING_FIELDS. LiteLLM refuses its own too,
    but its error handler then fails on `import prisma` and the client gets a plain-text 500, not a 400 naming
    the field."""
    if not isinstance(body, dict):
        return None
    for name, why in REFUSED_ROUTING_FIELDS.items():
        if name in body and body[name] is not False:  # an explicit false asks for nothing
            return f"Rejected Request: {name} is not allowed in request body: {why}"
    from litellm.proxy.auth.auth_utils import is_request_body_safe  # loaded by the proxy already

    try:
        is_request_body_safe(body, general_settings, llm_router, str(body.get("model") or ""), route=path)
    except ValueError as e:  # LiteLLM's "Rejected Request: api_base is not allowed in request body. ..."
        return str(e)
    return None


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _NotJson(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise _NotJson(f"{text[:20]} is out of range for a JSON number")
    return value


def _int(text: str) -> int | float:
    """As orjson reads integers: beyond 64 bits, a float (and out of range past a float's)."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else _finite(text)


def parse_body(raw: bytes) -> tuple[Any, str | None]:
    """The body as LiteLLM will read it, or why it is not JSON: (value, problem).

    orjson first, as LiteLLM does; what orjson refuses LiteLLM reads again with `json` (which takes NaN,
    Infinity, 1e999 and deeper nesting) and refuses lone UTF-16 surrogates, and so does this, so the
    checks see what LiteLLM will. Unlike LiteLLM, NaN, Infinity and numbers too large for a float are
    refused (no provider can be sent them: a 500 and a fallback), as are bodies that are not UTF-8 or nest
    deeper than Python reads (LiteLLM takes those for an empty body and answers about missing fields).
    """
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as first:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None, "request body is not valid JSON: it is not UTF-8 text"
        try:
            value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, parse_int=_int)
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except RecursionError:
            return None, "request body is not valid JSON: it is nested too deeply"
        except UnicodeEncodeError:
            return None, "request body is not valid JSON: it holds a lone UTF-16 surrogate (\\ud800-\\udfff)"
        except _NotJson as e:
            return None, f"request body is not valid JSON: {e}"
        except ValueError:
            return None, f"request body is not valid JSON: {first}"
        return value, None


# Headers LiteLLM reads as numbers (litellm/proxy/litellm_pre_call_utils.py), and how.
_NUMERIC_HEADERS = {
    b"x-litellm-timeout": "a positive number of seconds",
    b"x-litellm-stream-timeout": "a positive number of seconds",
    b"x-litellm-keepalive-seconds": "a positive number of seconds",
    b"x-litellm-num-retries": "a whole number, 0 or more",
}
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def header_problem(headers: list[tuple[bytes, bytes]]) -> str | None:
    """Request headers LiteLLM would fail on: a control character in any value (an HTTP client refuses to
    send it on to a provider, a 500 and a fallback), and LiteLLM's numeric control headers that are not numbers;
    and an Anthropic beta billed above the list price (UNPRICED_BETAS)."""
    for name, value in headers:
        if _CONTROL.search(value):
            return f"header '{name.decode('latin-1')}' holds a control character"
        beta = _unpriced_beta(value.decode("latin-1")) if name.lower() == b"anthropic-beta" else None
        if beta:
            return _beta_message("header 'anthropic-beta'", beta)
        want = _NUMERIC_HEADERS.get(name.lower())
        if want is not None and not _header_number_ok(name.lower(), value):
            return f"header '{name.decode('latin-1')}' must be {want}, got {value.decode('latin-1')[:40]!r}"
    return None


def _header_number_ok(name: bytes, value: bytes) -> bool:
    try:
        if name == b"x-litellm-num-retries":
            return int(value) >= 0
        number = float(value)
    except ValueError:
        return False
    return math.isfinite(number) and number > 0
