"""Small fake cloud providers on 127.0.0.1 speaking the real wire protocols.

- OpenAI chat completions (also what DeepSeek speaks): POST /v1/chat/completions
  and /chat/completions, streamed (SSE chunks, `[DONE]`, usage when asked) or not.
- Anthropic Messages: POST /v1/messages, streamed (message_start ... message_stop
  events) or not.
- OpenAI only: the Responses API, POST /v1/responses (what LiteLLM sends `openai/gpt-4o`
  Responses calls to; streamed as response.created ... response.completed events; `background: true`
  answered at once as queued, without usage, and billed in full as OpenAI bills it), and text
  completions, POST /v1/completions (streamed `text_completion` chunks, `[DONE]`).

They count tokens (one token per whitespace-separated word, the same rule for
prompt and answer, so tests can recompute the bill) and bill as the real APIs do:
tool definitions are input (their JSON's words here), so are the Responses API's
`instructions`, and each of OpenAI's `n` choices (per prompt, for text completions) is output. They record every request (path,
headers, JSON body), and can be scripted to answer with given text, an HTTP error,
or a delay. Cloud providers cannot be reached from the test machines; the proxy
reaches these through its configurable API bases.

Tools and JSON output (what real clients such as LangChain, the Agents SDK and Claude Code
need): a request whose `tool_choice` forces a tool (OpenAI "required" or a named function,
Anthropic "any" or a named tool), or a `Scripted(tool=...)` step, is answered with a tool call
(OpenAI `tool_calls`, a Responses `function_call` output item, Anthropic `tool_use`; streamed or
not) whose arguments fit the tool's JSON schema, unless the conversation already holds a tool
result (the model then answers in text, so agent loops end). `response_format` json_object /
json_schema (the Responses API's `text.format`, Anthropic `output_format`) get a JSON text valid
for the schema. The bill keeps the one rule: a tool call's completion
tokens are the words of "name arguments-JSON".

Faults (`FakeProvider(..., faults=Faults(rate_429=..., rate_cut=...))`, or scripted one at a time with
`Scripted(hang_s=..., chunk_delay_s=..., cut_after_words=...)`): 429s, 5xx, timeouts (the answer is held
until the caller gives up), slow streams and streams whose connection drops mid-answer. The bill stays a
provider's: what was delivered is billed (an error or an abandoned hang nothing, a cut-off or abandoned
stream its prompt and the answer words it sent); each request's body says what it met under `_fault`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

# The most output each real model accepts (its provider's documented ceiling): a request for more is refused with
# a 400 in the provider's own words, before any token is billed.
OUTPUT_CEILINGS = {"claude-sonnet-4-5": 64000, "deepseek-chat": 8192, "gpt-4o": 16384}


def too_much_output(body: dict[str, Any], messages_api: bool) -> Response | None:
    """The provider's 400 for an output allowance above the model's ceiling (or, on Anthropic's API, not above the
    extended-thinking budget, or a budget under Anthropic's least, 1,024), else None."""
    ceiling = OUTPUT_CEILINGS.get(str(body.get("model", "")))
    asked = [
        (k, v)
        for k in ("max_tokens", "max_completion_tokens", "max_output_tokens")
        if isinstance(v := body.get(k), int)
    ]
    over = [(k, v) for k, v in asked if ceiling is not None and v > ceiling]
    thinking = body.get("thinking")
    budget = thinking.get("budget_tokens") if isinstance(thinking, dict) else None
    max_tokens = body.get("max_tokens")
    if messages_api and isinstance(budget, int) and budget < 1024:
        message = "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
        return JSONResponse(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status_code=400
        )
    if messages_api and isinstance(budget, int) and isinstance(max_tokens, int) and budget >= max_tokens:
        message = "`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our documentation"
        return JSONResponse(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status_code=400
        )
    if not over:
        return None
    field_name, tokens = over[0]
    if messages_api:
        message = f"{field_name}: {tokens} > {ceiling}, which is the maximum allowed number of output tokens for {body['model']}"
        return JSONResponse(
            {"type": "error", "error": {"type": "invalid_request_error", "message": message}}, status_code=400
        )
    message = f"{field_name} is too large: {tokens}. This model supports at most {ceiling} completion tokens."
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": field_name, "code": "invalid_value"}},
        status_code=400,
    )


def count_tokens(text: str) -> int:
    return len(text.split())


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def prompt_tokens(body: dict[str, Any]) -> int:
    n = sum(count_tokens(_content_text(m.get("content"))) for m in body.get("messages") or [])
    system = body.get("system")
    if isinstance(system, (str, list)):
        n += count_tokens(_content_text(system))
    if body.get("tools"):
        n += count_tokens(json.dumps(body["tools"]))
    return n


def choices(body: dict[str, Any]) -> int:
    return max(1, int(body.get("n") or 1))


