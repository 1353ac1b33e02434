"""One learning run: labelled rows -> candidate -> out-of-time check -> thresholds -> decision.

Shared by both paths of `synqra learn` (the inference log, and `--labels FILE`), so the evaluation
interface fits exactly as a deployment does:

1. Rows in time order (request time; a labels file: its line order). The newest
   `validation_share` (at least MIN_VALIDATION rows) are held out. While that is fewer than
   ENOUGH_VALIDATION rows, the check reaches further back (at most 3/4 of the rows, never into rows
   the current router was trained on), in up to VALIDATION_SEGMENTS consecutive segments: each is
   predicted by a candidate fit on every row before it (rolling origin), so every check stays out of
   time, and a few hundred noisy labels (the gate and the judge are wrong a quarter of the time)
   are not judged on the newest 20 to 80 alone.
2. Candidate = fit.fit_adapted(prior, older rows): the prior is the base artifact (the shipped one,
   or the one configured), never an earlier learnt version, so labels are not counted twice.
3. Candidates and current router are scored on the held-out segments; the candidate wins only if
   (a) its APGR against the labels, averaged over the segments by size, beats the current router's by
   more than `min_improvement`; (b) it is not worse on the newest segment (traffic that has drifted
   away from the older labels keeps the current router); (c) the evidence is significant by one of
   two paired tests, each at GUARD_BOOTSTRAP_SHARE one-sided (Bonferroni, GUARD_CONFIDENCE in all):
   the APGR gain in paired bootstrap resamples (within each segment), or the per-row log-likelihood
   gain with both routers recalibrated (intercept and scale) on the segment, so that only their
   rankings compete (loglik_test).
4. A winner is refitted on every labelled row with the lam the cross-validation chose (the held-out
   newest rows are the most like tomorrow's traffic), and its tier thresholds are refitted on the
   logged traffic: the local cut at `target_local_share` (tiers.thresholds_for_shares), lowered
   until the labelled requests below it needed the strong tier at most `max_escalation` of the
   time (thresholds.local_cut); the other cuts keep the current split of the non-local traffic.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from policies.common.artifacts import code_hash
from policies.common.learning_settings import LearningSettings
from policies.learning.fit import Adapted, fit_adapted, label_apgr, token_vocab
from policies.learning.representation import Representation, representation_key
from policies.routing.scorer import FORMAT_VERSION, LearnedScorer

MIN_VALIDATION = 20  # held-out rows below which no comparison is trusted
ENOUGH_VALIDATION = 1000  # held-out rows past which the newest share alone is trusted
VALIDATION_SEGMENTS = 3  # most rolling-origin segments (each costs one more fit)
VALIDATION_SPAN = 0.75  # the segments reach back at most this share of the labelled rows
MIN_TRAIN = 20
MIN_ESCALATION_ROWS = 20  # thresholds.local_cut's smallest group of requests below the cut
# The guard's evidence that the candidate is better, two complementary measures on the same held-out rows,
# each at (1 - GUARD_CONFIDENCE) / 2 one-sided so that a candidate no better than the current router is
# installed at most 1 - GUARD_CONFIDENCE of the time (Bonferroni):
# - the APGR gain against the labels in GUARD_BOOTSTRAP_SHARE of paired bootstrap resamples (the measure
#   that matters, but a difference of two APGRs on a few hundred noisy labels varies a lot);
# - the log-likelihood gain, paired per row (Vuong's test, z >= GUARD_Z), each router's scores first
#   recalibrated on the segment (intercept and scale of its logit, two parameters each, so neither is
#   favoured): serving reads only the ranking (the thresholds are refitted to shares), so calibration must
#   not decide, and a per-row likelihood difference is far less noisy than an APGR difference when the
#   labels are clean (held-out MMLU subjects, 1,000 labels: z 2.2 to 2.8 where the bootstrap gave 92-100%).
# Either suffices; the APGR gain must be positive in any case (and not negative on the newest segment).
# 95% alone on the bootstrap (the guard before) kept most better candidates out and let a worse one in;
# 0.8 or 0.9 let in candidates that served 0.05 worse with a quarter of the labels flipped.
GUARD_CONFIDENCE = 0.95
GUARD_BOOTSTRAP_SHARE = 1 - (1 - GUARD_CONFIDENCE) / 2  # 0.975
GUARD_Z = 1.9600  # the standard normal's GUARD_BOOTSTRAP_SHARE quantile
GUARD_DRAWS = 200
SEED = 20240611
_CODE_FILES = ("fit.py", "learn.py", "representation.py")


def learning_code_hash() -> str:
    return code_hash(Path(__file__).resolve().parent, _CODE_FILES)


@dataclass
class Labelled:
    """Labelled rows, oldest first."""

    rep: Representation
    label: np.ndarray
    weight: np.ndarray
    sources: list[tuple[str, ...]]
    ts: np.ndarray | None = None  # request times (None: order only)
    skipped: dict[str, int] = field(default_factory=dict)  # why rows were left out, for the manifest

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, idx: np.ndarray) -> Labelled:
        return Labelled(
            self.rep.subset(idx),
            self.label[idx],
            self.weight[idx],
            [self.sources[i] for i in idx],
            None if self.ts is None else self.ts[idx],
            self.skipped,
        )

    def by_source(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.sources:
            for x in s:
                out[x] = out.get(x, 0) + 1
        return dict(sorted(out.items()))


def scores_of(scorer: LearnedScorer, rep: Representation, vocab: int) -> np.ndarray:
    tok = rep.token_matrix(len(scorer.w_tok)) @ scorer.w_tok if scorer.w_tok is not None else None
    return scorer.score(rep.emb, rep.feats, tok)


def _figures(scores: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, float]:
    p = np.clip(scores, 1e-6, 1 - 1e-6)
    logloss = float(np.average(-(y * np.log(p) + (1 - y) * np.log(1 - p)), weights=w))
    return {
        "apgr": round(label_apgr(scores, y, w), 4),
        "logloss": round(logloss, 4),
        "mean_score": round(float(np.mean(scores)), 4),
    }


@dataclass
class Outcome:
    """What a run decided. `scorer` is what should serve afterwards (the refitted candidate when
    installed, else the current router); `manifest` describes it when installed."""

    installed: bool
    reason: str
    scorer: LearnedScorer
    validation: dict[str, Any]
    candidate: Adapted | None = None
    thresholds: list[float] | None = None
    threshold_notes: list[str] = field(default_factory=list)
    manifest: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The run-log record (registry.record_run adds version and times)."""
        return {
            "decision": "installed" if self.installed else "kept",
            "reason": self.reason,
            "validation": self.validation,
            "fit": self.candidate.summary() if self.candidate else None,
            "thresholds": self.thresholds,
            "threshold_notes": self.threshold_notes,
        }


