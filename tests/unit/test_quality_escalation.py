"""The escalation planner: every branch of next_step, the rephrase prompt, best_attempt."""

from __future__ import annotations

from policies.common.quality_settings import QualitySettings
from policies.quality.escalation import (
    best_attempt,
    next_step,
    pressured_ladder,
    rephrase_instruction,
    rephrase_messages,
)
from policies.quality.scorer import QualityVerdict

TIERS = ["local-llama", "deepseek-chat", "claude-sonnet"]
MSGS = [{"role": "user", "content": "How many legs do 3 spiders have?"}]


def verdict(action: str, score: float = 0.5, **signals: float) -> QualityVerdict:
    return QualityVerdict(score=score, action=action, reasons=[], signals={"empty": 1.0, **signals})  # type: ignore[arg-type]


def step(v: QualityVerdict, chain: list[str], budget_stopped: bool = False, **kw):
    settings = kw.pop("settings", QualitySettings())
    return next_step(v, chain, settings, budget_stopped, tiers=TIERS, messages=MSGS, **kw)


def test_deliver_passes_through() -> None:
    s = step(verdict("deliver", 0.9), ["local-llama"])
    assert s.kind == "deliver" and s.note is None


def test_escalate_next_or_top() -> None:
    assert step(verdict("escalate"), ["local-llama"]).tier == "deepseek-chat"
    top = QualitySettings(escalate_target="top")
    assert step(verdict("escalate"), ["local-llama"], settings=top).tier == "claude-sonnet"
    assert step(verdict("escalate"), ["local-llama", "deepseek-chat"]).tier == "claude-sonnet"


def test_rephrase_same_or_next_tier() -> None:
    s = step(verdict("rephrase", 0.7, arithmetic=0.15), ["local-llama"])
    assert s.kind == "rephrase" and s.tier == "local-llama"
    assert s.messages[0]["role"] == "system" and "calculation" in s.messages[0]["content"]
    assert s.messages[1:] == MSGS
    nxt = step(verdict("rephrase"), ["local-llama"], settings=QualitySettings(rephrase_target="next"))
    assert nxt.kind == "rephrase" and nxt.tier == "deepseek-chat"


def test_only_one_rephrase() -> None:
    s = step(
        verdict("rephrase"), ["local-llama", "local-llama"], rephrased=True, settings=QualitySettings(max_extra_calls=5)
    )
    assert s.kind == "deliver" and s.note == "already_rephrased"


def test_extra_call_limit() -> None:
    s = step(verdict("escalate"), ["local-llama", "local-llama", "deepseek-chat"])
    assert s.kind == "deliver" and s.note == "max_extra_calls"
    none_allowed = QualitySettings(max_extra_calls=0)
    assert step(verdict("escalate"), ["local-llama"], settings=none_allowed).note == "max_extra_calls"


def test_budget_stopped_blocks_paid_but_not_free_tiers() -> None:
    s = step(verdict("escalate"), ["local-llama"], budget_stopped=True)
    assert s.kind == "deliver" and s.note == "budget_stopped"
    # A rephrase on the free local tier still happens.
    r = step(verdict("rephrase"), ["local-llama"], budget_stopped=True)
    assert r.kind == "rephrase" and r.tier == "local-llama"
    paid_rephrase = step(
        verdict("rephrase"), ["local-llama"], budget_stopped=True, settings=QualitySettings(rephrase_target="next")
    )
    assert paid_rephrase.note == "budget_stopped"


def test_top_tier_is_final() -> None:
    assert step(verdict("escalate"), ["claude-sonnet"]).note == "top_tier"


def test_rephrase_prompt_extends_existing_system_message() -> None:
    v = verdict("rephrase", language=0.1, refusal=0.0)
    msgs = rephrase_messages([{"role": "system", "content": "You are terse."}, *MSGS], v)
    assert msgs[0]["content"].startswith("You are terse.") and "harmless" in msgs[0]["content"]
    assert len(msgs) == 2
    # Worst signal's hint comes first.
    text = rephrase_instruction(v)
    assert text.index("harmless") < text.index("same language")


def test_anthropic_rephrase_goes_into_the_top_level_system() -> None:
    # The Messages API has no system role in `messages`: the instruction joins the client's `system`.
    v = verdict("rephrase", 0.7, arithmetic=0.15)
    blocks = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    for system in (None, "You are terse.", blocks):
        s = step(v, ["local-llama"], anthropic=True, system=system)
        assert s.kind == "rephrase" and s.messages is None, "the messages are sent unchanged"
        if system is None:
            assert s.system == rephrase_instruction(v)
        elif isinstance(system, str):
            assert s.system == f"You are terse.\n\n{rephrase_instruction(v)}"
        else:
            assert s.system == [*blocks, {"type": "text", "text": rephrase_instruction(v)}] and len(blocks) == 1
    assert step(v, ["local-llama"]).system is None, "OpenAI requests get a system message instead"


def test_best_attempt() -> None:
    assert best_attempt([verdict("rephrase", 0.7), verdict("rephrase", 0.65)]) == 0
    assert best_attempt([verdict("rephrase", 0.7), verdict("deliver", 0.9)]) == 1
    assert best_attempt([verdict("escalate", 0.2), None]) == 1


def test_under_budget_pressure_the_ladder_leads_straight_to_the_unpressured_tier_and_ends_there() -> None:
    assert pressured_ladder(TIERS, "local-llama", "claude-sonnet", TIERS) == ["local-llama", "claude-sonnet"]
    assert pressured_ladder(TIERS, "local-llama", "deepseek-chat", TIERS) == ["local-llama", "deepseek-chat"]
    # the unpressured tier cannot answer now (off the ladder): the strongest below it that can
    assert pressured_ladder(["local-llama", "deepseek-chat"], "local-llama", "claude-sonnet", TIERS) == TIERS[:2]
    # a fallback answered at or above the unpressured tier: nothing to climb
    assert pressured_ladder(TIERS, "deepseek-chat", "deepseek-chat", TIERS) == TIERS[:2]
    assert pressured_ladder(TIERS, "claude-sonnet", "deepseek-chat", TIERS) == TIERS
    ladder = pressured_ladder(TIERS, "local-llama", "claude-sonnet", TIERS)
    assert (
        next_step(verdict("escalate"), ["local-llama"], QualitySettings(), False, tiers=ladder).tier == "claude-sonnet"
    )
