"""What a reservation holds for its prompt (policies/budget/worst_case.held_prompt_tokens, token_count.py): a short
text prompt at one token per UTF-8 byte, never below what a provider's tokenizer bills for it, and counted exactly
(LiteLLM's count, each text once) once the bound would cost more than BYTE_BOUND_MAX_USD."""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Callable
from typing import Any

import litellm
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litellm.litellm_core_utils.token_counter import _get_exact_count_function

from policies.budget import worst_case
from policies.budget.accountant import Accountant
from policies.budget.guard import BudgetGuard
from policies.budget.records import to_nano
from policies.budget.token_count import PromptCounter
from policies.common.request_state import RequestState
from policies.common.settings import load_config
from tests.stack import REPO
from tests.unit.test_budget_guard import START, Clock

# Text a client sends: ASCII prose, CJK, emoji (with joiners and skin tones), code, and anything else.
ASCII = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=300)
CJK = st.text(st.characters(min_codepoint=0x4E00, max_codepoint=0x9FFF), max_size=200)
EMOJI = st.lists(
    st.sampled_from(["😀", "👍🏽", "👨\u200d👩\u200d👧", "🇫🇷", "❤️", "🚀", " ", "\u200d", "\ufe0f"]), max_size=120
).map("".join)
CODE = st.lists(
    st.sampled_from(
        [
            "def f(x):\n",
            "    return x ** 2\n",
            "for (int i = 0; i < n; ++i) {",
            "}",
            "\t",
            "=>",
            "  ",
            "\n",
            "<|endoftext|>",
        ]
    ),
    max_size=60,
).map("".join)
ANY = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)  # every code point but lone surrogates
TEXT = st.one_of(ASCII, CJK, EMOJI, CODE, ANY, st.lists(st.one_of(ASCII, CJK, EMOJI, CODE), max_size=4).map("".join))

MESSAGE = st.fixed_dictionaries(
    {"role": st.sampled_from(["system", "user", "assistant"]), "content": TEXT},
    optional={"name": st.sampled_from(["alice", "bob_2"])},
) | st.fixed_dictionaries(
    {
        "role": st.just("user"),
        "content": st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": TEXT}), min_size=1, max_size=3),
    }
)
MESSAGES = st.lists(MESSAGE, min_size=1, max_size=4)

# The tokenizers providers bill by, as near as this machine has them (LiteLLM's offline copies): OpenAI's two, and
# LiteLLM's Claude tokenizer (HuggingFace, byte-level BPE).
TOKENIZERS: dict[str, Callable[[str], int]] = {
    name: _get_exact_count_function(lm)
    for name, lm in (("cl100k_base", "gpt-4"), ("o200k_base", "gpt-4o"), ("claude", "claude-sonnet-4-5"))
}
# Every message the provider reads costs its text plus a few framing tokens (OpenAI: 3 a message, 3 for the reply).
FRAMING_PER_MESSAGE, FRAMING_REPLY = 3, 3
MODELS = ("deepseek-chat", "claude-sonnet", "gpt-4o")
_IDS = itertools.count()


def _texts(message: dict[str, Any]) -> list[str]:
    content = message["content"]
    parts = [content] if isinstance(content, str) else [p["text"] for p in content]
    return [message["role"], *parts] + ([message["name"]] if "name" in message else [])


def billed(count: Callable[[str], int], messages: list[dict[str, Any]]) -> int:
    """What a provider billing by `count` reports for these messages."""
    return FRAMING_REPLY + sum(FRAMING_PER_MESSAGE + sum(count(t) for t in _texts(m)) for m in messages)


