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
import dataclasses
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from policies.budget.accountant import BudgetRefused
from policies.common.api_answers import Answer, answer_of, get_field, stream_answer, usage_of
from policies.common.api_shapes import (
    CHAT_CALLS,
    GENERATION_CALLS,
    MESSAGES_CALLS,
    RESPONSES_CALLS,
    TEXT_CALLS,
    chat_view,
    question_of,
)
from policies.common.request_state import STATE_KEY, QualityInfo, RequestState
from policies.judging import JUDGE_MAX_TOKENS, in_judge_band, parse_rating, rating_to_score, single_rating_messages
from policies.quality.bands import band, is_validated
from policies.quality.escalation import Step, best_attempt, next_step, pressured_ladder
from policies.quality.scorer import QualityVerdict
from policies.quality.signals import without_text
from policies.routing.tiers import unmet
from proxy import metrics
from proxy.client_watch import client_gone
from proxy.judge import JudgeCaller
from proxy.litellm_state import litellm_router, served_group
from proxy.stream_relay import StreamRelay

log = logging.getLogger("synqra.quality")


def loggable_reasons(reasons: list[str], keep_text: bool) -> str:
    """A verdict's reasons for its INFO line: what they quote of the request or the answer only with
    synqra.learning.keep_text (off by default: the log keeps no prompt or answer text)."""
    return ", ".join(reasons if keep_text else [without_text(r) for r in reasons]) or "ok"


