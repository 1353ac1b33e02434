"""What a call costs: tokens x the model's per-token prices.

Prices come from the model_list entry's `model_info` (input_cost_per_token /
output_cost_per_token) when set, else from LiteLLM's cost map for the entry's
`litellm_params.model`. The local backends' aliases cost 0 unless priced.
A paid model with no price anywhere is a configuration error, raised when the
price book is built, never guessed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from policies.budget.records import CallRecord, to_nano
from policies.budget.token_count import PromptCounter

log = logging.getLogger("synqra.budget")

if TYPE_CHECKING:
    from policies.common.settings import AppConfig, ModelEntry


class PricingError(ValueError):
    """No usable price for a model; the message says which key to set."""


@dataclass(frozen=True)
class ModelPrice:
    input_per_token: float
    output_per_token: float
    max_output_tokens: int | None = None
    # The provider model name LiteLLM knows (for its tokenizer).
    litellm_model: str = ""
    # A prompt token written to the provider's cache (Anthropic: 1.25x the input price); None: the input price.
    cache_write_per_token: float | None = None
    # One written for Anthropic's one-hour cache TTL (2x the input price); None: cache_write_per_token.
    cache_write_1h_per_token: float | None = None
    # The model's context window: the prompt a call carrying stored context (a Responses previous_response_id) may
    # be billed for. None: not known.
    max_input_tokens: int | None = None
    # A prompt token read from the provider's cache (Claude 0.1x the input price, GPT-4o 0.5x, DeepSeek's cache
    # hits 0.1x); None: the input price.
    cache_read_per_token: float | None = None

    @property
    def free(self) -> bool:
        return self.input_per_token == 0 and self.output_per_token == 0


# Anthropic caches no prefix shorter than this (Claude Sonnet and Opus; Haiku's minimum is 2,048).
MIN_CACHED_PREFIX_TOKENS = 1024


def call_cost(price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> float:
    return prompt_tokens * price.input_per_token + completion_tokens * price.output_per_token


def cache_adjustment(price: ModelPrice, writes: int, reads: int, one_hour: bool = False) -> float:
    """What a call's cached prompt tokens cost beside the input price they are counted at: `writes` tokens written
    to the provider's cache cost more (never less: LiteLLM's map gives DeepSeek a write price of 0, and its cache
    misses are billed at the input price), `reads` tokens read from it less (never more). `one_hour`: written for
    Anthropic's one-hour TTL, at its own price."""
    per = price.cache_write_1h_per_token if one_hour else None
    per = per if per is not None else price.cache_write_per_token
    premium = writes * max(0.0, per - price.input_per_token) if writes and per is not None else 0.0
    read = price.cache_read_per_token
    discount = reads * max(0.0, price.input_per_token - read) if reads and read is not None else 0.0
    return premium - discount


def call_cache_adjustment(price: ModelPrice, call: CallRecord) -> float:
    """`cache_adjustment` of a call's cached prompt tokens at `price`: its writes at the price of the TTL each was
    written for when the provider said (Anthropic splits them: a request may mix one-hour and five-minute
    breakpoints), else all at the TTL the request asked."""
    if call.cache_write_1h_tokens is None:
        return cache_adjustment(price, call.cache_write_tokens, call.cache_read_tokens, call.cache_one_hour)
    hour = min(call.cache_write_1h_tokens, call.cache_write_tokens)
    return cache_adjustment(price, call.cache_write_tokens - hour, call.cache_read_tokens) + cache_adjustment(
        price, hour, 0, one_hour=True
    )


def _cached_within_prompt(call: CallRecord) -> CallRecord:
    """`call` with no more cached tokens than its prompt holds (they are part of it): a provider reporting more
    (seen with the fakes: 1,000 read of a 2-token prompt) priced the row below zero. Writes are kept first (billed
    above the input price), reads cut; logged with the request id."""
    prompt = max(0, call.prompt_tokens)
    if call.cache_write_tokens + call.cache_read_tokens <= prompt:
        return call
    writes = min(call.cache_write_tokens, prompt)
    reads = min(call.cache_read_tokens, prompt - writes)
    log.warning(
        "request %s: %s reported %d cache-write and %d cache-read tokens of a %d-token prompt; priced as %d and %d",
        call.request_id,
        call.served_model,
        call.cache_write_tokens,
        call.cache_read_tokens,
        call.prompt_tokens,
        writes,
        reads,
    )
    hour = None if call.cache_write_1h_tokens is None else min(call.cache_write_1h_tokens, writes)
    return replace(call, cache_write_tokens=writes, cache_read_tokens=reads, cache_write_1h_tokens=hour)


