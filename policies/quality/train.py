"""`synqra train-quality-scorer`: fit the learned answer model on ../shared/data (quality + routing).

    synqra train-quality-scorer [--data DIR] [--out policies/quality/artifacts/answer_v1.npz] [--skip-cv]

Reproducible: fixed seeds, deterministic folds, deterministic L-BFGS fits on the same arrays, so the same
data and code give the same artifact bytes. Writes the `.npz` (plain arrays) and `answer_v1.manifest.json`
(data file hashes, training-code hash, label rule, hyperparameters, nested cross-validated figures).

Model: weighted L2 logistic regression of "deserves delivery" (dataset.py's label rule) on the
standardised features of answer_features.py plus the question's and the answer's static MiniLM
embeddings (separate L2 strengths), then a monotone calibration of the logit (isotonic, fitted on the
out-of-fold logits) so a score of 0.8 means about 8 in 10 such answers were judged good.
Rows are weighted so each dataset has a fixed total weight (`DATASET_WEIGHT`): arena-hard's open-ended
answers, the traffic the gate must judge, count the most.

Validation (nested): outer folds hold out whole groups (arena-hard and GSM8K and MT-Bench prompts,
MMLU-Pro categories); the L2 strengths are chosen by inner cross-validation inside each outer training
set. A second check holds out whole arena-hard models as well (trained without their answers at all).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from policies.common.artifacts import code_hash, manifest_path, sha256_file
from policies.quality import answer_features as af
from policies.quality.answer_model import DEFAULT_ARTIFACT, FORMAT_VERSION, AnswerModel
from policies.quality.dataset import DATASETS, DEFAULT_DATA_DIR, GOOD_RATING, LabelledAnswer, data_hashes, load_all
from policies.quality.scorer import compute_signals

log = logging.getLogger("synqra.quality.train")

# Texts -> their L2-normalised embeddings (one row each), as the scorer embeds them at serve time.
Embed = Callable[[list[str]], np.ndarray]

SEED = 20250117
N_FOLDS = 5
DATASET_WEIGHT = {"arena_hard": 1.0, "mmlu_pro": 0.5, "gsm8k": 0.3, "mt_bench": 0.1}
GRID_L2_FEAT = (3.0, 10.0)
# A pilot on the same folds compared 300 and 1e5 (which all but switches the embeddings off): 0.712 vs
# 0.709 weighted AUROC. The raw embeddings recognise topics more than they judge answers; 300 is kept.
GRID_L2_EMB = (300.0,)
# Models held out whole in the second check: one per family and size (7B, 70B, API, base model).
HELD_OUT_MODELS = ("mistralai/Mistral-7B-Instruct-v0.1", "Llama-2-70b-chat", "claude-2.1", "gpt-4-0314", "llama-13b")
CALIBRATION_KNOTS = 40
_FEATURE_CODE = ("answer_features.py", "signals.py", "registry.py", "dataset.py")
_CODE_FILES = (*_FEATURE_CODE, "answer_model.py", "train.py")
FEATURE_CACHE = Path("/tmp/synqra_quality_features")


@dataclass
class Matrices:
    rows: list[LabelledAnswer]
    feats: np.ndarray  # (n, k) raw features
    q_emb: np.ndarray  # (n, d)
    a_emb: np.ndarray  # (n, d)
    y: np.ndarray  # 1 = deserves delivery
    weight: np.ndarray  # per-row weight, mean 1
    dataset: np.ndarray
    fold: np.ndarray  # outer fold of each row (whole groups)
    model: np.ndarray
    short: np.ndarray  # short exchanges: the served model abstains on them, so they are not trained on


def training_code_hash(files: tuple[str, ...] = _CODE_FILES) -> str:
    return code_hash(Path(__file__).resolve().parent, files)


def feature_matrices(rows: list[LabelledAnswer], embed: Embed) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, question embeddings, answer embeddings, signal values in registry order) of each row, as the
    scorer computes them at serve time.

    Cached on disk by a hash of the rows' texts and the feature code (computing ~17,000 rows' signals takes
    minutes on a shared CPU); a change to either recomputes."""
    key = hashlib.sha256(training_code_hash(_FEATURE_CODE).encode())
    for r in rows:
        key.update(json.dumps([r.messages, r.answer]).encode())
    path = FEATURE_CACHE / f"{key.hexdigest()[:20]}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            return z["feats"], z["q_emb"], z["a_emb"], z["signals"]
    t0 = time.perf_counter()
    texts = [t for r in rows for t in af.embed_texts(r.question, r.answer)]
    vecs = np.concatenate([embed(texts[i : i + 2048]) for i in range(0, len(texts), 2048)]).astype(np.float64)
    q_emb, a_emb = vecs[0::2], vecs[1::2]
    feats, signals = [], []
    for i, r in enumerate(rows):
        sigs = compute_signals({"messages": r.messages}, r.answer, None, None, None, None)
        signals.append([s.value for s in sigs.values()])
        cos = float(q_emb[i] @ a_emb[i])
        feats.append(af.feature_row(r.question, r.answer, {k: v.value for k, v in sigs.items()}, cos))
        if i % 2000 == 1999:
            log.info("features %d/%d", i + 1, len(rows))
    out = np.array(feats), q_emb, a_emb, np.array(signals)
    log.info("features of %d rows in %.0f s", len(rows), time.perf_counter() - t0)
    FEATURE_CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, feats=out[0], q_emb=out[1], a_emb=out[2], signals=out[3])
    return out


