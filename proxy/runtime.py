"""Process-wide state of the running proxy: the validated config and the policy objects.

Set once by `proxy.server` before LiteLLM starts. The hook module is loaded by
LiteLLM from a file path (a separate module object), so state lives here, in a
normally imported module that the hooks and the extra endpoints both reach.
Policy objects are built on first use, inside the proxy's event loop.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from proxy.settings import AppConfig

if TYPE_CHECKING:
    from policies.budget.guard import BudgetGuard
    from policies.embedder import HttpEmbedder
    from policies.quality.scorer import QualityScorer
    from policies.routing.router import Router
    from proxy.quality_gate import QualityGate


@dataclass
class Runtime:
    config: AppConfig
    master_key: str
    _objects: dict[str, Any] = field(default_factory=dict)

    @property
    def budget(self) -> "BudgetGuard":
        if "budget" not in self._objects:
            from policies.budget.guard import BudgetGuard

            self._objects["budget"] = BudgetGuard.from_config(self.config)
        return self._objects["budget"]

    @property
    def embedder(self) -> "HttpEmbedder":
        """The local embedding server, as the policies reach it (routing features, answer relevance)."""
        if "embedder" not in self._objects:
            from policies.embedder import HttpEmbedder

            b = self.config.synqra.backends.embed
            self._objects["embedder"] = HttpEmbedder(b.url, b.model_alias)
        return self._objects["embedder"]

    @property
    def router(self) -> "Router":
        if "router" not in self._objects:
            from policies.routing.router import Router

            self._objects["router"] = Router.from_config(self.config, self.embedder)
        return self._objects["router"]

    @property
    def quality(self) -> "QualityScorer":
        if "quality" not in self._objects:
            from policies.quality.scorer import QualityScorer

            self._objects["quality"] = QualityScorer.from_config(self.config, self.embedder)
        return self._objects["quality"]

    @property
    def gate(self) -> "QualityGate":
        if "gate" not in self._objects:
            from proxy.quality_gate import QualityGate

            self._objects["gate"] = QualityGate(self)
        return self._objects["gate"]

    async def aclose(self) -> None:
        """At shutdown: let each policy object that was built finish its background work."""
        for obj in self._objects.values():
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
