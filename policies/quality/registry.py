"""Every quality signal in one table: its name, how it is computed, its default weight, whether a zero is a
hard failure, what a rephrase asks for when it fires, and its role in the score.

Roles:
- `rule`: certain when it fires (an empty or cut-off answer, a loop, invalid JSON or tool arguments, a
  refusal nothing warranted, the wrong language, wrong arithmetic, a wrong result for the calculation asked,
  a figure the model cannot know); it multiplies the score by `1 - weight * (1 - value)` whatever the
  learned model says. `hard` rules at 0 force "escalate". The token log-probabilities are rules too: no
  training set has them, so their weight is hand-set rather than learned.
- `input`: evidence the learned answer model reads among its features; without a model artifact
  (missing, corrupt, or `synqra.quality.learned.enabled: false`) the same product formula weighs them.

The default weights are data of the config model (policies/common/quality_settings.py: DEFAULT_WEIGHTS, which
`synqra.quality.weights` overrides by name; a name not there is an error at start-up); this table checks at
import that it has exactly those names, and `combine` refuses a signal it does not know.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from policies.common.quality_settings import DEFAULT_WEIGHTS
from policies.quality import signals as sg


@dataclass(frozen=True)
class AnswerContext:
    """What every signal may read about one answer."""

    request: dict[str, Any]
    question: str  # the newest user turn
    conversation: str  # every message's text, system prompt included
    answer: str
    finish_reason: str | None
    logprobs: list[float] | None
    tool_calls: list[Any] | None
    cosine: float | None  # question/answer embedding similarity (None: not measured)
    relevance_band: tuple[float, float]


@dataclass(frozen=True)
class SignalSpec:
    name: str
    compute: Callable[[AnswerContext], sg.Signal]
    role: Literal["rule", "input"]
    hard: bool = False  # a value of 0 forces "escalate"
    hint: str | None = None  # rephrase instruction when it fires

    @property
    def weight(self) -> float:
        """The default of synqra.quality.weights.<name> (policies/common/quality_settings.py)."""
        return DEFAULT_WEIGHTS[self.name]


_SHORT = "Keep the answer short enough to finish it completely."
_DIRECT = "Give one clear, direct answer."
_CHECK_SUMS = "Work step by step and double-check every calculation."

SIGNALS: tuple[SignalSpec, ...] = (
    SignalSpec("empty", lambda c: sg.empty_answer(c.answer, c.tool_calls), "rule", hard=True),
    SignalSpec("cut_off", lambda c: sg.cut_off(c.finish_reason), "rule", hard=True, hint=_SHORT),
    SignalSpec("loop", lambda c: sg.repetition(c.answer), "rule", hard=True, hint="Do not repeat yourself."),
    SignalSpec(
        "json_valid",
        lambda c: sg.json_valid(c.request, c.answer) if not c.tool_calls else sg.OK,
        "rule",
        hard=True,
        hint="Reply with valid JSON only, with no text around it.",
    ),
    SignalSpec(
        "tool_args",
        lambda c: sg.tool_args_valid(c.request, c.tool_calls),
        "rule",
        hard=True,
        hint="Call tools with arguments that are valid JSON containing every required field.",
    ),
    SignalSpec(
        "refusal", lambda c: sg.refusal(c.question, c.answer), "rule", hint="The request is harmless: answer it."
    ),
    SignalSpec(
        "language",
        lambda c: sg.language_match(c.question, c.answer),
        "rule",
        hint="Answer in the same language as the question.",
    ),
    SignalSpec(
        "arithmetic",
        lambda c: sg.arithmetic(c.answer),
        "rule",
        hint=_CHECK_SUMS,
    ),
    SignalSpec(
        "computation",
        lambda c: sg.computation(c.question, c.answer),
        "rule",
        hint=_CHECK_SUMS,
    ),
    # Weight 0.3: alone it lands a sure answer in the rephrase band, not escalation: a bigger model cannot
    # know the user's prices either, while asking again with the hint below gets an answer that says so.
    SignalSpec(
        "invented_figure",
        lambda c: sg.invented_figure(c.conversation, c.question, c.answer),
        "rule",
        hint="Do not state prices, dates, names or other figures that the conversation does not give: "
        "say what you would need to know instead.",
    ),
    SignalSpec("logprob_mean", lambda c: sg.logprob_mean(c.logprobs), "rule", hint=_DIRECT),
    SignalSpec("logprob_min", lambda c: sg.logprob_min(c.logprobs), "rule", hint=_DIRECT),
    SignalSpec(
        "abrupt_end", lambda c: sg.abrupt_end(c.answer) if c.finish_reason != "length" else sg.OK, "input", hint=_SHORT
    ),
    SignalSpec(
        "relevance",
        lambda c: sg.relevance(c.cosine, *c.relevance_band),
        "input",
        hint="Stay strictly on the topic of the question.",
    ),
    SignalSpec(
        "maths_answer",
        lambda c: sg.maths_answer(c.question, c.answer),
        "input",
        hint="End with a last line of the form 'Answer: <number>'.",
    ),
    SignalSpec(
        "maths_inputs",
        lambda c: sg.maths_inputs(c.question, c.answer),
        "input",
        hint="Use every number given in the question.",
    ),
    # Fitted on GSM8K by the earlier bench/quality_eval.py (5-fold out of fold); kept for the fallback product.
    SignalSpec("dead_end", lambda c: sg.dead_end(c.question, c.answer), "input"),
    SignalSpec("hedging", lambda c: sg.hedging(c.answer), "input", hint=_DIRECT),
)

BY_NAME: dict[str, SignalSpec] = {s.name: s for s in SIGNALS}
HARD_SIGNALS: tuple[str, ...] = tuple(s.name for s in SIGNALS if s.hard)
RULES: tuple[str, ...] = tuple(s.name for s in SIGNALS if s.role == "rule")
INPUTS: tuple[str, ...] = tuple(s.name for s in SIGNALS if s.role == "input")


def _check_table() -> None:
    """The table itself is consistent (run at import: a broken table fails every start-up and test)."""
    if len(BY_NAME) != len(SIGNALS):
        raise ValueError("quality signal registry: duplicate signal names")
    if set(BY_NAME) != set(DEFAULT_WEIGHTS):
        raise ValueError(
            f"quality signal registry and DEFAULT_WEIGHTS differ: {sorted(set(BY_NAME) ^ set(DEFAULT_WEIGHTS))}"
        )
    for s in SIGNALS:
        if not 0.0 <= s.weight <= 1.0:
            raise ValueError(f"quality signal {s.name!r}: default weight {s.weight} is outside [0, 1]")
        if s.hard and s.role != "rule":
            raise ValueError(f"quality signal {s.name!r}: a hard failure must be a rule")


_check_table()


def compute_all(ctx: AnswerContext, skip: frozenset[str] = frozenset()) -> dict[str, sg.Signal]:
    """Every registered signal for one answer (those in `skip` count as fine), in table order."""
    return {s.name: (sg.OK if s.name in skip else s.compute(ctx)) for s in SIGNALS}


def hint(name: str) -> str | None:
    return BY_NAME[name].hint
