"""Budget decisions without stores: config, month window, thrift curve, alert levels, prices."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from policies.budget.policy import budget_state, levels_to_fire, projected_month_spend, thrift_pressure, usd_text
from policies.budget.pricing import PriceBook, PricingError
from policies.budget.records import CallRecord
from policies.budget.stores import open_store, sqlite_path
from policies.budget.window import month_window
from policies.common.budget_settings import BudgetSettings, ThriftSettings
from policies.common.offline import apply_offline_env
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings

apply_offline_env()


def test_defaults_match_the_issue() -> None:
    s = BudgetSettings()
    assert (s.monthly_limit_usd, s.alert_at, s.stop_at, s.baseline_model, s.timezone) == (
        200,
        0.7,
        0.95,
        "claude-sonnet",
        "UTC",
    )
    assert s.fail_mode == "closed" and s.all_alert_levels == [0.7]
    assert BudgetSettings(alert_levels=[0.9, 0.5, 0.7]).all_alert_levels == [0.5, 0.7, 0.9]


@pytest.mark.parametrize(
    "bad",
    [{"alert_at": 0.96}, {"timezone": "Mars/Olympus"}, {"store": "postgres://x"}, {"alert_levels": [1.5]}, {"nope": 1}],
)
def test_bad_settings_are_rejected(bad: dict) -> None:
    with pytest.raises(ValidationError):
        BudgetSettings.model_validate(bad)


def test_store_choice_honours_redis_url_only_when_unset(tmp_path: Path) -> None:
    env = {"REDIS_URL": "redis://127.0.0.1:6399/0"}
    assert BudgetSettings().resolved_store(env) == "redis://127.0.0.1:6399/0"
    assert BudgetSettings().resolved_store({}) == "sqlite"
    assert BudgetSettings(store="sqlite").resolved_store(env) == "sqlite"
    assert BudgetSettings(store="redis://h:1/2").resolved_store(env) == "redis://h:1/2"
    assert sqlite_path(BudgetSettings(), tmp_path) == tmp_path / "budget.sqlite3"
    assert open_store(BudgetSettings(store="sqlite"), tmp_path, env).name == "sqlite"


def test_month_window_in_a_time_zone() -> None:
    t = datetime(2026, 1, 31, 23, 30, tzinfo=UTC)
    assert month_window(t, "UTC").key == "2026-01"
    berlin = month_window(t, "Europe/Berlin")  # already 00:30 on 1 February there
    assert berlin.key == "2026-02" and berlin.end.isoformat() == "2026-03-01T00:00:00+01:00"
    dec = month_window(datetime(2026, 12, 15, tzinfo=UTC), "UTC")
    assert dec.end == datetime(2027, 1, 1, tzinfo=UTC)
    assert dec.elapsed_share(datetime(2026, 12, 1, tzinfo=UTC)) == 0.0
    assert month_window(t, "UTC").elapsed_share(t) == pytest.approx(1 - 0.5 / 24 / 31)
    with pytest.raises(ValueError):
        month_window(datetime(2026, 1, 1), "UTC")


def test_thrift_curve() -> None:
    c = ThriftSettings()
    assert thrift_pressure(0.49, 0.0, c) == 0.0  # below the start share: never
    assert thrift_pressure(0.5, 0.5, c) == 0.0  # on pace
    assert thrift_pressure(0.5, 0.4, c) == pytest.approx(0.4)  # 0.1 ahead / full_gap 0.25
    assert thrift_pressure(0.6, 0.2, c) == 1.0
    assert thrift_pressure(0.9, 0.95, c) == 0.0  # a lot spent, but late in the month
    steep = ThriftSettings(margin=0.05, full_gap=0.2, exponent=2)
    assert thrift_pressure(0.6, 0.45, steep) == pytest.approx(0.25)
    assert thrift_pressure(0.9, 0.0, ThriftSettings(enabled=False)) == 0.0
    pressures = [thrift_pressure(0.7, e / 100, c) for e in range(0, 101, 5)]
    assert pressures == sorted(pressures, reverse=True)  # falls as the month catches up


def test_alert_levels_state_and_projection() -> None:
    assert levels_to_fire(0.75, [0.5, 0.7, 0.9], ["0.5"]) == [0.7]
    assert levels_to_fire(0.69, [0.7], []) == []
    assert budget_state(0.5, 0.7, False) == "ok"
    assert budget_state(0.7, 0.7, False) == "alert"
    assert budget_state(0.1, 0.7, True) == "stopped"
    assert projected_month_spend(50, 0.25) == 200
    assert projected_month_spend(1, 0.0) == 31  # floored at one day's share


# Claude at its list prices, the cache prices from LiteLLM's map (1.25x and 2x to write, 0.1x to read)
CLAUDE = ModelEntry(
    model_name="claude-sonnet",
    litellm_params={"model": "anthropic/claude-sonnet-4-5"},
    model_info={"input_cost_per_token": 3e-6, "output_cost_per_token": 15e-6},
)


def _cfg(tmp_path: Path, models: list[ModelEntry], budget: dict | None = None) -> AppConfig:
    return AppConfig(
        path=tmp_path / "c.yaml", model_list=models, synqra=SynqraSettings.model_validate({"budget": budget or {}})
    )


def test_prices_from_model_info_then_litellm_cost_map(tmp_path: Path) -> None:
    models = [
        ModelEntry(model_name="local-llama", litellm_params={"model": "openai/local-llama"}),
        ModelEntry(model_name="deepseek-chat", litellm_params={"model": "deepseek/deepseek-chat"}),
        ModelEntry(model_name="claude-sonnet", litellm_params={"model": "anthropic/claude-sonnet-4-5"}),
        ModelEntry(
            model_name="cheap",
            litellm_params={"model": "openai/whatever"},
            model_info={"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "max_output_tokens": 100},
        ),
    ]
    book = PriceBook.from_config(_cfg(tmp_path, models), required=["local-llama", "deepseek-chat", "claude-sonnet"])
    assert book.is_free("local-llama") and not book.is_free("deepseek-chat")
    assert book.cost("claude-sonnet", 1_000_000, 1_000_000) == pytest.approx(18.0)  # $3 + $15 (LiteLLM's map)
    assert book.cost("deepseek-chat", 1_000_000, 1_000_000) == pytest.approx(0.70)
    assert book.worst_case("cheap", 10, None) == pytest.approx(10e-6 + 100 * 2e-6)  # model's output ceiling
    assert book.worst_case("cheap", 10, 5) == pytest.approx(10e-6 + 5 * 2e-6)
    assert book.worst_case("claude-sonnet", 0, None) == pytest.approx(64000 * 15e-6)
    assert book.baseline(1000, 1000) == pytest.approx(0.018)
    cost, baseline, free = book.price_call(CallRecord("r", "auto", "deepseek-chat", 1000, 1000))
    assert (cost, baseline, free) == (700_000, 18_000_000, False)
    emb = book.price_call(CallRecord("e", "cheap", "cheap", 1000, 0, kind="embedding"))
    assert emb[0] == emb[1] == 1_000_000  # no savings claimed for embeddings
    assert book.count_prompt_tokens("claude-sonnet", messages=[{"role": "user", "content": "hello there"}]) > 2
    with pytest.raises(PricingError, match="model_info.input_cost_per_token"):
        book.price("unknown")


def test_prompt_tokens_written_to_or_read_from_the_cache_cost_their_own_price(tmp_path: Path) -> None:
    models = [
        # token prices set, the cache price from LiteLLM's map ($3.75 per million, 1.25x)
        CLAUDE,
        ModelEntry(
            model_name="own",
            litellm_params={"model": "openai/whatever"},
            model_info={
                "input_cost_per_token": 1e-6,
                "output_cost_per_token": 2e-6,
                "cache_creation_input_token_cost": 4e-6,
            },
        ),
        ModelEntry(model_name="deepseek-chat", litellm_params={"model": "deepseek/deepseek-chat"}),  # no write price
    ]
    book = PriceBook.from_config(_cfg(tmp_path, models))

    def cost(model: str, prompt: int, completion: int, writes: int = 0, reads: int = 0) -> float:
        call = CallRecord("r", model, model, prompt, completion, cache_write_tokens=writes, cache_read_tokens=reads)
        return book.price_call(call)[0] / 1e9

    assert cost("claude-sonnet", 2002, 10) == pytest.approx(2002 * 3e-6 + 10 * 15e-6)  # tokens x prices
    assert cost("claude-sonnet", 2002, 10, 2000) == pytest.approx(2 * 3e-6 + 2000 * 3.75e-6 + 10 * 15e-6)
    assert cost("claude-sonnet", 2002, 10, 0, 2000) == pytest.approx(2 * 3e-6 + 2000 * 0.3e-6 + 10 * 15e-6)  # 0.1x
    assert cost("own", 100, 0, 100) == pytest.approx(100 * 4e-6)
    assert cost("own", 100, 0, 0, 100) == pytest.approx(100 * 1e-6)  # no read price: the input price
    assert cost("deepseek-chat", 100, 0, 100) == pytest.approx(cost("deepseek-chat", 100, 0))  # write price 0
    assert cost("deepseek-chat", 100, 0, 0, 100) < cost("deepseek-chat", 100, 0)  # its cache hits, LiteLLM's map
    # The all-Claude baseline reads the same prompt from Claude's cache: a call Claude served claims no savings.
    claude = book.price_call(CallRecord("c", "claude-sonnet", "claude-sonnet", 2002, 10, cache_read_tokens=2000))
    assert claude[0] == claude[1]


def test_cache_writes_are_priced_at_the_ttl_the_provider_says_each_was_written_for(tmp_path: Path) -> None:
    """A request may mix Anthropic's TTLs (a one-hour breakpoint on the system prompt, a five-minute one on the newest
    turn): Anthropic bills each write at its TTL's price and reports the split. Every write was priced at the hour's
    2x once the request asked "1h" anywhere: a turn that read the hour's prefix and wrote only its newest turn for
    five minutes paid the hour's price for it."""
    models = [CLAUDE]
    book = PriceBook.from_config(_cfg(tmp_path, models))

    def cost(writes: int, reads: int, hour: bool, hour_writes: int | None) -> float:
        call = CallRecord(
            "r",
            "claude-sonnet",
            "claude-sonnet",
            2002,
            10,
            cache_write_tokens=writes,
            cache_read_tokens=reads,
            cache_one_hour=hour,
            cache_write_1h_tokens=hour_writes,
        )
        got = book.price_call(call)
        assert got[0] == got[1], "Claude served it: no savings"
        return got[0] / 1e9

    out = 10 * 15e-6
    mixed = 2 * 3e-6 + 500 * 6e-6 + 1500 * 3.75e-6 + out
    assert cost(2000, 0, True, 500) == pytest.approx(mixed)
    # The hour's prefix read, the newest turn written for five minutes.
    assert cost(200, 1800, True, 0) == pytest.approx(2 * 3e-6 + 200 * 3.75e-6 + 1800 * 0.3e-6 + out)
    # No split reported (a stream cut short): the TTL the request asked, as before.
    assert cost(2000, 0, True, None) == pytest.approx(2 * 3e-6 + 2000 * 6e-6 + out)
    assert cost(2000, 0, False, None) == pytest.approx(2 * 3e-6 + 2000 * 3.75e-6 + out)