def outer_folds(rows: list[LabelledAnswer], seed: int = SEED) -> np.ndarray:
    """Fold of each row: each dataset's groups (prompts; MMLU-Pro categories) dealt into N_FOLDS folds."""
    fold = np.zeros(len(rows), dtype=np.int64)
    rng = np.random.default_rng(seed)
    for d in DATASETS:
        groups = sorted({r.group for r in rows if r.dataset == d})
        order = rng.permutation(len(groups))
        of = {groups[j]: k % N_FOLDS for k, j in enumerate(order)}
        for i, r in enumerate(rows):
            if r.dataset == d:
                fold[i] = of[r.group]
    return fold


def row_weights(rows: list[LabelledAnswer]) -> npt.NDArray[np.float64]:
    ds = np.array([r.dataset for r in rows])
    w = np.zeros(len(rows))
    for d, total in DATASET_WEIGHT.items():
        m = ds == d
        if m.any():
            w[m] = total / m.sum()
    out: npt.NDArray[np.float64] = w / w.mean()
    return out


def build(rows: list[LabelledAnswer], embed: Embed) -> Matrices:
    feats, q_emb, a_emb, _ = feature_matrices(rows, embed)
    return Matrices(
        rows,
        feats,
        q_emb,
        a_emb,
        np.array([r.good for r in rows], dtype=np.float64),
        row_weights(rows),
        np.array([r.dataset for r in rows]),
        outer_folds(rows),
        np.array([r.model for r in rows]),
        np.array([af.is_short_exchange(r.question, r.answer) for r in rows]),
    )


@dataclass(frozen=True)
class Hyper:
    l2_feat: float
    l2_emb: float


