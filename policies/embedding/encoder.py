"""all-MiniLM-L6-v2 (or the configured sentence-transformers model) in this process: vectors and token counts.

The embedding server runs it for the proxy (which never loads torch); offline tools (training, benchmarks)
load it directly through `base.InProcessEmbedder`.
"""

from __future__ import annotations

import numpy as np

from policies.common.model_files import resolve_embedding_model


class Encoder:
    """sentence-transformers model; `encode` returns vectors and token counts."""

    def __init__(self, model_path: str | None, n_threads: int) -> None:
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(n_threads)
        self.path = resolve_embedding_model(model_path)
        self.model = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        self.model.eval()
        self.dim = int(self.model.get_embedding_dimension() or 0)
        self._torch = torch

    def encode(self, texts: list[str]) -> tuple[np.ndarray, list[int]]:
        features = self.model.preprocess(texts)
        counts = features["attention_mask"].sum(dim=1).tolist()
        with self._torch.inference_mode():
            out = self.model.forward(features)["sentence_embedding"]
        return out.float().numpy(), [int(c) for c in counts]
