"""Which agent or app a request's spend is booked to: its tag.

The `x-synqra-tag` header wins; else the first of LiteLLM's request tags (`metadata.tags`, which LiteLLM also
fills from its own `x-litellm-tags` header, a top-level `tags` field and the key's tags); else none. The ledger
keeps the tag, `GET /api/budget/status?by=tag` breaks the month down by it, and `synqra.budget.tags` may cap it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from policies.common.budget_settings import tag_problem

TAG_HEADER = "x-synqra-tag"
# Where LiteLLM keeps a request's metadata: `litellm_metadata` on /v1/messages and /v1/responses (whose
# `metadata` is the client's field for the provider; LiteLLM merges its `tags` into litellm_metadata), else `metadata`.
_BUCKETS = ("litellm_metadata", "metadata")


class BadTag(ValueError):
    """The request's tag cannot be used; the message names where it came from."""


def _header(headers: Mapping[str, Any], name: str) -> Any:
    for key, value in headers.items():
        if str(key).lower() == name:
            return value
    return None


def _checked(value: Any, source: str) -> str | None:
    if not isinstance(value, str):
        raise BadTag(f"{source} must be a string, got {type(value).__name__}")
    tag = value.strip()
    if not tag:
        return None
    problem = tag_problem(tag)
    if problem:
        raise BadTag(f"{source}: {problem}")
    return tag


def request_tag(data: Mapping[str, Any]) -> str | None:
    """The tag of a request as LiteLLM's proxy hands it to the pre-call hook (`data`), or None.
    Raises BadTag for a tag that cannot be booked (too long, control characters, not text)."""
    request = data.get("proxy_server_request")
    headers = request.get("headers") if isinstance(request, Mapping) else None
    if isinstance(headers, Mapping):
        value = _header(headers, TAG_HEADER)
        tag = None if value is None else _checked(value, f"the {TAG_HEADER} header")
        if tag is not None:
            return tag
    for bucket in _BUCKETS:
        md = data.get(bucket)
        tags = md.get("tags") if isinstance(md, Mapping) else None
        if isinstance(tags, list) and tags:
            return _checked(tags[0], "metadata.tags[0]")
    return None
