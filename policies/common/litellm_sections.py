"""What of litellm_config.yaml is LiteLLM's: the top-level sections and the `router_settings` keys LiteLLM (the
release pyproject.toml pins) reads. LiteLLM ignores any other router_settings key with a log warning and any other
section without a word, so a typo (`router_setting:`, `fallback:`) silently drops every fallback: load_config
refuses it at start, naming it. Kept as tables, not read from LiteLLM, so reading a config does not import LiteLLM
(seconds); tests/unit/test_settings.py checks them against the installed LiteLLM."""

from __future__ import annotations

from typing import Any

# ConfigYAML's fields plus the sections LiteLLM's ProxyConfig.load_config reads besides them (and `include`,
# which it resolves first); `synqra` is ours.
TOP_LEVEL = frozenset(
    {
        # litellm.proxy._types.ConfigYAML
        "environment_variables",
        "general_settings",
        "litellm_settings",
        "model_list",
        "router_settings",
        "worker_registry",
        # read by ProxyConfig.load_config
        "agent_list",
        "agents",
        "assistant_settings",
        "callback_settings",
        "classifier_plugin",
        "credential_list",
        "default_vertex_config",
        "files_settings",
        "finetune_settings",
        "guardrails",
        "include",
        "mcp_servers",
        "mcp_tools",
        "pass_through_endpoints",
        "plugins",
        "policies",
        "policy_attachments",
        "prompts",
        "sandbox_tools",
        "search_tools",
        "vector_store_registry",
        "synqra",
    }
)

# litellm.Router.get_valid_args() less proxy_server's ROUTER_SETTINGS_MANAGED_OUTSIDE_CONFIG: what
# router_settings passes to the Router.
ROUTER_SETTINGS = frozenset(
    {
        "alerting_config",
        "allowed_fails",
        "allowed_fails_policy",
        "background_health_check_model_groups",
        "cache_kwargs",
        "cache_responses",
        "caching_groups",
        "client_ttl",
        "content_policy_fallbacks",
        "context_window_fallbacks",
        "cooldown_time",
        "debug_level",
        "default_fallbacks",
        "default_litellm_params",
        "default_max_parallel_requests",
        "default_priority",
        "deployment_affinity_ttl_seconds",
        "disable_cooldowns",
        "enable_health_check_routing",
        "enable_pre_call_checks",
        "enable_tag_filtering",
        "enable_weighted_failover",
        "fallback_on_unsupported_params",
        "fallbacks",
        "guardrail_list",
        "health_check_ignore_transient_errors",
        "health_check_staleness_threshold",
        "max_fallbacks",
        "model_group_affinity_config",
        "model_group_alias",
        "model_group_retry_policy",
        "num_retries",
        "optional_pre_call_checks",
        "plugins",
        "polling_interval",
        "provider_budget_config",
        "redis_db",
        "redis_host",
        "redis_password",
        "redis_port",
        "redis_url",
        "retry_after",
        "retry_policy",
        "routing_groups",
        "routing_strategy",
        "routing_strategy_args",
        "set_verbose",
        "stream_timeout",
        "tag_filtering_match_any",
        "tag_routing_prefix",
        "timeout",
    }
)


def unknown_key(raw: dict[str, Any]) -> tuple[str, str] | None:
    """(dotted key, why) of the first key in a LiteLLM part of the file that LiteLLM does not read, else None."""
    for key in raw:
        if key not in TOP_LEVEL:
            return str(key), "not a section LiteLLM or synqra reads"
    router = raw.get("router_settings")
    if router is not None and not isinstance(router, dict):
        return "router_settings", f"must be a mapping, got {type(router).__name__}"
    for key in router or {}:
        if key not in ROUTER_SETTINGS:
            return f"router_settings.{key}", "not a LiteLLM Router setting (LiteLLM would ignore it)"
    return None
