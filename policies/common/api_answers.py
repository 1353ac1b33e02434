"""What a model answered, read one way from every API shape: OpenAI chat and text completions, Anthropic
messages, the Responses API, whole or streamed, as SDK objects or plain JSON.

The quality gate scores an `Answer` (text, finish reason, token logprobs, tool calls); the accountant settles
at `usage_of` (or, where a provider's figure is missing, `checked_usage`: LiteLLM's token count, never free).
"""

from __future__ import annotations

import codecs
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from policies.common.api_shapes import MESSAGES_CALLS, RESPONSES_CALLS, TEXT_CALLS

log = logging.getLogger("synqra.accounting")


def get_field(obj: Any, key: str) -> Any:
    """A field of a response part, whether a plain dict (JSON, Anthropic events) or an SDK / LiteLLM object."""
    if isinstance(obj, dict):
        return obj.get(key)
    if obj is None:  # a part the response lacks (most usage details): before pydantic's costlier isinstance
        return None
    if isinstance(obj, BaseModel) and _fields_only(type(obj), key):
        # What getattr would find, read directly: through getattr a field a pydantic object lacks costs ~3.5 us (its
        # __getattr__ formats and raises an AttributeError), and the usage readers probe many (cache_tokens_of: six
        # on an OpenAI usage, three times a request).
        found = obj.__dict__.get(key, _MISSING)
        if found is _MISSING:
            extra = getattr(obj, "__pydantic_extra__", None)
            found = extra.get(key) if extra else None
        return found
    return getattr(obj, key, None)


_MISSING = object()
_PYDANTIC_GETATTR = getattr(BaseModel, "__getattr__", None)  # defined outside type checking only
_FIELDS_ONLY: dict[tuple[type, str], bool] = {}


def _fields_only(cls: type, key: str) -> bool:
    """Whether getattr(an instance of the pydantic model `cls`, key) reads only the instance's fields or pydantic's
    extras: `cls` defines no attribute `key` (a property or method, found before the fields) and no __getattr__ of
    its own, and `key` is no private attribute."""
    known = _FIELDS_ONLY.get((cls, key))
    if known is None:
        known = _FIELDS_ONLY[(cls, key)] = (
            not key.startswith("_")
            and getattr(cls, "__getattr__", None) is _PYDANTIC_GETATTR
            and not any(key in vars(c) for c in cls.__mro__)
        )
    return known


@dataclass
class Answer:
    text: str
    finish_reason: str | None
    logprobs: list[float] | None
    tool_calls: list[Any] | None


def extract_logprobs(choice_logprobs: Any) -> list[float] | None:
    """Token logprobs from an OpenAI-style `choices[i].logprobs` (dict or LiteLLM object), or None.

    Chat shape: {"content": [{"token", "logprob", ...}, ...]}; completion shape:
    {"token_logprobs": [...]}. For a stream, concatenate what each chunk returns.
    """
    if choice_logprobs is None:
        return None
    get: Callable[[str], Any] = (
        choice_logprobs.get if isinstance(choice_logprobs, dict) else lambda k: getattr(choice_logprobs, k, None)
    )
    content = get("content")
    if content:
        vals = [c.get("logprob") if isinstance(c, dict) else getattr(c, "logprob", None) for c in content]
    else:
        vals = list(get("token_logprobs") or [])
    out = [float(v) for v in vals if v is not None]
    return out or None


def chat_answer(response: Any) -> Answer:
    choice = (get_field(response, "choices") or [None])[0]
    msg = get_field(choice, "message") if choice is not None else None
    return Answer(
        text=str(get_field(msg, "content") or "") if msg is not None else "",
        finish_reason=get_field(choice, "finish_reason") if choice is not None else None,
        logprobs=extract_logprobs(get_field(choice, "logprobs")) if choice is not None else None,
        tool_calls=get_field(msg, "tool_calls") if msg is not None else None,
    )


ANTHROPIC_STOP = {"max_tokens": "length", "end_turn": "stop", "stop_sequence": "stop", "tool_use": "tool_calls"}


