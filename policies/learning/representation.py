"""What a logged request keeps for training: the router's own representation of it.

The numbers come from the router's functions (features.request_text / structural_features /
embed_text, the artifact's embedder and its tokenizer), so a change there flows into what is
logged and learnt. A `key` names what the numbers mean (embedder, embedded length, feature
names): rows logged under another key cannot be read by the current router, only re-represented
from their text when `keep_text` kept it.

Stored compactly: features float32, embedding float16 (half the bytes; scores move by ~1e-4),
token ids as the distinct ids of the embedded text (all the token term reads, scorer.token_presence),
uint16 when the vocabulary fits.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

import numpy as np
import scipy.sparse as sp

from policies.embedding.names import token_source
from policies.routing.features import FEATURE_NAMES, embed_text, feature_vector, request_text, structural_features
from policies.routing.scorer import LearnedScorer, token_presence

# The request fields the router's features read (features.py); a logged snapshot keeps only these.
REQUEST_KEYS = (
    "messages",
    "system",
    "tools",
    "functions",
    "response_format",
    "max_tokens",
    "max_completion_tokens",
    "max_output_tokens",
)


def representation_key(scorer: LearnedScorer) -> str:
    """Names what a row's numbers mean for this scorer: rows of another key are not comparable."""
    names = hashlib.sha256("\n".join(FEATURE_NAMES).encode()).hexdigest()[:8]
    return f"{scorer.embedder}|{scorer.max_chars}|{names}"


def snapshot(request: Mapping[str, Any]) -> dict[str, Any]:
    """The fields the features read, messages list copied: cheap (no deep copy), and later edits of
    the request's top level or message list (the gate's rephrase) do not reach the log."""
    out = {k: request[k] for k in REQUEST_KEYS if k in request}
    if isinstance(out.get("messages"), list):
        out["messages"] = list(out["messages"])
    return out


@dataclass
class Representation:
    feats: np.ndarray  # (n, k) raw structural features, FEATURE_NAMES order
    emb: np.ndarray  # (n, d) the embedder's vectors of embed_text(...)
    tokens: list[np.ndarray]  # distinct token ids of each embedded text (empty without a tokenizer)
    key: str

    def __len__(self) -> int:
        return len(self.feats)

    def token_matrix(self, vocab: int) -> sp.csr_matrix:
        """(n, vocab) rows of scorer.token_presence: X @ w_tok is the scorer's token term."""
        indptr, cols, vals = [0], [], []
        for ids in self.tokens:
            distinct, value = token_presence(ids)
            distinct = distinct[distinct < vocab]
            cols.append(distinct)
            vals.append(np.full(len(distinct), value))
            indptr.append(indptr[-1] + len(distinct))
        data = np.concatenate(vals) if vals else np.zeros(0)
        idx = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        return sp.csr_matrix((data, idx, np.array(indptr)), shape=(len(self.tokens), vocab))

    def subset(self, idx: np.ndarray | Sequence[int]) -> Representation:
        idx = np.asarray(idx, dtype=np.int64)
        return Representation(self.feats[idx], self.emb[idx], [self.tokens[i] for i in idx], self.key)

    @staticmethod
    def concat(parts: Sequence[Representation]) -> Representation:
        keys = {p.key for p in parts}
        if len(keys) != 1:
            raise ValueError(f"cannot join representations of different keys {sorted(keys)}")
        return Representation(
            np.concatenate([p.feats for p in parts]),
            np.concatenate([p.emb for p in parts]),
            [t for p in parts for t in p.tokens],
            keys.pop(),
        )


def _complete(features: Mapping[str, float] | None) -> TypeGuard[Mapping[str, float]]:
    """The router's feature dict has every feature (the structural fallback's has them too)."""
    return isinstance(features, Mapping) and all(n in features for n in FEATURE_NAMES)


class Representer:
    """Computes Representations with a scorer's settings and its embedder (thread-safe when the
    embedder is: the static embedder locks its tokenizer)."""

    def __init__(self, scorer: LearnedScorer, embedder: Any) -> None:
        self.max_chars = scorer.max_chars
        self.key = representation_key(scorer)
        self.embedder = embedder
        self.tokenize, self.vocab = token_source(embedder)

    def represent(
        self, requests: Sequence[Mapping[str, Any]], features: Sequence[Mapping[str, float] | None] | None = None
    ) -> Representation:
        """Raises ValueError on a malformed request. `features`: the router's own feature dicts
        (RouteDecision.features), reused instead of recomputed where given."""
        rts = [request_text(dict(r)) for r in requests]
        given = list(features) if features is not None else [None] * len(requests)
        feats = [
            feature_vector(f) if _complete(f) else feature_vector(structural_features(dict(r), rt))
            for r, rt, f in zip(requests, rts, given)
        ]
        texts = [embed_text(rt, self.max_chars) for rt in rts]
        emb = np.asarray(self.embedder.embed(texts), dtype=np.float32) if texts else np.zeros((0, 0), np.float32)
        ids = self.tokenize(texts) if self.tokenize is not None and texts else [[] for _ in texts]
        tokens = [np.unique(np.asarray(t, dtype=np.int64)) for t in ids]
        k = len(FEATURE_NAMES)
        return Representation(np.stack(feats) if feats else np.zeros((0, k), np.float32), emb, tokens, self.key)

    def from_decision(
        self, features: Mapping[str, float] | None, embedded: Any
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """One routed request's (features, embedding, distinct token ids) from what its decision computed
        (RouteDecision.features and .embedded): what `represent` gives for the request, without embedding
        and tokenising its text again. None when the decision lacks a part, or cut its text at another
        length than this representation reads (a version installed meanwhile): represent the request then."""
        if embedded is None or embedded.max_chars != self.max_chars or not _complete(features):
            return None
        tokens = embedded.token_ids
        if self.tokenize is None:
            tokens = np.zeros(0, np.int64)  # what `represent` keeps without a tokenizer
        elif tokens is None:  # the scorer read no token ids: not known here
            return None
        return feature_vector(features), np.asarray(embedded.vector, dtype=np.float32), tokens


# --- compact bytes for the store ---------------------------------------------------------------


def encode_row(feats: np.ndarray, emb: np.ndarray, tokens: np.ndarray) -> tuple[bytes, bytes, bytes, int]:
    """(features, embedding, token ids, bytes per token id) of one row."""
    width = 2 if (len(tokens) == 0 or int(tokens.max()) < 65536) else 4
    tok = tokens.astype(np.uint16 if width == 2 else np.int32)
    return feats.astype(np.float32).tobytes(), emb.astype(np.float16).tobytes(), tok.tobytes(), width


def decode_tokens(raw: bytes, width: int) -> np.ndarray:
    return np.frombuffer(raw, dtype=np.uint16 if width == 2 else np.int32).astype(np.int64)
