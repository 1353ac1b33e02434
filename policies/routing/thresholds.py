"""`synqra route-thresholds`: tier thresholds that split a sample of an application's own traffic in chosen shares.

The shipped thresholds are quantiles of the (exam-style) training mix; a deployment aiming at, say, 80% local
fits its own from a sample of requests (JSON lines as for `synqra route-score`) or from the scores its proxy
logged for each routed request:

    synqra route-thresholds --shares 0.8 0.15 0.05 < requests.jsonl
    synqra route-thresholds --shares 0.8 0.15 0.05 --from-log ~/.local/share/synqra/logs/proxy.log

or places the local cut where the local tier's logged answers were still good enough (quality verdicts of
live requests, and of shadow mode's background evaluations, which cover every score):

    synqra route-thresholds --max-escalation 0.2 --from-log ~/.local/share/synqra/logs/proxy.log

and prints the `synqra.routing.thresholds` to put in litellm_config.yaml.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from policies.routing.cli import parse_line, start_command
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


# The proxy's decision log line (router.adecide, INFO): "... synqra.routing INFO route <tier> score=<s> <reason>".
_DECISION_LINE = re.compile(r"\bsynqra\.routing INFO route \S+ score=(-?\d+(?:\.\d+)?)")


def log_lines(paths: list[Path]) -> Iterator[str]:
    """The lines of these log files in turn (a cut-off last write is read as text, not an error)."""
    for path in paths:
        yield from path.read_text(errors="replace").splitlines()


def logged_scores(lines: Iterable[str]) -> list[float]:
    """Route scores of the decisions in proxy log lines, leaving out those the structural fallback
    rule scored (its own scale)."""
    out = []
    for line in lines:
        m = _DECISION_LINE.search(line)
        if m and "structural fallback" not in line:
            out.append(float(m.group(1)))
    return out


# The quality verdict on a routed request's first answer: the live gate's "quality <q> <action> (...) ... first=<tier>
# route_score=<s> scorer=<name>" and shadow mode's "shadow quality ..." with the same fields.
_VERDICT_LINE = re.compile(
    r"\bsynqra\.quality INFO (?:shadow )?quality \d+(?:\.\d+)? (\w+) .* first=(\S+) route_score=(\d+(?:\.\d+)?) scorer=(\S+)"
)


def logged_verdicts(lines: Iterable[str], tier: str, scorer: str) -> list[tuple[float, str]]:
    """(route score, quality action) of the logged verdicts on `tier`'s first answers, for decisions
    `scorer` scored (the structural fallback rule's scores are on another scale)."""
    out = []
    for line in lines:
        m = _VERDICT_LINE.search(line)
        if m and m.group(2) == tier and m.group(4) == scorer:
            out.append((float(m.group(3)), m.group(1)))
    return out


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


def _cut_report(router: Any, paths: list[Path], max_escalation: float) -> tuple[list[float] | None, list[str]]:
    """Thresholds with the local cut placed by the logged quality verdicts, and the lines that explain it."""
    verdicts = logged_verdicts(log_lines(paths), router.tiers[0].name, router.scorer.name)
    report = [
        f"# {len(verdicts)} logged quality verdicts on {router.tiers[0].name} answers (live and shadow); "
        "escalation rate by route-score band:"
    ]
    report += [
        f"#   {lo:.4f}-{hi:.4f}: {n} requests, {rate:.2f} escalated" for lo, hi, n, rate in escalation_by_band(verdicts)
    ]
    cut = local_cut(verdicts, max_escalation)
    if cut is None:
        report.append(f"# no cut keeps the escalation rate at or below {max_escalation} (20 requests at least)")
        return None, report
    report.append(
        f"# local cut {cut.threshold}: the {cut.below} logged requests below it were escalated {cut.escalation_rate:.2f} "
        "of the time; the cuts above it stay as configured (raised to it if lower)"
    )
    if cut.below == len(verdicts):
        report.append("# every logged request is below this cut: nothing is known about higher scores yet")
    return [cut.threshold, *(max(t, cut.threshold) for t in router.thresholds[1:])], report


def route_thresholds_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="synqra route-thresholds",
        description="Thresholds that give each tier a chosen share of a sample of your own requests "
        "(JSON lines as for route-score on stdin, or the proxy's log of its decisions); prints the "
        "synqra.routing.thresholds to configure.",
    )
    goal = ap.add_mutually_exclusive_group(required=True)
    goal.add_argument("--shares", type=float, nargs="+", help="one share per tier, cheapest first, sum 1")
    goal.add_argument(
        "--max-escalation",
        type=float,
        metavar="RATE",
        help="with --from-log: the highest local cut at which the logged quality verdicts (live, and shadow mode's "
        "evaluations) on the local tier's answers were escalated at most RATE of the time",
    )
    ap.add_argument("--from-log", type=Path, nargs="+", help="proxy.log file(s): use the scores the proxy logged")
    args, router = start_command("synqra route-thresholds", ap, argv)
    if router is None:
        return 2
    if args.max_escalation is not None:
        if not args.from_log:
            print("synqra route-thresholds: --max-escalation reads the proxy's log: give --from-log", file=sys.stderr)
            return 2
        try:
            cut, report = _cut_report(router, args.from_log, args.max_escalation)
        except OSError as e:
            print(f"synqra route-thresholds: {e}", file=sys.stderr)
            return 2
        print("\n".join(report))
        if cut is None:
            return 1
        print(f"synqra:\n  routing:\n    thresholds: {json.dumps(cut)}")
        return 0
    try:
        if args.from_log:
            scores = logged_scores(log_lines(args.from_log))
            thresholds, result = thresholds_from_scores(router, scores, args.shares)
            what = f"{len(scores)} logged decisions; tier shares by score alone"
            # What the running thresholds do to the same scores: in shadow mode, the split going live would give.
            now = shares_by_score([t.name for t in router.tiers], scores, router.thresholds)
            print(
                f"# at the configured thresholds {router.thresholds}: "
                + ", ".join(f"{n} {v:.3f}" for n, v in now.items())
            )
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
