"""The budget guard against real stores: a SQLite file and a Redis server started here.

Every test taking `kind` runs on both stores. Money checks use the prices set in
the test config, computed independently with Decimal.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web

from policies.budget.guard import BudgetExhausted, BudgetGuard, DuplicateRequest
from policies.budget.records import CallRecord
from policies.common.offline import apply_offline_env
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings
from tests.fakes.local_http import LocalPostServer
from tests.redis_server import RedisServer

apply_offline_env()

PRICES = {  # $ per token: (input, output)
    "claude-sonnet": (Decimal("3e-6"), Decimal("15e-6")),
    "deepseek-chat": (Decimal("0.28e-6"), Decimal("0.42e-6")),
    "local-llama": (Decimal(0), Decimal(0)),
}
START = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


# -- real servers ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory: pytest.TempPathFactory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis(tmp_path: Path):
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t

    def advance(self, **kw: float) -> None:
        self.t += timedelta(**kw)


def app_config(tmp: Path, budget: dict[str, Any]) -> AppConfig:
    def entry(name: str, model: str, priced: bool = True, **info: Any) -> ModelEntry:
        if priced and name in PRICES:
            info |= {"input_cost_per_token": float(PRICES[name][0]), "output_cost_per_token": float(PRICES[name][1])}
        return ModelEntry(model_name=name, litellm_params={"model": model}, model_info=info)

    models = [
        entry("local-llama", "openai/local-llama", priced=False),
        entry("local-embed", "openai/local-embed", mode="embedding"),
        entry("deepseek-chat", "openai/deepseek-chat", max_output_tokens=8192),
        entry(
            "claude-sonnet",
            "openai/claude-sonnet",
            max_output_tokens=64000,
            max_input_tokens=200000,
            cache_creation_input_token_cost=3.75e-6,
            cache_creation_input_token_cost_above_1hr=6e-6,
        ),
        entry("auto", "openai/auto", priced=False),
    ]
    synqra = SynqraSettings.model_validate({"server": {"data_dir": str(tmp)}, "budget": budget})
    return AppConfig(path=tmp / "litellm_config.yaml", model_list=models, synqra=synqra)


@pytest.fixture(params=["sqlite", "redis"])
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def make_guard(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Callable[..., BudgetGuard]:
    """Guards sharing one store of `kind` (one SQLite file, or one Redis key prefix per test)."""
    store = "sqlite"
    prefix = f"t{random.getrandbits(40):x}"
    if kind == "redis":
        server = request.getfixturevalue("own_redis" if "outage" in request.node.name else "shared_redis")
        store = server.url

    def make(now: Callable[[], datetime] | None = None, **budget: Any) -> BudgetGuard:
        cfg = app_config(tmp_path, {"store": store, "redis_key_prefix": prefix, **budget})
        return BudgetGuard.from_config(cfg, now=now or Clock(START), env={})

    return make


class Receiver(LocalPostServer):
    """A webhook receiver on 127.0.0.1 collecting the JSON bodies it gets."""

    path = "/hook"

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.fail_first = 0

    async def handle(self, req: web.Request) -> web.Response:
        if self.fail_first > 0:
            self.fail_first -= 1
            return web.Response(status=503)
        self.bodies.append(await req.json())
        return web.Response(text="ok")

    @property
    def url(self) -> str:
        return self.base_url + self.path


def cost(model: str, p: int, c: int) -> Decimal:
    i, o = PRICES[model]
    return p * i + c * o


# -- the tests ----------------------------------------------------------------------------------
WORST = cost("claude-sonnet", 110, 100)  # 100 prompt tokens x 1.1 margin + max_tokens 100


def test_200_concurrent_two_guards_never_exceed_limit_and_alert_once(make_guard: Callable[..., BudgetGuard]) -> None:
    limit = float(WORST * 50 / Decimal("0.95"))  # about 50 worst-case calls fit under the stop level

    async def main() -> None:
        async with Receiver() as rx:
            guards = [
                make_guard(monthly_limit_usd=limit, alert_webhook=rx.url, alert_webhook_backoff_s=0.05)
                for _ in range(2)
            ]
            rng = random.Random(7)
            outcomes: list[str] = []

            async def call(i: int) -> None:
                g = guards[i % 2]
                rid = f"req-{i}"
                try:
                    res = await g.reserve(rid, "claude-sonnet", 100, 100)
                except BudgetExhausted as e:
                    assert "monthly budget is exhausted" in e.message and "2026-04-01" in e.message
                    outcomes.append("refused")
                    return
                await asyncio.sleep(rng.random() * 0.01)
                if i % 20 == 3:  # a failed upstream call gives its reservation back
                    await g.release(res)
                    outcomes.append("released")
                    return
                await g.settle(res, CallRecord(rid, "claude-sonnet", "claude-sonnet", 100, rng.randint(95, 100)))
                outcomes.append("settled")

            await asyncio.gather(*(call(i) for i in range(200)))
            status = await guards[0].status()
            records = await guards[1].records()
            for g in guards:
                await g.aclose()
        granted = outcomes.count("settled") + outcomes.count("released")
        # About 50 fit at once; releases and settles below worst case free room for a few more.
        assert 45 <= granted <= 80, outcomes
        assert outcomes.count("refused") == 200 - granted
        assert status["monthly_used"] <= limit * 0.95
        assert status["reserved"] == 0
        assert len(records) == outcomes.count("settled") == status["requests"]
        assert abs(sum(r.cost_usd for r in records) - status["monthly_used"]) < 1e-9
        assert status["percentage"] >= 70
        levels = sorted(b["level"] for b in rx.bodies)
        assert levels.count("0.7") == 1, rx.bodies  # once, although two guards crossed it
        assert rx.bodies[0]["month"] == "2026-03" and rx.bodies[0]["monthly_limit"] == limit

    asyncio.run(main())


def test_settle_is_idempotent_and_ids_are_unique(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        g = make_guard()
        res = await g.reserve("r1", "deepseek-chat", 1000, 500)
        rec = CallRecord("r1", "auto", "deepseek-chat", 1000, 400, api_key_hash="h1", user="alice")
        await g.settle(res, rec)
        await g.settle("r1", rec)  # a retried success event
        await g.settle(None, rec)
        free = CallRecord("f1", "auto", "local-llama", 10, 10)
        await g.record_free(free)
        await g.record_free(free)
        with pytest.raises(DuplicateRequest):
            await g.reserve("r1", "deepseek-chat", 10, 10)
        held = await g.reserve("r2", "deepseek-chat", 10, 10)
        with pytest.raises(DuplicateRequest):
            await g.reserve("r2", "deepseek-chat", 10, 10)
        await g.release(held)
        records = await g.records()
        status = await g.status()
        await g.aclose()
        by_id = {r.request_id: r for r in records}
        assert len(records) == 2 and set(by_id) == {"r1", "f1"}
        assert by_id["r1"].user == "alice" and by_id["r1"].api_key_hash == "h1" and not by_id["r1"].local
        assert by_id["f1"].local and by_id["f1"].cost_nano == 0
        assert status["requests"] == 2 and status["local_requests"] == 1 and status["local_share"] == 0.5
        assert status["monthly_used"] == pytest.approx(float(cost("deepseek-chat", 1000, 400)), abs=1e-9)
        assert status["reserved"] == 0

    asyncio.run(main())


def test_stale_reservation_of_crashed_process_expires(make_guard: Callable[..., BudgetGuard]) -> None:
    limit = float(WORST * Decimal("3.5") / Decimal("0.95"))  # three fit, a fourth does not

    async def main() -> None:
        clock = Clock(START)
        crashed = make_guard(now=clock, monthly_limit_usd=limit, reservation_ttl_s=60)
        for i in range(3):
            await crashed.reserve(f"lost-{i}", "claude-sonnet", 100, 100)
        await crashed.store.close()  # the process dies: nothing settled, nothing released
        g = make_guard(now=clock, monthly_limit_usd=limit, reservation_ttl_s=60)
        with pytest.raises(BudgetExhausted):
            await g.reserve("new-1", "claude-sonnet", 100, 100)
        assert (await g.status())["reserved"] == pytest.approx(float(WORST * 3), abs=1e-9)
        clock.advance(seconds=61)
        res = await g.reserve("new-2", "claude-sonnet", 100, 100)  # the lapsed ones no longer count
        status = await g.status()
        await g.settle(res, CallRecord("new-2", "claude-sonnet", "claude-sonnet", 100, 50))
        await g.aclose()
        assert status["reserved"] == pytest.approx(float(WORST), abs=1e-9)

    asyncio.run(main())


def test_month_rollover_restarts_spend_and_rearms_alerts(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        async with Receiver() as rx:
            clock = Clock(datetime(2026, 1, 31, 23, 59, 0, tzinfo=UTC))
            g = make_guard(now=clock, monthly_limit_usd=1.0, alert_webhook=rx.url, alert_webhook_backoff_s=0.05)
            n = 0

            async def spend(model: str, p: int, c: int) -> None:
                nonlocal n
                n += 1
                res = await g.reserve(f"m{n}", model, p, c)
                await g.settle(res, CallRecord(f"m{n}", model, model, p, c))

            await spend("claude-sonnet", 100_000, 30_000)  # $0.30 + $0.45 = 75%
            jan = await g.status()
            clock.advance(minutes=2)  # 2026-02-01 00:01 UTC
            feb0 = await g.status()
            assert g.pressure() == 0.0 and not g.is_stopped()
            await spend("claude-sonnet", 100_000, 30_000)
            feb = await g.status()
            await g.aclose()
        assert jan["month"] == "2026-01" and jan["alerts_fired"] == ["0.7"] and jan["state"] == "alert"
        assert feb0["month"] == "2026-02" and feb0["monthly_used"] == 0 and feb0["alerts_fired"] == []
        assert feb0["state"] == "ok" and feb0["resets_at"] == "2026-03-01T00:00:00+00:00"
        assert feb["monthly_used"] == pytest.approx(0.75) and feb["alerts_fired"] == ["0.7"]
        assert [(b["month"], b["level"]) for b in rx.bodies] == [("2026-01", "0.7"), ("2026-02", "0.7")]

    asyncio.run(main())


def test_alert_webhook_retried_and_second_level(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        async with Receiver() as rx:
            rx.fail_first = 2  # the receiver is down for two attempts
            g = make_guard(
                monthly_limit_usd=1.0, alert_levels=[0.8], alert_webhook=rx.url, alert_webhook_backoff_s=0.05
            )
            for i, (p, c) in enumerate([(100_000, 30_000)] + [(1000, 3000)] * 3):  # 75%, 79.8%, 84.6%, 89.4%
                res = await g.reserve(f"a{i}", "claude-sonnet", p, c)
                await g.settle(res, CallRecord(f"a{i}", "claude-sonnet", "claude-sonnet", p, c))
            status = await g.status()
            await g.aclose()
        # Each delivered once; in either order: the second alert's first attempt may meet the receiver still down.
        assert sorted(b["level"] for b in rx.bodies) == ["0.7", "0.8"]
        assert status["alerts_fired"] == ["0.7", "0.8"] and status["state"] == "alert"

    asyncio.run(main())


def test_ledger_sum_matches_tokens_times_prices(make_guard: Callable[..., BudgetGuard]) -> None:
    rng = random.Random(3)
    calls = [(rng.choice(list(PRICES)), rng.randint(1, 4000), rng.randint(1, 2000)) for _ in range(300)]
    expected = sum(cost(m, p, c) for m, p, c in calls)
    baseline = sum(cost("claude-sonnet", p, c) for _, p, c in calls)

    async def main() -> tuple[dict[str, Any], list[Any]]:
        g = make_guard(monthly_limit_usd=1000.0)

        async def one(i: int, m: str, p: int, c: int) -> None:
            rec = CallRecord(f"s{i}", "auto", m, p, c, kind="chat")
            if g.is_free(m):
                await g.record_free(rec)
            else:
                await g.settle(await g.reserve(f"s{i}", m, p, c), rec)

        await asyncio.gather(*(one(i, *call) for i, call in enumerate(calls)))
        out = await g.status(), await g.records()
        await g.aclose()
        return out

    status, records = asyncio.run(main())
    assert len(records) == 300
    assert abs(Decimal(str(status["monthly_used"])) - expected) < Decimal("0.005")
    assert abs(Decimal(sum(r.cost_nano for r in records)) / 10**9 - expected) < Decimal("0.005")
    assert abs(Decimal(str(status["baseline_cost"])) - baseline) < Decimal("0.005")
    assert status["savings"] == pytest.approx(float(baseline - expected), abs=0.005)
    assert status["local_requests"] == sum(m == "local-llama" for m, _, _ in calls)


def test_a_budget_under_a_cent_keeps_its_digits_in_the_refusal(make_guard: Callable[..., BudgetGuard]) -> None:
    """A $0.005 limit's refusal read "$0.00 of the $0.00 limit"."""

    async def main() -> None:
        g = make_guard(monthly_limit_usd=0.005)
        res = await g.reserve("most", "claude-sonnet", 100, 280)
        await g.settle(res, CallRecord("most", "claude-sonnet", "claude-sonnet", 100, 280))  # $0.0045
        with pytest.raises(BudgetExhausted) as err:
            await g.reserve("more", "claude-sonnet", 100, 100)
        assert err.value.reason == "exhausted"
        assert "exhausted: $0.0045 of the $0.005 limit" in err.value.message, err.value.message
        await g.aclose()

    asyncio.run(main())


