"""Token log-probabilities from llama-cpp-python without `logits_all=True`.

llama-cpp-python only returns `logprobs` for a model built with logits_all=True,
which keeps a logits row for every prompt and answer position (n_ctx x vocab
floats: 2 GB for Gemma's 262k vocabulary at n_ctx 2048) and computes the output
layer for every prompt token. This logits processor records the log-probability
of each sampled token instead, from the one logits row llama.cpp computes anyway:

    rec = TokenLogprobRecorder()
    out = llm.create_completion(prompt, logits_processor=LogitsProcessorList([rec]), ...)
    logprobs = rec.finish(llm.input_ids[: llm.n_tokens])

The processor sees raw logits before penalties and temperature, so the values
are the model's own confidence. numpy only (no llama import here).
"""

from __future__ import annotations

import numpy as np


class TokenLogprobRecorder:
    """Called once per sampled token with (input_ids so far, logits of the next token).

    `top_k` > 0 also keeps the k most likely tokens of each step (OpenAI's `top_logprobs`) in `top`:
    one list of (token id, logprob) per recorded token, most likely first.
    """

    def __init__(self, top_k: int = 0) -> None:
        self.logprobs: list[float] = []
        self.top: list[list[tuple[int, float]]] = []
        self.top_k = top_k
        self._pending: tuple[np.ndarray, float] | None = None
        self._n_seen = -1

    def _resolve(self, token_id: int) -> None:
        if self._pending is not None:
            logits, lse = self._pending
            self.logprobs.append(float(logits[token_id] - lse))
            if self.top_k > 0:
                k = min(self.top_k, len(logits))
                ids = np.argpartition(logits, -k)[-k:]
                ids = ids[np.argsort(-logits[ids])]
                self.top.append([(int(i), float(logits[i] - lse)) for i in ids])
            self._pending = None

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        # The token sampled at the previous step is now the last input id.
        if self._pending is not None and len(input_ids) > self._n_seen:
            self._resolve(int(input_ids[-1]))
        m = float(np.max(logits))
        lse = m + float(np.log(np.sum(np.exp(logits - m, dtype=np.float64))))
        self._pending = (np.array(logits, copy=True), lse)
        self._n_seen = len(input_ids)
        return logits

    def finish(self, input_ids: np.ndarray) -> list[float]:
        """Resolve the last sampled token (if it was fed back) and return all logprobs."""
        if self._pending is not None and len(input_ids) > self._n_seen:
            self._resolve(int(input_ids[-1]))
        self._pending = None
        return self.logprobs
