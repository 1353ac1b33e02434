"""synqra's LiteLLM hooks: the seam where request -> route -> budget -> call -> validate -> account runs.

Registered in litellm_config.yaml (`litellm_settings.callbacks: proxy.hooks.synqra_hooks`).
LiteLLM checks `type(cb).__dict__` for some hook names, so every hook is defined on this class itself.
The class only sequences the policies: decisions live in `policies/`, money in the Accountant
(`rt.accounts`), a request's state in its RequestState (proxy/litellm_state.py says where LiteLLM keeps it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import Any

import httpx
import litellm
from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger
from litellm.proxy.common_utils.openai_error_payload import openai_error_type_for_status

from policies.budget.accountant import BudgetRefused, key_hash
from policies.budget.tags import BadTag, request_tag
from policies.budget.worst_case import asked_allowance
from policies.common.api_answers import (
    answer_of,
    cache_tokens_of,
    checked_usage,
    stream_answer,
    usage_of,
    usage_only,
)
from policies.common.api_shapes import (
    CHAT_CALLS,
    EMBEDDING_CALLS,
    GENERATION_CALLS,
    TEXT_CALLS,
    chat_view,
    question_of,
)
from policies.common.request_checks import (
    capability_error,
    capability_param,
    check_context_window,
    check_dimensions,
    check_embedding_input,
    check_extra_body,
    check_forwarded_headers,
    check_max_tokens,
    check_request,
    check_unpriced_extras,
    stored_context_error,
    unknown_fallback,
    unknown_model,
)
from policies.common.request_state import RequestState, RouteInfo
from policies.routing.tiers import unmet
from proxy import metrics
from proxy.litellm_state import (
    attempt_group,
    broken_attempts,
    client_error_behind,
    is_bridge,
    never_sent,
    new_state,
    served_group,
    state_in,
    state_of,
    stream_continued_elsewhere,
)
from proxy.reasoning_fit import fit_reasoning_effort
from proxy.runtime import Runtime, get_runtime
from proxy.stream_relay import StreamRelay, hang_up, record_in_background

log = logging.getLogger("synqra.hooks")

# A deployment attempt that timed out (LiteLLM's timeout, or the client's `timeout` / x-litellm-timeout).
TIMEOUTS = (litellm.Timeout, httpx.TimeoutException, asyncio.TimeoutError)


class _RequestError(HTTPException):
    """A refusal in the API's own error format. LiteLLM builds the chat, Messages, Responses and embeddings routes'
    error from `detail`, its /v1/completions handler from the exception's `message`, `type` and `param`: without them
    a text-completion client got the message "400: {'error': \"...\"}" of type "None"."""

    def __init__(self, status: int, message: str, param: str | None = None) -> None:
        super().__init__(status_code=status, detail={"error": message})
        self.message = message
        self.type = openai_error_type_for_status(status)
        self.param = param  # the request parameter refused (OpenAI's `error.param`; LiteLLM reads it on every route)


def _http_error(status: int, message: str, param: str | None = None) -> HTTPException:
    return _RequestError(status, message, param)


def ask_stream_usage(data: dict[str, Any], call_type: str) -> bool:
    """Ask every deployment of a stream (fallbacks too) for its usage: without it the stream is recorded at LiteLLM's
    token estimate, not at what the provider billed. LiteLLM asks on chat only, and only when every deployment of the
    model the client named takes `stream_options` (Claude's do not: its GPT-4o fallback went unasked). A chat client
    that did not ask gets no usage chunk: LiteLLM's own flag strips it on chat, the streaming hook on text completions.
    Returns whether synqra asked (the client did not)."""
    opts = data.get("stream_options")
    opts = opts if isinstance(opts, dict) else {}
    if opts.get("include_usage") is True:
        return False
    data["stream_options"] = {**opts, "include_usage": True}
    if call_type in CHAT_CALLS:
        data["_litellm_strip_stream_usage"] = True
    return True


class SynqraHooks(CustomLogger):
    # --- request -> route -> budget ------------------------------------------------------------------

    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict:
        rt = get_runtime()
        cfg = rt.config
        state = new_state(data)
        if call_type not in GENERATION_CALLS | EMBEDDING_CALLS:
            return data
        state.call_type = call_type
        state.key_hash = key_hash(getattr(user_api_key_dict, "api_key", None))
        if data.get("user"):
            state.user = str(data["user"])
        try:
            state.tag = request_tag(data)  # the agent or app its spend is booked to
        except BadTag as e:
            raise _http_error(400, str(e)) from e
        requested = str(data.get("model", ""))
        state.requested_model = requested
        resolved = cfg.resolve_requested(requested)  # e.g. Claude Code's claude-opus-4-* names
        if resolved != requested:
            data["model"] = resolved
        # before routing: extra_body may not change what is checked and priced
        problem = check_extra_body(data) or check_forwarded_headers(data)
        if problem:
            raise _http_error(400, problem)
        routed = False
        if call_type in GENERATION_CALLS:
            view = chat_view(data, call_type)  # completions and Responses API requests read as chat
            for problem in (check_request(data, view, call_type), check_max_tokens(data), check_unpriced_extras(data)):
                if problem:
                    raise _http_error(400, problem)
            if rt.router.handles(requested) or rt.router.handles(resolved):
                routed = True
                await self._route(rt, state, data, view)
                problem = stored_context_error(requested, view, rt.model_caps, cfg.canonical(str(data["model"])))
                if problem:  # no tier keeps the conversation: LiteLLM would send the turn without it
                    raise _http_error(400, problem)
            else:  # asked for by name: what that model cannot do is refused before any money moves
                caps = rt.model_caps.get(cfg.canonical(resolved))
                why = unmet(caps, rt.router.constraints(view), unknown_is_no=False) if caps else None
                problem = capability_error(cfg.canonical(resolved), why, data)
                if problem:
                    raise _http_error(400, problem, capability_param(why, data))
            entry = cfg.model(cfg.canonical(str(data["model"])))
            if entry is not None:
                problem = check_context_window(view, entry.model_name, entry.model_info.get("max_input_tokens"))
                if problem:
                    raise _http_error(400, problem)
        else:
            if resolved == rt.router.settings.virtual_model:  # "auto" embeds locally: there is one embedding tier
                data["model"] = cfg.synqra.backends.embed.model_alias
            entry = cfg.model(cfg.canonical(str(data["model"])))
            problem = check_embedding_input(data) or check_dimensions(data, entry.model_info if entry else {})
            if problem:
                raise _http_error(400, problem)
        served = cfg.canonical(str(data["model"]))
        if cfg.model(served) is None:  # refused here: LiteLLM would route provider strings, ids and lists
            raise _http_error(400, unknown_model(requested, cfg.model_names))
        problem = unknown_fallback(data, lambda m: cfg.model(cfg.canonical(m)) is not None, cfg.model_names)
        if problem:
            raise _http_error(400, problem)
        why = rt.availability.reason(served)
        if why:  # e.g. no API key: its configured fallback answers, or the client learns what to set
            served = self._stand_in(rt, state, data, served, why)
        state.route = served
        if call_type in GENERATION_CALLS:
            state.asked_allowance = asked_allowance(data)  # what fallbacks and escalations are fitted from
        # The name as sent: a model_list name is the model the client sized its allowance for; an alias of one
        # (claude-sonnet-4-5) is fitted like a Claude Code name or `auto`'s tier, as the README says.
        state.named_model = requested
        rt.accounts.fit_allowance(data, served, state.named_model)  # before its reservation is sized
        try:
            await rt.accounts.admit(state, data, served, routed)
        except BudgetRefused as e:
            raise _http_error(e.status, e.message) from e
        # The quality gate judges answers from models synqra picked: not the incumbent a shadow-mode
        # request is served by, unless the budget moved it to the local model.
        shadow = state.routing is not None and state.routing.shadow is not None
        state.routed = routed and (not shadow or state.budget_note == "stopped")
        state.stream = bool(data.get("stream"))
        if state.stream and call_type in TEXT_CALLS | CHAT_CALLS:
            state.hide_stream_usage = ask_stream_usage(data, call_type) and call_type in TEXT_CALLS
        if rt.gate.applies(state):
            rt.gate.prepare(state, data)
        return data

    @staticmethod
    def _stand_in(rt: Runtime, state: RequestState, data: dict[str, Any], model: str, why: str) -> str:
        """The first model of `model`'s fallback chain that can answer, put in its place; else a 400 naming
        what is missing (never LiteLLM's cooldown message)."""
        cfg = rt.config
        chain = cfg.fallback_chain(model)
        for candidate in chain:
            if rt.availability.reason(candidate) is None:
                data["model"] = candidate
                state.route_note = f"{model} unavailable: {why}"
                state.stand_in = f"{model}>{candidate}"
                return candidate
        tried = "".join(f"; fallback {c} unavailable: {rt.availability.reason(c)}" for c in chain)
        raise _http_error(400, f"model '{model}' is unavailable: {why} (set it and restart the proxy){tried}")

    async def _route(self, rt: Runtime, state: RequestState, data: dict[str, Any], view: dict[str, Any]) -> None:
        """Pick the tier for a routed request; thriftier as the month's money runs out; never a tier that
        cannot answer now (no API key)."""
        guard = rt.budget
        stopped = guard.is_stopped()
        t0 = time.perf_counter()
        unavailable = rt.availability.unavailable(rt.router.settings.tiers)
        decision = await rt.router.adecide(
            view, budget_pressure=1.0 if stopped else guard.pressure(), unavailable=unavailable
        )
        state.route_note = decision.note
        seconds = time.perf_counter() - t0
        settings = rt.router.settings
        metrics.observe_route(decision.tier, settings.mode, seconds)
        data["model"] = decision.tier
        state.routing = RouteInfo(
            round(decision.score, 4),
            round(seconds * 1000, 2),
            decision.features.get("scorer"),
            decision.reason,
            version=rt.learning.version,
            unpressured=decision.unpressured,
        )
        rt.learning.route(state, view, decision, settings.mode)
        if settings.mode == "shadow":  # decided and logged; served as without synqra
            state.routing.shadow = decision.tier
            cfg = rt.config
            target = settings.shadow_target(
                cfg.resolve_requested(state.requested_model), lambda m: cfg.model(cfg.canonical(m)) is not None
            )
            data["model"] = cfg.canonical(target)
            log.info("shadow: router chose %s, serving %s", decision.tier, data["model"])
            if not stopped:  # when stopped the local model serves it live and the gate's verdict is logged
                rt.shadow_eval.maybe_start(state, view, decision)
        if stopped:  # paid calls are stopped this month: auto is served locally, and says so
            state.budget_note = "stopped"
            if not guard.is_free(data["model"]):
                data["model"] = rt.config.synqra.backends.llama.model_alias

    # --- call: every deployment attempt, LiteLLM fallbacks included ----------------------------------

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        rt = get_runtime()
        state, group = attempt_group(rt.config, kwargs)
        if state is not None and group:
            if group != state.route:
                stop = client_error_behind(kwargs) or stream_continued_elsewhere(state, group)
                if stop is not None:  # a client error is the client's: no paid tier retries it
                    raise stop
                why = rt.availability.reason(group)
                if why:  # LiteLLM moves on to the next fallback (an auth error cools nothing down)
                    raise litellm.AuthenticationError(
                        message=f"{group} unavailable: {why}", llm_provider="synqra", model=group
                    )
            rt.accounts.fit_allowance(kwargs, group, state.named_model, state.asked_allowance)  # e.g. a fallback
            entry = rt.config.model(group)
            fitted = fit_reasoning_effort(kwargs, str(entry.litellm_params["model"])) if entry else None
            if fitted:
                log.info("%s: %s", state.request_id, fitted)
            for attempt, broken in broken_attempts(rt.config, state, kwargs):  # billed, though nothing came through
                await rt.accounts.attempt_broke(state, broken, attempt, kwargs)
            if is_bridge(state, call_type):
                # A bridge inside this attempt (a Responses call LiteLLM makes through chat completions): the
                # attempt is reserved already, by its own API's request; read as a retry it held the model's ceiling.
                return None
            try:
                await rt.accounts.reserve_attempt(state, group, kwargs)
            except BudgetRefused as e:
                raise _http_error(e.status, e.message) from e
        return None

    async def async_post_call_success_deployment_hook(self, request_data: dict, response: Any, call_type: Any) -> Any:
        # The deployment that answered is known exactly here: settle a fallback before anything logs it.
        rt = get_runtime()
        state, group = attempt_group(rt.config, request_data)
        # Without retries or fallbacks reserved there is nothing to settle here (attempt_answered is a no-op):
        # the usage is not read (~80k instructions a request).
        if state is not None and group and state.attempts:
            await rt.accounts.attempt_answered(state, group, usage_of(response))
        return None

    async def async_post_call_failure_deployment_hook(
        self, request_data: Mapping[str, Any], exception: Exception, call_type: Any, fallback_depth: int | None = None
    ) -> None:
        # Called per failed deployment attempt, with that attempt's own kwargs, before LiteLLM moves on; and again
        # by each bridge inside it (a Responses or Messages call LiteLLM makes through chat completions), whose
        # call type is not the API the call came in by. A non-streamed call that timed out was sent: its provider
        # bills the answer it goes on generating; one whose connection never opened was not sent, and costs nothing.
        if not isinstance(exception, TIMEOUTS) or never_sent(exception):
            return None
        rt = get_runtime()
        state, group = attempt_group(rt.config, dict(request_data))
        streamed = state is not None and (state.stream or bool(request_data.get("stream")))
        if state is None or not group or streamed or is_bridge(state, call_type):
            return None
        await rt.accounts.attempt_timed_out(state, group)
        return None

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Called per failed deployment attempt: give back the primary's reservation early
        # (a fallback may still be running on another model group; see Accountant.attempt_failed).
        rt = get_runtime()
        state, group = attempt_group(rt.config, kwargs)
        status = getattr(kwargs.get("exception"), "status_code", None)
        if group and status in (401, 403) and not rt.accounts.is_free(group):
            rt.availability.auth_failed(group, int(status))  # a refused key: set aside, not cooled down
        if state is not None:
            await rt.accounts.attempt_failed(state, group)

    async def async_post_call_failure_hook(
        self,
        request_data: dict,
        original_exception: Exception,
        user_api_key_dict: Any,
        traceback_str: str | None = None,
    ) -> Any:
        # The request failed as a whole (every fallback too): release whatever it still holds.
        state = state_of(request_data)
        if state.call_type:
            await get_runtime().accounts.release_all(state)
        return None

    # --- validate -> account -------------------------------------------------------------------------

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        # Settle before the client gets its answer: a completed request is in the ledger
        # even if the process dies right after (the logging event below comes later).
        rt = get_runtime()
        state = state_of(data)
        if not state.call_type:
            return None
        usage = usage_of(response)
        if state.fallback is None and usage is not None:  # a fallback that answered has its own row
            await rt.accounts.settle(state, usage)
        delivered = await rt.gate.after_response(state, response) if rt.gate.applies(state) else None
        rt.learning.outcome(state)
        if state.routing is not None and state.routing.shadow is not None:  # the incumbent's answer, for the judge
            rt.learning.offer(
                state,
                "served",
                question_of(chat_view(data, state.call_type)),
                answer_of(response, state.call_type).text,
            )
        return delivered

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Streams (and anything the post-call hook could not price) are settled here, once LiteLLM has the
        # final usage. This task runs alongside the post-call hook: the Accountant lets only one of them write.
        state = state_in(kwargs)
        if state is None:
            return
        if state.accounted and not state.attempts and state.unbilled_attempt is None:
            return  # settled already (the post-call hook, mostly), no attempt left to bill: the steps below are no-ops
        rt = get_runtime()
        slo = kwargs.get("standard_logging_object") or {}
        reported = {key: int(slo.get(key) or 0) for key in ("prompt_tokens", "completion_tokens")}
        usage = checked_usage(reported, kwargs, response_obj)  # each missing figure at LiteLLM's count, never free
        usage = {
            **usage,
            **cache_tokens_of(response_obj),
        }  # cached prompt tokens: billed above or below the input price
        # LiteLLM runs the success-deployment hook for non-streamed answers only: a stream that a fallback
        # served is settled here, where the deployment that answered is known (a no-op when the hook has
        # already settled it).
        _, group = attempt_group(rt.config, kwargs)
        if group:
            await rt.accounts.attempt_answered(state, group, usage)
        await rt.accounts.settle_unbilled_attempt(state, usage)
        if state.fallback is not None:
            return
        # The deployment this event is about: the state's route may since have moved on (the quality gate
        # sets it to the tier whose answer it delivers).
        served = group or state.route or rt.config.canonical(str(slo.get("model_group") or kwargs.get("model")))
        await rt.accounts.settle(state, usage, served)

    # --- what the client learns ----------------------------------------------------------------------

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        state = state_of(data)
        headers = {"x-synqra-request-id": state.request_id}
        if state.route:
            headers["x-synqra-route"] = state.route
            # A stream's fallback is settled only once it ends; the deployment that opened it is known now
            # (a non-streamed one has set state.fallback already).
            served = None
            if state.stream and state.fallback is None:
                served = served_group(get_runtime().config, (litellm_call_info or {}).get("model_id"))
            if served and served != state.route:
                headers["x-synqra-route"], headers["x-synqra-fallback"] = served, f"{state.route}>{served}"
        r = state.routing
        if r is not None:
            headers["x-synqra-route-score"] = f"{r.score:.4f}"
            headers["x-synqra-route-ms"] = str(r.ms)
            if r.shadow is not None:
                headers["x-synqra-route-shadow"] = r.shadow
            if r.version is not None:
                headers["x-synqra-router-version"] = r.version
        if state.budget_note:
            headers["x-synqra-budget"] = state.budget_note
        if state.route_note:
            headers["x-synqra-route-note"] = state.route_note
        moved = state.fallback or state.stand_in
        if moved:
            headers["x-synqra-fallback"] = moved
        if state.routed:
            q = state.quality
            if state.stream and get_runtime().gate.applies(state, served) and (q is None or q.escalated is None):
                # Headers leave before a buffered stream is scored: the verdict is in the logs and the ledger.
                headers["x-synqra-quality-score"] = headers["x-synqra-escalated"] = "pending"
            else:
                score = q.score if q else None
                headers["x-synqra-quality-score"] = "unscored" if score is None else f"{score:.4f}"
                headers["x-synqra-escalated"] = (q.escalated if q else None) or "false"
            if q is not None and q.note:
                headers["x-synqra-quality-note"] = q.note
        return headers

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any, request_data: dict):
        rt = get_runtime()
        state = state_of(request_data)
        shadow = state.routing is not None and state.routing.shadow is not None
        relay = StreamRelay(response, state)  # what the provider sent: billed even if the stream ends short
        # The model group whose stream this is: a LiteLLM fallback's answer is validated as that tier's.
        served = served_group(rt.config, (getattr(response, "_hidden_params", None) or {}).get("model_id"))
        try:
            items = (
                rt.gate.stream(state, relay.items(), served)
                if state.call_type and rt.gate.applies(state, served)
                else relay.items()
            )
            async for item in items:
                if not (state.hide_stream_usage and usage_only(item)):  # recorded by the relay, not for the client
                    yield item
        except Exception as e:
            # This hook gets the provider's response: its stream had opened, so the provider bills the call even when
            # it broke before a chunk reached the proxy (LiteLLM's text completions fail so, on a bare "Connection
            # error", when a fast stream's words and break come in one burst).
            recording = relay.record_if_cut_short(rt.config, rt.accounts, state, request_data, "broke off", e, True)
            record_in_background(recording)
            rt.learning.outcome(state)  # the tier that served, as far as it got
            raise
        except BaseException:  # cancelled or closed: the client left mid-stream, or before its first chunk
            # The tier that served what was sent: without it the row named no tier, and feedback on it was read as
            # about the tier chosen (in shadow mode the local tier, which never answered).
            rt.learning.outcome(state)
            left = "was abandoned by its client"
            # The provider opened this stream (this hook gets its response): a client gone before the first chunk
            # leaves it billed for the prompt, and the call's reservation must not stay held.
            recording = relay.record_if_cut_short(rt.config, rt.accounts, state, request_data, left, opened=True)
            record_in_background(recording)
            # Hang up on the provider now: it bills every token it generates until it sees the connection close,
            # and the recording counts what was relayed.
            record_in_background(hang_up(response))
            raise
        rt.learning.outcome(state)
        if shadow and relay.sent:
            rt.learning.offer(
                state,
                "served",
                question_of(chat_view(request_data, state.call_type)),
                stream_answer(relay.sent, state.call_type).text,  # the incumbent's answer, for the judge
            )


synqra_hooks = SynqraHooks()
