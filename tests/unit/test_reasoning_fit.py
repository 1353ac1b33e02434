"""proxy.reasoning_fit: an OpenAI reasoning effort sent to Claude as a thinking budget Anthropic accepts."""

from __future__ import annotations

from typing import Any

import pytest

from proxy.reasoning_fit import fit_reasoning_effort

SONNET = "anthropic/claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("kwargs", "model", "after"),
    [
        # LiteLLM's budget (high: 4,096) kept below the allowance, in either spelling
        ({"reasoning_effort": "high", "max_tokens": 2000}, SONNET, {"max_tokens": 2000, "thinking": 1999}),
        (
            {"reasoning_effort": "high", "max_completion_tokens": 3000},
            SONNET,
            {"max_completion_tokens": 3000, "thinking": 2999},
        ),
        # the Responses bridge keeps a dict when a summary is asked for
        (
            {"reasoning_effort": {"effort": "max", "summary": "auto"}, "max_tokens": 5000},
            SONNET,
            {"max_tokens": 5000, "thinking": 4999},
        ),
        # no room for Anthropic's least budget (1,024): no thinking
        ({"reasoning_effort": "minimal", "max_tokens": 600}, SONNET, {"max_tokens": 600}),
    ],
)
def test_a_budget_that_does_not_fit_is_fitted(kwargs: dict[str, Any], model: str, after: dict[str, Any]) -> None:
    assert fit_reasoning_effort(kwargs, model)
    budget = after.pop("thinking", None)
    assert {k: v for k, v in kwargs.items() if k != "thinking"} == after
    assert (kwargs.get("thinking") or {}).get("budget_tokens") == budget


@pytest.mark.parametrize(
    ("kwargs", "model"),
    [
        ({"reasoning_effort": "high", "max_tokens": 8000}, SONNET),  # fits as LiteLLM sends it
        ({"reasoning_effort": "high"}, SONNET),  # LiteLLM's default allowance is the model's ceiling
        ({"reasoning_effort": "high", "max_tokens": 100}, "deepseek/deepseek-chat"),  # not Anthropic's API
        ({"reasoning_effort": "high", "max_tokens": 100}, "openai/gpt-4o"),
        ({"reasoning_effort": "none", "max_tokens": 100}, SONNET),  # no thinking asked
        ({"reasoning_effort": "extreme", "max_tokens": 100}, SONNET),  # LiteLLM refuses it in its own words
        ({"reasoning_effort": "high", "max_tokens": 100, "thinking": {"type": "enabled"}}, SONNET),  # the client's own
        ({"reasoning_effort": "high", "max_tokens": 100}, "no-such-provider/x"),
    ],
)
def test_a_call_that_needs_no_fit_is_left_as_it_is(kwargs: dict[str, Any], model: str) -> None:
    before = dict(kwargs)
    assert fit_reasoning_effort(kwargs, model) is None
    assert kwargs == before
