"""Per-request synqra state, carried inside LiteLLM's request dict.

LiteLLM hands the same `data` dict to the pre-call, post-call and header hooks;
a `synqra` entry under its metadata carries our decisions from one to the next
(and on into the logging payload).
"""
from __future__ import annotations

import asyncio
import logging
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

STATE_KEY = "synqra"
log = logging.getLogger("synqra.accounting")

# LiteLLM hands the logging events a copy of the request's metadata, so a flag set in
# the post-call hook is not seen there: remember settled request ids in the process too.
_accounted: OrderedDict[str, None] = OrderedDict()
_REMEMBER = 50_000


def mark_accounted(state: dict[str, Any]) -> None:
    state["accounted"] = True
    _accounted[state["request_id"]] = None
    while len(_accounted) > _REMEMBER:
        _accounted.popitem(last=False)


def is_accounted(state: dict[str, Any]) -> bool:
    return bool(state.get("accounted")) or state.get("request_id") in _accounted


# Settles running now, by request id: the post-call hook and LiteLLM's success-logging task
# run concurrently for one request, and both would settle it (twice the store work).
_settling: dict[str, asyncio.Future[bool]] = {}


async def account_once(state: dict[str, Any], settle: Callable[[], Awaitable[None]]) -> None:
    """Run `settle` for this request once in this process, then mark it accounted.

    A caller that finds a settle of the same request running waits for it (so the
    post-call hook still returns only once the record is written), and settles
    itself only if that one failed.
    """
    rid = state["request_id"]
    if is_accounted(state):
        return
    running = _settling.get(rid)
    if running is not None:
        if await asyncio.shield(running):
            mark_accounted(state)
            return
        return await account_once(state, settle)
    done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    _settling[rid] = done
    ok = False
    try:
        await settle()
        mark_accounted(state)
        ok = True
    finally:
        del _settling[rid]
        done.set_result(ok)


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    """LiteLLM's own metadata bucket of this request, where our state lives.

    /v1/chat/completions keeps LiteLLM's metadata in "metadata"; /v1/messages, /v1/responses (and batches,
    files) in "litellm_metadata", and there "metadata" is the client's own field, sent on to the provider
    and dropped by LiteLLM's streaming Messages path: state put there was never settled."""
    md = data.get("litellm_metadata")
    if isinstance(md, dict):
        return md
    md = data.get("metadata")
    if not isinstance(md, dict):
        md = data["metadata"] = {}
    return md


def request_state(data: dict[str, Any]) -> dict[str, Any]:
    """The synqra state of this request, created on first use with a request id."""
    md = _metadata(data)
    state = md.get(STATE_KEY)
    if not isinstance(state, dict):
        state = {"request_id": "synqra-" + uuid.uuid4().hex}
        md[STATE_KEY] = state
    return state


def new_request_state(data: dict[str, Any]) -> dict[str, Any]:
    """The state of a request entering the proxy. Whatever a client sent under our key is dropped:
    adopted, it would choose the request id the budget and ledger key on, or claim to be accounted."""
    for key in ("litellm_metadata", "metadata"):
        md = data.get(key)
        if isinstance(md, dict):
            md.pop(STATE_KEY, None)
    return request_state(data)


def state_from_log_kwargs(kwargs: dict[str, Any]) -> dict[str, Any] | None:
    """Our state as LiteLLM passes it to the logging events (inside litellm_params)."""
    params = kwargs.get("litellm_params") or {}
    for key in ("metadata", "litellm_metadata"):
        md = params.get(key)
        if isinstance(md, dict) and isinstance(md.get(STATE_KEY), dict):
            return md[STATE_KEY]
    return None


def _answer_text(response: Any) -> str:
    """The generated text of a chat completion (content and tool-call arguments)."""
    parts: list[str] = []
    for choice in getattr(response, "choices", None) or []:
        message = getattr(choice, "message", None)
        parts.append(str(getattr(message, "content", None) or ""))
        for call in getattr(message, "tool_calls", None) or []:
            parts.append(str(getattr(getattr(call, "function", None), "arguments", None) or ""))
    return "".join(parts)


def estimated_usage(kwargs: dict[str, Any], response: Any) -> dict[str, int] | None:
    """Tokens by LiteLLM's tokenizer for an answer whose provider reported no usage: a stream opened
    without `include_usage` (LiteLLM asks for it only where it knows the deployment supports it, so
    not on a fallback to an OpenAI-protocol base URL it does not recognise). None when there is no text."""
    text = _answer_text(response)
    if not text:
        return None
    import litellm  # loaded by the proxy already

    model = str(kwargs.get("model") or "")
    try:
        prompt = litellm.token_counter(model=model, messages=kwargs.get("messages") or [])
        completion = litellm.token_counter(model=model, text=text, count_response_tokens=True)
    except Exception:  # a content type the tokenizer does not know: better the answer's tokens than nothing
        prompt, completion = 0, len(text) // 4 + 1
    log.warning("%s reported no token usage; recorded LiteLLM's count (%d in, %d out)", model, prompt, completion)
    return {"prompt_tokens": int(prompt), "completion_tokens": int(completion)}


def usage_of(response: Any) -> dict[str, int] | None:
    """prompt/completion tokens of a finished response: OpenAI objects, embeddings, or Anthropic dicts."""
    usage = getattr(response, "usage", None)
    if usage is None and isinstance(response, dict):
        usage = response.get("usage")
    if usage is None:
        return None
    get = (lambda k: usage.get(k)) if isinstance(usage, dict) else (lambda k: getattr(usage, k, None))
    prompt = get("prompt_tokens")
    if prompt is None:
        prompt = get("input_tokens")
    completion = get("completion_tokens")
    if completion is None:
        completion = get("output_tokens")
    if prompt is None and completion is None:
        return None
    return {"prompt_tokens": int(prompt or 0), "completion_tokens": int(completion or 0)}
