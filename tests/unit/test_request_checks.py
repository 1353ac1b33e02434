from __future__ import annotations

import pytest

from policies.common.request_checks import check_context_window, check_max_tokens, check_messages


@pytest.mark.parametrize("value", [0, -1, "10", 1.5, True])
def test_bad_max_tokens(value) -> None:
    assert "max_tokens" in check_max_tokens({"max_tokens": value})


def test_good_max_tokens_and_absent() -> None:
    assert check_max_tokens({"max_tokens": 10}) is None
    assert check_max_tokens({}) is None


def test_messages_shape() -> None:
    assert check_messages({"messages": []})
    assert check_messages({"messages": ["hi"]})
    assert check_messages({"messages": [{"role": "user", "content": "x"}]}) is None


def test_context_window() -> None:
    small = {"messages": [{"role": "user", "content": "x" * 100}]}
    big = {"messages": [{"role": "user", "content": [{"type": "text", "text": "x" * 100_000}]}]}
    assert check_context_window(small, "m", 2048) is None
    assert "too long" in check_context_window(big, "m", 2048)
    assert check_context_window(big, "m", None) is None


def test_context_window_counts_system_blocks_like_a_system_string() -> None:
    """The Messages API's `system` may be a list of text blocks: a long one is as long as the string."""
    long = "Policy clause about refunds and returns for the store. " * 300  # ~16,500 chars
    msgs = [{"role": "user", "content": "Summarise the policy."}]
    as_string = {"messages": msgs, "system": long}
    as_blocks = {
        "messages": msgs,
        "system": [{"type": "text", "text": long[:8000]}, {"type": "text", "text": long[8000:]}],
    }
    assert "too long" in check_context_window(as_string, "local-llama", 2048)
    assert "too long" in check_context_window(as_blocks, "local-llama", 2048)
    short_blocks = {"messages": msgs, "system": [{"type": "text", "text": "Be brief."}, {"type": "image"}, "junk"]}
    assert check_context_window(short_blocks, "local-llama", 2048) is None