# The request fields proxy/shadow_eval.py copies into the request it scores (the scorer reads messages,
# response_format and tools). A rephrase / escalation carries every client parameter: see client_params.
CARRIED_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "stop_sequences",
    "tools",
    "tool_choice",
    "response_format",
    "system",
    "seed",
    "user",
    "metadata_user",
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
class Attempt:
    tier: str
    response: Any
    verdict: QualityVerdict | None
    chunks: list[Any] = field(default_factory=list)  # a buffered stream


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
        j = self.settings.judge
        # The judge tier: a cheap cloud model rates a local answer whose score is unsure (inside j.band).
        self.judge = JudgeCaller(runtime, "quality", j.model, JUDGE_MAX_TOKENS) if j.enabled else None

    def _tiers(self) -> list[str]:
        """The routing ladder without the tiers that cannot answer now (no API key): the top of what is left
        is not validated, and no escalation goes to a tier that cannot answer."""
        down = self.rt.availability.unavailable(self.tiers)
        return [t for t in self.tiers if t not in down] if down else self.tiers

    def _tiers_for(self, state: RequestState, first: str) -> list[str]:
        """The ladder without the tiers that cannot serve this request as routing judged it (e.g. Claude for `n` > 1:
        LiteLLM would drop the `n` and the escalated answer would hold one choice). Unfiltered when the first tier is
        not among them (routing found none that could and kept the strongest). When budget pressure routed the
        request to a cheaper tier than without it, the ladder leads from the first tier straight to that one and
        ends there (escalation.pressured_ladder): under pressure an escalation costs no more than the route
        without pressure would have."""
        tiers = self._tiers()
        need = self.rt.router.constraints(chat_view(self._request(state), state.call_type))
        caps = self.rt.model_caps
        fit = [t for t in tiers if t not in caps or unmet(caps[t], need) is None]
        ladder = fit if first in fit else tiers
        unpressured = state.routing.unpressured if state.routing is not None else None
        if unpressured is not None:  # budget pressure picked a cheaper tier: escalate no higher than without it
            ladder = pressured_ladder(ladder, first, unpressured, self.tiers)
        return ladder

    def applies(self, state: RequestState, served: str | None = None) -> bool:
        """Whether the gate validates this request's answer. `served`: the model group whose stream answers, when
        known (a LiteLLM fallback's, not yet the state's route: a streamed fallback is settled only at its end)."""
        if served is not None and served != state.route:
            return (
                state.quality is not None and self.applies(state) and is_validated(served, self.settings, self._tiers())
            )
        return (
            self.settings.enabled  # is_validated's first test, before the ladder is worked out (every routed request)
            and state.routed
            and state.call_type in GENERATION_CALLS
            and is_validated(state.route, self.settings, self._tiers())
        )

    def prepare(self, state: RequestState, data: dict[str, Any]) -> None:
        """Before the call: remember the client's request; ask llama.cpp for token logprobs."""
        q = state.quality = QualityInfo(request=client_params(data, state.call_type))  # before the logprobs below
        if state.route != self.rt.config.synqra.backends.llama.model_alias or data.get("logprobs") is not None:
            return
        if state.call_type in CHAT_CALLS:
            data["logprobs"] = True
            q.strip_logprobs = True
        elif state.call_type in TEXT_CALLS:
            data["logprobs"] = 0  # the completions API's form: the chosen tokens' logprobs, no alternatives
            q.strip_logprobs = True

    def _request(self, state: RequestState) -> dict[str, Any]:
        assert state.quality is not None, "prepare() runs before any answer is scored"
        return state.quality.request

    async def score(self, state: RequestState, answer: Answer, tier: str | None = None) -> QualityVerdict:
        request = chat_view(self._request(state), state.call_type)  # the scorer reads chat messages
        verdict = await self.rt.quality.ascore(
            request, answer.text, answer.finish_reason, answer.logprobs, answer.tool_calls
        )
        if (
            self.judge is not None
            and (tier or state.route) == self.rt.config.synqra.backends.llama.model_alias
            and not verdict.hard_failures
            and in_judge_band(verdict.score, self.settings.judge.band)
        ):
            verdict = await self._judged(state, request, answer, verdict)
        return verdict

    async def _judged(
        self, state: RequestState, request: dict[str, Any], answer: Answer, verdict: QualityVerdict
    ) -> QualityVerdict:
        """The judge's 1-10 rating decides an unsure local answer; skipped or unreadable: the scorer alone."""
        assert self.judge is not None
        rating = parse_rating(await self.judge.ask(state, single_rating_messages(question_of(request), answer.text)))
        if rating is None:
            return verdict
        score = rating_to_score(rating)
        log.info(
            "quality judge rated %s's local answer %.0f/10 (scorer %.3f -> %.3f)",
            state.request_id,
            rating,
            verdict.score,
            score,
        )
        return dataclasses.replace(
            verdict,
            score=score,
            action=band(score, self.settings),
            reasons=[*verdict.reasons, f"judge rated {rating:g}/10"],
        )

    async def _call(self, state: RequestState, step: Step, n: int, stream: bool, leaves_local: bool) -> Attempt:
        """One extra call (rephrase or escalation) through LiteLLM's router, budgeted and recorded;
        a stream is read to its end (LiteLLM then logs its usage, which settles it)."""
        call_type = state.call_type
        req = dict(self._request(state))
        if step.messages is not None:
            req["messages"] = step.messages
        if step.system is not None:  # the rephrase instruction, where each API keeps its system prompt
            if call_type in RESPONSES_CALLS:
                req["instructions"] = step.system
            elif call_type in TEXT_CALLS and isinstance(req.get("prompt"), str):
                req["prompt"] = f"{step.system}\n\n{req['prompt']}"
            elif call_type in MESSAGES_CALLS:
                req["system"] = step.system
        # Part of a client request already counted (its baseline too); the first paid call after local answers
        # takes the request out of the local share.
        child = state.child("escalation", str(step.tier), str(n), counts_request=False, leaves_local=leaves_local)
        accounts = self.rt.accounts
        accounts.fit_allowance(req, str(step.tier), state.named_model, state.asked_allowance)  # not the local's
        await accounts.admit(child, {"model": step.tier, **req}, str(step.tier), routed=False)
        meta_key = "litellm_metadata" if call_type in MESSAGES_CALLS | RESPONSES_CALLS else "metadata"
        kwargs = {**req, "model": step.tier, meta_key: {STATE_KEY: child}}
        relay: StreamRelay | None = None
        try:
            llm_router = litellm_router()
            if call_type in MESSAGES_CALLS:
                resp = await llm_router.aanthropic_messages(stream=stream, **kwargs)
            elif call_type in RESPONSES_CALLS:
                resp = await llm_router.aresponses(stream=stream, **kwargs)
            else:
                if stream:
                    kwargs["stream_options"] = {"include_usage": True}
                call = llm_router.atext_completion if call_type in TEXT_CALLS else llm_router.acompletion
                resp = await call(stream=stream, **kwargs)
            relay = StreamRelay(resp, child) if stream else None
            chunks = [c async for c in relay.items()] if relay is not None else []
        except BaseException as e:
            # A stream that broke after the provider began answering is billed for what it sent: recorded
            # at that. Otherwise nothing answered: this call's reservation and those of LiteLLM fallbacks it
            # tried go back (an internal call gets no post-call failure hook to do it). Its answer is not delivered:
            # the request is answered by an earlier attempt, so this call does not take it out of the local share.
            # Recorded as a row of its own, "<id>:<n>:broken0", as LiteLLM's broken attempts are ("<id>:<n>:broken<k>"):
            # billed, but no answer of it was delivered, so the operator's views do not count the request as escalated
            # (under the call's own id it read as an escalation that answered).
            child.leaves_local = False
            cut = child.child(child.kind, child.route, "broken0", counts_request=False, leaves_local=False)
            cut.worst_case = child.worst_case  # booked at that when the provider's side broke it
            broke = e if isinstance(e, Exception) else None  # else cancelled: the client left
            recording = (
                relay.record_if_cut_short(self.rt.config, accounts, cut, kwargs, "broke off", broke)
                if relay and not child.accounted
                else None
            )
            if recording is not None:
                await recording
            await accounts.release_all(child)
            if recording is not None:
                child.accounted = True  # its row is the cut one: a late success event must not record it again
            raise
        served = str(step.tier)
        if stream:  # settled when LiteLLM logs it; the deployment that opened it is known now
            served = (
                served_group(self.rt.config, (getattr(resp, "_hidden_params", None) or {}).get("model_id")) or served
            )
        elif child.fallback is not None:  # a LiteLLM fallback answered for step.tier: billed as its own row
            served = child.route
        else:
            usage = usage_of(resp)
            if usage is not None:
                await accounts.settle(child, usage, served)
        return Attempt(served, resp, None, chunks)

    async def _cascade(self, state: RequestState, first: Attempt, stream: bool) -> tuple[list[Attempt], str | None]:
        """Run steps until deliver; returns every attempt and why it stopped early (if it did)."""
        attempts = [first]
        chain = [first.tier]
        rephrased = False
        note: str | None = None
        stopped = self.rt.budget.is_stopped()
        call_type, request = state.call_type, self._request(state)
        tiers = self._tiers_for(state, first.tier)
        while True:
            verdict = attempts[-1].verdict
            if verdict is None:  # an unvalidated (top) tier answered: deliver it
                break
            # Only chat keeps its system prompt in `messages`; the other APIs get the rephrase instruction
            # in their own system field (Messages `system`, Responses `instructions`, a text prompt's head).
            step = next_step(
                verdict,
                chain,
                self.settings,
                stopped,
                tiers=tiers,
                messages=request.get("messages"),
                rephrased=rephrased,
                system=request.get("instructions") if call_type in RESPONSES_CALLS else request.get("system"),
                anthropic=call_type not in CHAT_CALLS,
            )
            if step.kind == "deliver":
                note = step.note
                break
            if not stream and await client_gone():  # nobody to deliver to: the rest of the cascade is not paid for
                note = "client_gone"
                break
            # Shielded: a client that hangs up must not cut off a call the provider is already
            # billing; it runs to its end and is accounted (the rest of the cascade is dropped).
            free = self.rt.accounts.is_free
            leaves_local = all(free(a.tier) for a in attempts) and not free(str(step.tier))
            call = asyncio.ensure_future(self._call(state, step, len(chain), stream, leaves_local))
            call.add_done_callback(_retrieve_exception)
            try:
                attempt = await asyncio.shield(call)
            except BudgetRefused:
                note = "budget_stopped"
                break
            except Exception as e:  # the stronger tier failed too: deliver the best we have
                log.warning("quality %s to %s failed: %s", step.kind, step.tier, e)
                note = f"{step.kind}_failed"
                break
            rephrased = rephrased or step.kind == "rephrase"
            chain.append(attempt.tier)
            if is_validated(attempt.tier, self.settings, tiers):
                ans = stream_answer(attempt.chunks, call_type) if stream else answer_of(attempt.response, call_type)
                attempt.verdict = await self.score(state, ans, attempt.tier)
            attempts.append(attempt)
        return attempts, note

    def _pick(self, state: RequestState, attempts: list[Attempt], note: str | None) -> Attempt:
        # An unscored (top-tier) answer is the best available; else the best score.
        unscored = [a for a in attempts if a.verdict is None]
        best = unscored[-1] if unscored else attempts[best_attempt([a.verdict for a in attempts])]
        first = attempts[0].verdict
        q = state.quality
        assert q is not None
        q.score = round(first.score, 4) if first else None
        q.action = first.action if first else "deliver"
        q.escalated = ">".join(a.tier for a in attempts) if len(attempts) > 1 else "false"
        if best is not attempts[0]:  # (a streamed fallback's first answer is settled under the route it stood in for)
            state.route = best.tier
        if note:
            q.note = note
        if first is not None:
            metrics.observe_quality(attempts[0].tier, first.action, first.score, best.tier)
            if attempts[0].tier == self.rt.config.synqra.backends.llama.model_alias:  # a label for the router
                self.rt.learning.gate_verdict(state.request_id, first.action)
                if best is not attempts[0]:  # and, for a sample, the judge: local answer against the one served
                    call_type = state.call_type
                    texts = [
                        (stream_answer(a.chunks, call_type) if a.chunks else answer_of(a.response, call_type)).text
                        for a in (attempts[0], best)
                    ]
                    self.rt.learning.escalated(state, question_of(chat_view(self._request(state), call_type)), *texts)
            # first= and route_score= (routed requests have one): `synqra report` reads the line.
            r = state.routing
            log.info(
                "quality %.3f %s (%s) -> chain %s served by %s%s first=%s route_score=%s scorer=%s",
                first.score,
                first.action,
                loggable_reasons(first.reasons, self.rt.config.synqra.learning.keep_text),
                q.escalated,
                best.tier,
                f" [{note}]" if note else "",
                attempts[0].tier,
                r.score if r else "none",
                r.scorer if r else "none",
            )
        return best

    async def after_response(self, state: RequestState, response: Any) -> Any:
        """Non-streamed: the response to deliver (the original object when it stays)."""
        verdict = await self.score(state, answer_of(response, state.call_type))
        attempts, note = await self._cascade(state, Attempt(state.route, response, verdict), stream=False)
        best = self._pick(state, attempts, note)
        if state.quality is not None and state.quality.strip_logprobs and best is attempts[0]:
            for choice in get_field(response, "choices") or []:
                if isinstance(choice, dict):
                    choice["logprobs"] = None
                else:
                    choice.logprobs = None
        return best.response

    async def stream(
        self, state: RequestState, response: AsyncIterator[Any], served: str | None = None
    ) -> AsyncIterator[Any]:
        """Streamed: buffer, score, then replay the chosen attempt's chunks. `served`: the model group whose stream
        this is (a LiteLLM fallback's when one answered): the answer is judged, and escalated from, as that tier's."""
        tier = served or state.route
        chunks = [c async for c in response]
        verdict = await self.score(state, stream_answer(chunks, state.call_type), tier)
        attempts, note = await self._cascade(state, Attempt(tier, None, verdict, chunks), stream=True)
        best = self._pick(state, attempts, note)
        strip = state.quality is not None and state.quality.strip_logprobs and best is attempts[0]
        for c in best.chunks:
            if strip and not isinstance(c, (bytes, str)):
                for choice in get_field(c, "choices") or []:
                    if not isinstance(choice, dict):
                        choice.logprobs = None
            yield c
