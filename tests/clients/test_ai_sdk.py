"""The Vercel AI SDK (npm `ai`, `@ai-sdk/openai`, `@ai-sdk/anthropic`, pinned in package.json) against the proxy.

Driven through `ai_sdk_driver.mjs`: the OpenAI provider's default model class (the Responses API), its chat
class, and the Anthropic provider (/v1/messages); generateText, streamText (the Responses and Anthropic streams
report usage themselves, the chat stream asks with `stream_options.include_usage`), a tool the SDK runs between
two calls, and structured output (`text.format` / `response_format` json_schema, Anthropic's JSON tool).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import PROVIDER_OF, BillCheck
from tests.fakes.fake_providers import Scripted
from tests.stack import MASTER_KEY

HERE = Path(__file__).parent
DRIVER = HERE / "ai_sdk_driver.mjs"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (HERE / "node_modules" / "@ai-sdk" / "openai").exists(),
    reason="the AI SDK needs node and `npm ci` in tests/clients (scripts/install.sh test does it when npm exists)",
)

# The API each provider class speaks, and the paid model each case runs on (auto: the proxy picks).
CASES = [
    ("responses", "gpt-4o"),
    ("responses", "claude-sonnet"),
    ("responses", "auto"),
    ("chat", "deepseek-chat"),
    ("chat", "auto"),
    ("anthropic", "claude-sonnet"),
    ("anthropic", "deepseek-chat"),
]


def drive(base_url: str, api: str, call: str, model: str) -> dict[str, Any]:
    p = subprocess.run(
        ["node", str(DRIVER), base_url, MASTER_KEY, api, call, model],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(HERE),
    )
    lines = p.stdout.strip().splitlines()
    assert p.returncode == 0 and lines, f"driver failed (rc {p.returncode}): {p.stdout[-2000:]} {p.stderr[-2000:]}"
    out: dict[str, Any] = json.loads(lines[-1])
    assert "error" not in out, f"{api} {call} {model}: {out}"
    return out


@pytest.mark.parametrize("call", ["generate", "stream"])
@pytest.mark.parametrize("api,model", CASES)
def test_ai_sdk_text(client_stack, bill: BillCheck, api: str, model: str, call: str) -> None:
    out = drive(client_stack.base_url, api, call, model)
    assert out["text"].strip(), out
    usage = out["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0, out  # the SDK got the usage it reports on
    bill.settled()


@pytest.mark.parametrize("api,model", [c for c in CASES if c[1] != "auto"])
def test_ai_sdk_tool_round_trip(client_stack, bill: BillCheck, api: str, model: str) -> None:
    """The model calls the tool (scripted at the provider), the SDK runs it and calls again with the result."""
    provider = bill.providers[PROVIDER_OF[model]]
    provider.push(Scripted(tool="weather"))
    out = drive(client_stack.base_url, api, "tool", model)
    assert out["steps"] == 2 and out["text"].strip(), out
    assert len(provider.requests) == 2, [r.path for r in provider.requests]
    bill.settled()


@pytest.mark.parametrize(
    "api,model", [("responses", "gpt-4o"), ("chat", "deepseek-chat"), ("anthropic", "claude-sonnet")]
)
def test_ai_sdk_structured_output(client_stack, bill: BillCheck, api: str, model: str) -> None:
    out = drive(client_stack.base_url, api, "object", model)
    person = json.loads(out["text"])
    assert isinstance(person.get("name"), str) and isinstance(person.get("age"), int), out
    bill.settled()