def _input_items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The Responses API's `input`: a string is one user message."""
    raw = body.get("input")
    if isinstance(raw, str):
        return [{"role": "user", "content": raw}]
    return [i for i in raw or [] if isinstance(i, dict)]


def responses_prompt_tokens(body: dict[str, Any]) -> int:
    """Words of the input texts (messages and tool outputs) + instructions + the tools' JSON."""
    n = 0
    for item in _input_items(body):
        if item.get("type") == "function_call_output":
            n += count_tokens(str(item.get("output") or ""))
        elif "content" in item:
            n += count_tokens(_content_text(item.get("content")))
    if isinstance(body.get("instructions"), str):
        n += count_tokens(body["instructions"])
    if body.get("tools"):
        n += count_tokens(json.dumps(body["tools"]))
    return n


def _prompts(body: dict[str, Any]) -> list[Any]:
    """Text completions' `prompt`: a string, token ids, or a list of either (one choice set per prompt)."""
    raw = body.get("prompt")
    if isinstance(raw, list) and raw and not all(isinstance(x, int) for x in raw):
        return raw
    return [raw if raw is not None else ""]


def completion_prompt_tokens(body: dict[str, Any]) -> int:
    """Words of each prompt string; a token-id prompt bills one token per id."""
    return sum(len(x) if isinstance(x, list) else count_tokens(str(x)) for x in _prompts(body))


def completion_choices(body: dict[str, Any]) -> int:
    return len(_prompts(body)) * choices(body)


@dataclass
class Scripted:
    """One scripted reply: text, or an HTTP error status, optionally after a delay."""

    text: str | None = None
    status: int = 200
    delay_s: float = 0.0
    tool: str | None = None  # answer with a call to this tool (its arguments fit its schema)
    # Fault injection (see Faults): hold the answer this long, giving up unbilled if the client leaves first
    # (a provider timeout); pause before each streamed chunk (a slow stream); drop the connection after this
    # many answer words of a streamed text answer (a cut-off stream).
    hang_s: float = 0.0
    chunk_delay_s: float = 0.0
    cut_after_words: int | None = None
    # What a streamed answer reports of its usage (the bill stays the same): "all"; "start", only Anthropic's
    # message_start (its message_delta carries no usage, as some Anthropic-protocol gateways send it); "none";
    # "cumulative", Anthropic's message_delta repeating message_start's input and cache counts beside output_tokens
    # (each a cumulative total, as the current Messages API reports them: not to be added to message_start's).
    stream_usage: str = "all"
    # Anthropic prompt caching: this many of the prompt's tokens were written to / read from the cache. Anthropic
    # then reports them as cache_creation_input_tokens / cache_read_input_tokens, outside input_tokens, and bills
    # them at 1.25x / 0.1x the input price (the body's `_cache_write_tokens` / `_cache_read_tokens`); writes for a
    # cache_control `ttl` of "1h" at 2x (reported under cache_creation.ephemeral_1h_input_tokens, `_cache_write_ttl`).
    # On the OpenAI protocol only reads exist (caching is automatic): OpenAI reports them as
    # prompt_tokens_details.cached_tokens (Responses: input_tokens_details), billed at 0.5x for gpt-4o; DeepSeek as
    # prompt_cache_hit_tokens beside prompt_cache_miss_tokens, billed at its cache-hit price. Both inside the prompt.
    cache_write: int = 0
    cache_read: int = 0
    # Of cache_write, this many were written for the one-hour TTL and the rest for five minutes, as Anthropic splits
    # the writes of a request whose cache_control breakpoints mix TTLs (`_cache_write_1h_tokens`); None: every write
    # for the TTL the request asks.
    cache_write_1h: int | None = None


def openai_cache_usage(kind: str, body: dict[str, Any], p: int, reads: int) -> dict[str, Any]:
    """The usage fields an OpenAI-protocol provider reports for `reads` of the prompt's `p` tokens read from its
    cache (recorded in the body's `_cache_read_tokens` for the bill)."""
    if not reads:
        return {}
    body["_cache_read_tokens"] = reads
    if kind == "deepseek":
        return {"prompt_cache_hit_tokens": reads, "prompt_cache_miss_tokens": p - reads}
    return {"prompt_tokens_details": {"cached_tokens": reads}}


