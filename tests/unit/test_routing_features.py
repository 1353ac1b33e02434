"""Structural features of OpenAI- and Anthropic-style requests."""

from __future__ import annotations

import math

import pytest

from policies.routing.features import (
    FEATURE_NAMES,
    embed_text,
    estimate_prompt_tokens,
    fallback_cues,
    feature_vector,
    request_text,
    structural_features,
)
from policies.routing.scorer import HeuristicScorer


def _req(*messages: tuple[str, object], **extra: object) -> dict:
    return {"messages": [{"role": r, "content": c} for r, c in messages], **extra}


def test_plain_question_has_no_special_signals() -> None:
    f = structural_features(_req(("user", "What is your pricing?")))
    assert list(f) == list(FEATURE_NAMES)
    assert f["has_system"] == f["code_fence"] == f["has_tools"] == f["json_mode"] == f["has_images"] == 0
    assert feature_vector(f).shape == (len(FEATURE_NAMES),)


def test_multi_turn_depth_and_last_user_turn() -> None:
    req = _req(("user", "first question"), ("assistant", "an answer"), ("user", "follow-up"))
    rt = request_text(req)
    assert (rt.user_turns, rt.assistant_turns, rt.last_user) == (2, 1, "follow-up")
    f = structural_features(req)
    assert (
        f["has_assistant_turns"] == 1
        and f["log_user_turns"] > structural_features(_req(("user", "x")))["log_user_turns"]
    )


def test_system_prompt_from_message_or_anthropic_field_is_not_embedded() -> None:
    openai = _req(("system", "You are a pirate."), ("user", "hello"))
    anthropic = {
        "system": [{"type": "text", "text": "You are a pirate."}],
        "messages": [{"role": "user", "content": "hello"}],
    }
    for req in (openai, anthropic):
        rt = request_text(req)
        assert rt.system == "You are a pirate." and embed_text(rt, 256) == "hello"
        assert structural_features(req)["has_system"] == 1


def test_the_router_reads_the_length_and_keyword_features_and_no_other_text_cues() -> None:
    """Seven text cues (code lines, maths symbols, numbers, maths words, LaTeX, question marks, answer choices) gave
    the trained router nothing on held-out data (bench/results/routing_eval.md) and cost a tenth of its decision."""
    dropped = {"code_line_frac", "math_symbol_frac", "log_numbers", "log_math_words", "has_latex", "log_questions"}
    assert len(FEATURE_NAMES) == 18 and not dropped & set(FEATURE_NAMES) and "has_choices" not in FEATURE_NAMES
    assert {"log_chars_last_user", "log_lines", "code_fence", "has_tools", "litellm_complexity"} <= set(FEATURE_NAMES)
    f = structural_features(_req(("user", "Two words\tthree  four\n five\n \n")))
    assert f["log_words_last_user"] == pytest.approx(math.log1p(5)) and f["log_lines"] == pytest.approx(math.log1p(2))


def test_code_and_maths_signals_of_the_fallback_rule() -> None:
    code = "Fix this:\n```python\ndef f(x):\n    return x +\n```"
    maths = "Solve the equation $3x^2 + 2x - 5 = 0$ and compute the sum of the roots."
    fc, fm = structural_features(_req(("user", code))), structural_features(_req(("user", maths)))
    assert fc["code_fence"] == 1 and fallback_cues(code)["code_line_frac"] > 0.3
    assert fallback_cues(maths)["log_math_words"] > 0 and fallback_cues(maths)["has_latex"] == 1
    plain = "Tell me about your opening hours"
    h = HeuristicScorer()
    # The structural rule reads the cues itself: code and maths score above a plain question of like length.
    base = h.score_request(structural_features(_req(("user", plain))), plain)
    assert h.score_request(fc, code) > base and h.score_request(fm, maths) > base


def test_tools_json_mode_max_tokens() -> None:
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    f = structural_features(
        _req(("user", "weather?"), tools=tools, response_format={"type": "json_object"}, max_tokens=300)
    )
    assert f["has_tools"] == 1 and f["json_mode"] == 1 and f["has_max_tokens"] == 1 and f["log_max_tokens"] > 5
    tool_turn = _req(("user", "x"))
    tool_turn["messages"].append({"role": "tool", "tool_call_id": "1", "content": "22C"})
    assert structural_features(tool_turn)["has_tool_messages"] == 1


def test_images_openai_and_anthropic_parts() -> None:
    openai = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": "data:,"}},
    ]
    anthropic = [{"type": "image", "source": {"type": "base64", "data": ""}}, {"type": "text", "text": "Describe it"}]
    for content in (openai, anthropic):
        req = _req(("user", content))
        assert structural_features(req)["has_images"] == 1
        assert estimate_prompt_tokens(req) >= 1000  # an image is never "short"


def test_embed_text_truncates_the_head_at_a_word_boundary() -> None:
    rt = request_text(_req(("user", "word " * 200)))
    t = embed_text(rt, 100)
    assert len(t) <= 100 and t.startswith("word word") and not t.endswith(" ")
    assert embed_text(request_text(_req(("user", [{"type": "image_url", "image_url": {"url": "x"}}]))), 100) == " "


def test_long_context_estimate_grows_with_text() -> None:
    assert estimate_prompt_tokens(_req(("user", "a " * 10000))) > 5000


@pytest.mark.parametrize("bad", [{"messages": "hi"}, {"messages": ["hi"]}])
def test_malformed_requests_raise_value_error(bad: dict) -> None:
    with pytest.raises(ValueError):
        structural_features(bad)