CACHE_WRITE_KEY, CACHE_WRITE_1H_KEY = "cache_creation_input_token_cost", "cache_creation_input_token_cost_above_1hr"
CACHE_READ_KEY = "cache_read_input_token_cost"


def _cache_price(*sources: Mapping[str, Any], key: str = CACHE_WRITE_KEY) -> float | None:
    for src in sources:
        if src.get(key) is not None:
            return float(src[key])
    return None


def worst_case_cost(
    price: ModelPrice, prompt_tokens: int, max_tokens: int | None, default_max_output: int, choices: int = 1
) -> float:
    """Cost if the model writes its whole allowance: max_tokens, else its output ceiling, for each of
    `choices` completions (OpenAI's `n`: every choice is billed as output)."""
    ceiling = max_tokens if max_tokens is not None else (price.max_output_tokens or default_max_output)
    return call_cost(price, prompt_tokens, ceiling * max(1, choices))


def _cost_map_entry(litellm_model: str) -> dict[str, Any] | None:
    import litellm  # the proxy has it loaded already; pure price lookups need not

    try:
        info: Mapping[str, Any] | None = litellm.get_model_info(litellm_model)
    except Exception:  # LiteLLM raises several types for "not mapped"
        info = litellm.model_cost.get(litellm_model.split("/", 1)[-1])
    if not info or info.get("input_cost_per_token") is None:
        return None
    return dict(info)


def entry_price(entry: ModelEntry, local_aliases: Iterable[str] = ()) -> ModelPrice | None:
    """A model_list entry's price, or None when nothing prices it."""
    info = entry.model_info
    lm = str(entry.litellm_params.get("model", ""))
    max_out = info.get("max_output_tokens") or info.get("max_tokens")
    mapped = _cost_map_entry(lm) if lm else None
    max_in = info.get("max_input_tokens") or (mapped or {}).get("max_input_tokens")
    max_in = int(max_in) if max_in else None
    if "input_cost_per_token" in info or "output_cost_per_token" in info:
        return ModelPrice(
            float(info.get("input_cost_per_token") or 0),
            float(info.get("output_cost_per_token") or 0),
            int(max_out) if max_out else None,
            lm,
            # the cost map's cache prices when the entry sets its token prices only (no map entry without a model)
            _cache_price(info, mapped or {}),
            _cache_price(info, mapped or {}, key=CACHE_WRITE_1H_KEY),
            max_in,
            _cache_price(info, mapped or {}, key=CACHE_READ_KEY),
        )
    if entry.model_name in set(local_aliases):
        return ModelPrice(0.0, 0.0, int(max_out) if max_out else None, lm)
    if mapped is None:
        return None
    max_out = max_out or mapped.get("max_output_tokens") or mapped.get("max_tokens")
    return ModelPrice(
        float(mapped["input_cost_per_token"]),
        float(mapped.get("output_cost_per_token") or 0),
        int(max_out) if max_out else None,
        lm,
        _cache_price(info, mapped),
        _cache_price(info, mapped, key=CACHE_WRITE_1H_KEY),
        max_in,
        _cache_price(info, mapped, key=CACHE_READ_KEY),
    )