def messages_answer(response: Any) -> Answer:
    blocks = get_field(response, "content") or []
    text = "".join(str(get_field(b, "text") or "") for b in blocks if get_field(b, "type") == "text")
    tools = [b for b in blocks if get_field(b, "type") == "tool_use"] or None
    stop = get_field(response, "stop_reason")
    return Answer(text, ANTHROPIC_STOP.get(str(stop), stop), None, tools)


def text_answer(response: Any) -> Answer:
    """An OpenAI text completion (/v1/completions): the first choice's text and token logprobs."""
    choice = (get_field(response, "choices") or [None])[0]
    if choice is None:
        return Answer("", None, None, None)
    lp = get_field(choice, "logprobs")
    values = get_field(lp, "token_logprobs") if lp is not None else None
    return Answer(
        str(get_field(choice, "text") or ""),
        get_field(choice, "finish_reason"),
        [float(v) for v in values if v is not None] if values else None,
        None,
    )


def responses_answer(response: Any) -> Answer:
    """A Responses API response: its output text, function calls (as OpenAI tool calls) and why it ended."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in get_field(response, "output") or []:
        kind = get_field(item, "type")
        if kind == "message":
            text += [
                str(get_field(c, "text") or "")
                for c in get_field(item, "content") or []
                if get_field(c, "type") == "output_text"
            ]
        elif kind == "function_call":
            calls.append(
                {
                    "id": get_field(item, "call_id"),
                    "type": "function",
                    "function": {"name": get_field(item, "name"), "arguments": get_field(item, "arguments") or ""},
                }
            )
    status = get_field(response, "status")
    reason = get_field(get_field(response, "incomplete_details"), "reason") if status == "incomplete" else None
    finish = "length" if reason == "max_output_tokens" else reason or ("tool_calls" if calls else "stop")
    return Answer("".join(text), finish, None, calls or None)


def answer_of(response: Any, call_type: str) -> Answer:
    """The answer of a whole (not streamed) response of the API `call_type` belongs to."""
    if call_type in MESSAGES_CALLS:
        return messages_answer(response)
    if call_type in RESPONSES_CALLS:
        return responses_answer(response)
    return text_answer(response) if call_type in TEXT_CALLS else chat_answer(response)


def _stream_items(chunks: Iterable[Any]) -> Iterator[Any]:
    """The stream's items in order: OpenAI chunks and Anthropic event dicts as they are, Anthropic SSE text
    (bytes or str, as LiteLLM relays /v1/messages streams) parsed into event dicts. SSE frames and UTF-8
    characters may straddle chunks: the text is read as one stream, line by line."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""

    def events(lines: list[str]) -> Iterator[dict[str, Any]]:
        for line in lines:
            line = line.strip()
            if line.startswith("data:"):
                try:
                    ev = json.loads(line[5:].strip())
                except ValueError:  # e.g. OpenAI's "[DONE]"
                    continue
                if isinstance(ev, dict):
                    yield ev

    for c in chunks:
        if isinstance(c, (bytes, str)):
            pending += decoder.decode(c) if isinstance(c, bytes) else c
            *lines, pending = pending.split("\n")
            yield from events(lines)
        else:
            yield c
    yield from events([pending + decoder.decode(b"", final=True)])


