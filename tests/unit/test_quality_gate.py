"""The quality gate's pure parts: reading answers (tool calls included) out of the four API shapes, and the
client parameters a rephrase / escalation call repeats."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

import pytest

from policies.common.api_answers import Answer, chat_answer, messages_answer, stream_answer
from policies.common.quality_settings import QualitySettings
from policies.common.request_state import RequestState
from policies.quality.scorer import QualityScorer
from proxy.quality_gate import QualityGate, client_params

SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_REQUEST = {
    "messages": [{"role": "user", "content": "Weather in Paris?"}],
    "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}],
}
ANTHROPIC_REQUEST = {"messages": OPENAI_REQUEST["messages"], "tools": [{"name": "get_weather", "input_schema": SCHEMA}]}


def _ns(obj: Any) -> Any:
    """The same data as attribute objects, as LiteLLM hands OpenAI chunks to the hook."""
    if isinstance(obj, dict):
        return SimpleNamespace(**{k: _ns(v) for k, v in obj.items()})
    return [_ns(x) for x in obj] if isinstance(obj, list) else obj


def _split(text: str) -> list[str]:
    return [text[: len(text) // 2], text[len(text) // 2 :]]


def openai_plain(args: str) -> Answer:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": args}}
    return chat_answer(
        {
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ]
        }
    )


def openai_chunks(args: str) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    first = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
    return [
        chunk({"role": "assistant", "content": None, "tool_calls": [first]}),
        *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}) for part in _split(args)),
        chunk({}, "tool_calls"),
        {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 5}},
    ]


def anthropic_plain(args: str) -> Answer:
    block = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": json.loads(args)}
    return messages_answer({"content": [block], "stop_reason": "tool_use"})


def anthropic_events(args: str) -> list[dict[str, Any]]:
    return [
        {"type": "message_start", "message": {"content": []}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Je regarde à Paris."}},
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}},
        },
        *(
            {"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": p}}
            for p in _split(args)
        ),
        {"type": "content_block_stop", "index": 1},
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}},
        {"type": "message_stop"},
    ]


def anthropic_sse(args: str) -> bytes:
    return "".join(
        f"event: {e['type']}\ndata: {json.dumps(e, ensure_ascii=False)}\n\n" for e in anthropic_events(args)
    ).encode()


SHAPES = {
    "openai-plain": (OPENAI_REQUEST, openai_plain),
    "openai-stream": (OPENAI_REQUEST, lambda a: stream_answer(openai_chunks(a))),
    "openai-stream-objects": (OPENAI_REQUEST, lambda a: stream_answer(_ns(openai_chunks(a)))),
    "anthropic-plain": (ANTHROPIC_REQUEST, anthropic_plain),
    "anthropic-stream-events": (ANTHROPIC_REQUEST, lambda a: stream_answer(anthropic_events(a))),
    "anthropic-stream-sse": (ANTHROPIC_REQUEST, lambda a: stream_answer([anthropic_sse(a)])),
}


@pytest.mark.parametrize("shape", sorted(SHAPES))
@pytest.mark.parametrize(
    "args, action",
    [('{"city": "Paris"}', "deliver"), ('{"town": "Paris"}', "escalate")],
    ids=["valid", "lacks-required"],
)
def test_tool_calls_are_judged_alike_in_every_shape(shape: str, args: str, action: str) -> None:
    request, read = SHAPES[shape]
    answer = read(args)
    assert answer.tool_calls and answer.finish_reason == "tool_calls"
    scorer = QualityScorer(QualitySettings())
    v = asyncio.run(scorer.ascore(request, answer.text, answer.finish_reason, answer.logprobs, answer.tool_calls))
    assert v.action == action, v.reasons
    assert "empty answer" not in v.reasons
    if action == "escalate":
        assert v.hard_failures == ["tool call ‹get_weather› lacks required arguments ‹['city']›"]


def test_anthropic_sse_read_whatever_the_chunk_boundaries() -> None:
    # LiteLLM relays the provider's bytes as they come: frames, lines and UTF-8 characters may be cut anywhere.
    raw = anthropic_sse('{"city": "Paris"}')
    whole = stream_answer([raw])
    assert whole.text == "Je regarde à Paris." and whole.tool_calls[0]["input"] == '{"city": "Paris"}'
    for cut in range(1, len(raw)):
        assert stream_answer([raw[:cut], raw[cut:]]) == whole, cut
    assert stream_answer([raw[i : i + 7] for i in range(0, len(raw), 7)]) == whole
    assert stream_answer([raw.decode()]) == whole


def test_streamed_text_answer_is_the_first_choices() -> None:
    # With n > 1 the first choice is the one judged, as for a plain answer (chat_answer).
    chunks = [
        {"choices": [{"index": i, "delta": {"content": w}, "finish_reason": None}]}
        for i in (0, 1)
        for w in ("Tokyo", " is", " big.")
    ]
    chunks += [
        {
            "choices": [
                {"index": 0, "delta": {}, "finish_reason": "length"},
                {"index": 1, "delta": {}, "finish_reason": "stop"},
            ]
        }
    ]
    assert stream_answer(chunks) == Answer("Tokyo is big.", "length", None, None)


LITELLM_OWN = {
    "litellm_call_id": "c1",
    "litellm_logging_obj": object(),
    "proxy_server_request": {"body": {}},
    "secret_fields": {},
    "_litellm_strip_stream_usage": True,
    "provider_specific_header": {"extra_headers": {}},
    "api_key": "sk-client",
}


def test_client_params_openai_are_everything_but_the_gates_and_litellms() -> None:
    client = {
        "messages": [{"role": "user", "content": "hi"}],
        "presence_penalty": 0.5,
        "logit_bias": {"1": -5},
        "n": 2,
        "reasoning_effort": "low",
        "parallel_tool_calls": False,
        "user": "u-1",
        "max_tokens": 9,
    }
    data = {
        **client,
        **LITELLM_OWN,
        "model": "local-llama",
        "stream": True,
        "stream_options": {"include_usage": True},
        "metadata": {"synqra": {"request_id": "r"}, "user_api_key_hash": "h"},
    }
    assert client_params(data, "acompletion") == client


def test_client_params_anthropic_keep_the_clients_metadata_not_synqras_state() -> None:
    client = {
        "messages": [{"role": "user", "content": "hi"}],
        "system": [{"type": "text", "text": "Be brief."}],
        "top_k": 5,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "stop_sequences": ["END"],
        "max_tokens": 9,
    }
    data = {
        **client,
        **LITELLM_OWN,
        "model": "auto",
        "litellm_metadata": {"synqra": {"request_id": "r"}},
        "metadata": {"user_id": "u-7", "synqra": {"request_id": "r"}},
    }
    assert client_params(data, "anthropic_messages") == {**client, "metadata": {"user_id": "u-7"}}
    del data["metadata"]["user_id"]
    assert "metadata" not in client_params(data, "anthropic_messages"), "nothing of the client's left to send"


def _gate() -> QualityGate:
    cfg = SimpleNamespace(
        synqra=SimpleNamespace(
            quality=QualitySettings(),
            routing=SimpleNamespace(tiers=["local-llama", "claude-sonnet"]),
            backends=SimpleNamespace(llama=SimpleNamespace(model_alias="local-llama")),
        )
    )
    return QualityGate(SimpleNamespace(config=cfg))


@pytest.mark.parametrize("asked", [{}, {"logprobs": True, "top_logprobs": 2}], ids=["not-asked", "asked"])
def test_prepare_keeps_the_logprobs_it_adds_out_of_the_clients_request(asked: dict) -> None:
    data = {"model": "local-llama", "messages": [{"role": "user", "content": "hi"}], "temperature": 0, **asked}
    state = RequestState("r", call_type="acompletion", route="local-llama")
    _gate().prepare(state, data)
    assert data["logprobs"] is True, "llama.cpp is asked for the logprobs the scorer reads"
    assert state.quality is not None and state.quality.request == {
        "messages": data["messages"],
        "temperature": 0,
        **asked,
    }
    assert state.quality.strip_logprobs is not bool(asked)
