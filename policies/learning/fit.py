"""The prior-centred fit: adapt the shipped router to labelled traffic without forgetting it.

The candidate keeps the router's form (scorer.LearnedScorer: one linear score over standardised
structural features, the embedding and token presence) and is a MAP logistic regression whose
prior is the shipped artifact:

    logit = c + a + alpha * (z0(x) - c) + x_feat . d_feat + x_emb . d_emb + x_tok . d_tok

z0 is the shipped router's own logit, c its mean over the labelled rows. The deviations d have a Gaussian prior centred on zero whose
strength lam is the same for each block in logit terms (block penalty lam * mean squared row norm of
the block, so each block may move the logit by about 1/sqrt(lam)); alpha (how much of the shipped
ranking holds on this traffic) and the intercept a (its base rate) have priors centred on 1 and 0
worth PRIOR_ROWS labelled rows. Folded back, this is the same linear form (weights alpha * w0 + d),
so the proxy serves it exactly like the shipped artifact.

- A handful of labels barely moves it: alpha and a are held by PRIOR_ROWS pseudo-rows and lam is
  then the strongest of its grid (cross-validation cannot show a gain on a few rows).
- A thousand can move it far: alpha may fall to zero where the shipped ranking does not hold, and
  lam chosen by K-fold cross-validated log-loss (one-standard-error rule, paired per row, towards
  the prior) lets the deviations learn the new traffic.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from scipy.optimize import minimize

from policies.learning.representation import Representation
from policies.routing.scorer import LearnedScorer

# Deviation strengths tried (in labelled rows); inf = recalibrate only (alpha and a), no deviation.
LAMBDAS: tuple[float, ...] = (float("inf"), 1000.0, 300.0, 100.0, 30.0, 10.0, 3.0, 1.0)
PRIOR_ROWS = 50.0
Z_VAR_FLOOR = 0.5  # logit variance assumed for the prior's spread when the rows show less (a handful)
CV_FOLDS = 5
CV_MIN_ROWS = 30  # fewer labelled rows: no cross-validation, the strongest finite lam
CV_MAX_ROWS = 4_000  # larger sets choose lam on a seeded subsample (lam is in rows: a prior strength, not a share)
SEED = 20240611
_MAX_ITER = 300


@dataclass
class Design:
    """The fit's inputs for some rows, on the prior's scales."""

    z0: np.ndarray  # (n,) the prior's logit, centred on `centre` (alpha then scales the spread, a the level)
    dense: np.ndarray  # (n, k + d) standardised features | embedding, float32
    tok: sp.csr_matrix  # (n, m) token presence, restricted to `cols`
    cols: np.ndarray  # (m,) vocabulary ids of tok's columns
    k: int
    d: int
    centre: float = 0.0


def token_vocab(prior: LearnedScorer, fallback: int) -> int:
    return len(prior.w_tok) if prior.w_tok is not None else fallback


def design(prior: LearnedScorer, rep: Representation, vocab: int, cols: np.ndarray | None = None) -> Design:
    """`cols`: token columns to keep (a fit's own); None: every token the rows contain."""
    feats = (rep.feats - prior.feat_mean) / prior.feat_std
    T = rep.token_matrix(vocab)
    tok_term = T @ prior.w_tok if prior.w_tok is not None else None
    z0 = prior.logit(rep.emb.astype(np.float32), rep.feats, tok_term).astype(np.float64)
    if cols is None:
        cols = np.unique(T.indices) if T.nnz else np.zeros(0, np.int64)
    dense = np.hstack([feats, rep.emb]).astype(np.float32)
    centre = float(z0.mean()) if len(z0) else 0.0
    return Design(z0 - centre, dense, T[:, cols].tocsr(), cols, feats.shape[1], rep.emb.shape[1], centre)


def _subset(D: Design, idx: np.ndarray) -> Design:
    return Design(D.z0[idx], D.dense[idx], D.tok[idx], D.cols, D.k, D.d, D.centre)


@dataclass
class Penalty:
    lam: float  # deviation strength (inf: no deviations)
    block: np.ndarray  # (k + d + m,) per-coordinate scale (mean squared row norm of its block)
    a: float  # intercept precision
    alpha: float  # alpha precision


def penalty_for(D: Design, lam: float) -> Penalty:
    sq = D.dense.astype(np.float64) ** 2
    r_feat = max(float(sq[:, : D.k].sum(axis=1).mean()), 1e-3)
    r_emb = max(float(sq[:, D.k :].sum(axis=1).mean()), 1e-3)
    r_tok = max(float(D.tok.multiply(D.tok).sum(axis=1).mean()), 1e-3) if D.tok.shape[1] else 1.0
    block = np.concatenate([np.full(D.k, r_feat), np.full(D.d, r_emb), np.full(D.tok.shape[1], r_tok)])
    # Fisher information of one row about a and alpha is about p(1-p) and p(1-p) z0^2 (p(1-p) ~ 0.2).
    z_var = max(float(np.mean((D.z0 - D.z0.mean()) ** 2)), Z_VAR_FLOOR)
    return Penalty(lam, block, 0.2 * PRIOR_ROWS, 0.2 * PRIOR_ROWS * z_var)


def _logit(D: Design, theta: np.ndarray, free: bool) -> np.ndarray:
    z: np.ndarray = theta[0] + theta[1] * D.z0
    if free:
        p = D.dense.shape[1]
        z = z + D.dense @ theta[2 : 2 + p].astype(np.float32) + D.tok @ theta[2 + p :]
    return z


def _fit_theta(D: Design, y: np.ndarray, w: np.ndarray, pen: Penalty, start: np.ndarray | None) -> np.ndarray:
    """argmin sum w (softplus(z) - y z) + penalties; theta = [a, alpha, d_feat, d_emb, d_tok]."""
    free = np.isfinite(pen.lam)
    p = D.dense.shape[1]
    size = 2 + (p + D.tok.shape[1] if free else 0)
    theta0 = np.zeros(size)
    theta0[1] = 1.0
    if start is not None:
        theta0[: min(size, len(start))] = start[: min(size, len(start))]
    lam_block = pen.lam * pen.block if free else None

    def f(theta: np.ndarray) -> tuple[float, np.ndarray]:
        z = _logit(D, theta, free)
        q = 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))
        g_row = w * (q - y)
        loss = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)))
        grad = np.empty_like(theta)
        grad[0] = g_row.sum() + pen.a * theta[0]
        grad[1] = g_row @ D.z0 + pen.alpha * (theta[1] - 1.0)
        loss += 0.5 * pen.a * theta[0] ** 2 + 0.5 * pen.alpha * (theta[1] - 1.0) ** 2
        if free:
            dev = theta[2:]
            grad[2 : 2 + p] = D.dense.T @ g_row.astype(np.float32)
            grad[2 + p :] = D.tok.T @ g_row
            grad[2:] += lam_block * dev
            loss += 0.5 * float(lam_block @ (dev * dev))
        return loss, grad

    res = minimize(f, theta0, jac=True, method="L-BFGS-B", options={"maxiter": _MAX_ITER, "gtol": 1e-5})
    theta: np.ndarray = res.x
    return theta


