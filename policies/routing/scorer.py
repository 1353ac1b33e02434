"""Scorers: P(local answer clearly worse than the strongest tier's), numpy only.

- `LearnedScorer`: similarity-weighted neighbours + logistic regression. The
  k most similar training prompts (cosine on MiniLM embeddings, stored int8)
  give a local estimate of "weak clearly worse"; a logistic regression combines
  its log-odds with the standardised structural features. Loaded from the
  shipped `.npz` artifact (no pickle: `np.load(allow_pickle=False)`), validated
  against its manifest.
- `HeuristicScorer`: the documented fallback when the artifact is missing or
  corrupt, or the embedding server does not answer: a fixed rule on structural
  features only (length, code, maths, multi-turn depth, tools, JSON mode).
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.routing.features import FEATURE_NAMES

FORMAT_VERSION = 2
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "router_v1.npz"
_REQUIRED = ("ref_emb_q", "ref_scale", "ref_label", "ref_weight", "knn_k", "w_knn", "w_feat", "bias", "feat_mean", "feat_std", "feature_names", "max_chars", "format_version")


class ArtifactError(RuntimeError):
    """The router artifact cannot be used; the message says which file and why."""


def manifest_path(artifact: Path) -> Path:
    return artifact.with_suffix(".manifest.json")


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def knn_estimate(
    q: np.ndarray, ref: np.ndarray, label: np.ndarray, weight: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Weighted mean label of the k most similar references, per query row; clipped away from 0/1.

    `exclude` (n_q, n_ref) bool masks references a query must not see (training: its own group).
    """
    sims = q @ ref.T
    if exclude is not None:
        sims = np.where(exclude, -np.inf, sims)
    k = min(k, ref.shape[0])
    nn = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    w = weight[nn]
    est = (label[nn] * w).sum(axis=1) / np.maximum(w.sum(axis=1), 1e-12)
    return np.clip(est, 0.01, 0.99)


def knn_logit(est: np.ndarray) -> np.ndarray:
    return np.log(est / (1.0 - est))


