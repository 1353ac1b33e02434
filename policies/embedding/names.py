"""The embedders a router artifact can be trained with, by the name the artifact records.

Train and serve must embed alike: the artifact stores the embedder's name, and
`embedder_for(name)` builds the matching in-process embedder for batch tools
(`synqra route-score`, training, benchmarks).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from policies.embedding.base import Embedder, HttpEmbedder, InProcessEmbedder
from policies.embedding.static import NAME

STATIC = NAME  # the distilled token table: numpy-only, ~1 ms; the name changes with its recipe
MINILM = "all-MiniLM-L6-v2"  # the full transformer (sentence-transformers / the embedding server)

_KINDS = {STATIC: "static", MINILM: "minilm"}  # artifact name -> make_embedder kind


def embedder_for(name: str) -> Embedder:
    """An in-process embedder producing the vectors an artifact trained on `name` expects."""
    try:
        kind = _KINDS[name]
    except KeyError:
        raise ValueError(f"unknown embedder {name!r}; known: {sorted(_KINDS)}") from None
    return make_embedder(kind)


def token_source(embedder: object) -> tuple[Callable[[list[str]], list[list[int]]] | None, int]:
    """(token ids of texts, vocabulary size) of an embedder that exposes its tokenizer (the static
    table: one row per token id), else (None, 0): the router's token term needs them."""
    token_ids = getattr(embedder, "token_ids", None)
    table = getattr(embedder, "table", None)
    if callable(token_ids) and isinstance(table, np.ndarray):
        return token_ids, int(table.shape[0])
    return None, 0


def embedder_name(embedder: object) -> str | None:
    """The name of the embedding an embedder object produces, when known.

    StaticEmbedder declares its name; the HTTP client and the in-process
    sentence-transformers embedder both give full MiniLM vectors.
    """
    name = getattr(embedder, "name", None)
    if isinstance(name, str):
        return name
    return MINILM if isinstance(embedder, (HttpEmbedder, InProcessEmbedder)) else None


def make_embedder(
    kind: str, server_url: str | None = None, model_path: str | None = None, n_threads: int | None = None
) -> Embedder:
    """ "static": the distilled token table; "minilm": the full model, through the embedding server
    when `server_url` is given (the proxy), else in-process (offline tools: the same vectors)."""
    if kind == "static":
        from policies.embedding.static import StaticEmbedder

        return StaticEmbedder.default()
    if kind != "minilm":
        raise ValueError(f"unknown embedder {kind!r} (use 'static' or 'minilm')")
    return HttpEmbedder(server_url) if server_url else InProcessEmbedder(model_path, n_threads)
