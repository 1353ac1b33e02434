"""The llama.cpp backend on the real embedded GGUF: answers, usage, logprobs, streaming, errors."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from local_backends.llama_server import create_app
from policies.common.settings import LlamaBackendSettings

# Every test here runs the real GGUF through llama.cpp.
pytestmark = pytest.mark.stack

Q = [{"role": "user", "content": "What is the capital of France?"}]


def stream_events(client: TestClient, path: str, body: dict) -> list[dict]:
    """The JSON events of a streamed answer, in order (the `[DONE]` line left out)."""
    with client.stream("POST", path, json=body) as r:
        return [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(LlamaBackendSettings())) as c:
        yield c


def test_base_model_answers_through_the_completion_format(client) -> None:
    health = client.get("/health").json()
    assert health["prompt_format"] == "completion", "the embedded Gemma has no chat template"
    r = client.post("/v1/chat/completions", json={"messages": Q, "max_tokens": 16, "temperature": 0})
    body = r.json()
    assert r.status_code == 200 and body["choices"][0]["message"]["content"].strip()
    assert body["usage"]["completion_tokens"] > 0 and body["choices"][0]["logprobs"] is None


def test_logprobs_in_the_same_call(client) -> None:
    body = client.post(
        "/v1/chat/completions", json={"messages": Q, "max_tokens": 16, "temperature": 0, "logprobs": True}
    ).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert 0 < len(content) <= body["usage"]["completion_tokens"]
    assert all(item["logprob"] <= 0 for item in content)
    assert "".join(i["token"] for i in content).strip().startswith(body["choices"][0]["message"]["content"][:3])


def test_streaming_with_logprobs_on_the_final_chunk(client) -> None:
    events = stream_events(
        client,
        "/v1/chat/completions",
        {
            "messages": Q,
            "max_tokens": 16,
            "temperature": 0,
            "stream": True,
            "logprobs": True,
            "stream_options": {"include_usage": True},
        },
    )
    text = "".join(e["choices"][0]["delta"].get("content", "") for e in events)
    assert text.strip()
    final = events[-1]
    assert final["choices"][0]["finish_reason"] in ("stop", "length")
    assert final["usage"]["completion_tokens"] > 0 and final["choices"][0]["logprobs"]["content"]


@pytest.mark.parametrize("body", [{"messages": []}, {"messages": Q, "max_tokens": 0}, {"max_tokens": 5}])
def test_bad_requests_are_400(client, body) -> None:
    r = client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["message"]


def test_non_json_is_400(client) -> None:
    assert client.post("/v1/chat/completions", content=b"{nope").status_code == 400


# --- what the local model honours: never a 200 with less than was asked ----------------------------


def test_text_completions_take_a_raw_prompt_in_every_openai_shape(client) -> None:
    ids = client.post("/extras/tokenize", json={"input": "The capital of France is"}).json()["count"]
    assert ids > 3
    for prompt in ("The capital of France is", ["One, two,", "A, B,"]):
        body = client.post("/v1/completions", json={"prompt": prompt, "max_tokens": 4, "temperature": 0}).json()
        assert body["object"] == "text_completion"
        assert len(body["choices"]) == (1 if isinstance(prompt, str) else 2)
        assert body["usage"]["completion_tokens"] > 0
    echoed = client.post("/v1/completions", json={"prompt": "Paris is", "max_tokens": 3, "echo": True}).json()
    assert echoed["choices"][0]["text"].startswith("Paris is")


@pytest.mark.parametrize("ids", [[-1], [262_144], [2**63 - 1], [[5, 7], [10**9]]])
def test_token_ids_outside_the_vocabulary_are_a_400_not_an_abort(client, ids) -> None:
    """llama.cpp aborts the process (std::out_of_range) on such an id: this test's own process, had it got there."""
    r = client.post("/v1/completions", json={"prompt": ids, "max_tokens": 1})
    assert r.status_code == 400 and "vocabulary" in r.json()["error"]["message"]
    assert client.post("/v1/completions", json={"prompt": [5, 7], "max_tokens": 1}).status_code == 200


