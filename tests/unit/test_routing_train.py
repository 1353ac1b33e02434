"""Training pieces of the router on small synthetic data: ridge, calibration, weight folding, folds, artifact."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from policies.routing import train as T
from policies.routing.dataset import Example
from policies.routing.features import FEATURE_NAMES
from policies.routing.scorer import FORMAT_VERSION, ArtifactError, load_artifact, manifest_path, sha256_file, sigmoid


def synthetic(n_per_group: int = 40, d: int = 8, seed: int = 0) -> T.Matrices:
    """MMLU-like subjects whose quality gap rises with length and one embedding direction."""
    rng = np.random.default_rng(seed)
    examples, embs, feats, gaps = [], [], [], []
    for ds, groups in (("mmlu", [f"s{i}" for i in range(6)]), ("gsm8k", ["gsm8k"]), ("mt_bench", ["writing", "math"])):
        for g in groups:
            for _ in range(n_per_group):
                f = rng.normal(size=len(FEATURE_NAMES))
                f[T.LENGTH_FEATURE] = rng.uniform(3, 8)
                e = rng.normal(size=d)
                e /= np.linalg.norm(e)
                p = sigmoid(np.array(f[T.LENGTH_FEATURE] - 5.5 + 3 * e[0]))
                s = float(rng.random() < 0.5 + 0.4 * p)
                w = float(rng.random() < 0.5 - 0.4 * p)
                examples.append(Example(ds, g, {"messages": [{"role": "user", "content": "q"}]}, (1 - w) * s, w, s))
                embs.append(e)
                feats.append(f)
                gaps.append(s - w)
    weight = T.sample_weights(examples)
    return T.Matrices(
        examples,
        {64: np.array(embs, np.float32)},
        np.array(feats),
        np.array([e.label for e in examples]),
        np.array(gaps, dtype=float),
        np.array([e.dataset for e in examples]),
        weight / weight.mean(),
        T.leave_out_groups(examples),
    )


def test_weighted_ridge_recovers_coefficients() -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 3))
    y = X @ np.array([1.0, -2.0, 0.5]) + 3.0
    coef, b = T.weighted_ridge(X, y, np.ones(500), np.full(3, 1e-9))
    assert coef == pytest.approx([1.0, -2.0, 0.5], abs=1e-6) and b == pytest.approx(3.0, abs=1e-6)
    shrunk, _ = T.weighted_ridge(X, y, np.ones(500), np.full(3, 1e5))
    assert np.abs(shrunk).sum() < 0.5 * np.abs(coef).sum()


def test_platt_slope_is_within_groups_and_never_negative() -> None:
    """Group A has short prompts and a high base rate, B long ones and a low one: pooled, the
    label falls with s; within each group it rises. The slope must follow the groups."""
    rng = np.random.default_rng(2)
    s = np.concatenate([rng.uniform(0, 2, 2000), rng.uniform(4, 6, 2000)])
    group = np.array(["a"] * 2000 + ["b"] * 2000)
    centre = np.where(group == "a", 1.0, 5.0)
    base = np.where(group == "a", 1.0, -2.0)
    y = (rng.random(4000) < sigmoid(base + 1.5 * (s - centre))).astype(float)
    a, b = T.platt(s, y, np.ones(4000), group)
    assert b == pytest.approx(1.5, abs=0.3)
    _, b_pooled_flip = T.platt(-s, y, np.ones(4000), group)
    assert b_pooled_flip == 0.0  # a falling relationship is clipped, never turned into a reversed ranking


def test_fit_folds_the_combination_into_one_linear_scorer() -> None:
    m = synthetic()
    idx = np.arange(len(m.examples))
    hp = T.Hyper(64, 0.7, 10.0, mu=0.5)
    ranker = T.fit_ranker(m, idx, hp.max_chars, hp.l2_emb)
    scorer = T.fit(m, idx, hp, "test-embedder", ranker)
    length, complexity, learned = ranker.parts(m.embs[64], m.feats)
    s = length + hp.mu * complexity + hp.lam * learned
    a, b = T.platt(s, m.label, m.weight, m.dataset)
    assert scorer.score(m.embs[64], m.feats) == pytest.approx(sigmoid(a + b * s), abs=1e-5)
    assert scorer.w_feat[T.LENGTH_FEATURE] > 0 and scorer.embedder == "test-embedder" and scorer.dims == 8
    with pytest.raises(ValueError, match="dimensions"):
        scorer.score(np.zeros((1, 9), np.float32), m.feats[:1])


def test_folds_hold_out_whole_groups_and_stay_within() -> None:
    m = synthetic(n_per_group=10)
    groups = m.groups
    for _, test in T.folds(m.examples):
        inside = set(groups[test])
        assert not inside & set(groups[np.setdiff1d(np.arange(len(groups)), test)])
    within = np.nonzero(m.dataset != "gsm8k")[0]
    inner = T.folds(m.examples, within=within)
    assert all(set(t) <= set(within) for _, t in inner) and "gsm8k" not in {d for d, _ in inner}


def test_nested_scores_are_out_of_fold_and_beat_chance_on_a_learnable_signal() -> None:
    m = synthetic(n_per_group=60)
    oof, chosen = T.nested_out_of_fold_scores(m, [T.Hyper(64, lam, 10.0) for lam in (0.5, 2.0)], "test")
    assert np.isfinite(oof).all() and ((oof > 0) & (oof < 1)).all()
    assert len(chosen) == len(T.folds(m.examples))
    assert T.metrics_by_dataset(m.examples, oof)["mmlu"]["apgr"] > 0.55


def test_artifact_round_trip_and_format_check(tmp_path: Path) -> None:
    m = synthetic(n_per_group=10)
    scorer = T.fit(m, np.arange(len(m.examples)), T.Hyper(64, 1.0, 10.0), "test-embedder")
    path = tmp_path / "router.npz"
    scorer.save(path)
    man = {"artifact_sha256": sha256_file(path), "embedder": "test-embedder", "recommended_thresholds": [0.2, 0.4]}
    manifest_path(path).write_text(json.dumps(man))
    loaded = load_artifact(path)
    assert loaded.embedder == "test-embedder" and loaded.recommended_thresholds == [0.2, 0.4]
    assert loaded.score(m.embs[64][:5], m.feats[:5]) == pytest.approx(scorer.score(m.embs[64][:5], m.feats[:5]), abs=1e-5)
    manifest_path(path).write_text(json.dumps({**man, "embedder": "other"}))
    with pytest.raises(ArtifactError, match="names embedder"):
        load_artifact(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, "format_version": np.array(FORMAT_VERSION - 1)})
    manifest_path(path).write_text(json.dumps({**man, "artifact_sha256": sha256_file(path)}))
    with pytest.raises(ArtifactError, match="format"):
        load_artifact(path)
