"""Pure mapping from a quality score to an action, and which tiers are validated."""

from __future__ import annotations

from typing import Literal

from policies.common.quality_settings import QualitySettings

Action = Literal["deliver", "rephrase", "escalate"]


def band(score: float, settings: QualitySettings) -> Action:
    """score > deliver_above: deliver; score < escalate_below: escalate; else rephrase."""
    if score > settings.deliver_above:
        return "deliver"
    if score < settings.escalate_below:
        return "escalate"
    return "rephrase"


def validated_tiers(settings: QualitySettings, tiers: list[str]) -> list[str]:
    """The tiers whose answers get scored: configured, or all but the top (last) tier."""
    if settings.validated_tiers is not None:
        return [t for t in settings.validated_tiers if t in tiers]
    return list(tiers[:-1])


def is_validated(tier: str, settings: QualitySettings, tiers: list[str]) -> bool:
    return settings.enabled and tier in validated_tiers(settings, tiers)