def test_stop_level_blocks_paid_never_free(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        g = make_guard(monthly_limit_usd=1.0)
        res = await g.reserve("big", "claude-sonnet", 100_000, 40_000)  # $0.93 worst case
        await g.settle(res, CallRecord("big", "claude-sonnet", "claude-sonnet", 100_000, 40_000))  # $0.90
        with pytest.raises(BudgetExhausted) as err:
            await g.reserve("more", "deepseek-chat", 100_000, 100_000)  # $0.073 > $0.05 left before 95%
        assert err.value.reason == "exhausted" and err.value.resets_at.isoformat() == "2026-04-01T00:00:00+00:00"
        assert g.is_stopped() and g.pressure() == 1.0
        small = await g.reserve("small", "deepseek-chat", 1000, 1000)  # still fits: small calls go on
        await g.release(small)
        free = await g.reserve("loc", "local-llama", 10**6, None)
        assert not free.held and free.amount_nano == 0
        await g.settle(free, CallRecord("loc", "auto", "local-llama", 50, 50))
        status = await g.status()
        await g.aclose()
        assert status["state"] == "stopped" and "stop" in status["alerts_fired"]
        assert status["requests"] == 2 and status["monthly_used"] == pytest.approx(0.90)

    asyncio.run(main())


def test_one_oversized_call_does_not_stop_the_month(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        g = make_guard(monthly_limit_usd=1.0)
        with pytest.raises(BudgetExhausted):
            await g.reserve("huge", "claude-sonnet", 10, None)  # 64000 output tokens: $0.96
        state = (await g.status())["state"]
        await g.aclose()
        assert not g.is_stopped() and state == "ok"

    asyncio.run(main())


def test_thrift_pressure_follows_pace(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        clock = Clock(datetime(2026, 4, 7, tzinfo=UTC))  # 20% of April elapsed
        g = make_guard(now=clock, monthly_limit_usd=1.0)
        assert g.pressure() == 0.0
        res = await g.reserve("p1", "claude-sonnet", 100_000, 20_000)
        await g.settle(res, CallRecord("p1", "claude-sonnet", "claude-sonnet", 100_000, 20_000))  # 60% spent
        early = g.pressure()
        clock.t = datetime(2026, 4, 19, tzinfo=UTC)  # 60% elapsed: on pace
        on_pace = g.pressure()
        status = await g.status()
        await g.aclose()
        assert early == pytest.approx(1.0)  # 60% spent at 20% of the month: 0.4 ahead > full_gap
        assert on_pace == 0.0 and status["thrift"]["pressure"] == 0.0
        assert status["projected_month_end"] == pytest.approx(1.0)

    asyncio.run(main())


def redis_only(kind: str, request: pytest.FixtureRequest) -> RedisServer:
    """This test's own Redis server (it gets stopped). Outage tests run on Redis only: an
    embedded SQLite file has no outage to simulate."""
    assert kind == "redis"
    return request.getfixturevalue("own_redis")


async def drained(g: BudgetGuard, timeout_s: float = 5.0) -> None:
    """Wait until the records queued during an outage are in the store."""
    deadline = time.monotonic() + timeout_s
    while g.queued_records and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("kind", ["redis"])
def test_store_outage_fails_closed_queues_and_recovers(
    make_guard: Callable[..., BudgetGuard], kind: str, request: pytest.FixtureRequest
) -> None:
    server = redis_only(kind, request)

    async def main() -> None:
        g = make_guard(store_retry_after_s=0.05)
        res = await g.reserve("o1", "deepseek-chat", 1000, 1000)
        server.stop()
        await g.settle(res, CallRecord("o1", "auto", "deepseek-chat", 1000, 900))  # queued, no raise
        with pytest.raises(BudgetExhausted) as err:
            await g.reserve("o2", "deepseek-chat", 1000, 1000)
        assert err.value.reason == "store_unavailable" and "unreachable" in err.value.message
        assert g.is_stopped()
        free = await g.reserve("o3", "local-llama", 10, 10)  # free calls are never blocked
        await g.settle(free, CallRecord("o3", "auto", "local-llama", 10, 10))
        down = await g.status()
        assert down["store"] == {"kind": "redis", "reachable": False, "queued_records": 2}
        server.start()
        await drained(g)
        res = await g.reserve("o4", "deepseek-chat", 1000, 1000)
        await g.settle(res, CallRecord("o4", "auto", "deepseek-chat", 1000, 1000))
        records = await g.records()
        up = await g.status()
        await g.aclose()
        assert sorted(r.request_id for r in records) == ["o1", "o3", "o4"]
        assert not g.is_stopped() and up["store"]["reachable"] and up["reserved"] == 0
        assert up["monthly_used"] == pytest.approx(
            float(cost("deepseek-chat", 1000, 900) + cost("deepseek-chat", 1000, 1000))
        )

    asyncio.run(main())


@pytest.mark.parametrize("kind", ["redis"])
def test_store_outage_fail_open_lets_paid_through(
    make_guard: Callable[..., BudgetGuard], kind: str, request: pytest.FixtureRequest
) -> None:
    server = redis_only(kind, request)

    async def main() -> None:
        g = make_guard(fail_mode="open", store_retry_after_s=0.05)
        server.stop()
        res = await g.reserve("x1", "deepseek-chat", 1000, 1000)
        assert not res.held and not g.is_stopped()
        await g.settle(res, CallRecord("x1", "auto", "deepseek-chat", 1000, 1000))
        server.start()
        await drained(g)
        records = await g.records()
        await g.aclose()
        assert [r.request_id for r in records] == ["x1"]

    asyncio.run(main())


def test_status_router_requires_master_key(make_guard: Callable[..., BudgetGuard]) -> None:
    import httpx
    from fastapi import FastAPI, Header, HTTPException

    from proxy.api.budget import make_budget_router

    guard = make_guard()

    def require_master_key(authorization: str = Header("")) -> None:
        if authorization != "Bearer sk-master":
            raise HTTPException(401, "master key required")

    app = FastAPI()
    app.include_router(make_budget_router(lambda: guard, require_master_key))

    async def main() -> tuple[httpx.Response, httpx.Response]:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            denied = await c.get("/api/budget/status")
            ok = await c.get("/api/budget/status", headers={"Authorization": "Bearer sk-master"})
        await guard.aclose()
        return denied, ok

    denied, ok = asyncio.run(main())
    assert denied.status_code == 401
    body = ok.json()
    assert ok.status_code == 200 and body["month"] == "2026-03" and body["monthly_limit"] == 200.0
    assert body["state"] == "ok" and body["percentage"] == 0


def test_reservation_covers_tool_definitions_and_every_choice(make_guard: Callable[..., BudgetGuard]) -> None:
    """Providers bill tool schemas as input and each of OpenAI's n choices as output: so does the worst case."""
    from policies.budget.accountant import Accountant
    from policies.common.request_state import RequestState

    msgs = [{"role": "user", "content": "What is the weather in Paris?"}]
    tools = [
        {
            "type": "function",
            "function": {
                "name": f"lookup_{i}",
                "description": "Look something up. " * 20,
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
        for i in range(10)
    ]

    async def reserved_for(g: BudgetGuard, rid: str, data: dict[str, Any], call_type: str = "acompletion") -> Decimal:
        before = g.snapshot()["reserved_usd"]
        await Accountant(g, "local-llama").admit(
            RequestState(rid, call_type=call_type), data, "claude-sonnet", routed=False
        )
        return Decimal(str(g.snapshot()["reserved_usd"])) - Decimal(str(before))

    async def main() -> None:
        g = make_guard()
        bare = await reserved_for(g, "bare", {"messages": msgs, "max_tokens": 100})
        with_tools = await reserved_for(g, "tools", {"messages": msgs, "max_tokens": 100, "tools": tools})
        four = await reserved_for(g, "four", {"messages": msgs, "max_tokens": 100, "n": 4})
        # A text completion's best_of: that many answers made server-side, each billed (n of them returned).
        text = {"prompt": "What is the weather in Paris?", "max_tokens": 100}
        one_text = await reserved_for(g, "text", text, "atext_completion")
        best_of = await reserved_for(g, "best_of", {**text, "n": 1, "best_of": 4}, "atext_completion")
        tool_tokens = g.count_prompt_tokens("claude-sonnet", text=json.dumps(tools, separators=(",", ":")))
        await g.aclose()
        # A Responses call continuing a stored conversation is billed for it as prompt: up to the model's window.
        g = make_guard(monthly_limit_usd=100.0)  # room for a whole context window
        turn = {"input": "And then?", "max_output_tokens": 100}
        alone = await reserved_for(g, "turn", turn, "aresponses")
        stored = await reserved_for(g, "stored", {**turn, "previous_response_id": "resp_1"}, "aresponses")
        # A prompt marked for Anthropic's cache may be written to it, billed at 1.25x the input price (2x for 1h).
        long = [{"role": "user", "content": "The quarterly report says revenue grew. " * 300}]
        plain = await reserved_for(g, "plain", {"messages": long, "max_tokens": 1})
        marked = [{**long[0], "content": [{"type": "text", "text": long[0]["content"], "cache_control": {}}]}]
        five = await reserved_for(g, "5m", {"messages": marked, "max_tokens": 1})
        marked[0]["content"][0]["cache_control"] = {"type": "ephemeral", "ttl": "1h"}
        hour = await reserved_for(g, "1h", {"messages": marked, "max_tokens": 1})
        # Anthropic's automatic caching: one cache_control at the top of the request.
        auto_cached = {"messages": long, "max_tokens": 1, "cache_control": {"type": "ephemeral", "ttl": "1h"}}
        top = await reserved_for(g, "top", auto_cached)
        await g.aclose()
        price_in, price_out = PRICES["claude-sonnet"]
        # The guard adds its prompt-token margin (1.1x, rounded up) to whatever was counted.
        assert with_tools - bare >= tool_tokens * price_in > 0
        assert float(four - bare) == pytest.approx(float(3 * 100 * price_out), abs=2e-9)  # nano-dollar rounding
        assert float(best_of - one_text) == pytest.approx(float(3 * 100 * price_out), abs=2e-9)
        assert float(stored - alone) > float(190_000 * price_in)
        assert float(five) == pytest.approx(float(plain) * 1.25, rel=0.01)
        assert float(hour) == pytest.approx(float(plain) * 2, rel=0.01)
        assert float(top) == pytest.approx(float(plain) * 2, rel=0.01)

    asyncio.run(main())


def test_call_no_month_can_pay_is_refused_as_too_costly_and_stops_nothing(
    make_guard: Callable[..., BudgetGuard],
) -> None:
    """Past the alert level, a call whose worst case alone passes the stop level must not read as a
    spent month (is_stopped would send every routed request to the local model until it fits)."""
    from policies.budget.guard import CallTooCostly

    async def main() -> None:
        g = make_guard(monthly_limit_usd=1.0)
        res = await g.reserve("spent", "claude-sonnet", 100_000, 33_000)
        await g.settle(res, CallRecord("spent", "claude-sonnet", "claude-sonnet", 100_000, 33_000))  # $0.795: past 70%
        with pytest.raises(CallTooCostly) as err:
            await g.reserve("absurd", "claude-sonnet", 10, 10**9)  # $15,000 worst case > $0.95 stop level
        assert isinstance(err.value, BudgetExhausted) and err.value.reason == "too_costly"
        assert err.value.worst_case_usd > 14_999 and err.value.allowed_usd == pytest.approx(0.95)
        stopped = g.is_stopped()
        status = await g.status()
        small = await g.reserve("small", "deepseek-chat", 1000, 1000)
        await g.release(small)
        await g.aclose()
        assert not stopped and status["state"] != "stopped" and status["reserved"] == 0

    asyncio.run(main())


def test_requests_baseline_and_local_share_count_client_requests_not_calls(
    make_guard: Callable[..., BudgetGuard],
) -> None:
    """A request the local model answered badly, escalated to DeepSeek and then Claude, is one request,
    served by a paid model, whose all-Claude baseline is that of one call."""

    async def main() -> None:
        g = make_guard()
        await g.record_free(CallRecord("esc", "auto", "local-llama", 100, 20))
        ds = await g.reserve("esc:1", "deepseek-chat", 100, 50)
        await g.settle(
            ds,
            CallRecord(
                "esc:1",
                "auto",
                "deepseek-chat",
                100,
                50,
                kind="escalation",
                parent_id="esc",
                counts_request=False,
                leaves_local=True,
            ),
        )
        cl = await g.reserve("esc:2", "claude-sonnet", 100, 50)
        await g.settle(
            cl,
            CallRecord(
                "esc:2", "auto", "claude-sonnet", 100, 50, kind="escalation", parent_id="esc", counts_request=False
            ),
        )
        await g.record_free(CallRecord("easy", "auto", "local-llama", 30, 10))  # delivered locally
        status = await g.status()
        await g.aclose()
        cin, cout = PRICES["claude-sonnet"]
        din, dout = PRICES["deepseek-chat"]
        assert status["requests"] == 2 and status["local_requests"] == 1 and status["local_share"] == 0.5
        baseline = (100 + 30) * cin + (20 + 10) * cout  # one all-Claude call per client request
        assert Decimal(str(status["baseline_cost"])) == baseline
        assert Decimal(str(status["monthly_used"])) == 100 * din + 50 * dout + 100 * cin + 50 * cout

    asyncio.run(main())


def test_a_spend_cap_holds_across_guards_sharing_the_store(make_guard: Callable[..., BudgetGuard]) -> None:
    """synqra's own cap on a tag (a judge's monthly limit): two workers' guards, each holding a call at its worst
    case, may not pass it together; a call over it alone is too costly; other tags and the month are untouched."""
    from policies.budget.guard import CallTooCostly

    async def main() -> None:
        a, b = make_guard(), make_guard()
        for g in (a, b):
            g.cap_spend("synqra-judge-test", float(WORST) * 1.5)  # one call's worst case fits, two do not
        first = await a.reserve("j1", "claude-sonnet", 100, 100, tag="synqra-judge-test")
        with pytest.raises(BudgetExhausted) as err:
            await b.reserve("j2", "claude-sonnet", 100, 100, tag="synqra-judge-test")
        assert err.value.tag == "synqra-judge-test" and "monthly limit" in err.value.message
        other = await b.reserve("app", "claude-sonnet", 100, 100, tag="marketing")  # not capped
        await b.release(other)
        await a.settle(first, CallRecord("j1", "claude-sonnet", "claude-sonnet", 10, 10, tag="synqra-judge-test"))
        again = await b.reserve("j3", "claude-sonnet", 100, 100, tag="synqra-judge-test")  # spent $0.00018: fits
        await b.release(again)
        with pytest.raises(CallTooCostly):
            await a.reserve("big", "claude-sonnet", 100, 10_000, tag="synqra-judge-test")
        status = await a.status()
        await a.aclose()
        await b.aclose()
        assert status["state"] == "ok" and status["reserved"] == 0

    asyncio.run(main())


def test_the_month_turns_at_midnight_in_the_budgets_timezone(tmp_path: Path) -> None:
    """Tokyo is UTC+9: its April starts at 15:00 UTC on March 31st, to the second (the guard compares the clock with
    the month's bounds in UTC); what was reserved in March is not April's."""
    clock = Clock(datetime(2026, 3, 31, 14, 59, 59, tzinfo=UTC))
    g = BudgetGuard.from_config(app_config(tmp_path, {"store": "sqlite", "timezone": "Asia/Tokyo"}), now=clock, env={})

    async def main() -> list[tuple[str, float]]:
        seen = []
        await g.reserve("march", "claude-sonnet", 1000, 100)
        seen.append((g.current_month(), g.snapshot()["reserved_usd"]))
        clock.advance(seconds=1)
        seen.append((g.current_month(), g.snapshot()["reserved_usd"]))
        clock.t = datetime(2026, 4, 30, 14, 59, 59, tzinfo=UTC).astimezone(ZoneInfo("America/New_York"))
        seen.append((g.current_month(), g.snapshot()["reserved_usd"]))  # a clock in another zone: the same instant
        clock.advance(seconds=1)
        seen.append((g.current_month(), g.snapshot()["reserved_usd"]))
        await g.aclose()
        return seen

    seen = asyncio.run(main())
    assert [m for m, _ in seen] == ["2026-03", "2026-04", "2026-04", "2026-05"]
    assert seen[0][1] > 0 and [r for _, r in seen[1:]] == [0, 0, 0]
