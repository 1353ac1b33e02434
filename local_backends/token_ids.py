"""Embedding inputs sent as token ids, read back into text (OpenAI's convention: cl100k_base tokens).

OpenAI's embeddings API accepts token arrays, and LangChain's OpenAIEmbeddings sends them by default (it
splits long texts with tiktoken's cl100k_base). A local sentence-transformers model has its own tokenizer,
so the ids are decoded to text and embedded as text. tiktoken's encoding file is the copy LiteLLM ships
(no download: these machines are offline).
"""

from __future__ import annotations

import importlib.util
import os
from functools import cache
from pathlib import Path
from typing import Any


@cache
def _encoding() -> Any:
    import tiktoken

    spec = importlib.util.find_spec("litellm")
    if spec is not None and spec.submodule_search_locations and "TIKTOKEN_CACHE_DIR" not in os.environ:
        os.environ["TIKTOKEN_CACHE_DIR"] = str(
            Path(spec.submodule_search_locations[0]) / "litellm_core_utils" / "tokenizers"
        )
    return tiktoken.get_encoding("cl100k_base")


def decode(ids: list[int]) -> str:
    """The text of cl100k_base token ids; raises ValueError for ids outside the vocabulary."""
    try:
        return str(_encoding().decode(ids))
    except Exception as e:  # tiktoken raises KeyError / pyo3 panics for unknown ids
        raise ValueError(f"token ids outside the cl100k_base vocabulary: {e}") from e
