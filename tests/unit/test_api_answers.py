"""Token counts for the ledger when a provider's own figures are missing: streams cut short or left by their
client (`delivered_usage`), and logged answers whose usage is partly or wholly absent (`checked_usage`)."""

from __future__ import annotations

import json
from typing import Any

import litellm
import pytest
from litellm.types.llms.openai import (
    OutputTextDeltaEvent,
    ResponseCompletedEvent,
    ResponseCreatedEvent,
    ResponsesAPIResponse,
)
from litellm.types.utils import CacheCreationTokenDetails, PromptTokensDetailsWrapper

from policies.common.api_answers import (
    cache_tokens_of,
    carries_answer,
    checked_usage,
    delivered_usage,
    event_type,
    usage_of,
)

ANSWER = " ".join(f"word{i}" for i in range(40))
MESSAGES = [{"role": "user", "content": "Summarise this: " + " ".join(f"fact{i}" for i in range(300))}]


def _count(text: str) -> int:
    return int(litellm.token_counter(model="gpt-4o", text=text, count_response_tokens=True))


def test_a_responses_event_type_is_its_wire_name() -> None:
    ev = OutputTextDeltaEvent(
        type="response.output_text.delta", item_id="m", output_index=0, content_index=0, delta="x"
    )
    assert str(ev.type) != "response.output_text.delta", "LiteLLM's enum member: str() is not the wire name"
    assert event_type(ev) == "response.output_text.delta"
    assert event_type({"type": "message_start"}) == "message_start" and event_type({}) == ""


def test_an_abandoned_responses_stream_of_litellm_events_counts_its_deltas() -> None:
    # What the relay keeps of a /v1/responses stream: LiteLLM's event objects, not SSE text.
    created = ResponseCreatedEvent(
        type="response.created",
        response=ResponsesAPIResponse(id="r", created_at=0, output=[], status="in_progress", model="gpt-4o"),
    )
    words = ANSWER.split(" ")[:20]
    deltas = [
        OutputTextDeltaEvent(
            type="response.output_text.delta", item_id="m", output_index=0, content_index=0, delta=w + " "
        )
        for w in words
    ]
    usage = delivered_usage([created, *deltas], "aresponses", "gpt-4o", [{"role": "user", "content": "Tell me"}])
    assert usage["completion_tokens"] == _count(" ".join(words)) > 20
    assert usage["prompt_tokens"] > 0


def _sse(event: dict) -> bytes:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()


def test_a_message_start_reporting_a_zero_prompt_is_no_figure() -> None:
    # LiteLLM's Anthropic adapter opens an OpenAI-protocol model's /v1/messages stream with input_tokens 0.
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 0, "output_tokens": 0}}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word0 word1 "}}
    messages = [{"role": "user", "content": "Tell me a long story about France."}]
    usage = delivered_usage([_sse(start), _sse(delta)], "anthropic_messages", "gpt-4o", messages)
    assert usage["prompt_tokens"] == litellm.token_counter(model="gpt-4o", messages=messages) > 0
    # The provider's own prompt figure, when it gives one, still stands.
    start["message"]["usage"]["input_tokens"] = 7
    assert delivered_usage([_sse(start), _sse(delta)], "anthropic_messages", "gpt-4o", messages)["prompt_tokens"] == 7


def test_a_cut_stream_keeps_the_prompt_anthropic_read_from_or_wrote_to_its_cache() -> None:
    """message_start's input_tokens leave out the cached prompt, reported beside them and billed all the same."""
    usage = {"input_tokens": 3, "cache_read_input_tokens": 2000, "cache_creation_input_tokens": 500, "output_tokens": 1}
    start = {"type": "message_start", "message": {"usage": usage}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "word0 word1 "}}
    got = delivered_usage([_sse(start), _sse(delta)], "anthropic_messages", "claude-sonnet-4-5", [])
    assert (got["prompt_tokens"], got["cache_read_tokens"], got["cache_write_tokens"]) == (2503, 2000, 500)


def _anthropic_stream(words: list[str], final_output_tokens: int | None) -> list[bytes]:
    """An Anthropic Messages stream as LiteLLM relays it (SSE bytes), up to its message_delta if one is given."""
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 3, "output_tokens": 1}}}
    block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    deltas = [
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w + " "}} for w in words
    ]
    events: list[dict[str, Any]] = [start, block, *deltas, {"type": "content_block_stop", "index": 0}]
    if final_output_tokens is not None:
        events.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn"},
                "usage": {"output_tokens": final_output_tokens},
            }
        )
    return [_sse(e) for e in events]