@dataclass
class _StreamReader:
    """Accumulates a buffered stream into an Answer. Tool calls are keyed by index: OpenAI's
    `delta.tool_calls[].index` (arguments arrive as text fragments) or Anthropic's content block index
    (`content_block_start` with a tool_use block, then `input_json_delta` fragments)."""

    text: list[str] = field(default_factory=list)
    finish: str | None = None
    logprobs: list[float] = field(default_factory=list)
    tools: dict[int, dict[str, Any]] = field(default_factory=dict)
    tool_json: dict[int, list[str]] = field(default_factory=dict)  # Anthropic input_json_delta fragments

    def openai_chunk(self, chunk: Any) -> None:
        for choice in get_field(chunk, "choices") or []:
            if (get_field(choice, "index") or 0) != 0:  # the first choice is the one scored, as in chat_answer
                continue
            if get_field(choice, "text"):  # a text completion's chunk
                self.text.append(str(get_field(choice, "text")))
            delta = get_field(choice, "delta")
            if delta is not None and get_field(delta, "content"):
                self.text.append(str(get_field(delta, "content")))
            for tc in (get_field(delta, "tool_calls") if delta is not None else None) or []:
                empty = {"id": None, "type": "function", "function": {"name": None, "arguments": ""}}
                call = self.tools.setdefault(get_field(tc, "index") or 0, empty)
                fn = get_field(tc, "function")
                # id and name come once (some providers repeat them); the arguments come in fragments.
                call["id"] = get_field(tc, "id") or call["id"]
                call["function"]["name"] = get_field(fn, "name") or call["function"]["name"]
                call["function"]["arguments"] += str(get_field(fn, "arguments") or "")
            self.finish = get_field(choice, "finish_reason") or self.finish
            self.logprobs += extract_logprobs(get_field(choice, "logprobs")) or []

    def anthropic_event(self, ev: Any) -> None:
        kind, index = get_field(ev, "type"), get_field(ev, "index") or 0
        if kind == "content_block_start":
            block = get_field(ev, "content_block")
            if get_field(block, "type") == "tool_use":
                self.tools[index] = {
                    "type": "tool_use",
                    "id": get_field(block, "id"),
                    "name": get_field(block, "name"),
                    "input": get_field(block, "input"),
                }
        elif kind == "content_block_delta":
            delta = get_field(ev, "delta")
            if get_field(delta, "type") == "input_json_delta":
                self.tool_json.setdefault(index, []).append(str(get_field(delta, "partial_json") or ""))
            else:
                self.text.append(str(get_field(delta, "text") or ""))
        elif kind == "message_delta":
            stop = get_field(get_field(ev, "delta"), "stop_reason")
            self.finish = ANTHROPIC_STOP.get(str(stop), stop) or self.finish

    def answer(self) -> Answer:
        for index, parts in self.tool_json.items():
            if index in self.tools and "".join(parts):
                # Left as JSON text: the tool_args signal parses it and reports text that does not parse.
                self.tools[index]["input"] = "".join(parts)
        tools = [self.tools[i] for i in sorted(self.tools)] or None
        return Answer("".join(self.text), self.finish, self.logprobs or None, tools)


def event_type(item: Any) -> str:
    """A stream item's `type` as its wire name. LiteLLM's Responses API events carry a (str, Enum) member, whose
    str() is the member's name ('ResponsesAPIStreamEvents.OUTPUT_TEXT_DELTA'), not 'response.output_text.delta'."""
    kind = get_field(item, "type")
    return str(getattr(kind, "value", kind) or "")


_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


def carries_answer(item: Any) -> bool:
    """Whether a stream item holds part of the answer (text, tool-call arguments), not only the stream's opening
    (a role-only first chunk, Anthropic's message_start, the Responses API's lifecycle events)."""
    if isinstance(item, bytes):  # /v1/messages streams are relayed as SSE bytes
        return b"content_block_delta" in item
    if isinstance(item, str):
        return "content_block_delta" in item
    kind = event_type(item)
    if kind:  # Responses API and Anthropic events
        return kind.endswith(".delta") or kind == "content_block_delta"
    for choice in get_field(item, "choices") or []:
        delta = get_field(choice, "delta")
        if get_field(choice, "text") or (
            delta is not None and (get_field(delta, "content") or get_field(delta, "tool_calls"))
        ):
            return True
    return False


def usage_only(item: Any) -> bool:
    """A stream chunk that carries the usage and nothing of the answer (no text, no finish reason): a text completion's
    last chunk when `include_usage` was asked."""
    if get_field(item, "usage") is None:
        return False
    return not any(get_field(c, "text") or get_field(c, "finish_reason") for c in get_field(item, "choices") or [])