class PriceBook:
    """Prices of every model_list entry, by model_name, plus the baseline model."""

    def __init__(self, prices: dict[str, ModelPrice], baseline_model: str, default_max_output: int = 8192) -> None:
        if baseline_model not in prices:
            raise PricingError(
                f"synqra.budget.baseline_model {baseline_model!r} has no price: add it to model_list "
                "with model_info.input_cost_per_token / output_cost_per_token"
            )
        self.prices = prices
        self.baseline_model = baseline_model
        self.default_max_output = default_max_output
        self.counter = PromptCounter()

    @classmethod
    def from_config(cls, cfg: AppConfig, required: Sequence[str] = ()) -> PriceBook:
        """Price every entry; `required` names (tiers) must be priced or this raises."""
        s = cfg.synqra
        local = {s.backends.llama.model_alias, s.backends.embed.model_alias}
        prices: dict[str, ModelPrice] = {}
        for entry in cfg.model_list:
            p = entry_price(entry, local)
            if p is not None:
                prices[entry.model_name] = p
        missing = [n for n in required if n not in prices]
        if missing:
            raise PricingError(
                f"no price for model(s) {missing}: LiteLLM's cost map does not know their litellm_params.model; "
                "set model_info.input_cost_per_token and output_cost_per_token (0 for local models)"
            )
        return cls(prices, s.budget.baseline_model, s.budget.default_max_output_tokens)

    def price(self, model_name: str) -> ModelPrice:
        p = self.prices.get(model_name)
        if p is None:
            raise PricingError(
                f"model {model_name!r} has no price: set model_info.input_cost_per_token / "
                "output_cost_per_token in its model_list entry"
            )
        return p

    def is_free(self, model_name: str) -> bool:
        return self.price(model_name).free

    def cost(self, model_name: str, prompt_tokens: int, completion_tokens: int) -> float:
        return call_cost(self.price(model_name), prompt_tokens, completion_tokens)

    def worst_case(self, model_name: str, prompt_tokens: int, max_tokens: int | None, choices: int = 1) -> float:
        return worst_case_cost(self.price(model_name), prompt_tokens, max_tokens, self.default_max_output, choices)

    def baseline(self, prompt_tokens: int, completion_tokens: int) -> float:
        return call_cost(self.prices[self.baseline_model], prompt_tokens, completion_tokens)

    def price_call(self, call: CallRecord) -> tuple[int, int, bool]:
        """(cost, baseline cost) in nano-dollars and whether the served model is free.

        Embeddings claim no savings (the chat baseline cannot embed): baseline = cost. The baseline
        is the all-Claude setup's one call per client request: a call within a request already
        counted (an escalation) adds none.
        """
        call = _cached_within_prompt(call)
        price = self.price(call.served_model)
        cost = (
            call.cost_usd
            if call.cost_usd is not None
            else call_cost(price, call.prompt_tokens, call.completion_tokens) + call_cache_adjustment(price, call)
        )
        if call.kind == "embedding":
            baseline = cost
        elif not call.counts_request:
            baseline = 0.0
        else:  # the all-Claude setup would have written and read the same prompt to and from Claude's cache
            baseline = self.baseline(call.prompt_tokens, call.completion_tokens)
            claude = self.prices[self.baseline_model]
            if call.cache_write_tokens or call.cache_read_tokens:
                baseline += call_cache_adjustment(claude, call)
            elif call.served_model != self.baseline_model and call.cache_prefix_tokens >= MIN_CACHED_PREFIX_TOKENS:
                # The client marked a prefix for Claude's cache and the model that answered cached none of it: Claude
                # would have read it from its cache (on a session's first turn it would have written it, so the
                # savings claimed err low, never high). Claude's own call is the all-Claude setup's call: what it
                # reported (nothing cached, or a stream left before its usage came) is its baseline.
                baseline += cache_adjustment(claude, 0, call.cache_prefix_tokens)
        return to_nano(max(0.0, cost)), to_nano(max(0.0, baseline)), price.free  # no row gives money back

    def count_prompt_tokens(
        self, model_name: str, messages: list[dict[str, Any]] | None = None, text: str | None = None
    ) -> int:
        """Prompt tokens as LiteLLM counts them for the model (its tokenizer, else tiktoken): `litellm.token_counter`'s
        count, each text counted once (policies/budget/token_count.py)."""
        lm = self.prices[model_name].litellm_model if model_name in self.prices else model_name
        return self.counter.count(lm, messages=messages, text=text)
