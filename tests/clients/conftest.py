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

import ast
import importlib.util
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.fakes.fake_providers import FakeProvider, cloud_fakes
from tests.stack import MASTER_KEY, REPO, RunningStack, start_stack

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
# Which fake provider bills which model of litellm_config.yaml.
PROVIDER_OF = {"deepseek-chat": "deepseek", "claude-sonnet": "anthropic", "gpt-4o": "openai"}
SETTLE_S = 15.0
# The ledger fields a bill mismatch is read from (what a failed bill check prints of each new row).
_ROW_FIELDS = (
    "request_id",
    "requested_model",
    "served_model",
    "kind",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
)


def _prices() -> dict[str, tuple[Decimal, Decimal]]:
    cfg = yaml.safe_load((REPO / "litellm_config.yaml").read_text())
    out = {}
    for m in cfg["model_list"]:
        info = m.get("model_info") or {}
        if m["model_name"] in PROVIDER_OF:
            out[m["model_name"]] = (
                Decimal(str(info["input_cost_per_token"])),
                Decimal(str(info["output_cost_per_token"])),
            )
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
    with cloud_fakes(" for a real client") as p:
        yield p


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
    log_offset: int = 0
    checked: bool = False

    def cooldowns(self) -> list[dict[str, Any]]:
        """LiteLLM cooldowns that started during this test (from the proxy log), one per event."""
        return cooldowns_in(proxy_log(self.stack)[self.log_offset :])

    def client_error_cooldowns(self) -> list[dict[str, Any]]:
        return [
            c
            for c in self.cooldowns()
            if str(c.get("status_code", "")).startswith("4") and c.get("status_code") != "429"
        ]

    def rows(self) -> list[dict[str, Any]]:
        return ledger(self.stack)[self.rows_before :]

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
                out[model] = {
                    "ledger_tokens": led,
                    "ledger_cost": float(led_cost),
                    "ledger_rows": len(mine),
                    "provider_tokens": bill,
                    "provider_cost": float(bill_cost),
                    "provider_calls": len(self.providers[provider].requests),
                }
        return out

    def _wait_for_bill(self, timeout_s: float) -> tuple[dict[str, dict[str, Any]], float]:
        """(mismatches, dollars reserved since the test began), polled until both are settled or timeout_s
        passes: settling runs after the client has its answer."""
        deadline = time.monotonic() + timeout_s
        while True:
            bad = self.mismatches()
            reserved = round(budget_status(self.stack)["reserved"] - self.reserved_before, 9)
            if (not bad and reserved <= 0) or time.monotonic() > deadline:
                return bad, reserved
            time.sleep(0.25)

    def _row_summaries(self) -> list[dict[str, Any]]:
        """The test's new ledger rows, cut to the fields a bill mismatch is read from."""
        return [{k: r.get(k) for k in _ROW_FIELDS} for r in self.rows()]

    def paid_calls(self) -> int:
        return sum(len(p.requests) for p in self.providers.values())

    def settled(self, timeout_s: float = SETTLE_S) -> None:
        """Assert: ledger == providers' bill for every paid model, nothing left reserved (polls up to
        timeout_s), and no client error (a 4xx other than 429) put a deployment into cooldown."""
        self.checked = True
        bad, reserved = self._wait_for_bill(timeout_s)
        detail = json.dumps(
            {
                "mismatches": bad,
                "reserved_added": reserved,
                "new_rows": self._row_summaries(),
            },
            indent=1,
            default=str,
        )
        assert not bad, f"ledger != fake providers' bill:\n{detail}"
        assert reserved <= 0, f"money still reserved after the request: {reserved}\n{detail}"
        cooled = self.client_error_cooldowns()
        assert not cooled, f"a client error put a deployment into cooldown (the next requests go elsewhere): {cooled}"

    def describe(self, wait_s: float = 5.0) -> str:
        """The bill check's figures, for the report of a test that failed before reaching it."""
        bad, reserved = self._wait_for_bill(wait_s)
        rows = self._row_summaries()
        calls = {
            name: [
                (r.path, r.body.get("model"), r.body.get("_prompt_tokens"), r.body.get("_completion_tokens"))
                for r in fp.requests
            ]
            for name, fp in self.providers.items()
            if fp.requests
        }
        return json.dumps(
            {
                "ledger_matches_bill": not bad,
                "mismatches": bad,
                "reserved_added": reserved,
                "new_rows": rows,
                "provider_calls (path, model, in, out)": calls,
                "cooldowns": self.cooldowns(),
            },
            indent=1,
            default=str,
        )


