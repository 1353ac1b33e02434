"""Scorers: P(local answer clearly worse than the strongest tier's), numpy only.

- `LearnedScorer`: one linear model, sigmoid(bias + standardised structural
  features . w_feat + embedding . w_emb + token term). The token term is a
  learned weight per WordPiece token of the text the embedding reads (summed
  over its distinct tokens, divided by the square root of their count): the
  static embedding is a mean of per-token vectors, and a weight per token can
  keep cues such a mean blurs. Trained (`train.py`) as ridge rankers of the
  strong-minus-weak quality gap, anchored on prompt length, then
  Platt-calibrated to the "clearly worse" label; all of it folds into these
  weights, so serving is two dot products and a table lookup. Loaded from the shipped `.npz`
  artifact (no pickle: `np.load(allow_pickle=False)`), validated against its
  manifest; the artifact names the embedder it was trained with, and vectors of
  another width are refused (the router then uses the fallback rule).
- `HeuristicScorer`: the documented fallback when the artifact is missing or
  corrupt, or the embedding server does not answer: a fixed rule on structural
  features only (length, code, maths, multi-turn depth, tools, JSON mode).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from policies.common.artifacts import load_vouched_arrays
from policies.routing.features import FEATURE_NAMES, fallback_cues

FORMAT_VERSION = 4
DEFAULT_ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "router_v1.npz"
_REQUIRED = (
    "w_emb",
    "w_feat",
    "bias",
    "feat_mean",
    "feat_std",
    "w_tok",
    "feature_names",
    "max_chars",
    "embedder",
    "format_version",
)


class ArtifactError(RuntimeError):
    """The router artifact cannot be used; the message says which file and why."""


def token_presence(ids: Sequence[int] | np.ndarray) -> tuple[np.ndarray, float]:
    """The distinct token ids of a text and the value each gets (1/sqrt(count)): what w_tok reads.

    Training builds its token matrix from this same function, so train and serve agree.
    """
    distinct = np.unique(np.asarray(ids, dtype=np.int64))
    return distinct, presence_value(len(distinct))


def presence_value(n_distinct: int) -> float:
    """The value each of a text's `n_distinct` distinct token ids gets in the token term."""
    return 1.0 / math.sqrt(n_distinct) if n_distinct else 0.0


def sigmoid(z: np.ndarray) -> np.ndarray:
    # np.clip(z, -30, 30) as two ufunc calls: the same values, without np.clip's Python-level wrapper.
    p: np.ndarray = 1.0 / (1.0 + np.exp(-np.minimum(np.maximum(z, -30), 30)))
    return p