@dataclass
class Recorded:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeProvider:
    kind: str  # "openai", "anthropic", or "deepseek" (OpenAI chat + Anthropic Messages under /anthropic)
    default_text: str = "This is a fake cloud answer with several words in it."
    requests: list[Recorded] = field(default_factory=list)
    script: deque[Scripted] = field(default_factory=deque)
    port: int = 0
    faults: Faults | None = None  # random faults for the requests nothing is scripted for
    # A request whose JSON body contains one of these texts gets its step (before the script and the faults).
    by_marker: dict[str, Scripted] = field(default_factory=dict)
    # Seconds an idle client connection stays open (uvicorn's default). A benchmark that leaves a proxy idle
    # between rounds sets it long: LiteLLM's pooled connection would otherwise be closed under it, and the
    # next request would fail over to a fallback model ("Server disconnected").
    keep_alive_s: float = 5.0
    _server: uvicorn.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stream_steps: dict[int, Scripted] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.script.clear()

    def push(self, *items: Scripted) -> None:
        with self._lock:
            self.script.extend(items)

    def billed_tokens(self) -> tuple[int, int]:
        """(prompt, completion) tokens of every successful answer, by our counting rule."""
        with self._lock:
            recs = list(self.requests)
        return sum(r.body.get("_prompt_tokens", 0) for r in recs), sum(
            r.body.get("_completion_tokens", 0) for r in recs
        )

    def _next(self) -> Scripted:
        with self._lock:
            if self.script:
                return self.script.popleft()
        return self._draw_fault()

    async def _receive(self, request: Request) -> tuple[dict[str, Any], Scripted] | Response:
        """Parse, record, and take the next scripted step (after its delay); a Response if the JSON is bad, the
        step is an error status, or the client left a hung request."""
        raw = await request.body()
        try:
            body = json.loads(raw)
        except ValueError:
            return JSONResponse({"error": {"message": "bad json"}}, status_code=400)
        rec = Recorded(request.url.path, {k.lower(): v for k, v in request.headers.items()}, body)
        with self._lock:
            self.requests.append(rec)
        refused = too_much_output(body, request.url.path.endswith("/messages"))
        if refused is not None:
            return refused
        marked = [v for k, v in self.by_marker.items() if k in raw.decode(errors="replace")]
        step = marked[0] if marked else self._next()
        if step.delay_s:
            await asyncio.sleep(step.delay_s)
        got = await self._apply_fault(request, body, step)
        if isinstance(got, tuple) and step.status != 200:
            return self._error(step.status, request.url.path.endswith("/messages"))
        return got

    async def _handle(self, request: Request) -> Response:
        got = await self._receive(request)
        if isinstance(got, Response):
            return got
        body, step = got
        messages_api = request.url.path.endswith("/messages")
        text = step.text if step.text is not None else structured_text(body) or self.default_text
        call = tool_call_for(body, step.tool)
        if call is not None:
            return self._tool_answer(body, call, messages_api)
        p, c = prompt_tokens(body), count_tokens(text)
        if messages_api:
            body["_prompt_tokens"], body["_completion_tokens"] = p, c
            return self._anthropic(body, text, p, c, step)
        body["_prompt_tokens"], body["_completion_tokens"] = p, c * choices(body)
        return self._openai(body, text, p, c, step.cache_read)

    def _error(self, status: int, messages_api: bool) -> Response:
        if messages_api:
            kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
            return JSONResponse(
                {"type": "error", "error": {"type": kind, "message": f"fake error {status}"}}, status_code=status
            )
        return JSONResponse(
            {"error": {"message": f"fake error {status}", "type": "server_error", "code": status}}, status_code=status
        )

    def _openai(self, body: dict[str, Any], text: str, p: int, c: int, cache_read: int = 0) -> Response:
        head, n = openai_head("chatcmpl-", "chat.completion", body), choices(body)
        usage = {"prompt_tokens": p, "completion_tokens": c * n, "total_tokens": p + c * n}
        usage.update(openai_cache_usage(self.kind, body, p, cache_read))
        if not body.get("stream"):
            message = {"role": "assistant", "content": text}
            return JSONResponse(
                {
                    **head,
                    "choices": [{"index": i, "message": message, "finish_reason": "stop"} for i in range(n)],
                    "usage": usage,
                }
            )
        first = {"role": "assistant", "content": ""}
        deltas = [{"content": w + " "} for w in text.split(" ")]
        chunk_head = {**head, "object": "chat.completion.chunk"}
        events = openai_stream(body, chunk_head, usage, n, lambda i: chat_choice_chunks(i, first, deltas, "stop"))
        return self._sse(events, body)

    def _anthropic(self, body: dict[str, Any], text: str, p: int, c: int, step: Scripted | None = None) -> Response:
        mid, model = "msg_" + uuid.uuid4().hex[:24], body.get("model", "fake")
        cache: dict[str, Any] = {}
        uncached = p
        if step is not None and (step.cache_write or step.cache_read):
            body["_cache_write_tokens"], body["_cache_read_tokens"] = step.cache_write, step.cache_read
            # Written for the TTL the request's cache_control asks ("1h": billed at 2x the input price, not 1.25x).
            ttl = body["_cache_write_ttl"] = "1h" if '"ttl": "1h"' in json.dumps(body) else "5m"
            split = {f"ephemeral_{t}_input_tokens": step.cache_write if t == ttl else 0 for t in ("5m", "1h")}
            if step.cache_write_1h is not None:
                body["_cache_write_1h_tokens"] = hour = step.cache_write_1h
                split = {"ephemeral_5m_input_tokens": step.cache_write - hour, "ephemeral_1h_input_tokens": hour}
            cache = {
                "cache_creation_input_tokens": step.cache_write,
                "cache_read_input_tokens": step.cache_read,
                "cache_creation": split,
            }
            uncached = p - step.cache_write - step.cache_read
        if not body.get("stream"):
            usage = {"input_tokens": uncached, "output_tokens": c, **cache}
            return JSONResponse(anthropic_message(mid, model, [{"type": "text", "text": text}], "end_turn", usage))
        deltas = [{"type": "text_delta", "text": w + " "} for w in text.split(" ")]
        cumulative = step is not None and step.stream_usage == "cumulative"
        events = anthropic_stream(
            mid, model, uncached, c, {"type": "text", "text": ""}, deltas, "end_turn", cache, cumulative
        )
        return self._sse(events, body)

    # --- tool calls (kept apart from the text paths above) ---

    def _tool_answer(self, body: dict[str, Any], call: ToolCall, messages_api: bool) -> Response:
        p, c = prompt_tokens(body), count_tokens(call.billed_text())
        body["_prompt_tokens"] = p
        if messages_api:
            body["_completion_tokens"] = c
            return self._anthropic_tool(body, call, p, c)
        body["_completion_tokens"] = c * choices(body)
        return self._openai_tool(body, call, p, c)

    def _openai_tool(self, body: dict[str, Any], call: ToolCall, p: int, c: int) -> Response:
        head, n = openai_head("chatcmpl-", "chat.completion", body), choices(body)
        usage = {"prompt_tokens": p, "completion_tokens": c * n, "total_tokens": p + c * n}
        fn = {"name": call.name, "arguments": call.arguments}
        if not body.get("stream"):
            msg = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": call.id, "type": "function", "function": fn}],
            }
            return JSONResponse(
                {
                    **head,
                    "choices": [{"index": i, "message": msg, "finish_reason": "tool_calls"} for i in range(n)],
                    "usage": usage,
                }
            )
        opening = {"index": 0, "id": call.id, "type": "function", "function": {"name": call.name, "arguments": ""}}
        first = {"role": "assistant", "content": None, "tool_calls": [opening]}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": piece}}]} for piece in call.pieces()]
        chunk_head = {**head, "object": "chat.completion.chunk"}
        events = openai_stream(body, chunk_head, usage, n, lambda i: chat_choice_chunks(i, first, deltas, "tool_calls"))
        return self._sse(events, body, text=False)

    def _anthropic_tool(self, body: dict[str, Any], call: ToolCall, p: int, c: int) -> Response:
        mid, model = "msg_" + uuid.uuid4().hex[:24], body.get("model", "fake")
        tid = "toolu_" + call.id.removeprefix("call_")
        if not body.get("stream"):
            content = [{"type": "tool_use", "id": tid, "name": call.name, "input": call.input}]
            usage = {"input_tokens": p, "output_tokens": c}
            return JSONResponse(anthropic_message(mid, model, content, "tool_use", usage))
        block = {"type": "tool_use", "id": tid, "name": call.name, "input": {}}
        deltas = [{"type": "input_json_delta", "partial_json": piece} for piece in call.pieces()]
        return self._sse(anthropic_stream(mid, model, p, c, block, deltas, "tool_use"), body, text=False)

    # --- OpenAI Responses API (POST /v1/responses), kept apart from chat ---

    async def _handle_responses(self, request: Request) -> Response:
        got = await self._receive(request)
        if isinstance(got, Response):
            return got
        body, step = got
        p = responses_prompt_tokens(body)
        call = tool_call_for(body, step.tool)
        if call is not None:
            item: dict[str, Any] = {
                "type": "function_call",
                "id": "fc_" + call.id.removeprefix("call_"),
                "call_id": call.id,
                "name": call.name,
                "arguments": call.arguments,
                "status": "completed",
            }
            c = count_tokens(call.billed_text())
        else:
            text = step.text if step.text is not None else structured_text(body) or self.default_text
            item = {
                "type": "message",
                "id": "msg_" + uuid.uuid4().hex,
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
            }
            c = count_tokens(text)
        body["_prompt_tokens"], body["_completion_tokens"] = p, c
        if step.cache_read:
            body["_cache_read_tokens"] = step.cache_read
        usage = {
            "input_tokens": p,
            "input_tokens_details": {"cached_tokens": step.cache_read},
            "output_tokens": c,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": p + c,
        }
        resp = _response_object(body, "resp_" + uuid.uuid4().hex)
        if body.get("background") and not body.get("stream"):
            # OpenAI answers a background request at once (queued, no output, no usage) and generates (and bills)
            # the answer afterwards, for GET /v1/responses/{id}.
            return JSONResponse({**resp, "status": "queued", "background": True, "output": [], "usage": None})
        if not body.get("stream"):
            return JSONResponse({**resp, "status": "completed", "output": [item], "usage": usage})
        return self._sse(self._responses_events(resp, item, usage, call), body, text=call is None)

    async def _responses_events(
        self, resp: dict[str, Any], item: dict[str, Any], usage: dict[str, Any], call: ToolCall | None
    ):
        """The Responses API's SSE events for one output item (a message or a function call)."""
        seq = iter(range(1_000_000))

        def ev(event: str, **data: Any) -> str:
            return f"event: {event}\ndata: {json.dumps({'type': event, 'sequence_number': next(seq), **data})}\n\n"

        iid = item["id"]
        yield ev("response.created", response={**resp, "status": "in_progress", "output": [], "usage": None})
        yield ev("response.in_progress", response={**resp, "status": "in_progress", "output": [], "usage": None})
        if call is not None:
            yield ev(
                "response.output_item.added", output_index=0, item={**item, "arguments": "", "status": "in_progress"}
            )
            for piece in call.pieces():
                yield ev("response.function_call_arguments.delta", item_id=iid, output_index=0, delta=piece)
            yield ev(
                "response.function_call_arguments.done",
                item_id=iid,
                output_index=0,
                name=call.name,
                arguments=call.arguments,
            )
        else:
            text = item["content"][0]["text"]
            yield ev(
                "response.output_item.added", output_index=0, item={**item, "content": [], "status": "in_progress"}
            )
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            yield ev("response.content_part.added", item_id=iid, output_index=0, content_index=0, part=part)
            words = text.split(" ")
            for i, w in enumerate(words):
                delta = w if i == len(words) - 1 else w + " "
                yield ev(
                    "response.output_text.delta", item_id=iid, output_index=0, content_index=0, delta=delta, logprobs=[]
                )
            yield ev("response.output_text.done", item_id=iid, output_index=0, content_index=0, text=text, logprobs=[])
            yield ev(
                "response.content_part.done", item_id=iid, output_index=0, content_index=0, part={**part, "text": text}
            )
        yield ev("response.output_item.done", output_index=0, item=item)
        yield ev("response.completed", response={**resp, "status": "completed", "output": [item], "usage": usage})

    # --- OpenAI text completions (POST /v1/completions), kept apart from chat ---

    async def _handle_completions(self, request: Request) -> Response:
        got = await self._receive(request)
        if isinstance(got, Response):
            return got
        body, step = got
        head, k = openai_head("cmpl-", "text_completion", body), completion_choices(body)
        text = step.text if step.text is not None else self.default_text
        p, c = completion_prompt_tokens(body), count_tokens(text)
        body["_prompt_tokens"], body["_completion_tokens"] = p, c * k
        usage = {"prompt_tokens": p, "completion_tokens": c * k, "total_tokens": p + c * k}
        if not body.get("stream"):
            return JSONResponse(
                {
                    **head,
                    "choices": [
                        {"index": i, "text": text, "logprobs": None, "finish_reason": "stop"} for i in range(k)
                    ],
                    "usage": usage,
                }
            )

        def choice_chunks(i: int) -> list[dict[str, Any]]:
            pieces = [(" " + w, None) for w in text.split(" ")] + [("", "stop")]
            return [{"index": i, "text": t, "logprobs": None, "finish_reason": f} for t, f in pieces]

        return self._sse(openai_stream(body, head, usage, k, choice_chunks), body)

    # --- fault injection (Faults): what a provider under stress does, billed as a provider bills ---

    def _draw_fault(self) -> Scripted:
        """The step for a request nothing is scripted for: a normal answer, or one of `faults` at its rate."""
        f = self.faults
        if f is None:
            return Scripted()
        with self._lock:
            x, status = f.rng.random(), f.rng.choice(f.error_statuses)
        for rate, step in (
            (f.rate_429, Scripted(status=429)),
            (f.rate_5xx, Scripted(status=status)),
            (f.rate_timeout, Scripted(hang_s=f.hang_s)),
            (f.rate_slow, Scripted(chunk_delay_s=f.slow_chunk_s)),
            (f.rate_cut, Scripted(cut_after_words=f.cut_after_words)),
        ):
            if x < rate:
                return step
            x -= rate
        return Scripted()

    async def _apply_fault(
        self, request: Request, body: dict[str, Any], step: Scripted
    ) -> tuple[dict[str, Any], Scripted] | Response:
        """Label the request with the fault it meets; a hung request whose client left is answered to nobody,
        unbilled. A stream's slow or cut-off step is kept for `_sse`."""
        body["_received_at"] = time.time()
        if step.status != 200:
            body["_fault"] = str(step.status)
        if step.hang_s:
            body["_fault"] = "timeout"
            deadline = time.monotonic() + step.hang_s
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    body["_finished_at"] = time.time()
                    return Response(status_code=504)  # the caller timed out: nothing was delivered, nothing billed
                await asyncio.sleep(0.05)
            body["_fault"] = "slow-first-byte"  # held past the hang and the caller still waited: answered, billed
        if step.chunk_delay_s or step.cut_after_words is not None or step.stream_usage != "all":
            with self._lock:
                self._stream_steps[id(body)] = step
        if not body.get("stream"):
            body["_finished_at"] = time.time()
        return body, step

    def _sse(self, events: Any, body: dict[str, Any], text: bool = True) -> StreamingResponse:
        """An SSE answer, slowed or cut off as its step says. A cut drops the connection (no terminating chunk,
        as when a provider's connection breaks) after `cut_after_words` answer words; the provider then bills
        the prompt and the words it sent (tool-call streams are never cut: their billed text is not per event)."""
        with self._lock:
            step = self._stream_steps.pop(id(body), None)

        async def gen():
            sent, done = 0, False
            try:
                async for event in events:
                    if step is not None and step.chunk_delay_s:
                        body["_fault"] = "slow"
                        await asyncio.sleep(step.chunk_delay_s)
                    words = _answer_words(event) if text else 0
                    if (
                        step is not None
                        and text
                        and step.cut_after_words is not None
                        and sent + words > step.cut_after_words
                    ):
                        body["_fault"], body["_completion_tokens"], done = "cut", sent, True
                        raise StreamCutOff(f"cut off after {sent} answer words")
                    sent += words
                    if step is not None and step.stream_usage in ("start", "none"):
                        event = _without_usage(event, keep_start=step.stream_usage == "start")
                    if event:
                        yield event
                done = True
            finally:
                body["_finished_at"] = time.time()
                if not done and text and "_completion_tokens" in body:  # the caller hung up: bill what was sent
                    body["_fault"], body["_completion_tokens"] = "abandoned", sent

        return StreamingResponse(gen(), media_type="text/event-stream")

    def app(self) -> Starlette:
        paths = {
            "anthropic": ["/v1/messages"],
            "openai": ["/v1/chat/completions", "/chat/completions"],
            # DeepSeek serves both protocols; LiteLLM sends /v1/messages traffic to /anthropic/v1/messages.
            "deepseek": ["/v1/chat/completions", "/chat/completions", "/anthropic/v1/messages"],
        }[self.kind]
        routes = [Route(p, self._handle, methods=["POST"]) for p in paths]
        if self.kind == "openai":
            routes += [Route(p, self._handle_responses, methods=["POST"]) for p in ("/v1/responses", "/responses")]
            routes += [
                Route(p, self._handle_completions, methods=["POST"]) for p in ("/v1/completions", "/completions")
            ]
        return Starlette(routes=routes)

    def start(self) -> FakeProvider:
        _quiet_cut_offs()
        self.port = free_port()
        config = uvicorn.Config(
            self.app(),
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="off",
            timeout_keep_alive=int(self.keep_alive_s),
        )
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True).start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("fake provider did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server:
            self._server.should_exit = True


# --- wire formats shared by the text and the tool-call answers (and by tests' own fakes) ---


def sse_data(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload)}\n\n"


