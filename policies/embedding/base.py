"""Sentence embeddings for the policies (routing features, answer relevance).

Two ways to get the same vectors from the same model:
- `HttpEmbedder`: asks the local embedding server (the running proxy uses this,
  so the proxy process does not load torch);
- `InProcessEmbedder`: loads sentence-transformers itself (offline batch tools
  such as `synqra route-score` and the benchmarks, where throughput matters).
Vectors are L2-normalised float32 rows.
"""

from __future__ import annotations

import base64
from typing import Any, Protocol

import httpx
import numpy as np
import numpy.typing as npt

# Where answer-vs-question cosines turn from off topic to on topic, per embedding space (measured
# on local answers against shuffled pairs: full MiniLM's shuffled median 0.07, on-topic median 0.38;
# the static table's 0.18 and 0.43). Used by the quality scorer's relevance signal.
RELEVANCE_BANDS: dict[str, tuple[float, float]] = {"minilm": (0.05, 0.35), "static": (0.15, 0.40)}


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def _normalise(v: np.ndarray) -> npt.NDArray[np.float32]:
    n = np.linalg.norm(v, axis=1, keepdims=True)
    out: npt.NDArray[np.float32] = (v / np.maximum(n, 1e-12)).astype(np.float32)
    return out


class InProcessEmbedder:
    relevance_band = RELEVANCE_BANDS["minilm"]

    def __init__(self, model_path: str | None = None, n_threads: int | None = None, batch_size: int = 64) -> None:
        import os

        from policies.embedding.encoder import Encoder

        self.encoder = Encoder(model_path, n_threads or os.cpu_count() or 1)
        self.batch_size = batch_size

    def embed(self, texts: list[str]) -> np.ndarray:
        out = [self.encoder.encode(texts[i : i + self.batch_size])[0] for i in range(0, len(texts), self.batch_size)]
        return _normalise(np.concatenate(out)) if out else np.zeros((0, 0), np.float32)


class HttpEmbedder:
    """Client of our embedding server (base64 transport: 4x smaller than JSON floats)."""

    relevance_band = RELEVANCE_BANDS["minilm"]

    def __init__(self, base_url: str, model: str = "local-embed", timeout_s: float = 10.0) -> None:
        self.url = base_url.rstrip("/") + "/v1/embeddings"
        self.model = model
        self._client = httpx.Client(timeout=timeout_s)
        self._aclient = httpx.AsyncClient(timeout=timeout_s)

    def _payload(self, texts: list[str]) -> dict[str, object]:
        return {"model": self.model, "input": texts, "encoding_format": "base64"}

    @staticmethod
    def _decode(body: dict[str, Any]) -> np.ndarray:
        rows = sorted(body["data"], key=lambda d: d["index"])
        return _normalise(np.stack([np.frombuffer(base64.b64decode(r["embedding"]), dtype=np.float32) for r in rows]))

    def embed(self, texts: list[str]) -> np.ndarray:
        r = self._client.post(self.url, json=self._payload(texts))
        r.raise_for_status()
        return self._decode(r.json())

    async def aembed(self, texts: list[str]) -> np.ndarray:
        r = await self._aclient.post(self.url, json=self._payload(texts))
        r.raise_for_status()
        return self._decode(r.json())