def test_text_completions_stream_with_usage(client) -> None:
    events = stream_events(
        client,
        "/v1/completions",
        {"prompt": "One, two,", "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}},
    )
    assert "".join(c["text"] for e in events for c in e["choices"]).strip()
    assert events[-1]["usage"]["completion_tokens"] > 0


def test_n_choices_and_top_logprobs_are_honoured(client) -> None:
    body = client.post(
        "/v1/chat/completions", json={"messages": Q, "max_tokens": 4, "n": 2, "logprobs": True, "top_logprobs": 3}
    ).json()
    assert [c["index"] for c in body["choices"]] == [0, 1]
    first = body["choices"][0]["logprobs"]["content"][0]
    assert len(first["top_logprobs"]) == 3
    assert first["top_logprobs"][0]["logprob"] >= first["top_logprobs"][-1]["logprob"]
    assert first["top_logprobs"][0]["logprob"] >= first["logprob"] - 1e-6


def test_response_format_is_enforced_with_a_grammar(client) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    for rf in ({"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}):
        body = client.post("/v1/chat/completions", json={"messages": Q, "max_tokens": 40, "response_format": rf}).json()
        text = body["choices"][0]["message"]["content"]
        if body["choices"][0]["finish_reason"] == "stop":
            parsed = json.loads(text)
            assert isinstance(parsed, dict)
            if rf["type"] == "json_schema":
                assert isinstance(parsed["city"], str)
        else:  # cut off by max_tokens: still the start of a JSON object, never prose
            assert text.lstrip().startswith("{")


@pytest.mark.parametrize(
    "extra,param",
    [
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}, "tools"),
        ({"tool_choice": {"type": "function", "function": {"name": "f"}}}, "tool_choice"),
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "thinking"),
        ({"top_logprobs": 2}, "top_logprobs"),
        ({"n": 99}, "n"),
        ({"response_format": {"type": "xml"}}, "response_format"),
    ],
)
def test_what_the_model_cannot_honour_is_a_400_naming_it(client, extra, param) -> None:
    r = client.post("/v1/chat/completions", json={"messages": Q, "max_tokens": 4, **extra})
    assert r.status_code == 400 and r.json()["error"]["param"] == param


def test_completions_refuse_what_they_cannot_do(client) -> None:
    assert client.post("/v1/completions", json={"prompt": "x", "suffix": "y"}).json()["error"]["param"] == "suffix"
    assert client.post("/v1/completions", json={"prompt": [[]]}).status_code == 400
    assert client.post("/v1/completions", json={"prompt": 5}).json()["error"]["param"] == "prompt"


def test_streamed_usage_counts_the_tokens_generated_not_the_chunks(client) -> None:
    """The same tokens as the non-streamed answer at temperature 0 (the last chunk carries no token)."""
    body = {"messages": Q, "max_tokens": 8, "temperature": 0, "seed": 1}
    plain = client.post("/v1/chat/completions", json=body).json()["usage"]["completion_tokens"]
    events = stream_events(
        client, "/v1/chat/completions", {**body, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert events[-1]["usage"]["completion_tokens"] == plain
    text = {"prompt": "One, two, three,", "max_tokens": 6, "temperature": 0, "seed": 1}
    plain = client.post("/v1/completions", json=text).json()["usage"]["completion_tokens"]
    events = stream_events(
        client, "/v1/completions", {**text, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert events[-1]["usage"]["completion_tokens"] == plain


def test_a_schema_no_value_can_match_is_a_400_not_a_crash(client) -> None:
    for schema in ({"type": "object", "properties": {"a": {"type": "string", "enum": []}}}, {"anyOf": []}):
        rf = {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
        r = client.post("/v1/chat/completions", json={"messages": Q, "max_tokens": 4, "response_format": rf})
        assert r.status_code == 400 and "no value can match" in r.json()["error"]["message"]
    assert client.get("/health").status_code == 200, "the server is still up"
