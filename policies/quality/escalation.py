"""What to do after a scored answer: deliver, rephrase (ask again better) or escalate. Pure.

The hook calls `next_step` after each scored attempt and carries out the Step:

    chain = ["local-llama"]
    step = next_step(verdict, chain, settings, budget_stopped, tiers=routing.tiers)
    if step.kind == "rephrase": call step.tier with step.messages / step.system, score, chain.append(step.tier)
    if step.kind == "escalate": call step.tier with the original messages, chain.append(step.tier)
    if step.kind == "deliver": deliver `best_attempt(...)`; step.note says why when it is not a clean pass

Rules (from `synqra.quality`): at most `max_extra_calls` calls after the first;
one rephrase per request, on the same tier or the next (`rephrase_target`);
escalation goes one tier up or to the top (`escalate_target`); no paid call
while the budget is stopped (the answer in hand is delivered, marked). Under
budget pressure the ladder given is `pressured_ladder`'s: straight up to the tier
routing would have picked without the pressure, and no higher.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from policies.common.quality_settings import QualitySettings
from policies.quality.registry import BY_NAME
from policies.quality.scorer import QualityVerdict

StepKind = Literal["deliver", "rephrase", "escalate"]


@dataclass(frozen=True)
class Step:
    kind: StepKind
    tier: str | None = None  # the tier to call (rephrase / escalate)
    messages: list[dict[str, Any]] | None = None  # the improved prompt (rephrase only; None: unchanged)
    # The improved top-level system prompt (rephrase on the Anthropic Messages API only; None: unchanged).
    system: str | list[dict[str, Any]] | None = None
    # Why a non-passing answer is delivered: "top_tier", "max_extra_calls", "budget_stopped", "already_rephrased".
    note: str | None = None


def _tier_above(tiers: list[str], current: str, target: Literal["next", "top"]) -> str | None:
    if current not in tiers or current == tiers[-1]:
        return None
    return tiers[-1] if target == "top" else tiers[tiers.index(current) + 1]


def next_step(
    verdict: QualityVerdict,
    tier_chain: list[str],
    settings: QualitySettings,
    budget_stopped: bool,
    *,
    tiers: list[str],
    messages: list[dict[str, Any]] | None = None,
    rephrased: bool = False,
    free_tiers: Collection[str] | None = None,
    system: str | list[dict[str, Any]] | None = None,
    anthropic: bool = False,
) -> Step:
    """The next step for a request whose calls so far went to `tier_chain` (last = the scored one).

    `tiers` is the routing ladder, cheapest first; `free_tiers` (default: the
    cheapest tier) may still be called when the budget is stopped; `rephrased`
    says a rephrase was already spent on this request; `messages` are the
    original request messages (needed to build the rephrase prompt). `anthropic`: the request is
    an Anthropic Messages one, whose API has no system role in `messages`: the rephrase instruction
    then goes into its top-level `system` (the client's `system`, kept).
    """
    if verdict.action == "deliver":
        return Step("deliver")
    current = tier_chain[-1]
    if current == tiers[-1]:
        return Step("deliver", note="top_tier")
    if len(tier_chain) - 1 >= settings.max_extra_calls:
        return Step("deliver", note="max_extra_calls")
    free = set(free_tiers) if free_tiers is not None else {tiers[0]}
    kind: StepKind = verdict.action
    if kind == "rephrase" and rephrased:
        return Step("deliver", note="already_rephrased")
    if kind == "rephrase":
        target = current if settings.rephrase_target == "same" else _tier_above(tiers, current, "next")
    else:
        target = _tier_above(tiers, current, settings.escalate_target)
    if target is None:
        return Step("deliver", note="top_tier")
    if budget_stopped and target not in free:
        return Step("deliver", note="budget_stopped")
    if kind == "rephrase" and anthropic:
        return Step("rephrase", target, system=rephrase_system(system, verdict))
    if kind == "rephrase":
        return Step("rephrase", target, rephrase_messages(messages or [], verdict))
    return Step("escalate", target)


def pressured_ladder(ladder: list[str], first: str, unpressured: str, order: list[str]) -> list[str]:
    """The ladder an escalation climbs when budget pressure routed the request below `unpressured`, the tier it
    would have gone to without: the tiers up to the one that answered first, then straight to `unpressured` (or,
    when that one is not on the ladder, the strongest below it that is), nothing above. Climbing the tiers in
    between and then the unpressured one cost more than routing there in the first place (local > DeepSeek > Claude
    after a pressured local pick). `order` is the whole routing ladder, cheapest first; `ladder` a part of it."""
    if first not in order or unpressured not in order:
        return ladder
    rank = {t: i for i, t in enumerate(order)}
    here, cap = rank[first], rank[unpressured]
    below = [t for t in ladder if rank.get(t, -1) <= here]
    above = [t for t in ladder if here < rank.get(t, -1) <= cap]
    return below + above[-1:]


_BASE_HINT = "Answer the question directly, correctly and completely."


def rephrase_instruction(verdict: QualityVerdict) -> str:
    """The base instruction plus one hint per failed signal (worst first, duplicates dropped)."""
    failed = sorted((v, k) for k, v in verdict.signals.items() if v < 1 and k in BY_NAME and BY_NAME[k].hint)
    hints = list(dict.fromkeys(hint for _, k in failed if (hint := BY_NAME[k].hint)))
    return " ".join([_BASE_HINT, *hints])


def rephrase_messages(messages: list[dict[str, Any]], verdict: QualityVerdict) -> list[dict[str, Any]]:
    """The original conversation with the instruction added to (or as) the system message."""
    instruction = rephrase_instruction(verdict)
    out = [dict(m) for m in messages]
    for m in out:
        if m.get("role") == "system" and isinstance(m.get("content"), str):
            m["content"] = f"{m['content']}\n\n{instruction}"
            return out
    return [{"role": "system", "content": instruction}, *out]


def rephrase_system(system: str | list[dict[str, Any]] | None, verdict: QualityVerdict) -> str | list[dict[str, Any]]:
    """An Anthropic top-level `system` (a string or a list of content blocks) with the instruction added."""
    instruction = rephrase_instruction(verdict)
    if isinstance(
        system, list
    ):  # blocks may carry cache_control: kept as they are, the instruction is a block of its own
        return [*system, {"type": "text", "text": instruction}]
    return f"{system}\n\n{instruction}" if system else instruction


def best_attempt(verdicts: list[QualityVerdict | None]) -> int:
    """Index of the answer to deliver: an unscored one (top tier) wins, else the highest score (latest on ties)."""
    for i in range(len(verdicts) - 1, -1, -1):
        if verdicts[i] is None:
            return i
    scores = [v.score for v in verdicts if v is not None]
    best = max(scores)
    return max(i for i, v in enumerate(verdicts) if v is not None and v.score == best)
