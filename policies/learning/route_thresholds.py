"""`synqra route-thresholds`: tier thresholds that split a sample of an application's own traffic in chosen shares.

The shipped thresholds are quantiles of the (exam-style) training mix; a deployment aiming at, say, 80% local
fits its own from a sample of requests (JSON lines as for `synqra route-score`) or from the route scores its proxy
kept in the inference log (`<data_dir>/learning/inference_log.sqlite3`; or give the file or its folder):

    synqra route-thresholds --shares 0.8 0.15 0.05 < requests.jsonl
    synqra route-thresholds --shares 0.8 0.15 0.05 --from-log

or places the local cut where the local tier's logged answers were still good enough (the quality gate's
verdicts on live requests, and on shadow mode's background evaluations, which cover every score):

    synqra route-thresholds --max-escalation 0.2 --from-log

and prints the `synqra.routing.thresholds` to put in litellm_config.yaml. Only the rows of the router version
serving now are read: another version's scores are on another scale.

It lives with the learning code because it reads the inference log and the router versions; the fitting itself
is policies/routing/thresholds.py.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path
from typing import Any

from policies.learning.cli import _settings
from policies.learning.labels import gate_action
from policies.learning.registry import RouterRegistry
from policies.learning.store import FILENAME, InferenceLog
from policies.routing.cli import parse_line, start_command
from policies.routing.thresholds import (
    escalation_by_band,
    fit_thresholds,
    local_cut,
    shares_by_score,
    thresholds_from_scores,
)

PROG = "synqra route-thresholds"
# The fewest logged decisions cuts are fitted from without --force. A cut placed from n scores puts a tier's share
# within about sqrt(p(1 - p) / n) of its aim on the traffic to come: at 100 rows a 50% share is known to +-5 points and
# a 5% tier is 5 requests; below that a cut rests on a handful of requests (one logged decision gave both cuts at its
# own score, [0.169731, 0.169731]: half the traffic to no tier on the next day's scores).
MIN_LOGGED_DECISIONS = 100


class _Logged:
    """The inference log's rows of the serving router version, as the threshold fits read them."""

    def __init__(self, given: str, config: str | None) -> None:
        settings, folder, base, _ = _settings(config)
        path = Path(given).expanduser() if given else folder
        path = path / FILENAME if path.is_dir() or path.suffix == "" else path
        if not path.is_file():
            raise OSError(
                f"no inference log at {path} (the proxy writes it when synqra.learning.enabled is on and routing uses "
                "the learned scorer)"
            )
        self.path = path
        self.version = RouterRegistry(path.parent / "routers", base).current_name()
        if path.stat().st_size == 0:  # an empty file is no log; opening it would also be refused below
            raise OSError(f"{path} holds no inference log (an empty file)")
        self._log = InferenceLog(path, read_only=True)  # a command that reads: it never writes the log

    def scores(self, scorer: str) -> list[float]:
        return self._log.route_scores(self.version, scorer)

    def verdicts(self, scorer: str) -> list[tuple[float, str]]:
        return [(score, gate_action(label)) for score, label in self._log.gate_labels(self.version, scorer)]

    def close(self) -> None:
        self._log.close()


def _cut_report(router: Any, logged: _Logged, max_escalation: float) -> tuple[list[float] | None, list[str]]:
    """Thresholds with the local cut placed by the logged quality verdicts, and the lines that explain it."""
    verdicts = logged.verdicts(router.scorer.name)
    report = [
        f"# {len(verdicts)} logged quality verdicts on {router.tiers[0].name} answers (live and shadow) to requests "
        f"router {logged.version} routed; escalation rate by route-score band:"
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


def _from_log(
    router: Any, logged: _Logged, shares: list[float], force: bool
) -> tuple[list[float], dict[str, float], str]:
    scores = logged.scores(router.scorer.name)
    if not scores:
        raise ValueError(
            f"{logged.path} holds no route scores of router {logged.version}, the version serving now (another "
            "version's scores are on another scale): route some traffic with it first"
        )
    if len(scores) < MIN_LOGGED_DECISIONS:
        few = (
            f"only {len(scores)} logged decisions of router {logged.version}, fewer than {MIN_LOGGED_DECISIONS}: "
            "cuts fitted from so few scores say little about the traffic to come"
        )
        if not force:
            raise ValueError(f"{few}; route more traffic first, or give --force to fit them anyway")
        print(f"{PROG}: warning: {few}", file=sys.stderr)
        print(f"# warning: {few}")
    thresholds, result = thresholds_from_scores(router, scores, shares)
    # What the running thresholds do to the same scores: in shadow mode, the split going live would give.
    now = shares_by_score([t.name for t in router.tiers], scores, router.thresholds)
    print(f"# at the configured thresholds {router.thresholds}: " + ", ".join(f"{n} {v:.3f}" for n, v in now.items()))
    return thresholds, result, f"{len(scores)} logged decisions of router {logged.version}; tier shares by score alone"


def route_thresholds_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog=PROG,
        description="Thresholds that give each tier a chosen share of a sample of your own requests "
        "(JSON lines as for route-score on stdin, or the route scores in the proxy's inference log); prints the "
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
    ap.add_argument(
        "--from-log",
        nargs="?",
        const="",
        metavar="PATH",
        help="read the proxy's inference log (default: <data_dir>/learning/inference_log.sqlite3, or "
        "synqra.learning.store_dir; PATH: the file or its folder): the serving router version's rows",
    )
    ap.add_argument(
        "--force",
        action="store_true",
        help=f"with --from-log --shares: fit from fewer than {MIN_LOGGED_DECISIONS} logged decisions (with a warning)",
    )
    args, router = start_command(PROG, ap, argv)
    if router is None:
        return 2
    if args.max_escalation is not None and args.from_log is None:
        print(f"{PROG}: --max-escalation reads the proxy's inference log: give --from-log", file=sys.stderr)
        return 2
    logged = None
    try:
        if args.from_log is not None:
            logged = _Logged(args.from_log, args.config)
        if logged is not None and args.max_escalation is not None:
            cut, report = _cut_report(router, logged, args.max_escalation)
            print("\n".join(report))
            if cut is None:
                return 1
            print(f"synqra:\n  routing:\n    thresholds: {json.dumps(cut)}")
            return 0
        if logged is not None:
            thresholds, result, what = _from_log(router, logged, args.shares, args.force)
        else:
            parsed = [parse_line(line) for line in sys.stdin if line.strip()]
            requests = [req for _, req, err in parsed if err is None and req is not None]
            thresholds, result = fit_thresholds(router, requests, args.shares)
            what = f"{len(requests)} requests ({len(parsed) - len(requests)} unreadable lines skipped); tier shares"
    except (OSError, ValueError, RuntimeError, sqlite3.Error) as e:  # RuntimeError: a log of another schema
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    finally:
        if logged is not None:
            logged.close()
    shares = ", ".join(f"{name} {share:.3f}" for name, share in result.items())
    print(f"# {what} with these thresholds: {shares}")
    print(f"synqra:\n  routing:\n    thresholds: {json.dumps(thresholds)}")
    return 0
