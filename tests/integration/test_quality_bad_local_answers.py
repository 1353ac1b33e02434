"""Empty and looping local answers are escalated: plain and streaming, OpenAI and Anthropic SDKs.

The real Gemma cannot be made to answer empty or loop on cue, so here the local tier is a
small OpenAI-protocol server on 127.0.0.1 that answers exactly that (the cut-off case runs on
the real model in test_quality_stack.py). Everything else is the real proxy and gate.
"""

from __future__ import annotations

from collections.abc import Iterator

import anthropic
import openai
import pytest

from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, RunningStack, start_stack

Q = [{"role": "user", "content": "What is the capital of Japan?"}]
CLOUD_TEXTS = {"Fake DeepSeek answer.", "Fake Claude answer.", "Fake GPT-4o answer."}
BAD = {
    "empty": "",
    "loop": "Tokyo is the capital. " * 40,
}


@pytest.fixture(scope="module", params=sorted(BAD))
def bad_local(
    request: pytest.FixtureRequest,
    stack: RunningStack,
    providers: dict[str, FakeProvider],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[str, RunningStack, FakeProvider]]:
    local = FakeProvider("openai", default_text=BAD[request.param]).start()

    def point_local_at_the_fake(cfg: dict) -> None:
        cfg["synqra"]["backends"]["llama"]["external_url"] = local.base_url
        for m in cfg["model_list"]:
            if m["model_name"] in ("local-llama", "auto"):
                m["litellm_params"]["api_base"] = local.base_url + "/v1"

    s = start_stack(
        tmp_path_factory.mktemp(f"bad-{request.param}"), providers, backends_of=stack, edit=point_local_at_the_fake
    )
    yield request.param, s, local
    s.stop()
    local.stop()


def _check(kind: str, local: FakeProvider, fresh: dict[str, FakeProvider], text: str, headers: dict | None) -> None:
    assert local.requests, "the local tier answered first"
    assert fresh["deepseek"].requests, f"the {kind} local answer was escalated to the next tier"
    # (the fake DeepSeek's canned answer is off topic, so the gate may take it one tier further)
    assert text.strip() in CLOUD_TEXTS, f"the client gets a cloud answer, not the {kind} one: {text!r}"
    if headers is not None:
        assert headers["x-synqra-escalated"].startswith("local-llama>deepseek-chat")
        assert headers["x-synqra-route"] != "local-llama"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_openai_sdk(bad_local, fresh_providers, stream: bool) -> None:
    kind, s, local = bad_local
    local.reset()
    client = openai.OpenAI(base_url=s.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=120)
    if stream:
        chunks = client.chat.completions.create(model="auto", messages=Q, max_tokens=64, stream=True)
        _check(
            kind, local, fresh_providers, "".join(c.choices[0].delta.content or "" for c in chunks if c.choices), None
        )
    else:
        raw = client.chat.completions.with_raw_response.create(model="auto", messages=Q, max_tokens=64)
        _check(kind, local, fresh_providers, raw.parse().choices[0].message.content or "", dict(raw.headers))


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_anthropic_sdk(bad_local, fresh_providers, stream: bool) -> None:
    kind, s, local = bad_local
    local.reset()
    client = anthropic.Anthropic(base_url=s.base_url, api_key=MASTER_KEY, max_retries=0, timeout=120)
    if stream:
        with client.messages.stream(model="auto", max_tokens=64, messages=Q) as st:
            text = "".join(st.text_stream)
        _check(kind, local, fresh_providers, text, None)
    else:
        raw = client.messages.with_raw_response.create(model="auto", max_tokens=64, messages=Q)
        _check(kind, local, fresh_providers, raw.parse().content[0].text, dict(raw.headers))