def fit_logistic(m: Matrices, idx: np.ndarray, hp: Hyper) -> AnswerModel:
    """Weighted L2 logistic regression on rows idx (short exchanges left out); an identity calibration (set later)."""
    idx = idx[~m.short[idx]]
    feats = m.feats[idx]
    mean, std = feats.mean(axis=0), feats.std(axis=0)
    std = np.where(std < 1e-6, 1.0, std)
    x = np.hstack([(feats - mean) / std, m.q_emb[idx], m.a_emb[idx]])
    y, w = m.y[idx], m.weight[idx] / m.weight[idx].sum()
    k, d = feats.shape[1], m.q_emb.shape[1]
    pen = np.concatenate([np.full(k, hp.l2_feat), np.full(2 * d, hp.l2_emb)]) / len(idx)

    def loss(t: np.ndarray) -> tuple[float, np.ndarray]:
        z = x @ t[:-1] + t[-1]
        g = w * (1.0 / (1.0 + np.exp(-z)) - y)
        value = float(np.sum(w * (np.logaddexp(0.0, z) - y * z)) + 0.5 * pen @ t[:-1] ** 2)
        return value, np.append(x.T @ g + pen * t[:-1], g.sum())

    res = minimize(loss, np.zeros(x.shape[1] + 1), jac=True, method="L-BFGS-B", options={"maxiter": 400, "gtol": 1e-6})
    t = res.x
    return AnswerModel(
        w_feat=t[:k],
        feat_mean=mean,
        feat_std=std,
        w_q=t[k : k + d],
        w_a=t[k + d : k + 2 * d],
        bias=float(t[-1]),
        calib_z=np.array([-1.0, 1.0]),
        calib_p=np.array([1 / (1 + np.e), 1 / (1 + np.exp(-1))]),
        embedder="",
        manifest={},
    )


def logits(model: AnswerModel, m: Matrices, idx: np.ndarray) -> np.ndarray:
    return model.logit(m.feats[idx], m.q_emb[idx], m.a_emb[idx])