def test_a_stream_left_after_the_providers_final_count_is_recorded_at_that_count() -> None:
    """A client that leaves once it has the answer and its usage (Anthropic's message_delta, OpenAI's usage chunk),
    before the stream's end: the provider bills what it reported, not LiteLLM's count of the text (here twice as
    many tokens: 'word7' is two of tiktoken's)."""
    words = ANSWER.split(" ")[:20]
    counted = _count(" ".join(words))
    assert counted > 30, counted
    messages = [{"role": "user", "content": "Count"}]
    usage = delivered_usage(_anthropic_stream(words, 20), "anthropic_messages", "claude-sonnet", messages)
    assert usage == {"prompt_tokens": 3, "completion_tokens": 20}
    chunks: list[dict[str, Any]] = [{"choices": [{"index": 0, "delta": {"content": w + " "}}]} for w in words]
    chunks += [
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        {"choices": [{"index": 0, "delta": {}}], "usage": {"prompt_tokens": 3, "completion_tokens": 20}},
    ]
    usage = delivered_usage(chunks, "acompletion", "claude-sonnet", messages)
    assert usage == {"prompt_tokens": 3, "completion_tokens": 20}
    # The Responses API's closing event nests its usage in the response (LiteLLM's event objects).
    deltas = [
        OutputTextDeltaEvent(
            type="response.output_text.delta", item_id="m", output_index=0, content_index=0, delta=w + " "
        )
        for w in words
    ]
    done = ResponseCompletedEvent(
        type="response.completed",
        response=ResponsesAPIResponse(
            id="r",
            created_at=0,
            output=[],
            status="completed",
            model="gpt-4o",
            usage={"input_tokens": 3, "output_tokens": 20, "total_tokens": 23},
        ),
    )
    usage = delivered_usage([*deltas, done], "aresponses", "gpt-4o", messages)
    assert usage == {"prompt_tokens": 3, "completion_tokens": 20}


def test_a_usage_report_the_answer_went_on_after_is_no_final_count() -> None:
    """message_start's output_tokens (1) counts the answer before it; the words after it are LiteLLM's count. A
    final figure far below the text (LiteLLM's Anthropic adapter reports 0 for a chat model) is no figure either."""
    words = ANSWER.split(" ")[:20]
    messages = [{"role": "user", "content": "Count"}]
    counted = _count(" ".join(words))
    assert delivered_usage(_anthropic_stream(words, None), "anthropic_messages", "gpt-4o", messages) == {
        "prompt_tokens": 3,
        "completion_tokens": counted,
    }
    usage = delivered_usage(_anthropic_stream(words, 0), "anthropic_messages", "gpt-4o", messages)
    assert usage["completion_tokens"] == counted


def _chat(text: str) -> litellm.ModelResponse:
    return litellm.ModelResponse(choices=[{"index": 0, "message": {"role": "assistant", "content": text}}])


KWARGS = {"model": "claude-sonnet", "messages": MESSAGES}


def test_plausible_figures_stand() -> None:
    # The fake providers' one token per word: under LiteLLM's count, well above a quarter of it.
    reported = {"prompt_tokens": 302, "completion_tokens": 40}
    assert checked_usage(reported, KWARGS, _chat(ANSWER)) == reported
    assert checked_usage({"prompt_tokens": 5, "completion_tokens": 0}, KWARGS, _chat("")) == {
        "prompt_tokens": 5,
        "completion_tokens": 0,
    }


