"""Shadow evaluation: in shadow mode the local model also answers, in the background and unseen, and
the quality scorer judges that answer, so the log pairs each route score with how the local tier
would have done (and the inference log, as a `shadow_gate` label: `synqra route-thresholds --max-escalation`
reads those to place the local cut).

The local answer costs no money and is not a call anybody was served: it is not in the ledger. It
is counted in `synqra_shadow_evaluations_total`. At most `shadow_eval_concurrency` run at once;
a request arriving while they are busy is not evaluated (no queue grows behind a slow local model).
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import TYPE_CHECKING, Any, cast

import httpx

from policies.common.api_answers import chat_answer
from policies.common.api_shapes import question_of
from policies.common.request_state import RequestState
from policies.routing.features import requested_max_tokens
from policies.routing.tiers import TierInfo, unmet
from proxy import metrics
from proxy.quality_gate import CARRIED_PARAMS, loggable_reasons

if TYPE_CHECKING:
    from litellm.types.llms.anthropic import AnthropicMessagesRequest

log = logging.getLogger("synqra.quality")


def openai_messages(data: dict[str, Any], call_type: str, model: str) -> list[dict[str, Any]]:
    """The request as OpenAI chat messages (what the local llama.cpp server speaks). `model`: the local
    model's LiteLLM name (e.g. "openai/local-llama"); with a name LiteLLM cannot place (such as "auto")
    its adapter prints a provider list to stdout on every call."""
    if call_type != "anthropic_messages":
        return list(data["messages"])
    from litellm.llms.anthropic.pass_through.adapters.transformation import LiteLLMAnthropicMessagesAdapter

    # The client's Anthropic request, as the adapter's TypedDict; its OpenAI messages come back as plain dicts.
    request = cast(
        "AnthropicMessagesRequest",
        {**{k: data[k] for k in ("messages", "system", "max_tokens") if k in data}, "model": model},
    )
    translated, _ = LiteLLMAnthropicMessagesAdapter().translate_anthropic_to_openai(request)
    return cast("list[dict[str, Any]]", list(translated["messages"]))


class ShadowEvaluator:
    def __init__(self, runtime: Any, rng: random.Random | None = None) -> None:
        self.rt = runtime
        cfg = runtime.config
        self.settings = cfg.synqra.routing
        self.model = cfg.synqra.backends.llama.model_alias
        params = cfg.model(self.model).litellm_params
        self.litellm_model = str(params["model"])
        self.url = str(params["api_base"]).rstrip("/") + "/chat/completions"
        self.timeout = float(params.get("timeout") or 120)
        info = cfg.model(self.model).model_info
        self.max_output_tokens = int(info.get("max_output_tokens") or 1024)
        # What the router knows the local model can take (context window, vision, tools; config included);
        # a local model that is not a routing tier is taken to have no vision and no tools.
        tier_infos = {t.name: t for t in runtime.router.tiers}
        self.tier = tier_infos.get(self.model) or TierInfo(self.model, info.get("max_input_tokens"))
        self._rng = rng or random.Random()
        self._tasks: set[asyncio.Task[None]] = set()
        self._client: httpx.AsyncClient | None = None

    def maybe_start(self, state: RequestState, data: dict[str, Any], decision: Any) -> bool:
        """Start a background evaluation of this request on the local model, if it is sampled, the local
        model could take it at all, and a slot is free. `decision`: the router's RouteDecision."""
        s = self.settings
        if s.shadow_eval_share <= 0 or self._rng.random() >= s.shadow_eval_share:
            return False
        if unmet(self.tier, decision.constraints):
            return False  # the router never sends these to the local tier: its answer would say nothing
        if len(self._tasks) >= s.shadow_eval_concurrency:
            metrics.observe_shadow_eval("skipped_busy")
            return False
        try:
            messages = openai_messages(data, state.call_type, self.litellm_model)
        except Exception as e:  # a shape the adapter cannot read: the real call reports it
            log.debug("shadow evaluation skipped: %s", e)
            return False
        # The client's own limit, as the local tier would get it live (a cut-off answer is a verdict too),
        # within what the local model can write.
        max_tokens = min(requested_max_tokens(data) or self.max_output_tokens, self.max_output_tokens)
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "logprobs": True}
        request = {k: data[k] for k in ("messages", *CARRIED_PARAMS) if k in data}
        metrics.SHADOW_IN_FLIGHT.inc()
        route = f"route_score={decision.score:.4f} scorer={decision.features.get('scorer')}"
        task = asyncio.create_task(self._run(state, route, decision.tier, body, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return True

    async def _run(
        self, state: RequestState, route: str, tier: str, body: dict[str, Any], request: dict[str, Any]
    ) -> None:
        request_id = state.request_id
        try:
            if self._client is None:
                self._client = httpx.AsyncClient(timeout=self.timeout)
            r = await self._client.post(self.url, json=body)
            r.raise_for_status()
            answer = chat_answer(r.json())
            v = await self.rt.quality.ascore(
                request, answer.text, answer.finish_reason, answer.logprobs, answer.tool_calls
            )
            metrics.observe_shadow_eval(v.action)
            self.rt.learning.gate_verdict(request_id, v.action, shadow=True)
            self.rt.learning.offer(state, "local", question_of(request), answer.text)  # for the pairwise judge
            log.info(
                "shadow quality %.3f %s (%s) first=%s %s chosen=%s request=%s",
                v.score,
                v.action,
                loggable_reasons(v.reasons, self.rt.config.synqra.learning.keep_text),
                self.model,
                route,
                tier,
                request_id,
            )
        except Exception as e:  # the served answer is unaffected; only this sample is lost
            metrics.observe_shadow_eval("failed")
            log.warning("shadow evaluation of %s failed: %s: %s", request_id, type(e).__name__, e)
        finally:
            metrics.SHADOW_IN_FLIGHT.dec()

    async def drain(self) -> None:
        """Wait for the evaluations in flight (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*list(self._tasks), return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()
