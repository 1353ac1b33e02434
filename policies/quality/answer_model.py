"""The learned answer model: P(answer deserves delivery) from the question and the answer. numpy only.

    model = load_answer_model()                        # shipped artifact, sha256-checked against its manifest
    p = model.probability(features, q_emb, a_emb)      # answer_features.feature_row + static embeddings

One logistic model, z = bias + standardised features . w_feat + q_emb . w_q + a_emb . w_a, then a
monotone calibration z -> probability (knots `calib_z` -> `calib_p`, fitted out of fold, so 0.8 means
that about 8 in 10 answers scored there were judged good on held-out prompts). Trained by
`synqra train-quality-scorer` (policies/quality/train.py), which writes the `.npz` (plain arrays, loaded
with allow_pickle=False) and its manifest (data hashes, code hash, label rule, cross-validated figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from policies.common.artifacts import load_vouched_arrays
from policies.quality.answer_features import EMB_DIMS, FEATURE_NAMES

FORMAT_VERSION = 1
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "answer_v1.npz"
_ARRAYS = (
    "format_version",
    "feature_names",
    "embedder",
    "w_feat",
    "feat_mean",
    "feat_std",
    "w_q",
    "w_a",
    "bias",
    "calib_z",
    "calib_p",
)


class AnswerModelError(RuntimeError):
    """The answer model artifact cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class AnswerModel:
    w_feat: np.ndarray  # (k,) on standardised features
    feat_mean: np.ndarray
    feat_std: np.ndarray
    w_q: np.ndarray  # (d,) on the question's static embedding
    w_a: np.ndarray  # (d,) on the answer's
    bias: float
    calib_z: np.ndarray  # increasing logits ...
    calib_p: np.ndarray  # ... and the calibrated probability at each (non-decreasing)
    embedder: str
    manifest: dict[str, Any]

    def logit(self, feats: np.ndarray, q_emb: np.ndarray, a_emb: np.ndarray) -> np.ndarray:
        """feats (n, k) raw features, q_emb / a_emb (n, d) L2-normalised -> (n,) uncalibrated logits."""
        x = (np.atleast_2d(feats) - self.feat_mean) / self.feat_std
        z: np.ndarray = x @ self.w_feat + np.atleast_2d(q_emb) @ self.w_q + np.atleast_2d(a_emb) @ self.w_a + self.bias
        return z

    def calibrate(self, z: np.ndarray) -> np.ndarray:
        p: np.ndarray = np.interp(z, self.calib_z, self.calib_p)
        return p

    def probabilities(self, feats: np.ndarray, q_emb: np.ndarray, a_emb: np.ndarray) -> np.ndarray:
        return self.calibrate(self.logit(feats, q_emb, a_emb))

    def probability(self, feats: np.ndarray, q_emb: np.ndarray, a_emb: np.ndarray) -> float:
        return float(self.probabilities(feats, q_emb, a_emb)[0])

    def save(self, path: Path) -> None:
        """Write the `.npz` (plain arrays only); the trainer writes the manifest with its sha256."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                format_version=np.array(FORMAT_VERSION),
                feature_names=np.array(FEATURE_NAMES),
                embedder=np.array(self.embedder),
                w_feat=self.w_feat.astype(np.float64),
                feat_mean=self.feat_mean.astype(np.float64),
                feat_std=self.feat_std.astype(np.float64),
                w_q=self.w_q.astype(np.float64),
                w_a=self.w_a.astype(np.float64),
                bias=np.array([self.bias]),
                calib_z=self.calib_z.astype(np.float64),
                calib_p=self.calib_p.astype(np.float64),
            )


def load_answer_model(path: Path | str = DEFAULT_ARTIFACT) -> AnswerModel:
    """Load and validate the artifact against its manifest; AnswerModelError says what is wrong."""
    path = Path(path)
    arrays, manifest = load_vouched_arrays(
        path,
        what="answer model",
        manifest_what="answer model manifest",
        how_to_build="run `synqra train-quality-scorer`",
        error=AnswerModelError,
    )
    missing = [k for k in _ARRAYS if k not in arrays]
    if missing:
        raise AnswerModelError(f"answer model {path} lacks arrays {missing}")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise AnswerModelError(f"answer model {path} has format {int(arrays['format_version'])}, need {FORMAT_VERSION}")
    if tuple(str(n) for n in arrays["feature_names"]) != FEATURE_NAMES:
        raise AnswerModelError(f"answer model {path} was trained on other features; retrain it")
    k = len(FEATURE_NAMES)
    numeric = ("w_feat", "feat_mean", "feat_std", "w_q", "w_a", "bias", "calib_z", "calib_p")
    shapes_ok = (
        all(arrays[a].shape == (k,) for a in ("w_feat", "feat_mean", "feat_std"))
        and arrays["w_q"].shape == arrays["w_a"].shape == (EMB_DIMS,)
        and arrays["bias"].shape == (1,)
        and arrays["calib_z"].ndim == 1
        and arrays["calib_z"].shape == arrays["calib_p"].shape
        and len(arrays["calib_z"]) >= 2
    )
    if not shapes_ok or not all(np.isfinite(arrays[a]).all() for a in numeric) or (arrays["feat_std"] <= 0).any():
        raise AnswerModelError(f"answer model {path} has inconsistent or non-finite weights")
    cz, cp = arrays["calib_z"], arrays["calib_p"]
    if (np.diff(cz) <= 0).any() or (np.diff(cp) < 0).any() or cp.min() < 0 or cp.max() > 1:
        raise AnswerModelError(f"answer model {path} has a calibration that is not monotone in [0, 1]")
    return AnswerModel(
        w_feat=arrays["w_feat"],
        feat_mean=arrays["feat_mean"],
        feat_std=arrays["feat_std"],
        w_q=arrays["w_q"],
        w_a=arrays["w_a"],
        bias=float(arrays["bias"][0]),
        calib_z=cz,
        calib_p=cp,
        embedder=str(arrays["embedder"]),
        manifest=manifest,
    )
