"""The llama.cpp backend on the real embedded GGUF: answers, usage, logprobs, streaming, errors."""
from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from local_backends.llama_server import create_app
from proxy.settings import LlamaBackendSettings

Q = [{"role": "user", "content": "What is the capital of France?"}]


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
    body = client.post("/v1/chat/completions", json={"messages": Q, "max_tokens": 16, "temperature": 0, "logprobs": True}).json()
    content = body["choices"][0]["logprobs"]["content"]
    assert 0 < len(content) <= body["usage"]["completion_tokens"]
    assert all(item["logprob"] <= 0 for item in content)
    assert "".join(i["token"] for i in content).strip().startswith(body["choices"][0]["message"]["content"][:3])


def test_streaming_with_logprobs_on_the_final_chunk(client) -> None:
    with client.stream("POST", "/v1/chat/completions", json={"messages": Q, "max_tokens": 16, "temperature": 0, "stream": True,
                                                                "logprobs": True, "stream_options": {"include_usage": True}}) as r:
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ") and line != "data: [DONE]"]
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