def test_a_real_figure_is_not_recounted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook runs on every answer: a figure above a sixteenth of the text's bytes stands without a tokenizer
    run (prose runs at about 4 bytes a token; a lost figure is 0 or 1)."""
    prose = "The shipment of order 4411 was late again, said the customer, and we apologise for it. " * 15
    reported = {"prompt_tokens": 302, "completion_tokens": _count(prose)}
    calls: list[str] = []
    real = litellm.token_counter
    monkeypatch.setattr(litellm, "token_counter", lambda *a, **k: calls.append("count") or real(*a, **k))
    assert checked_usage(reported, KWARGS, _chat(prose)) == reported and calls == []
    assert checked_usage({"prompt_tokens": 302, "completion_tokens": 1}, KWARGS, _chat(prose))["completion_tokens"] > 1
    assert calls == ["count"]


def test_an_answer_reported_far_below_its_text_takes_litellms_count() -> None:
    # message_start's output_tokens (1) when message_delta carried no usage.
    usage = checked_usage({"prompt_tokens": 302, "completion_tokens": 1}, KWARGS, _chat(ANSWER))
    assert usage == {"prompt_tokens": 302, "completion_tokens": _count(ANSWER)}


def test_a_zero_prompt_takes_litellms_count() -> None:
    usage = checked_usage({"prompt_tokens": 0, "completion_tokens": 40}, KWARGS, _chat(ANSWER))
    assert usage["prompt_tokens"] == litellm.token_counter(model="claude-sonnet", messages=MESSAGES) > 300
    assert usage["completion_tokens"] == 40
    with_system = {**KWARGS, "system": "You answer in French. " * 20}
    assert (
        checked_usage({"prompt_tokens": 0, "completion_tokens": 40}, with_system, _chat(ANSWER))["prompt_tokens"]
        > usage["prompt_tokens"] + 80
    ), "the Messages API's system prompt is part of the prompt"


def test_no_usage_at_all_takes_litellms_count_for_both() -> None:
    usage = checked_usage({"prompt_tokens": 0, "completion_tokens": 0}, KWARGS, _chat(ANSWER))
    assert usage["prompt_tokens"] > 300 and usage["completion_tokens"] == _count(ANSWER)


def test_a_responses_api_answer_is_read_too() -> None:
    response = ResponsesAPIResponse(
        id="r",
        created_at=0,
        status="completed",
        model="gpt-4o",
        output=[
            {
                "type": "message",
                "id": "m",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": ANSWER, "annotations": []}],
            }
        ],
    )
    usage = checked_usage({"prompt_tokens": 302, "completion_tokens": 1}, KWARGS, response)
    assert usage["completion_tokens"] == _count(ANSWER)


def test_a_text_completion_is_read_too() -> None:
    response = litellm.TextCompletionResponse(choices=[{"index": 0, "text": ANSWER, "finish_reason": "stop"}])
    usage = checked_usage({"prompt_tokens": 302, "completion_tokens": 1}, KWARGS, response)
    assert usage["completion_tokens"] == _count(ANSWER)


def test_usage_counts_anthropics_cached_prompt_tokens() -> None:
    """Anthropic reports cached prompt tokens outside input_tokens; each is billed (review: a /v1/messages answer
    with 2,000 of its 2,002 prompt tokens written to the cache was recorded as 2 prompt tokens)."""
    write = {"usage": {"input_tokens": 2, "output_tokens": 3, "cache_creation_input_tokens": 2000}}
    read = {
        "usage": {
            "input_tokens": 2,
            "output_tokens": 3,
            "cache_read_input_tokens": 2000,
            "cache_creation_input_tokens": None,
        }
    }
    assert usage_of(read) == {"prompt_tokens": 2002, "completion_tokens": 3, "cache_read_tokens": 2000}
    assert usage_of(write) == {"prompt_tokens": 2002, "completion_tokens": 3, "cache_write_tokens": 2000}
    # OpenAI's prompt_tokens already hold the cached tokens: not counted twice.
    chat = {"usage": {"prompt_tokens": 2002, "completion_tokens": 3, "cache_read_input_tokens": 2000}}
    assert usage_of(chat) == {"prompt_tokens": 2002, "completion_tokens": 3, "cache_read_tokens": 2000}


def test_cache_writes_and_reads_are_read_from_anthropic_and_litellm_usage() -> None:
    anthropic = {"usage": {"input_tokens": 2, "cache_creation_input_tokens": 2000, "output_tokens": 5}}
    assert cache_tokens_of(anthropic) == {"cache_write_tokens": 2000}
    assert usage_of(anthropic) == {"prompt_tokens": 2002, "completion_tokens": 5, "cache_write_tokens": 2000}
    chat = litellm.ModelResponse(
        usage=litellm.Usage(prompt_tokens=2002, completion_tokens=5, cache_creation_input_tokens=2000)
    )
    assert cache_tokens_of(chat) == {"cache_write_tokens": 2000}
    plain = {"usage": {"input_tokens": 2, "cache_creation_input_tokens": 0, "output_tokens": 5}}
    assert cache_tokens_of(plain) == {} and "cache_write_tokens" not in (usage_of(plain) or {})
    assert cache_tokens_of({"usage": {"cache_creation_input_tokens": "many"}}) == {} and cache_tokens_of(None) == {}


def test_anthropics_split_of_cache_writes_by_ttl_is_read_from_its_usage_and_litellms() -> None:
    split = {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500}
    native = {"usage": {"input_tokens": 2, "cache_creation_input_tokens": 2000, "cache_creation": split}}
    assert cache_tokens_of(native) == {"cache_write_tokens": 2000, "cache_write_1h_tokens": 500}
    five = {
        "usage": {
            "input_tokens": 2,
            "cache_creation_input_tokens": 200,
            "cache_read_input_tokens": 1800,
            "cache_creation": {"ephemeral_5m_input_tokens": 200, "ephemeral_1h_input_tokens": 0},
        }
    }
    assert cache_tokens_of(five) == {"cache_write_tokens": 200, "cache_read_tokens": 1800, "cache_write_1h_tokens": 0}
    # LiteLLM's Usage for Claude (its Anthropic transformation) nests the split in prompt_tokens_details.
    details = PromptTokensDetailsWrapper(
        cache_creation_tokens=2000,
        cache_creation_token_details=CacheCreationTokenDetails(
            ephemeral_5m_input_tokens=1500, ephemeral_1h_input_tokens=500
        ),
    )
    chat = litellm.ModelResponse(
        usage=litellm.Usage(
            prompt_tokens=2002, completion_tokens=5, cache_creation_input_tokens=2000, prompt_tokens_details=details
        )
    )
    assert cache_tokens_of(chat) == {"cache_write_tokens": 2000, "cache_write_1h_tokens": 500}
    # No split, or no writes: nothing said of the TTL.
    assert "cache_write_1h_tokens" not in cache_tokens_of({"usage": {"cache_creation_input_tokens": 2000}})
    assert cache_tokens_of({"usage": {"cache_read_input_tokens": 5, "cache_creation": split}}) == {
        "cache_read_tokens": 5
    }


@pytest.mark.parametrize(
    "usage",
    [
        litellm.Usage(prompt_tokens=2002, completion_tokens=5, cache_read_input_tokens=2000),  # Claude via LiteLLM
        litellm.Usage(prompt_tokens=2002, completion_tokens=5, prompt_cache_hit_tokens=2000),  # DeepSeek's name
        {"prompt_tokens": 2002, "completion_tokens": 5, "prompt_tokens_details": {"cached_tokens": 2000}},  # OpenAI
        {"input_tokens": 2002, "output_tokens": 5, "input_tokens_details": {"cached_tokens": 2000}},  # Responses
    ],
)
def test_cache_reads_are_read_in_every_providers_spelling(usage: object) -> None:
    assert usage_of({"usage": usage}) == {"prompt_tokens": 2002, "completion_tokens": 5, "cache_read_tokens": 2000}


def test_a_stream_item_carries_answer_only_with_text_or_tool_arguments() -> None:
    role_only = litellm.ModelResponseStream(choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}}])
    text = litellm.ModelResponseStream(choices=[{"index": 0, "delta": {"content": "Hel"}}])
    tool = litellm.ModelResponseStream(
        choices=[{"index": 0, "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{"}}]}}]
    )
    assert not carries_answer(role_only) and carries_answer(text) and carries_answer(tool)
    assert carries_answer({"choices": [{"index": 0, "text": "Hel"}]})  # a text completion's chunk
    assert not carries_answer({"type": "response.created"}) and carries_answer({"type": "response.output_text.delta"})
    assert not carries_answer(b'event: message_start\ndata: {"type":"message_start"}\n\n')
    assert carries_answer(b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n\n')


def cached_prefix_share(data: dict) -> float:
    from policies.common.api_shapes import cache_breakpoints

    return cache_breakpoints(data)[1]


def test_the_share_of_a_prompt_claude_would_cache() -> None:
    mark = {"type": "ephemeral"}
    system = [{"type": "text", "text": "x" * 9000, "cache_control": mark}]
    question = {"role": "user", "content": "y" * 900}
    # Anthropic caches tools, then system, then messages, up to the last breakpoint
    assert 0.88 < cached_prefix_share({"system": system, "messages": [question]}) < 0.92
    assert cached_prefix_share({"system": system[0]["text"], "messages": [question]}) == 0.0  # no breakpoint
    assert cached_prefix_share({"messages": [question], "cache_control": mark}) == 1.0  # automatic caching: all
    marked_turn = {"role": "user", "content": [{"type": "text", "text": "y" * 900, "cache_control": mark}]}
    assert cached_prefix_share({"system": "x" * 9000, "messages": [marked_turn]}) == 1.0
    # a breakpoint on a tool caches the tools only; chat completions carry the system prompt among the messages
    tools = [{"name": "t", "input_schema": {"type": "object"}, "cache_control": mark}]
    assert cached_prefix_share({"tools": tools, "messages": [{"role": "user", "content": "y" * 9000}]}) < 0.02
    chat = {"messages": [{"role": "system", "content": system}, question]}
    assert 0.88 < cached_prefix_share(chat) < 0.92
    assert cached_prefix_share({}) == 0.0


def test_a_responses_requests_instructions_are_in_the_prefix_claude_would_cache() -> None:
    """The Responses API's `instructions` is the system prompt (LiteLLM sends it to Claude as `system`, before `input`):
    a breakpoint on an input item caches it too. Left out of the share, a long `instructions` before a short marked
    item was priced at the full input price in the all-Claude baseline (test stack: baseline $0.003369 for a
    1,108-token deepseek-chat request instead of ~$0.0004, savings overstated by 0.9x the instructions' input price)."""
    mark = {"type": "ephemeral"}
    marked = {"role": "user", "content": [{"type": "input_text", "text": "hi there", "cache_control": mark}]}
    question = {"role": "user", "content": "y" * 900}
    share = cached_prefix_share({"instructions": "x" * 9000, "input": [marked, question]})
    assert 0.88 < share < 0.92, share
    # without a breakpoint nothing is cached, instructions or not
    assert cached_prefix_share({"instructions": "x" * 9000, "input": [question]}) == 0.0


def test_the_cache_ttls_a_request_asks() -> None:
    from policies.common.api_shapes import cache_breakpoints

    hour, five = {"type": "ephemeral", "ttl": "1h"}, {"type": "ephemeral"}
    system = [{"type": "text", "text": "rules", "cache_control": hour}]
    turn = {"role": "user", "content": [{"type": "text", "text": "hi", "cache_control": five}]}
    assert cache_breakpoints({"system": system, "messages": [turn]})[0] == {"1h", "5m"}
    assert cache_breakpoints({"messages": [{"role": "user", "content": "hi"}], "cache_control": hour})[0] == {"1h"}
    tools = [{"name": "t", "input_schema": {"type": "object"}, "cache_control": five}]
    assert cache_breakpoints({"tools": tools, "input": "hi"})[0] == {"5m"}
    assert cache_breakpoints({"messages": [{"role": "user", "content": "hi"}]}) == (set(), 0.0)


def test_get_field_reads_pydantic_objects_as_getattr_does() -> None:
    """get_field reads a pydantic object's fields without getattr (whose miss raises inside pydantic): every kind
    of attribute still reads as getattr reads it."""
    from pydantic import BaseModel, ConfigDict

    from policies.common.api_answers import get_field

    class Extra(BaseModel):
        model_config = ConfigDict(extra="allow")
        a: int = 1

        @property
        def shown(self) -> str:
            return "property"

    class Dynamic(BaseModel):
        a: int = 1

        def __getattr__(self, name: str) -> str:
            return f"dynamic {name}"

    usage = litellm.Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)
    extra = Extra(b=2)
    dynamic = Dynamic()
    for obj, key in [
        (usage, "prompt_tokens"),
        (usage, "cache_read_input_tokens"),
        (usage, "prompt_tokens_details"),
        (usage, "model_dump"),
        (extra, "a"),
        (extra, "b"),
        (extra, "c"),
        (extra, "shown"),
        (dynamic, "a"),
        (dynamic, "missing"),
    ]:
        assert get_field(obj, key) == getattr(obj, key, None), (type(obj).__name__, key)
    assert get_field(dynamic, "missing") == "dynamic missing" and get_field(extra, "c") is None
