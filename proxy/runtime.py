"""Process-wide state of the running proxy: the validated config and the policy objects.

Set once by `proxy.server` before LiteLLM starts. The hook module is loaded by
LiteLLM from a file path (a separate module object), so state lives here, in a
normally imported module that the hooks and the extra endpoints both reach.
Policy objects are built on first use, inside the proxy's event loop
(`warm_up()` does that at start-up).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

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


@dataclass
class Runtime:
    config: AppConfig
    master_key: str

    # Each policy object is built on first use (cached_property), inside the event loop.
    @cached_property
    def budget(self) -> BudgetGuard:
        from policies.budget.guard import BudgetGuard
        from proxy.metrics import observe_ledger

        guard = BudgetGuard.from_config(self.config)
        guard.listeners.append(observe_ledger)
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

    async def warm_up(self) -> None:
        """At start-up, before the first request: build the policy objects, load the router's
        embedding table (hashing the model file for its cache key takes ~0.2 s) and run one
        decision, so the first routed request does not pay for it. Failures are logged
        here and met again (and handled) by the request that needs the object."""
        try:
            self.router.decide({"messages": [{"role": "user", "content": "warm-up"}]})  # nothing else runs yet
            self.quality  # noqa: B018  # built for its side effect
            await self.budget.start()
            self.learning.start()
        except Exception:
            log.exception("warm-up failed; the first request will retry what failed")

    async def aclose(self) -> None:
        """At shutdown: let each policy object that was built finish its background work."""
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