def test_unpriced_paid_model_is_a_config_error(tmp_path: Path) -> None:
    models = [
        ModelEntry(model_name="claude-sonnet", litellm_params={"model": "anthropic/claude-sonnet-4-5"}),
        ModelEntry(model_name="mystery", litellm_params={"model": "openai/mystery-model-x"}),
    ]
    with pytest.raises(PricingError, match="mystery"):
        PriceBook.from_config(_cfg(tmp_path, models), required=["mystery"])
    with pytest.raises(PricingError, match="baseline_model"):
        PriceBook.from_config(_cfg(tmp_path, models[1:], {"baseline_model": "mystery"}))


def test_a_prefix_marked_for_claudes_cache_is_read_from_it_in_the_baseline_when_another_model_answered(
    tmp_path: Path,
) -> None:
    """Claude Code marks its long system prompt for Anthropic's cache and sends its small tasks to a Haiku name, which
    `auto` may route to the local model. The all-Claude setup would have read that prefix from Claude's cache at 0.1x,
    but the baseline priced it at the full input price: savings were overstated by 0.9x the prefix's input price
    (a 10,000-token prompt: $0.027 of made-up savings per request), and an answer escalated to Claude, which then read
    the prefix cached, claimed savings though Claude served it."""
    models = [
        CLAUDE,
        ModelEntry(
            model_name="local-llama",
            litellm_params={"model": "openai/local-llama"},
            model_info={"input_cost_per_token": 0, "output_cost_per_token": 0},
        ),
    ]
    book = PriceBook.from_config(_cfg(tmp_path, models))

    def baseline(prefix: int, reads: int = 0) -> float:
        call = CallRecord("r", "auto", "local-llama", 3000, 10, cache_read_tokens=reads, cache_prefix_tokens=prefix)
        return book.price_call(call)[1] / 1e9

    full = 3000 * 3e-6 + 10 * 15e-6
    assert baseline(0) == pytest.approx(full)
    assert baseline(2000) == pytest.approx(1000 * 3e-6 + 2000 * 0.3e-6 + 10 * 15e-6)  # Claude reads the prefix
    assert baseline(1000) == pytest.approx(full)  # under Anthropic's 1,024-token minimum nothing is cached
    # the model that answered reported its own cache use: the baseline caches the same tokens, not the estimate
    assert baseline(2000, reads=500) == pytest.approx(2500 * 3e-6 + 500 * 0.3e-6 + 10 * 15e-6)


