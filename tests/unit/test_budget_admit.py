"""The budget step of a request (policies/budget/accountant.py, worst_case.py): what it reserves for content the
tokenizer cannot count, and how it refuses a call that no month's budget could pay for."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from policies.budget import worst_case
from policies.budget.accountant import Accountant, BudgetRefused
from policies.budget.guard import BudgetGuard
from policies.common.request_state import RequestState
from tests.unit.test_budget_guard import START, Clock, app_config

WAV = "UklGRiQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YQAAAAA="
AUDIO = {"type": "input_audio", "input_audio": {"data": WAV * 20, "format": "wav"}}
REFUSAL = {"type": "refusal", "refusal": "I can't help with that."}
SEARCH = [
    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {"query": "news"}},
    {
        "type": "web_search_tool_result",
        "tool_use_id": "srvtoolu_1",
        "content": [
            {"type": "web_search_result", "url": "https://example.com", "title": "Ex", "encrypted_content": "abc" * 200}
        ],
    },
]
NO_SOURCE_IMAGE = {"type": "image"}  # invalid for Anthropic: the provider answers it with a 400, not synqra with a 500
LONG_TEXT = "Please transcribe this recording of our quarterly planning meeting carefully. " * 40

# (name, messages, the parts LiteLLM's token counter cannot count)
UNCOUNTABLE: list[tuple[str, list[dict[str, Any]], list[dict[str, Any]]]] = [
    ("input_audio", [{"role": "user", "content": [{"type": "text", "text": LONG_TEXT}, AUDIO]}], [AUDIO]),
    (
        "refusal",
        [
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": [REFUSAL]},
            {"role": "user", "content": LONG_TEXT},
        ],
        [REFUSAL],
    ),
    (
        "web search blocks",
        [
            {"role": "user", "content": "Latest news?"},
            {"role": "assistant", "content": [*SEARCH, {"type": "text", "text": LONG_TEXT}]},
            {"role": "user", "content": "Thanks, summarise"},
        ],
        SEARCH,
    ),
    (
        "image without source",
        [{"role": "user", "content": [NO_SOURCE_IMAGE, {"type": "text", "text": LONG_TEXT}]}],
        [NO_SOURCE_IMAGE],
    ),
]


@pytest.fixture
def guard(tmp_path: Path) -> BudgetGuard:
    return BudgetGuard.from_config(app_config(tmp_path, {"store": "sqlite"}), now=Clock(START), env={})


def _text_tokens(guard: BudgetGuard, messages: list[dict[str, Any]]) -> int:
    texts = [m["content"] if isinstance(m["content"], str) else "" for m in messages]
    texts += [p.get("text", "") for m in messages if isinstance(m["content"], list) for p in m["content"]]
    return guard.count_prompt_tokens("claude-sonnet", text="\n".join(t for t in texts if t))


@pytest.mark.parametrize(("name", "messages", "unknown"), UNCOUNTABLE, ids=[c[0] for c in UNCOUNTABLE])
def test_uncountable_content_is_estimated_from_above_not_a_crash(
    guard: BudgetGuard, name: str, messages, unknown
) -> None:
    with pytest.raises(Exception):  # noqa: B017  # the premise: LiteLLM's counter gives up (it raises plain Exception)
        guard.count_prompt_tokens("claude-sonnet", messages=messages)
    est = worst_case.prompt_tokens(guard, "claude-sonnet", {"messages": messages})
    text = _text_tokens(guard, messages)
    opaque = sum(len(json.dumps(p, separators=(",", ":"))) for p in unknown) / worst_case.JSON_CHARS_PER_TOKEN
    # Never under: every text token plus a JSON-size bound for what could not be counted...
    assert est >= text + opaque
    # ...and not the whole conversation at the JSON rate: the text is still counted as text.
    assert est <= text + opaque + 20 * (
        len(messages) + sum(isinstance(m["content"], list) and len(m["content"]) for m in messages)
    )
    asyncio.run(guard.aclose())


def test_admit_reserves_for_uncountable_content(guard: BudgetGuard) -> None:
    async def main() -> float:
        state = RequestState("audio", call_type="acompletion")
        await Accountant(guard, "local-llama").admit(
            state, {"messages": UNCOUNTABLE[0][1], "max_tokens": 16}, "claude-sonnet", routed=False
        )
        assert state.reserved
        reserved = guard.snapshot()["reserved_usd"]
        await guard.aclose()
        return float(reserved)

    assert asyncio.run(main()) > 0


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_a_call_no_month_can_pay_is_a_400_naming_max_tokens(guard: BudgetGuard, key: str) -> None:
    """$15,000 of worst case against a $200 month: not "the budget is exhausted" (429, retried by SDKs)
    with nothing spent, but a 400 telling the caller which parameter to lower."""
    data = {"messages": [{"role": "user", "content": "hi"}], key: 10**9}

    async def main() -> BudgetRefused:
        with pytest.raises(BudgetRefused) as err:
            await Accountant(guard, "local-llama").admit(
                RequestState("huge", call_type="acompletion"), dict(data), "claude-sonnet", routed=False
            )
        # Nothing was held and the month is not stopped by it: an ordinary call still goes through.
        assert guard.snapshot()["reserved_usd"] == 0 and not guard.is_stopped()
        ok = RequestState("ok", call_type="acompletion")
        await Accountant(guard, "local-llama").admit(ok, {**data, key: 100}, "claude-sonnet", routed=False)
        assert ok.reserved
        await guard.aclose()
        return err.value

    refused = asyncio.run(main())
    assert refused.status == 400
    assert f"'{key}' (1000000000) is too large" in refused.message and f"lower {key}" in refused.message
    assert "$15,000.00" in refused.message and "$190.00" in refused.message and "exhausted" not in refused.message


def test_too_costly_without_max_tokens_says_to_set_one(tmp_path: Path) -> None:
    # A tiny budget: the model's output ceiling (64,000 tokens on claude-sonnet, $0.96) alone passes it.
    g = BudgetGuard.from_config(
        app_config(tmp_path, {"store": "sqlite", "monthly_limit_usd": 0.5}), now=Clock(START), env={}
    )

    async def main() -> BudgetRefused:
        with pytest.raises(BudgetRefused) as err:
            await Accountant(g, "local-llama").admit(
                RequestState("r", call_type="acompletion"),
                {"messages": [{"role": "user", "content": "hi"}]},
                "claude-sonnet",
                routed=False,
            )
        await g.aclose()
        return err.value

    refused = asyncio.run(main())
    assert refused.status == 400 and "set a smaller max_tokens" in refused.message


def test_routed_call_too_costly_for_its_tier_is_served_locally(guard: BudgetGuard) -> None:
    """`auto` keeps working: synqra chose the paid tier, so the free one answers instead of a refusal."""
    data: dict[str, Any] = {
        "model": "claude-sonnet",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 10**9,
    }
    state = RequestState("auto", call_type="acompletion")

    async def main() -> None:
        await Accountant(guard, "local-llama").admit(state, data, "claude-sonnet", routed=True)
        await guard.aclose()

    asyncio.run(main())
    assert data["model"] == state.route == "local-llama" and not state.reserved


@pytest.mark.parametrize(
    ("call_type", "fields", "expected"),
    [
        ("acompletion", {"max_tokens": 20}, ("max_tokens", 20)),
        ("acompletion", {"max_tokens": 20, "max_completion_tokens": 50_000}, ("max_completion_tokens", 50_000)),
        ("acompletion", {"max_completion_tokens": 20, "max_output_tokens": 50_000}, ("max_output_tokens", 50_000)),
        ("atext_completion", {"max_tokens": 20, "max_completion_tokens": 50_000}, ("max_completion_tokens", 50_000)),
        ("anthropic_messages", {"max_tokens": 20}, ("max_tokens", 20)),
        ("acompletion", {}, (None, None)),
        # OpenAI's Responses API reads max_output_tokens only: without it the answer is unlimited.
        ("aresponses", {"max_tokens": 20}, (None, None)),
        ("aresponses", {"max_completion_tokens": 20}, (None, None)),
        ("aresponses", {"max_output_tokens": 20}, ("max_output_tokens", 20)),
        ("aresponses", {"max_output_tokens": 20, "max_completion_tokens": 50_000}, ("max_completion_tokens", 50_000)),
    ],
)
def test_the_reservation_covers_the_largest_output_allowance_in_any_spelling(
    call_type: str, fields: dict[str, Any], expected: tuple[str | None, int | None]
) -> None:
    """LiteLLM sends Claude the last of max_tokens / max_completion_tokens it maps (review: a call reserved for
    20 output tokens was sent to Claude with max_tokens 50,000), and OpenAI's Responses API no other spelling
    than max_output_tokens (reserved for 20, sent unlimited)."""
    assert worst_case.output_allowance(fields, call_type) == expected


def test_a_small_max_tokens_does_not_hide_a_huge_max_completion_tokens(guard: BudgetGuard) -> None:
    data = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "max_completion_tokens": 10**9}

    async def main() -> BudgetRefused:
        with pytest.raises(BudgetRefused) as err:
            await Accountant(guard, "local-llama").admit(
                RequestState("hidden", call_type="acompletion"), data, "claude-sonnet", routed=False
            )
        await guard.aclose()
        return err.value

    refused = asyncio.run(main())
    assert refused.status == 400 and "'max_completion_tokens' (1000000000) is too large" in refused.message


@pytest.mark.parametrize(
    ("model", "named", "sent", "fitted"),
    [
        # Claude Code's Opus name served by Sonnet 4.5 (64,000), with an extended-thinking budget kept below it
        (
            "claude-sonnet",
            "claude-opus-4-6",
            {"max_tokens": 128000, "thinking": {"type": "enabled", "budget_tokens": 127999}},
            {"max_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 63999}},
        ),
        # auto's tier (DeepSeek, 8,192), every spelling; a flag and an allowance already under it are kept
        (
            "deepseek-chat",
            "auto",
            {"max_tokens": 9000, "max_completion_tokens": 100, "max_output_tokens": True},
            {"max_tokens": 8192, "max_completion_tokens": 100, "max_output_tokens": True},
        ),
        # the allowance in another spelling: the thinking budget is kept below it all the same
        (
            "claude-sonnet",
            "claude-opus-4-6",
            {"max_completion_tokens": 100000, "thinking": {"type": "enabled", "budget_tokens": 90000}},
            {"max_completion_tokens": 64000, "thinking": {"type": "enabled", "budget_tokens": 63999}},
        ),
        ("deepseek-chat", "deepseek-chat", {"max_tokens": 9000}, None),  # named: the provider's 400 is the client's
        ("claude-sonnet", "auto", {"max_tokens": 1000, "thinking": {"budget_tokens": 2000}}, None),  # under: kept
        ("local-llama", "auto", {"max_tokens": 128000}, None),  # no ceiling known: nothing to fit
    ],
)
def test_an_allowance_sized_for_another_model_is_fitted_to_the_one_answering(
    guard: BudgetGuard, model: str, named: str, sent: dict[str, Any], fitted: dict[str, Any] | None
) -> None:
    data = json.loads(json.dumps(sent))
    lowered = Accountant(guard, "local-llama").fit_allowance(data, model, named)
    assert data == (fitted or sent)
    assert bool(lowered) == (fitted is not None)


def test_a_later_model_is_fitted_from_the_clients_allowance_not_an_earlier_models(guard: BudgetGuard) -> None:
    """`auto` asked for 20,000 tokens went to the local model (fitted to 1,024 there); its fallback or escalation to
    DeepSeek is fitted from the 20,000 the client asked (8,192), Claude gets the 20,000; a bridged call's spelling
    (max_tokens for a Responses request's max_output_tokens) is not added to."""
    accounts = Accountant(guard, "local-llama")
    asked = {"max_tokens": 20000, "thinking": {"type": "enabled", "budget_tokens": 16000}}
    for model, fitted in (("deepseek-chat", 8192), ("claude-sonnet", 20000)):
        data = {"max_tokens": 1024, "thinking": {"type": "enabled", "budget_tokens": 1023}}
        accounts.fit_allowance(data, model, "auto", asked)
        assert data["max_tokens"] == fitted and data["thinking"]["budget_tokens"] == min(16000, fitted - 1)
    bridged = {"max_tokens": 1024}
    accounts.fit_allowance(bridged, "deepseek-chat", "auto", {"max_output_tokens": 20000})
    assert bridged == {"max_tokens": 1024}
