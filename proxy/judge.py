"""Calls to a judge model (policies/judging.py has the prompts and the parsing): paid calls like any other.

A judge call is a child of the request it judges (`RequestState.child("judge", ...)`): reserved before the call
and settled after it through the Accountant, one ledger row of kind "judge", no request and no baseline of
its own, booked to the tag `synqra-judge-<purpose>` (not the request's: what the judge costs is learning's and
the gate's, and the tag carries the limit). It is skipped (the caller decides without it) when paid calls are
stopped this month, when the judge model cannot answer (no API key), when its reservation would take this
purpose's judge spend this month past `monthly_limit_usd` (the budget store holds that limit, calls in flight at
their worst case, across every worker and replica), or when the call fails. LiteLLM's fallbacks are off for it: a
judge falling back to a dearer model is not a judge the operator chose.

Two purposes share this: the quality gate's judge tier (`synqra.quality.judge`, a 1-10 rating of one answer
whose score is unsure) and the learning loop's pairwise judge (`synqra.learning.judge`, local answer against
the answer served, both orders).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from policies.budget.accountant import BudgetRefused
from policies.budget.records import LedgerRecord
from policies.common.api_answers import chat_answer, usage_of
from policies.common.budget_settings import SYNQRA_TAG_PREFIX
from policies.common.request_state import STATE_KEY, RequestState
from proxy.litellm_state import litellm_router

log = logging.getLogger("synqra.judge")


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    """Mark a shielded call's outcome as seen: its caller may have been cancelled meanwhile."""
    if not task.cancelled():
        task.exception()


class JudgeCaller:
    def __init__(self, rt: Any, purpose: str, model: str, max_tokens: int) -> None:
        self.rt = rt
        self.purpose = purpose  # in the child's request id: "<parent>:judge-<purpose>-<n>"
        self.model = model
        self.max_tokens = max_tokens
        # The budget tag its calls are booked to: BudgetGuard.from_config caps it at the judge's monthly limit
        # (SynqraSettings.judge_spend_limits).
        self.tag = SYNQRA_TAG_PREFIX + purpose
        self._calls = 0

    def made(self, record: LedgerRecord) -> bool:
        """Whether this ledger row is a judge call of this purpose (whichever process made it)."""
        return record.kind == "judge" and f":judge-{self.purpose}-" in record.request_id

    def why_not(self) -> str | None:
        """Why a judge call cannot be made now, or None (its monthly limit is the reservation's to refuse)."""
        if self.rt.budget.is_stopped():
            return "budget stopped"
        down = self.rt.availability.reason(self.model)
        if down:
            return f"{self.model} unavailable: {down}"
        return None

    async def ask(self, parent: RequestState, messages: list[dict[str, str]]) -> str | None:
        """The judge's reply text, or None when the call is skipped or fails (logged)."""
        replies = await self.ask_all(parent, [messages])
        return None if replies is None else replies[0]

    async def ask_all(
        self,
        parent: RequestState,
        conversations: list[list[dict[str, str]]],
        accept: Callable[[str], bool] = lambda _: True,
    ) -> list[str] | None:
        """The replies to calls that are worth something only together (the pairwise judge's two orders), made one
        after the other, or None. Every call is reserved before the first is made, so at the monthly limit they are
        all skipped (a pair spent its first call and was refused the second: money for no label); a call that fails
        or whose reply `accept` refuses ends the rest, their reservations given back.

        Shielded: a caller cancelled meanwhile (the client of a gated stream hung up) must not cut off a call the
        provider is already answering and billing; it runs to its end and is booked."""
        why = self.why_not()
        if why:
            log.info("judge (%s) for %s skipped: %s", self.purpose, parent.request_id, why)
            return None
        work = asyncio.ensure_future(self._calls_of(parent, conversations, accept))
        work.add_done_callback(_retrieve_exception)
        return await asyncio.shield(work)

    async def _calls_of(
        self, parent: RequestState, conversations: list[list[dict[str, str]]], accept: Callable[[str], bool]
    ) -> list[str] | None:
        calls = [self._prepare(parent, messages) for messages in conversations]
        accounts = self.rt.accounts
        unsent = 0  # calls[unsent:] hold reservations of calls not made: given back however this ends
        try:
            for child, data in calls:
                try:
                    await accounts.admit(child, data, self.model, routed=False)
                except BudgetRefused as e:
                    log.info("judge (%s) for %s refused by the budget: %s", self.purpose, parent.request_id, e.message)
                    return None
            replies: list[str] = []
            for child, data in calls:
                unsent += 1  # this call's reservation is _send's from here: settled or released there
                text = await self._send(parent, child, data)
                if text is None or not accept(text):
                    return None
                replies.append(text)
            return replies
        finally:
            # A refusal, a failed or refused reply, or anything raised (a reply `accept` cannot read, the store):
            # the calls not made give their reservations back now, not at reservation_ttl_s.
            for held, _ in calls[unsent:]:
                await accounts.release(held)

    def _prepare(self, parent: RequestState, messages: list[dict[str, str]]) -> tuple[RequestState, dict[str, Any]]:
        self._calls += 1
        child = parent.child(
            "judge", self.model, f"judge-{self.purpose}-{self._calls}", counts_request=False, leaves_local=False
        )
        child.call_type = "acompletion"
        child.tag = self.tag
        data: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": self.max_tokens,
            "temperature": 0,
        }
        return child, data

    async def _send(self, parent: RequestState, child: RequestState, data: dict[str, Any]) -> str | None:
        """One admitted call: its reply text, settled; None when it failed (its reservation given back)."""
        accounts = self.rt.accounts
        try:
            resp = await litellm_router().acompletion(**data, metadata={STATE_KEY: child}, disable_fallbacks=True)
        except Exception as e:  # the judge failed: the caller decides without it
            await accounts.release_all(child)
            log.warning("judge (%s) for %s failed: %s", self.purpose, parent.request_id, e)
            return None
        usage = usage_of(resp)
        if usage is not None:
            await accounts.settle(child, usage, self.model)
        return chat_answer(resp).text