def validation_segments(n: int, n_val: int, seen: int) -> list[tuple[int, int]]:
    """[start, end) row ranges the guard validates on, oldest first: the newest n_val rows, reaching
    back (while short of ENOUGH_VALIDATION, to at most VALIDATION_SPAN of the rows, never into the
    `seen` oldest rows the current router was trained on) in up to VALIDATION_SEGMENTS equal segments."""
    span = max(n_val, min(int(n * VALIDATION_SPAN), n - seen, ENOUGH_VALIDATION))
    span = min(span, n - MIN_TRAIN)
    k = max(1, min(VALIDATION_SEGMENTS, span // n_val))
    edges = np.linspace(n - span, n, k + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


@dataclass
class Segment:
    """One out-of-time check: a segment's labels, and its scores by the candidate fit on the rows before it."""

    y: np.ndarray
    w: np.ndarray
    cand: np.ndarray  # candidate scores
    cur: np.ndarray  # current router's scores

    def gain(self, idx: np.ndarray | None = None) -> float:
        i = np.arange(len(self.y)) if idx is None else idx
        return label_apgr(self.cand[i], self.y[i], self.w[i]) - label_apgr(self.cur[i], self.y[i], self.w[i])


def _pooled_gain(segments: list[Segment]) -> float:
    sizes = np.array([len(s.y) for s in segments], dtype=float)
    return float(np.average([s.gain() for s in segments], weights=sizes))


def _bootstrap_wins(segments: list[Segment], margin: float) -> float:
    """Share of paired resamples (within each segment) in which the size-weighted mean APGR gain of
    the candidate over the current router is > margin."""
    rng = np.random.default_rng(SEED)
    sizes = np.array([len(s.y) for s in segments], dtype=float)
    wins = 0
    for _ in range(GUARD_DRAWS):
        gains = []
        for s in segments:
            idx = rng.integers(0, len(s.y), len(s.y))
            gains.append(s.gain(idx) if np.ptp(s.y[idx]) else 0.0)
        wins += float(np.average(gains, weights=sizes)) > margin
    return wins / GUARD_DRAWS


def _row_loglik(p: np.ndarray, y: np.ndarray) -> np.ndarray:
    q = np.clip(p, 1e-6, 1 - 1e-6)
    out: np.ndarray = y * np.log(q) + (1 - y) * np.log(1 - q)
    return out


def recalibrated_loglik(p: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Per-row log-likelihood of labels y under scores p recalibrated: the weighted logistic fit of y on
    [1, logit(p)] (intercept and scale; Newton, with a tiny ridge for separable or constant scores)."""
    q0 = np.clip(p, 1e-6, 1 - 1e-6)
    X = np.stack([np.ones(len(q0)), np.log(q0 / (1 - q0))], axis=1)
    beta = np.zeros(2)
    for _ in range(50):
        q = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        H = (X * (w * q * (1 - q))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, X.T @ (w * (q - y)) + 1e-6 * beta)
        beta -= step
        if np.abs(step).max() < 1e-8:
            break
    return _row_loglik(1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30))), y)


def loglik_test(segments: list[Segment]) -> tuple[float, float]:
    """(mean per-row log-likelihood gain, z) of the candidate over the current router, each recalibrated
    on the segment (recalibrated_loglik), paired per row over every segment (weights as in the fit):
    z >= GUARD_Z is the guard's evidence."""
    d = np.concatenate(
        [s.w * (recalibrated_loglik(s.cand, s.y, s.w) - recalibrated_loglik(s.cur, s.y, s.w)) for s in segments]
    )
    if len(d) < 2:
        return 0.0, 0.0
    sd = float(d.std(ddof=1))
    mean = float(d.mean())
    return mean, (mean / (sd / np.sqrt(len(d))) if sd > 0 else 0.0)


def is_base(scorer: LearnedScorer, prior: LearnedScorer) -> bool:
    """The serving router is the base artifact (the registry loads the two as separate objects)."""
    sha = prior.manifest.get("artifact_sha256")
    return scorer is prior or (sha is not None and scorer.manifest.get("artifact_sha256") == sha)


def rows_seen_by_current(current: LearnedScorer, data: Labelled, is_prior: bool) -> int | None:
    """How many of the oldest labelled rows the current router was trained on: 0 for the base, from
    its manifest's `trained_through_ts` when the rows have times; None when unknown."""
    if is_prior:
        return 0
    through = (current.manifest.get("training_rows") or {}).get("trained_through_ts")
    if through is None or data.ts is None:
        return None
    return int(np.searchsorted(data.ts, float(through), side="right"))


def _parent_split(current_thresholds: list[float], current_scores: np.ndarray) -> list[float]:
    """Share of the non-local traffic each tier above the local one gets under the current router."""
    from policies.routing.tiers import tier_index

    n_tiers = len(current_thresholds) + 1
    counts = np.bincount([tier_index(float(s), current_thresholds) for s in current_scores], minlength=n_tiers)
    upper = counts[1:].astype(float)
    return list(upper / upper.sum()) if upper.sum() else [1.0 / (n_tiers - 1)] * (n_tiers - 1)


def refit_thresholds(
    traffic_scores: np.ndarray,
    labelled_scores: np.ndarray,
    labels: np.ndarray,
    current_thresholds: list[float],
    current_traffic_scores: np.ndarray,
    settings: LearningSettings,
    keep_shares: bool = False,
) -> tuple[list[float], list[str]]:
    """(thresholds, notes): the local cut at the target local share of the traffic, lowered to the
    escalation cap; the cuts above it split the rest as the current router does. `keep_shares` (the config sets
    the thresholds: a rollout stage): every tier keeps the share of the traffic the current router gives it at
    `current_thresholds`, the local cut still lowered to the escalation cap."""
    from policies.routing.thresholds import local_cut
    from policies.routing.tiers import thresholds_for_shares, tier_index

    if keep_shares:
        counts = np.bincount(
            [tier_index(float(s), current_thresholds) for s in current_traffic_scores],
            minlength=len(current_thresholds) + 1,
        )
        shares = list(counts / counts.sum())
        notes = [
            f"the configured stage's shares {[round(float(x), 4) for x in shares]} of {len(traffic_scores)} logged requests"
        ]
    else:
        L = settings.target_local_share
        split = _parent_split(current_thresholds, current_traffic_scores)
        shares = [L] + [(1.0 - L) * q for q in split]
        notes = [f"local cut at the target local share {L} of {len(traffic_scores)} logged requests"]
    shares[-1] = 1.0 - sum(shares[:-1])
    thresholds = thresholds_for_shares([float(s) for s in traffic_scores], shares)
    verdicts = [(float(s), "escalate" if y >= 0.5 else "deliver") for s, y in zip(labelled_scores, labels)]
    cut = local_cut(verdicts, settings.max_escalation, MIN_ESCALATION_ROWS)
    if cut is None:
        notes.append(
            f"no local cut keeps the labelled escalation rate at or below {settings.max_escalation} "
            f"({len(verdicts)} labelled requests): the share cut is kept"
        )
    elif cut.threshold < thresholds[0]:
        thresholds = [cut.threshold] + [max(t, cut.threshold) for t in thresholds[1:]]
        share = float(np.mean(traffic_scores < cut.threshold))
        notes.append(
            f"lowered to {cut.threshold:.6f} by the escalation cap {settings.max_escalation}: "
            f"{cut.below} labelled requests below it, {cut.escalation_rate:.3f} needed the strong tier; "
            f"local share {share:.3f}"
        )
    return [float(t) for t in thresholds], notes


def learn(
    prior: LearnedScorer,
    current: LearnedScorer,
    data: Labelled,
    settings: LearningSettings,
    vocab: int = 0,
    traffic: Representation | None = None,
    current_thresholds: list[float] | None = None,
    current_seen: int | None = None,
    stage_thresholds: list[float] | None = None,
) -> Outcome:
    """One run (no I/O). `traffic`: every logged request of the representation (for the thresholds;
    None: the labelled rows). `current_thresholds`: the thresholds serving now (None: the current
    artifact's recommendation). `current_seen`: how many of the oldest rows the current router was
    trained on (None: from its manifest, see rows_seen_by_current). `stage_thresholds`: the configured
    `synqra.routing.thresholds` (a rollout stage): the winner keeps the tier shares they give now, and its
    manifest names them (the router serves its thresholds while the config names that stage)."""
    n = len(data)
    vocab = token_vocab(prior, vocab)
    comparable = representation_key(current) == data.rep.key
    reference = current if comparable else prior
    n_val = max(MIN_VALIDATION, math.ceil(settings.validation_share * n))
    if n - n_val < MIN_TRAIN:
        return Outcome(
            False,
            f"{n} labelled requests: at least {MIN_VALIDATION + MIN_TRAIN} are needed "
            f"({MIN_TRAIN} to fit, {MIN_VALIDATION} newest to validate)",
            current,
            {"rows": n},
        )
    if current_seen is None:
        current_seen = rows_seen_by_current(current, data, reference is prior or is_base(current, prior))
    # Unknown: the current router may have seen every row but the newest share.
    segments_at = validation_segments(n, n_val, n - n_val if current_seen is None else current_seen)
    n_held = segments_at[-1][1] - segments_at[0][0]
    validation: dict[str, Any] = {
        "protocol": f"rolling origin over the {n_held} newest labelled requests in {len(segments_at)} "
        "segment(s), each predicted by a candidate fit on every older request; the candidate must beat the "
        "current router on the size-weighted mean APGR against the labels, not lose on the newest segment, and "
        f"be better with {GUARD_BOOTSTRAP_SHARE:.1%} one-sided confidence by the paired APGR bootstrap or by the "
        "paired log-likelihood of both routers recalibrated on the segment",
        "rows": n_held,
        "segments": [[a, b] for a, b in segments_at],
        "fit_rows": segments_at[-1][0],
        "compared_with": "current" if comparable else "base (the current router reads another representation)",
    }
    newest = data.subset(np.arange(*segments_at[-1]))
    if np.ptp(newest.label) == 0:
        return Outcome(
            False, "the newest labelled requests all have the same label: nothing to rank", current, validation
        )
    segments: list[Segment] = []
    cand: Adapted | None = None
    for a, b in segments_at:
        fit_part, held = data.subset(np.arange(a)), data.subset(np.arange(a, b))
        if np.ptp(held.label) == 0 and b != n:  # nothing to rank in this older segment
            continue
        cand = fit_adapted(prior, fit_part.rep, fit_part.label, fit_part.weight, vocab)
        segments.append(
            Segment(
                held.label,
                held.weight,
                scores_of(cand.scorer, held.rep, vocab),
                scores_of(reference, held.rep, vocab),
            )
        )
    assert cand is not None  # at least one segment
    last = segments[-1]
    validation["candidate"] = _figures(last.cand, last.y, last.w)
    validation["current"] = _figures(last.cur, last.y, last.w)
    gain = _pooled_gain(segments)
    validation["apgr_gain"] = round(gain, 4)
    validation["apgr_gain_by_segment"] = [round(s.gain(), 4) for s in segments]
    ll_gain, z = loglik_test(segments)
    validation["loglik_gain_per_row"] = round(ll_gain, 5)
    validation["loglik_z"] = round(z, 3)
    wins = _bootstrap_wins(segments, settings.min_improvement)
    validation["bootstrap_wins"] = round(wins, 4)
    evidence = wins >= GUARD_BOOTSTRAP_SHARE or z >= GUARD_Z
    if gain <= settings.min_improvement or not evidence or last.gain() < 0:
        reason = (
            f"candidate APGR gain {gain:+.4f} over the current router on the {n_held} newest labelled requests "
            f"({validation['apgr_gain_by_segment'][-1]:+.4f} on the newest {len(last.y)}), recalibrated log-likelihood "
            f"gain over it {ll_gain:+.4f} per request (z {z:.2f}), better in {wins:.1%} of {GUARD_DRAWS} "
            f"resamples: an APGR gain above {settings.min_improvement}, not worse on the newest, and z >= "
            f"{GUARD_Z:.2f} or {GUARD_BOOTSTRAP_SHARE:.1%} of the resamples were needed"
        )
        return Outcome(False, reason, current, validation, cand)
    final = fit_adapted(prior, data.rep, data.label, data.weight, vocab, lam=cand.lam)
    final.cv = cand.cv
    traffic = traffic if traffic is not None and len(traffic) else data.rep
    cur_thr = current_thresholds or current.recommended_thresholds or prior.recommended_thresholds or [0.5, 0.8]
    if stage_thresholds is not None:  # what serves now: the stage, or the cuts a version fitted for it
        fitted_for_stage = reference is current and current.manifest.get("stage_thresholds") == stage_thresholds
        cur_thr = (current.recommended_thresholds if fitted_for_stage else None) or stage_thresholds
    thresholds, notes = refit_thresholds(
        scores_of(final.scorer, traffic, vocab),
        scores_of(final.scorer, data.rep, vocab),
        data.label,
        cur_thr,
        scores_of(reference, traffic, vocab),
        settings,
        keep_shares=stage_thresholds is not None,
    )
    reason = (
        f"candidate APGR gain {gain:+.4f} over the current router on the {n_held} newest labelled requests "
        f"({validation['apgr_gain_by_segment'][-1]:+.4f} on the newest {len(last.y)}; "
        f"recalibrated log-likelihood gain over it {ll_gain:+.4f} per request, z {z:.2f}; better in {wins:.1%} of "
        f"{GUARD_DRAWS} resamples)"
    )
    out = Outcome(True, reason, final.scorer, validation, final, thresholds, notes)
    out.manifest = _manifest(prior, current, data, out, settings)
    if stage_thresholds is not None:
        out.manifest["stage_thresholds"] = [float(t) for t in stage_thresholds]
    return out


def _manifest(
    prior: LearnedScorer, current: LearnedScorer, data: Labelled, out: Outcome, settings: LearningSettings
) -> dict[str, Any]:
    ts = data.ts
    return {
        "format_version": FORMAT_VERSION,
        "model": "prior-centred MAP logistic regression (policies/learning/fit.py): logit = a + alpha * prior logit + "
        "deviations on standardised features, embedding and token presence, folded into the prior's linear form",
        "embedder": prior.embedder,
        "embedding_dims": prior.dims,
        "embed_text": prior.manifest.get("embed_text", f"newest user turn, first {prior.max_chars} characters"),
        "feature_names": prior.manifest.get("feature_names"),
        "recommended_thresholds": out.thresholds,
        "threshold_rule": {
            "target_local_share": settings.target_local_share,
            "max_escalation": settings.max_escalation,
            "notes": out.threshold_notes,
        },
        "prior_version": prior.manifest.get("version"),
        "prior_sha256": prior.manifest.get("artifact_sha256"),
        "parent_version": current.manifest.get("version"),
        "learning": {**(out.candidate.summary() if out.candidate else {}), "code_sha256": learning_code_hash()},
        "training_rows": {
            "labelled": len(data),
            "by_source": data.by_source(),
            "left_out": data.skipped,
            "first_request_ts": None if ts is None or not len(ts) else float(ts[0]),
            "trained_through_ts": None if ts is None or not len(ts) else float(ts[-1]),
        },
        "validation": out.validation,
        "decision": out.reason,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
