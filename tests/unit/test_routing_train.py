"""Training pieces of the router on small synthetic data: ridge, calibration, weight folding, folds, artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from policies.common.artifacts import manifest_path, sha256_file
from policies.routing import train as T
from policies.routing.dataset import Example
from policies.routing.features import FEATURE_NAMES
from policies.routing.scorer import FORMAT_VERSION, ArtifactError, load_artifact, sigmoid


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
    assert len(T.folds(m.examples)) == T.N_FOLDS
    for d in ("mmlu", "gsm8k"):  # every fold tests on groups of every dataset with enough groups
        assert all((m.dataset[test] == d).any() for _, test in T.folds(m.examples))
    within = np.nonzero(m.dataset != "gsm8k")[0]
    inner = T.folds(m.examples, within=within)
    assert all(set(t) <= set(within) for _, t in inner)
    assert not any((m.dataset[t] == "gsm8k").any() for _, t in inner)


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
    assert loaded.score(m.embs[64][:5], m.feats[:5]) == pytest.approx(
        scorer.score(m.embs[64][:5], m.feats[:5]), abs=1e-5
    )
    manifest_path(path).write_text(json.dumps({**man, "embedder": "other"}))
    with pytest.raises(ArtifactError, match="names embedder"):
        load_artifact(path)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    np.savez(path, **{**arrays, "format_version": np.array(FORMAT_VERSION - 1)})
    manifest_path(path).write_text(json.dumps({**man, "artifact_sha256": sha256_file(path)}))
    with pytest.raises(ArtifactError, match="format"):
        load_artifact(path)


def with_tokens(m: T.Matrices, vocab: int = 50, seed: int = 3) -> tuple[T.Matrices, list[list[int]]]:
    """Token ids per row: filler tokens 10..49, plus token 7 in rows whose gap is high (a lexical cue
    that lives within groups), and token 5 in every row of the groups with a high mean gap (a
    group-level cue the per-group intercepts must absorb)."""
    rng = np.random.default_rng(seed)
    groups = m.groups
    means = {g: m.gap[groups == g].mean() for g in set(groups)}
    top = np.median(list(means.values()))
    ids = []
    for i in range(len(m.examples)):
        row = list(rng.integers(10, vocab, 6))
        if m.gap[i] > 0 and rng.random() < 0.8:
            row.append(7)
        if means[groups[i]] > top:
            row.append(5)
        ids.append(row)
    m.tokens = {64: T.token_matrix(ids, vocab)}
    return m, ids


def test_token_ridge_learns_within_group_cues_and_serving_reads_the_same_term() -> None:
    m, ids = with_tokens(synthetic(n_per_group=60))
    idx = np.arange(len(m.examples))
    tr = T.fit_token_ranker(m, idx, 64, 10.0)
    assert tr.coef[7] > 3 * np.abs(tr.coef[10:]).max()  # the within-group cue stands out
    # The group-level cue is left to the dropped per-group intercepts; with intercepts per dataset
    # only, the ridge learns it (that is what within_groups=False is for: which groups are hard).
    pooled = T.fit_token_ranker(m, idx, 64, 10.0, within_groups=False)
    assert abs(tr.coef[5]) < abs(pooled.coef[5]) / 3
    hp = T.Hyper(64, 0.5, 10.0, mu=0.5, nu=0.5, l2_tok=10.0)
    scorer = T.fit(m, idx, hp, "test-embedder")
    assert scorer.w_tok is not None and scorer.w_tok.shape == (50,)
    # Serving computes the token term from ids; training from the sparse matrix: the same numbers.
    assert scorer.token_term(ids) == pytest.approx(m.tokens[64] @ scorer.w_tok, abs=1e-5)
    ranker = T.fit_ranker(m, idx, 64, 10.0)
    s = hp.anchored(*ranker.parts(m.embs[64], m.feats), tr.part(m.tokens[64]))
    a, b = T.platt(s, m.label, m.weight, m.dataset)
    assert T.score_rows(scorer, m, idx) == pytest.approx(sigmoid(a + b * s), abs=1e-5)
    with pytest.raises(ValueError, match="token ids"):
        scorer.score(m.embs[64], m.feats)  # token weights and no token term: refused, never silently dropped


def test_grid_with_tokens_is_selected_by_the_nested_cross_validation(tmp_path: Path) -> None:
    m, ids = with_tokens(synthetic(n_per_group=60))
    hps = [T.Hyper(64, 0.5, 10.0), T.Hyper(64, 0.5, 10.0, nu=2.0, l2_tok=10.0)]
    token_options = 1 + len([nu for nu in T.GRID_NU if nu]) * len(T.GRID_L2_TOK)
    assert len(T.grid((64,), tokens=False)) * token_options == len(T.grid((64,), tokens=True))
    oof, chosen = T.nested_out_of_fold_scores(m, hps, "test")
    assert all(c["setting"] == hps[1].label for c in chosen)  # the token cue pays off out of fold
    assert T.metrics_by_dataset(m.examples, oof)["mmlu"]["apgr"] > 0.7
    scorer = T.fit(m, np.arange(len(m.examples)), hps[1], "test-embedder")
    path = tmp_path / "router.npz"
    scorer.save(path)
    manifest_path(path).write_text(json.dumps({"artifact_sha256": sha256_file(path), "embedder": "test-embedder"}))
    loaded = load_artifact(path)
    assert loaded.w_tok is not None
    assert loaded.token_term(ids[:5]) == pytest.approx(scorer.token_term(ids[:5]), abs=1e-6)


def test_the_shipped_artifacts_were_trained_by_the_code_in_this_checkout() -> None:
    """Both shipped learned artifacts name the training code that made them: a change to that code
    without re-running `synqra train-router` / `synqra train-quality-scorer` would leave a manifest
    that no longer says how its weights were made (the router's was stale until regenerated)."""
    from policies.quality import train as QT
    from policies.quality.answer_model import DEFAULT_ARTIFACT as DEFAULT_ANSWER_ARTIFACT
    from policies.routing.scorer import DEFAULT_ARTIFACT

    for artifact, code in (
        (DEFAULT_ARTIFACT, T.training_code_hash()),
        (DEFAULT_ANSWER_ARTIFACT, QT.training_code_hash()),
    ):
        manifest = json.loads(manifest_path(artifact).read_text())
        assert manifest["artifact_sha256"] == sha256_file(artifact), artifact
        assert manifest["training_code_sha256"] == code, f"{artifact.name}: retrain it with the current code"
