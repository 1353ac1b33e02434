"""The fake OpenAI provider's Responses API and text completions, checked with the official `openai` SDK
directly (no proxy): the SDK parses every reply and event into its own types, so a wire-format slip fails here,
and the bill follows the fake's one rule (words of input texts + instructions + tools JSON; words of the answer,
per choice)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import openai
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted, count_tokens

ANSWER = "Paris is the capital of France."
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "Weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeProvider]:
    fp = FakeProvider("openai", default_text=ANSWER).start()
    yield fp
    fp.stop()


@pytest.fixture
def client(fake: FakeProvider) -> openai.OpenAI:
    fake.reset()
    return openai.OpenAI(base_url=fake.base_url + "/v1", api_key="sk-fake", max_retries=0)


def test_response_text(client: openai.OpenAI, fake: FakeProvider) -> None:
    r = client.responses.create(model="gpt-4o", input="What is the capital of France?", instructions="Answer briefly.")
    assert r.status == "completed" and r.output_text == ANSWER
    assert (r.usage.input_tokens, r.usage.output_tokens) == (6 + 2, count_tokens(ANSWER))
    assert fake.billed_tokens() == (8, count_tokens(ANSWER))
    assert (
        fake.requests[-1].path == "/v1/responses"
        and fake.requests[-1].body["input"] == "What is the capital of France?"
    )


def test_response_stream_events(client: openai.OpenAI, fake: FakeProvider) -> None:
    events = list(client.responses.create(model="gpt-4o", input=[{"role": "user", "content": "Hi there"}], stream=True))
    kinds = [e.type for e in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-2:] == ["response.output_item.done", "response.completed"]
    assert "response.output_text.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert "".join(e.delta for e in events if e.type == "response.output_text.delta") == ANSWER
    done = events[-1].response
    assert done.output_text == ANSWER and (done.usage.input_tokens, done.usage.output_tokens) == (
        2,
        count_tokens(ANSWER),
    )
    assert fake.billed_tokens() == (2, count_tokens(ANSWER))


@pytest.mark.parametrize("stream", [False, True])
def test_response_forced_tool_then_text(client: openai.OpenAI, fake: FakeProvider, stream: bool) -> None:
    """tool_choice required: a function_call item fitting the schema; once the input holds its output, text."""
    tools_words = count_tokens(json.dumps(TOOLS))
    if stream:
        events = list(
            client.responses.create(
                model="gpt-4o", input="Weather in Paris?", tools=TOOLS, tool_choice="required", stream=True
            )
        )
        args = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
        r = events[-1].response
        assert json.loads(args) == json.loads(r.output[0].arguments)
    else:
        r = client.responses.create(model="gpt-4o", input="Weather in Paris?", tools=TOOLS, tool_choice="required")
    call = r.output[0]
    assert (
        call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "fake"}
    )
    billed_call = count_tokens(f"get_weather {call.arguments}")
    assert (r.usage.input_tokens, r.usage.output_tokens) == (3 + tools_words, billed_call)
    follow = client.responses.create(
        model="gpt-4o",
        tools=TOOLS,
        tool_choice="auto",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny in Paris."},
        ],
    )
    assert follow.output_text == ANSWER
    assert fake.billed_tokens() == (3 + tools_words + 3 + 3 + tools_words, billed_call + count_tokens(ANSWER))


def test_response_json_schema(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
        "additionalProperties": False,
    }
    r = client.responses.create(
        model="gpt-4o",
        input="A city?",
        text={"format": {"type": "json_schema", "name": "city", "schema": schema, "strict": True}},
    )
    assert json.loads(r.output_text) == {"city": "fake", "population": 1}


def test_response_error_is_openai_shaped(client: openai.OpenAI, fake: FakeProvider) -> None:
    fake.push(Scripted(status=500))
    with pytest.raises(openai.InternalServerError, match="fake error 500"):
        client.responses.create(model="gpt-4o", input="hi")
    assert fake.billed_tokens() == (0, 0)


def test_completion_text_and_choices(client: openai.OpenAI, fake: FakeProvider) -> None:
    r = client.completions.create(model="gpt-4o", prompt="The capital of France is", n=2, max_tokens=16)
    assert r.object == "text_completion" and [c.text for c in r.choices] == [ANSWER, ANSWER]
    assert (r.usage.prompt_tokens, r.usage.completion_tokens) == (5, 2 * count_tokens(ANSWER))
    # A list of prompts (one as token ids): a choice set per prompt.
    r = client.completions.create(model="gpt-4o", prompt=[[15339, 1917, 42], "Say hi"], max_tokens=16)
    assert len(r.choices) == 2 and (r.usage.prompt_tokens, r.usage.completion_tokens) == (
        3 + 2,
        2 * count_tokens(ANSWER),
    )
    assert fake.billed_tokens() == (5 + 5, 4 * count_tokens(ANSWER))
    assert fake.requests[-1].path == "/v1/completions"


def test_completion_stream_with_usage(client: openai.OpenAI, fake: FakeProvider) -> None:
    chunks = list(
        client.completions.create(
            model="gpt-4o",
            prompt="The capital of France is",
            max_tokens=16,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.text for ch in chunks for c in ch.choices).strip() == ANSWER
    assert chunks[-1].usage is not None and (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (
        5,
        count_tokens(ANSWER),
    )
    assert fake.billed_tokens() == (5, count_tokens(ANSWER))
