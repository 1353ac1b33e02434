"""Clouds without keys are unavailable, and say so: routing and escalation pass them over, an explicit request
goes to its configured fallback or gets a 400 naming the variable to set, never LiteLLM's cooldown message;
a key the provider refuses sets the model aside for a while instead of cooling it down."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
BRAND = [{"role": "user", "content": "Write a compelling brand story for a luxury tech startup"}]
HELLO_CUT = {
    "model": "auto",
    "max_tokens": 3,
    "temperature": 0,
    "messages": [{"role": "user", "content": "Say hello."}],
}


def chat(s: RunningStack, body: dict, path: str = "/v1/chat/completions") -> httpx.Response:
    return httpx.post(f"{s.base_url}{path}", json=body, headers=AUTH, timeout=180)


@pytest.fixture(scope="module")
def no_claude(stack: RunningStack, providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory):
    """A proxy with DeepSeek and OpenAI keys but no ANTHROPIC_API_KEY."""
    s = start_stack(
        tmp_path_factory.mktemp("no-claude"), {k: providers[k] for k in ("deepseek", "openai")}, backends_of=stack
    )
    yield s
    s.stop()


def test_serve_says_which_tiers_can_answer(no_claude: RunningStack) -> None:
    assert (
        "tiers: local-llama ok, deepseek-chat ok, claude-sonnet unavailable (ANTHROPIC_API_KEY not set)"
        in no_claude.log_path.read_text()
    )
    cloud = httpx.get(f"{no_claude.base_url}/api/models/status", headers=AUTH, timeout=30).json()["cloud"]
    assert cloud["claude-sonnet"]["available"] is False
    assert cloud["claude-sonnet"]["unavailable_reason"] == "ANTHROPIC_API_KEY not set"
    assert cloud["deepseek-chat"]["available"] is True and cloud["deepseek-chat"]["unavailable_reason"] is None


def test_auto_passes_over_a_tier_without_a_key_and_says_so(
    no_claude: RunningStack, providers: dict[str, FakeProvider]
) -> None:
    """The guide's brand-story example goes to Claude by the creative rule; without its key, the best tier that can."""
    for p in providers.values():
        p.reset()
    r = chat(no_claude, {"model": "auto", "messages": BRAND, "max_tokens": 32})
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-route"] == "deepseek-chat"
    assert r.headers["x-synqra-route-note"] == "claude-sonnet unavailable: ANTHROPIC_API_KEY not set"
    assert not providers["anthropic"].requests


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages"])
def test_an_explicit_request_goes_to_its_configured_fallback(
    no_claude: RunningStack, providers: dict[str, FakeProvider], path: str
) -> None:
    providers["openai"].reset()
    r = chat(no_claude, {"model": "claude-sonnet", "messages": BRAND, "max_tokens": 16}, path)
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-route"] == "gpt-4o" and r.headers["x-synqra-fallback"] == "claude-sonnet>gpt-4o"
    assert r.headers["x-synqra-route-note"] == "claude-sonnet unavailable: ANTHROPIC_API_KEY not set"
    assert len(providers["openai"].requests) == 1


def ledger_rows(s: RunningStack, rid: str) -> list[dict]:
    records = httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]
    return [r for r in records if r["request_id"] == rid or r["request_id"].startswith(rid + ":")]


