"""Which cloud models can answer: a key variable not set, a key the provider refused (for a while)."""

from __future__ import annotations

from pathlib import Path

from policies.common.settings import load_config
from proxy.availability import Availability

REPO = Path(__file__).resolve().parents[2]


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_missing_keys_name_their_variable_and_local_models_need_none() -> None:
    cfg = load_config(REPO / "litellm_config.yaml")
    a = Availability(cfg, env={"DEEPSEEK_API_KEY": "sk-x"})
    assert a.reason("deepseek-chat") is None
    assert a.reason("claude-sonnet") == "ANTHROPIC_API_KEY not set"
    assert a.reason("local-llama") is None and a.reason("auto") is None
    assert a.unavailable(["local-llama", "deepseek-chat", "claude-sonnet"]) == {
        "claude-sonnet": "ANTHROPIC_API_KEY not set"
    }


def test_a_refused_key_is_set_aside_then_tried_again() -> None:
    cfg = load_config(REPO / "litellm_config.yaml")
    clock = Clock()
    a = Availability(cfg, env={"DEEPSEEK_API_KEY": "k", "ANTHROPIC_API_KEY": "k", "OPENAI_API_KEY": "k"}, clock=clock)
    a.auth_failed("claude-sonnet", 401)
    assert a.reason("claude-sonnet") == "its provider refused the API key (HTTP 401)"
    clock.t += cfg.synqra.routing.unavailable_retry_s - 1
    assert a.reason("claude-sonnet") is not None
    clock.t += 2
    assert a.reason("claude-sonnet") is None, "after unavailable_retry_s the key is tried again"
