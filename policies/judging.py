"""LLM-as-a-judge, the pure part: prompt templates and the parsing of the judge's reply. No I/O.

Two uses, one module:
- **single-answer rating** (the quality gate's optional judge tier, `synqra.quality.judge`): MT-Bench's
  `single-v1` prompt (Zheng et al., 2023), the judge ends with "Rating: [[7]]"; `parse_rating` reads the
  1-10 rating and `rating_to_score` maps it onto the gate's 0..1 scale so the bands keep their meaning
  (8 or more delivers, 6-7 rephrases, 5 or less escalates: arena-hard's ratings are bimodal, 1-2 vs 8-10,
  and issue 17 counts "rated 5 or lower" as a bad answer);
- **pairwise comparison** (the learning issue's shadow judge): MT-Bench's `pair-v2` prompt, verdict
  "[[A]]", "[[B]]" or "[[C]]" (tie), asked in both orders (`pairwise_messages_both_orders`) because judges
  favour one position; `combine_orders` turns the two verdicts into one (disagreement = tie, as MT-Bench
  counts it).

Every parser returns None for output it cannot read (no verdict, two different verdicts, a rating out of
range, not a string): the caller then decides without the judge. Nothing here raises on judge output.

The caller builds the call (model `synqra.quality.judge.model`, `max_tokens` JUDGE_MAX_TOKENS, temperature 0),
reserves its budget, books it in the ledger as its own kind and enforces the monthly limit.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

# Texts are cut to these many characters in a judge prompt: the judge's cost stays bounded and the
# budget reservation can be computed from the prompt before the call.
MAX_QUESTION_CHARS = 6000
MAX_ANSWER_CHARS = 8000
# The judge writes a short explanation, then the verdict; 400 tokens leave room for both.
JUDGE_MAX_TOKENS = 400

SINGLE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to "
    "the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by "
    "providing a short explanation. Be as objective as possible. After providing your explanation, you must "
    'rate the response on a scale of 1 to 10 by strictly following this format: "[[rating]]", for example: '
    '"Rating: [[5]]".'
)
SINGLE_USER = "[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
# With a reference answer (MT-Bench `single-math-v1`): for questions with one right result.
SINGLE_REFERENCE_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the response provided by an AI assistant to "
    "the user question displayed below. Your evaluation should consider correctness and helpfulness. You will "
    "be given a reference answer and the assistant's answer. Begin your evaluation by comparing the assistant's "
    "answer with the reference answer. Identify and correct any mistakes. Be as objective as possible. After "
    "providing your explanation, you must rate the response on a scale of 1 to 10 by strictly following this "
    'format: "[[rating]]", for example: "Rating: [[5]]".'
)
SINGLE_REFERENCE_USER = (
    "[Question]\n{question}\n\n[The Start of Reference Answer]\n{reference}\n[The End of Reference Answer]\n\n"
    "[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants "
    "to the user question displayed below. You should choose the assistant that follows the user's instructions "
    "and answers the user's question better. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of their responses. Begin your evaluation by "
    "comparing the two responses and provide a short explanation. Avoid any position biases and ensure that the "
    "order in which the responses were presented does not influence your decision. Do not allow the length of "
    "the responses to influence your evaluation. Do not favor certain names of the assistants. Be as objective "
    "as possible. After providing your explanation, output your final verdict by strictly following this "
    'format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'
)
PAIR_USER = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's "
    "Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)

Verdict = Literal["A", "B", "C"]
Preference = Literal["first", "second", "tie"]


def _cut(text: str, limit: int) -> str:
    text = text if isinstance(text, str) else str(text)
    return text if len(text) <= limit else text[:limit] + "\n[... cut for length ...]"


def single_rating_messages(question: str, answer: str, reference: str | None = None) -> list[dict[str, str]]:
    """Chat messages asking the judge to rate one answer 1-10 (with a reference answer when given)."""
    q, a = _cut(question, MAX_QUESTION_CHARS), _cut(answer, MAX_ANSWER_CHARS)
    if reference is not None:
        user = SINGLE_REFERENCE_USER.format(question=q, reference=_cut(reference, MAX_ANSWER_CHARS), answer=a)
        return [{"role": "system", "content": SINGLE_REFERENCE_SYSTEM}, {"role": "user", "content": user}]
    return [
        {"role": "system", "content": SINGLE_SYSTEM},
        {"role": "user", "content": SINGLE_USER.format(question=q, answer=a)},
    ]


_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_LOOSE = re.compile(r"\brating\s*[:=]?\s*\[?\s*(\d+(?:\.\d+)?)\s*\]?(?:\s*/\s*10)?", re.I)


def parse_rating(text: Any) -> float | None:
    """The 1-10 rating in a judge's reply ("Rating: [[7]]"), or None when there is none, several different
    ones, or one outside 1-10. Falls back to an unbracketed "Rating: 7" only when no bracket is present."""
    if not isinstance(text, str):
        return None
    found = _RATING.findall(text) or _RATING_LOOSE.findall(text)
    values = {float(x) for x in found}
    if len(values) != 1:
        return None
    value = values.pop()
    return value if 1.0 <= value <= 10.0 and math.isfinite(value) else None


# Rating -> the gate's score: 8 and up above deliver_above (0.8), 6-7 in the rephrase band, 5 and less
# below escalate_below (0.6); linear between the knots.
_KNOTS = ((1.0, 0.0), (5.0, 0.55), (6.0, 0.62), (8.0, 0.85), (10.0, 1.0))


def rating_to_score(rating: float) -> float:
    """Map a 1-10 judge rating onto the gate's 0..1 score (see _KNOTS)."""
    r = min(10.0, max(1.0, float(rating)))
    for (x0, y0), (x1, y1) in zip(_KNOTS, _KNOTS[1:]):
        if r <= x1:
            return round(y0 + (y1 - y0) * (r - x0) / (x1 - x0), 4)
    return 1.0


