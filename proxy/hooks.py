"""synqra's LiteLLM hooks: the seam where request -> route -> budget -> call -> validate -> account runs.

Registered in litellm_config.yaml (`litellm_settings.callbacks: proxy.hooks.synqra_hooks`).
LiteLLM checks `type(cb).__dict__` for some hook names, so every hook is defined
on this class itself. The class only sequences the policies; decisions live in
`policies/` and state in `proxy.runtime`.
"""
from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import HTTPException
from litellm.integrations.custom_logger import CustomLogger

from policies.budget import hook_steps as budget
from proxy import fallbacks, metrics
from policies.common.api_shapes import EMBEDDING_CALLS, GENERATION_CALLS, chat_view
from policies.routing.tiers import unmet
from proxy.request_checks import (
    capability_error,
    check_context_window,
    check_dimensions,
    check_embedding_input,
    check_max_tokens,
    check_request,
)
from proxy.request_state import (
    account_once,
    estimated_usage,
    new_request_state,
    request_state,
    state_from_log_kwargs,
    usage_of,
)
from proxy.runtime import get_runtime

log = logging.getLogger("synqra.hooks")

def _http_error(status: int, message: str) -> HTTPException:
    return HTTPException(status_code=status, detail={"error": message})


class SynqraHooks(CustomLogger):
    async def async_pre_call_hook(self, user_api_key_dict: Any, cache: Any, data: dict, call_type: str) -> dict:
        rt = get_runtime()
        cfg = rt.config
        state = new_request_state(data)
        if call_type not in GENERATION_CALLS | EMBEDDING_CALLS:
            return data
        state["call_type"] = call_type
        state["key_hash"] = budget.key_hash(getattr(user_api_key_dict, "api_key", None))
        if data.get("user"):
            state["user"] = str(data["user"])
        requested = str(data.get("model", ""))
        state["requested_model"] = requested
        resolved = cfg.resolve_requested(requested)  # e.g. Claude Code's claude-opus-4-* names
        if resolved != requested:
            data["model"] = resolved
        routed = False
        if call_type in GENERATION_CALLS:
            view = chat_view(data, call_type)  # completions and Responses API requests read as chat
            for problem in (check_request(data, view, call_type), check_max_tokens(data)):
                if problem:
                    raise _http_error(400, problem)
            if rt.router.handles(requested) or rt.router.handles(resolved):
                routed = True
                await self._route(rt, state, data, view)
            else:  # asked for by name: what that model cannot do is refused before any money moves
                caps = rt.model_caps.get(cfg.canonical(resolved))
                why = unmet(caps, rt.router.constraints(view), unknown_is_no=False) if caps else None
                problem = capability_error(cfg.canonical(resolved), why, data)
                if problem:
                    raise _http_error(400, problem)
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
        state["route"] = served
        if cfg.model(served) is None:
            return data  # unknown model: LiteLLM answers 400 with the list to choose from
        try:
            await budget.admit(rt.budget, state, data, served, cfg.synqra.backends.llama.model_alias, routed)
        except budget.BudgetRefused as e:
            raise _http_error(e.status, e.message) from e
        # The quality gate judges answers from models synqra picked: not the incumbent a shadow-mode
        # request is served by, unless the budget moved it to the local model.
        state["routed"] = routed and ("route_shadow" not in state or state.get("budget") == "stopped")
        state["stream"] = bool(data.get("stream"))
        if rt.gate.applies(state):
            rt.gate.prepare(state, data)
        return data

    async def _route(self, rt: Any, state: dict[str, Any], data: dict[str, Any], view: dict[str, Any]) -> None:
        """Pick the tier for a routed request; thriftier as the month's money runs out."""
        guard = rt.budget
        stopped = guard.is_stopped()
        t0 = time.perf_counter()
        decision = await rt.router.adecide(view, budget_pressure=1.0 if stopped else guard.pressure())
        seconds = time.perf_counter() - t0
        state["route_ms"] = round(seconds * 1000, 2)
        settings = rt.router.settings
        metrics.observe_route(decision.tier, settings.mode, seconds)
        data["model"] = decision.tier
        state["route_score"] = round(decision.score, 4)
        state["route_scorer"] = decision.features.get("scorer")
        state["route_reason"] = decision.reason
        if settings.mode == "shadow":  # decided and logged; served as without synqra
            state["route_shadow"] = decision.tier
            cfg = rt.config
            target = settings.shadow_target(cfg.resolve_requested(state["requested_model"]), lambda m: cfg.model(cfg.canonical(m)) is not None)
            data["model"] = cfg.canonical(target)
            log.info("shadow: router chose %s, serving %s", decision.tier, data["model"])
            if not stopped:  # when stopped the local model serves it live and the gate's verdict is logged
                rt.shadow_eval.maybe_start(state, view, decision)
        if stopped:  # paid calls are stopped this month: auto is served locally, and says so
            state["budget"] = "stopped"
            if not guard.is_free(data["model"]):
                data["model"] = rt.config.synqra.backends.llama.model_alias

    async def async_post_call_success_hook(self, data: dict, user_api_key_dict: Any, response: Any) -> Any:
        # Settle before the client gets its answer: a completed request is in the ledger
        # even if the process dies right after (the logging event below comes later).
        rt = get_runtime()
        state = request_state(data)
        if "call_type" not in state:
            return None
        usage = usage_of(response)
        if not fallbacks.apply(state) and usage is not None:
            await account_once(state, lambda: budget.account(rt.budget, state, state["call_type"], usage, state["route"]))
        if rt.gate.applies(state):
            return await rt.gate.after_response(state, response)
        return None

    async def async_pre_call_deployment_hook(self, kwargs: dict[str, Any], call_type: Any) -> dict | None:
        # Every deployment attempt passes here, LiteLLM fallbacks included: budget them.
        state, group = fallbacks.attempt_group(get_runtime(), kwargs)
        if state is not None and group:
            if group != state.get("route"):
                stop = fallbacks.client_error_behind(kwargs)
                if stop is not None:  # a client error is the client's: no paid tier retries it
                    raise stop
            try:
                await fallbacks.before_attempt(get_runtime(), state, group, kwargs)
            except budget.BudgetRefused as e:
                raise _http_error(e.status, e.message) from e
        return None

    async def async_post_call_success_deployment_hook(self, request_data: dict, response: Any, call_type: Any) -> Any:
        # The deployment that answered is known exactly here: settle a fallback before anything logs it.
        state, group = fallbacks.attempt_group(get_runtime(), request_data)
        if state is not None and group and "call_type" in state:
            await fallbacks.settle(get_runtime(), state, group, usage_of(response))
        return None

    async def async_log_success_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Streams (and anything the post-call hook could not price) are settled here, once
        # LiteLLM has the final usage. This task runs alongside the post-call hook: account_once
        # lets only one of them write (the ledger's request-id key would make a second one a no-op).
        state = state_from_log_kwargs(kwargs)
        if state is None or "call_type" not in state:
            return
        rt = get_runtime()
        slo = kwargs.get("standard_logging_object") or {}
        usage = {"prompt_tokens": slo.get("prompt_tokens") or 0, "completion_tokens": slo.get("completion_tokens") or 0}
        if not any(usage.values()):  # a paid answer is never recorded as free for want of a usage report
            usage = estimated_usage(kwargs, response_obj) or usage
        # LiteLLM runs the success-deployment hook for non-streamed answers only: a stream that a
        # fallback served is settled here, where the deployment that answered is known (a no-op
        # when the hook has already settled it).
        _, group = fallbacks.attempt_group(rt, kwargs)
        if group:
            await fallbacks.settle(rt, state, group, usage)
        child = fallbacks.take_unbilled(state)
        if child is not None:
            await budget.account(rt.budget, child, state["call_type"], usage, child["route"])
        if fallbacks.apply(state):
            return
        served = state.get("route") or slo.get("model_group") or str(kwargs.get("model"))
        await account_once(state, lambda: budget.account(rt.budget, state, state["call_type"], usage, served))

    async def async_log_failure_event(self, kwargs: dict, response_obj: Any, start_time: Any, end_time: Any) -> None:
        # Called per failed deployment attempt: give back the primary's reservation early
        # (a fallback may still be running on another model group; see release_attempt).
        state, group = fallbacks.attempt_group(get_runtime(), kwargs)
        if state is not None:
            await fallbacks.release_attempt(get_runtime(), state, group)

    async def async_post_call_failure_hook(
        self, request_data: dict, original_exception: Exception, user_api_key_dict: Any, traceback_str: str | None = None
    ) -> Any:
        # The request failed as a whole (every fallback too): release whatever it still holds.
        state = request_state(request_data)
        if "call_type" in state:
            await fallbacks.release_all(get_runtime(), state)
        return None

    async def async_post_call_response_headers_hook(
        self,
        data: dict,
        user_api_key_dict: Any,
        response: object,
        request_headers: dict[str, str] | None = None,
        litellm_call_info: dict[str, object] | None = None,
    ) -> dict[str, str] | None:
        state = request_state(data)
        headers = {"x-synqra-request-id": state["request_id"]}
        if "route" in state:
            headers["x-synqra-route"] = state["route"]
            # A stream's fallback is settled only once it ends; the deployment that opened it is known now
            # (a non-streamed one has set state["fallback"] already).
            served = None
            if state.get("stream") and "fallback" not in state:
                served = fallbacks.served_group(get_runtime(), (litellm_call_info or {}).get("model_id"))
            if served and served != state["route"]:
                headers["x-synqra-route"], headers["x-synqra-fallback"] = served, f"{state['route']}>{served}"
        if "route_score" in state:
            headers["x-synqra-route-score"] = f"{state['route_score']:.4f}"
            headers["x-synqra-route-ms"] = str(state["route_ms"])
        if "route_shadow" in state:
            headers["x-synqra-route-shadow"] = state["route_shadow"]
        if "budget" in state:
            headers["x-synqra-budget"] = state["budget"]
        if "fallback" in state:
            headers["x-synqra-fallback"] = state["fallback"]
        if state.get("routed"):
            if state.get("stream") and get_runtime().gate.applies(state) and "escalated" not in state:
                # Headers leave before a buffered stream is scored: the verdict is in the logs and the ledger.
                headers["x-synqra-quality-score"] = headers["x-synqra-escalated"] = "pending"
            else:
                score = state.get("quality_score")
                headers["x-synqra-quality-score"] = "unscored" if score is None else f"{score:.4f}"
                headers["x-synqra-escalated"] = state.get("escalated", "false")
            if "quality_note" in state:
                headers["x-synqra-quality-note"] = state["quality_note"]
        return headers

    async def async_post_call_streaming_iterator_hook(self, user_api_key_dict: Any, response: Any, request_data: dict):
        rt = get_runtime()
        state = request_state(request_data)
        if "call_type" in state and rt.gate.applies(state):
            async for item in rt.gate.stream(state, response):
                yield item
            return
        async for item in response:
            yield item


synqra_hooks = SynqraHooks()