def test_a_call_claude_served_keeps_its_own_cache_report_in_the_baseline(tmp_path: Path) -> None:
    """The baseline model's own call is the all-Claude setup's call: when it reported no cache use (a stream the
    client left, recorded at the full input price; a prefix under Claude's own minimum) its baseline is its cost, not
    the marked prefix read at 0.1x. The estimate made a Claude-served request show negative savings (test stack:
    claude-sonnet, a marked 1,326-token system prompt, cost $0.004023, baseline $0.0004698)."""
    models = [
        ModelEntry(
            model_name="claude-sonnet",
            litellm_params={"model": "anthropic/claude-sonnet-4-5"},
            model_info={"input_cost_per_token": 3e-6, "output_cost_per_token": 15e-6},
        ),
        ModelEntry(
            model_name="local-llama",
            litellm_params={"model": "openai/local-llama"},
            model_info={"input_cost_per_token": 0, "output_cost_per_token": 0},
        ),
    ]
    book = PriceBook.from_config(_cfg(tmp_path, models))
    for kind in ("messages", "fallback"):
        call = CallRecord("r", "claude-sonnet", "claude-sonnet", 3000, 10, kind=kind, cache_prefix_tokens=2000)
        cost, baseline, _ = book.price_call(call)
        assert baseline == cost, kind
    # another model's call still reads the marked prefix from Claude's cache in the baseline
    local = CallRecord("r", "auto", "local-llama", 3000, 10, cache_prefix_tokens=2000)
    assert book.price_call(local)[1] / 1e9 == pytest.approx(1000 * 3e-6 + 2000 * 0.3e-6 + 10 * 15e-6)


