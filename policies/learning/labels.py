"""Labels of routed requests: 1 = the local answer was clearly not good enough (the request needed a
stronger tier), 0 = it was good enough; soft values in between. Each carries the source it came from.

The mappings below turn what the proxy sees into that scale; the proxy's hooks call them and hand the
value to the log writer (writer.InferenceLogWriter.log_label).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

Source = Literal["gate", "shadow_gate", "judge", "feedback", "file"]
SOURCES: tuple[str, ...] = ("gate", "shadow_gate", "judge", "feedback", "file")

# The quality gate's action on the local tier's first answer (policies/quality): a rephrase means the
# first answer was not deliverable as it was, but the local tier could still serve it.
_GATE = {"deliver": 0.0, "rephrase": 0.5, "escalate": 1.0}


def check_label(source: str, value: float) -> None:
    """Raise ValueError for an unknown source or a value outside [0, 1]."""
    if source not in SOURCES:
        raise ValueError(f"unknown label source {source!r}; known: {', '.join(SOURCES)}")
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"label must be a number from 0 to 1, got {value!r}")


def label_from_gate(action: str) -> float:
    """The gate's verdict on the local answer (live: `gate`, shadow evaluation: `shadow_gate`)."""
    try:
        return _GATE[action]
    except KeyError:
        raise ValueError(f"unknown quality action {action!r}; known: {', '.join(_GATE)}") from None


def gate_action(label: float) -> str:
    """The quality action a `gate` or `shadow_gate` label was made from (label_from_gate read back)."""
    for action, value in _GATE.items():
        if value == label:
            return action
    raise ValueError(f"{label!r} is not a quality gate label ({', '.join(map(str, _GATE.values()))})")


def label_from_feedback(score: float | str, served_locally: bool) -> float | None:
    """Feedback on the answer the client got (1 or "good" = good). It says something about the local
    tier only when the local tier served that answer: otherwise None (no label)."""
    if isinstance(score, str):
        if score not in ("good", "bad"):
            raise ValueError(f'feedback must be a number from 0 to 1, "good" or "bad", got {score!r}')
        value = 1.0 if score == "good" else 0.0
    elif isinstance(score, (int, float)) and not isinstance(score, bool) and 0.0 <= float(score) <= 1.0:
        value = float(score)
    else:
        raise ValueError(f'feedback must be a number from 0 to 1, "good" or "bad", got {score!r}')
    return 1.0 - value if served_locally else None


def label_from_judge(winners: Sequence[str]) -> float:
    """A pairwise judge's winners over both presentation orders ("local", "served" or "tie" each):
    the share of orders in which the served (stronger) answer won. Asking both orders cancels the
    judge's position bias; a tie counts as the local answer being good enough."""
    if not winners or any(w not in ("local", "served", "tie") for w in winners):
        raise ValueError(f"judge winners must be 'local', 'served' or 'tie', got {list(winners)!r}")
    return sum(w == "served" for w in winners) / len(winners)
