"""LangChain against the running proxy: `langchain-openai` and `langchain-anthropic` as people use them.

Each test uses the client's defaults (only base URL, key, model and a small max_tokens set) and
ends with the bill check: ledger == fake providers' bill, nothing reserved.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import BaseModel, Field

from tests.clients.conftest import BillCheck, expect_refusal, internal_addresses
from tests.stack import MASTER_KEY

# auto (synqra routes), the local model, a paid model. Anthropic-protocol clients ask for Claude.
OPENAI_MODELS = ["auto", "local-llama", "deepseek-chat"]
ANTHROPIC_MODELS = ["auto", "local-llama", "claude-sonnet"]


def get_weather(city: str, days: int = 1) -> str:
    """Get the weather forecast for a city."""
    return f"Sunny in {city} for {days} day(s)."


class Forecast(BaseModel):
    """A weather forecast."""

    city: str = Field(description="the city")
    temperature_c: float
    sunny: bool


def chat_openai(base_url: str, model: str, **kw: Any):
    from langchain_openai import ChatOpenAI

    kw.setdefault("max_tokens", 24)
    return ChatOpenAI(model=model, base_url=base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120, **kw)


def chat_anthropic(base_url: str, model: str, **kw: Any):
    from langchain_anthropic import ChatAnthropic

    kw.setdefault("max_tokens", 24)
    return ChatAnthropic(model=model, base_url=base_url, api_key=MASTER_KEY, max_retries=0, timeout=120, **kw)


def weather_round_trip(llm: Any, model: str, bill: BillCheck, *, result_as_json: bool) -> Any:
    """bind_tools forcing get_weather -> a valid tool call -> the tool's result sent back -> the model's next
    message; None when an explicit local model refused tools clearly (the bill is then checked already)."""
    from langchain_core.messages import HumanMessage, ToolMessage

    question = HumanMessage("What is the weather in Paris for 2 days?")
    try:
        ai = llm.bind_tools([get_weather], tool_choice="get_weather").invoke([question])
    except Exception as exc:  # an explicit local model may refuse tools clearly
        expect_refusal(model, exc, "tools", "tool_choice")
        bill.settled()
        return None
    assert ai.tool_calls, f"{model}: tool_choice forced get_weather, got no tool call: {ai!r}"
    call = ai.tool_calls[0]
    assert call["name"] == "get_weather" and isinstance(call["args"].get("city"), str), call
    weather = get_weather(**call["args"])
    result = ToolMessage(json.dumps(weather) if result_as_json else weather, tool_call_id=call["id"])
    return llm.bind_tools([get_weather]).invoke([question, ai, result])


# ---------------------------------------------------------------- langchain-openai


@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_chat_openai_invoke(client_stack, bill: BillCheck, model: str) -> None:
    llm = chat_openai(client_stack.base_url, model, include_response_headers=True)
    msg = llm.invoke("What is the capital of France? Answer in one word.")
    assert isinstance(msg.content, str)
    headers = msg.response_metadata.get("headers") or {}
    assert headers.get("x-synqra-request-id"), headers
    bill.settled()
    leaked = {k: v for k, v in headers.items() if any(a in str(v) for a in internal_addresses(client_stack))}
    assert not leaked, f"internal addresses in response headers: {leaked}"


@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_chat_openai_stream(client_stack, bill: BillCheck, model: str) -> None:
    llm = chat_openai(client_stack.base_url, model)
    chunks = list(llm.stream("Name three colours."))
    assert chunks, "the stream yielded nothing"
    text = "".join(str(c.content) for c in chunks)
    assert isinstance(text, str)
    bill.settled()


@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_chat_openai_tool_round_trip(client_stack, bill: BillCheck, model: str) -> None:
    """bind_tools forcing the tool -> a valid tool call -> the tool's result -> a text answer."""
    final = weather_round_trip(chat_openai(client_stack.base_url, model), model, bill, result_as_json=False)
    if final is None:
        return
    assert isinstance(final.content, str) and not final.tool_calls
    bill.settled()


