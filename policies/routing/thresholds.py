"""Tier thresholds fitted to an application's own traffic: shares of a sample of requests (or of the route scores
the proxy logged), or the local cut the quality gate's logged verdicts allow. The command, `synqra route-thresholds`,
is policies/learning/route_thresholds.py (it reads the inference log).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from policies.routing.tiers import cut_below, thresholds_for_shares, tier_index


def _tier_names(router: Any, shares: list[float]) -> list[str]:
    names = [t.name for t in router.tiers]
    if len(shares) != len(names):
        raise ValueError(f"{len(names)} tiers ({', '.join(names)}) need {len(names)} shares, got {len(shares)}")
    return names


def fit_thresholds(
    router: Any, requests: list[dict[str, Any]], shares: list[float]
) -> tuple[list[float], dict[str, float]]:
    """(thresholds, resulting share of each tier) for a sample of requests: the thresholds put about
    `shares` of the sample's scores on each tier; the resulting shares come from routing the sample
    again with them (creative rule and capability constraints included)."""
    from policies.routing.router import Router

    names = _tier_names(router, shares)
    decisions = router.decide_batch(requests)
    if any(d.features["scorer"] != router.scorer.name for d in decisions):
        raise ValueError("some requests were scored by the structural fallback rule (another scale)")
    thresholds = thresholds_for_shares([d.score for d in decisions], shares)
    settings = router.settings.model_copy(update={"thresholds": thresholds})
    refit = Router(settings, router.tiers, router.scorer, router.embedder)
    served = [d.tier for d in refit.decide_batch(requests)]
    return thresholds, {name: served.count(name) / len(served) for name in names}


def thresholds_from_scores(
    router: Any, scores: list[float], shares: list[float]
) -> tuple[list[float], dict[str, float]]:
    """(thresholds, share of each tier by score alone) from scores the proxy logged (logged_scores): no
    request text needed, but the creative rule and capability checks are not applied again."""
    names = _tier_names(router, shares)
    thresholds = thresholds_for_shares(scores, shares)
    return thresholds, shares_by_score(names, scores, thresholds)


def shares_by_score(names: list[str], scores: list[float], thresholds: list[float]) -> dict[str, float]:
    """Share of the scores each tier gets under these thresholds (no creative rule or capability checks)."""
    tiers = [tier_index(s, thresholds) for s in scores]
    return {name: tiers.count(i) / max(1, len(scores)) for i, name in enumerate(names)}


@dataclass(frozen=True)
class LocalCut:
    threshold: float  # route scores below it go to the local tier
    below: int  # logged verdicts below the cut
    escalation_rate: float  # share of those the quality gate escalated


def local_cut(verdicts: list[tuple[float, str]], max_escalation: float, min_requests: int = 20) -> LocalCut | None:
    """The highest cut at which the local tier's answers to the requests scoring below it were escalated
    at most `max_escalation` of the time (None when even the `min_requests` lowest-scored exceed it).
    The cut is placed as tiers.cut_below places the --shares cuts; tied scores are never split."""
    ranked = sorted(verdicts)
    best, escalated = None, 0
    for k, (score, action) in enumerate(ranked, start=1):
        escalated += action == "escalate"
        last_of_tie = k == len(ranked) or ranked[k][0] > score
        if k >= min_requests and last_of_tie and escalated <= max_escalation * k:
            best = (k, escalated / k)
    if best is None:
        return None
    k, rate = best
    return LocalCut(cut_below([s for s, _ in ranked], k), k, rate)


def escalation_by_band(verdicts: list[tuple[float, str]], bands: int = 5) -> list[tuple[float, float, int, float]]:
    """(lowest score, highest score, requests, escalation rate) of `bands` equal-count score bands."""
    ranked = sorted(verdicts)
    out = []
    for b in range(bands):
        part = ranked[b * len(ranked) // bands : (b + 1) * len(ranked) // bands]
        if part:
            out.append((part[0][0], part[-1][0], len(part), sum(a == "escalate" for _, a in part) / len(part)))
    return out
