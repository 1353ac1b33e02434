"""Everything synqra keeps about one model call of a client request, in one typed object.

A client request starts one RequestState in the pre-call hook; each extra call made for it (a LiteLLM fallback,
a quality escalation or rephrase, later a judge call) is a child state derived by `child()`, with its own request
id (the ledger keys on it) and a pointer to its parent. The state rides in LiteLLM's request metadata under
"synqra" from the pre-call hook to the logging events. LiteLLM copies request metadata on the way (deep copies
included); copying a RequestState returns the very same object, so every hook and event of a request reads and
updates one live state, and nothing needs a second, process-wide registry.

Money fields (`reserved`, `accounted`, `attempts`, `unbilled_attempt`, `settling`) are the Accountant's
(policies/budget/accountant.py): only it writes them.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

STATE_KEY = "synqra"  # the metadata key the state travels under

# Why a call was made: the client's own call, or an extra one synqra made for it.
CallKind = Literal["client", "fallback", "escalation", "judge"]


@dataclass(eq=False)
class RouteInfo:
    """The router's decision for a routed request (x-synqra-route-* headers, logs)."""

    score: float
    ms: float
    scorer: str | None
    reason: str
    shadow: str | None = None  # shadow mode: the tier the router chose while the incumbent served
    version: str | None = None  # the router version that decided (x-synqra-router-version)
    # The tier the router would have picked without budget pressure, when the pressure picked a cheaper one: what
    # the request would have cost un-pressured, so the quality gate escalates straight to it and never above it.
    unpressured: str | None = None


@dataclass(eq=False)
class QualityInfo:
    """The quality gate's side of a request it validates."""

    request: dict[str, Any] = field(default_factory=dict)  # the client's parameters, to repeat on extra calls
    strip_logprobs: bool = False  # synqra asked the local model for logprobs the client did not ask for
    score: float | None = None  # the first answer's score
    action: str | None = None
    escalated: str | None = None  # "false", or the chain of tiers ("local-llama>deepseek-chat")
    note: str | None = None  # why a non-passing answer was delivered (budget_stopped, escalate_failed...)


@dataclass(eq=False)
class WorstCase:
    """A paid call's worst case as usage: its prompt's tokens (at the price they may be billed) and its whole output
    allowance. `prompt_tokens` may be a function that counts them: the reservation held an upper bound of the prompt
    (policies/budget/worst_case.held_prompt_tokens), and the exact count is taken only if a row is booked at it."""

    prompt_tokens: int | Callable[[], int]
    completion_tokens: int

    def usage(self) -> dict[str, int]:
        if callable(self.prompt_tokens):
            self.prompt_tokens = self.prompt_tokens()
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens}


@dataclass(eq=False)
class RequestState:
    request_id: str
    call_type: str = ""  # LiteLLM's call type (acompletion, anthropic_messages, aresponses...)
    requested_model: str = ""  # the name the client sent
    # The model name the client sent: a model_list name is the model it sized its output allowance for; every other
    # model answering (and every model answering for an alias, a Claude Code name or `auto`) has the allowance fitted
    # to it (Accountant.fit_allowance).
    named_model: str = ""
    route: str = ""  # the model_list name serving this call (updated when a fallback or escalation answers)
    key_hash: str | None = None
    user: str | None = None
    tag: str | None = None  # the agent or app the spend is booked to (policies/budget/tags.py); None: untagged
    kind: CallKind = "client"
    parent_id: str | None = None
    # A client request counts once (requests, the all-Claude baseline); its extra calls add cost only. The first
    # paid call after local answers takes the request out of the local share.
    counts_request: bool = True
    leaves_local: bool = False
    stream: bool = False
    # A text completion stream whose usage synqra asked for and the client did not: its usage-only chunk is not relayed
    # (LiteLLM's own strip flag works on chat chunks only).
    hide_stream_usage: bool = False
    hour_cache: bool = False  # a cache_control asks Anthropic's one-hour TTL: cache writes at its price
    # The prompt's share up to its last cache_control (api_shapes.cache_breakpoints): what the all-Claude baseline
    # reads from Claude's cache when the model that answered cached nothing.
    cache_prefix_share: float = 0.0
    # The output allowance as the client sent it (policies/budget/worst_case.asked_allowance): each model a call goes
    # to is fitted from it, not from what an earlier model's fit left in the request.
    asked_allowance: dict[str, Any] = field(default_factory=dict)
    routed: bool = False  # synqra chose the model, so the quality gate validates the answer
    routing: RouteInfo | None = None
    budget_note: str | None = None  # "stopped": paid calls stopped this month, served locally
    route_note: str | None = None  # a model passed over because it cannot answer now, and why
    fallback: str | None = None  # "failed>answered" when a LiteLLM fallback answered
    # "named>standing-in" when the model asked for cannot answer now (no API key) and its configured fallback was put
    # in its place before the call: the call is the stand-in's own, settled as any call (not a LiteLLM fallback's row).
    stand_in: str | None = None
    # A stream's provider has begun answering (part of the answer came through): no other model may continue it.
    relayed: bool = False
    quality: QualityInfo | None = None
    # --- money, written by the Accountant only ---
    reserved: bool = False
    accounted: bool = False
    # LiteLLM fallbacks tried, by model group, and retries of this call's own group ("<group>#retry<n>")
    attempts: dict[str, RequestState] = field(default_factory=dict)
    route_attempts: int = 0  # deployment calls LiteLLM has started on `route` (more than 1: retries)
    unbilled_attempt: RequestState | None = None  # a streamed fallback that answered, awaiting its usage
    failures_seen: int = 0  # LiteLLM's failed attempts (its `previous_models`) already accounted for
    # The call's worst case, as usage (its prompt, the whole output allowance): what a call that timed out after it
    # was sent is recorded at. None for a free model.
    worst_case: WorstCase | None = None
    timeouts: int = 0  # attempts of this call that timed out (each recorded as a row of its own)
    settling: asyncio.Future[bool] | None = field(default=None, repr=False)

    @classmethod
    def new(cls, **fields: Any) -> RequestState:
        return cls(request_id="synqra-" + uuid.uuid4().hex, **fields)

    def child(
        self, kind: CallKind, route: str, suffix: str, *, counts_request: bool, leaves_local: bool
    ) -> RequestState:
        """The state of an extra call made for this request: same client, key, tag and call type, its own id."""
        return RequestState(
            request_id=f"{self.request_id}:{suffix}",
            call_type=self.call_type,
            requested_model=self.requested_model,
            named_model=self.named_model,
            route=route,
            key_hash=self.key_hash,
            user=self.user,
            tag=self.tag,
            kind=kind,
            parent_id=self.request_id,
            counts_request=counts_request,
            leaves_local=leaves_local,
            hour_cache=self.hour_cache,  # a fallback, retry or escalation sends the same cache_control
            cache_prefix_share=self.cache_prefix_share,
            asked_allowance=self.asked_allowance,
        )

    # LiteLLM copies request metadata (deep copies included): every copy is this live state.
    def __copy__(self) -> RequestState:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> RequestState:
        return self
