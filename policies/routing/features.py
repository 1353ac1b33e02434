"""Structural features of an OpenAI- or Anthropic-style request: pure functions, no I/O.

Accepts both shapes the proxy sees (`/v1/chat/completions` and `/v1/messages`):
message `content` as a string or as a list of parts (`text`, `image_url`,
`image`, `input_image`, `tool_use`, `tool_result`), the system prompt as a
`system` message or a top-level `system` field.

The router embeds only `embed_text()` (the newest user turn, truncated): the
system prompt is a per-session constant that says little about how hard this
request is, and embedding cost grows with length. Everything else is summarised
here in a fixed vector of cheap numbers.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from math import log1p
from typing import Any

import numpy as np

from policies.common.message_content import join_parts
from policies.routing.complexity import complexity_of, word_tokens

# Order is part of the artifact format: the trained weights line up with it.
FEATURE_NAMES: tuple[str, ...] = (
    "log_chars_last_user",
    "log_words_last_user",
    "log_prompt_tokens",
    "log_user_turns",
    "has_assistant_turns",
    "has_system",
    "log_system_chars",
    "code_fence",
    "log_lines",
    "has_tools",
    "log_tools",
    "has_tool_messages",
    "json_mode",
    "has_max_tokens",
    "log_max_tokens",
    "has_images",
    "log_images",
    "litellm_complexity",
)

# The structural fallback rule's cues (fallback_cues), not router features.
# A line of code: r"^\s*(def |class |...|<\/?\w+>)|;\s*$|=>|\)\s*\{", tested one alternative at a time, each
# only where its literal part occurs (one regex tries the unanchored alternatives at every character).
_CODE_LINE_START = re.compile(
    r"\s*(def |class |import |from \S+ import|#include|function |const |let |var |public |private |return\b|for \(|"
    r"if \(|while \(|SELECT |\}|\{$|<\/?\w+>)"
)
_SEMICOLON_END = re.compile(r";\s*$")
_PAREN_BRACE = re.compile(r"\)\s*\{")
# A whitespace-separated word of an ASCII text starts where _SPACES's translate writes " x" (or "x" at 0).
_SPACES = str.maketrans({c: " " if c.isspace() else "x" for c in map(chr, range(128))})


def _word_count(text: str) -> int:
    """len(text.split()) without building the list of words: on ASCII text one translate and one str.count
    (str.split() and str.isspace() agree on what an ASCII space is)."""
    if not text.isascii():  # str.split() also splits at other scripts' spaces
        return len(text.split())
    classes = text.translate(_SPACES)
    return classes.count(" x") + classes.startswith("x")


# Maths words: what r"\b(solve|...|how many|how much|...)\b" finds in the lower-cased text. A one-word keyword
# matches exactly where it is a whole \w+ token, so they are counted among the text's word_tokens; the two
# phrases (no keyword is part of one) by their own regex.
_MATH_WORDS = frozenset(
    "solve equation integral derivative probability prove theorem matrix sum product percent ratio "
    "calculate compute average total function polynomial root factor".split()
)
_MATH_PHRASES = re.compile(r"\bhow (?:many|much)\b")
_LATEX = re.compile(r"\\(frac|sqrt|sum|int|cdot|alpha|beta|theta|pi)\b|\$[^$\n]+\$")
_IMAGE_PART_TYPES = {"image_url", "image", "input_image"}


@dataclass(frozen=True)
class RequestText:
    """The texts of a request the router looks at."""

    last_user: str
    system: str
    all_text: str
    user_turns: int
    assistant_turns: int
    images: int
    tool_messages: int


def _part_text(part: Any) -> str:
    if isinstance(part, str):
        return part
    if not isinstance(part, dict):
        return ""
    if isinstance(text := part.get("text"), str):
        return text
    if part.get("type") == "tool_result":
        return content_text(part.get("content"))
    if part.get("type") == "tool_use":
        return str(part.get("input") or "")
    return ""


def content_text(content: Any) -> str:
    """Text of a message `content` (string, list of parts, or None), tool calls and results included."""
    return join_parts(content, _part_text, _part_text)


def _count_images(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") in _IMAGE_PART_TYPES)


def _count_tool_parts(content: Any) -> int:
    if not isinstance(content, list):
        return 0
    return sum(1 for p in content if isinstance(p, dict) and p.get("type") in ("tool_use", "tool_result"))


def request_text(request: dict[str, Any]) -> RequestText:
    """Split a request into the parts the features and the embedding use."""
    messages = request.get("messages") or []
    if not isinstance(messages, list):
        raise ValueError("'messages' must be a list")
    system_parts = [content_text(request.get("system"))] if request.get("system") else []
    last_user, texts = "", []
    user_turns = assistant_turns = images = tool_messages = 0
    for m in messages:
        if not isinstance(m, dict):
            raise ValueError("each message must be an object with 'role' and 'content'")
        role, content = m.get("role"), m.get("content")
        text = content_text(content)
        images += _count_images(content)
        tool_messages += _count_tool_parts(content) + (1 if role in ("tool", "function") or m.get("tool_calls") else 0)
        if role in ("system", "developer"):
            system_parts.append(text)
            continue
        texts.append(text)
        if role == "user":
            user_turns += 1
            if text:
                last_user = text
        elif role == "assistant":
            assistant_turns += 1
    system = "\n".join(p for p in system_parts if p)
    return RequestText(
        last_user=last_user,
        system=system,
        all_text="\n".join([system, *texts]) if system else "\n".join(texts),
        user_turns=user_turns,
        assistant_turns=assistant_turns,
        images=images,
        tool_messages=tool_messages,
    )


def estimate_tokens(text: str) -> int:
    """Cheap, deliberately generous token estimate (about 3.5 characters a token in English).

    Used for context-window checks, where over-estimating only skips a tier that
    might have fitted, while under-estimating sends a request that fails.
    """
    return math.ceil(len(text) / 3.5)


def estimate_prompt_tokens(request: dict[str, Any], rt: RequestText | None = None) -> int:
    rt = rt or request_text(request)
    n_messages = len(request.get("messages") or [])
    # Images: providers bill roughly a thousand tokens or more for a typical picture.
    return estimate_tokens(rt.all_text) + 4 * n_messages + 1000 * rt.images


def requested_max_tokens(request: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens", "max_output_tokens"):
        v = request.get(key)
        if isinstance(v, int) and not isinstance(v, bool) and v > 0:
            return v
    return None


def has_tools(request: dict[str, Any]) -> int:
    """Number of tools (or legacy functions) the caller offers the model."""
    tools = request.get("tools") or request.get("functions") or []
    return len(tools) if isinstance(tools, list) else 0


def json_mode(request: dict[str, Any]) -> bool:
    rf = request.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def _is_code_line(line: str) -> bool:
    return bool(
        _CODE_LINE_START.match(line)
        or (";" in line and _SEMICOLON_END.search(line))
        or "=>" in line
        or (")" in line and _PAREN_BRACE.search(line))
    )


def _math_words(lowered: str, words: list[str], distinct: set[str]) -> int:
    """Occurrences of the maths words among `words` (`distinct` is their set), plus the two phrases."""
    n = sum(map(words.count, _MATH_WORDS & distinct))  # the few maths words present, each counted in C
    return n + len(_MATH_PHRASES.findall(lowered)) if "how " in lowered else n


def _has_latex(text: str) -> bool:
    return ("\\" in text or "$" in text) and _LATEX.search(text) is not None


def structural_features(request: dict[str, Any], rt: RequestText | None = None) -> dict[str, float]:
    """Named structural features (see FEATURE_NAMES); raises ValueError on a malformed request."""
    rt = rt or request_text(request)
    text = rt.last_user
    lowered = text.lower()
    n_tools = has_tools(request)
    max_tokens = requested_max_tokens(request)
    lines = len([ln for ln in text.splitlines() if ln.strip()])
    # Every logged figure is a count or a length, never negative (log1p(max(0, x)) is log1p(x)).
    return {
        "log_chars_last_user": log1p(len(text)),
        "log_words_last_user": log1p(_word_count(text)),
        "log_prompt_tokens": log1p(estimate_prompt_tokens(request, rt)),
        "log_user_turns": log1p(rt.user_turns),
        "has_assistant_turns": float(rt.assistant_turns > 0),
        "has_system": float(bool(rt.system)),
        "log_system_chars": log1p(len(rt.system)),
        "code_fence": float("```" in text),
        "log_lines": log1p(lines),
        "has_tools": float(n_tools > 0),
        "log_tools": log1p(n_tools),
        "has_tool_messages": float(rt.tool_messages > 0),
        "json_mode": float(json_mode(request)),
        "has_max_tokens": float(max_tokens is not None),
        "log_max_tokens": log1p(max_tokens or 0),
        "has_images": float(rt.images > 0),
        "log_images": log1p(rt.images),
        # LiteLLM complexity_router's keyword score of the newest turn (a feature and an anchor, see train.py).
        "litellm_complexity": complexity_of(text, lowered, set(word_tokens(lowered))),
    }


def fallback_cues(text: str) -> dict[str, float]:
    """The code and maths cues of the newest user turn that the structural fallback rule
    (scorer.HeuristicScorer) reads beside FEATURE_NAMES. Not router features (the trained router
    gained nothing from them, bench/results/routing_eval.md): computed only when the fallback scores."""
    lowered = text.lower()
    words = word_tokens(lowered)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return {
        "code_line_frac": sum(map(_is_code_line, lines)) / max(1, len(lines)),
        "log_math_words": log1p(_math_words(lowered, words, set(words))),
        "has_latex": float(_has_latex(text)),
    }


def feature_vector(features: Mapping[str, float]) -> np.ndarray:
    return np.array([features[n] for n in FEATURE_NAMES], dtype=np.float32)


def embed_text(rt: RequestText, max_chars: int) -> str:
    """What the embedding model reads: the newest user turn, head only.

    The head of a prompt states the task; cost of the embedding grows with
    length, and MiniLM truncates at 256 word pieces anyway. An empty turn (e.g.
    images only) falls back to the system prompt, then a single space, so the
    embedding server never gets an empty string.
    """
    text = (rt.last_user or rt.system or " ").strip() or " "
    if len(text) <= max_chars:
        return text
    cut = text[:max_chars]
    space = cut.rfind(" ")
    return cut[:space] if space > max_chars // 2 else cut