@pytest.fixture(scope="module")
def guard(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A guard with the shipped model list (its providers' LiteLLM names choose the tokenizers) and a large month."""
    cfg = load_config(REPO / "litellm_config.yaml")
    cfg.synqra.server.data_dir = str(tmp_path_factory.mktemp("bound"))
    cfg.synqra.budget.store = "sqlite"
    cfg.synqra.budget.monthly_limit_usd = 10_000.0
    g = BudgetGuard.from_config(cfg, now=Clock(START), env={})
    yield g
    asyncio.run(g.aclose())


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(messages=MESSAGES, model=st.sampled_from(MODELS))
def test_a_reservation_is_never_below_the_provider_reported_prompt_tokens(
    guard: BudgetGuard, messages: list[dict[str, Any]], model: str
) -> None:
    """ASCII, CJK, emoji and code prompts: a prompt held at its bytes is held at least at what any of the tokenizers
    providers bill by counts for it; every prompt, held at its bytes or counted, at least at LiteLLM's count for the
    model (the count every reservation held before, and what /v1/messages/count_tokens answers)."""
    data = {"messages": messages}
    held, bound = worst_case.held_prompt_tokens(guard, model, data, "acompletion", set())
    assert held >= worst_case.prompt_tokens(guard, model, data)
    if bound:
        for name, count in TOKENIZERS.items():
            assert held >= billed(count, messages), name
    # What the store is asked to hold for it (the guard's margin on top): at least the provider's bill.
    state, amount = _admit(guard, model, {**data, "max_tokens": 1}, f"r{next(_IDS)}")
    assert state.reserved and state.worst_case is not None
    assert amount >= to_nano(guard.prices.cost(model, worst_case.prompt_tokens(guard, model, data), 1))


@settings(max_examples=200, deadline=None)
@given(
    messages=MESSAGES,
    system=st.none() | TEXT,
    tools=st.none() | st.lists(st.fixed_dictionaries({"name": ASCII, "description": TEXT}), max_size=2),
)
def test_the_byte_bound_is_never_below_the_count(
    messages: list[dict[str, Any]], system: str | None, tools: list[dict[str, Any]] | None
) -> None:
    """Whatever the bound is compared with: LiteLLM's count of the same request, by each model's tokenizer."""
    data: dict[str, Any] = {"messages": messages}
    if system is not None:
        data["system"] = system
    if tools is not None:
        data["tools"] = tools
    bound = worst_case.byte_bound(data)
    assert bound is not None
    for lm in ("deepseek/deepseek-chat", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", "gpt-4o"):
        counter = PromptCounter()
        n = counter.count(lm, messages=messages)
        if system:
            n += counter.count(lm, text=system)
        if tools:
            n += counter.count(lm, text=json.dumps(tools, separators=(",", ":")))
        assert bound >= n, lm


@settings(max_examples=150, deadline=None)
@given(messages=MESSAGES, text=TEXT)
def test_the_counter_counts_as_litellm_does(messages: list[dict[str, Any]], text: str) -> None:
    """PromptCounter runs LiteLLM's own count without its per-call set-up: the same figure, for every tokenizer
    (tiktoken's encodings, LiteLLM's Claude tokenizer), twice (the second time from its cache)."""
    counter = PromptCounter()
    for lm in ("deepseek/deepseek-chat", "anthropic/claude-sonnet-4-5", "claude-sonnet-4-5", "gpt-4o"):
        for _ in range(2):
            assert counter.count(lm, messages=messages) == litellm.token_counter(model=lm, messages=messages)
            assert counter.count(lm, text=text) == litellm.token_counter(model=lm, text=text)


def test_a_resent_conversation_is_counted_once() -> None:
    """Claude Code resends the whole conversation each turn: each earlier message's text is tokenized once."""
    counter = PromptCounter()
    turns = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}: " + "words " * 300} for i in range(6)
    ]
    for n in range(1, len(turns) + 1):
        assert counter.count("deepseek/deepseek-chat", messages=turns[:n]) == litellm.token_counter(
            model="deepseek/deepseek-chat", messages=turns[:n]
        )
    assert counter.misses == len(turns)  # each text once; every later turn read it from the cache
    assert counter.hits == sum(range(len(turns)))


def test_the_cache_keeps_to_its_size() -> None:
    counter = PromptCounter(max_cached_chars=10_000)
    for i in range(50):
        counter.count("deepseek/deepseek-chat", text=f"{i} " + "x" * 998)
    assert counter._cached_chars <= 10_000 and len(counter._cache) <= 10


def _admit(guard: BudgetGuard, model: str, data: dict[str, Any], rid: str) -> tuple[RequestState, int]:
    """Admit a call and release it again: (its state, the nano-dollars its reservation held)."""
    state = RequestState(rid, call_type="acompletion")

    async def main() -> int:
        await Accountant(guard, "local-llama").admit(state, data, model, routed=False)
        amount = guard._open[rid].amount_nano
        await guard.release(rid)
        return amount

    return state, asyncio.run(main())


def test_a_short_prompt_is_held_at_its_bytes_and_not_tokenized(guard: BudgetGuard) -> None:
    """A ~200-token prompt on Claude Sonnet: held at its 882 bytes (~$0.003), where counting it cost ~50 us of
    tiktoken; a row booked at the call's worst case (a timeout) still records the prompt's count."""
    text = "Order 12 was shipped late because the warehouse ran out of boxes. " * 13
    data = {"messages": [{"role": "user", "content": text}], "max_tokens": 16}
    counter = guard.prices.counter
    before = counter.misses + counter.hits
    state, _ = _admit(guard, "claude-sonnet", data, "short")
    assert counter.misses + counter.hits == before  # nothing was tokenized
    held = worst_case.held_prompt_tokens(guard, "claude-sonnet", data, "acompletion", set())
    assert held == (len(text) + 4 + 4 + 3, True)
    exact = litellm.token_counter(model="anthropic/claude-sonnet-4-5", messages=data["messages"])
    assert held[0] > 4 * exact
    assert state.worst_case is not None and state.worst_case.usage() == {
        "prompt_tokens": exact,
        "completion_tokens": 16,
    }


def test_a_prompt_whose_bound_would_cost_more_is_counted(guard: BudgetGuard) -> None:
    """Past BYTE_BOUND_MAX_USD at the model's price the prompt is tokenized: 20 kB on Claude Sonnet ($0.06 at one
    token a byte) is held at its count; the same prompt on DeepSeek ($0.0054 held) just passes the limit too, and a
    cheaper prompt there is held at its bytes."""
    text = "The quarterly report shows revenue growth in every region. " * 340
    data = {"messages": [{"role": "user", "content": text}]}
    exact = worst_case.prompt_tokens(guard, "claude-sonnet", data)
    assert worst_case.held_prompt_tokens(guard, "claude-sonnet", data, "acompletion", set()) == (exact, False)
    price = guard.prices.price("deepseek-chat").input_per_token
    small = {"messages": [{"role": "user", "content": text[: int(worst_case.BYTE_BOUND_MAX_USD / price) - 20]}]}
    held, bound = worst_case.held_prompt_tokens(guard, "deepseek-chat", small, "acompletion", set())
    assert bound and held * price <= worst_case.BYTE_BOUND_MAX_USD


def test_a_one_hour_cache_write_halves_the_bytes_held_at_the_bound(guard: BudgetGuard) -> None:
    """The limit is in dollars at the price the prompt may be billed: Claude's one-hour cache write is 2x input."""
    price = guard.prices.price("claude-sonnet").input_per_token
    fits = int(worst_case.BYTE_BOUND_MAX_USD / price) - 20  # bytes that pass at the input price
    data = {"messages": [{"role": "user", "content": "a" * fits}]}
    assert worst_case.held_prompt_tokens(guard, "claude-sonnet", data, "acompletion", set())[1]
    assert not worst_case.held_prompt_tokens(guard, "claude-sonnet", data, "acompletion", {"1h"})[1]


@pytest.mark.parametrize(
    "content",
    [
        [{"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}],
        [{"type": "tool_result", "tool_use_id": "t1", "content": "42"}],
    ],
    ids=["image", "tool_result"],
)
def test_content_other_than_text_is_not_bounded_by_bytes(content: list[dict[str, Any]]) -> None:
    """An image's tokens come from its size, not its bytes: such prompts are counted as before."""
    assert worst_case.byte_bound({"messages": [{"role": "user", "content": content}]}) is None
    assert worst_case.byte_bound({"messages": [{"role": "user", "content": "hi"}], "previous_response_id": "r"}) is None
