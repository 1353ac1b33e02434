"""`synqra.quality` settings (every key optional; the defaults make the app work without it)."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SignalWeights(BaseModel):
    """How much each signal can pull the score down: score = prod(1 - w * (1 - signal)).

    A weight of 1 lets a signal alone drive the score to 0; 0 switches it off.
    Hard-failure signals (empty, cut_off, loop, json_valid, tool_args) force
    "escalate" whatever their weight; their weight only shapes the score shown.
    Defaults are hand-set (except dead_end) and measured in bench/results/quality_eval.md.
    """

    model_config = ConfigDict(extra="forbid")

    empty: float = Field(1.0, ge=0, le=1)
    cut_off: float = Field(1.0, ge=0, le=1)
    loop: float = Field(1.0, ge=0, le=1)
    json_valid: float = Field(1.0, ge=0, le=1)
    tool_args: float = Field(1.0, ge=0, le=1)
    abrupt_end: float = Field(0.6, ge=0, le=1)
    refusal: float = Field(0.7, ge=0, le=1)
    language: float = Field(0.7, ge=0, le=1)
    relevance: float = Field(0.6, ge=0, le=1)
    logprob_mean: float = Field(0.5, ge=0, le=1)
    logprob_min: float = Field(0.25, ge=0, le=1)
    arithmetic: float = Field(0.6, ge=0, le=1)
    maths_answer: float = Field(0.5, ge=0, le=1)
    maths_inputs: float = Field(0.3, ge=0, le=1)
    hedging: float = Field(0.3, ge=0, le=1)
    # The one fitted weight: chosen on GSM8K by bench/quality_eval.py (5-fold out-of-fold figures there).
    dead_end: float = Field(0.2, ge=0, le=1)


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
    relevance_embedder: Literal["static", "minilm"] = "static"
    weights: SignalWeights = Field(default_factory=SignalWeights)

    @model_validator(mode="after")
    def _bands_ordered(self) -> "QualitySettings":
        if self.escalate_below > self.deliver_above:
            raise ValueError("escalate_below must not exceed deliver_above")
        return self
