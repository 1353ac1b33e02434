"""The one owner of a request's money: every reserve, settle, release and ledger record goes through here.

The hooks and the quality gate ask the Accountant (on the runtime, `rt.accounts`); nothing else touches the
budget guard's reservations or the ledger. Calls of every kind are handled alike: the client's own call, a
LiteLLM fallback, a quality escalation or rephrase, later judge calls: each is a RequestState (child states
carry their own request id and a parent id).

Invariants, for every call to a paid model:
1. it is reserved before it is made, at its worst case (prompt tokens, tool definitions, the largest output
   allowance in any spelling for each of `n` choices), against the month and against its tag's own cap if it
   has one, or refused: 429 when the month's (or the tag's) money is gone, 400 when no month could pay for it;
   a request synqra routed goes to the local model instead of being refused;
2. its reservation is settled (to the provider's usage) or released exactly once: `settle` runs once per state
   however many hooks and events race to it, `release` only gives back a reservation still held;
3. one ledger row per provider call that answered, free calls included (the local share counts them); a call
   that failed before answering costs nothing and writes nothing;
4. a LiteLLM fallback that answers is billed as its own row (kind "fallback"), the failed primary is released,
   every other fallback tried is released; an answer whose provider reported no usage is recorded at LiteLLM's
   token count, never as free;
5. a stream that its client left after the provider began answering is recorded at what it had delivered (the
   prompt and the answer so far), not treated as a failed call: the provider bills it. A stream that broke on
   the provider's side (a dropped connection, a protocol error, an error event) is recorded at its worst case, as
   a timed-out call is: the provider bills what it generated, and words LiteLLM had read but not yet relayed are
   lost with the break (168 of 200 in a test); so is an attempt whose response broke off before any answer came
   through and that LiteLLM retried or fell back from, as a row of its own.
6. a non-streamed call that timed out after it was sent (LiteLLM's timeout, or the client's `timeout`) is
   recorded at its worst case, as a row of its own that counts no request: the provider goes on generating
   the answer nobody will receive, and bills it, while LiteLLM reports a failed call and may try a fallback.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from policies.budget.guard import BudgetExhausted, BudgetGuard, CallTooCostly, DuplicateRequest
from policies.budget.records import CallRecord
from policies.budget.worst_case import (
    billed_prompt_tokens,
    choices,
    clamp_output_allowance,
    held_prompt_tokens,
    output_allowance,
    prompt_tokens,
)
from policies.common.api_answers import prompt_only_usage
from policies.common.api_shapes import KIND_BY_CALL_TYPE, cache_breakpoints, chat_view
from policies.common.request_state import RequestState, WorstCase

log = logging.getLogger("synqra.accounting")


class BudgetRefused(Exception):
    """A paid call refused by the budget; carries the client-facing message."""

    def __init__(self, message: str, status: int = 429) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def key_hash(api_key: str | None) -> str | None:
    return hashlib.sha256(api_key.encode()).hexdigest()[:16] if api_key else None


def _too_costly_message(data: dict[str, Any], key: str | None, e: CallTooCostly) -> str:
    # Named as the client sent it (max_output_tokens on the Responses API): the largest allowance it gave.
    if key is None:  # the model's output ceiling was assumed
        return f"this request is too large for the monthly budget: {e.message}; set a smaller max_tokens"
    return f"'{key}' ({data[key]}) is too large for the monthly budget: {e.message}; lower {key}"


class Accountant:
    def __init__(self, guard: BudgetGuard, local_model: str) -> None:
        self.guard = guard
        self.local_model = local_model

    def is_free(self, model: str) -> bool:
        return self.guard.is_free(model)

    # --- before a call ------------------------------------------------------------------------------

    def fit_allowance(
        self, data: dict[str, Any], model: str, named: str, asked: dict[str, Any] | None = None
    ) -> list[str]:
        """Fit the output allowance in `data` to `model` when that is not the model the client `named` (an alias,
        `auto`'s tier, a fallback or an escalation): the fields lowered. A client names its own model's ceiling
        (Claude Code asks its Opus names for 128,000 tokens) and the model answering instead refuses more than its
        own with a 400; asked for by name, the provider's 400 is the client's to see.

        `asked`: the allowance as the client gave it (RequestState.asked_allowance), put back first: `data` may be
        a fallback's or an escalation's copy of a request fitted to a smaller model (`auto`'s local tier, 1,024),
        whose ceiling would otherwise cut the answer of every model after it. Only the fields `data` has: a call
        LiteLLM bridges to another API carries the allowance in that API's spelling."""
        for key, value in (asked or {}).items():
            if key in data:
                data[key] = value
        if model == named:
            return []
        return clamp_output_allowance(data, self.guard.prices.price(model).max_output_tokens)

    async def admit(self, state: RequestState, data: dict[str, Any], model: str, routed: bool) -> None:
        """Reserve for a call to `model` (a model_list name, aliases resolved); free models pass.

        `routed`: synqra chose the model, so when the money is gone the local model serves instead
        (`data["model"]` and `state.route` are moved, `state.budget_note` says "stopped")."""
        # A prompt Anthropic may write to its cache is billed above the input price; what it would read from it is
        # below, in the all-Claude baseline of a call another model answers (free calls too).
        ttls, state.cache_prefix_share = cache_breakpoints(data)
        state.hour_cache = "1h" in ttls  # settled at the hour's write price (a fallback's or retry's state: its own)
        if self.guard.is_free(model):
            return
        view = chat_view(data, state.call_type)  # completions and Responses API requests read as chat
        # The largest allowance the request gives in any spelling: LiteLLM may send the provider any of them.
        key, max_tokens = output_allowance(data, state.call_type)
        prompt, bound = held_prompt_tokens(self.guard, model, view, state.call_type, ttls)
        n = choices(view)
        completion = n * (max_tokens or self.guard.output_ceiling(model))
        if bound:  # a row booked at the worst case records the prompt's count, not the bound held (~4x above it)
            guard, call_type, asked = self.guard, state.call_type, dict(view)  # the request's fields as sent
            state.worst_case = WorstCase(
                lambda: billed_prompt_tokens(guard, model, prompt_tokens(guard, model, asked, call_type), ttls),
                completion,
            )
        else:
            state.worst_case = WorstCase(prompt, completion)
        try:
            await self.guard.reserve(state.request_id, model, prompt, max_tokens, n, tag=state.tag)
            state.reserved = True
        except BudgetExhausted as e:
            if routed:  # synqra picked the paid tier: the free one serves instead (also when the call is too costly)
                data["model"] = self.local_model
                state.route = self.local_model
                state.budget_note = "stopped"
                return
            if isinstance(e, CallTooCostly):  # no month pays for it: a retry after the reset would fail too
                raise BudgetRefused(_too_costly_message(data, key, e), status=400) from e
            raise BudgetRefused(e.message) from e
        except DuplicateRequest as e:
            raise BudgetRefused(f"duplicate request id {state.request_id!r}: {e}", status=400) from e

    # --- after a call -------------------------------------------------------------------------------

    async def _record(self, state: RequestState, usage: dict[str, int], served: str) -> None:
        prompt, completion = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        record = CallRecord(
            request_id=state.request_id,
            requested_model=state.requested_model or served,
            served_model=served,
            prompt_tokens=prompt,
            completion_tokens=completion,
            kind=state.kind if state.kind != "client" else KIND_BY_CALL_TYPE.get(state.call_type, "chat"),
            api_key_hash=state.key_hash,
            user=state.user,
            parent_id=state.parent_id,
            counts_request=state.counts_request,
            leaves_local=state.leaves_local,
            tag=state.tag,
            # prompt tokens the provider wrote to or read from its cache: billed above or below the input price
            cache_write_tokens=int(usage.get("cache_write_tokens") or 0),
            cache_read_tokens=int(usage.get("cache_read_tokens") or 0),
            cache_one_hour=state.hour_cache,
            cache_write_1h_tokens=None
            if usage.get("cache_write_1h_tokens") is None
            else int(usage["cache_write_1h_tokens"]),
            cache_prefix_tokens=round(prompt * state.cache_prefix_share),
        )
        if state.reserved:
            await self.guard.settle(state.request_id, record)
        else:
            await self.guard.record_free(record)

    async def settle(self, state: RequestState, usage: dict[str, int], served: str | None = None) -> None:
        """Record the call at its usage (settling its reservation), once.

        The post-call hook and LiteLLM's success-logging task run concurrently for one request and both settle
        it: a caller that finds a settle running waits for it (so the post-call hook returns only once the record
        is written) and settles itself only if that one failed."""
        if state.accounted:
            return
        if state.settling is not None:
            if await asyncio.shield(state.settling):
                return
            return await self.settle(state, usage, served)
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        state.settling = done
        ok = False
        try:
            await self._record(state, usage, served or state.route)
            state.accounted = ok = True
        finally:
            state.settling = None
            done.set_result(ok)

    async def release(self, state: RequestState) -> None:
        """The call failed: give back what it reserved (nothing is recorded)."""
        if state.reserved and not state.accounted:
            await self.guard.release(state.request_id)

    # --- LiteLLM fallbacks (attempts on other model groups within one call) -------------------------

    async def reserve_attempt(self, state: RequestState, group: str, data: dict[str, Any]) -> None:
        """LiteLLM is about to try another model group for this call: reserve it as a call of its own.

        LiteLLM's fallbacks skip the proxy's pre-call hook, so without this a paid fallback would bypass
        the budget. A retry on the call's own group (the client's `num_retries`) is reserved as well: the failed
        attempt's failure event gives the call's reservation back, before or while the retry runs. Raises
        BudgetRefused when the month's money is gone."""
        if group == state.route:
            state.route_attempts += 1
            if state.route_attempts == 1:  # the call itself, reserved by `admit`
                return
            retry = f"retry{state.route_attempts - 1}"
            child = state.child(
                "fallback", group, retry, counts_request=state.counts_request, leaves_local=state.leaves_local
            )
            await self.admit(child, data, group, routed=False)  # a reservation only: the call's row is its own
            state.attempts[f"{group}#{retry}"] = child
            return
        if group in state.attempts:
            return
        # Standing in for the call that failed: a client request if that was one, else (an escalation) not.
        child = state.child(
            "fallback", group, f"fallback:{group}", counts_request=state.counts_request, leaves_local=state.leaves_local
        )
        await self.admit(child, data, group, routed=False)
        state.attempts[group] = child

    async def attempt_answered(self, state: RequestState, served: str, usage: dict[str, int] | None) -> None:
        """A deployment answered this call (called per successful attempt, before the post-call hook and any
        logging): if it was a fallback, bill it, release the failed primary and every other attempt.
        A stream's usage is known only once LiteLLM logs it (`settle_unbilled_attempt`)."""
        if served == state.route and not state.attempts:
            return
        attempts, state.attempts = state.attempts, {}
        fell_back = served != state.route and served in attempts
        for group, child in attempts.items():
            if fell_back and group == served:
                if usage is None:
                    state.unbilled_attempt = child
                else:
                    await self.settle(child, usage, group)
            else:
                await self.release(child)
        if fell_back:
            await self.release(state)  # the primary failed: it costs nothing
            state.fallback, state.route = f"{state.route}>{served}", served
            state.accounted = True  # its answer is the fallback's row

    async def settle_unbilled_attempt(self, state: RequestState, usage: dict[str, int]) -> None:
        child, state.unbilled_attempt = state.unbilled_attempt, None
        if child is not None:
            await self.settle(child, usage, child.route)

    async def stream_broke(self, state: RequestState, served: str | None, usage: dict[str, int]) -> None:
        """A stream broke off, or its client left, after its provider had begun answering: the provider bills
        the prompt and what it sent, so the call is recorded at `usage` (what it delivered when the client left; its
        worst case when the provider's side broke it, `worst_case`), not released as a failure. `served`: the model group that opened the stream (a fallback, when one did)."""
        if served is None or served == state.route or served not in state.attempts:
            await self.settle(state, usage, served or state.route)
            await self.attempt_answered(state, state.route, None)  # what its retries or fallbacks hold goes back
            return
        await self.attempt_answered(state, served, usage)  # a fallback's stream: bill it, release the rest

    async def attempt_broke(self, state: RequestState, group: str, attempt: int, data: dict[str, Any]) -> None:
        """LiteLLM retried or fell back from an attempt of this call whose provider's response broke off after it
        opened, before any of its answer reached the client: the provider bills its prompt and whatever it generated
        before the break, which is unknown, so it is recorded at its worst case (at its prompt's count for an attempt
        with no reservation), as an extra call of the request (kind "fallback", not counted as a request; its request id
        ends in ":broken<attempt>"). Its reservation (the call's, or a retry's) is released as those are."""
        if self.guard.is_free(group):
            return
        # Not the call that answered: the request leaves the local share (an escalation's) on the attempt that
        # answers, or stays in it when none does.
        child = state.child("fallback", group, f"broken{attempt}", counts_request=False, leaves_local=False)
        # What the provider generated before the break is unknown (LiteLLM may have read, and dropped, much of it).
        why = f"broke off (attempt {attempt}) before answering; LiteLLM tried again"
        worst = self.worst_case(state, group, why)
        if worst is not None:
            await self._record(child, worst, group)
            return
        usage = prompt_only_usage(group, chat_view(data, state.call_type).get("messages") or [])
        log.warning(
            "%s attempt %d of %s broke off before answering; LiteLLM tried again: recorded its prompt (%d tokens, "
            "estimated)",
            group,
            attempt,
            state.request_id,
            usage["prompt_tokens"],
        )
        await self._record(child, usage, group)

    async def attempt_failed(self, state: RequestState, group: str | None) -> None:
        """A failed attempt: release the primary's reservation.

        A failed fallback's reservation is left to `attempt_answered` or `release_all`, when the call ends:
        LiteLLM processes the failure event in the background from request metadata it has meanwhile updated
        for the next attempt, so a primary that failed (e.g. in cooldown) can arrive here named as the fallback
        now answering, whose reservation it would drop, and the answer would go unbilled."""
        if group is None or group == state.route:
            await self.release(state)

    async def attempt_timed_out(self, state: RequestState, group: str) -> None:
        """A non-streamed attempt on `group` timed out after it was sent: its provider still generates the answer
        and bills it, so it is recorded at its worst case (the prompt and the whole output allowance), as a row
        of its own that counts no request. The attempt's reservation is left to the call's end as for any failed
        attempt (a retry or fallback may still answer under it)."""
        attempt = self._paid_attempt(state, group)
        if attempt is None:
            return
        attempt.timeouts += 1
        row = attempt.child(attempt.kind, group, f"timeout{attempt.timeouts}", counts_request=False, leaves_local=False)
        await self.settle(row, self._booked_at_worst_case(attempt, group, "timed out after it was sent"), group)

    def worst_case(self, state: RequestState, group: str, why: str) -> dict[str, int] | None:
        """The usage to book for `state`'s paid attempt on `group` when its true usage cannot be known (`why`: it
        timed out, its provider's stream broke): its reservation's worst case, above the provider's bill, never
        below. None for a free model or an attempt with no reservation."""
        attempt = self._paid_attempt(state, group)
        return None if attempt is None else self._booked_at_worst_case(attempt, group, why)

    def _paid_attempt(self, state: RequestState, group: str) -> RequestState | None:
        # A retry of the call's own group asks what the call asked: the call's worst case is its worst case.
        attempt = state if group == state.route else state.attempts.get(group)
        if attempt is None or attempt.worst_case is None or self.guard.is_free(group):
            return None
        return attempt

    @staticmethod
    def _booked_at_worst_case(attempt: RequestState, group: str, why: str) -> dict[str, int]:
        worst = attempt.worst_case.usage() if attempt.worst_case is not None else {}
        log.warning(
            "%s call %s %s: recorded at its worst case (%d in, %d out, worst case)",
            group,
            attempt.request_id,
            why,
            worst.get("prompt_tokens", 0),
            worst.get("completion_tokens", 0),
        )
        return worst

    async def release_all(self, state: RequestState) -> None:
        """The call failed as a whole (every fallback too): nothing it reserved is spent."""
        await self.release(state)
        attempts, state.attempts = state.attempts, {}
        for child in attempts.values():
            await self.release(child)
