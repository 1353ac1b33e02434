"""Budgeted LiteLLM fallbacks: when a model fails, the next configured model answers, and pays its way.

LiteLLM's fallbacks (router_settings.fallbacks) retry a failed call on another
model group without passing through the proxy's pre-call hook, so a paid fallback
would bypass any budget check there (a known LiteLLM bug class). Every deployment
attempt does pass through `async_pre_call_deployment_hook`; there a fallback to
another model group reserves its own worst-case cost as a call of its own, or is
refused when the month's money is gone. When the answer comes back, the fallback
that served is settled and every other reservation of the request is released.
"""
from __future__ import annotations

from typing import Any

import logging
from collections import OrderedDict

from policies.budget import hook_steps as budget
from proxy.request_state import mark_accounted

log = logging.getLogger("synqra.fallbacks")

_pending: dict[str, dict[str, dict[str, Any]]] = {}  # request id -> model group -> child state
# Requests a fallback answered (the logging event may carry a stale copy of the state).
_served_by_fallback: OrderedDict[str, tuple[str, str]] = OrderedDict()  # request id -> (failed, served)
_REMEMBER = 10_000
_unbilled: dict[str, dict[str, Any]] = {}  # request id -> the fallback child awaiting its usage


def take_unbilled(state: dict[str, Any]) -> dict[str, Any] | None:
    return _unbilled.pop(state.get("request_id", ""), None)


def _metadata(kwargs: dict[str, Any]) -> dict[str, Any]:
    for src in (kwargs, kwargs.get("litellm_params") or {}):
        for key in ("metadata", "litellm_metadata"):
            md = src.get(key)
            if isinstance(md, dict) and isinstance(md.get("synqra"), dict):
                return md
    return {}


# A backend's answer to a bad request: the client's to fix, not a reason to pay another tier (LiteLLM falls
# back on 404 and, without fallback_on_unsupported_params, on 400). Provider faults (429, 5xx, timeouts,
# connection errors, auth) still fall back.
CLIENT_ERRORS = ("BadRequestError", "UnsupportedParamsError", "NotFoundError", "UnprocessableEntityError")


def client_error_behind(kwargs: dict[str, Any]) -> Exception | None:
    """On a fallback attempt: the client error that made LiteLLM fall back, as the error to answer with, or None.

    LiteLLM records each failed attempt in the request metadata (`previous_models`) before it tries the next
    model group; the deployment hook raising this ends the fallback chain with the backend's own error."""
    import litellm

    failures = _metadata(kwargs).get("previous_models") or []
    last = failures[-1] if failures and isinstance(failures[-1], dict) else None
    if last is None or last.get("exception_type") not in CLIENT_ERRORS:
        return None
    message = f"{last.get('exception_string')} (a client error: not retried on another model)"
    model, provider = str(last.get("model_group") or ""), "synqra"
    if last["exception_type"] == "NotFoundError":
        return litellm.NotFoundError(message=message, model=model, llm_provider=provider)
    return litellm.BadRequestError(message=message, model=model, llm_provider=provider)


def attempt_group(rt: Any, kwargs: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """(the request's synqra state, the model_list name of this deployment attempt, aliases resolved)."""
    md = _metadata(kwargs)
    group = md.get("model_group")
    return md.get("synqra"), rt.config.canonical(str(group)) if group else None


async def before_attempt(rt: Any, state: dict[str, Any], group: str, data: dict[str, Any]) -> None:
    """Reserve a fallback attempt to another model group; raises BudgetRefused when it cannot be paid."""
    if group == state.get("route") or "call_type" not in state:
        return
    children = _pending.setdefault(state["request_id"], {})
    if group in children:
        return
    child = {
        "request_id": f"{state['request_id']}:fallback:{group}",
        "parent_id": state["request_id"],
        "requested_model": state.get("requested_model", ""),
        "route": group,
        "call_type": state["call_type"],
        "kind": "fallback",
        "key_hash": state.get("key_hash"),
        "user": state.get("user"),
        # Standing in for the call that failed: a client request if that was one, else (an escalation) not.
        "counts_request": state.get("counts_request", True),
        "leaves_local": state.get("leaves_local", False),
    }
    await budget.admit(rt.budget, child, data, group, rt.config.synqra.backends.llama.model_alias, routed=False)
    children[group] = child


def served_group(rt: Any, model_id: object) -> str | None:
    """The model_list name of the deployment with this LiteLLM model id (aliases resolved), if known."""
    from litellm.proxy.proxy_server import llm_router

    if not model_id or llm_router is None:
        return None
    deployment = llm_router.get_deployment(model_id=str(model_id))
    return rt.config.canonical(deployment.model_name) if deployment is not None else None


def apply(state: dict[str, Any]) -> bool:
    """If a fallback answered this request, update this copy of its state (route, accounted) and say so."""
    hit = _served_by_fallback.get(state.get("request_id", ""))
    if hit is None:
        return False
    state["fallback"], state["route"] = f"{hit[0]}>{hit[1]}", hit[1]
    mark_accounted(state)
    return True


async def settle(rt: Any, state: dict[str, Any], served: str, usage: dict[str, int] | None) -> None:
    """A deployment answered (called per successful attempt, before any logging or post-call hook):
    if it was a fallback, bill it, release the failed primary and any other reservation."""
    if served == state.get("route") and not _pending.get(state["request_id"]):
        return
    children = _pending.pop(state["request_id"], {})
    fell_back = served != state.get("route") and served in children
    for group, child in children.items():
        if fell_back and group == served:
            if usage is None:  # a stream: its usage is known when LiteLLM logs it
                _unbilled[state["request_id"]] = child
            else:
                await budget.account(rt.budget, child, state["call_type"], usage, group)
        else:
            await budget.release(rt.budget, child)
    if fell_back:
        _served_by_fallback[state["request_id"]] = (str(state.get("route")), served)
        while len(_served_by_fallback) > _REMEMBER:
            _served_by_fallback.popitem(last=False)
        await budget.release(rt.budget, state)  # the primary failed: it costs nothing


async def release_all(rt: Any, state: dict[str, Any]) -> None:
    """The whole request failed: nothing it reserved is spent."""
    await budget.release(rt.budget, state)
    for child in _pending.pop(state.get("request_id", ""), {}).values():
        await budget.release(rt.budget, child)


async def release_attempt(rt: Any, state: dict[str, Any], group: str | None) -> None:
    """A failed attempt: release the primary's reservation.

    A failed fallback's reservation is left to settle() or release_all(), when the request ends: the
    failure event is processed in the background and reads request metadata that LiteLLM has meanwhile
    updated for the next attempt, so a primary that failed (e.g. in cooldown) can arrive here named as
    the fallback now answering, whose reservation it would drop, and the answer would go unbilled."""
    if group is None or group == state.get("route"):
        await budget.release(rt.budget, state)
