"""The OpenAI Agents SDK with its default model class (Responses API, `/v1/responses`), tracing off."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.clients.conftest import BillCheck, expect_refusal
from tests.stack import MASTER_KEY

MODELS = ["auto", "local-llama", "claude-sonnet", "gpt-4o"]
MAX_TOKENS = 24


def _run_config(base_url: str):
    from agents import OpenAIProvider, RunConfig

    # The default provider (Responses API), only pointed at the proxy.
    return RunConfig(
        model_provider=OpenAIProvider(base_url=base_url + "/v1", api_key=MASTER_KEY), tracing_disabled=True
    )


def assert_native_responses(bill: BillCheck, model: str) -> None:
    """gpt-4o (openai/ in LiteLLM) is served by OpenAI's own Responses API, not bridged through chat."""
    if model == "gpt-4o":
        paths = {r.path for r in bill.providers["openai"].requests}
        assert paths == {"/v1/responses"}, f"gpt-4o Responses calls reached {paths}"


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    """One event loop for every agent run: the SDK keeps one shared HTTP client, bound to the loop that made it."""
    lp = asyncio.new_event_loop()
    yield lp
    lp.close()


def get_weather(city: str) -> str:
    """Get the weather for a city."""
    return f"Sunny in {city}."


@pytest.mark.parametrize("model", MODELS)
def test_agent_run(client_stack, bill: BillCheck, loop, model: str) -> None:
    from agents import Agent, ModelSettings, Runner

    agent = Agent(
        name="helper", instructions="Answer briefly.", model=model, model_settings=ModelSettings(max_tokens=MAX_TOKENS)
    )
    result = loop.run_until_complete(
        Runner.run(agent, "What is the capital of France?", run_config=_run_config(client_stack.base_url))
    )
    assert isinstance(result.final_output, str)
    assert_native_responses(bill, model)
    bill.settled()


@pytest.mark.parametrize("model", MODELS)
def test_agent_run_streamed(client_stack, bill: BillCheck, loop, model: str) -> None:
    from agents import Agent, ModelSettings, Runner
    from agents.exceptions import ModelBehaviorError

    agent = Agent(
        name="helper", instructions="Answer briefly.", model=model, model_settings=ModelSettings(max_tokens=MAX_TOKENS)
    )

    async def run() -> str:
        r = Runner.run_streamed(agent, "Name three colours.", run_config=_run_config(client_stack.base_url))
        async for _ in r.stream_events():
            pass
        return str(r.final_output)

    try:
        assert isinstance(loop.run_until_complete(run()), str)
    except ModelBehaviorError as exc:
        # The SDK fails a streamed run whose answer was cut (terminal event response.incomplete), as it would
        # against OpenAI. Only the explicit local model answers unvalidated (auto's cut answers are escalated),
        # and only an answer the ledger shows really ran to max_output_tokens may end so.
        assert model == "local-llama" and "response.incomplete" in str(exc) and "max_output_tokens" in str(exc), exc
        local = [r for r in bill.rows() if r["served_model"] == "local-llama"]
        assert local and local[-1]["completion_tokens"] >= MAX_TOKENS, (
            f"response.incomplete (max_output_tokens) for an answer that was not cut: {local}"
        )
    assert_native_responses(bill, model)
    bill.settled()


@pytest.mark.parametrize("model", MODELS)
def test_agent_with_a_tool(client_stack, bill: BillCheck, loop, model: str) -> None:
    """tool_choice required: the model calls the tool, the SDK runs it, then (tool_choice reset) the model answers."""
    from agents import Agent, ModelSettings, Runner, function_tool

    agent = Agent(
        name="weather",
        instructions="Use the tool.",
        model=model,
        tools=[function_tool(get_weather)],
        model_settings=ModelSettings(max_tokens=64, tool_choice="required"),
    )
    try:
        result = loop.run_until_complete(
            Runner.run(agent, "Weather in Paris?", run_config=_run_config(client_stack.base_url), max_turns=4)
        )
    except Exception as exc:  # the explicit local model has no tools: a 400 naming them, never a silent answer
        expect_refusal(model, exc, "tools", "tool_choice")
        bill.settled()
        return
    calls = [i for i in result.new_items if i.type == "tool_call_item"]
    assert calls, f"{model}: tool_choice required, but no tool was called: {result.new_items}"
    assert_native_responses(bill, model)
    bill.settled()
