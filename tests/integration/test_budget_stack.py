"""The monthly budget through the running proxy, on SQLite and on a real Redis server.

Each test starts its own proxy (sharing the session stack's llama.cpp and embedding
servers) with a budget small enough to run out, fake Anthropic behind it, and a
local webhook receiver for alerts.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.alert_receiver import AlertReceiver
from tests.fakes.fake_providers import FakeProvider, Scripted
from tests.redis_server import RedisServer
from tests.stack import MASTER_KEY, RunningStack, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ANSWER = " ".join(f"word{i}" for i in range(20))  # 20 tokens by the fake's count, = max_tokens
PROMPT_WORDS = 6
IN_PRICE, OUT_PRICE = Decimal("0.000003"), Decimal("0.000015")  # claude-sonnet in litellm_config.yaml
CALL_COST = PROMPT_WORDS * IN_PRICE + 20 * OUT_PRICE
FITS = 50
LIMIT = float(CALL_COST * FITS / Decimal("0.95"))


@pytest.fixture
def receiver() -> Iterator[AlertReceiver]:
    r = AlertReceiver()
    yield r
    r.stop()


@pytest.fixture
def claude() -> Iterator[FakeProvider]:
    fp = FakeProvider("anthropic", default_text=ANSWER).start()
    yield fp
    fp.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    r = RedisServer(tmp_path / "redis").start()
    yield r
    r.stop()


def budget_stack(tmp: Path, stack: RunningStack, claude: FakeProvider, **budget: Any) -> RunningStack:
    return start_stack(
        tmp, {"anthropic": claude}, {"budget": {"monthly_limit_usd": LIMIT, **budget}}, backends_of=stack
    )


def paid_call(base_url: str, i: int, model: str = "claude-sonnet") -> httpx.Response:
    return httpx.post(
        f"{base_url}/v1/chat/completions",
        json={
            "model": model,
            "max_tokens": 20,
            "messages": [{"role": "user", "content": f"Please answer briefly, request {i}"}],
        },
        headers=AUTH,
        timeout=120,
    )


def ledger(s: RunningStack) -> list[dict[str, Any]]:
    return httpx.get(f"{s.base_url}/api/budget/ledger", headers=AUTH, timeout=30).json()["records"]


def status(s: RunningStack) -> dict[str, Any]:
    return httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()


def provider_bill(fp: FakeProvider) -> Decimal:
    p, c = fp.billed_tokens()
    return p * IN_PRICE + c * OUT_PRICE


def _assert_refusal(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    err = r.json()["error"]
    assert "monthly budget is exhausted" in err["message"] and "resets on" in err["message"]


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_200_concurrent_paid_requests_never_overspend(
    tmp_path: Path,
    stack: RunningStack,
    claude: FakeProvider,
    receiver: AlertReceiver,
    store: str,
    request: pytest.FixtureRequest,
) -> None:
    extra = {"store": request.getfixturevalue("redis_server").url} if store == "redis" else {}
    s = budget_stack(tmp_path, stack, claude, alert_webhook=receiver.url, **extra)
    try:
        with ThreadPoolExecutor(max_workers=200) as pool:
            results = list(pool.map(lambda i: paid_call(s.base_url, i), range(200)))
        # Reservations hold a little more than calls cost, so a burst can end with room for a
        # few more calls; spend that room one call at a time until the budget refuses.
        for i in range(200, 200 + FITS):
            results.append(paid_call(s.base_url, i))
            if results[-1].status_code != 200:
                break
        assert results[-1].status_code == 429, "sequential calls must reach the stop"
        ok = [r for r in results if r.status_code == 200]
        for r in results:
            if r.status_code != 200:
                _assert_refusal(r)
        assert 0.6 * FITS <= len(ok) <= FITS, f"{len(ok)} paid calls served; about {FITS} fit"
        rows = [r for r in ledger(s) if r["served_model"] == "claude-sonnet"]
        assert len(rows) == len(ok) == len(claude.requests), "one ledger record per served call, none for refusals"
        assert {r["request_id"] for r in rows} == {r.headers["x-synqra-request-id"] for r in ok}
        spent = sum(Decimal(str(r["cost_usd"])) for r in rows)
        assert spent <= Decimal(str(LIMIT)), "committed spend must never exceed the hard limit"
        assert abs(spent - provider_bill(claude)) < Decimal("0.005"), "ledger equals the provider's tokens x prices"
        assert abs(spent - provider_bill(claude)) < Decimal("0.000001")
        st = status(s)
        assert st["state"] == "stopped" and st["monthly_used"] <= LIMIT and st["reserved"] == 0
        assert wait_until(lambda: "0.7" in receiver.levels(), timeout_s=15)
        time.sleep(1)
        assert receiver.levels().count("0.7") == 1, receiver.posts
        # Local models are never blocked, and auto is served locally once paid calls stop.
        assert paid_call(s.base_url, 999, model="local-llama").status_code == 200
        r = paid_call(s.base_url, 1000, model="auto")
        assert r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama"
    finally:
        s.stop()


def test_two_proxies_share_one_redis_budget(
    tmp_path: Path, stack: RunningStack, claude: FakeProvider, redis_server: RedisServer
) -> None:
    a = budget_stack(tmp_path / "a", stack, claude, store=redis_server.url)
    b = budget_stack(tmp_path / "b", stack, claude, store=redis_server.url)
    try:
        with ThreadPoolExecutor(max_workers=64) as pool:
            results = list(pool.map(lambda i: paid_call((a, b)[i % 2].base_url, i), range(160)))
        ok = [r for r in results if r.status_code == 200]
        assert 0.6 * FITS <= len(ok) <= FITS
        assert any(r.status_code == 200 for r in results[0::2]) and any(r.status_code == 200 for r in results[1::2])
        rows = ledger(a)
        assert len(rows) == len(ok) and rows == ledger(b), "both proxies read the one ledger"
        assert sum(Decimal(str(r["cost_usd"])) for r in rows) <= Decimal(str(LIMIT))
    finally:
        a.stop()
        b.stop()


def test_kill_9_under_load_loses_no_record(tmp_path: Path, stack: RunningStack, claude: FakeProvider) -> None:
    claude.push()  # default answers
    s = budget_stack(tmp_path, stack, claude, monthly_limit_usd=100.0, reservation_ttl_s=4)
    served: list[str] = []
    stop = threading.Event()

    def client(k: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                r = paid_call(s.base_url, k * 10_000 + i)
                if r.status_code == 200:
                    served.append(r.headers["x-synqra-request-id"])
            except httpx.HTTPError:
                time.sleep(0.1)  # the proxy is down or restarting
            i += 1

    try:
        threads = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        assert wait_until(lambda: len(served) >= 20, timeout_s=60)
        os.kill(s.pids()["proxy"], signal.SIGKILL)
        old = s.pids()["proxy"]
        assert wait_until(lambda: s.pids()["proxy"] != old, timeout_s=30)
        n_before = len(served)
        assert wait_until(lambda: len(served) >= n_before + 10, timeout_s=120), "serving again after the restart"
        stop.set()
        for t in threads:
            t.join(60)
        rows = ledger(s)
        ids = [r["request_id"] for r in rows]
        assert len(ids) == len(set(ids)), "each request recorded exactly once"
        missing = set(served) - set(ids)
        assert not missing, f"{len(missing)} completed requests missing from the ledger"
        # In-flight reservations of the killed process lapse after their TTL.
        assert wait_until(lambda: status(s)["reserved"] == 0, timeout_s=30)
    finally:
        stop.set()
        s.stop()


def test_redis_outage_fails_closed_and_recovers(
    tmp_path: Path, stack: RunningStack, claude: FakeProvider, redis_server: RedisServer
) -> None:
    s = budget_stack(tmp_path, stack, claude, monthly_limit_usd=100.0, store=redis_server.url, store_timeout_s=0.5)
    try:
        assert paid_call(s.base_url, 1).status_code == 200
        redis_server.stop()
        r = paid_call(s.base_url, 2)
        assert r.status_code == 429 and "budget store is unreachable" in r.json()["error"]["message"]
        r = paid_call(s.base_url, 3, model="auto")
        assert r.status_code == 200 and r.headers["x-synqra-route"] == "local-llama"
        assert paid_call(s.base_url, 4, model="local-llama").status_code == 200
        redis_server.start()
        assert wait_until(lambda: paid_call(s.base_url, 5).status_code == 200, timeout_s=30), (
            "recovers when Redis returns"
        )
        assert wait_until(lambda: len(ledger(s)) >= 4, timeout_s=30), "records queued during the outage are written"
    finally:
        s.stop()


# --- the reservation must cover what the provider is allowed to bill (review: money leaks) -------------------

LONG_ANSWER = " ".join(f"word{i}" for i in range(2000))  # 2,000 tokens by the fakes' count: $0.03 on Claude


@pytest.fixture
def gpt() -> Iterator[FakeProvider]:
    fp = FakeProvider("openai", default_text=ANSWER).start()
    yield fp
    fp.stop()


def _allowed_output(fp: FakeProvider) -> int | None:
    """The output allowance the provider was given (None: none, the model's own ceiling)."""
    body = fp.requests[-1].body
    return next((body[k] for k in ("max_output_tokens", "max_tokens", "max_completion_tokens") if k in body), None)


SPELLINGS = [
    # Claude through chat: LiteLLM maps both fields to Anthropic's max_tokens, the last one wins.
    (
        "anthropic",
        "/v1/chat/completions",
        {"model": "claude-sonnet", "max_tokens": 20, "max_completion_tokens": 50_000},
    ),
    ("anthropic", "/v1/completions", {"model": "claude-sonnet", "max_tokens": 20, "max_completion_tokens": 50_000}),
    (
        "anthropic",
        "/v1/responses",
        {"model": "claude-sonnet", "max_output_tokens": 20, "max_completion_tokens": 50_000},
    ),
    # GPT-4o on the Responses API reads max_output_tokens only: a chat spelling leaves it unlimited (16,384).
    ("openai", "/v1/responses", {"model": "gpt-4o", "max_tokens": 20}),
    ("openai", "/v1/responses", {"model": "gpt-4o", "max_completion_tokens": 20}),
]


@pytest.mark.parametrize(
    ("provider", "path", "fields"), SPELLINGS, ids=[f"{p[0]}{p[1]}-{'+'.join(sorted(p[2]))}" for p in SPELLINGS]
)
def test_a_second_max_tokens_spelling_cannot_lift_the_provider_allowance_past_the_reservation(
    tmp_path: Path,
    stack: RunningStack,
    claude: FakeProvider,
    gpt: FakeProvider,
    provider: str,
    path: str,
    fields: dict[str, Any],
) -> None:
    """The budget reserves for the first max_tokens spelling it reads (20 tokens); LiteLLM sends the provider
    another (50,000, or none at all), so a call no month could pay for (each alone is a 400 here) is admitted,
    and an answer within what the provider was allowed takes committed spend past the hard limit."""
    fp = {"anthropic": claude, "openai": gpt}[provider]
    s = start_stack(
        tmp_path,
        {"anthropic": claude, "openai": gpt},
        {"budget": {"monthly_limit_usd": LIMIT}},
        backends_of=stack,
    )
    try:
        contents: dict[str, dict[str, Any]] = {
            "/v1/chat/completions": {"messages": [{"role": "user", "content": "Write a long essay please"}]},
            "/v1/completions": {"prompt": "Write a long essay please"},
            "/v1/responses": {"input": "Write a long essay please"},
        }
        content = contents[path]
        fp.push(Scripted(text=LONG_ANSWER))  # within the allowance the provider is given
        r = httpx.post(f"{s.base_url}{path}", json={**content, **fields}, headers=AUTH, timeout=120)
        assert wait_until(lambda: status(s)["reserved"] == 0, timeout_s=15)
        if r.status_code != 200:
            assert r.status_code in (400, 429), r.text
            assert not fp.requests, "a refused request costs nothing"
            return
        allowed, spent = _allowed_output(fp), status(s)["monthly_used"]
        assert spent <= LIMIT * 0.95, (
            f"committed ${spent} passed the stop level ${LIMIT * 0.95:.4f}: reserved for 20 output tokens, "
            f"the provider was allowed {allowed} (None: the model's ceiling)"
        )
        assert allowed is not None and allowed <= 20
    finally:
        s.stop()


def test_a_retried_call_stays_reserved_while_its_retry_runs(
    tmp_path: Path, stack: RunningStack, claude: FakeProvider
) -> None:
    """A client may ask LiteLLM for retries (`num_retries` in the body, or the x-litellm-num-retries header).
    The first attempt's failure releases the call's reservation, and the retry then runs unreserved: a second
    call that only fits in the money the first one holds is admitted meanwhile, and committed spend passes the
    hard limit. Each call here may cost up to 600 output tokens ($0.009); the limit fits one, not two."""
    s = budget_stack(tmp_path, stack, claude)
    answer = " ".join(f"word{i}" for i in range(600))
    try:
        # A: fails once (nothing billed), then its retry answers 600 words after 3 s. B: answers 600 words.
        claude.push(Scripted(status=500), Scripted(text=answer, delay_s=3), Scripted(text=answer))
        body = {"model": "claude-sonnet", "max_tokens": 600, "messages": [{"role": "user", "content": "Write a page"}]}
        pool = ThreadPoolExecutor(max_workers=1)
        first = pool.submit(
            lambda: httpx.post(
                f"{s.base_url}/v1/chat/completions", json={**body, "num_retries": 1}, headers=AUTH, timeout=120
            )
        )
        assert wait_until(lambda: len(claude.requests) == 2, timeout_s=30), "A's retry is in flight"
        held = status(s)["reserved"]
        second = httpx.post(f"{s.base_url}/v1/chat/completions", json=body, headers=AUTH, timeout=120)
        assert first.result().status_code == 200
        pool.shutdown()
        assert wait_until(lambda: status(s)["reserved"] == 0, timeout_s=15)
        spent = status(s)["monthly_used"]
        assert second.status_code == 429, (
            f"B was admitted while A's retry ran with ${held} reserved (spent ${spent} of ${LIMIT:.4f})"
        )
        assert spent <= LIMIT * 0.95
        assert held > 0, "A's retry was in flight at Claude with nothing reserved"
    finally:
        s.stop()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
def test_a_call_outliving_the_reservation_ttl_stays_reserved(
    tmp_path: Path, stack: RunningStack, claude: FakeProvider, store: str, request: pytest.FixtureRequest
) -> None:
    """The TTL frees the reservations of a proxy that died mid-call. A call that outlives it in a running proxy (a
    slow provider, a long answer: 64,000 tokens take Claude well over the shipped 15 minutes) used to lose its
    hold while it ran: the room was free for other calls to reserve, and the month went past its stop level when
    the long call settled. Here a 2 s TTL and a call that takes 7 s: held 0 after 5 s before, held throughout now."""
    extra = {"store": request.getfixturevalue("redis_server").url} if store == "redis" else {}
    s = budget_stack(tmp_path, stack, claude, reservation_ttl_s=2, **extra)
    claude.push(Scripted(text=ANSWER, delay_s=7))
    try:
        with ThreadPoolExecutor(max_workers=1) as pool:
            call = pool.submit(paid_call, s.base_url, 1)
            time.sleep(5)  # 2.5 TTLs, about 10 maintenance passes
            held, running = status(s)["reserved"], not call.done()
            r = call.result(60)
        assert r.status_code == 200, r.text
        assert running and held > 0, f"the running call's reservation lapsed (held ${held} after 5 s)"
        assert wait_until(lambda: status(s)["reserved"] == 0, timeout_s=30), "settled: nothing held"
        assert [x["request_id"] for x in ledger(s)] == [r.headers["x-synqra-request-id"]]
    finally:
        s.stop()


def test_raising_the_limit_rearms_the_alerts_for_the_new_limit(
    tmp_path: Path, stack: RunningStack, claude: FakeProvider, receiver: AlertReceiver
) -> None:
    """An operator stopped at 95% raises the limit in the config and restarts: the month's spend stays, and the
    new limit's 70% and stop are announced (webhook, log, status) like the old limit's were."""
    data = {"server": {"data_dir": str(tmp_path / "data")}}
    first = start_stack(
        tmp_path / "first",
        {"anthropic": claude},
        {**data, "budget": {"monthly_limit_usd": LIMIT, "alert_webhook": receiver.url}},
        backends_of=stack,
    )
    try:
        i = 0
        while paid_call(first.base_url, i).status_code == 200:
            i += 1
        assert wait_until(lambda: receiver.levels() == ["0.7", "stop"], timeout_s=30), receiver.posts
        spent = status(first)["monthly_used"]
    finally:
        first.stop()
    second = start_stack(
        tmp_path / "second",
        {"anthropic": claude},
        {**data, "budget": {"monthly_limit_usd": 2 * LIMIT, "alert_webhook": receiver.url}},
        backends_of=stack,
    )
    try:
        b = status(second)
        assert b["monthly_used"] == spent and b["state"] == "ok"
        assert b["alerts_fired"] == [], "at 47.5% of the new limit no alert of it has fired"
        j = i
        while paid_call(second.base_url, j).status_code == 200:
            j += 1
        assert j - i == i, "the new limit holds as many calls again"
        assert wait_until(lambda: len(receiver.posts) == 4, timeout_s=30), receiver.posts
        assert receiver.levels() == ["0.7", "stop", "0.7", "stop"]
        assert [p["monthly_limit"] for p in receiver.posts[2:]] == [pytest.approx(2 * LIMIT)] * 2
        assert status(second)["alerts_fired"] == ["0.7", "stop"]
        log = (tmp_path / "data" / "logs" / "proxy.log").read_text()
        assert log.count("budget alert: 70% of the monthly budget") == 2
    finally:
        second.stop()
