"""Where synqra's RequestState lives inside LiteLLM's request, and what LiteLLM tells about a call's attempts.

LiteLLM hands the same request `data` to the pre-call, post-call and header hooks, the deployment hooks get
the deployment call's kwargs, and the logging events get kwargs whose `litellm_params` carry a copy of the
request metadata. In each, the state is the object under "synqra" in LiteLLM's own metadata bucket:
`litellm_metadata` on /v1/messages and /v1/responses (where `metadata` is the client's own field, sent on to
the provider and dropped by LiteLLM's streaming Messages path), `metadata` elsewhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from policies.common.request_state import STATE_KEY, RequestState
from policies.common.settings import AppConfig

if TYPE_CHECKING:
    from litellm import Router

BUCKETS = ("litellm_metadata", "metadata")


def _bucket(data: dict[str, Any]) -> dict[str, Any]:
    md = data.get("litellm_metadata")
    if isinstance(md, dict):
        return md
    md = data.get("metadata")
    if not isinstance(md, dict):
        md = data["metadata"] = {}
    return md


def new_state(data: dict[str, Any]) -> RequestState:
    """The state of a request entering the proxy. Whatever a client sent under our key is dropped:
    adopted, it would choose the request id the budget and ledger key on, or claim to be accounted."""
    for key in BUCKETS:
        md = data.get(key)
        if isinstance(md, dict):
            md.pop(STATE_KEY, None)
    state = RequestState.new()
    _bucket(data)[STATE_KEY] = state
    return state


def state_of(data: dict[str, Any]) -> RequestState:
    """This request's state (a fresh one if the pre-call hook did not run for it)."""
    state = _bucket(data).get(STATE_KEY)
    return state if isinstance(state, RequestState) else new_state(data)


