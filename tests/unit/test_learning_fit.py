"""The prior-centred fit: a handful of labels barely moves the shipped router, a thousand move it."""

from __future__ import annotations

import numpy as np
import pytest

from policies.embedding.names import embedder_for
from policies.learning.fit import fit_adapted, label_apgr
from policies.learning.learn import scores_of
from policies.learning.representation import Representer
from policies.routing.scorer import load_artifact
from tests.unit.learning_data import traffic


@pytest.fixture(scope="module")
def setup() -> dict:
    prior = load_artifact()
    rep = Representer(prior, embedder_for(prior.embedder))
    train_reqs, train_y = traffic(1000, seed=10)
    test_reqs, test_y = traffic(300, seed=11)
    return {
        "prior": prior,
        "train": (rep.represent(train_reqs), np.array(train_y)),
        "test": (rep.represent(test_reqs), np.array(test_y)),
    }


def test_no_labels_is_the_prior(setup: dict) -> None:
    prior = setup["prior"]
    rep, y = setup["train"]
    out = fit_adapted(prior, rep.subset([]), y[:0])
    assert out.scorer is prior and out.rows == 0


def test_five_labels_barely_move_the_scores(setup: dict) -> None:
    prior = setup["prior"]
    rep, y = setup["train"]
    test, _ = setup["test"]
    before = scores_of(prior, test, 0)
    out = fit_adapted(prior, rep.subset(np.arange(5)), y[:5])
    after = scores_of(out.scorer, test, 0)
    assert np.mean(np.abs(after - before)) < 0.05
    assert np.corrcoef(after, before)[0, 1] > 0.95  # the ranking is the prior's


def test_a_thousand_labels_learn_what_the_prior_does_not_know(setup: dict) -> None:
    prior = setup["prior"]
    rep, y = setup["train"]
    test, test_y = setup["test"]
    before = scores_of(prior, test, 0)
    out = fit_adapted(prior, rep, y)
    after = scores_of(out.scorer, test, 0)
    assert np.mean(np.abs(after - before)) > 0.1
    best = label_apgr(test_y, test_y)  # the ranking by the labels themselves
    assert label_apgr(after, test_y) > label_apgr(before, test_y) + 0.1
    assert label_apgr(after, test_y) > 0.97 * best
    assert np.isfinite(out.lam)  # cross-validation let the deviations move


def test_noisy_labels_still_help_but_less(setup: dict) -> None:
    prior = setup["prior"]
    rep = Representer(prior, embedder_for(prior.embedder))
    reqs, y = traffic(1000, seed=12, flip=0.25)
    test, test_y = setup["test"]
    out = fit_adapted(prior, rep.represent(reqs), np.array(y))
    assert label_apgr(scores_of(out.scorer, test, 0), test_y) > label_apgr(scores_of(prior, test, 0), test_y) + 0.1


def test_the_adapted_scorer_keeps_the_artifact_form(setup: dict) -> None:
    prior = setup["prior"]
    rep, y = setup["train"]
    s = fit_adapted(prior, rep.subset(np.arange(200)), y[:200]).scorer
    assert s.w_emb.shape == prior.w_emb.shape and s.w_feat.shape == prior.w_feat.shape
    assert s.w_tok is not None and prior.w_tok is not None and s.w_tok.shape == prior.w_tok.shape
    assert np.array_equal(s.feat_mean, prior.feat_mean) and s.max_chars == prior.max_chars
    assert s.embedder == prior.embedder and s.creative_texts == prior.creative_texts


def test_labels_that_say_nothing_keep_a_strong_prior(setup: dict) -> None:
    # coin-flip labels: the best of the cross-validated figures is luck, so the one-standard-error rule keeps
    # the deviations small (the strongest prior within one error of the best) over several draws of noise
    prior = setup["prior"]
    rep, _ = setup["train"]
    chosen = []
    for seed in range(4):
        noise = np.random.default_rng(seed).integers(0, 2, 300).astype(float)
        chosen.append(fit_adapted(prior, rep.subset(np.arange(300)), noise).lam)
    assert min(chosen) >= 100.0, chosen