def auroc(score_bad: np.ndarray, bad: np.ndarray) -> float:
    """P(score of a bad answer > score of a good one), ties count half."""
    from scipy.stats import rankdata

    r = rankdata(score_bad)
    n1, n0 = int(bad.sum()), int((~bad).sum())
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((r[bad].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def weighted_auroc(m: Matrices, idx: np.ndarray, z: np.ndarray) -> float:
    """Mean over datasets of AUROC(bad) inside each: the selection criterion (no dataset dominates)."""
    out = []
    for d in DATASETS:
        sel = m.dataset[idx] == d
        if sel.sum() > 20:
            out.append(DATASET_WEIGHT[d] * auroc(-z[sel], m.y[idx][sel] == 0))
    return float(np.sum(out) / sum(DATASET_WEIGHT[d] for d in DATASETS if (m.dataset[idx] == d).sum() > 20))


def grid() -> list[Hyper]:
    return [Hyper(a, b) for a in GRID_L2_FEAT for b in GRID_L2_EMB]


def cv_logits(m: Matrices, idx: np.ndarray, hp: Hyper, exclude_models: tuple[str, ...] = ()) -> np.ndarray:
    """Out-of-fold logits of rows idx (folds = m.fold within idx); `exclude_models` never trained on."""
    z = np.full(len(m.rows), np.nan)
    for f in sorted(set(m.fold[idx].tolist())):
        test = idx[m.fold[idx] == f]
        train = idx[(m.fold[idx] != f) & ~np.isin(m.model[idx], exclude_models)]
        z[test] = logits(fit_logistic(m, train, hp), m, test)
    return z


def select(m: Matrices, idx: np.ndarray) -> tuple[Hyper, dict[str, float]]:
    """The grid point with the best cross-validated weighted AUROC inside idx (inner folds: the outer
    fold ids of idx renumbered, so whole groups stay together)."""
    scores = {}
    for hp in grid():
        z = cv_logits(m, idx, hp)
        scores[hp] = weighted_auroc(m, idx, z[idx])
    best = max(scores, key=lambda hp: (scores[hp], hp.l2_emb, hp.l2_feat))  # ties: the stronger penalty
    return best, {f"{hp.l2_feat}/{hp.l2_emb}": round(v, 4) for hp, v in scores.items()}


def nested_oof(m: Matrices) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Logit of every row from a model whose fit and L2 choice never saw its outer fold (cached on disk
    by training code and rows, so `bench/quality_eval.py` reuses what the trainer computed)."""
    key = hashlib.sha256(training_code_hash().encode())
    for r in m.rows:
        key.update(json.dumps([r.messages, r.answer, r.good]).encode())
    path = FEATURE_CACHE / f"oof_{key.hexdigest()[:20]}.json"
    if path.is_file():
        cached = json.loads(path.read_text())
        return np.array(cached["z"]), cached["chosen"]
    z, chosen = _nested_oof(m)
    FEATURE_CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"z": z.tolist(), "chosen": chosen}))
    return z, chosen


def _nested_oof(m: Matrices) -> tuple[np.ndarray, list[dict[str, Any]]]:
    z = np.full(len(m.rows), np.nan)
    chosen: list[dict[str, Any]] = []
    everything = np.arange(len(m.rows))
    for f in range(N_FOLDS):
        test, train = everything[m.fold == f], everything[m.fold != f]
        hp, _ = select(m, train)  # inner folds: the other four outer folds

        z[test] = logits(fit_logistic(m, train, hp), m, test)
        chosen.append({"fold": f, "rows": int(len(test)), "l2_feat": hp.l2_feat, "l2_emb": hp.l2_emb})
        log.info("outer fold %d: chose %s", f, hp)
    return z, chosen


def isotonic(
    z: np.ndarray, y: np.ndarray, w: np.ndarray, knots: int = CALIBRATION_KNOTS
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted pool-adjacent-violators fit of y on z, returned as <= `knots` (z, p) points for np.interp."""
    order = np.argsort(z, kind="stable")
    zs, ys, ws = z[order], y[order], w[order]
    blocks: list[list[float]] = []  # [sum w*y, sum w, sum w*z]
    for zi, yi, wi in zip(zs, ys, ws):
        blocks.append([wi * yi, wi, wi * zi])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
            a = blocks.pop()
            blocks[-1] = [blocks[-1][0] + a[0], blocks[-1][1] + a[1], blocks[-1][2] + a[2]]
    bz = np.array([b[2] / b[1] for b in blocks])
    bp = np.array([b[0] / b[1] for b in blocks])
    if len(bz) > knots:  # keep the curve's shape with fewer points: quantiles of the block centres
        pick = np.unique(np.round(np.linspace(0, len(bz) - 1, knots)).astype(int))
        bz, bp = bz[pick], bp[pick]
    # Strictly increasing z for np.interp, probabilities kept inside (0.01, 0.99): never certain.
    bz = bz + np.arange(len(bz)) * 1e-9
    return bz, np.clip(np.maximum.accumulate(bp), 0.01, 0.99)


def figures(m: Matrices, p: np.ndarray) -> dict[str, dict[str, float]]:
    """Held-out AUROC (bad = not good) per dataset and for arena-hard's model groups."""
    out: dict[str, dict[str, float]] = {}
    for d in DATASETS:
        sel = m.dataset == d
        out[d] = {"auroc_bad": round(auroc(-p[sel], m.y[sel] == 0), 4), "rows": int(sel.sum())}
    seven_b = np.isin(m.model, ["mistralai/Mistral-7B-Instruct-v0.1", "Starling-LM-7B-alpha", "openchat_3.5"])
    sel = (m.dataset == "arena_hard") & seven_b
    out["arena_hard_7b"] = {"auroc_bad": round(auroc(-p[sel], m.y[sel] == 0), 4), "rows": int(sel.sum())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="synqra train-quality-scorer", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA_DIR, help="data folder holding quality/ and routing/")
    ap.add_argument("--out", type=Path, default=DEFAULT_ARTIFACT, help="artifact path (.npz)")
    ap.add_argument("--skip-cv", action="store_true", help="no nested cross-validation figures (quick retrain)")
    ap.add_argument("--limit", type=int, default=0, help="first N rows of each dataset only (tests)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        rows = load_all(args.data)
    except FileNotFoundError as e:
        log.error("%s", e)
        return 2
    if args.limit:
        rows = [r for d in DATASETS for r in [x for x in rows if x.dataset == d][: args.limit]]
    from policies.embedding.static import StaticEmbedder

    static = StaticEmbedder.default()
    m = build(rows, static.embed)
    log.info("rows: %s", {d: int((m.dataset == d).sum()) for d in DATASETS})
    validation, chosen = None, None
    everything = np.arange(len(rows))
    if not args.skip_cv:
        z_oof, chosen = nested_oof(m)
        cz, cp = isotonic(z_oof, m.y, m.weight)
        p_oof = np.interp(z_oof, cz, cp)
        hp_held = max(
            grid(), key=lambda h: (sum(c["l2_emb"] == h.l2_emb and c["l2_feat"] == h.l2_feat for c in chosen), h.l2_emb)
        )
        z_models = cv_logits(m, everything, hp_held, exclude_models=HELD_OUT_MODELS)
        held = (m.dataset == "arena_hard") & np.isin(m.model, HELD_OUT_MODELS)
        validation = {
            "nested_out_of_fold": figures(m, p_oof),
            "arena_hard_prompts_and_models_held_out": {
                "models": list(HELD_OUT_MODELS),
                "hyper": {"l2_feat": hp_held.l2_feat, "l2_emb": hp_held.l2_emb},
                "auroc_bad": round(auroc(-z_models[held], m.y[held] == 0), 4),
                "rows": int(held.sum()),
            },
        }
        log.info("validation: %s", json.dumps(validation))
    hp, cv_table = select(m, everything)
    log.info("chosen on all data: %s", hp)
    model = fit_logistic(m, everything, hp)
    if args.skip_cv:  # calibration from plain (not nested) out-of-fold logits of the chosen L2
        z_oof = cv_logits(m, everything, hp)
        cz, cp = isotonic(z_oof, m.y, m.weight)
    model = AnswerModel(**{**model.__dict__, "calib_z": cz, "calib_p": cp, "embedder": static.name})
    model.save(args.out)
    manifest = {
        "format_version": FORMAT_VERSION,
        "artifact": args.out.name,
        "artifact_sha256": sha256_file(args.out),
        "model": "isotonic(sigmoid-free logit: bias + standardised features . w_feat + question static embedding . w_q "
        "+ answer static embedding . w_a), weighted L2 logistic regression",
        "embedder": static.name,
        "embedding_dims": af.EMB_DIMS,
        "embed_text": f"question first {af.EMBED_QUESTION_CHARS} characters, answer first {af.EMBED_ANSWER_CHARS}",
        "feature_names": list(af.FEATURE_NAMES),
        "label_rule": f"deserves delivery = arena-hard and MT-Bench GPT-4 rating >= {GOOD_RATING:g} (1-10); MMLU-Pro "
        "right letter read from the text (pred_from_text); GSM8K right final answer",
        "hyperparameters": {
            "l2_feat": hp.l2_feat,
            "l2_emb": hp.l2_emb,
            "grid_cv_weighted_auroc": cv_table,
            "dataset_weight": DATASET_WEIGHT,
            "seed": SEED,
            "folds": N_FOLDS,
            "calibration": f"isotonic on out-of-fold logits, {len(cz)} knots",
        },
        "training_data": {
            "files_sha256": data_hashes(args.data),
            "rows": {d: int((m.dataset == d).sum()) for d in DATASETS},
            "limit_per_dataset": args.limit or None,
        },
        "training_code_sha256": training_code_hash(),
        "validation": {
            "protocol": "nested out of fold: arena-hard, GSM8K and MT-Bench whole prompts, MMLU-Pro whole categories "
            "in 5 folds; L2 strengths chosen by the same cross-validation inside each outer training set; then "
            "arena-hard prompts AND models held out (the held-out models' answers never trained on)",
            "figures": validation,
            "chosen_per_fold": chosen,
        },
    }
    manifest_path(args.out).write_text(json.dumps(manifest, indent=2) + "\n")
    log.info("wrote %s (%d bytes) and its manifest", args.out, args.out.stat().st_size)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
