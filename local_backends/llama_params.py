"""What the local llama.cpp backend honours of an OpenAI request, read into generation settings.

One place for it, so the backend never answers 200 with less than was asked: a parameter it cannot honour
(tools, audio, reasoning...) is a 400 naming it. Honoured: max_tokens, temperature, top_p, stop, seed,
presence/frequency penalties, `n` (several answers, generated one after another), `logprobs` /
`top_logprobs`, and `response_format` json_object / json_schema (enforced with a llama.cpp grammar).
Pure: the grammar is built by the engine from the schema returned here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The most top log-probabilities OpenAI allows per token (chat; completions allows 5).
MAX_TOP_LOGPROBS = 20
MAX_CHOICES = 8  # n: each answer is a full generation on a 2-core machine
# Request fields that ask for something this backend cannot do: refused with a 400 naming them.
UNSUPPORTED = ("tools", "functions", "audio", "prediction", "reasoning_effort", "thinking", "web_search_options")


class ParamError(ValueError):
    """A request this backend cannot honour as asked; `param` names the field."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class Generation:
    """Settings of one request, shared by every answer (`n`) it asks for."""

    max_tokens: int
    temperature: float
    top_p: float
    stop: list[str]
    seed: int | None
    presence_penalty: float
    frequency_penalty: float
    n: int
    logprobs: bool
    top_logprobs: int
    # None: free text; {} : any JSON object; otherwise a JSON schema the answer must follow.
    json_schema: dict[str, Any] | None = None


def _number(body: dict[str, Any], key: str, default: float, lo: float, hi: float) -> float:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= v <= hi:
        raise ParamError(f"'{key}' must be a number between {lo} and {hi}, got {v!r}", key)
    return float(v)


def _int(body: dict[str, Any], key: str, default: int, lo: int, hi: int) -> int:
    v = body.get(key)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ParamError(f"'{key}' must be an integer between {lo} and {hi}, got {v!r}", key)
    return v


def _stop(body: dict[str, Any]) -> list[str]:
    stop = body.get("stop")
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    if isinstance(stop, list) and all(isinstance(s, str) for s in stop) and len(stop) <= 4:
        return list(stop)
    raise ParamError("'stop' must be a string or a list of up to 4 strings", "stop")


def _json_schema(body: dict[str, Any]) -> dict[str, Any] | None:
    rf = body.get("response_format")
    if rf is None:
        return None
    kind = rf.get("type") if isinstance(rf, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {}
    if kind == "json_schema":
        spec = rf.get("json_schema")
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise ParamError("'response_format.json_schema.schema' must be a JSON schema object", "response_format")
        empty = _unsatisfiable(schema)
        if empty:  # llama.cpp builds an empty grammar for it and crashes the server while sampling
            raise ParamError(
                f"'response_format' schema has an empty '{empty}': no value can match it", "response_format"
            )
        return schema
    raise ParamError("'response_format.type' must be 'text', 'json_object' or 'json_schema'", "response_format")


def _unsatisfiable(node: Any) -> str | None:
    """The first keyword of a JSON schema that no value can satisfy (an empty enum, anyOf or oneOf), or None."""
    if isinstance(node, dict):
        for key in ("enum", "anyOf", "oneOf"):
            if key in node and isinstance(node[key], list) and not node[key]:
                return key
        children: list[Any] = list(node.values())
    elif isinstance(node, list):
        children = node
    else:
        return None
    for child in children:
        found = _unsatisfiable(child)
        if found:
            return found
    return None


def _refuse_unsupported(body: dict[str, Any]) -> None:
    for key in UNSUPPORTED:
        if body.get(key):
            raise ParamError(f"'{key}' is not supported by the local model", key)
    choice = body.get("tool_choice") or body.get("function_call")
    if choice not in (None, "none", "auto"):
        raise ParamError("'tool_choice' is not supported by the local model (it has no tools)", "tool_choice")
    modalities = body.get("modalities")
    if modalities is not None and modalities != ["text"]:
        raise ParamError("'modalities' other than ['text'] are not supported by the local model", "modalities")


def chat_generation(body: dict[str, Any], default_max_tokens: int) -> Generation:
    """A /v1/chat/completions request's settings; raises ParamError for what cannot be honoured."""
    _refuse_unsupported(body)
    logprobs = body.get("logprobs")
    if logprobs is not None and not isinstance(logprobs, bool):
        raise ParamError("'logprobs' must be true or false", "logprobs")
    top = _int(body, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS)
    if top and not logprobs:
        raise ParamError("'top_logprobs' needs 'logprobs': true", "top_logprobs")
    return _generation(body, default_max_tokens, bool(logprobs), top)


def text_generation(body: dict[str, Any], default_max_tokens: int) -> Generation:
    """A /v1/completions request's settings (`logprobs` there is the number of top tokens, 0-5)."""
    _refuse_unsupported(body)
    if body.get("suffix"):
        raise ParamError("'suffix' (fill in the middle) is not supported by the local model", "suffix")
    if body.get("best_of") not in (None, 1):
        raise ParamError("'best_of' is not supported by the local model", "best_of")
    lp = body.get("logprobs")
    if lp is not None and (isinstance(lp, bool) or not isinstance(lp, int) or not 0 <= lp <= 5):
        raise ParamError("'logprobs' must be an integer between 0 and 5", "logprobs")
    return _generation(body, default_max_tokens, lp is not None, int(lp or 0))


def _generation(body: dict[str, Any], default_max_tokens: int, logprobs: bool, top: int) -> Generation:
    max_tokens = body.get("max_tokens") or body.get("max_completion_tokens") or default_max_tokens
    if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
        raise ParamError(f"'max_tokens' must be a positive integer, got {max_tokens!r}", "max_tokens")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ParamError("'seed' must be an integer", "seed")
    return Generation(
        max_tokens=max_tokens,
        temperature=_number(body, "temperature", 0.2, 0.0, 2.0),
        top_p=_number(body, "top_p", 0.95, 0.0, 1.0),
        stop=_stop(body),
        seed=seed,
        presence_penalty=_number(body, "presence_penalty", 0.0, -2.0, 2.0),
        frequency_penalty=_number(body, "frequency_penalty", 0.0, -2.0, 2.0),
        n=_int(body, "n", 1, 1, MAX_CHOICES),
        logprobs=logprobs,
        top_logprobs=top,
        json_schema=_json_schema(body),
    )
