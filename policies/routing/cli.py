"""`synqra route-score`: JSON lines {"id", "messages", ...} on stdin -> {"id", "score", "tier"} per line, in order.

Same Router code path as the proxy (`decide_batch`), with the in-process
embedder the artifact was trained with and batched embeddings. A line that cannot be routed gets
{"id": ..., "error": "..."} and the run goes on.

    synqra route-score --config litellm_config.yaml < requests.jsonl > scores.jsonl

`synqra route-thresholds --shares 0.8 0.15 0.05 < requests.jsonl` (or `--from-log proxy.log`) places the tier
thresholds so a sample of an application's own traffic splits in those shares.
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from pathlib import Path
from typing import IO, Any, Iterable

from policies.routing.features import request_text, structural_features
from policies.routing.tiers import thresholds_for_shares, tier_index
from proxy.offline import apply_offline_env

log = logging.getLogger("synqra.routing.cli")


def _parse(line: str) -> tuple[Any, dict[str, Any] | None, str | None]:
    """(id, request, error) for one input line."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return None, None, f"invalid JSON: {e}"
    if not isinstance(obj, dict):
        return None, None, "line must be a JSON object"
    rid = obj.get("id")
    if not isinstance(obj.get("messages"), list) or not obj["messages"]:
        return rid, None, "'messages' must be a non-empty list"
    try:
        structural_features(obj, request_text(obj))
    except (ValueError, TypeError, AttributeError) as e:
        return rid, None, f"malformed request: {e}"
    return rid, obj, None


def score_stream(router: Any, lines: IO[str], out: IO[str], batch_size: int = 256) -> int:
    """Route every line; returns the number of error lines."""
    errors = 0
    batch: list[tuple[Any, dict[str, Any] | None, str | None]] = []

    def flush() -> None:
        nonlocal errors
        ok = [req for _, req, err in batch if err is None and req is not None]
        decisions = iter(router.decide_batch(ok) if ok else [])
        for rid, req, err in batch:
            if err is None:
                d = next(decisions)
                row: dict[str, Any] = {"id": rid, "score": round(d.score, 6), "tier": d.tier}
            else:
                errors += 1
                row = {"id": rid, "error": err}
            out.write(json.dumps(row) + "\n")
        out.flush()
        batch.clear()

    for line in lines:
        if not line.strip():
            continue
        batch.append(_parse(line))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return errors


def _load_config(path: str | None) -> Any:
    from proxy.settings import AppConfig, ModelEntry, SynqraSettings, load_config

    if path:
        return load_config(path)
    repo_default = Path(__file__).resolve().parents[2] / "litellm_config.yaml"
    if repo_default.is_file():
        return load_config(repo_default)
    # No config: the default tiers with no capability data beyond LiteLLM's model map.
    settings = SynqraSettings()
    models = [ModelEntry(model_name=t, litellm_params={"model": t}) for t in settings.routing.tiers]
    return AppConfig(path=repo_default, model_list=models, synqra=settings)


def _router(config: str | None) -> Any:
    """The proxy's Router for this config, with the in-process embedder the artifact was trained with
    (fallback rule: MiniLM, for the creative rule). Raises ValueError on a bad config."""
    from policies.routing.embedders import MINILM, embedder_for
    from policies.routing.router import Router, load_scorer

    cfg = _load_config(config)
    scorer = load_scorer(cfg.synqra.routing.artifact_path)
    embedder = embedder_for(scorer.embedder if scorer.needs_embedding else MINILM)
    return Router.from_config(cfg, embedder)


def _start(prog: str, ap: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any]:
    """Parse argv and build the router: (args, router), router None after printing why the config is wrong."""
    ap.add_argument("--config", help="litellm_config.yaml (default: the repo's, else built-in defaults)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    apply_offline_env()
    try:
        return args, _router(args.config)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return args, None


def route_score_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra route-score", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=256, help="requests per embedding batch")
    args, router = _start("synqra route-score", ap, argv)
    if router is None:
        return 2
    errors = score_stream(router, sys.stdin, sys.stdout, args.batch_size)
    if errors:
        print(f"synqra route-score: {errors} line(s) could not be routed (see their 'error')", file=sys.stderr)
    return 0


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


def thresholds_from_log(router: Any, lines: Iterable[str], shares: list[float]) -> tuple[list[float], dict[str, float]]:
    """(thresholds, share of each tier by score alone) from the scores the proxy logged: no request
    text needed, but the creative rule and capability checks are not applied again."""
    names = _tier_names(router, shares)
    scores = logged_scores(lines)
    thresholds = [round(t, 6) for t in thresholds_for_shares(scores, shares)]
    tiers = [tier_index(s, thresholds) for s in scores]
    return thresholds, {name: tiers.count(i) / len(scores) for i, name in enumerate(names)}


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
    args, router = _start("synqra route-thresholds", ap, argv)
    if router is None:
        return 2
    try:
        if args.from_log:
            lines = [ln for path in args.from_log for ln in path.read_text(errors="replace").splitlines()]
            thresholds, result = thresholds_from_log(router, lines, args.shares)
            what = f"{len(logged_scores(lines))} logged decisions; tier shares by score alone"
        else:
            parsed = [_parse(line) for line in sys.stdin if line.strip()]
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
