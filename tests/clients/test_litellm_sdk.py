"""The litellm SDK pointed at the proxy (`litellm_proxy/<model>` with `api_base` = proxy), sync and async, streamed and not."""

from __future__ import annotations

import asyncio

import pytest

from tests.clients.conftest import BillCheck
from tests.stack import MASTER_KEY

MODELS = ["auto", "local-llama", "deepseek-chat", "claude-sonnet"]
Q = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]


def _kw(base_url: str, model: str) -> dict:
    return {
        "model": f"litellm_proxy/{model}",
        "api_base": base_url,
        "api_key": MASTER_KEY,
        "messages": Q,
        "max_tokens": 24,
        "num_retries": 0,
        "timeout": 120,
    }


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", MODELS)
def test_litellm_completion(client_stack, bill: BillCheck, model: str, stream: bool) -> None:
    import litellm

    r = litellm.completion(**_kw(client_stack.base_url, model), stream=stream)
    if stream:
        pieces = [c.choices[0].delta.content or "" for c in r if c.choices]
        assert pieces, "the stream yielded nothing"
    else:
        assert isinstance(r.choices[0].message.content, str)
    bill.settled()


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("model", MODELS)
def test_litellm_acompletion(client_stack, bill: BillCheck, model: str, stream: bool) -> None:
    import litellm

    async def run() -> list[str]:
        r = await litellm.acompletion(**_kw(client_stack.base_url, model), stream=stream)
        if not stream:
            return [r.choices[0].message.content or ""]
        return [c.choices[0].delta.content or "" async for c in r if c.choices]

    assert asyncio.run(run())
    bill.settled()