def stream_answer(chunks: list[Any], call_type: str = "acompletion") -> Answer:
    """Text, finish reason, logprobs and tool calls of a buffered stream: OpenAI chat or text completion chunks,
    Anthropic events, or Responses API events (whose last event carries the whole response)."""
    if call_type in RESPONSES_CALLS:
        ends = [get_field(e, "response") for e in _stream_items(chunks) if event_type(e) in _RESPONSE_ENDS]
        return responses_answer(ends[-1]) if ends else Answer("", None, None, None)
    reader = _StreamReader()
    for item in _stream_items(chunks):
        if get_field(item, "choices") is None and get_field(item, "type"):
            reader.anthropic_event(item)
        else:
            reader.openai_chunk(item)
    return reader.answer()


def _answer_text(response: Any) -> str:
    """The generated text of a logged answer: chat and text completion choices (content, tool-call arguments), or
    a Responses API response's output text and function-call arguments (LiteLLM logs /v1/messages as chat)."""
    if get_field(response, "choices") is None and get_field(response, "output") is not None:
        answer = responses_answer(response)
        return answer.text + "".join(str(c["function"]["arguments"]) for c in answer.tool_calls or [])
    parts: list[str] = []
    for choice in get_field(response, "choices") or []:
        message = get_field(choice, "message")
        parts.append(str((get_field(message, "content") if message is not None else get_field(choice, "text")) or ""))
        for call in (get_field(message, "tool_calls") if message is not None else None) or []:
            parts.append(str(get_field(get_field(call, "function"), "arguments") or ""))
    return "".join(parts)


def _prompt_count(model: str, messages: list[Any]) -> int:
    import litellm  # loaded by the proxy already

    try:
        return int(litellm.token_counter(model=model, messages=messages))
    except Exception:  # a content type the tokenizer does not know
        return 0


def _text_count(model: str, text: str) -> int:
    import litellm

    try:
        return int(litellm.token_counter(model=model, text=text, count_response_tokens=True)) if text else 0
    except Exception:
        return len(text) // 4 + 1


def _token_counts(model: str, messages: list[Any], text: str) -> tuple[int, int]:
    """(prompt, completion) tokens by LiteLLM's tokenizer for the model (its default one for names it does
    not know); a prompt it cannot count is 0, the answer's tokens are never nothing."""
    return _prompt_count(model, messages), _text_count(model, text)


# A reported answer count under this share of LiteLLM's count of the delivered text is no figure: no tokenizer
# packs text four times as densely as LiteLLM's (tiktoken's) does.
PLAUSIBLE_SHARE = 0.25
# LiteLLM's count is only taken (0.1-0.4 ms of CPU for a 300-token answer) for a count under this share of the
# text's bytes: prose runs at about 4 bytes a token, so nearly every real figure is above it, while the figures
# streams lose (0, or message_start's placeholder 1) are far below it.
SUSPECT_SHARE_OF_BYTES = 1 / 16