def sse_event(name: str, payload: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(payload)}\n\n"


def openai_head(id_prefix: str, obj: str, body: dict[str, Any]) -> dict[str, Any]:
    """The fields every OpenAI chat / text completion object (and each of its stream chunks) starts with."""
    return {
        "id": id_prefix + uuid.uuid4().hex,
        "object": obj,
        "created": int(time.time()),
        "model": body.get("model", "fake"),
    }


def chat_choice_chunks(
    index: int, first: dict[str, Any], deltas: list[dict[str, Any]], finish: str
) -> list[dict[str, Any]]:
    """One streamed chat choice: its opening delta, the answer's deltas, then an empty delta with the finish."""
    steps = [(first, None), *((d, None) for d in deltas), ({}, finish)]
    return [{"index": index, "delta": d, "finish_reason": f} for d, f in steps]


async def openai_stream(
    body: dict[str, Any],
    head: dict[str, Any],
    usage: dict[str, Any],
    n: int,
    choice_chunks: Callable[[int], list[dict[str, Any]]],
) -> AsyncIterator[str]:
    """An OpenAI SSE answer: each of the n choices' chunks, a usage chunk if `stream_options` asks, `[DONE]`."""
    for i in range(n):
        for choice in choice_chunks(i):
            yield sse_data({**head, "choices": [choice]})
    if (body.get("stream_options") or {}).get("include_usage"):
        yield sse_data({**head, "choices": [], "usage": usage})
    yield "data: [DONE]\n\n"