def _row_loss(z: np.ndarray, y: np.ndarray) -> np.ndarray:
    loss: np.ndarray = np.logaddexp(0.0, z) - y * z
    return loss


@dataclass
class Adapted:
    scorer: LearnedScorer
    lam: float
    alpha: float
    intercept: float
    rows: int
    cv: dict[str, float] = field(default_factory=dict)  # lam -> cross-validated figure (CRITERION)
    theta: np.ndarray | None = None

    def summary(self) -> dict[str, object]:
        return {
            "lambda": None if not np.isfinite(self.lam) else self.lam,
            "alpha": round(self.alpha, 4),
            "intercept": round(self.intercept, 4),
            "rows": self.rows,
            "cv_criterion": CRITERION,
            "cv": self.cv,
        }


CRITERION = "apgr"  # what cross-validation compares: "apgr" (ranking, pooled out of fold) or "logloss"
SE_DRAWS = 60  # paired bootstrap draws of the out-of-fold rows for the one-standard-error rule


def label_apgr(scores: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> float:
    """APGR of a ranking against labels alone: the gain of sending a row up is its (weighted) label."""
    from policies.routing.metrics import route_metrics

    gain = y if w is None else y * w
    return route_metrics(scores, np.zeros(len(y)), gain).apgr


def _one_standard_error(
    fig: dict[float, float], oof: dict[float, np.ndarray], y: np.ndarray, w: np.ndarray, rng: np.random.Generator
) -> float:
    """The strongest lam whose out-of-fold APGR is within one paired bootstrap standard error of the
    best: the maximum of eight noisy APGRs favours the weakest prior, and with a few hundred noisy
    labels (the gate and the judge are wrong a quarter of the time) that fits the noise."""
    best = max(LAMBDAS, key=lambda lam: fig[lam])
    draws = rng.integers(0, len(y), (SE_DRAWS, len(y)))
    best_draws = np.array([label_apgr(oof[best][d], y[d], w[d]) for d in draws])
    for lam in LAMBDAS:  # strongest first
        if lam == best:
            return lam
        diff = best_draws - np.array([label_apgr(oof[lam][d], y[d], w[d]) for d in draws])
        if fig[best] - fig[lam] <= diff.std(ddof=1):
            return lam
    return best


def choose_lambda(D: Design, y: np.ndarray, w: np.ndarray) -> tuple[float, dict[str, float]]:
    """lam by K-fold cross-validation: the strongest lam within one paired standard error of the best
    pooled out-of-fold APGR (or log-loss)."""
    n = len(y)
    finite = [lam for lam in LAMBDAS if np.isfinite(lam)]
    if n < CV_MIN_ROWS:
        return max(finite), {}
    rng = np.random.default_rng(SEED)
    rows = np.sort(rng.choice(n, CV_MAX_ROWS, replace=False)) if n > CV_MAX_ROWS else np.arange(n)
    folds = np.array_split(rng.permutation(rows), CV_FOLDS)
    losses = {lam: np.zeros(n) for lam in LAMBDAS}
    oof = {lam: np.zeros(n) for lam in LAMBDAS}
    for test in folds:
        train = np.setdiff1d(rows, test)
        Dtr, Dte = _subset(D, train), _subset(D, test)
        theta = None
        for lam in LAMBDAS:  # strongest first: each fit starts from the previous one
            pen = penalty_for(Dtr, lam)
            theta = _fit_theta(Dtr, y[train], w[train], pen, theta)
            oof[lam][test] = _logit(Dte, theta, np.isfinite(lam))
            losses[lam][test] = w[test] * _row_loss(oof[lam][test], y[test])
    used = np.concatenate(folds)
    if CRITERION == "apgr":
        fig = {lam: label_apgr(oof[lam][used], y[used], w[used]) for lam in LAMBDAS}
        chosen = _one_standard_error(fig, {lam: oof[lam][used] for lam in LAMBDAS}, y[used], w[used], rng)
    else:
        fig = {lam: float(losses[lam][used].mean()) for lam in LAMBDAS}
        best_lam = min(LAMBDAS, key=lambda lam: fig[lam])
        chosen = best_lam
        for lam in LAMBDAS:  # strongest first
            diff = losses[lam][used] - losses[best_lam][used]
            if diff.mean() <= diff.std(ddof=1) / np.sqrt(len(used)):
                chosen = lam
                break
    return chosen, {("inf" if not np.isfinite(k) else f"{k:g}"): round(v, 5) for k, v in fig.items()}


def fit_adapted(
    prior: LearnedScorer,
    rep: Representation,
    label: np.ndarray,
    weight: np.ndarray | None = None,
    vocab: int = 0,
    lam: float | None = None,
) -> Adapted:
    """The adapted scorer for labelled rows (label in [0, 1], 1 = the local answer was not good enough).
    `lam` None: chosen by cross-validation. No rows: the prior itself."""
    n = len(label)
    if n == 0:
        return Adapted(prior, float("inf"), 1.0, 0.0, 0)
    y = np.clip(np.asarray(label, dtype=np.float64), 0.0, 1.0)
    w = np.ones(n) if weight is None else np.asarray(weight, dtype=np.float64)
    w = w * (n / w.sum())
    D = design(prior, rep, token_vocab(prior, vocab))
    cv: dict[str, float] = {}
    if lam is None:
        lam, cv = choose_lambda(D, y, w)
    theta = _fit_theta(D, y, w, penalty_for(D, lam), None)
    return Adapted(fold(prior, D, theta, vocab), lam, float(theta[1]), float(theta[0]), n, cv, theta)


def fold(prior: LearnedScorer, D: Design, theta: np.ndarray, vocab: int = 0) -> LearnedScorer:
    """theta folded into the scorer's weights: w = alpha * w0 + d, bias = alpha * (b0 - centre) + a + centre."""
    a, alpha = float(theta[0]), float(theta[1])
    p = D.k + D.d
    dev = theta[2:] if len(theta) > 2 else np.zeros(p + len(D.cols))
    w_feat = alpha * prior.w_feat.astype(np.float64) + dev[: D.k]
    w_emb = alpha * prior.w_emb.astype(np.float64) + dev[D.k : p]
    w_tok = None
    size = token_vocab(prior, vocab)
    if prior.w_tok is not None or (len(D.cols) and size):
        w_tok = alpha * prior.w_tok.astype(np.float64) if prior.w_tok is not None else np.zeros(size)
        w_tok[D.cols] += dev[p:]
        w_tok = w_tok.astype(np.float32)
    return dataclasses.replace(
        prior,
        w_feat=w_feat.astype(np.float32),
        w_emb=w_emb.astype(np.float32),
        bias=float(alpha * (prior.bias - D.centre) + a + D.centre),
        w_tok=w_tok,
        manifest={},
    )