@pytest.mark.parametrize("model", OPENAI_MODELS)
def test_chat_openai_structured_output(client_stack, bill: BillCheck, model: str) -> None:
    """with_structured_output's default method (json_schema response_format) returns the model object."""
    llm = chat_openai(client_stack.base_url, model, max_tokens=64)
    try:
        out = llm.with_structured_output(Forecast).invoke("Forecast for Paris tomorrow.")
    except Exception as exc:
        expect_refusal(model, exc, "response_format")
        bill.settled()
        return
    assert isinstance(out, Forecast), f"{model}: no structured output: {out!r}"
    bill.settled()


@pytest.mark.parametrize(
    "model,kw",
    [("local-embed", {}), ("local-embed", {"dimensions": 128}), ("auto", {})],
    ids=["local-embed", "local-embed-dimensions-128", "auto"],
)
def test_openai_embeddings_with_defaults(client_stack, bill: BillCheck, model: str, kw: dict[str, Any]) -> None:
    """OpenAIEmbeddings' defaults tokenize with tiktoken and send token-id arrays."""
    from langchain_openai import OpenAIEmbeddings

    emb = OpenAIEmbeddings(
        model=model, base_url=client_stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120, **kw
    )
    try:
        docs = emb.embed_documents(["The cat sat on the mat.", "Budgets stop overspending."])
        query = emb.embed_query("Where did the cat sit?")
    except Exception as exc:
        if "dimensions" in kw:  # the local model has one size: a 400 naming `dimensions` (never 384 silently)
            expect_refusal(model, exc, "dimensions", allowed=model)
        else:  # `auto` is a chat model: a clear 400 is a fair answer; a 404 or a cooldown 429 is not.
            expect_refusal(model, exc, "auto", "embedding", allowed="auto")
        bill.settled()
        return
    want = kw.get("dimensions", 384)
    assert len(docs) == 2 and all(len(v) == want for v in docs + [query]), [len(v) for v in docs + [query]]
    assert docs[0] != docs[1]
    bill.settled()


# ---------------------------------------------------------------- langchain-anthropic


@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
def test_chat_anthropic_invoke(client_stack, bill: BillCheck, model: str) -> None:
    msg = chat_anthropic(client_stack.base_url, model).invoke("What is the capital of France? One word.")
    assert isinstance(msg.content, (str, list))
    bill.settled()


@pytest.mark.parametrize("metadata", [False, True], ids=["plain", "with-metadata"])
@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
def test_chat_anthropic_stream(client_stack, bill: BillCheck, model: str, metadata: bool) -> None:
    """Streamed /v1/messages, also with the `metadata.user_id` many apps (and Claude Code) send."""
    # A call keyword goes into the request body (ChatAnthropic's own `metadata` field is LangChain's run metadata).
    kw = {"metadata": {"user_id": "user-42"}} if metadata else {}
    chunks = list(chat_anthropic(client_stack.base_url, model).stream("Name three colours.", **kw))
    assert chunks, "the stream yielded nothing"
    bill.settled()


@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
def test_chat_anthropic_tool_round_trip(client_stack, bill: BillCheck, model: str) -> None:
    final = weather_round_trip(chat_anthropic(client_stack.base_url, model), model, bill, result_as_json=True)
    if final is None:
        return
    assert not final.tool_calls, final
    bill.settled()


@pytest.mark.parametrize("model", ANTHROPIC_MODELS)
def test_chat_anthropic_structured_output(client_stack, bill: BillCheck, model: str) -> None:
    """ChatAnthropic's default structured output: a forced tool call."""
    llm = chat_anthropic(client_stack.base_url, model, max_tokens=64)
    try:
        out = llm.with_structured_output(Forecast).invoke("Forecast for Paris tomorrow.")
    except Exception as exc:
        expect_refusal(model, exc, "tools", "tool_choice")
        bill.settled()
        return
    assert isinstance(out, Forecast), f"{model}: no structured output (the forced tool was not called): {out!r}"
    bill.settled()
