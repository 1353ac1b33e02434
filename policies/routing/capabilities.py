"""What each tier can take (context window, vision, tools), as plain data for tiers.py.

Source order: the model's `model_info` in litellm_config.yaml, then LiteLLM's
model map (`litellm.get_model_info` on `litellm_params.model`), then the
`synqra.routing.vision_tiers` / `tool_tiers` lists (which can only add support).
Whether a model keeps Responses API conversations is synqra's own `model_info.stores_responses` (no
map has it). Read once at start-up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from policies.routing.tiers import TierInfo

log = logging.getLogger("synqra.routing")

ModelInfoLookup = Callable[[str], dict[str, Any] | None]


def litellm_model_info(model: str) -> dict[str, Any] | None:
    """LiteLLM's model map entry, or None for models it does not know (local ones)."""
    try:
        import litellm

        return dict(litellm.get_model_info(model))
    except Exception:  # litellm raises plain Exception for unmapped models
        return None


def litellm_supported_params(model: str) -> list[str] | None:
    """The OpenAI parameters LiteLLM sends on for a provider model string (it drops the others), or None."""
    try:
        import litellm

        return list(litellm.get_supported_openai_params(model=model) or []) or None
    except Exception:  # a model string LiteLLM cannot place
        return None


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def tier_info(
    name: str,
    litellm_model: str | None,
    model_info: dict[str, Any],
    vision_tiers: list[str],
    tool_tiers: list[str],
    lookup: ModelInfoLookup = litellm_model_info,
    params_lookup: Callable[[str], list[str] | None] = litellm_supported_params,
) -> TierInfo:
    mapped = (lookup(litellm_model) if litellm_model else None) or {}
    params = params_lookup(litellm_model) if litellm_model else None
    ctx = _first(model_info.get("max_input_tokens"), mapped.get("max_input_tokens"), mapped.get("max_tokens"))
    vision = _first(model_info.get("supports_vision"), mapped.get("supports_vision"))
    tools = _first(model_info.get("supports_function_calling"), mapped.get("supports_function_calling"))
    reasoning = _first(model_info.get("supports_reasoning"), mapped.get("supports_reasoning"))
    return TierInfo(
        name=name,
        max_input_tokens=int(ctx) if ctx else None,
        supports_vision=True if name in vision_tiers else (bool(vision) if vision is not None else None),
        supports_function_calling=True if name in tool_tiers else (bool(tools) if tools is not None else None),
        supports_reasoning=bool(reasoning) if reasoning is not None else None,
        stores_responses=bool(model_info.get("stores_responses")),
        supports_n=None if params is None else "n" in params,
        supports_logprobs=None if params is None else "logprobs" in params,
    )


def model_info_of(cfg: Any, name: str, lookup: ModelInfoLookup = litellm_model_info) -> TierInfo:
    """TierInfo of any model_list name of an AppConfig (a tier or a model asked for by name)."""
    r = cfg.synqra.routing
    entry = cfg.model(name)
    model = entry.litellm_params.get("model") if entry else None
    info = dict(entry.model_info) if entry else {}
    return tier_info(name, model, info, r.vision_tiers, r.tool_tiers, lookup)


def tier_infos_from_config(cfg: Any, lookup: ModelInfoLookup = litellm_model_info) -> list[TierInfo]:
    """TierInfo for every `synqra.routing.tiers` entry of an AppConfig."""
    out = [model_info_of(cfg, name, lookup) for name in cfg.synqra.routing.tiers]
    log.info("routing tiers: %s", out)
    return out
