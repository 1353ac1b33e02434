"""The validate step: score a cheap tier's answer, then deliver, rephrase or escalate.

LiteLLM's fallbacks fire only on errors; this is the quality-gated cascade on top:
the answer of a validated tier is scored (policies/quality) before the client sees
it; a weak one is retried with a better prompt or sent up the tiers through
LiteLLM's router (so its retries, timeouts and cost map apply), each extra call
reserved against the budget and written to the ledger as a call of its own.

Streams from a validated tier are buffered, scored, then replayed (or replaced by
the escalated tier's stream): the client never sees half an answer from one model
followed by another. Streams from an unvalidated tier pass straight through.
"""
from __future__ import annotations

import asyncio
import codecs
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from policies.budget import hook_steps as budget
from policies.common.api_shapes import CHAT_CALLS, GENERATION_CALLS, MESSAGES_CALLS, RESPONSES_CALLS, TEXT_CALLS, chat_view
from policies.quality.bands import is_validated
from policies.quality.escalation import Step, best_attempt, next_step
from policies.quality.scorer import QualityVerdict, extract_logprobs
from policies.quality.signals import get_field
from proxy import fallbacks, metrics
from proxy.request_state import STATE_KEY, mark_accounted, usage_of

log = logging.getLogger("synqra.quality")

# The request fields proxy/shadow_eval.py copies into the request it scores (the scorer reads messages,
# response_format and tools). A rephrase / escalation carries every client parameter: see client_params.
CARRIED_PARAMS = (
    "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stop_sequences", "tools", "tool_choice",
    "response_format", "system", "seed", "user", "metadata_user",
)
# Set by the gate itself on every extra call: the tier, streaming (the buffered stream asks for its usage),
# and the metadata carrying synqra's state for that call.
GATE_PARAMS = frozenset({"model", "stream", "stream_options", "metadata", "litellm_metadata"})


@cache
def _litellm_keys() -> frozenset[str]:
    """Keys of LiteLLM's own in `data` (proxy bookkeeping, credentials, routing, callbacks): not the client's
    parameters to the model. Imported late: litellm is loaded in the proxy anyway, and only there."""
    from litellm.types.utils import all_litellm_params

    return frozenset(all_litellm_params)


def client_params(data: dict[str, Any], call_type: str) -> dict[str, Any]:
    """The client's request, messages included, as a rephrase / escalation call must repeat it: every
    parameter but the ones the gate sets and LiteLLM's own (call ids, proxy request, keys, "_"-internals).

    Call it before the gate adds anything to `data` (the logprobs it asks llama.cpp for). On /v1/messages
    and /v1/responses `metadata` is the client's own (synqra's state and LiteLLM's live in litellm_metadata):
    carried, without synqra's state should it have been put there.
    """
    own = _litellm_keys()
    out = {k: v for k, v in data.items() if k not in GATE_PARAMS and k not in own and not k.startswith("_")}
    md = data.get("metadata")
    if call_type in MESSAGES_CALLS | RESPONSES_CALLS and isinstance(md, dict):
        client_md = {k: v for k, v in md.items() if k != STATE_KEY}
        if client_md:
            out["metadata"] = client_md
    return out


@dataclass
class Answer:
    text: str
    finish_reason: str | None
    logprobs: list[float] | None
    tool_calls: list | None


@dataclass
class Attempt:
    tier: str
    response: Any
    verdict: QualityVerdict | None
    chunks: list[Any] = field(default_factory=list)  # a buffered stream


# --- reading answers out of the two API shapes ------------------------------------------------

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
    return Answer(str(get_field(choice, "text") or ""), get_field(choice, "finish_reason"),
                  [float(v) for v in values if v is not None] if values else None, None)


def responses_answer(response: Any) -> Answer:
    """A Responses API response: its output text, function calls (as OpenAI tool calls) and why it ended."""
    text: list[str] = []
    calls: list[dict[str, Any]] = []
    for item in get_field(response, "output") or []:
        kind = get_field(item, "type")
        if kind == "message":
            text += [str(get_field(c, "text") or "") for c in get_field(item, "content") or [] if get_field(c, "type") == "output_text"]
        elif kind == "function_call":
            calls.append({"id": get_field(item, "call_id"), "type": "function",
                          "function": {"name": get_field(item, "name"), "arguments": get_field(item, "arguments") or ""}})
    status = get_field(response, "status")
    reason = get_field(get_field(response, "incomplete_details"), "reason") if status == "incomplete" else None
    finish = "length" if reason == "max_output_tokens" else reason or ("tool_calls" if calls else "stop")
    return Answer("".join(text), finish, None, calls or None)


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
                self.tools[index] = {"type": "tool_use", "id": get_field(block, "id"), "name": get_field(block, "name"),
                                     "input": get_field(block, "input")}
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


_RESPONSE_ENDS = ("response.completed", "response.incomplete", "response.failed")


