"""Claude Code (npm `@anthropic-ai/claude-code`, pinned in package.json) in print mode against the proxy.

`claude -p` with ANTHROPIC_BASE_URL = proxy and the master key: its default model (its own Claude
model names), then `--model claude-sonnet`. It streams /v1/messages?beta=true with
`metadata.user_id`, a large system prompt and its tools, and calls /v1/messages/count_tokens.
Offline: telemetry, auto-update, error reporting and other non-essential traffic are switched off;
the only address it may reach is the proxy.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.clients.conftest import BillCheck, run_cli
from tests.stack import MASTER_KEY

HERE = Path(__file__).parent
CLAUDE = HERE / "node_modules" / ".bin" / "claude"

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not CLAUDE.exists(),
    reason="Claude Code needs node and `npm ci` in tests/clients (scripts/install.sh test does it when npm exists)",
)

OFFLINE_ENV = {
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # auto-update, telemetry, error reports, release notes...
    "DISABLE_AUTOUPDATER": "1",
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "CLAUDE_CODE_DISABLE_FEEDBACK_SURVEY": "1",
    "CLAUDE_CODE_DISABLE_TERMINAL_TITLE": "1",
    "CLAUDE_CODE_MAX_RETRIES": "1",  # a refused request fails the test quickly instead of backing off for minutes
    "API_TIMEOUT_MS": "120000",
}


def run_claude(base_url: str, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(
        [str(CLAUDE), "-p", "Say hello in one short sentence.", "--output-format", "json", *args],
        home,
        300,
        ANTHROPIC_BASE_URL=base_url,
        ANTHROPIC_API_KEY=MASTER_KEY,
        **OFFLINE_ENV,
    )


@pytest.mark.parametrize("args", [(), ("--model", "claude-sonnet")], ids=["default-model", "model-claude-sonnet"])
def test_claude_code_print_mode(client_stack, bill: BillCheck, tmp_path: Path, args: tuple[str, ...]) -> None:
    p = run_claude(client_stack.base_url, tmp_path / "home", *args)
    out = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    try:
        result = json.loads(out)
    except ValueError:
        result = {}
    assert p.returncode == 0 and not result.get("is_error"), (
        f"claude -p {' '.join(args)} failed (rc {p.returncode}):\nstdout: {p.stdout[-3000:]}\nstderr: {p.stderr[-3000:]}"
    )
    assert str(result.get("result", "")).strip(), result
    assert bill.paid_calls() or any(r["served_model"] == "local-llama" for r in bill.rows()), "nothing answered?"
    bill.settled()
    asked = {r["requested_model"] for r in bill.rows()}
    if not args:  # its default model is one of Claude's own names, mapped by synqra.routing.alias_patterns
        assert asked and all(m.startswith("claude-") and m != "claude-sonnet" for m in asked), asked
