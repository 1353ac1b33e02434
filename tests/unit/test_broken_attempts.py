"""Which of a call's failed attempts the provider bills although nothing of them came through: those whose response
broke off after it opened (LiteLLM's record of failed attempts, `previous_models`, names them)."""

from __future__ import annotations

from pathlib import Path

from policies.common.request_state import STATE_KEY, RequestState
from policies.common.settings import load_config
from proxy.litellm_state import broken_attempts, is_broken_response

REPO = Path(__file__).resolve().parents[2]
AIOHTTP_CUT = "Response payload is not completed: <TransferEncodingError: 400, message='Not enough data'>"
HTTPX_CUT = "peer closed connection without sending complete message body (incomplete chunked read)"


def failure(group: str, kind: str, message: str) -> dict[str, str]:
    return {"model_group": group, "exception_type": kind, "exception_string": message}


def test_only_a_response_that_broke_off_after_it_opened_is_billed() -> None:
    assert is_broken_response(f"litellm.MidStreamFallbackError: litellm.APIConnectionError: {AIOHTTP_CUT}")
    assert is_broken_response(HTTPX_CUT)
    for message in (
        "Cannot connect to host 127.0.0.1:9 [Connection refused]",
        "litellm.RateLimitError: RateLimitError: OpenAIException - rate limited",
        "litellm.Timeout: Connection timed out after 30.0 seconds.",
        "litellm.MidStreamFallbackError: overloaded_error: Overloaded",  # an error event instead of an answer
    ):
        assert not is_broken_response(message), message


def test_each_failed_attempt_is_seen_once_under_its_own_group() -> None:
    cfg = load_config(REPO / "litellm_config.yaml")
    state = RequestState.new(call_type="acompletion", route="deepseek-chat")
    failures = [failure("deepseek-chat", "MidStreamFallbackError", AIOHTTP_CUT)]
    kwargs = {"metadata": {STATE_KEY: state, "previous_models": failures}}
    assert broken_attempts(cfg, state, kwargs) == [(1, "deepseek-chat")]
    assert broken_attempts(cfg, state, kwargs) == []  # the next attempt's hook: already accounted for
    failures += [
        failure("claude-sonnet", "RateLimitError", "rate limited"),  # refused: nothing billed
        failure("claude-sonnet", "ReadError", HTTPX_CUT),
    ]
    assert broken_attempts(cfg, state, kwargs) == [(3, "claude-sonnet")]
