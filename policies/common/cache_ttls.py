"""Whose `cache_control` TTLs the front door checks: Anthropic's API takes "5m" and "1h" only (and refuses any other
with a 400 after synqra reserved for the call); other providers' caches take their own spellings (Gemini and
Vertex AI: "3600s"), passed through unchanged. Claude on Bedrock or Vertex AI reads Anthropic's `cache_control`."""

from __future__ import annotations

from typing import Any

from policies.common.settings import AppConfig

# Hosts of Claude whose calls LiteLLM sends with Anthropic's cache_control (a Claude model on them).
CLAUDE_HOSTS = frozenset({"bedrock", "bedrock_converse", "vertex_ai", "vertex_ai_beta"})


def is_anthropic_api(litellm_params: dict[str, Any]) -> bool:
    """Whether a deployment is called through Anthropic's API shape: provider anthropic, or Claude on a host of it."""
    from litellm import get_llm_provider

    model = str(litellm_params.get("model") or "")
    try:
        name, provider, _, _ = get_llm_provider(
            model=model, custom_llm_provider=litellm_params.get("custom_llm_provider")
        )
    except Exception:  # LiteLLM cannot tell: judge by the name
        name, provider = model, model.split("/", 1)[0] if "/" in model else ""
    return provider == "anthropic" or (provider in CLAUDE_HOSTS and "claude" in name.lower())


def anthropic_ttls_apply(cfg: AppConfig, model: str) -> bool:
    """Whether a request for `model` may be sent to a deployment of Anthropic's API: the model it names (aliases
    resolved) or, when synqra routes that name (the virtual model, intercepted names), any of the routing tiers, and
    any model `router_settings.fallbacks` tries after those (deepseek-chat's "2h" reached Claude on a fallback)."""
    r = cfg.synqra.routing
    name = cfg.canonical(cfg.resolve_requested(model))
    names = set(r.tiers) if r.routes(model) else {name}
    names |= {later for n in list(names) for later in cfg.fallback_chain(n)}
    return any(is_anthropic_api(m.litellm_params) for m in cfg.model_list if m.model_name in names)


def without_ttls(node: Any) -> Any:
    """A copy of a request body without the `ttl` of any `cache_control`: what the shape check reads for a model whose
    provider's TTLs are not Anthropic's (the body sent on is the client's, unchanged)."""
    if isinstance(node, list):
        return [without_ttls(x) for x in node]
    if not isinstance(node, dict):
        return node
    return {
        k: {kk: vv for kk, vv in v.items() if kk != "ttl"}
        if k == "cache_control" and isinstance(v, dict)
        else without_ttls(v)
        for k, v in node.items()
    }
