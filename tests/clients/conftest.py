"""The real-client suite's stack: its own proxy and fake providers, and the bill check after each test.

The proxy shares the session stack's llama.cpp and embedding servers (tests/conftest.py), so it
starts in seconds, but keeps its own ledger, budget and LiteLLM cooldowns apart from the other
suites. Its fake providers speak tools and JSON output (tests/fakes/fake_providers.py).

Every client test ends with `settled`: the proxy's ledger rows written during the test equal what
each fake provider billed (tokens, and cost at the prices of litellm_config.yaml), and once the
request is done nothing stays reserved. Streams settle in LiteLLM's background logging task, so
the check polls briefly before it fails.
"""
from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, REPO, RunningStack, start_stack

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
# Which fake provider bills which model of litellm_config.yaml.
PROVIDER_OF = {"deepseek-chat": "deepseek", "claude-sonnet": "anthropic", "gpt-4o": "openai"}
SETTLE_S = 15.0


def _prices() -> dict[str, tuple[Decimal, Decimal]]:
    cfg = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    out = {}
    for m in cfg["model_list"]:
        info = m.get("model_info") or {}
        if m["model_name"] in PROVIDER_OF:
            out[m["model_name"]] = (Decimal(str(info["input_cost_per_token"])), Decimal(str(info["output_cost_per_token"])))
    return out


PRICES = _prices()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.clients)
            item.add_marker(pytest.mark.stack)


@pytest.fixture(scope="session")
def client_providers() -> Iterator[dict[str, FakeProvider]]:
    p = {
        "openai": FakeProvider("openai", default_text="Fake GPT-4o answer for a real client.").start(),
        "deepseek": FakeProvider("deepseek", default_text="Fake DeepSeek answer for a real client.").start(),
        "anthropic": FakeProvider("anthropic", default_text="Fake Claude answer for a real client.").start(),
    }
    yield p
    for fp in p.values():
        fp.stop()


@pytest.fixture(scope="session")
def client_stack(
    stack: RunningStack, client_providers: dict[str, FakeProvider], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningStack]:
    s = start_stack(tmp_path_factory.mktemp("clients-stack"), client_providers, backends_of=stack)
    yield s
    s.stop()


@dataclass
class BillCheck:
    """The ledger rows a test adds, against what the fake providers billed meanwhile."""

    stack: RunningStack
    providers: dict[str, FakeProvider]
    rows_before: int
    # What an earlier test may have left reserved (a leak it already reported): this test adds none.
    reserved_before: float

    def rows(self) -> list[dict[str, Any]]:
        return ledger(self.stack)[self.rows_before:]

    def mismatches(self) -> dict[str, dict[str, Any]]:
        """Per paid model whose ledger differs from its provider's bill: both sides."""
        rows = self.rows()
        out = {}
        for model, provider in PROVIDER_OF.items():
            mine = [r for r in rows if r["served_model"] == model]
            led = (sum(r["prompt_tokens"] for r in mine), sum(r["completion_tokens"] for r in mine))
            led_cost = sum((Decimal(str(r["cost_usd"])) for r in mine), Decimal(0))
            bill = self.providers[provider].billed_tokens()
            inp, outp = PRICES[model]
            bill_cost = bill[0] * inp + bill[1] * outp
            if led != bill or abs(led_cost - bill_cost) > Decimal("0.000001"):
                out[model] = {"ledger_tokens": led, "ledger_cost": float(led_cost), "ledger_rows": len(mine),
                              "provider_tokens": bill, "provider_cost": float(bill_cost),
                              "provider_calls": len(self.providers[provider].requests)}
        return out

    def paid_calls(self) -> int:
        return sum(len(p.requests) for p in self.providers.values())

    def settled(self, timeout_s: float = SETTLE_S) -> None:
        """Assert: ledger == providers' bill for every paid model, and nothing left reserved (polls up to timeout_s)."""
        deadline = time.monotonic() + timeout_s
        while True:
            bad = self.mismatches()
            reserved = round(budget_status(self.stack)["reserved"] - self.reserved_before, 9)
            if (not bad and reserved <= 0) or time.monotonic() > deadline:
                break
            time.sleep(0.25)
        detail = json.dumps({"mismatches": bad, "reserved_added": reserved, "new_rows": [
            {k: r.get(k) for k in ("request_id", "requested_model", "served_model", "kind", "prompt_tokens", "completion_tokens", "cost_usd")}
            for r in self.rows()]}, indent=1, default=str)
        assert not bad, f"ledger != fake providers' bill:\n{detail}"
        assert reserved <= 0, f"money still reserved after the request: {reserved}\n{detail}"


def ledger(s: RunningStack) -> list[dict[str, Any]]:
    return httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]


def budget_status(s: RunningStack) -> dict[str, Any]:
    return httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()


@pytest.fixture
def bill(client_stack: RunningStack, client_providers: dict[str, FakeProvider]) -> Iterator[BillCheck]:
    """Fresh fake bills, the ledger's length now; the test calls `bill.settled()` at its end."""
    for fp in client_providers.values():
        fp.reset()
    # A previous test's failed local call may have put local-llama into LiteLLM's cooldown
    # (issue 14 defect 3): let it expire so each test shows its own behaviour, not the last one's.
    _wait_out_cooldown(client_stack)
    yield BillCheck(client_stack, client_providers, len(ledger(client_stack)), budget_status(client_stack)["reserved"])


_COOLDOWN_MARKS = ("cooldown", "Cooldown")


def _wait_out_cooldown(s: RunningStack) -> None:
    log = s.log_path.read_text(errors="replace")
    seen = getattr(s, "_cooldown_lines_seen", 0)
    lines = [ln for ln in log.splitlines() if any(m in ln for m in _COOLDOWN_MARKS)]
    if len(lines) > seen:
        time.sleep(6)  # LiteLLM's default cooldown is 5 s
    s._cooldown_lines_seen = len(lines)  # type: ignore[attr-defined]


@pytest.fixture
def base_url(client_stack: RunningStack) -> str:
    return client_stack.base_url


def internal_addresses(s: RunningStack) -> list[str]:
    """Addresses behind the proxy that must never reach a client (backends and providers)."""
    cfg = yaml.safe_load(s.config_path.read_text())
    out = [str(m["litellm_params"].get("api_base")) for m in cfg["model_list"] if "127.0.0.1" in str(m["litellm_params"].get("api_base"))]
    out += [p.base_url for p in s.providers.values()]
    return sorted(set(a.removesuffix("/v1") for a in out))


os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