def stream_answer(chunks: list[Any], call_type: str = "acompletion") -> Answer:
    """Text, finish reason, logprobs and tool calls of a buffered stream: OpenAI chat or text completion chunks,
    Anthropic events, or Responses API events (whose last event carries the whole response)."""
    if call_type in RESPONSES_CALLS:
        ends = [get_field(e, "response") for e in _stream_items(chunks) if str(get_field(e, "type")) in _RESPONSE_ENDS
                or getattr(get_field(e, "type"), "value", None) in _RESPONSE_ENDS]
        return responses_answer(ends[-1]) if ends else Answer("", None, None, None)
    reader = _StreamReader()
    for item in _stream_items(chunks):
        if get_field(item, "choices") is None and get_field(item, "type"):
            reader.anthropic_event(item)
        else:
            reader.openai_chunk(item)
    return reader.answer()


# --- the cascade ------------------------------------------------------------------------------

def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    """Mark a shielded call's outcome as seen: its caller may have been cancelled meanwhile."""
    if not task.cancelled():
        task.exception()


class QualityGate:
    def __init__(self, runtime: Any) -> None:
        self.rt = runtime
        self.settings = runtime.config.synqra.quality
        self.tiers = runtime.config.synqra.routing.tiers

    def applies(self, state: dict[str, Any]) -> bool:
        return (bool(state.get("routed")) and state.get("call_type") in GENERATION_CALLS
                and is_validated(state["route"], self.settings, self.tiers))

    def prepare(self, state: dict[str, Any], data: dict[str, Any]) -> None:
        """Before the call: remember the client's request; ask llama.cpp for token logprobs."""
        call_type = state["call_type"]
        state["request"] = client_params(data, call_type)  # before the logprobs below: not the client's
        if state["route"] != self.rt.config.synqra.backends.llama.model_alias or data.get("logprobs") is not None:
            return
        if call_type in CHAT_CALLS:
            data["logprobs"] = True
            state["strip_logprobs"] = True
        elif call_type in TEXT_CALLS:
            data["logprobs"] = 0  # the completions API's form: the chosen tokens' logprobs, no alternatives
            state["strip_logprobs"] = True

    async def score(self, state: dict[str, Any], answer: Answer) -> QualityVerdict:
        request = chat_view(state["request"], state["call_type"])  # the scorer reads chat messages
        return await self.rt.quality.ascore(request, answer.text, answer.finish_reason, answer.logprobs, answer.tool_calls)

    async def _call(self, state: dict[str, Any], step: Step, n: int, stream: bool, leaves_local: bool) -> Attempt:
        """One extra call (rephrase or escalation) through LiteLLM's router, budgeted and recorded;
        a stream is read to its end (LiteLLM then logs its usage, which settles it)."""
        from litellm.proxy.proxy_server import llm_router

        call_type = state["call_type"]
        req = dict(state["request"])
        if step.messages is not None:
            req["messages"] = step.messages
        if step.system is not None:  # the rephrase instruction, where each API keeps its system prompt
            if call_type in RESPONSES_CALLS:
                req["instructions"] = step.system
            elif call_type in TEXT_CALLS and isinstance(req.get("prompt"), str):
                req["prompt"] = f"{step.system}\n\n{req['prompt']}"
            elif call_type in MESSAGES_CALLS:
                req["system"] = step.system
        child = {
            "request_id": f"{state['request_id']}:{n}",
            "parent_id": state["request_id"],
            "requested_model": state.get("requested_model", ""),
            "route": step.tier,
            "call_type": state["call_type"],
            "kind": "escalation",
            "key_hash": state.get("key_hash"),
            "user": state.get("user"),
            # Part of a client request already counted (its baseline too); the first paid call after
            # local answers takes the request out of the local share.
            "counts_request": False,
            "leaves_local": leaves_local,
        }
        data = {"model": step.tier, **req}
        await budget.admit(self.rt.budget, child, data, step.tier, self.rt.config.synqra.backends.llama.model_alias, routed=False)
        meta_key = "litellm_metadata" if call_type in MESSAGES_CALLS | RESPONSES_CALLS else "metadata"
        kwargs = {**req, "model": step.tier, meta_key: {"synqra": child}}
        try:
            if call_type in MESSAGES_CALLS:
                resp = await llm_router.aanthropic_messages(stream=stream, **kwargs)
            elif call_type in RESPONSES_CALLS:
                resp = await llm_router.aresponses(stream=stream, **kwargs)
            else:
                if stream:
                    kwargs["stream_options"] = {"include_usage": True}
                call = llm_router.atext_completion if call_type in TEXT_CALLS else llm_router.acompletion
                resp = await call(stream=stream, **kwargs)
            chunks = [c async for c in resp] if stream else []
        except BaseException:
            # Nothing answered: this call's reservation and those of LiteLLM fallbacks it tried go back
            # (an internal call gets no post-call failure hook to do it).
            await fallbacks.release_all(self.rt, child)
            raise
        served = step.tier
        if stream:  # settled when LiteLLM logs it; the deployment that opened it is known now
            served = fallbacks.served_group(self.rt, (getattr(resp, "_hidden_params", None) or {}).get("model_id")) or served
        else:
            usage = usage_of(resp)
            # A LiteLLM fallback answered for step.tier: settle() has billed it and released this reservation.
            if fallbacks.apply(child):
                served = child["route"]
            elif usage is not None:
                await budget.account(self.rt.budget, child, call_type, usage, step.tier)
                mark_accounted(child)
        return Attempt(str(served), resp, None, chunks)

    async def _cascade(self, state: dict[str, Any], first: Attempt, stream: bool) -> tuple[list[Attempt], str | None]:
        """Run steps until deliver; returns every attempt and why it stopped early (if it did)."""
        attempts = [first]
        chain = [first.tier]
        rephrased = False
        note: str | None = None
        stopped = self.rt.budget.is_stopped()
        while True:
            verdict = attempts[-1].verdict
            if verdict is None:  # an unvalidated (top) tier answered: deliver it
                break
            call_type, request = state["call_type"], state["request"]
            # Only chat keeps its system prompt in `messages`; the other APIs get the rephrase instruction
            # in their own system field (Messages `system`, Responses `instructions`, a text prompt's head).
            step = next_step(verdict, chain, self.settings, stopped, tiers=self.tiers,
                             messages=request.get("messages"), rephrased=rephrased,
                             system=request.get("instructions") if call_type in RESPONSES_CALLS else request.get("system"),
                             anthropic=call_type not in CHAT_CALLS)
            if step.kind == "deliver":
                note = step.note
                break
            # Shielded: a client that hangs up must not cut off a call the provider is already
            # billing; it runs to its end and is accounted (the rest of the cascade is dropped).
            free = self.rt.budget.is_free
            leaves_local = all(free(a.tier) for a in attempts) and not free(str(step.tier))
            call = asyncio.ensure_future(self._call(state, step, len(chain), stream, leaves_local))
            call.add_done_callback(_retrieve_exception)
            try:
                attempt = await asyncio.shield(call)
            except budget.BudgetRefused:
                note = "budget_stopped"
                break
            except Exception as e:  # the stronger tier failed too: deliver the best we have
                log.warning("quality %s to %s failed: %s", step.kind, step.tier, e)
                note = f"{step.kind}_failed"
                break
            rephrased = rephrased or step.kind == "rephrase"
            chain.append(attempt.tier)
            if is_validated(attempt.tier, self.settings, self.tiers):
                ans = stream_answer(attempt.chunks, state["call_type"]) if stream else self._answer(state, attempt.response)
                attempt.verdict = await self.score(state, ans)
            attempts.append(attempt)
        return attempts, note

    def _answer(self, state: dict[str, Any], response: Any) -> Answer:
        call_type = state["call_type"]
        if call_type in MESSAGES_CALLS:
            return messages_answer(response)
        if call_type in RESPONSES_CALLS:
            return responses_answer(response)
        return text_answer(response) if call_type in TEXT_CALLS else chat_answer(response)

    def _pick(self, state: dict[str, Any], attempts: list[Attempt], note: str | None) -> Attempt:
        # An unscored (top-tier) answer is the best available; else the best score.
        unscored = [a for a in attempts if a.verdict is None]
        best = unscored[-1] if unscored else attempts[best_attempt([a.verdict for a in attempts])]
        first = attempts[0].verdict
        state["quality_score"] = round(first.score, 4) if first else None
        state["quality_action"] = first.action if first else "deliver"
        state["escalated"] = ">".join(a.tier for a in attempts) if len(attempts) > 1 else "false"
        state["route"] = best.tier
        if note:
            state["quality_note"] = note
        if first is not None:
            metrics.observe_quality(attempts[0].tier, first.action, first.score, best.tier)
            # route-thresholds --max-escalation reads first= and route_score= (routed requests have one).
            log.info("quality %.3f %s (%s) -> chain %s served by %s%s first=%s route_score=%s scorer=%s", first.score,
                     first.action, ", ".join(first.reasons) or "ok", state["escalated"], best.tier, f" [{note}]" if note else "",
                     attempts[0].tier, state.get("route_score", "none"), state.get("route_scorer", "none"))
        return best

    async def after_response(self, state: dict[str, Any], response: Any) -> Any:
        """Non-streamed: the response to deliver (the original object when it stays)."""
        verdict = await self.score(state, self._answer(state, response))
        attempts, note = await self._cascade(state, Attempt(state["route"], response, verdict), stream=False)
        best = self._pick(state, attempts, note)
        if state.get("strip_logprobs") and best is attempts[0]:
            for choice in get_field(response, "choices") or []:
                if isinstance(choice, dict):
                    choice["logprobs"] = None
                else:
                    choice.logprobs = None
        return best.response

    async def stream(self, state: dict[str, Any], response: AsyncIterator[Any]) -> AsyncIterator[Any]:
        """Streamed: buffer, score, then replay the chosen attempt's chunks."""
        chunks = [c async for c in response]
        verdict = await self.score(state, stream_answer(chunks, state["call_type"]))
        attempts, note = await self._cascade(state, Attempt(state["route"], None, verdict, chunks), stream=True)
        best = self._pick(state, attempts, note)
        for c in best.chunks:
            if state.get("strip_logprobs") and best is attempts[0] and not isinstance(c, (bytes, str)):
                for choice in get_field(c, "choices") or []:
                    if not isinstance(choice, dict):
                        choice.logprobs = None
            yield c
