"""Process-wide state of the running proxy: the validated config and the policy objects.

Set once by `proxy.server` before LiteLLM starts. The hook module is loaded by
LiteLLM from a file path (a separate module object), so state lives here, in a
normally imported module that the hooks and the extra endpoints both reach.
Policy objects are built on first use, inside the proxy's event loop
(`warm_up()` does that at start-up).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from policies.common.settings import AppConfig

if TYPE_CHECKING:
    from policies.budget.accountant import Accountant
    from policies.budget.guard import BudgetGuard
    from policies.embedding.base import Embedder, HttpEmbedder
    from policies.embedding.static import StaticEmbedder
    from policies.quality.scorer import QualityScorer
    from policies.routing.router import Router
    from policies.routing.tiers import TierInfo
    from proxy.availability import Availability
    from proxy.learning_loop import LearningLoop
    from proxy.quality_gate import QualityGate
    from proxy.shadow_eval import ShadowEvaluator

log = logging.getLogger("synqra.runtime")

WarmUpStep = tuple[str, Callable[[], Awaitable[None]]]


@dataclass
class Runtime:
    config: AppConfig
    master_key: str
    WARM_UP_RETRY_S: ClassVar[float] = 30.0
    WARM_UP_RETRY_MAX_S: ClassVar[float] = 600.0
    _warm_up_retry: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    # Each policy object is built on first use (cached_property), inside the event loop.
    @cached_property
    def budget(self) -> BudgetGuard:
        from policies.budget.guard import BudgetGuard
        from proxy.metrics import observe_budget_alert, observe_ledger

        guard = BudgetGuard.from_config(self.config)
        guard.listeners.append(observe_ledger)
        guard.alert_listeners.append(observe_budget_alert)
        return guard

    @cached_property
    def accounts(self) -> Accountant:
        """The one owner of money: every reserve, settle, release and ledger record goes through it."""
        from policies.budget.accountant import Accountant

        return Accountant(self.budget, self.config.synqra.backends.llama.model_alias)

    @cached_property
    def embedder(self) -> HttpEmbedder:
        """The local embedding server (full MiniLM), as the policies reach it."""
        from policies.embedding.base import HttpEmbedder

        b = self.config.synqra.backends.embed
        return HttpEmbedder(b.url, b.model_alias)

    @cached_property
    def static_embedder(self) -> StaticEmbedder:
        """MiniLM distilled to a token table, in this process (sub-millisecond, no torch)."""
        from policies.embedding.static import StaticEmbedder

        return StaticEmbedder.default()

    def embedder_of(self, kind: str) -> Embedder:
        return self.static_embedder if kind == "static" else self.embedder

    @cached_property
    def router(self) -> Router:
        from policies.embedding.names import STATIC
        from policies.routing.router import Router

        # Embed with what the artifact was trained on: the static table in-process (shipped), or full
        # MiniLM via the embedding server (also what the fallback rule's creative check uses).
        return Router.from_config(
            self.config, lambda trained_on: self.embedder_of("static" if trained_on == STATIC else "minilm")
        )

    @cached_property
    def availability(self) -> Availability:
        """Which models can answer now (API keys set, not refused by their provider)."""
        from proxy.availability import Availability

        return Availability(self.config)

    @cached_property
    def model_caps(self) -> dict[str, TierInfo]:
        """What each model_list entry can take (vision, tools, reasoning, context window), read once."""
        from policies.routing.capabilities import model_info_of

        return {name: model_info_of(self.config, name) for name in self.config.model_names}

    @cached_property
    def quality(self) -> QualityScorer:
        from policies.quality.scorer import QualityScorer

        return QualityScorer.from_config(
            self.config,
            self.embedder_of(self.config.synqra.quality.relevance_embedder),
            static_embedder=self.static_embedder,
        )

    @cached_property
    def learning(self) -> LearningLoop:
        """The inference log, labels and hot reload of learnt router versions."""
        from proxy.learning_loop import LearningLoop

        return LearningLoop(self)

    @cached_property
    def shadow_eval(self) -> ShadowEvaluator:
        from proxy.shadow_eval import ShadowEvaluator

        return ShadowEvaluator(self)

    @cached_property
    def gate(self) -> QualityGate:
        from proxy.quality_gate import QualityGate

        return QualityGate(self)

    def _warm_up_steps(self) -> list[WarmUpStep]:
        async def router() -> None:
            self.router.decide({"messages": [{"role": "user", "content": "warm-up"}]})  # nothing else runs yet

        async def quality() -> None:
            self.quality  # noqa: B018  # built for its side effect

        async def budget() -> None:
            await self.budget.start()

        async def learning() -> None:
            self.learning.start()

        return [("router", router), ("quality scorer", quality), ("budget", budget), ("learning loop", learning)]

    async def warm_up(self) -> None:
        """At start-up, before the first request: build the policy objects, load the router's
        embedding table (hashing the model file for its cache key takes ~0.2 s) and run one
        decision, so the first routed request does not pay for it. Each step runs whether the ones before it
        failed or not (a budget store that could not be opened kept the learning loop from ever starting); a step
        that failed is logged once and retried in the background, every WARM_UP_RETRY_S doubling up to
        WARM_UP_RETRY_MAX_S, until it succeeds. Meanwhile the request that needs its object meets the failure."""
        failed = await self._run_steps(self._warm_up_steps())
        if failed:
            self._warm_up_retry = asyncio.get_running_loop().create_task(self._retry_warm_up(failed))

    async def _run_steps(self, steps: list[WarmUpStep], logged: set[str] | None = None) -> list[WarmUpStep]:
        """The steps that failed; each failure is logged with its traceback the first time only."""
        failed = []
        for name, step in steps:
            try:
                await step()
            except Exception:
                failed.append((name, step))
                if logged is None or name not in logged:
                    log.exception("warm-up: %s failed; retrying it in the background", name)
        return failed

    async def _retry_warm_up(self, failed: list[WarmUpStep]) -> None:
        delay = self.WARM_UP_RETRY_S
        logged = {name for name, _ in failed}
        while failed:
            await asyncio.sleep(delay)
            still = await self._run_steps(failed, logged)
            for name, _ in failed:
                if all(name != n for n, _ in still):
                    log.warning("warm-up: %s ready on retry", name)
            failed, delay = still, min(delay * 2, self.WARM_UP_RETRY_MAX_S)

    async def aclose(self) -> None:
        """At shutdown: let each policy object that was built finish its background work."""
        if self._warm_up_retry is not None:
            self._warm_up_retry.cancel()
        for obj in list(vars(self).values()):
            close = getattr(obj, "aclose", None)
            if close is not None:
                await close()


_runtime: Runtime | None = None


def init_runtime(config: AppConfig, master_key: str) -> Runtime:
    global _runtime
    _runtime = Runtime(config=config, master_key=master_key)
    return _runtime


def get_runtime() -> Runtime:
    if _runtime is None:
        raise RuntimeError("synqra runtime not initialised: start the proxy with `synqra serve` or proxy.server")
    return _runtime
