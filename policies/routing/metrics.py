"""Router quality metrics (see ../shared/data/routing/README.md): APGR, CPT(x%).

Sort prompts by router score (high = needs the strong model); sending the top k
to the strong model gives a quality curve over strong-model share. Tied scores
are scored by their expectation under random tie-breaking (each prompt in a tie
group gets the group's mean gain), so a coarse rule-based score is not flattered
or punished by an arbitrary order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


@dataclass(frozen=True)
class RouteMetrics:
    apgr: float
    cpt50: float
    cpt80: float


def pgr_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(strong share, performance gap recovered) at every cut point 0..n."""
    scores, weak, strong = (np.asarray(a, dtype=np.float64) for a in (scores, weak, strong))
    n = len(scores)
    order = np.argsort(-scores, kind="stable")
    s_sorted = scores[order]
    gain = (strong - weak)[order]
    # Expected gain under random tie-breaking: replace each tie group by its mean.
    _, start, counts = np.unique(-s_sorted, return_index=True, return_counts=True)
    for st, c in zip(start, counts):
        if c > 1:
            gain[st : st + c] = gain[st : st + c].mean()
    quality = weak.mean() + np.concatenate([[0.0], np.cumsum(gain)]) / n
    gap = strong.mean() - weak.mean()
    pgr = (quality - weak.mean()) / gap if gap != 0 else np.zeros(n + 1)
    return np.arange(n + 1) / n, pgr


def route_metrics(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> RouteMetrics:
    share, pgr = pgr_curve(scores, weak, strong)
    apgr = float(np.trapezoid(pgr, share))

    def cpt(target: float) -> float:
        hit = np.nonzero(pgr >= target)[0]
        return float(share[hit[0]]) if len(hit) else 1.0

    return RouteMetrics(apgr, cpt(0.5), cpt(0.8))


def random_metrics(weak: np.ndarray, strong: np.ndarray, draws: int = 200, seed: int = 0) -> RouteMetrics:
    """Mean metrics of random routing over seeded draws."""
    rng = np.random.default_rng(seed)
    ms = [route_metrics(rng.random(len(weak)), weak, strong) for _ in range(draws)]
    return RouteMetrics(*(float(np.mean([getattr(m, f) for m in ms])) for f in ("apgr", "cpt50", "cpt80")))


@dataclass(frozen=True)
class BootstrapApgr:
    """Spread of APGR over resampled test sets, every router scored on the same draws."""

    median: dict[str, float]
    low: dict[str, float]  # 5th percentile
    high: dict[str, float]  # 95th percentile
    draws: np.ndarray  # (n_draws, n_routers) APGR, columns in the order of `names`
    names: tuple[str, ...]

    def share_above(self, name: str, other: str | float) -> float:
        """Share of draws where `name`'s APGR is above router `other`'s, or at least `other` when a number."""
        a = self.draws[:, self.names.index(name)]
        if isinstance(other, str):
            return float(np.mean(a > self.draws[:, self.names.index(other)]))
        return float(np.mean(a >= other))


def bootstrap_apgr(
    scores: dict[str, np.ndarray],
    weak: np.ndarray,
    strong: np.ndarray,
    groups: np.ndarray | None = None,
    n_groups: int | None = None,
    draws: int = 1000,
    seed: int = 0,
) -> BootstrapApgr:
    """APGR of each router over `draws` paired resamples of the test set.

    Without `groups`: rows drawn with replacement (how much a figure moves with
    the sample of prompts). With `groups` (e.g. MMLU subjects): each draw pools
    `n_groups` whole groups drawn without replacement, which is what a test on
    subjects never seen looks like: the pooled figure depends on which subjects
    happen to be pooled, since their base rates differ.
    """
    rng = np.random.default_rng(seed)
    names = tuple(scores)
    out = np.empty((draws, len(names)))
    if groups is not None:
        labels = np.unique(groups)
        members = [np.nonzero(groups == g)[0] for g in labels]
        k = n_groups or len(labels) // 2
    for t in range(draws):
        if groups is None:
            idx = rng.integers(0, len(weak), len(weak))
        else:
            idx = np.concatenate([members[j] for j in rng.choice(len(labels), k, replace=False)])
        for c, name in enumerate(names):
            out[t, c] = route_metrics(scores[name][idx], weak[idx], strong[idx]).apgr

    def pct(q: float) -> dict[str, float]:
        return {n: float(np.percentile(out[:, c], q)) for c, n in enumerate(names)}

    return BootstrapApgr(pct(50), pct(5), pct(95), out, names)


@dataclass(frozen=True)
class GroupRanking:
    """Where a router's ranking of grouped prompts (e.g. MMLU subjects) comes from."""

    within: float  # row-weighted mean Spearman rho of score vs gain inside each group
    between: float  # Spearman rho of group mean score vs group mean gain
    groups: int


def group_ranking(scores: np.ndarray, gain: np.ndarray, groups: np.ndarray) -> GroupRanking:
    """Split a ranking's agreement with the gain (strong - weak quality) into its within-group and
    between-group parts. A pooled APGR mixes both; on held-out subjects only the within-group part
    can come from what a router learnt about prompts, the between-group part is how it orders
    subjects it has never seen. A group whose scores are all equal orders nothing inside it (rho 0);
    a group whose gains are all equal has nothing to order and is left out of `within`."""
    scores, gain = np.asarray(scores, dtype=np.float64), np.asarray(gain, dtype=np.float64)
    labels = np.unique(groups)
    rhos, weights, mean_score, mean_gain = [], [], [], []
    for g in labels:
        rows = groups == g
        s, y = scores[rows], gain[rows]
        mean_score.append(s.mean())
        mean_gain.append(y.mean())
        if np.ptp(y) == 0:
            continue
        rhos.append(0.0 if np.ptp(s) == 0 else float(spearmanr(s, y).statistic))
        weights.append(rows.sum())
    within = float(np.average(rhos, weights=weights)) if weights else float("nan")
    between = float(spearmanr(mean_score, mean_gain).statistic) if len(labels) > 2 else float("nan")
    return GroupRanking(within, between, len(labels))
