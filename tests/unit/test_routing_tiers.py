"""Pure tier choice: thresholds, budget pressure, rules and hard constraints."""

from __future__ import annotations

import pytest

from policies.routing.tiers import Constraints, TierInfo, choose_tier, shifted_thresholds, unmet

TIERS = [
    TierInfo("local-llama", max_input_tokens=2048, supports_vision=False, supports_function_calling=False),
    TierInfo("deepseek-chat", max_input_tokens=64000, supports_vision=False, supports_function_calling=True),
    TierInfo("claude-sonnet", max_input_tokens=200000, supports_vision=True, supports_function_calling=True),
]
T = [0.3, 0.6]


def pick(score: float, c: Constraints = Constraints(), **kw: object) -> str:
    return choose_tier(score, T, TIERS, c, **kw)[0]  # type: ignore[arg-type]


def test_thresholds_map_score_to_tiers() -> None:
    assert [pick(s) for s in (0.1, 0.3, 0.59, 0.6, 0.99)] == [
        "local-llama",
        "deepseek-chat",
        "deepseek-chat",
        "claude-sonnet",
        "claude-sonnet",
    ]


def test_budget_pressure_keeps_more_on_cheaper_tiers() -> None:
    assert pick(0.65) == "claude-sonnet"
    assert pick(0.65, budget_pressure=1.0, max_shift=0.5) == "deepseek-chat"
    assert shifted_thresholds(T, 1.0, 1.0) == [1.0, 1.0]
    assert shifted_thresholds(T, 0.0, 0.5) == T
    assert shifted_thresholds(T, 7.0, 0.5) == shifted_thresholds(T, 1.0, 0.5)  # clipped


def test_images_go_to_a_vision_tier() -> None:
    tier, reason = choose_tier(0.05, T, TIERS, Constraints(images=True))
    assert tier == "claude-sonnet" and "no vision" in reason


def test_tools_skip_tiers_without_function_calling() -> None:
    assert pick(0.05, Constraints(tools=True)) == "deepseek-chat"


def test_long_context_never_goes_to_a_small_window() -> None:
    assert pick(0.05, Constraints(prompt_tokens=5000)) == "deepseek-chat"
    assert pick(0.05, Constraints(prompt_tokens=100000)) == "claude-sonnet"


def test_constraints_move_down_when_nothing_above_fits() -> None:
    tiers = [TIERS[2], TierInfo("small-top", max_input_tokens=1000)]
    assert choose_tier(0.9, [0.5], tiers, Constraints(prompt_tokens=5000))[0] == "claude-sonnet"


def test_no_tier_fits_keeps_strongest_and_says_so() -> None:
    tier, reason = choose_tier(0.1, T, TIERS, Constraints(prompt_tokens=10**6))
    assert tier == "claude-sonnet" and "no tier meets" in reason


def test_unknown_capabilities() -> None:
    tiers = [TierInfo("a"), TierInfo("b", supports_vision=True)]
    assert choose_tier(0.0, [0.5], tiers, Constraints(images=True))[0] == "b"  # unknown vision = no
    assert choose_tier(0.0, [0.5], tiers, Constraints(prompt_tokens=10**7))[0] == "a"  # unknown window = fits


def test_rule_minimum_tier() -> None:
    tier, reason = choose_tier(0.05, T, TIERS, Constraints(), min_tier=2)
    assert tier == "claude-sonnet" and "by rule" in reason


def test_threshold_count_must_match() -> None:
    with pytest.raises(ValueError):
        choose_tier(0.5, [0.5], TIERS, Constraints())


def test_a_stored_conversation_goes_only_to_a_tier_that_keeps_it() -> None:
    keeper = TierInfo("gpt-4o", max_input_tokens=128000, supports_vision=True, stores_responses=True)
    assert choose_tier(0.05, [0.3, 0.6, 0.9], [*TIERS, keeper], Constraints(stored_context=True))[0] == "gpt-4o"
    assert unmet(TIERS[2], Constraints(stored_context=True), unknown_is_no=False) == "no stored conversations"
    assert unmet(keeper, Constraints(stored_context=True)) is None


def test_several_answers_and_logprobs_skip_a_tier_known_not_to_give_them() -> None:
    claude = TierInfo("claude-sonnet", supports_n=False, supports_logprobs=False)
    assert unmet(claude, Constraints(choices=True)) == "no n"
    assert unmet(claude, Constraints(logprobs=True)) == "no logprobs"
    assert unmet(TierInfo("unknown"), Constraints(choices=True, logprobs=True)) is None  # not guessed
    tiers = [TIERS[0], TIERS[1], claude]
    assert choose_tier(0.9, T, tiers, Constraints(choices=True))[0] == "deepseek-chat"