def pairwise_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """Chat messages asking the judge which of two answers is better (A, B or C for a tie)."""
    user = PAIR_USER.format(
        question=_cut(question, MAX_QUESTION_CHARS),
        answer_a=_cut(answer_a, MAX_ANSWER_CHARS),
        answer_b=_cut(answer_b, MAX_ANSWER_CHARS),
    )
    return [{"role": "system", "content": PAIR_SYSTEM}, {"role": "user", "content": user}]


def pairwise_messages_both_orders(
    question: str, first: str, second: str
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """The comparison asked twice: `first` as A, then `second` as A. Feed the two verdicts to combine_orders."""
    return pairwise_messages(question, first, second), pairwise_messages(question, second, first)


_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_verdict(text: Any) -> Verdict | None:
    """ "A", "B" or "C" (tie) from a judge's reply, or None when there is no verdict or two different ones."""
    if not isinstance(text, str):
        return None
    found = set(_VERDICT.findall(text))
    if len(found) != 1:
        return None
    v = found.pop()
    return v if v in ("A", "B", "C") else None


# What each order's verdict says about `first`.
_FIRST_AS_A: dict[Verdict, Preference] = {"A": "first", "B": "second", "C": "tie"}
_SECOND_AS_A: dict[Verdict, Preference] = {"A": "second", "B": "first", "C": "tie"}


def combine_orders(first_as_a: Verdict | None, second_as_a: Verdict | None) -> Preference | None:
    """One preference from the two orders. A winner must win in both positions; a disagreement (each order
    preferring whatever sat in the same place) is a tie; None if either verdict is missing."""
    if first_as_a is None or second_as_a is None:
        return None
    one = _FIRST_AS_A[first_as_a]
    two = _SECOND_AS_A[second_as_a]
    if one == two:
        return one
    if "tie" in (one, two):  # a win in one order and a tie in the other: the lean counts, as a weak win
        return one if two == "tie" else two
    return "tie"


def preference_value(p: Preference) -> float:
    """P(first better) for a preference: 1, 0.5 for a tie, 0."""
    return {"first": 1.0, "tie": 0.5, "second": 0.0}[p]


def in_judge_band(score: float, band: tuple[float, float] | list[float]) -> bool:
    """The scorer is unsure of this answer: its score falls inside [low, high] of synqra.quality.judge.band."""
    low, high = band
    return low <= score <= high