def reserved(s: RunningStack) -> float:
    return httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()["reserved"]


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/messages", "/v1/responses"])
def test_the_model_standing_in_for_one_without_a_key_is_in_the_ledger_at_its_bill(
    no_claude: RunningStack, providers: dict[str, FakeProvider], path: str, stream: bool
) -> None:
    """Found by review16: GPT-4o standing in for claude-sonnet (no ANTHROPIC_API_KEY, or a key Anthropic refused)
    answered and was billed (10 in / 3 out, $0.000055), but the request left no ledger row and held its
    reservation ($0.000208) until it lapsed (15 minutes): the stand-in was marked as a LiteLLM fallback, whose row
    the hooks leave to the fallback's own accounting, and there was none."""
    providers["openai"].reset()
    if path == "/v1/responses":
        body: dict = {"model": "claude-sonnet", "input": BRAND[0]["content"], "max_output_tokens": 16}
    else:
        body = {"model": "claude-sonnet", "messages": BRAND, "max_tokens": 16}
    r = chat(no_claude, {**body, "stream": stream}, path)
    assert r.status_code == 200, r.text
    assert r.headers["x-synqra-fallback"] == "claude-sonnet>gpt-4o"
    rid = r.headers["x-synqra-request-id"]
    bill = providers["openai"].billed_tokens()
    assert bill[1] > 0 and len(providers["openai"].requests) == 1

    def booked() -> tuple[int, int]:
        rows = ledger_rows(no_claude, rid)
        return sum(x["prompt_tokens"] for x in rows), sum(x["completion_tokens"] for x in rows)

    assert wait_until(lambda: booked() == bill and reserved(no_claude) == 0, 15), (
        ledger_rows(no_claude, rid),
        bill,
        reserved(no_claude),
    )
    rows = ledger_rows(no_claude, rid)
    assert [(x["requested_model"], x["served_model"]) for x in rows] == [("claude-sonnet", "gpt-4o")]
    assert rows[0]["cost_usd"] == pytest.approx(bill[0] * 0.0000025 + bill[1] * 0.00001, abs=1e-9)


def test_escalation_skips_a_tier_without_a_key(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """No DeepSeek key: a cut-off local answer is escalated straight to Claude."""
    s = start_stack(tmp_path, {"anthropic": providers["anthropic"]}, backends_of=stack)
    try:
        for p in providers.values():
            p.reset()
        r = chat(s, HELLO_CUT)
        assert r.status_code == 200, r.text
        assert r.headers["x-synqra-escalated"] == "local-llama>claude-sonnet"
        assert not providers["deepseek"].requests and len(providers["anthropic"].requests) == 1
    finally:
        s.stop()


@pytest.mark.parametrize(
    "path,error_of",
    [
        ("/v1/chat/completions", lambda b: b["error"]["message"]),
        ("/v1/messages", lambda b: b["type"] == "error" and b["error"]["message"]),
    ],
)
def test_no_model_that_can_answer_is_a_400_naming_the_variables(
    stack: RunningStack, tmp_path: Path, path: str, error_of
) -> None:
    s = start_stack(tmp_path, {}, backends_of=stack)  # no cloud keys at all: the README's first run
    try:
        r = chat(s, {"model": "claude-sonnet", "messages": BRAND, "max_tokens": 16}, path)
        assert r.status_code == 400, r.text
        message = error_of(r.json())
        assert "ANTHROPIC_API_KEY not set" in message and "OPENAI_API_KEY not set" in message
        assert "cooldown" not in message.lower() and "No deployments available" not in message
        r = chat(s, {"model": "auto", "messages": BRAND, "max_tokens": 16}, path)  # auto: the local model answers
        assert r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama", r.text
        assert r.headers["x-synqra-route-note"].startswith("claude-sonnet unavailable")
    finally:
        s.stop()


def test_a_refused_key_sets_the_model_aside(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    """A 401 from the provider: the model is set aside (not cooled down) with the reason; the retry after
    unavailable_retry_s is tested with a clock of its own (tests/unit/test_availability.py)."""
    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"routing": {"unavailable_retry_s": 600}})
    try:
        for p in providers.values():
            p.reset()
        providers["anthropic"].push(Scripted(status=401))
        r = chat(s, {"model": "claude-sonnet", "messages": BRAND, "max_tokens": 16})
        assert r.status_code == 200 and r.headers["x-synqra-fallback"] == "claude-sonnet>gpt-4o", r.text

        def claude() -> dict:
            return httpx.get(f"{s.base_url}/api/models/status", headers=AUTH, timeout=30).json()["cloud"][
                "claude-sonnet"
            ]

        assert wait_until(lambda: claude()["available"] is False, 30), claude()
        assert claude()["unavailable_reason"] == "its provider refused the API key (HTTP 401)"
        r = chat(s, {"model": "auto", "messages": BRAND, "max_tokens": 16})
        assert r.headers["x-synqra-route"] == "deepseek-chat"
        assert "refused the API key (HTTP 401)" in r.headers["x-synqra-route-note"]
        assert len(providers["anthropic"].requests) == 1, "set aside: not asked again meanwhile"
    finally:
        s.stop()
