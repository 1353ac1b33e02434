"""Per-request synqra state, carried inside LiteLLM's request dict.

LiteLLM hands the same `data` dict to the pre-call, post-call and header hooks;
a `synqra` entry under its metadata carries our decisions from one to the next
(and on into the logging payload).
"""
from __future__ import annotations

import uuid
from typing import Any

STATE_KEY = "synqra"


def _metadata(data: dict[str, Any]) -> dict[str, Any]:
    # /v1/chat/completions uses "metadata"; LiteLLM's /v1/messages path uses "litellm_metadata".
    for key in ("litellm_metadata", "metadata"):
        md = data.get(key)
        if isinstance(md, dict) and STATE_KEY in md:
            return md
    md = data.get("metadata")
    if not isinstance(md, dict):
        md = data.setdefault("litellm_metadata", {}) if "litellm_metadata" in data else data.setdefault("metadata", {})
    return md


def request_state(data: dict[str, Any]) -> dict[str, Any]:
    """The synqra state of this request, created on first use with a request id."""
    md = _metadata(data)
    state = md.get(STATE_KEY)
    if not isinstance(state, dict):
        state = {"request_id": "synqra-" + uuid.uuid4().hex}
        md[STATE_KEY] = state
    return state
