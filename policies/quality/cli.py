"""`synqra quality-score`: score JSON lines of answers with the proxy's own scorer.

    synqra quality-score [--config litellm_config.yaml] < answers.jsonl > scores.jsonl

Input, one per line: {"id": ..., "messages": [...], "answer": "<text>"}; optional
"finish_reason", "response_format", "tools", "tool_calls" are used when present.
Output, one per line, in input order: {"id": ..., "score": <0..1>, "action": ...}.

Scored as the proxy scores: the learned answer model (when its artifact loads and
synqra.quality.learned.enabled) times the rule signals (empty, cut off when "finish_reason"
is given, loop, invalid JSON when "response_format" asks for JSON, tool-call arguments when
"tool_calls" are given, refusal, language, arithmetic written in symbols or words, the result of
a calculation the question asks for, figures the model cannot know). Token log-probabilities are
used only when the row gives them ("logprobs": [floats], the generating model's own): recomputing
them with the local model would score another model's text by a different model's confidence.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import IO, Any

from policies.common.quality_settings import QualitySettings
from policies.quality.scorer import QualityScorer, ScoreItem

BATCH = 256


def _item(row: dict[str, Any]) -> ScoreItem:
    request: dict[str, Any] = {"messages": row.get("messages") or []}
    for key in ("response_format", "tools", "system"):
        if key in row:
            request[key] = row[key]
    logprobs = row.get("logprobs")
    if not (isinstance(logprobs, list) and all(isinstance(x, (int, float)) for x in logprobs)):
        logprobs = None
    return ScoreItem(request, str(row.get("answer") or ""), row.get("finish_reason"), logprobs, row.get("tool_calls"))


def _settings(config: str | None) -> tuple[QualitySettings, str | None, int]:
    if not config:
        return QualitySettings(), None, os.cpu_count() or 1
    from policies.common.settings import load_config

    cfg = load_config(config)
    embed = cfg.synqra.backends.embed
    return cfg.synqra.quality, embed.model_path, embed.n_threads


def score_stream(src: IO[str], dst: IO[str], scorer: QualityScorer, batch: int = BATCH) -> int:
    """Read JSON lines from src, write scores to dst in order; return the number scored."""
    n = 0
    rows: list[dict[str, Any]] = []

    def flush() -> None:
        for row, v in zip(rows, scorer.score_batch([_item(r) for r in rows])):
            dst.write(json.dumps({"id": row.get("id"), "score": v.score, "action": v.action}) + "\n")
        dst.flush()
        rows.clear()

    for lineno, line in enumerate(src, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise SystemExit(f"quality-score: line {lineno} is not valid JSON: {e.msg}") from None
        if not isinstance(row, dict):
            raise SystemExit(f"quality-score: line {lineno} must be a JSON object with id, messages, answer")
        rows.append(row)
        n += 1
        if len(rows) >= batch:
            flush()
    if rows:
        flush()
    return n


def quality_score_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(
        prog="synqra quality-score", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--config", help="litellm_config.yaml (synqra.quality bands and weights, embedding model)")
    ap.add_argument("--input", help="JSON lines file (default: stdin)")
    ap.add_argument("--output", help="output file (default: stdout)")
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    settings, model_path, n_threads = _settings(args.config)
    embedder = None
    if settings.weights["relevance"] > 0:
        from policies.embedding.names import make_embedder

        embedder = make_embedder(settings.relevance_embedder, model_path=model_path, n_threads=n_threads)
    scorer = QualityScorer(settings, embedder)
    src = open(args.input, encoding="utf-8") if args.input else sys.stdin
    dst = open(args.output, "w", encoding="utf-8") if args.output else sys.stdout
    try:
        score_stream(src, dst, scorer)
    finally:
        if args.input:
            src.close()
        if args.output:
            dst.close()
    return 0
