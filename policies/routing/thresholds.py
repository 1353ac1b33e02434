"""`synqra route-thresholds`: tier thresholds that split a sample of an application's own traffic in chosen shares.

The shipped thresholds are quantiles of the (exam-style) training mix; a deployment aiming at, say, 80% local
fits its own from a sample of requests (JSON lines as for `synqra route-score`) or from the scores its proxy
logged for each routed request:

    synqra route-thresholds --shares 0.8 0.15 0.05 < requests.jsonl
    synqra route-thresholds --shares 0.8 0.15 0.05 --from-log ~/.local/share/synqra/logs/proxy.log

and prints the `synqra.routing.thresholds` to put in litellm_config.yaml.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Iterable

from policies.routing.cli import parse_line, start_command
from policies.routing.tiers import thresholds_for_shares, tier_index


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
    thresholds = [round(t, 6) for t in thresholds_for_shares([d.score for d in decisions], shares)]
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
    thresholds = [round(t, 6) for t in thresholds_for_shares(scores, shares)]
    return thresholds, shares_by_score(names, scores, thresholds)


def shares_by_score(names: list[str], scores: list[float], thresholds: list[float]) -> dict[str, float]:
    """Share of the scores each tier gets under these thresholds (no creative rule or capability checks)."""
    tiers = [tier_index(s, thresholds) for s in scores]
    return {name: tiers.count(i) / max(1, len(scores)) for i, name in enumerate(names)}


# The proxy's decision log line (router.adecide, INFO): "... synqra.routing INFO route <tier> score=<s> <reason>".
_DECISION_LINE = re.compile(r"\bsynqra\.routing INFO route \S+ score=(-?\d+(?:\.\d+)?)")


def logged_scores(lines: Iterable[str]) -> list[float]:
    """Route scores of the decisions in proxy log lines, leaving out those the structural fallback
    rule scored (its own scale)."""
    out = []
    for line in lines:
        m = _DECISION_LINE.search(line)
        if m and "structural fallback" not in line:
            out.append(float(m.group(1)))
    return out


def route_thresholds_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="synqra route-thresholds",
        description="Thresholds that give each tier a chosen share of a sample of your own requests "
        "(JSON lines as for route-score on stdin, or the proxy's log of its decisions); prints the "
        "synqra.routing.thresholds to configure.",
    )
    ap.add_argument("--shares", type=float, nargs="+", required=True, help="one share per tier, cheapest first, sum 1")
    ap.add_argument("--from-log", type=Path, nargs="+", help="proxy.log file(s): use the scores the proxy logged")
    args, router = start_command("synqra route-thresholds", ap, argv)
    if router is None:
        return 2
    try:
        if args.from_log:
            scores = logged_scores(ln for path in args.from_log for ln in path.read_text(errors="replace").splitlines())
            thresholds, result = thresholds_from_scores(router, scores, args.shares)
            what = f"{len(scores)} logged decisions; tier shares by score alone"
            # What the running thresholds do to the same scores: in shadow mode, the split going live would give.
            now = shares_by_score([t.name for t in router.tiers], scores, router.thresholds)
            print(f"# at the configured thresholds {router.thresholds}: " + ", ".join(f"{n} {v:.3f}" for n, v in now.items()))
        else:
            parsed = [parse_line(line) for line in sys.stdin if line.strip()]
            requests = [req for _, req, err in parsed if err is None and req is not None]
            thresholds, result = fit_thresholds(router, requests, args.shares)
            what = f"{len(requests)} requests ({len(parsed) - len(requests)} unreadable lines skipped); tier shares"
    except (OSError, ValueError) as e:
        print(f"synqra route-thresholds: {e}", file=sys.stderr)
        return 2
    shares = ", ".join(f"{name} {share:.3f}" for name, share in result.items())
    print(f"# {what} with these thresholds: {shares}")
    print(f"synqra:\n  routing:\n    thresholds: {json.dumps(thresholds)}")
    return 0