def checked_usage(reported: dict[str, int], kwargs: dict[str, Any], response: Any) -> dict[str, int]:
    """The usage to record for a logged answer: the provider's figures, each one that is missing replaced by
    LiteLLM's count. Missing: a prompt of 0 tokens when there was a prompt, or an answer reported at under
    PLAUSIBLE_SHARE of the tokens its text holds. Streams lose their figures: one opened without
    `include_usage` (LiteLLM asks for it only where it knows the deployment supports it) reports 0 / 0; an
    Anthropic-protocol stream whose message_delta carries no usage leaves message_start's output_tokens (1);
    one whose message_start has none either reports 0 prompt tokens. A paid answer is never recorded as free.
    An answer count is questioned (and LiteLLM's tokenizer run) only under SUSPECT_SHARE_OF_BYTES of its text's
    bytes: the hook runs on every answer."""
    prompt, completion = reported["prompt_tokens"], reported["completion_tokens"]
    messages = list(kwargs.get("messages") or [])
    if kwargs.get("system") and not any(isinstance(m, dict) and m.get("role") == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": kwargs["system"]})  # the Messages API's, beside them
    text = _answer_text(response)
    no_prompt = prompt <= 0 and bool(messages)
    maybe_low = bool(text) and completion < len(text.encode()) * SUSPECT_SHARE_OF_BYTES
    if not (no_prompt or maybe_low):
        return reported
    model = str(kwargs.get("model") or "")
    counted = _text_count(model, text) if maybe_low else 0
    usage = {
        "prompt_tokens": _prompt_count(model, messages) if no_prompt else prompt,
        "completion_tokens": counted if completion < counted * PLAUSIBLE_SHARE else completion,
    }
    if usage != reported:
        log.warning(
            "%s reported %d in, %d out: a figure is missing; recorded %d in, %d out (LiteLLM's count in its place)",
            model,
            prompt,
            completion,
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    return usage


def prompt_only_usage(model: str, messages: list[Any]) -> dict[str, int]:
    """Tokens of a call whose provider's response broke off before any of its answer reached the proxy: the
    provider bills the prompt (LiteLLM's count); what it may have sent is not known, so no answer tokens."""
    return {"prompt_tokens": _prompt_count(model, messages), "completion_tokens": 0}


def delivered_usage(chunks: list[Any], call_type: str, model: str, messages: list[Any]) -> dict[str, int]:
    """Tokens of a stream that broke off (or was abandoned by its client) after its provider began answering:
    the provider bills the prompt and what it had sent. The prompt as the provider reported it when the stream
    opened (Anthropic's message_start; any usage the stream carried), else LiteLLM's count. The answer as the
    provider counted it when its last report came after every word relayed (`_final_answer_count`), else by
    LiteLLM's count of the answer so far (text and tool-call arguments)."""
    items = list(_stream_items(chunks))
    reported: dict[str, int] = {}
    reader = _StreamReader()
    deltas: list[str] = []
    for item in items:
        kind = event_type(item)
        # Read as a whole answer's usage is: Anthropic's input_tokens leave out the prompt read from or written to
        # its cache, reported beside them (message_start), and billed all the same.
        usage = _item_usage(item, kind)
        for key, value in (usage_of({"usage": usage}) or {}).items() if usage is not None else ():
            # A 0 is no figure: LiteLLM's Anthropic adapter opens an OpenAI model's stream with input_tokens 0.
            if value > reported.get(key, 0):
                reported[key] = value
        if call_type in RESPONSES_CALLS:
            if kind.endswith(".delta"):  # response.output_text.delta, function_call_arguments.delta
                deltas.append(str(get_field(item, "delta") or ""))
        elif get_field(item, "choices") is None and kind:
            reader.anthropic_event(item)
        else:
            reader.openai_chunk(item)
    answer = reader.answer()
    calls = [t.get("function") or t for t in answer.tool_calls or []]  # OpenAI nests name and arguments
    args = [c.get("arguments") or c.get("input") or "" for c in calls]
    text = " ".join(
        ["".join(deltas), answer.text]
        + [str(c.get("name") or "") for c in calls]
        + [a if isinstance(a, str) else json.dumps(a) for a in args]
    ).strip()
    prompt, completion = _token_counts(model, messages, text)
    final = _final_answer_count(items)
    cache = {k: v for k, v in reported.items() if k.startswith("cache_")}  # billed above / below the input price
    return {
        "prompt_tokens": reported.get("prompt_tokens", prompt),
        "completion_tokens": (
            final
            if final is not None and final >= completion * PLAUSIBLE_SHARE
            else max(completion, reported.get("completion_tokens", 0))
        ),
        **cache,
    }


def _item_usage(item: Any, kind: str) -> Any:
    """The usage a stream item carries: Anthropic's message_start and the Responses API's closing events nest it."""
    if kind == "message_start":
        return get_field(get_field(item, "message"), "usage")
    if kind in _RESPONSE_ENDS:
        return get_field(get_field(item, "response"), "usage")
    return get_field(item, "usage")


def _final_answer_count(items: list[Any]) -> int | None:
    """The provider's own count of the answer it sent, when a usage report came after every part of the answer
    (OpenAI's usage chunk, Anthropic's message_delta, the Responses API's response.completed: a stream left
    between that report and its end), else None. A report the answer went on after (message_start's placeholder
    output_tokens of 1) counts only what came before it."""
    final: int | None = None
    for item in items:
        if carries_answer(item):
            final = None
        usage = _item_usage(item, event_type(item))
        for name in ("completion_tokens", "output_tokens"):
            value = get_field(usage, name) if usage is not None else None
            if isinstance(value, int) and not isinstance(value, bool):
                final = value
                break
    return final


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def cache_tokens_of(response: Any) -> dict[str, int]:
    """Prompt tokens the provider wrote to (`cache_write_tokens`) and read from (`cache_read_tokens`) its cache for
    this answer, those it reported: both are in the prompt count, billed above and below the input price.
    Writes: Anthropic's cache_creation_input_tokens, on its own usage and on LiteLLM's, and the Responses API's
    input_tokens_details.cache_write_tokens. Reads: Anthropic's
    cache_read_input_tokens; OpenAI's prompt_tokens_details.cached_tokens (LiteLLM puts Anthropic's and DeepSeek's
    prompt_cache_hit_tokens there too); the Responses API's input_tokens_details.cached_tokens. `cache_write_1h_tokens`:
    of the writes, those for Anthropic's one-hour TTL, when the provider said."""
    usage = get_field(response, "usage")
    if usage is None:
        return {}
    reads = _count(get_field(usage, "cache_read_input_tokens"))
    for details in ("prompt_tokens_details", "input_tokens_details"):
        reads = reads or _count(get_field(get_field(usage, details), "cached_tokens"))
    # Writes: LiteLLM's Responses usage carries Anthropic's as input_tokens_details.cache_write_tokens (non-streamed).
    writes = _count(get_field(usage, "cache_creation_input_tokens")) or _count(
        get_field(get_field(usage, "input_tokens_details"), "cache_write_tokens")
    )
    counts = {"cache_write_tokens": writes, "cache_read_tokens": reads}
    out = {k: v for k, v in counts.items() if v}
    # Anthropic's split of the writes by TTL (a request may mix one-hour and five-minute breakpoints), on its own usage
    # and on LiteLLM's (in prompt_tokens_details): `cache_write_1h_tokens`, kept when 0 (all the five minutes').
    split = (
        get_field(usage, "cache_creation")
        or get_field(usage, "cache_creation_token_details")
        or get_field(get_field(usage, "prompt_tokens_details"), "cache_creation_token_details")
    )
    hour = get_field(split, "ephemeral_1h_input_tokens") if split is not None else None
    if out.get("cache_write_tokens") and isinstance(hour, int) and not isinstance(hour, bool):
        out["cache_write_1h_tokens"] = min(max(hour, 0), out["cache_write_tokens"])
    return out


def usage_of(response: Any) -> dict[str, int] | None:
    """prompt/completion tokens of a finished response: OpenAI objects, embeddings, or Anthropic dicts."""
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return None
    get: Callable[[str], Any] = lambda k: get_field(usage, k)  # noqa: E731
    prompt = get("prompt_tokens")
    if prompt is None:
        prompt = get("input_tokens")
        # Anthropic's input_tokens leave out the prompt it wrote to or read from its cache (billed as well).
        cached = sum(int(get(k) or 0) for k in ("cache_creation_input_tokens", "cache_read_input_tokens"))
        if cached:
            prompt = int(prompt or 0) + cached
    completion = get("completion_tokens")
    if completion is None:
        completion = get("output_tokens")
    if prompt is None and completion is None:
        return None
    usage_out = {"prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0)}
    return {**usage_out, **cache_tokens_of(response)}