def _metadata_with_state(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The metadata bucket carrying our state in a deployment call's kwargs or a logging event's kwargs."""
    for src in (kwargs, kwargs.get("litellm_params") or {}):
        for key in ("metadata", "litellm_metadata"):
            md = src.get(key)
            if isinstance(md, dict) and isinstance(md.get(STATE_KEY), RequestState):
                return md
    return {}


def state_in(kwargs: dict[str, Any]) -> RequestState | None:
    state = _metadata_with_state(kwargs).get(STATE_KEY)
    return state if isinstance(state, RequestState) and state.call_type else None


def attempt_group(cfg: AppConfig, kwargs: dict[str, Any]) -> tuple[RequestState | None, str | None]:
    """(the call's state, the model_list name of this deployment attempt, aliases resolved)."""
    md = _metadata_with_state(kwargs)
    state, group = md.get(STATE_KEY), md.get("model_group")
    if not isinstance(state, RequestState) or not state.call_type:
        return None, None
    return state, cfg.canonical(str(group)) if group else None


def is_bridge(state: RequestState, call_type: Any) -> bool:
    """Whether a deployment hook comes from a bridge inside an attempt (a Responses or Messages call LiteLLM makes
    through chat completions): its call type is not the API the request came in by."""
    return getattr(call_type, "value", call_type) != state.call_type


def litellm_router() -> Router:
    """The running proxy's LiteLLM router, for synqra's own extra calls (judge, rephrase, escalation)."""
    from litellm.proxy.proxy_server import llm_router

    if llm_router is None:  # LiteLLM sets it when the proxy reads its config, before any request
        raise RuntimeError("LiteLLM's router is not set up yet")
    return llm_router


def served_group(cfg: AppConfig, model_id: object) -> str | None:
    """The model_list name of the deployment with this LiteLLM model id (aliases resolved), if known."""
    from litellm.proxy.proxy_server import llm_router

    if not model_id or llm_router is None:
        return None
    deployment = llm_router.get_deployment(model_id=str(model_id))
    return cfg.canonical(deployment.model_name) if deployment is not None else None


# A backend's answer to a bad request: the client's to fix, not a reason to pay another tier (LiteLLM falls
# back on 404 and, without fallback_on_unsupported_params, on 400). Provider faults (429, 5xx, timeouts,
# connection errors, auth) still fall back.
CLIENT_ERRORS = ("BadRequestError", "UnsupportedParamsError", "NotFoundError", "UnprocessableEntityError")


def client_error_behind(kwargs: dict[str, Any]) -> Exception | None:
    """On a fallback attempt: the client error that made LiteLLM fall back, as the error to answer with, or None.

    LiteLLM records each failed attempt in the request metadata (`previous_models`) before it tries the next
    model group; the deployment hook raising this ends the fallback chain with the backend's own error."""
    import litellm

    failures = _metadata_with_state(kwargs).get("previous_models") or []
    last = failures[-1] if failures and isinstance(failures[-1], dict) else None
    if last is None or last.get("exception_type") not in CLIENT_ERRORS:
        return None
    message = f"{last.get('exception_string')} (a client error: not retried on another model)"
    model, provider = str(last.get("model_group") or ""), "synqra"
    if last["exception_type"] == "NotFoundError":
        return litellm.NotFoundError(message=message, model=model, llm_provider=provider)
    return litellm.BadRequestError(message=message, model=model, llm_provider=provider)


# What LiteLLM's transports (aiohttp's, httpx's) say when a provider's response broke off after it had opened: the
# provider had accepted the call and begun answering, so it bills the prompt. A refused connection, a status error
# or a timeout before the response opened says none of these.
BROKEN_RESPONSE = (
    "Response payload is not completed",
    "peer closed connection without sending complete message body",
    "incomplete chunked read",
)


def is_broken_response(message: object) -> bool:
    """Whether a failed attempt's error says its provider's response broke off after it opened (LiteLLM's
    MidStreamFallbackError alone does not: it also wraps an error event the provider sent instead of an answer)."""
    text = str(message)
    return any(m in text for m in BROKEN_RESPONSE)


# What a transport raises when its timeout ran out before the request left: the connection to the provider never
# opened (or no pooled one came free). Nothing was sent, so nothing is billed.
UNSENT_TIMEOUTS = ("ConnectTimeout", "PoolTimeout", "ConnectionTimeoutError")


def never_sent(exception: BaseException) -> bool:
    """Whether a timed-out attempt timed out before its request reached the provider: LiteLLM wraps the transport's
    error (httpx's ConnectTimeout, aiohttp's ConnectionTimeoutError) in its own Timeout, which says only
    "Connection timed out", also for a provider that took the request and went on generating (a ReadTimeout)."""
    seen: set[int] = set()
    e: BaseException | None = exception
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if type(e).__name__ in UNSENT_TIMEOUTS:
            return True
        e = e.__cause__ or e.__context__
    return False


def broken_attempts(cfg: AppConfig, state: RequestState, kwargs: dict[str, Any]) -> list[tuple[int, str]]:
    """(attempt number, model group) of this call's failed attempts not seen before whose provider response broke
    off after it opened: LiteLLM records each failed attempt in the request metadata (`previous_models`) before
    it retries or falls back, and this is the one place that names the attempt that broke (its failure event may
    already name the next one)."""
    failures = _metadata_with_state(kwargs).get("previous_models") or []
    start, state.failures_seen = state.failures_seen, len(failures)
    return [
        (n, cfg.canonical(str(f["model_group"])))
        for n, f in enumerate(failures[start:], start + 1)
        if isinstance(f, dict) and f.get("model_group") and is_broken_response(f.get("exception_string"))
    ]


def stream_continued_elsewhere(state: RequestState, group: str) -> Exception | None:
    """On a fallback attempt: the error that ends a stream which broke off after its provider began answering.

    LiteLLM continues such a Responses API stream on the next model (the answer so far as the new prompt) and
    books both calls' tokens as the second model's, so the first provider's bill never reaches the ledger as its
    own. Like LiteLLM's chat and Messages streams, it ends instead: the client gets the error event, and the
    broken call is recorded at what it delivered (StreamRelay)."""
    import litellm

    if not state.relayed:  # nothing answered yet: falling back costs the broken call nothing
        return None
    return litellm.BadRequestError(  # a 4xx that cools no deployment down
        message=f"the {state.route} stream broke off mid-answer; it is not continued on {group} "
        "(retry the request to get a whole answer)",
        model=group,
        llm_provider="synqra",
    )
