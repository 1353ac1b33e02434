"""The text of a chat message's `content`, in the shapes the OpenAI and Anthropic APIs allow.

`content` is None, a string, or a list of typed parts (text, images, tool use and
results...). Readers differ in which parts count as text: the router reads tool calls
and results too, the local prompt format only text parts. They share this one walk and
pass their own part reader.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def join_parts(content: Any, part_text: Callable[[Any], str], other: Callable[[Any], str] = str) -> str:
    """None -> "", a string as is, a list -> its parts' texts (by `part_text`) joined by
    newlines with empty ones skipped; any other value is read by `other`."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(t for t in (part_text(p) for p in content) if t)
    return other(content)


def _text_part(part: Any) -> str:
    if isinstance(part, dict) and part.get("type") in ("text", "input_text"):
        return str(part.get("text", ""))
    return ""


def message_text(content: Any) -> str:
    """OpenAI content may be a string or a list of typed parts; keep the text parts only."""
    return join_parts(content, _text_part)
