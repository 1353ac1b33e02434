"""`synqra.quality` settings (every key optional; the defaults make the app work without it)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class LearnedSettings(BaseModel):
    """The learned answer model (policies/quality/answer_model.py, trained by `synqra train-quality-scorer`)."""

    model_config = ConfigDict(extra="forbid")

    # Off, or the artifact missing or corrupt: the rule-weighted product decides alone (logged at start-up).
    enabled: bool = True
    # None: the shipped artifact policies/quality/artifacts/answer_v1.npz.
    artifact: str | None = None


# Default weight of every quality signal, by name: how much it can pull the score down (factor
# 1 - w * (1 - signal)). The signals themselves (function, role, hard or not, rephrase hint) are the table in
# policies/quality/registry.py, which checks at import that it has exactly these names.
DEFAULT_WEIGHTS: dict[str, float] = {
    "empty": 1.0,
    "cut_off": 1.0,
    "loop": 1.0,
    "json_valid": 1.0,
    "tool_args": 1.0,
    "refusal": 0.7,
    "language": 0.7,
    "arithmetic": 0.6,
    "computation": 0.8,
    "invented_figure": 0.3,
    "logprob_mean": 0.5,
    "logprob_min": 0.25,
    "abrupt_end": 0.6,
    "relevance": 0.6,
    "maths_answer": 0.5,
    "maths_inputs": 0.3,
    "dead_end": 0.2,
    "hedging": 0.3,
}


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Every default weight overridden by `weights`; an unknown name or a weight outside [0, 1] raises
    ValueError naming it (config validation turns it into a start-up error naming the key)."""
    unknown = sorted(set(weights) - set(DEFAULT_WEIGHTS))
    if unknown:
        raise ValueError(f"unknown quality signal(s) {unknown}; known: {sorted(DEFAULT_WEIGHTS)}")
    bad = {
        k: v
        for k, v in weights.items()
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0
    }
    if bad:
        raise ValueError(f"quality signal weights must be numbers in [0, 1]: {bad}")
    return {**DEFAULT_WEIGHTS, **{k: float(v) for k, v in weights.items()}}


class JudgeSettings(BaseModel):
    """The optional judge tier: a cheap cloud model rates the local answer when the scorer is unsure.

    Pure part in policies/judging.py (prompt, parsing, rating -> score); the gate makes the call, reserves
    and books it (its own ledger kind) and skips it when the budget has stopped paid calls, the month's
    judge spend reached `monthly_limit_usd`, or the judge fails: the scorer then decides alone.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = False
    # A model_list name; DeepSeek V3 at list price ($0.28 / $0.42 per M tokens in / out) costs about
    # $0.25 per 1,000 judged answers of 300 tokens (bench/results/quality_eval.md has the estimate).
    model: str = "deepseek-chat"
    # Scores inside [low, high] are sent to the judge (the scorer's unsure middle); outside it the scorer decides.
    band: tuple[float, float] = (0.5, 0.85)
    # Judge calls stop for the rest of the month once they have cost this much.
    monthly_limit_usd: float = Field(5.0, ge=0)

    @field_validator("band")
    @classmethod
    def _band_ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        low, high = v
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError("band must be [low, high] with 0 <= low <= high <= 1")
        return v


class QualitySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    # Bands: score > deliver_above -> deliver; score < escalate_below -> escalate; else rephrase.
    deliver_above: float = Field(0.8, ge=0, le=1)
    escalate_below: float = Field(0.6, ge=0, le=1)
    # Extra model calls (rephrases + escalations) allowed per request.
    max_extra_calls: int = Field(2, ge=0)
    # Rephrase on the same tier, or on the next one up.
    rephrase_target: Literal["same", "next"] = "same"
    # Escalate to the next tier up, or straight to the top tier.
    escalate_target: Literal["next", "top"] = "next"
    # Tiers whose answers are scored; None = every routing tier except the top one.
    validated_tiers: list[str] | None = None
    # Upper bound of the score of a hard failure (which escalates whatever its score).
    hard_failure_score: float = Field(0.1, ge=0, le=1)
    # Answer relevance needs an embedding call; skip the signal if it takes longer.
    embed_timeout_s: float = Field(1.0, gt=0)
    # Which embedding measures relevance: "static" (MiniLM distilled to a token table: well under
    # 1 ms, in the proxy process) or "minilm" (the full model: about 30 ms via the embedding server,
    # better at telling off-topic answers; see policies/embedding/static.py for the comparison).
    # The learned answer model always reads the static table (what it was trained on).
    relevance_embedder: Literal["static", "minilm"] = "static"
    # How much each signal can pull the score down: factor 1 - w * (1 - signal), w in [0, 1] (0 switches
    # it off). Names and defaults: DEFAULT_WEIGHTS above; an unknown name fails the start naming it.
    weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    learned: LearnedSettings = Field(default_factory=LearnedSettings)
    judge: JudgeSettings = Field(default_factory=JudgeSettings)

    @field_validator("weights")
    @classmethod
    def _known_signals(cls, v: dict[str, float]) -> dict[str, float]:
        return check_weights(v)

    @model_validator(mode="after")
    def _bands_ordered(self) -> QualitySettings:
        if self.escalate_below > self.deliver_above:
            raise ValueError("escalate_below must not exceed deliver_above")
        return self
