"""Routing quality, out of fold: APGR, CPT(50%), CPT(80%) on MMLU, GSM8K, MT-Bench.

Side by side in one run: random routing, prompt length, LiteLLM's own
`complexity_router` score (its `classify()` on the same prompt), and our learned
router scored out of fold with the very code `synqra train-router` uses
(`policies.routing.train.out_of_fold_scores`): MMLU holds out whole subjects,
GSM8K random folds, MT-Bench whole categories.

    cd /work/main && LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 \
        nice -n 10 .venv/bin/python -m bench.routing_eval

Prints a table and writes bench/results/routing_eval.md. Embeddings are cached
under ~/.cache/synqra/routing_embeddings (first run embeds ~11k prompts).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from proxy.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from policies.routing import train as T  # noqa: E402
from policies.routing.config import RoutingSettings  # noqa: E402
from policies.routing.dataset import DEFAULT_DATA_DIR, Example, load_all  # noqa: E402
from policies.routing.features import request_text  # noqa: E402
from policies.routing.metrics import RouteMetrics, random_metrics, route_metrics  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "routing_eval.md"
DATASETS = ("mmlu", "gsm8k", "mt_bench")


def complexity_router_scores(examples: list[Example]) -> np.ndarray:
    """LiteLLM complexity_router's weighted score (default config) on the newest user turn."""
    from litellm.router_strategy.complexity_router import ComplexityRouter

    cr = ComplexityRouter(model_name="bench", litellm_router_instance=None)
    out = []
    for e in examples:
        rt = request_text(e.request)
        out.append(cr.classify(rt.last_user, rt.system or None)[1])
    return np.array(out, dtype=np.float64)


def length_scores(examples: list[Example]) -> np.ndarray:
    return np.array([len(request_text(e.request).last_user) for e in examples], dtype=np.float64)


def evaluate(examples: list[Example], scores: dict[str, np.ndarray], mask: np.ndarray) -> dict[str, RouteMetrics]:
    idx = np.nonzero(mask)[0]
    weak = np.array([examples[i].weak_quality for i in idx])
    strong = np.array([examples[i].strong_quality for i in idx])
    out = {"random": random_metrics(weak, strong)}
    for name, s in scores.items():
        out[name] = route_metrics(s[idx], weak, strong)
    return out


def creative_rule_rates(examples: list[Example], m: T.Matrices) -> str:
    """How often the creative/brand rule fires (default examples and threshold) per dataset/category."""
    from policies.embedder import InProcessEmbedder

    s = RoutingSettings()
    c = InProcessEmbedder().embed(list(s.creative_examples))
    sim = (m.emb @ c.T).max(axis=1)
    fired = sim >= s.creative_min_similarity
    rows = []
    for d in DATASETS:
        idx = [i for i, e in enumerate(examples) if e.dataset == d and e.eval_row]
        rows.append(f"{d} {np.mean(fired[idx]):.3f}")
    cats = sorted({e.group for e in examples if e.dataset == "mt_bench"})
    for cat in cats:
        idx = [i for i, e in enumerate(examples) if e.group == cat and e.eval_row]
        rows.append(f"mt_bench/{cat} {np.mean(fired[idx]):.2f}")
    return ", ".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR)
    ap.add_argument("--l2", type=float, default=T.DEFAULT_L2)
    ap.add_argument("--max-chars", type=int, default=T.DEFAULT_MAX_CHARS)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    examples, summary = load_all(args.data)
    m = T.build_matrices(examples, T.default_embed(), args.max_chars)
    scores = {
        "prompt length": length_scores(examples),
        "LiteLLM complexity_router": complexity_router_scores(examples),
        "synqra learned router (out of fold)": T.out_of_fold_scores(m, args.l2, args.max_chars),
    }
    ds = np.array([e.dataset for e in examples])
    eval_row = np.array([e.eval_row for e in examples])
    groups = np.array([e.group for e in examples])
    sections = {d: evaluate(examples, scores, (ds == d) & eval_row) for d in DATASETS}
    # Diagnostic: in this data GPT-4 is marked right on 3% of high_school_mathematics (weak: 32%),
    # so routing those short prompts to the strong model "loses" quality; shown separately.
    sections["mmlu without high_school_mathematics"] = evaluate(
        examples, scores, (ds == "mmlu") & (groups != "high_school_mathematics")
    )
    lines = [
        "# Routing quality (out of fold)",
        "",
        f"Data: {summary}. Command: `.venv/bin/python -m bench.routing_eval` (l2={args.l2}, "
        f"embedding reads the first {args.max_chars} characters of the newest user turn).",
        "Folds: MMLU 5 folds of whole subjects; GSM8K 5 random folds; MT-Bench by category (72 questions, "
        "routed on turn 1, quality = mean judge score of both turns).",
        "",
        "| data | router | APGR | CPT(50%) | CPT(80%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d, res in sections.items():
        for i, (name, r) in enumerate(res.items()):
            lines.append(f"| {d if i == 0 else ''} | {name} | {r.apgr:.3f} | {r.cpt50:.3f} | {r.cpt80:.3f} |")
    lines += ["", f"Creative/brand rule firing rate (default examples, threshold): {creative_rule_rates(examples, m)}"]
    lines += ["", f"Run time {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines) + "\n"
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(text)
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
