"""Time added by scoring one answer of about 300 tokens, as the proxy does it (target: p50 under 10 ms, no judge).

Side by side, interleaved answer by answer (the machine is shared and noisy): the rule signals alone
(what the gate computes before anything else), and the full `QualityScorer.ascore` as shipped (rules +
two static MiniLM embeddings in-process + the learned answer model). Answers: arena-hard answers cut to
300 tokens of the static embedder's tokenizer (about 1,200 characters), under their own question.

    nice -n 10 .venv/bin/python bench/quality_speed.py [--n 200] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from bench.measure import write_result  # noqa: E402
from policies.common.quality_settings import QualitySettings  # noqa: E402
from policies.quality.dataset import DEFAULT_DATA_DIR, load_arena_hard  # noqa: E402
from policies.quality.scorer import QualityScorer, combine, compute_signals  # noqa: E402

TOKENS = 300


def samples(data: Path, n: int, static) -> list[tuple[dict, str]]:
    """n arena-hard answers of at least TOKENS tokens, each cut to TOKENS tokens, one per prompt."""
    out, seen = [], set()
    for r in load_arena_hard(data):
        if r.group in seen:
            continue
        enc = static._tok.encode(r.answer, add_special_tokens=False)
        if len(enc.ids) < TOKENS:
            continue
        seen.add(r.group)
        out.append(({"messages": r.messages}, r.answer[: enc.offsets[TOKENS - 1][1]]))
        if len(out) >= n:
            break
    return out


async def measure(items: list[tuple[dict, str]], scorer: QualityScorer) -> dict[str, list[float]]:
    settings = scorer.settings
    for req, ans in items[:5]:  # warm-up: tokenizer caches, numpy
        await scorer.ascore(req, ans, "stop", None)
    t: dict[str, list[float]] = {"rule signals only": [], "ascore as shipped (rules + answer model)": []}
    for req, ans in items:
        t0 = time.perf_counter()
        combine(compute_signals(req, ans, "stop", None, None, None), settings)
        t1 = time.perf_counter()
        await scorer.ascore(req, ans, "stop", None)
        t2 = time.perf_counter()
        t["rule signals only"].append(t1 - t0)
        t["ascore as shipped (rules + answer model)"].append(t2 - t1)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    args = ap.parse_args(argv)
    from policies.embedding.static import StaticEmbedder

    static = StaticEmbedder.default()
    scorer = QualityScorer(QualitySettings(), static, static_embedder=static)
    if scorer.answer_model is None:
        print("the answer model did not load: run `synqra train-quality-scorer`", file=sys.stderr)
        return 2
    items = samples(args.data, args.n, static)
    times = asyncio.run(measure(items, scorer))
    lines = [
        f"{len(items)} arena-hard answers cut to {TOKENS} tokens (mean {np.mean([len(a) for _, a in items]):.0f} chars), "
        "one at a time, interleaved; static MiniLM table in this process; no judge.",
        "",
        "| scoring | p50 ms | p90 ms | mean ms |",
        "|---|---|---|---|",
    ]
    for name, xs in times.items():
        a = np.array(xs) * 1000
        lines.append(f"| {name} | {np.percentile(a, 50):.2f} | {np.percentile(a, 90):.2f} | {a.mean():.2f} |")
    full = float(np.percentile(times["ascore as shipped (rules + answer model)"], 50) * 1000)
    rules = float(np.percentile(times["rule signals only"], 50) * 1000)
    lines += [
        "",
        f"Shipped scoring p50 {full:.2f} ms ({full / max(rules, 1e-9):.2f}x the rules alone); "
        f"target < 10 ms: {'met' if full < 10 else 'NOT met'}.",
    ]
    text = "\n".join(lines)
    print(text)
    write_result("quality_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
