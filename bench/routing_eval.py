"""Routing quality, out of fold: APGR, CPT(50%), CPT(80%) on MMLU, GSM8K, MT-Bench.

Side by side in one run: random routing, prompt length, LiteLLM's own
`complexity_router` score (its `classify()` on the same prompt), and our learned
router with each embedder, scored NESTED out of fold with the very code
`synqra train-router` uses (`policies.routing.train.nested_out_of_fold_scores`):
MMLU holds out whole subjects, GSM8K random folds, MT-Bench whole categories,
and the hyperparameters of each held-out fold are chosen by cross-validation
inside its training folds only.

    cd /work/main && LITELLM_LOCAL_MODEL_COST_MAP=True HF_HUB_OFFLINE=1 \
        nice -n 10 .venv/bin/python -m bench.routing_eval

Prints a table and writes bench/results/routing_eval.md. Embeddings are cached
under /tmp/synqra_routing_embeddings by embedder name (the first run embeds ~11k
prompts per embedder: MiniLM ~2-4 min, static ~5 s).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from policies.common.offline import apply_offline_env  # noqa: E402

apply_offline_env()

from bench.measure import write_result  # noqa: E402
from policies.routing import train as T  # noqa: E402
from policies.common.routing_settings import RoutingSettings  # noqa: E402
from policies.routing.dataset import DEFAULT_DATA_DIR, Example, load_all, outcomes  # noqa: E402
from policies.embedding.names import MINILM, STATIC, embedder_for, token_source  # noqa: E402
from policies.routing.features import request_text  # noqa: E402
from policies.routing.metrics import RouteMetrics, bootstrap_apgr, group_ranking, random_metrics, route_metrics  # noqa: E402

DATASETS = ("mmlu", "gsm8k", "mt_bench")
# MMLU has 57 subjects and the data here 38: a test on the others pools about 19 unseen subjects.
UNSEEN_SUBJECTS = 19
TARGET_APGR = {"mmlu": 0.62, "gsm8k": 0.62}


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
    weak, strong = outcomes(examples, idx)
    out = {"random": random_metrics(weak, strong)}
    for name, s in scores.items():
        out[name] = route_metrics(s[idx], weak, strong)
    return out


def spread_lines(examples: list[Example], scores: dict[str, np.ndarray], ours: list[str], draws: int) -> list[str]:
    """How far each pooled APGR moves with the sample: MMLU pools UNSEEN_SUBJECTS whole subjects per
    draw, GSM8K and MT-Bench resample prompts; every router is scored on the same draws."""
    baselines = [n for n in scores if n not in ours]
    head = "| data | router | APGR median [5%, 95%] | " + " | ".join(f"draws above {b}" for b in baselines)
    lines = [head + " | draws at or above the target |", "|" + " --- |" * (len(baselines) + 4)]
    for d in DATASETS:
        idx = np.array([i for i, e in enumerate(examples) if e.dataset == d and e.eval_row])
        weak, strong = outcomes(examples, idx)
        groups = np.array([examples[i].group for i in idx]) if d == "mmlu" else None
        b = bootstrap_apgr({n: s[idx] for n, s in scores.items()}, weak, strong, groups, UNSEEN_SUBJECTS, draws)
        for i, name in enumerate(scores):
            cells = [f"{b.median[name]:.3f} [{b.low[name]:.3f}, {b.high[name]:.3f}]"]
            if name in ours:
                cells += [f"{b.share_above(name, o):.2f}" for o in baselines]
                cells.append(f"{b.share_above(name, TARGET_APGR[d]):.2f}" if d in TARGET_APGR else "")
            else:
                cells += [""] * (len(baselines) + 1)
            lines.append(f"| {d if i == 0 else ''} | {name} | " + " | ".join(cells) + " |")
    return lines


def subject_ranking_lines(examples: list[Example], scores: dict[str, np.ndarray]) -> list[str]:
    """MMLU: how much of each router's ranking agrees with the gain inside subjects, and how well its
    subject means order the subjects (metrics.group_ranking)."""
    idx = np.array([i for i, e in enumerate(examples) if e.dataset == "mmlu"])
    weak, strong = outcomes(examples, idx)
    groups = np.array([examples[i].group for i in idx])
    lines = ["| router | within subjects: mean Spearman rho | between subjects: Spearman rho | subjects |"]
    lines.append("| --- | --- | --- | --- |")
    for name, s in scores.items():
        r = group_ranking(s[idx], strong - weak, groups)
        lines.append(f"| {name} | {r.within:+.3f} | {r.between:+.3f} | {r.groups} |")
    return lines


def creative_rule_rates(examples: list[Example], emb: np.ndarray, embed: Callable[[list[str]], np.ndarray]) -> str:
    """How often the creative/brand rule fires (default examples and threshold) per dataset/category."""
    s = RoutingSettings()
    sim = (emb @ embed(list(s.creative_examples)).T).max(axis=1)
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
    ap.add_argument("--embedders", nargs="+", default=[STATIC, MINILM], choices=[STATIC, MINILM])
    ap.add_argument("--max-chars", type=int, nargs="+", default=list(T.GRID_MAX_CHARS))
    ap.add_argument("--draws", type=int, default=1000, help="resamples for the spread of each figure")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    examples, summary = load_all(args.data)
    scores = {
        "prompt length": length_scores(examples),
        "LiteLLM complexity_router": complexity_router_scores(examples),
    }
    creative, chosen, ours = [], {}, []
    for name in args.embedders:
        # MiniLM reads at most 256 word pieces: longer heads are the same vector at 4x the cost.
        max_chars = tuple(args.max_chars) if name == STATIC else (256,)
        embedder = embedder_for(name)
        tokenize, vocab = token_source(embedder)  # the token term needs the static table's tokenizer
        m = T.build_matrices(examples, embedder.embed, name, max_chars, tokenize, vocab)
        label = f"synqra router, {name} (nested out of fold)"
        ours.append(label)
        hps = T.grid(max_chars, tokens=tokenize is not None)
        scores[label], chosen[name] = T.nested_out_of_fold_scores(m, hps, name)
        creative.append(f"{name}: {creative_rule_rates(examples, m.embs[max_chars[0]], embedder.embed)}")
    ds = np.array([e.dataset for e in examples])
    eval_row = np.array([e.eval_row for e in examples])
    groups = np.array([e.group for e in examples])
    sections = {d: evaluate(examples, scores, (ds == d) & eval_row) for d in DATASETS}
    # Diagnostic: in this data GPT-4 is marked right on 3% of high_school_mathematics (weak: 32%),
    # so routing those short prompts to the strong model "loses" quality; shown separately.
    sections["mmlu without high_school_mathematics"] = evaluate(
        examples, scores, (ds == "mmlu") & (groups != "high_school_mathematics")
    )
    fold_means = {name: T.fold_mean_apgr(examples, s) for name, s in scores.items()}
    lines = [
        "# Routing quality (out of fold)",
        "",
        f"Data: {summary}. Command: `.venv/bin/python -m bench.routing_eval` "
        f"(embedders {args.embedders}; candidates: max_chars {args.max_chars} for the static embedder, 256 for "
        f"MiniLM; lam {list(T.GRID_LAM)}; l2_emb {list(T.GRID_L2_EMB)}; mu {list(T.GRID_MU)}; token term "
        f"(static embedder only) nu {list(T.GRID_NU)}, l2_tok {list(T.GRID_L2_TOK)}).",
        "Folds: MMLU 5 folds of whole subjects; GSM8K 5 random folds; MT-Bench by category (72 questions, "
        "routed on turn 1, quality = mean judge score of both turns). Ours: nested (hyperparameters chosen "
        "inside each outer training set), scores pooled over the held-out folds.",
        "",
        "| data | router | APGR | CPT(50%) | CPT(80%) |",
        "| --- | --- | --- | --- | --- |",
    ]
    for d, res in sections.items():
        for i, (name, r) in enumerate(res.items()):
            lines.append(f"| {d if i == 0 else ''} | {name} | {r.apgr:.3f} | {r.cpt50:.3f} | {r.cpt80:.3f} |")
    lines += [
        "",
        "Mean APGR over the outer folds, each fold ranked on its own (pooled figures above also rank one fold's "
        "prompts against another's, scored by differently calibrated models):",
        "",
        "| router | MMLU (5 subject folds) | GSM8K (5 folds) |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {f['mmlu']:.3f} | {f['gsm8k']:.3f} |" for name, f in fold_means.items()]
    lines += [
        "",
        "MMLU, where the ranking comes from: rank correlation of the score with the quality gain (strong minus "
        "weak) inside each subject (row-weighted mean over subjects), and of the subjects' mean score with their "
        "mean gain. Pooled held-out APGR rewards both; only the first is about the prompt rather than its subject:",
        "",
        *subject_ranking_lines(examples, scores),
    ]
    lines += [
        "",
        f"How much each pooled figure moves with the sample ({args.draws} paired draws; MMLU: {UNSEEN_SUBJECTS} "
        "whole subjects per draw, the size of a test on the MMLU subjects not in this data; GSM8K and MT-Bench: "
        "prompts resampled with replacement). The columns on the right give, for our routers, the share of draws "
        "where they score above each baseline, and at or above the issue's 0.62 target:",
        "",
        *spread_lines(examples, scores, ours, args.draws),
    ]
    lines += ["", "Hyperparameters chosen per outer fold:"]
    for name, rows in chosen.items():
        picks = ", ".join(
            f"{r['fold']}:{r['max_chars']}/{r['lam']}/{r['l2_emb']}/{r['mu']}/{r['nu']}/{r['l2_tok']}" for r in rows
        )
        lines.append(f"- {name} (max_chars/lam/l2_emb/mu/nu/l2_tok): {picks}")
    lines += ["", "Creative/brand rule firing rate (default examples, threshold):"] + [f"- {c}" for c in creative]
    lines += ["", f"Run time {time.perf_counter() - t0:.0f} s."]
    text = "\n".join(lines)
    write_result("routing_eval", text)
    sys.stdout.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