def anthropic_message(
    mid: str, model: Any, content: list[dict[str, Any]], stop_reason: str | None, usage: dict[str, int]
) -> dict[str, Any]:
    return {
        "id": mid,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


async def anthropic_stream(
    mid: str,
    model: Any,
    p: int,
    c: int,
    block: dict[str, Any],
    deltas: list[dict[str, Any]],
    stop_reason: str,
    cache: dict[str, Any] | None = None,
    cumulative: bool = False,
) -> AsyncIterator[str]:
    """A Messages API SSE answer of one content block (text or tool_use) streamed as its deltas. `p`: the
    uncached input tokens; `cache`: the prompt caching counts message_start reports beside them; `cumulative`:
    message_delta reports them again (cumulative totals, as the current API does) beside output_tokens."""
    start = anthropic_message(mid, model, [], None, {"input_tokens": p, "output_tokens": 1, **(cache or {})})
    yield sse_event("message_start", {"type": "message_start", "message": start})
    yield sse_event("content_block_start", {"type": "content_block_start", "index": 0, "content_block": block})
    for delta in deltas:
        yield sse_event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield sse_event("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield sse_event(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {**({"input_tokens": p, **(cache or {})} if cumulative else {}), "output_tokens": c},
        },
    )
    yield sse_event("message_stop", {"type": "message_stop"})


