"""(score, thresholds, request constraints) -> tier name. Pure: capabilities come in as data.

Order of decisions:
1. budget pressure raises the thresholds (more stays cheap);
2. the score picks a tier by thresholds; a product rule may ask for a minimum tier
   (creative/brand work -> the creative tier);
3. hard constraints remove tiers that cannot serve the request (images -> vision,
   tools -> function calling, prompt too long for the context window). The pick moves
   up to the next tier that can serve it, else down; if none can, the strongest tier
   is kept and the reason says so (the provider's error is clearer than a guess).
Unknown vision / tool support counts as "no" (a wrong "yes" fails the request);
an unknown context window counts as "fits" (nothing to check against).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class TierInfo:
    name: str
    max_input_tokens: int | None = None
    supports_vision: bool | None = None
    supports_function_calling: bool | None = None
    supports_reasoning: bool | None = None
    # Keeps Responses API conversations (OpenAI's own API). LiteLLM gives other providers a previous_response_id's
    # conversation only from its database, which synqra does not run: without it the turn goes out with no history.
    stores_responses: bool = False
    # Several answers (`n`) and token log-probabilities: LiteLLM drops what a provider does not take (drop_params),
    # so a model without them answers a 200 with one choice and no logprobs. None: not known (assumed to).
    supports_n: bool | None = None
    supports_logprobs: bool | None = None


@dataclass(frozen=True)
class Constraints:
    prompt_tokens: int = 0
    images: bool = False
    tools: bool = False
    reasoning: bool = False  # extended thinking asked for (Anthropic `thinking`, OpenAI reasoning effort)
    stored_context: bool = False  # a Responses previous_response_id or conversation: the provider must keep it
    choices: bool = False  # more than one answer asked for (`n` > 1)
    logprobs: bool = False  # token log-probabilities asked for (`logprobs`, `top_logprobs`)


def shifted_thresholds(thresholds: list[float], budget_pressure: float, max_shift: float) -> list[float]:
    """t -> t + p * max_shift * (1 - t), p clipped to [0, 1]; p = 1, max_shift = 1 keeps everything on tier 0."""
    p = min(1.0, max(0.0, budget_pressure))
    return [t + p * max_shift * (1.0 - t) for t in thresholds]


def tier_index(score: float, thresholds: list[float]) -> int:
    """Number of thresholds at or below the score."""
    return sum(1 for t in thresholds if score >= t)


def unmet(tier: TierInfo, c: Constraints, unknown_is_no: bool = True) -> str | None:
    """Why this tier cannot serve the request, or None. `unknown_is_no=False` only refuses what the tier is
    known not to do (a model the client asked for by name: its provider has the last word)."""

    def lacks(support: bool | None) -> bool:
        return support is False or (unknown_is_no and support is None)

    if c.images and lacks(tier.supports_vision):
        return "no vision"
    if c.tools and lacks(tier.supports_function_calling):
        return "no tools"
    if c.reasoning and lacks(tier.supports_reasoning):
        return "no reasoning"
    if c.choices and tier.supports_n is False:  # never guessed from None: most OpenAI-protocol models take them
        return "no n"
    if c.logprobs and tier.supports_logprobs is False:
        return "no logprobs"
    if c.stored_context and not tier.stores_responses:  # never guessed: a wrong "yes" answers without the history
        return "no stored conversations"
    if tier.max_input_tokens is not None and c.prompt_tokens > tier.max_input_tokens:
        return f"context {tier.max_input_tokens} < {c.prompt_tokens} tokens"
    return None


def choose_tier(
    score: float,
    thresholds: list[float],
    tiers: list[TierInfo],
    constraints: Constraints,
    budget_pressure: float = 0.0,
    max_shift: float = 0.5,
    min_tier: int = 0,
    unavailable: Mapping[str, str] | None = None,
) -> tuple[str, str]:
    """(tier name, reason). `tiers` cheapest first, len(thresholds) == len(tiers) - 1. `unavailable`: tiers that
    cannot answer now ({name: why}, e.g. no API key), passed over like tiers that cannot serve the request."""
    if len(thresholds) != len(tiers) - 1:
        raise ValueError(f"{len(tiers)} tiers need {len(tiers) - 1} thresholds, got {len(thresholds)}")
    ts = shifted_thresholds(thresholds, budget_pressure, max_shift)
    by_score = tier_index(score, ts)
    want = max(by_score, min_tier)
    reason = f"score {score:.3f}" + (f" (thresholds {', '.join(f'{t:.3f}' for t in ts)})" if ts else "")
    if want > by_score:
        reason += f"; raised to {tiers[want].name} by rule"
    down = unavailable or {}
    skipped = [
        (t.name, why)
        for t in tiers
        if (why := (f"unavailable ({down[t.name]})" if t.name in down else unmet(t, constraints)))
    ]
    blocked = dict(skipped)
    if tiers[want].name not in blocked:
        return tiers[want].name, reason
    order = list(range(want + 1, len(tiers))) + list(range(want - 1, -1, -1))
    for i in order:
        if tiers[i].name not in blocked:
            why = "; ".join(f"{n}: {w}" for n, w in skipped)
            return tiers[i].name, f"{reason}; skipped {why}"
    return tiers[-1].name, f"{reason}; no tier meets the request ({'; '.join(f'{n}: {w}' for n, w in skipped)})"


def thresholds_for_shares(scores: list[float], shares: list[float]) -> list[float]:
    """Thresholds that send about shares[i] of these scores to tier i (cheapest first; shares sum to 1).

    Each cut lies halfway between the last score kept below it and the first sent above, so a
    sample of an application's own traffic sets where its tiers split. Capability constraints and
    the creative rule can still move single requests up; `synqra route-thresholds` reports the
    shares that result.
    """
    if len(shares) < 2 or any(s < 0 for s in shares) or abs(sum(shares) - 1.0) > 1e-3:
        raise ValueError(f"shares must be one non-negative share per tier (at least 2) summing to 1, got {shares}")
    if not scores:
        raise ValueError("no scores to place thresholds between")
    ordered = sorted(scores)
    n, cum, out = len(ordered), 0.0, []
    for share in shares[:-1]:
        cum += share
        out.append(cut_below(ordered, min(n, max(0, round(cum * n)))))
    return out


def cut_below(ordered: list[float], k: int) -> float:
    """A threshold with exactly the k lowest of these ascending scores below it (tier_index: a score
    below a threshold stays under it): halfway between the k-th and the next, else just above the
    top (k = n) or at the bottom (k = 0). Rounded to 6 decimals for the config file only when the
    rounding keeps every score on its side. A tie at the k-th score cannot be split: callers choose k."""
    if k <= 0:
        return ordered[0]
    last = ordered[k - 1]
    if k >= len(ordered):
        above = round(last + 1e-6, 6)  # the next 6-decimal value above the top score
        return above if above > last else math.nextafter(last, math.inf)
    mid = (last + ordered[k]) / 2
    rounded = round(mid, 6)
    return rounded if last < rounded <= ordered[k] else mid
