"""LiteLLM complexity_router's default weighted score, computed in microseconds.

The router uses it as one structural feature and as a second anchor beside
prompt length (train.py): its keyword cues (code, reasoning, technical, simple
questions) carry over between MT-Bench categories and MMLU subjects.

`ComplexityRouter.classify()` tests each of its ~120 keywords with its own regex
(about 1 ms p50, several ms for long prompts). Every default single-word keyword
is a plain run of word characters, and `\\bkw\\b` matches exactly when kw is one
of the text's `\\w+` tokens, so one tokenisation and a set intersection give the
same counts. Keyword lists, weights and bands are LiteLLM's own defaults
(imported, not copied); tests/unit/test_routing_complexity.py checks the score
equals `classify()`'s.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from policies.common.offline import apply_offline_env

apply_offline_env()  # importing litellm must not try to download its price map

from litellm.router_strategy.complexity_router.config import (  # noqa: E402
    DEFAULT_CODE_KEYWORDS,
    DEFAULT_DIMENSION_WEIGHTS,
    DEFAULT_REASONING_KEYWORDS,
    DEFAULT_SIMPLE_KEYWORDS,
    DEFAULT_TECHNICAL_KEYWORDS,
    DEFAULT_TOKEN_THRESHOLDS,
)

_WORD = re.compile(r"\w+")
# On ASCII text \w is [A-Za-z0-9_]: mapping every other character to a space and splitting gives the
# same tokens as _WORD.findall at a third of its cost.
_ASCII_NON_WORD = str.maketrans({c: " " for c in map(chr, range(128)) if not (c.isalnum() or c == "_")})
# LiteLLM matches keywords with CJK characters (or spaces) as plain substrings.
_CJK = re.compile(
    "[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9d\U00020000-\U0003ffff]"
)
# LiteLLM's multi-step patterns, except "first.*?then" (see _first_then): r"step\s*\d|\d+\.\s|[a-z]\)\s",
# searched one alternative at a time, each only if its literal part occurs ("\d+\.\s" occurs
# exactly when "\d\.\s" does): one regex with the three alternatives tries all three at every character.
_STEPS = (("step", re.compile(r"step\s*\d")), (".", re.compile(r"\d\.\s")), (")", re.compile(r"[a-z]\)\s")))


@dataclass(frozen=True)
class _Keywords:
    words: frozenset[str]  # plain words: whole \w+ tokens
    phrases: tuple[str, ...]  # substring matches
    others: tuple[tuple[str, re.Pattern[str]], ...]  # keywords with non-word characters: LiteLLM's \b regex

    @classmethod
    def of(cls, keywords: list[str]) -> _Keywords:
        kws = list(dict.fromkeys(k.lower() for k in keywords))
        phrases = tuple(k for k in kws if " " in k or _CJK.search(k))
        single = [k for k in kws if k not in phrases]
        words = frozenset(k for k in single if _WORD.fullmatch(k))
        others = tuple((k, re.compile(r"\b" + re.escape(k) + r"\b")) for k in single if k not in words)
        return cls(words, phrases, others)

    def count(self, tokens: set[str], text: str) -> int:
        n = len(self.words & tokens) + sum(map(text.__contains__, self.phrases))  # a C-level loop, no generator
        if self.others:
            n += sum(1 for k, rx in self.others if k in text and rx.search(text))  # substring test first: cheap
        return n


_CODE = _Keywords.of(DEFAULT_CODE_KEYWORDS)
_REASONING = _Keywords.of(DEFAULT_REASONING_KEYWORDS)
_TECHNICAL = _Keywords.of(DEFAULT_TECHNICAL_KEYWORDS)
_SIMPLE = _Keywords.of(DEFAULT_SIMPLE_KEYWORDS)


def _band(matches: int, low: int, high: int, scores: tuple[float, float, float]) -> float:
    """LiteLLM's keyword dimension: (none, low, high) score by match count."""
    return scores[0] if matches < low else scores[2] if matches >= high else scores[1]


def _first_then(text: str) -> bool:
    """re.search("first.*?then") without its quadratic worst case ('.' stops at newlines)."""
    for line in text.split("\n"):
        i = line.find("first")
        if i >= 0 and line.find("then", i + 5) >= 0:
            return True
    return False


def _multi_step(text: str) -> bool:
    return any(cue in text and rx.search(text) for cue, rx in _STEPS) or _first_then(text)


def word_tokens(text: str) -> list[str]:
    """`re.findall(r"\\w+", text)`, faster on ASCII text."""
    return text.translate(_ASCII_NON_WORD).split() if text.isascii() else _WORD.findall(text)


def litellm_complexity(prompt: str, words: list[str] | None = None) -> float:
    """The weighted score `ComplexityRouter.classify(prompt)[1]` gives with LiteLLM's default config.

    About -0.3 (short greeting) to 0.9 (long, code-heavy reasoning request). `words`: the prompt's
    lower-cased `word_tokens`, when the caller has them already.
    """
    text = prompt.lower()
    return complexity_of(prompt, text, set(word_tokens(text) if words is None else words))


_SIMPLE_BELOW = DEFAULT_TOKEN_THRESHOLDS.get("simple", 15)
_COMPLEX_ABOVE = DEFAULT_TOKEN_THRESHOLDS.get("complex", 400)
# The weights in LiteLLM's order of its dimensions (the order the terms are summed in).
_W_TOKENS, _W_CODE, _W_REASONING, _W_TECHNICAL, _W_SIMPLE, _W_STEPS, _W_QUESTIONS = (
    DEFAULT_DIMENSION_WEIGHTS.get(name, 0.0)
    for name in (
        "tokenCount",
        "codePresence",
        "reasoningMarkers",
        "technicalTerms",
        "simpleIndicators",
        "multiStepPatterns",
        "questionComplexity",
    )
)


def complexity_of(prompt: str, lowered: str, tokens: set[str]) -> float:
    """`litellm_complexity(prompt)` from the prompt, its lower-cased text and the set of its lower-cased
    `word_tokens` (the structural features have all three). The terms are added in the order `sum()` added
    them, starting from the first (0 + x is x): the same float."""
    n_tokens = len(prompt) // 4  # LiteLLM's estimate
    token_score = -1.0 if n_tokens < _SIMPLE_BELOW else 1.0 if n_tokens > _COMPLEX_ABOVE else 0.0
    return (
        token_score * _W_TOKENS
        + _band(_CODE.count(tokens, lowered), 1, 2, (0.0, 0.5, 1.0)) * _W_CODE
        + _band(_REASONING.count(tokens, lowered), 1, 2, (0.0, 0.7, 1.0)) * _W_REASONING
        + _band(_TECHNICAL.count(tokens, lowered), 2, 4, (0.0, 0.5, 1.0)) * _W_TECHNICAL
        + _band(_SIMPLE.count(tokens, lowered), 1, 2, (0.0, -1.0, -1.0)) * _W_SIMPLE
        + (0.5 if _multi_step(lowered) else 0.0) * _W_STEPS
        + (0.5 if prompt.count("?") > 3 else 0.0) * _W_QUESTIONS
    )
