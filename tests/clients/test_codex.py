"""OpenAI's Codex CLI (npm `@openai/codex`, pinned in package.json) in `codex exec` mode against the proxy.

Codex speaks only the Responses API: it streams /v1/responses with `store: false`, its whole conversation in
`input`, about 5,500 tokens of instructions and tools (function tools and a `namespace` tool), `reasoning`,
`include: ["reasoning.encrypted_content"]`, `parallel_tool_calls` and a `prompt_cache_key`. It is pointed at the
proxy by a model provider in its config.toml (base URL, the key's environment variable, `wire_api = "responses"`).
Its built-in web search, a tool the provider bills per use, is switched off: the proxy refuses it with a 400
(request_checks.UNPRICED_TOOL_TYPES). Offline: update checks, plugins, apps and analytics are off, so the only
address it reaches is the proxy (checked with strace: no DNS lookup).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.clients.conftest import BillCheck, run_cli
from tests.fakes.fake_providers import Scripted
from tests.stack import MASTER_KEY

HERE = Path(__file__).parent
CODEX = HERE / "node_modules" / ".bin" / "codex"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not CODEX.exists(),
    reason="Codex needs node and `npm ci` in tests/clients (scripts/install.sh test does it when npm exists)",
)

CONFIG = """\
model_provider = "synqra"
web_search = "disabled"
check_for_update_on_startup = false

[model_providers.synqra]
name = "synqra"
base_url = "{base_url}/v1"
env_key = "SYNQRA_API_KEY"
wire_api = "responses"
request_max_retries = 0
stream_max_retries = 0

[analytics]
enabled = false
"""
OFFLINE_FLAGS = tuple(
    arg
    for feature in ("plugins", "remote_plugin", "apps", "in_app_updates", "skill_search")
    for arg in ("--disable", feature)
)


def run_codex(base_url: str, home: Path, model: str, prompt: str) -> list[dict[str, Any]]:
    """`codex exec --json`: its events (one JSON object a line); fails with its output if it did not succeed."""
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(CONFIG.format(base_url=base_url))
    argv = [str(CODEX), "exec", "--json", "--ephemeral", "--skip-git-repo-check", *OFFLINE_FLAGS, "-m", model, prompt]
    p = run_cli(argv, home, 180, CODEX_HOME=str(codex_home), SYNQRA_API_KEY=MASTER_KEY)
    events = []
    for line in p.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    failed = [e for e in events if e.get("type") in ("turn.failed", "error")]
    assert p.returncode == 0 and not failed, (
        f"codex exec -m {model} failed (rc {p.returncode}):\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
    )
    return events


def answers(events: list[dict[str, Any]]) -> list[str]:
    return [
        str(e["item"].get("text", ""))
        for e in events
        if e.get("type") == "item.completed" and e["item"].get("type") == "agent_message"
    ]


@pytest.mark.parametrize("model", ["gpt-4o", "claude-sonnet", "auto"])
def test_codex_exec(client_stack, bill: BillCheck, tmp_path: Path, model: str) -> None:
    """gpt-4o goes to the fake's native /v1/responses; claude-sonnet is bridged to /v1/messages; auto picks."""
    events = run_codex(client_stack.base_url, tmp_path / "home", model, "Say hello in one short sentence.")
    assert any(a.strip() for a in answers(events)), events
    if model == "gpt-4o":
        assert {r.path for r in bill.providers["openai"].requests} == {"/v1/responses"}
    bill.settled()


@pytest.mark.parametrize("model,provider", [("gpt-4o", "openai"), ("claude-sonnet", "anthropic")])
def test_codex_runs_a_tool_and_answers(
    client_stack, bill: BillCheck, tmp_path: Path, model: str, provider: str
) -> None:
    """The model calls Codex's exec_command tool; Codex runs it (read-only sandbox) and sends the result back in
    a second call, which is answered in text: two paid calls, both on the ledger."""
    bill.providers[provider].push(Scripted(tool="exec_command"))
    events = run_codex(client_stack.base_url, tmp_path / "home", model, "List the files here.")
    assert len(bill.providers[provider].requests) == 2, [r.body.get("input") for r in bill.providers[provider].requests]
    assert any(a.strip() for a in answers(events)), events
    bill.settled()
