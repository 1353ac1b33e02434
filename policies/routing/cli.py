"""`synqra route-score`: JSON lines {"id", "messages", ...} on stdin -> {"id", "score", "tier"} per line, in order.

Same Router code path as the proxy (`decide_batch`), with the in-process
embedder the artifact was trained with and batched embeddings. A line that cannot be routed gets
{"id": ..., "error": "..."} and the run goes on.

    synqra route-score --config litellm_config.yaml < requests.jsonl > scores.jsonl

`synqra route-thresholds` (thresholds.py) builds its router with the same helpers.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import IO, Any

from policies.common.offline import apply_offline_env
from policies.routing.features import request_text, structural_features

log = logging.getLogger("synqra.routing.cli")


def parse_line(line: str) -> tuple[Any, dict[str, Any] | None, str | None]:
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
        for rid, _req, err in batch:
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
        batch.append(parse_line(line))
        if len(batch) >= batch_size:
            flush()
    if batch:
        flush()
    return errors


def _load_config(path: str | None) -> Any:
    from policies.common.settings import AppConfig, ModelEntry, SynqraSettings, load_config

    if path:
        return load_config(path)
    repo_default = Path(__file__).resolve().parents[2] / "litellm_config.yaml"
    if repo_default.is_file():
        return load_config(repo_default)
    # No config: the default tiers with no capability data beyond LiteLLM's model map.
    settings = SynqraSettings()
    models = [ModelEntry(model_name=t, litellm_params={"model": t}) for t in settings.routing.tiers]
    return AppConfig(path=repo_default, model_list=models, synqra=settings)


def router_artifact(path: str | Path) -> Path:
    """The .npz of `--router`: an artifact folder (router.npz inside, as `synqra learn` writes) or the file."""
    p = Path(path)
    return p if p.suffix == ".npz" else p / "router.npz"


def _router(config: str | None, artifact: Path | None = None) -> Any:
    """The proxy's Router for this config, with the in-process embedder the artifact was trained with
    (fallback rule: MiniLM, for the creative rule). `artifact` replaces the configured one and must load.
    Raises ValueError on a bad config or an unusable `artifact`."""
    from policies.embedding.names import MINILM, embedder_for
    from policies.routing.router import Router, load_scorer
    from policies.routing.scorer import ArtifactError, load_artifact

    cfg = _load_config(config)
    if artifact is not None:
        try:
            load_artifact(artifact)
        except ArtifactError as e:
            raise ValueError(str(e)) from None
        routing = cfg.synqra.routing.model_copy(update={"artifact_path": str(artifact), "thresholds": None})
        cfg = cfg.model_copy(update={"synqra": cfg.synqra.model_copy(update={"routing": routing})})
    scorer = load_scorer(cfg.synqra.routing.artifact_path)
    embedder = embedder_for(scorer.embedder if scorer.needs_embedding else MINILM)
    return Router.from_config(cfg, embedder)


def start_command(prog: str, ap: argparse.ArgumentParser, argv: list[str] | None) -> tuple[argparse.Namespace, Any]:
    """Parse argv and build the router: (args, router), router None after printing why the config is wrong."""
    ap.add_argument("--config", help="litellm_config.yaml (default: the repo's, else built-in defaults)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    apply_offline_env()
    router = getattr(args, "router", None)
    try:
        return args, _router(args.config, router_artifact(router) if router else None)
    except ValueError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return args, None


def route_score_main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra route-score", description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch-size", type=int, default=256, help="requests per embedding batch")
    ap.add_argument(
        "--router", help="artifact folder written by `synqra learn` (or a .npz): score with it and its thresholds"
    )
    args, router = start_command("synqra route-score", ap, argv)
    if router is None:
        return 2
    try:
        errors = score_stream(router, sys.stdin, sys.stdout, args.batch_size)
    except BrokenPipeError:  # the reader stopped early (`| head`): end quietly, as Unix tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second error at interpreter exit
        return 1
    if errors:
        print(f"synqra route-score: {errors} line(s) could not be routed (see their 'error')", file=sys.stderr)
    return 0