def run_cli(argv: list[str], home: Path, timeout_s: float, **env: str) -> subprocess.CompletedProcess[str]:
    """A client's command line run as a new user would: a HOME of its own, no terminal, no input."""
    home.mkdir(parents=True, exist_ok=True)
    fresh = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "TERM": "dumb", **env}
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout_s, env=fresh, cwd=str(home), stdin=subprocess.DEVNULL
    )


def refused_naming(exc: BaseException, *params: str) -> bool:
    """A clear 400 that names one of `params` (what an explicit local model may answer)."""
    status = getattr(exc, "status_code", None)
    return status == 400 and any(p in str(exc) for p in params)


def expect_refusal(model: str, exc: BaseException, *params: str, allowed: str = "local-llama") -> None:
    """Only `allowed` may fail here, and only with a 400 naming one of `params`; never a silent 200 with less."""
    assert model == allowed, f"{model} failed: {exc!r}"[:3000]
    assert refused_naming(exc, *params), (
        f"{model} neither honoured nor refused (400 naming {'/'.join(params)}) the request: {exc!r}"[:3000]
    )


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
    _wait_out_cooldowns(client_stack)
    yield BillCheck(
        client_stack,
        client_providers,
        len(ledger(client_stack)),
        budget_status(client_stack)["reserved"],
        len(proxy_log(client_stack)),
    )


def proxy_log(s: RunningStack) -> str:
    path = s.data_dir / "logs" / "proxy.log"
    return path.read_text(errors="replace") if path.exists() else ""


_COOLDOWN = re.compile(r"Cooldown Deployments=(\[.*\])")


def cooldowns_in(log: str) -> list[dict[str, Any]]:
    """LiteLLM logs its cooldown list (`Cooldown Deployments=[(id, {...})]`) whenever it filters deployments."""
    seen: dict[tuple[str, float], dict[str, Any]] = {}
    for m in _COOLDOWN.finditer(log):
        try:
            entries = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            continue
        for dep_id, info in entries:
            seen[(dep_id, float(info.get("timestamp", 0)))] = {"deployment": dep_id[:12], **info}
    return list(seen.values())


def _wait_out_cooldowns(s: RunningStack) -> None:
    """Let LiteLLM cooldowns an earlier test caused expire (issue 14 defect 3), so each test shows
    its own behaviour, not the previous one's."""
    ends = [float(c.get("timestamp", 0)) + float(c.get("cooldown_time", 5)) for c in cooldowns_in(proxy_log(s))]
    wait = max(ends, default=0) + 0.5 - time.time()
    if wait > 0:
        time.sleep(min(wait, 65))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A test that failed before its bill check still reports the ledger against the bill."""
    outcome = yield
    rep = outcome.get_result()
    check = getattr(item, "funcargs", {}).get("bill")
    if rep.when == "call" and rep.failed and isinstance(check, BillCheck) and not check.checked:
        try:
            rep.sections.append(("ledger vs fake providers' bill", check.describe()))
        except Exception as exc:  # the report must not hide the failure itself
            rep.sections.append(("ledger vs fake providers' bill", f"could not read: {exc!r}"))


@pytest.fixture
def base_url(client_stack: RunningStack) -> str:
    return client_stack.base_url


def internal_addresses(s: RunningStack) -> list[str]:
    """Addresses behind the proxy that must never reach a client (backends and providers)."""
    cfg = yaml.safe_load(s.config_path.read_text())
    out = [
        str(m["litellm_params"].get("api_base"))
        for m in cfg["model_list"]
        if "127.0.0.1" in str(m["litellm_params"].get("api_base"))
    ]
    out += [p.base_url for p in s.providers.values()]
    return sorted(set(a.removesuffix("/v1") for a in out))


os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
# tiktoken (LangChain's OpenAIEmbeddings tokenizes with it) downloads its encodings unless cached;
# there is no internet here: use the copies LiteLLM ships, as LiteLLM itself does.
_litellm = importlib.util.find_spec("litellm")
if _litellm is not None and _litellm.submodule_search_locations:
    os.environ.setdefault(
        "TIKTOKEN_CACHE_DIR",
        str(Path(list(_litellm.submodule_search_locations)[0]) / "litellm_core_utils" / "tokenizers"),
    )
