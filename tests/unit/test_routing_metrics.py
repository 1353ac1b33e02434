"""APGR / CPT and the bootstrap spread used by bench/routing_eval.py."""

from __future__ import annotations

import numpy as np
import pytest

from policies.routing.metrics import bootstrap_apgr, group_ranking, pgr_curve, random_metrics, route_metrics


def _outcomes(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    strong = (rng.random(n) < 0.9).astype(float)
    weak = strong * (rng.random(n) < 0.6)
    return weak, strong


def test_curve_runs_from_weak_only_to_strong_only() -> None:
    weak, strong = _outcomes()
    share, pgr = pgr_curve(np.arange(len(weak)), weak, strong)
    assert share[0] == 0.0 and share[-1] == 1.0
    assert pgr[0] == pytest.approx(0.0) and pgr[-1] == pytest.approx(1.0)


def test_oracle_beats_random_and_reversed_oracle_loses() -> None:
    weak, strong = _outcomes()
    gain = strong - weak
    oracle = route_metrics(gain, weak, strong)
    reverse = route_metrics(-gain, weak, strong)
    rnd = random_metrics(weak, strong, draws=50)
    assert oracle.apgr > 0.75 and reverse.apgr < 0.25
    assert 0.45 < rnd.apgr < 0.55
    assert oracle.cpt50 < rnd.cpt50 < reverse.cpt50
    # The oracle recovers the whole gap once every row it needs is strong: share = rows with gain.
    assert oracle.cpt80 <= gain.mean() + 1e-9


def test_tied_scores_count_as_random_order() -> None:
    weak, strong = _outcomes()
    constant = route_metrics(np.zeros(len(weak)), weak, strong)
    assert constant.apgr == pytest.approx(0.5, abs=1e-9)


def test_bootstrap_is_paired_and_brackets_the_full_sample_figure() -> None:
    weak, strong = _outcomes(600)
    rng = np.random.default_rng(1)
    gain = strong - weak
    scores = {"good": gain + rng.normal(0, 0.5, len(gain)), "noise": rng.random(len(gain))}
    b = bootstrap_apgr(scores, weak, strong, draws=200)
    full = route_metrics(scores["good"], weak, strong).apgr
    assert b.low["good"] <= full <= b.high["good"]
    assert b.low["good"] < b.median["good"] < b.high["good"]
    assert b.share_above("good", "noise") > 0.95 and b.share_above("noise", "good") < 0.05
    assert b.share_above("good", 0.0) == 1.0 and b.share_above("good", 2.0) == 0.0


def test_group_bootstrap_pools_whole_groups() -> None:
    weak, strong = _outcomes(300)
    groups = np.repeat(np.array(["a", "b", "c"]), 100)
    # A score that only separates groups: every draw of one group ranks by ties alone (APGR 0.5).
    b = bootstrap_apgr({"group id": (groups == "a").astype(float)}, weak, strong, groups, n_groups=1, draws=30)
    assert np.allclose(b.draws, 0.5)


def test_group_ranking_separates_within_from_between() -> None:
    rng = np.random.default_rng(3)
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 200)
    rate = {"a": 0.1, "b": 0.3, "c": 0.5, "d": 0.7}  # share of rows the strong model rescues
    gain = np.array([float(rng.random() < rate[g]) for g in groups])
    noise = rng.random(len(gain))
    # Knows which rows gain, but pushes the groups in the reverse order of their gain rate.
    offset = np.array([{"a": 3.0, "b": 2.0, "c": 1.0, "d": 0.0}[g] for g in groups])
    inside = group_ranking(gain + 0.1 * noise + offset, gain, groups)
    # (a binary gain caps Spearman's rho below 1: about 0.6-0.85 at these rates)
    assert inside.within > 0.6 and inside.between == pytest.approx(-1.0) and inside.groups == 4
    # Knows only the groups' rates: nothing inside a group, the subject order exactly.
    rates_only = group_ranking(np.array([rate[g] for g in groups]), gain, groups)
    assert rates_only.within == 0.0 and rates_only.between == pytest.approx(1.0)
    # Noise: neither part.
    blind = group_ranking(noise, gain, groups)
    assert abs(blind.within) < 0.1


def test_group_ranking_leaves_out_groups_with_nothing_to_order() -> None:
    groups = np.array(["a"] * 4 + ["b"] * 4 + ["c"] * 4)
    gain = np.array([0, 0, 1, 1, 0, 0, 0, 0, 1, 0, 0, 0], dtype=float)  # b: all equal
    scores = np.array([0, 1, 2, 3, 9, 8, 7, 6, 0, 1, 2, 3], dtype=float)  # a: agrees, c: reversed
    r = group_ranking(scores, gain, groups)
    a = 0.894427190999916  # spearman([0, 1, 2, 3], [0, 0, 1, 1])
    c = 0.7745966692414834  # -spearman([0, 1, 2, 3], [1, 0, 0, 0])
    assert r.within == pytest.approx((a - c) / 2)
