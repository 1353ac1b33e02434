"""An OpenAI client's `reasoning_effort`, sent to Claude as a thinking budget Anthropic accepts.

OpenAI's `reasoning_effort` has no tie to the output allowance. LiteLLM turns it into a fixed Anthropic thinking
budget (low 1,024 ... high 4,096, max 16,384) whatever `max_tokens` is, and Anthropic refuses a budget that is not
below `max_tokens` with a 400 that an OpenAI client, or an `auto` one routed to Claude, could not have foreseen.
LiteLLM caps the budget this way only for the adaptive thinking it translates down; here its own mapping and cap
are applied to `reasoning_effort` too, before the call."""

from __future__ import annotations

from typing import Any

from litellm import get_llm_provider
from litellm.llms.anthropic.chat.transformation import AnthropicConfig

# The efforts LiteLLM maps to a budget; any other value is left for LiteLLM to refuse in its own words.
_BUDGETED = frozenset({"minimal", "low", "medium", "high", "xhigh", "max"})


def fit_reasoning_effort(kwargs: dict[str, Any], provider_model: str) -> str | None:
    """Replace `reasoning_effort` in a call's `kwargs` by the thinking budget LiteLLM would send, kept below the
    allowance, or drop it when the allowance cannot hold Anthropic's least budget (1,024) and thinking cannot be
    had; what was done, or None when the call is left as it is. `provider_model`: the deployment's LiteLLM model."""
    effort = kwargs.get("reasoning_effort")
    effort = effort.get("effort") if isinstance(effort, dict) else effort
    allowance = kwargs.get("max_completion_tokens") or kwargs.get("max_tokens")  # LiteLLM sends either as max_tokens
    if effort not in _BUDGETED or "thinking" in kwargs or not isinstance(allowance, int):
        return None
    try:
        model, provider, _, _ = get_llm_provider(provider_model)
    except Exception:  # noqa: BLE001 - a model LiteLLM cannot place is not one this fit is for
        return None
    if provider != "anthropic":
        return None
    thinking = AnthropicConfig.map_reasoning_effort(effort, model, provider)
    if thinking is None or thinking.get("type") != "enabled":  # adaptive thinking has no budget to fit
        return None
    fitted = AnthropicConfig.cap_thinking_budget_to_max_tokens(thinking, allowance)
    if fitted == thinking:
        return None
    del kwargs["reasoning_effort"]
    if fitted is None:
        return f"reasoning_effort {effort} dropped: max_tokens {allowance} cannot hold a thinking budget"
    kwargs["thinking"] = dict(fitted)
    return f"reasoning_effort {effort} sent as a thinking budget of {fitted['budget_tokens']}"
