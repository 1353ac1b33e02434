"""pydantic-ai with its OpenAI chat model pointed at the proxy: a text run and a structured (tool) output."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from tests.clients.conftest import BillCheck
from tests.stack import MASTER_KEY

MODELS = ["auto", "local-llama", "deepseek-chat"]


class City(BaseModel):
    name: str
    country: str


def _model(base_url: str, model: str):
    from pydantic_ai.models.openai import OpenAIChatModel
    from pydantic_ai.providers.openai import OpenAIProvider

    return OpenAIChatModel(model, provider=OpenAIProvider(base_url=base_url + "/v1", api_key=MASTER_KEY))


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_text(client_stack, bill: BillCheck, model: str) -> None:
    from pydantic_ai import Agent

    r = Agent(_model(client_stack.base_url, model), model_settings={"max_tokens": 24}).run_sync("Capital of France?")
    assert isinstance(r.output, str)
    bill.settled()


@pytest.mark.parametrize("model", MODELS)
def test_pydantic_ai_structured_output(client_stack, bill: BillCheck, model: str) -> None:
    """The default structured output is a tool the model must call (tool_choice required)."""
    from pydantic_ai import Agent

    try:
        r = Agent(
            _model(client_stack.base_url, model), output_type=City, model_settings={"max_tokens": 64}, retries=0
        ).run_sync("Which city is the capital of France?")
    except Exception as exc:
        cause = exc.__cause__ or exc
        assert model == "local-llama", f"{model} failed: {exc!r} (cause {cause!r})"
        assert getattr(cause, "status_code", None) == 400 and any(p in str(cause) for p in ("tools", "tool_choice")), (
            f"local-llama neither honoured nor refused (400 naming tools/tool_choice) the forced output tool: {exc!r} (cause {cause!r})"
        )
        bill.settled()
        return
    assert isinstance(r.output, City), r.output
    bill.settled()