@dataclass(frozen=True)
class LearnedScorer:
    w_emb: np.ndarray  # (d,) on the L2-normalised embedding
    w_feat: np.ndarray  # (k,) on standardised features
    bias: float
    feat_mean: np.ndarray
    feat_std: np.ndarray
    max_chars: int  # how much of the newest user turn the embedding reads (train = serve)
    embedder: str  # name of the embedding it was trained on (e.g. "minilm-static-v1")
    manifest: dict[str, Any]
    creative_texts: tuple[str, ...] = ()
    creative_emb: np.ndarray | None = None  # (m, d) embeddings of creative_texts
    w_tok: np.ndarray | None = None  # (vocab,) weight per token id of the embedder's tokenizer; None: no token term
    needs_embedding: Literal[True] = True  # the tag that tells the two scorers apart
    name: str = "learned"

    @property
    def recommended_thresholds(self) -> list[float] | None:
        t = self.manifest.get("recommended_thresholds")
        return [float(x) for x in t] if t else None

    @property
    def dims(self) -> int:
        return int(self.w_emb.shape[0])

    def token_term(self, token_ids: Sequence[Sequence[int]]) -> np.ndarray:
        """The token term of each text from its token ids (zeros when the artifact has no token weights)."""
        out = np.zeros(len(token_ids), dtype=np.float32)
        if self.w_tok is None:
            return out
        for i, ids in enumerate(token_ids):
            out[i] = self._presence_term(self.w_tok, *token_presence(ids))
        return out

    def distinct_token_term(self, distinct: np.ndarray) -> np.ndarray:
        """`token_term([ids])` of one text from its distinct ids (token_presence's first part, which a caller
        keeps), without sorting them again: (1,)."""
        out = np.zeros(1, dtype=np.float32)
        if self.w_tok is not None:
            out[0] = self._presence_term(self.w_tok, distinct, presence_value(len(distinct)))
        return out

    @staticmethod
    def _presence_term(w_tok: np.ndarray, distinct: np.ndarray, value: float) -> float:
        """value * the sum of w_tok over the sorted distinct ids it has a row for (np.add.reduce is what .sum()
        runs; the mask, needed only when the last id is past the table, is skipped otherwise: the same sum)."""
        if len(distinct) and distinct[-1] >= len(w_tok):
            distinct = distinct[distinct < len(w_tok)]
        return float(np.add.reduce(w_tok.take(distinct))) * value

    def logit(self, emb: np.ndarray, feats: np.ndarray, token_term: np.ndarray | None = None) -> np.ndarray:
        if emb.shape[-1] != self.dims:
            raise ValueError(
                f"embedding has {emb.shape[-1]} dimensions, the router was trained on {self.dims} ({self.embedder})"
            )
        if self.w_tok is not None and token_term is None:
            raise ValueError(f"the router reads token ids of the {self.embedder} tokenizer, none were given")
        z: np.ndarray = ((feats - self.feat_mean) / self.feat_std) @ self.w_feat + emb @ self.w_emb + self.bias
        return z if token_term is None else z + token_term

    def score(self, emb: np.ndarray, feats: np.ndarray, token_term: np.ndarray | None = None) -> np.ndarray:
        """emb (n, d) L2-normalised, feats (n, k) raw structural features, token_term (n,) from
        `token_term()` when the artifact has token weights -> (n,) probabilities."""
        return sigmoid(self.logit(emb.astype(np.float32, copy=False), feats, token_term))

    def save(self, path: Path) -> None:
        """Write the `.npz` (plain arrays only); the caller writes the manifest with its sha256."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as f:
            np.savez_compressed(
                f,
                format_version=np.array(FORMAT_VERSION),
                w_emb=self.w_emb.astype(np.float32),
                w_feat=self.w_feat.astype(np.float32),
                bias=np.array([self.bias], np.float32),
                feat_mean=self.feat_mean.astype(np.float32),
                feat_std=self.feat_std.astype(np.float32),
                feature_names=np.array(FEATURE_NAMES),
                max_chars=np.array(self.max_chars),
                embedder=np.array(self.embedder),
                creative_texts=np.array(self.creative_texts, dtype=str),
                creative_emb=(self.creative_emb if self.creative_emb is not None else np.zeros((0, self.dims))).astype(
                    np.float32
                ),
                w_tok=(self.w_tok if self.w_tok is not None else np.zeros(0)).astype(np.float32),
            )


def load_artifact(path: Path = DEFAULT_ARTIFACT) -> LearnedScorer:
    """Load and validate the artifact against its manifest; raise ArtifactError saying what is wrong."""
    path = Path(path)
    arrays, manifest = load_vouched_arrays(
        path,
        what="router artifact",
        manifest_what="router manifest",
        how_to_build="run `synqra train-router` to build it",
        error=ArtifactError,
    )
    if "format_version" in arrays and int(arrays["format_version"]) != FORMAT_VERSION:
        raise ArtifactError(f"router artifact {path} has format {int(arrays['format_version'])}, need {FORMAT_VERSION}")
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise ArtifactError(f"router artifact {path} lacks arrays {missing}")
    names = tuple(str(n) for n in arrays["feature_names"])
    if names != FEATURE_NAMES:
        raise ArtifactError(f"router artifact {path} was trained on other structural features; retrain it")
    embedder = str(arrays["embedder"])
    if manifest.get("embedder") not in (None, embedder):
        raise ArtifactError(
            f"router artifact {path} names embedder {embedder!r}, its manifest {manifest['embedder']!r}"
        )
    k = len(FEATURE_NAMES)
    d = arrays["w_emb"].shape[0] if arrays["w_emb"].ndim == 1 else 0
    per_feature = all(arrays[x].shape == (k,) for x in ("w_feat", "feat_mean", "feat_std"))
    shapes_ok = d > 0 and per_feature and arrays["bias"].shape == (1,) and arrays["w_tok"].ndim == 1
    numeric = ("w_emb", "w_feat", "bias", "feat_mean", "feat_std", "w_tok")
    if not shapes_ok or not all(np.isfinite(arrays[a]).all() for a in numeric) or (arrays["feat_std"] <= 0).any():
        raise ArtifactError(f"router artifact {path} has inconsistent or non-finite weights")
    creative_emb = arrays.get("creative_emb")
    creative_texts = tuple(str(t) for t in arrays.get("creative_texts", np.array([], dtype=str)))
    if creative_emb is not None and creative_emb.shape != (len(creative_texts), d):
        creative_emb, creative_texts = None, ()
    return LearnedScorer(
        w_emb=arrays["w_emb"].astype(np.float32),
        w_feat=arrays["w_feat"].astype(np.float32),
        bias=float(arrays["bias"][0]),
        feat_mean=arrays["feat_mean"].astype(np.float32),
        feat_std=arrays["feat_std"].astype(np.float32),
        max_chars=int(arrays["max_chars"]),
        embedder=embedder,
        manifest=manifest,
        creative_texts=creative_texts,
        creative_emb=creative_emb,
        w_tok=arrays["w_tok"].astype(np.float32) if arrays["w_tok"].size else None,
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
    thresholds [0.35, 0.55] unless synqra.routing.thresholds is set. Reads the router's structural
    features and, of the newest user turn, the code and maths cues of features.fallback_cues (computed
    here, when this rule scores: the trained router does not read them).
    """

    name = "heuristic"
    needs_embedding: Literal[False] = False
    max_chars = 512
    recommended_thresholds = [0.35, 0.55]
    creative_texts: tuple[str, ...] = ()
    creative_emb = None

    def score_one(self, features: Mapping[str, float | np.float32]) -> float:
        z = _HEURISTIC_BASE + sum(w * features[n] for n, w in _HEURISTIC_WEIGHTS.items())
        return 1.0 / (1.0 + math.exp(-z))

    def score_request(self, features: Mapping[str, float], text: str) -> float:
        """The rule's score of a request from its structural_features and its newest user turn. The figures are
        read as the router's float32 feature vector holds them (so the sums are float32 too, as they always were)."""
        cues = {**features, **fallback_cues(text)}
        return self.score_one({n: np.float32(cues[n]) for n in _HEURISTIC_WEIGHTS})