def quantise_rows(v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows with one float scale each (4x smaller than float32; ranking barely moves)."""
    scale = np.maximum(np.abs(v).max(axis=1), 1e-12) / 127.0
    return np.round(v / scale[:, None]).astype(np.int8), scale.astype(np.float32)


@dataclass(frozen=True)
class LearnedScorer:
    ref_emb: np.ndarray  # (n_ref, d) float32 unit rows: the training prompts
    ref_label: np.ndarray  # (n_ref,)
    ref_weight: np.ndarray  # (n_ref,)
    knn_k: int
    w_knn: float  # weight on the neighbours' log-odds
    w_feat: np.ndarray  # (k,) on standardised features
    bias: float
    feat_mean: np.ndarray
    feat_std: np.ndarray
    max_chars: int  # how much of the newest user turn the embedding reads (train = serve)
    manifest: dict[str, Any]
    creative_texts: tuple[str, ...] = ()
    creative_emb: np.ndarray | None = None  # (m, d) embeddings of creative_texts
    needs_embedding: bool = True
    name: str = "learned"

    @property
    def recommended_thresholds(self) -> list[float] | None:
        t = self.manifest.get("recommended_thresholds")
        return [float(x) for x in t] if t else None

    def combine(self, knn_est: np.ndarray, feats: np.ndarray) -> np.ndarray:
        z = self.w_knn * knn_logit(knn_est) + ((feats - self.feat_mean) / self.feat_std) @ self.w_feat + self.bias
        return _sigmoid(z)

    def score(self, emb: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """emb (n, d) L2-normalised, feats (n, k) raw structural features -> (n,) probabilities."""
        est = knn_estimate(emb.astype(np.float32), self.ref_emb, self.ref_label, self.ref_weight, self.knn_k)
        return self.combine(est, feats)

    def save(self, path: Path) -> None:
        """Write the `.npz` (plain arrays only); the caller writes the manifest with its sha256."""
        path.parent.mkdir(parents=True, exist_ok=True)
        q, scale = quantise_rows(self.ref_emb)
        d = self.ref_emb.shape[1]
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                format_version=np.array(FORMAT_VERSION),
                ref_emb_q=q,
                ref_scale=scale,
                ref_label=self.ref_label.astype(np.float16),
                ref_weight=self.ref_weight.astype(np.float16),
                knn_k=np.array(self.knn_k),
                w_knn=np.array([self.w_knn], np.float32),
                w_feat=self.w_feat.astype(np.float32),
                bias=np.array([self.bias], np.float32),
                feat_mean=self.feat_mean.astype(np.float32),
                feat_std=self.feat_std.astype(np.float32),
                feature_names=np.array(FEATURE_NAMES),
                max_chars=np.array(self.max_chars),
                creative_texts=np.array(self.creative_texts, dtype=str),
                creative_emb=(self.creative_emb if self.creative_emb is not None else np.zeros((0, d))).astype(
                    np.float32
                ),
            )


def load_artifact(path: Path = DEFAULT_ARTIFACT) -> LearnedScorer:
    """Load and validate the artifact against its manifest; raise ArtifactError saying what is wrong."""
    path = Path(path)
    man_path = manifest_path(path)
    if not path.is_file():
        raise ArtifactError(f"router artifact not found: {path} (run `synqra train-router` to build it)")
    if not man_path.is_file():
        raise ArtifactError(f"router manifest not found: {man_path}")
    try:
        manifest = json.loads(man_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ArtifactError(f"router manifest {man_path} is not valid JSON: {e}") from None
    digest = sha256_file(path)
    if manifest.get("artifact_sha256") != digest:
        raise ArtifactError(f"router artifact {path} does not match its manifest (sha256 {digest[:12]}...)")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:  # zipfile/ValueError/OSError: any unreadable file is the same problem
        raise ArtifactError(f"router artifact {path} is unreadable: {e}") from None
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ArtifactError(f"router artifact {path} lacks arrays {missing}")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise ArtifactError(f"router artifact {path} has format {int(arrays['format_version'])}, need {FORMAT_VERSION}")
    names = tuple(str(n) for n in arrays["feature_names"])
    if names != FEATURE_NAMES:
        raise ArtifactError(f"router artifact {path} was trained on other structural features; retrain it")
    k = len(FEATURE_NAMES)
    n, d = arrays["ref_emb_q"].shape if arrays["ref_emb_q"].ndim == 2 else (0, 0)
    shapes_ok = (
        n > 0
        and arrays["ref_emb_q"].dtype == np.int8
        and all(arrays[x].shape == (n,) for x in ("ref_scale", "ref_label", "ref_weight"))
        and arrays["w_feat"].shape == (k,)
        and arrays["feat_mean"].shape == (k,)
        and arrays["feat_std"].shape == (k,)
        and arrays["bias"].shape == (1,)
        and arrays["w_knn"].shape == (1,)
        and int(arrays["knn_k"]) >= 1
    )
    numeric = ("ref_scale", "ref_label", "ref_weight", "w_knn", "w_feat", "bias", "feat_mean", "feat_std")
    if not shapes_ok or not all(np.isfinite(arrays[a]).all() for a in numeric) or (arrays["feat_std"] <= 0).any():
        raise ArtifactError(f"router artifact {path} has inconsistent or non-finite weights")
    ref = arrays["ref_emb_q"].astype(np.float32) * arrays["ref_scale"][:, None]
    ref /= np.maximum(np.linalg.norm(ref, axis=1, keepdims=True), 1e-12)
    creative_emb = arrays.get("creative_emb")
    creative_texts = tuple(str(t) for t in arrays.get("creative_texts", np.array([], dtype=str)))
    if creative_emb is not None and creative_emb.shape != (len(creative_texts), d):
        creative_emb, creative_texts = None, ()
    return LearnedScorer(
        ref_emb=ref,
        ref_label=arrays["ref_label"].astype(np.float32),
        ref_weight=arrays["ref_weight"].astype(np.float32),
        knn_k=int(arrays["knn_k"]),
        w_knn=float(arrays["w_knn"][0]),
        w_feat=arrays["w_feat"].astype(np.float32),
        bias=float(arrays["bias"][0]),
        feat_mean=arrays["feat_mean"].astype(np.float32),
        feat_std=arrays["feat_std"].astype(np.float32),
        max_chars=int(arrays["max_chars"]),
        manifest=manifest,
        creative_texts=creative_texts,
        creative_emb=creative_emb,
    )


# Fallback rule, in log-odds: base rate, then fixed increments for signs of hard work.
_HEURISTIC_BASE = -1.6
_HEURISTIC_WEIGHTS = {
    "log_prompt_tokens": 0.25,  # longer prompts are harder (the baseline most routers beat only modestly)
    "code_fence": 0.8,
    "code_line_frac": 0.8,
    "log_math_words": 0.3,
    "has_latex": 0.5,
    "log_user_turns": 0.3,
    "has_tools": 0.4,
    "json_mode": 0.3,
}


class HeuristicScorer:
    """Structural fallback: sigmoid(-1.6 + 0.25 log(1+prompt tokens) + code/maths/turns/tools/JSON bumps).

    A short question scores about 0.27, a 500-token code task about 0.7;
    thresholds [0.35, 0.55] unless synqra.routing.thresholds is set.
    """

    name = "heuristic"
    needs_embedding = False
    max_chars = 512
    recommended_thresholds = [0.35, 0.55]
    creative_texts: tuple[str, ...] = ()
    creative_emb = None

    def score_one(self, features: dict[str, float]) -> float:
        z = _HEURISTIC_BASE + sum(w * features[n] for n, w in _HEURISTIC_WEIGHTS.items())
        return 1.0 / (1.0 + math.exp(-z))

    def score(self, emb: np.ndarray | None, feats: np.ndarray) -> np.ndarray:
        idx = {n: i for i, n in enumerate(FEATURE_NAMES)}
        return np.array([self.score_one({n: row[idx[n]] for n in _HEURISTIC_WEIGHTS}) for row in feats])
