"""call -> account, for streams: what a provider's stream delivered, so a broken or abandoned one is still paid for.

A provider bills a stream for the prompt and every token it sent, whether the stream ran to its end, broke off
mid-answer (a dropped connection, a provider error event) or was left by its client. LiteLLM logs success only for
a stream that ran to its end, and reports a broken one as a failed call, whose reservation the Accountant gives
back. The relay keeps the items the provider sent; when its client leaves after the provider began answering, the
call is recorded at what it delivered (`delivered_usage`); when the provider's side breaks it, at its worst case
(what the provider sent past the items read is unknown), in a task of its own so a client that left cannot
cancel the recording.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from typing import Any

from policies.budget.accountant import Accountant
from policies.common.api_answers import carries_answer, delivered_usage, prompt_only_usage
from policies.common.api_shapes import chat_view
from policies.common.request_state import RequestState
from policies.common.settings import AppConfig
from proxy.litellm_state import is_broken_response, served_group

log = logging.getLogger("synqra.accounting")

_recording: set[asyncio.Task[None]] = set()  # strong references until each recording is written


class StreamRelay:
    """Relays a provider's stream (`items()`), keeping every item it sent and whether it ran to its end."""

    def __init__(self, response: Any, state: RequestState) -> None:
        self.response = response
        self.state = state
        self.sent: list[Any] = []
        self.finished = False

    async def items(self) -> AsyncIterator[Any]:
        async for item in self.response:
            self.sent.append(item)
            if not self.state.relayed and carries_answer(item):
                self.state.relayed = True
            yield item
        self.finished = True

    def record_if_cut_short(
        self,
        config: AppConfig,
        accounts: Accountant,
        state: RequestState,
        data: dict[str, Any],
        why: str,
        error: BaseException | None = None,
        opened: bool = False,
    ) -> Coroutine[Any, Any, None] | None:
        """The recording of a stream that ended short of its end after the provider began answering, else None.

        `error`: what broke it on the provider's side (a paid call is then recorded at its worst case); None for a
        client that left (recorded at what was relayed).

        With nothing relayed, only `opened` (the client left a stream the provider had opened: LiteLLM cancels it
        before its first chunk once it sees the disconnect; or the stream broke on its first read) or an `error` saying the provider's response broke off
        after it opened (e.g. the Responses API's first read, which LiteLLM makes before relaying anything) shows
        the provider had begun: it bills the prompt."""
        if self.finished or not state.call_type or state.accounted:
            return None
        opened = opened or (error is not None and is_broken_response(error))
        if not self.sent and not opened:
            return None
        hidden = getattr(self.response, "_hidden_params", None) or {}
        served = served_group(config, hidden.get("model_id")) or state.route
        model, messages = str(served or data.get("model") or ""), chat_view(data, state.call_type).get("messages") or []
        usage = (
            delivered_usage(self.sent, state.call_type, model, messages)
            if self.sent
            else prompt_only_usage(model, messages)
        )
        if error is not None and served:
            # Broken on the provider's side: what it generated (and bills) beyond what was read is unknown, words
            # the HTTP client had read but LiteLLM had not relayed are lost with the break. Its worst case, as for
            # a timed-out call (or what was seen, if more: a provider's own prompt count, an answer past its
            # allowance); a client that left passes no error and is recorded at what was relayed.
            broke = f"stream {why} after {len(self.sent)} items ({type(error).__name__})"
            worst = accounts.worst_case(state, served, broke)
            if worst is not None:
                tokens = ("prompt_tokens", "completion_tokens")
                return accounts.stream_broke(state, served, {k: max(worst[k], int(usage.get(k) or 0)) for k in tokens})
        log.warning(
            "%s stream of %s %s after %d items: recorded what the provider sent (%d in, %d out, estimated)",
            served,
            state.request_id,
            why,
            len(self.sent),
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
        return accounts.stream_broke(state, served, usage)


# Where LiteLLM's stream wrappers keep the stream they wrap (LiteLLM 1.108: the proxy's upstream boundary, the
# router's fallback-aware Messages stream, the Anthropic adapter, LiteLLM's CustomStreamWrapper).
STREAM_LINKS = (
    "_source",
    "_upstream",
    "_async_generator",
    "_source_iterator",
    "_byte_stream",
    "_anthropic_wrapper",
    "completion_stream",
    "_stream",
)


def _stream_chain(response: Any) -> list[Any]:
    """The streams a relayed response is made of, outermost first: a stream LiteLLM bridges to another API (an
    Anthropic Messages stream from a chat model) is a generator over an adapter over LiteLLM's stream of the
    provider's response, and closing the outer one leaves the provider's connection open."""
    chain: list[Any] = []
    pending = [response]
    while pending and len(chain) < 12:
        node = pending.pop(0)
        if node is None or any(node is seen for seen in chain):
            continue
        chain.append(node)
        frame = getattr(node, "ag_frame", None)  # an async generator: the object whose method it is
        owner = frame.f_locals.get("self") if frame is not None else None
        if hasattr(owner, "__aiter__"):  # a stream's own generator method (not, say, the router's)
            pending.append(owner)
        pending += [getattr(node, name, None) for name in STREAM_LINKS]
    return chain


async def hang_up(response: Any) -> None:
    """Close a stream its client left, down to the provider's connection: the provider generates, and bills, until
    it sees that close, and the call is recorded at what was relayed."""
    for stream in reversed(_stream_chain(response)):  # the provider's connection first
        close = getattr(stream, "aclose", None)
        if close is None:
            continue
        try:
            await close()
        except Exception as e:  # best effort: a stream that cannot close is finalised by LiteLLM later
            log.debug("closing an abandoned stream (%s) failed: %s", type(stream).__name__, e)


def record_in_background(recording: Coroutine[Any, Any, None] | None) -> None:
    """Run a stream's recording (`StreamRelay.record_if_cut_short`) in a task of its own, so a client that left
    cannot cancel it."""
    if recording is None:
        return
    task = asyncio.get_running_loop().create_task(recording)
    _recording.add(task)
    task.add_done_callback(_recording.discard)