def test_cache_tokens_beyond_the_prompt_never_price_a_row_below_zero(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A provider reporting more cache-read tokens than prompt tokens (seen with the fakes: 1,000 read of a 2-token
    prompt) gave the row a negative cost and baseline (-$0.0012 / -$0.0027 on gpt-4o). Cached tokens are part of the
    prompt: no more are priced as cached than the prompt holds, and the request id is logged."""
    book = PriceBook.from_config(_cfg(tmp_path, [CLAUDE]))
    with caplog.at_level("WARNING", logger="synqra.budget"):
        cost, baseline, _ = book.price_call(
            CallRecord("req-over", "claude-sonnet", "claude-sonnet", 2, 1, cache_read_tokens=1000)
        )
    assert cost >= 0 and baseline >= 0
    assert cost / 1e9 == pytest.approx(2 * 0.3e-6 + 15e-6)  # the 2 prompt tokens as read from the cache
    assert any("req-over" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records), caplog.text
    over = CallRecord("w", "claude-sonnet", "claude-sonnet", 10, 0, cache_write_tokens=8, cache_read_tokens=900)
    assert book.price_call(over)[0] / 1e9 == pytest.approx(8 * 3.75e-6 + 2 * 0.3e-6)  # writes kept, reads cut
    caplog.clear()
    book.price_call(CallRecord("fine", "claude-sonnet", "claude-sonnet", 2002, 10, cache_read_tokens=2000))
    assert not caplog.records  # a report that fits the prompt is priced as it is, without a word


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (0.035, "$0.035"),  # 70% of a $0.05 limit read "$0.04"
        (0.05 * 0.7, "$0.035"),
        (0.05 * 0.95, "$0.0475"),
        (0.005, "$0.005"),  # read "$0.00"
        (0.0045, "$0.0045"),
        (0.5, "$0.50"),
        (0.123456, "$0.123"),
        (0.9996, "$1.00"),
        (1234.5, "$1,234.50"),
        (200, "$200.00"),
        (-0.0012, "-$0.0012"),
        (0.000000412, "$0.000000412"),
    ],
)
def test_dollars_keep_three_significant_digits_below_a_dollar(amount: float, text: str) -> None:
    assert usd_text(amount) == text
