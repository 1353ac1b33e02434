"""`synqra.routing` settings."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Product rule (agreed with the lead): creative and brand work goes to the creative tier
# (Claude) whatever the complexity score says, because a small local model writes flat
# copy even when the task is "easy". Detected by embedding similarity of the newest
# user turn to these task descriptions; edit the list to widen or narrow the rule.
DEFAULT_CREATIVE_EXAMPLES: tuple[str, ...] = (
    "Write a story",
    "Write a short story about a character",
    "Write a poem",
    "Write song lyrics",
    "Compose an engaging blog post",
    "Write marketing copy for a product launch",
    "Write a brand story for a company",
    "Create a brand identity and brand voice",
    "Write a compelling tagline or slogan for a brand",
    "Write a persuasive advertisement",
    "Draft a creative pitch for a startup",
    "Write a screenplay scene with dialogue",
)


class RoutingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # The model name clients send to let synqra choose ("auto").
    virtual_model: str = "auto"
    # Cheapest first; every name must be a model_name in model_list.
    tiers: list[str] = Field(default_factory=lambda: ["local-llama", "deepseek-chat", "claude-sonnet"])
    # Score cut points between consecutive tiers (len(tiers) - 1, ascending): a score below
    # thresholds[0] goes to tiers[0], and so on. None: the thresholds the shipped artifact
    # recommends in its manifest (they depend on how that model is calibrated).
    thresholds: list[float] | None = None
    # The trained router (.npz with a .manifest.json beside it). None: the artifact
    # shipped in policies/routing/artifacts/. Missing or corrupt: logged, structural fallback.
    artifact_path: str | None = None
    # Explicit model names (glob patterns, e.g. "claude-3-5-sonnet-*") routed as if they were
    # the virtual model: drop-in savings for code that hard-codes a model.
    intercept_models: list[str] = Field(default_factory=list)
    # A cloud model whose provider refuses its API key (401/403) is not used for this long, then tried again
    # (a model whose key variable is not set is never used: set it and restart).
    unavailable_retry_s: float = Field(300.0, gt=0)
    # Model names clients send that are not in model_list, by glob -> the model_list name (or the virtual
    # model) that serves them, first match wins: Claude Code and other Anthropic clients ask for dated
    # names (claude-opus-4-*, claude-haiku-4-5-*...). Exact names in model_list or model_group_alias win.
    alias_patterns: dict[str, str] = Field(default_factory=dict)
    # Tiers known to accept images, in addition to model_info.supports_vision (config or
    # LiteLLM's model map). Requests with images only go to vision-capable tiers.
    vision_tiers: list[str] = Field(default_factory=list)
    # Tiers known to support tools / function calling, in addition to
    # model_info.supports_function_calling.
    tool_tiers: list[str] = Field(default_factory=list)
    # budget_pressure p in [0, 1] (from the budget policy) raises every threshold t to
    # t + p * budget_max_shift * (1 - t): under pressure more requests stay on cheaper tiers.
    budget_max_shift: float = Field(0.5, ge=0, le=1)
    # Creative/brand rule: requests whose newest user turn is at least this similar (cosine)
    # to one of creative_examples go at least to creative_tier (None: the strongest tier,
    # the last of tiers). An empty creative_examples list disables the rule.
    creative_tier: str | None = None
    creative_examples: list[str] = Field(default_factory=lambda: list(DEFAULT_CREATIVE_EXAMPLES))
    creative_min_similarity: float = Field(0.6, ge=-1, le=1)
    # Identical newest-user-turn texts reuse their embedding (LRU entries; 0 disables).
    embed_cache_size: int = Field(4096, ge=0)
    # Give up on the embedding server after this long and score with the fallback rule.
    embed_timeout_s: float = Field(0.5, gt=0)
    # Safety factor on the estimated prompt tokens when checking a tier's context window.
    context_safety_factor: float = Field(1.1, ge=1)
    # "live": serve the router's choice. "shadow": decide and log as in live (x-synqra-route-shadow
    # names the choice) but serve what the client would have got without synqra (shadow_target), so
    # a team sees the split on its own traffic, and fits thresholds from the log, before trusting it.
    mode: Literal["live", "shadow"] = "live"
    # Serves the virtual model in shadow mode (None: the strongest tier, the last of tiers).
    shadow_model: str | None = None
    # Shadow mode: share of requests the local model also answers in the background, unseen, for the
    # quality scorer; the verdict is logged beside the route score (route-thresholds --max-escalation).
    # At most shadow_eval_concurrency at once: requests arriving while they run are not evaluated.
    shadow_eval_share: float = Field(0.0, ge=0, le=1)
    shadow_eval_concurrency: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _thresholds_match_tiers(self) -> RoutingSettings:
        if not self.tiers:
            raise ValueError("tiers must name at least one model")
        if self.thresholds is not None:
            if len(self.thresholds) != len(self.tiers) - 1:
                raise ValueError(f"thresholds needs {len(self.tiers) - 1} values (one between each pair of tiers)")
            if any(b < a for a, b in zip(self.thresholds, self.thresholds[1:])):
                raise ValueError("thresholds must be ascending")
        if self.creative_tier is not None and self.creative_tier not in self.tiers:
            raise ValueError(f"creative_tier {self.creative_tier!r} is not one of tiers")
        return self

    def routes(self, model: str | None) -> bool:
        """True for the virtual model and for names matching `intercept_models` globs: synqra picks their tier."""
        return bool(model) and any(
            fnmatch.fnmatchcase(str(model), p) for p in (self.virtual_model, *self.intercept_models)
        )

    def shadow_target(self, requested: str, is_configured: Callable[[str], bool]) -> str:
        """The model a shadow-mode request is served by: an intercepted name that model_list serves
        as it is (the incumbent the application asked for), else shadow_model."""
        if requested != self.virtual_model and is_configured(requested):
            return requested
        return self.shadow_model or self.tiers[-1]