# --- fault injection ---


@dataclass
class Faults:
    """Faults a provider injects at random, each at its rate per unscripted request (seeded: a run replays).

    The bill stays a provider's: an error status or a timeout the caller gave up on bills nothing (nothing
    was delivered), a slow stream bills in full, a cut-off stream bills its prompt and the answer words sent
    before the connection dropped (what OpenAI and Anthropic charge for generated tokens a client never
    received in full). Each request's body records its fault under `_fault`.
    """

    rate_429: float = 0.0
    rate_5xx: float = 0.0
    rate_timeout: float = 0.0
    rate_slow: float = 0.0
    rate_cut: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    hang_s: float = 60.0  # a timeout holds the answer this long: set it above the caller's timeout
    slow_chunk_s: float = 0.2  # a slow stream pauses this long before each event
    cut_after_words: int = 2  # a cut-off stream drops the connection after this many answer words
    seed: int = 0
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class StreamCutOff(Exception):
    """Raised inside a streamed answer: uvicorn then drops the connection mid-body."""


class _NoCutOffTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], StreamCutOff))


def _quiet_cut_offs() -> None:
    """A cut-off is the point, not an error: keep uvicorn from logging its traceback."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _NoCutOffTracebacks) for f in logger.filters):
        logger.addFilter(_NoCutOffTracebacks())


def _answer_words(event: str) -> int:
    """Answer words (the billing unit) in one SSE event of any of the four streamed APIs."""
    n = 0
    for line in event.splitlines():
        if not line.startswith("data: ") or line == "data: [DONE]":
            continue
        d = json.loads(line[6:])
        if d.get("type") == "content_block_delta":  # Anthropic
            n += count_tokens(str((d.get("delta") or {}).get("text") or ""))
        elif d.get("type") == "response.output_text.delta":  # Responses API
            n += count_tokens(str(d.get("delta") or ""))
        for c in d.get("choices") or []:  # chat chunks (delta.content) and text completions (text)
            n += count_tokens(str((c.get("delta") or {}).get("content") or c.get("text") or ""))
    return n


def _without_usage(event: str, keep_start: bool) -> str:
    """One SSE event with the usage it reports taken out (message_start's kept if `keep_start`); an OpenAI
    chunk that carried only usage is dropped (empty string)."""
    lines = []
    for line in event.split("\n"):
        if line.startswith("data: ") and line != "data: [DONE]":
            d = json.loads(line[6:])
            if d.get("choices") == [] and "usage" in d:
                return ""
            if not (keep_start and d.get("type") == "message_start"):
                d.pop("usage", None)
                for inner in ("message", "response"):
                    if isinstance(d.get(inner), dict):
                        d[inner].pop("usage", None)
            line = "data: " + json.dumps(d)
        lines.append(line)
    return "\n".join(lines)


# --- tools and JSON output: what to answer ---


@dataclass
class ToolCall:
    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: "call_" + uuid.uuid4().hex[:24])

    @property
    def arguments(self) -> str:
        return json.dumps(self.input)

    def billed_text(self) -> str:
        return f"{self.name} {self.arguments}"

    def pieces(self) -> list[str]:
        """The arguments JSON in a few stream fragments (split mid-token, as real streams do)."""
        a = self.arguments
        step = max(1, len(a) // 3)
        return [a[i : i + step] for i in range(0, len(a), step)]


def _tools(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Tool name -> its JSON schema, for OpenAI (`function.parameters`) and Anthropic (`input_schema`) tools."""
    out: dict[str, dict[str, Any]] = {}
    for t in body.get("tools") or []:
        if not isinstance(t, dict):
            continue
        fn = t.get("function") if isinstance(t.get("function"), dict) else t
        if fn.get("name"):
            out[str(fn["name"])] = fn.get("parameters") or fn.get("input_schema") or {"type": "object"}
    return out


def _forced_tool(body: dict[str, Any], tools: dict[str, dict[str, Any]]) -> str | None:
    choice = body.get("tool_choice")
    if choice in ("required", "any"):
        return next(iter(tools), None)
    if isinstance(choice, dict):
        if choice.get("type") == "any":
            return next(iter(tools), None)
        name = choice.get("name") or (choice.get("function") or {}).get("name")
        if name in tools:
            return str(name)
    return None


def _has_tool_result(body: dict[str, Any]) -> bool:
    if any(i.get("type") == "function_call_output" for i in _input_items(body)):  # Responses API
        return True
    for m in body.get("messages") or []:
        if m.get("role") == "tool":
            return True
        content = m.get("content")
        if isinstance(content, list) and any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
            return True
    return False


def tool_call_for(body: dict[str, Any], scripted: str | None) -> ToolCall | None:
    """The tool call to answer with: a scripted one, or the one `tool_choice` forces before any tool result."""
    tools = _tools(body)
    name = scripted if scripted is not None else (None if _has_tool_result(body) else _forced_tool(body, tools))
    if name is None:
        return None
    return ToolCall(name, value_for_schema(tools.get(name, {"type": "object"}), tools.get(name, {})))


def structured_text(body: dict[str, Any]) -> str | None:
    """A JSON answer when the request asks for one (OpenAI response_format, the Responses API's
    text.format, Anthropic output_format)."""
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    fmt = (
        body.get("response_format")
        or text_cfg.get("format")
        or body.get("output_format")
        or (body.get("output_config") or {}).get("format")
    )
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return json.dumps({"answer": "a fake JSON answer"})
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema") or fmt.get("schema") or {"type": "object"}
        return json.dumps(value_for_schema(schema, schema))
    return None


def _response_object(body: dict[str, Any], rid: str) -> dict[str, Any]:
    """A Responses API `response` object echoing the request's settings (output and usage added by the caller)."""
    text_cfg = body.get("text") if isinstance(body.get("text"), dict) else {}
    return {
        "id": rid,
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": body.get("model", "fake"),
        "output": [],
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "metadata": body.get("metadata") or {},
        "max_output_tokens": body.get("max_output_tokens"),
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": {"format": text_cfg.get("format") or {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": body.get("truncation", "disabled"),
        "user": body.get("user"),
        "usage": None,
    }


def value_for_schema(schema: dict[str, Any], root: dict[str, Any], depth: int = 0) -> Any:
    """A small value valid for `schema` (the subset tools and structured outputs use)."""
    if depth > 8:
        return None
    if "$ref" in schema:
        ref = str(schema["$ref"])
        target: Any = root
        for part in ref.removeprefix("#/").split("/"):
            target = target.get(part, {}) if isinstance(target, dict) else {}
        return value_for_schema(target, root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema and schema["default"] is not None:
        return schema["default"]
    for key in ("anyOf", "oneOf", "allOf"):
        if schema.get(key):
            options = [o for o in schema[key] if o.get("type") != "null"] or schema[key]
            return value_for_schema(options[0], root, depth + 1)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties") or {}
        return {k: value_for_schema(v, root, depth + 1) for k, v in props.items()}
    if kind == "array":
        return [value_for_schema(schema.get("items") or {"type": "string"}, root, depth + 1)] * max(
            1, int(schema.get("minItems", 1))
        )
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "number":
        return float(schema.get("minimum", 1.5))
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    text = _FORMATS.get(str(schema.get("format")), "fake")
    return text.ljust(int(schema.get("minLength", 0)), "x")


_FORMATS = {
    "date-time": "2026-01-01T00:00:00Z",
    "date": "2026-01-01",
    "email": "fake@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def cloud_fakes(answer_suffix: str = "") -> Iterator[dict[str, FakeProvider]]:
    """A started fake of each cloud provider (keyed "openai", "deepseek", "anthropic" as the test config's
    API bases are), stopped after; each answers "Fake <model> answer<answer_suffix>." unless scripted."""
    p = {
        "openai": FakeProvider("openai", default_text=f"Fake GPT-4o answer{answer_suffix}.").start(),
        "deepseek": FakeProvider("deepseek", default_text=f"Fake DeepSeek answer{answer_suffix}.").start(),
        "anthropic": FakeProvider("anthropic", default_text=f"Fake Claude answer{answer_suffix}.").start(),
    }
    try:
        yield p
    finally:
        for fp in p.values():
            fp.stop()
