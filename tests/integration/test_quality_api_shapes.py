"""The quality gate across the four API shapes (OpenAI / Anthropic, streamed or not), end to end.

- A tool call is recognised and checked against the request's tool schema in every shape: a valid one is
  delivered, one lacking a required argument is escalated.
- An escalation repeats the client's parameters: the escalated call reaches the provider as the same
  request sent to that model directly would.
- A rephrase on /v1/messages puts its instruction in the top-level `system`, never a system message.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import openai
import pytest
from starlette.responses import JSONResponse, Response, StreamingResponse

from tests.fakes.fake_providers import (
    FakeProvider,
    Scripted,
    anthropic_message,
    anthropic_stream,
    chat_choice_chunks,
    openai_head,
    openai_stream,
)
from tests.stack import MASTER_KEY, RunningStack, start_stack

Q_TOOL = [{"role": "user", "content": "What's the weather in Paris?"}]
CUT = [{"role": "user", "content": "Say hello."}]  # Gemma 270M is cut off at 3 tokens: escalated
GOOD = [{"role": "user", "content": "What is the capital of Japan?"}]  # routed to the local tier
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
OPENAI_TOOLS = [
    {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city", "parameters": SCHEMA}}
]
ANTHROPIC_TOOLS = [{"name": "get_weather", "description": "Weather for a city", "input_schema": SCHEMA}]
CLAUDE_TEXT = "Fake Claude answer."


@dataclass
class ToolCallingProvider(FakeProvider):
    """Answers a request offering tools with one call to get_weather(**args), in both protocols, streamed or
    not; streamed arguments arrive in two fragments, as real providers send them. Other requests: text."""

    args: dict[str, Any] = field(default_factory=lambda: {"city": "Paris"})

    def _fragments(self) -> list[str]:
        text = json.dumps(self.args)
        return [text[: len(text) // 2], text[len(text) // 2 :]]

    def _openai(self, body: dict[str, Any], text: str, p: int, c: int, cache_read: int = 0) -> Response:
        if not body.get("tools"):
            return super()._openai(body, text, p, c, cache_read)
        head = openai_head("chatcmpl-", "chat.completion", body)
        usage = {"prompt_tokens": p, "completion_tokens": 5, "total_tokens": p + 5}
        if not body.get("stream"):
            call = {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps(self.args)},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            return JSONResponse(
                {**head, "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls"}], "usage": usage}
            )
        opening = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": ""}}
        first = {"role": "assistant", "content": None, "tool_calls": [opening]}
        deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": part}}]} for part in self._fragments()]
        chunks = chat_choice_chunks(0, first, deltas, "tool_calls")
        events = openai_stream(body, {**head, "object": "chat.completion.chunk"}, usage, 1, lambda i: chunks)
        return StreamingResponse(events, media_type="text/event-stream")

    def _anthropic(self, body: dict[str, Any], text: str, p: int, c: int, step: Scripted | None = None) -> Response:
        if not body.get("tools"):
            return super()._anthropic(body, text, p, c, step)
        mid, model = "msg_" + uuid.uuid4().hex[:24], body.get("model")
        block = {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": self.args}
        if not body.get("stream"):
            return JSONResponse(
                anthropic_message(mid, model, [block], "tool_use", {"input_tokens": p, "output_tokens": 5})
            )
        deltas = [{"type": "input_json_delta", "partial_json": part} for part in self._fragments()]
        events = anthropic_stream(mid, model, p, 5, {**block, "input": {}}, deltas, "tool_use")
        return StreamingResponse(events, media_type="text/event-stream")


@pytest.fixture(scope="module")
def tool_stack(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningStack, ToolCallingProvider]]:
    """Tool requests route to DeepSeek (a validated tier): here it answers with a tool call."""
    deepseek = ToolCallingProvider("deepseek").start()
    s = start_stack(tmp_path_factory.mktemp("tools"), {**providers, "deepseek": deepseek}, backends_of=stack)
    yield s, deepseek
    s.stop()
    deepseek.stop()


def _ask_with_tools(base_url: str, api: str, stream: bool) -> tuple[list[tuple[str, dict]], str]:
    """(tool calls as (name, arguments), text) of the answer the client gets."""
    if api == "openai":
        oc = openai.OpenAI(base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
        if not stream:
            msg = (
                oc.chat.completions.create(model="auto", messages=Q_TOOL, tools=OPENAI_TOOLS, max_tokens=64)
                .choices[0]
                .message
            )
            return [
                (t.function.name, json.loads(t.function.arguments)) for t in msg.tool_calls or []
            ], msg.content or ""
        calls: dict[int, list[str]] = {}
        text = ""
        for ch in oc.chat.completions.create(
            model="auto", messages=Q_TOOL, tools=OPENAI_TOOLS, max_tokens=64, stream=True
        ):
            for d in (ch.choices[0].delta.tool_calls or []) if ch.choices else []:
                calls.setdefault(d.index, ["", ""])
                calls[d.index][0] += d.function.name or ""
                calls[d.index][1] += d.function.arguments or ""
            text += (ch.choices[0].delta.content or "") if ch.choices else ""
        return [(name, json.loads(args)) for name, args in calls.values()], text
    ac = anthropic.Anthropic(base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)
    if stream:
        with ac.messages.stream(model="auto", max_tokens=64, messages=Q_TOOL, tools=ANTHROPIC_TOOLS) as st:
            msg = st.get_final_message()
    else:
        msg = ac.messages.create(model="auto", max_tokens=64, messages=Q_TOOL, tools=ANTHROPIC_TOOLS)
    return (
        [(b.name, dict(b.input)) for b in msg.content if b.type == "tool_use"],
        "".join(b.text for b in msg.content if b.type == "text"),
    )


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("api", ["openai", "anthropic"])
@pytest.mark.parametrize("args", [{"city": "Paris"}, {"town": "Paris"}], ids=["valid", "lacks-required"])
def test_tool_call_is_judged_by_the_tool_schema(
    tool_stack, fresh_providers, api: str, stream: bool, args: dict
) -> None:
    s, deepseek = tool_stack
    deepseek.reset()
    deepseek.args = args
    calls, text = _ask_with_tools(s.base_url, api, stream)
    assert deepseek.requests, "tool requests go to the tool tier first"
    if "city" in args:
        assert calls == [("get_weather", args)], f"the valid tool call is delivered as it is, got {calls} {text!r}"
        assert not fresh_providers["anthropic"].requests, "a valid tool call is not escalated"
    else:
        assert fresh_providers["anthropic"].requests, "a call lacking a required argument is escalated"
        assert text.strip() == CLAUDE_TEXT and not calls


def _body(provider: FakeProvider, i: int = -1) -> dict[str, Any]:
    return {k: v for k, v in provider.requests[i].body.items() if not k.startswith("_")}  # the fake's own bookkeeping


OPENAI_PARAMS: dict[str, Any] = dict(
    temperature=0,
    presence_penalty=0.5,
    frequency_penalty=0.4,
    logit_bias={"1000": -5},
    seed=7,
    top_p=0.9,
    n=1,
    user="user-7",
    max_tokens=3,
)
# Anthropic-only parameters among them (`thinking` is carried as well: tests/unit/test_quality_gate.py).
ANTHROPIC_PARAMS: dict[str, Any] = dict(
    max_tokens=3, metadata={"user_id": "user-7"}, stop_sequences=["STOP"], extra_body={"top_k": 5, "temperature": 0}
)  # this SDK takes no temperature= argument


def test_escalation_carries_the_clients_parameters(openai_client, anthropic_client, fresh_providers) -> None:
    deepseek = fresh_providers["deepseek"]
    openai_client.chat.completions.create(model="deepseek-chat", messages=CUT, **OPENAI_PARAMS)
    direct = _body(deepseek)
    raw = openai_client.chat.completions.with_raw_response.create(model="auto", messages=CUT, **OPENAI_PARAMS)
    assert raw.headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat")
    assert _body(deepseek, 1) == direct, "the escalated call is the request the client would have sent to that model"

    anthropic_client.messages.create(model="deepseek-chat", messages=CUT, **ANTHROPIC_PARAMS)
    direct = _body(deepseek, 2)
    assert direct["top_k"] == 5 and direct["metadata"] == {"user_id": "user-7"}
    raw = anthropic_client.messages.with_raw_response.create(model="auto", messages=CUT, **ANTHROPIC_PARAMS)
    assert raw.headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat")
    assert _body(deepseek, 3) == direct, "client metadata is carried; synqra's state is not client data"


@pytest.fixture(scope="module")
def rephrase_stack(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    # Bands that put every scored answer in the rephrase band (a perfect 1.0 too: not above 1.0); the rephrase
    # goes to DeepSeek, whose requests are recorded.
    s = start_stack(
        tmp_path_factory.mktemp("rephrase"),
        providers,
        {"quality": {"deliver_above": 1.0, "escalate_below": 0.0, "rephrase_target": "next"}},
        backends_of=stack,
    )
    yield s
    s.stop()


CLIENT_SYSTEM = "You are a geography tutor."


@pytest.mark.parametrize(
    "system",
    [None, CLIENT_SYSTEM, [{"type": "text", "text": CLIENT_SYSTEM, "cache_control": {"type": "ephemeral"}}]],
    ids=["no-system", "string", "blocks"],
)
def test_anthropic_rephrase_goes_into_the_top_level_system(rephrase_stack, fresh_providers, system: Any) -> None:
    ac = anthropic.Anthropic(base_url=rephrase_stack.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)
    raw = ac.messages.with_raw_response.create(
        model="auto", max_tokens=16, messages=GOOD, **({"system": system} if system else {})
    )
    assert raw.headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat"), raw.headers
    body = _body(fresh_providers["deepseek"], 0)
    assert [m["role"] for m in body["messages"]] == ["user"], "the Messages API has no system role in messages"
    sent = body["system"]
    if isinstance(system, list):
        assert sent[0] == system[0] and len(sent) == 2, (
            "the client's blocks are kept as they are, the instruction added"
        )
        sent = sent[1]["text"]
    elif system:
        assert sent.startswith(CLIENT_SYSTEM + "\n\n")
    assert "Answer the question directly" in sent


def test_openai_rephrase_is_a_system_message(rephrase_stack, fresh_providers) -> None:
    oc = openai.OpenAI(base_url=rephrase_stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
    raw = oc.chat.completions.with_raw_response.create(model="auto", max_tokens=16, messages=GOOD)
    assert raw.headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat"), raw.headers
    body = _body(fresh_providers["deepseek"], 0)
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "Answer the question directly" in body["messages"][0]["content"]
