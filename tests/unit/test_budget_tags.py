"""Spend per agent or app (issue 18, point 5): a request's tag, booked in the ledger, broken down in the
status and capped by `synqra.budget.tags`, on both real stores (a SQLite file and a Redis server started here).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from policies.budget.accountant import Accountant, BudgetRefused
from policies.budget.guard import BudgetExhausted, BudgetGuard
from policies.budget.records import CallRecord, LedgerRecord
from policies.budget.tags import BadTag, request_tag
from policies.common.budget_settings import BudgetSettings
from policies.common.request_state import RequestState
from tests.unit import test_budget_guard as guard_tests
from tests.unit.test_budget_guard import PRICES, START, WORST, Clock, Receiver, cost

# The guard tests' fixtures: every test taking `make_guard` runs on a SQLite file and on a Redis server.
kind, make_guard, own_redis, shared_redis = (
    guard_tests.kind,
    guard_tests.make_guard,
    guard_tests.own_redis,
    guard_tests.shared_redis,
)

# A worst-case call (100 prompt tokens x 1.1 + max_tokens 100 on claude-sonnet) is about $0.00183; the tag
# "capped" may hold about 20 of them at once, the month about 500.
TAG_LIMIT = float(WORST * 20 / Decimal("0.95"))
MONTH_LIMIT = float(WORST * 500 / Decimal("0.95"))


# -- where the tag comes from -----------------------------------------------------------------------
def _req(headers: dict[str, Any] | None = None, **data: Any) -> dict[str, Any]:
    return {"proxy_server_request": {"headers": headers or {}}, **data}


def test_the_header_wins_then_metadata_tags_then_none() -> None:
    md = {"metadata": {"tags": ["support-bot", "team-a"]}}
    assert request_tag(_req({"x-synqra-tag": "marketing"}, **md)) == "marketing"
    assert request_tag(_req({"X-Synqra-Tag": "  marketing "})) == "marketing"  # any case, trimmed
    assert request_tag(_req(**md)) == "support-bot"  # the first entry
    # /v1/messages and /v1/responses: LiteLLM keeps its tags in litellm_metadata
    assert request_tag(_req(litellm_metadata={"tags": ["agent-7"]}, metadata={"user_id": "u"})) == "agent-7"
    assert request_tag(_req({"x-synqra-tag": ""}, **md)) == "support-bot"  # an empty header says nothing
    assert request_tag(_req(metadata={"tags": []})) is None
    assert request_tag(_req()) is None and request_tag({}) is None


@pytest.mark.parametrize(
    ("data", "says"),
    [
        (_req({"x-synqra-tag": "x" * 129}), "x-synqra-tag header: a tag must be at most 128 characters"),
        (_req({"x-synqra-tag": "bad\x07tag"}), "control characters"),
        (_req(metadata={"tags": [42]}), "metadata.tags[0] must be a string, got int"),
        (_req(metadata={"tags": ["line\nbreak"]}), "metadata.tags[0]: a tag must not contain control characters"),
        (_req({"x-synqra-tag": "synqra-judge-quality"}), "are synqra's own"),  # would spend the judge's limit
        # what the by-tag status calls the requests without a tag: booked there, a client's tag merged into the rest
        (_req({"x-synqra-tag": "untagged"}), "x-synqra-tag header: 'untagged' is what the by-tag status calls"),
        (_req(metadata={"tags": [" untagged "]}), "metadata.tags[0]: 'untagged' is what the by-tag status calls"),
        (_req(litellm_metadata={"tags": ["untagged"]}), "'untagged' is what the by-tag status calls"),
    ],
)
def test_a_tag_that_cannot_be_booked_is_refused_naming_its_source(data: dict[str, Any], says: str) -> None:
    with pytest.raises(BadTag) as err:
        request_tag(data)
    assert says in str(err.value)


def test_tag_caps_are_validated_at_start_up() -> None:
    s = BudgetSettings.model_validate({"tags": {"marketing": {"monthly_limit_usd": 20}}})
    assert s.tags["marketing"].monthly_limit_usd == 20
    for bad, says in [
        ({"marketing": {"monthly_limit": 20}}, "monthly_limit"),  # a wrong key names itself
        ({"marketing": {"monthly_limit_usd": 0}}, "greater than 0"),
        ({"untagged": {"monthly_limit_usd": 5}}, "names the requests without a tag"),
        ({" padded": {"monthly_limit_usd": 5}}, "white space"),
    ]:
        with pytest.raises(ValidationError) as err:
            BudgetSettings.model_validate({"tags": bad})
        assert says in str(err.value), str(err.value)


def test_an_extra_call_carries_its_requests_tag() -> None:
    parent = RequestState.new(tag="marketing", call_type="acompletion")
    child = parent.child("escalation", "claude-sonnet", "1", counts_request=False, leaves_local=True)
    assert child.tag == "marketing" and child.parent_id == parent.request_id


# -- on both stores ------------------------------------------------------------------------------------
def _capped(make: Callable[..., BudgetGuard], **budget: Any) -> BudgetGuard:
    return make(**{"monthly_limit_usd": MONTH_LIMIT, "tags": {"capped": {"monthly_limit_usd": TAG_LIMIT}}, **budget})


async def _spend(g: BudgetGuard, rid: str, model: str, p: int, c: int, tag: str | None, **rec: Any) -> LedgerRecord:
    record = CallRecord(rid, "auto", model, p, c, tag=tag, **rec)
    if g.is_free(model):
        return await g.record_free(record)
    return await g.settle(await g.reserve(rid, model, p, c, tag=tag), record)


def test_tags_are_recorded_and_the_status_breaks_the_month_down_by_them(make_guard: Callable[..., BudgetGuard]) -> None:
    rng = random.Random(11)
    calls = [
        (
            f"c{i}",
            rng.choice(list(PRICES)),
            rng.randint(1, 3000),
            rng.randint(1, 1500),
            rng.choice(["sales", "support", "capped", None]),
        )
        for i in range(120)
    ]

    async def main() -> tuple[dict[str, Any], list[LedgerRecord]]:
        g = make_guard(monthly_limit_usd=1000.0, tags={"capped": {"monthly_limit_usd": 500.0}})
        await asyncio.gather(*(_spend(g, *call) for call in calls))
        # An escalation of a local answer: the request's tag, its cost, and it leaves the local share.
        await _spend(g, "e1", "local-llama", 50, 20, "support")
        await _spend(
            g,
            "e1:1",
            "deepseek-chat",
            50,
            20,
            "support",
            kind="escalation",
            parent_id="e1",
            counts_request=False,
            leaves_local=True,
        )
        held = await g.reserve("inflight", "claude-sonnet", 100, 100, tag="capped")  # reserved, not spent
        out = await g.status(by_tag=True), await g.records()
        await g.release(held)
        await g.aclose()
        return out

    status, records = asyncio.run(main())
    by_tag = status["by_tag"]
    assert set(by_tag) == {"sales", "support", "capped", "untagged"}
    for tag, row in by_tag.items():
        mine = [r for r in records if (r.tag or "untagged") == tag]
        cost_ = sum(Decimal(r.cost_nano) for r in mine) / 10**9
        baseline = sum(Decimal(r.baseline_nano) for r in mine) / 10**9
        requests = sum(r.request_delta for r in mine)
        local = sum(r.local_delta for r in mine)
        assert Decimal(str(row["cost"])) == cost_.quantize(Decimal("1e-6")), tag
        assert Decimal(str(row["baseline"])) == baseline.quantize(Decimal("1e-6")), tag
        assert row["savings"] == pytest.approx(float(baseline - cost_), abs=2e-6)
        assert row["savings_percent"] == pytest.approx(float(100 * (baseline - cost_) / baseline), abs=0.01)
        assert (row["requests"], row["local_requests"]) == (requests, local)
        assert row["local_share"] == pytest.approx(local / requests, abs=1e-4)
        assert row["limit"] == (500.0 if tag == "capped" else None)
        assert set(row) == {
            "cost",
            "baseline",
            "savings",
            "savings_percent",
            "requests",
            "local_requests",
            "local_share",
            "limit",
        }
    # The tags add up to the month.
    assert sum(r["requests"] for r in by_tag.values()) == status["requests"]
    assert sum(r["local_requests"] for r in by_tag.values()) == status["local_requests"]
    assert sum(r["cost"] for r in by_tag.values()) == pytest.approx(status["monthly_used"], abs=1e-5)
    assert {r.request_id: r.tag for r in records}["e1:1"] == "support"


def test_a_capped_tag_with_no_spend_shows_its_limit_and_status_without_by_has_no_breakdown(
    make_guard: Callable[..., BudgetGuard],
) -> None:
    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        g = _capped(make_guard)
        await _spend(g, "u1", "deepseek-chat", 100, 100, None)
        out = await g.status(), await g.status(by_tag=True)
        await g.aclose()
        return out

    plain, by = asyncio.run(main())
    assert "by_tag" not in plain
    assert by["by_tag"]["capped"] == {
        "cost": 0.0,
        "baseline": 0.0,
        "savings": 0.0,
        "savings_percent": 0.0,
        "requests": 0,
        "local_requests": 0,
        "local_share": 0.0,
        "limit": TAG_LIMIT,
    }
    assert by["by_tag"]["untagged"]["requests"] == 1


def test_a_judges_spend_cap_is_the_limit_its_tag_shows(make_guard: Callable[..., BudgetGuard]) -> None:
    """A judge's calls are booked to synqra-judge-<purpose> and held to its monthly limit (cap_spend, as
    BudgetGuard.from_config sets it for each judge): the by-tag status shows that limit, as it does a configured tag's
    cap (it said null: an operator read the judge as uncapped)."""

    async def main() -> dict[str, Any]:
        g = _capped(make_guard)
        g.cap_spend("synqra-judge-quality", 0.5)
        await _spend(g, "u1", "local-llama", 100, 10, None)
        await _spend(
            g, "u1:judge-quality-1", "deepseek-chat", 100, 5, "synqra-judge-quality", kind="judge", counts_request=False
        )
        out = await g.status(by_tag=True)
        await g.aclose()
        return out

    by = asyncio.run(main())["by_tag"]
    assert by["synqra-judge-quality"]["limit"] == 0.5
    assert by["synqra-judge-quality"]["requests"] == 0 and by["synqra-judge-quality"]["cost"] > 0
    assert by["capped"]["limit"] == TAG_LIMIT and by["untagged"]["limit"] is None


def test_200_concurrent_tagged_reservations_never_exceed_the_tag_cap(make_guard: Callable[..., BudgetGuard]) -> None:
    """Two guards (two processes) on one store: a capped tag's reservations are checked against its committed +
    reserved in the same atomic step as the month's, so a burst never takes it past its stop level; other tags
    go on; the tag's 70% alert fires once, naming the tag."""

    async def main() -> None:
        async with Receiver() as rx:
            guards = [_capped(make_guard, alert_webhook=rx.url, alert_webhook_backoff_s=0.05) for _ in range(2)]
            rng = random.Random(5)
            outcomes: dict[str, list[str]] = {"capped": [], "free-tag": []}

            async def call(i: int) -> None:
                g, tag = guards[i % 2], ("capped" if i % 4 else "free-tag")  # 150 capped, 50 other
                rid = f"t-{i}"
                try:
                    res = await g.reserve(rid, "claude-sonnet", 100, 100, tag=tag)
                except BudgetExhausted as e:
                    assert e.tag == "capped" and "tag 'capped' is exhausted" in e.message, e.message
                    assert "requests tagged 'capped'" in e.message and "2026-04-01" in e.message
                    outcomes[tag].append("refused")
                    return
                await asyncio.sleep(rng.random() * 0.01)
                if i % 20 == 3:
                    await g.release(res)
                    outcomes[tag].append("released")
                    return
                await g.settle(
                    res, CallRecord(rid, "claude-sonnet", "claude-sonnet", 100, rng.randint(95, 100), tag=tag)
                )
                outcomes[tag].append("settled")

            await asyncio.gather(*(call(i) for i in range(200)))
            status = await guards[0].status(by_tag=True)
            tags = await guards[1].store.tag_totals(status["month"])
            records = await guards[1].records()
            for g in guards:
                await g.aclose()
        capped = outcomes["capped"]
        granted = capped.count("settled") + capped.count("released")
        assert 18 <= granted <= 40, capped  # about 20 fit at once; releases and cheaper settles free a few more
        assert capped.count("refused") == 150 - granted
        assert outcomes["free-tag"].count("refused") == 0, "another tag is not held back by the capped one"
        spent = sum(r.cost_nano for r in records if r.tag == "capped")
        assert spent <= int(TAG_LIMIT * 0.95 * 10**9), "the tag never spends past its stop level"
        assert status["by_tag"]["capped"]["cost"] == pytest.approx(spent / 10**9, abs=1e-6)
        assert tags["capped"].reserved_nano == 0 and status["reserved"] == 0, "settle and release keep tag sums right"
        assert status["state"] == "ok" and status["alerts_fired"] == [], "the month itself is nowhere near its alert"
        tagged = [b for b in rx.bodies if b.get("tag") == "capped"]
        assert [b["level"] for b in tagged].count("0.7") == 1, rx.bodies
        assert tagged[0]["monthly_limit"] == TAG_LIMIT and "of tag 'capped'" in tagged[0]["message"]
        assert not [b for b in rx.bodies if "tag" not in b], "no global alert"

    asyncio.run(main())


def test_the_global_limit_still_applies_to_a_tag_with_room(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> None:
        g = make_guard(monthly_limit_usd=1.0, tags={"big": {"monthly_limit_usd": 100}})
        await _spend(g, "g1", "claude-sonnet", 100_000, 40_000, None)  # $0.90 of the month, untagged
        with pytest.raises(BudgetExhausted) as err:
            await g.reserve("g2", "deepseek-chat", 100_000, 100_000, tag="big")
        await g.aclose()
        assert err.value.tag is None and "The monthly budget is exhausted" in err.value.message

    asyncio.run(main())


def test_a_lapsed_or_released_tagged_reservation_gives_the_tag_its_room_back(
    make_guard: Callable[..., BudgetGuard],
) -> None:
    limit = float(WORST * Decimal("3.5") / Decimal("0.95"))  # three fit in the tag, a fourth does not

    async def main() -> None:
        clock = Clock(START)
        crashed = make_guard(now=clock, tags={"t": {"monthly_limit_usd": limit}}, reservation_ttl_s=60)
        for i in range(3):
            await crashed.reserve(f"lost-{i}", "claude-sonnet", 100, 100, tag="t")
        await crashed.store.close()  # the process dies: nothing settled, nothing released
        g = make_guard(now=clock, tags={"t": {"monthly_limit_usd": limit}}, reservation_ttl_s=60)
        with pytest.raises(BudgetExhausted):
            await g.reserve("new-1", "claude-sonnet", 100, 100, tag="t")
        await g.reserve("other", "claude-sonnet", 100, 100, tag="u")  # another tag is not affected
        clock.advance(seconds=61)
        res = await g.reserve("new-2", "claude-sonnet", 100, 100, tag="t")  # the lapsed three no longer count
        assert (await g.store.tag_totals("2026-03"))["t"].reserved_nano == res.amount_nano
        await g.release(res)
        await g.release("other")
        after = await g.store.tag_totals("2026-03")
        await g.aclose()
        assert all(t.reserved_nano == 0 for t in after.values()), after

    asyncio.run(main())


def test_a_call_too_large_for_the_tags_whole_month_is_a_400_naming_the_tag(
    make_guard: Callable[..., BudgetGuard],
) -> None:
    async def main() -> tuple[BudgetRefused, RequestState, dict[str, Any]]:
        g = make_guard(tags={"tiny": {"monthly_limit_usd": 0.01}})
        acc = Accountant(g, "local-llama")
        data = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 5000}  # $0.075 worst case
        with pytest.raises(BudgetRefused) as err:
            await acc.admit(
                RequestState("big", call_type="acompletion", tag="tiny"), dict(data), "claude-sonnet", routed=False
            )
        routed = RequestState("auto", call_type="acompletion", tag="tiny")
        moved = {**data, "model": "claude-sonnet"}
        await acc.admit(routed, moved, "claude-sonnet", routed=True)
        await g.aclose()
        return err.value, routed, moved

    refused, routed, moved = asyncio.run(main())
    assert (
        refused.status == 400
        and "paid calls tagged 'tiny'" in refused.message
        and "lower max_tokens" in refused.message
    )
    assert routed.route == moved["model"] == "local-llama" and routed.budget_note == "stopped"


def test_an_exhausted_tag_is_a_429_naming_it_and_auto_goes_local(make_guard: Callable[..., BudgetGuard]) -> None:
    async def main() -> tuple[BudgetRefused, RequestState, RequestState]:
        g = make_guard(tags={"spent": {"monthly_limit_usd": 1.0}})
        await _spend(g, "s1", "claude-sonnet", 100_000, 40_000, "spent")  # $0.90 of the tag's $1
        acc = Accountant(g, "local-llama")
        data = {"messages": [{"role": "user", "content": "hello there"}], "max_tokens": 10_000}  # $0.15 worst case
        escalation = RequestState("p", call_type="acompletion", tag="spent").child(
            "escalation", "claude-sonnet", "1", counts_request=False, leaves_local=True
        )
        with pytest.raises(BudgetRefused) as err:
            await acc.admit(escalation, dict(data), "claude-sonnet", routed=False)
        routed = RequestState("auto", call_type="acompletion", tag="spent")
        await acc.admit(routed, {**data, "model": "claude-sonnet"}, "claude-sonnet", routed=True)
        other = RequestState("other", call_type="acompletion", tag="elsewhere")
        await acc.admit(other, dict(data), "claude-sonnet", routed=False)
        await g.aclose()
        return err.value, routed, other

    refused, routed, other = asyncio.run(main())
    assert refused.status == 429 and "tag 'spent' is exhausted" in refused.message
    assert routed.route == "local-llama" and routed.budget_note == "stopped" and not routed.reserved
    assert other.reserved


# -- files and data written by the release before tags ---------------------------------------------------------
_PREVIOUS_SQLITE = """
CREATE TABLE ledger (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, ts REAL NOT NULL,
    requested_model TEXT NOT NULL, served_model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL, kind TEXT NOT NULL,
    api_key_hash TEXT, user TEXT, parent_id TEXT, local INTEGER NOT NULL,
    counts_request INTEGER NOT NULL DEFAULT 1, leaves_local INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX ledger_month_ts ON ledger (month, ts);
CREATE TABLE totals (
    month TEXT PRIMARY KEY, committed_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL,
    requests INTEGER NOT NULL, local_requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
);
CREATE TABLE reservations (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, amount_nano INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX reservations_month_exp ON reservations (month, expires_at);
CREATE TABLE alerts (month TEXT NOT NULL, level TEXT NOT NULL, fired_at REAL NOT NULL, PRIMARY KEY (month, level));
INSERT INTO totals VALUES ('2026-03', 700, 900, 2, 1, 20, 20);
INSERT INTO ledger VALUES ('old1', '2026-03', 1.0, 'auto', 'local-llama', 10, 10, 0, 400, 'chat', NULL, NULL, NULL, 1, 1, 0);
INSERT INTO ledger VALUES ('old2', '2026-03', 2.0, 'auto', 'deepseek-chat', 10, 10, 700, 500, 'chat', NULL, NULL, NULL, 0, 1, 0);
INSERT INTO reservations VALUES ('inflight', '2026-03', 5000, 9e12);
"""


def test_a_ledger_file_without_the_tag_columns_is_migrated(tmp_path: Path) -> None:
    """The release before tags: its rows become untagged, its in-flight reservation still counts and is
    released, and new rows carry tags."""
    from policies.budget.sqlite_store import SqliteStore

    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(_PREVIOUS_SQLITE)
    old.close()

    async def main() -> None:
        store = SqliteStore(path)
        try:
            out = await store.reserve("2026-03", "new", 300, 10**12, 9e12, 1.0, tag="sales", tag_stop_nano=10_000)
            assert out.granted and out.reserved_nano == 5300 and out.tag_reserved_nano == 300
            refused = await store.reserve(
                "2026-03", "huge", 9_800, 10**12, 9e12, 1.0, tag="sales", tag_stop_nano=10_000
            )
            assert refused.tag_refused and not refused.granted
            await store.settle(
                LedgerRecord("new", "2026-03", 3.0, "auto", "deepseek-chat", 5, 5, 250, 300, tag="sales")
            )
            await store.release("2026-03", "inflight")
            t = await store.totals("2026-03")
            assert (t.committed_nano, t.reserved_nano, t.requests, t.local_requests) == (950, 0, 3, 1)
            tags = await store.tag_totals("2026-03")
            assert set(tags) == {"sales"} and (tags["sales"].committed_nano, tags["sales"].requests) == (250, 1)
            rows = {r.request_id: r.tag for r in await store.records("2026-03")}
            assert rows == {"old1": None, "old2": None, "new": "sales"}
        finally:
            await store.close()
        conn = sqlite3.connect(path)
        indexes = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall())
        # Partial: untagged reservations are not in it; a tag cap's sum still reads it.
        assert indexes["reservations_month_tag"].endswith("WHERE tag IS NOT NULL")
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ? AND tag = ?",
            ("2026-03", "sales"),
        ).fetchall()
        assert "USING INDEX reservations_month_tag" in str(plan), plan
        conn.close()

    asyncio.run(main())


def test_redis_reservations_held_by_the_previous_release_are_released(shared_redis: Any) -> None:
    """Reservations the untagged scripts wrote (no resv_tag entry) lapse and release as before."""
    import redis

    from policies.budget.redis_store import RedisStore

    prefix = f"old{random.getrandbits(32):x}"
    raw = redis.Redis.from_url(shared_redis.url)
    base = f"{prefix}:2026-03"
    raw.hset(f"{base}:resv", mapping={"a": 700, "b": 300})
    raw.zadd(f"{base}:resv_exp", {"a": 9e12, "b": 5.0})
    raw.hset(f"{base}:totals", "reserved", 1000)
    raw.close()

    async def main() -> None:
        store = RedisStore(shared_redis.url, prefix=prefix)
        try:
            assert await store.expire("2026-03", 10.0) == 1  # "b" lapsed
            await store.release("2026-03", "a")
            assert (await store.totals("2026-03")).reserved_nano == 0
            assert await store.tag_totals("2026-03") == {}
        finally:
            await store.close()

    asyncio.run(main())


# -- the endpoint -------------------------------------------------------------------------------------------
def test_status_endpoint_by_tag_and_a_bad_breakdown(make_guard: Callable[..., BudgetGuard]) -> None:
    import httpx
    from fastapi import FastAPI

    from proxy.api.budget import make_budget_router

    guard = _capped(make_guard)
    app = FastAPI()
    app.include_router(make_budget_router(lambda: guard, lambda: None))

    async def main() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        await _spend(guard, "a", "deepseek-chat", 1000, 100, "sales")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            out = (
                await c.get("/api/budget/status?by=tag"),
                await c.get("/api/budget/status?by=model"),
                await c.get("/api/budget/ledger"),
            )
        await guard.aclose()
        return out

    by_tag, bad, ledger = asyncio.run(main())
    assert by_tag.status_code == 200
    body = by_tag.json()
    assert body["by_tag"]["sales"]["cost"] == pytest.approx(float(cost("deepseek-chat", 1000, 100)), abs=1e-6)
    assert body["by_tag"]["capped"]["limit"] == TAG_LIMIT and body["monthly_limit"] == MONTH_LIMIT
    assert bad.status_code == 400 and "by=tag" in bad.json()["detail"]["error"]["message"]
    assert ledger.json()["records"][0]["tag"] == "sales"


def test_raising_a_tag_cap_or_the_month_limit_rearms_their_alerts(make_guard: Callable[..., BudgetGuard]) -> None:
    """Alerts are kept with the limit they fired against: a cap raised in the config (a restart: a new guard on
    the same store) is announced at its own 70%; an alert stored without a limit (before) counts for any."""

    async def main() -> None:
        async with Receiver() as rx:
            hook = {"alert_webhook": rx.url, "alert_webhook_backoff_s": 0.05}
            old = make_guard(monthly_limit_usd=1.0, tags={"t": {"monthly_limit_usd": 0.1}}, **hook)
            await _spend(old, "a1", "claude-sonnet", 5_000, 4_000, "t")  # $0.075: 75% of the tag's cap
            month = (await old.status())["month"]
            await old.store.mark_alert(month, "0.9", 0.0)  # a month-level alert as stored before limits were kept
            await old.aclose()
            new = make_guard(monthly_limit_usd=1.0, tags={"t": {"monthly_limit_usd": 0.2}}, **hook)
            assert (await new.status())["alerts_fired"] == ["0.9"]
            await _spend(new, "a2", "claude-sonnet", 5_000, 4_000, "t")  # $0.15: 75% of the raised cap
            await _spend(new, "a3", "claude-sonnet", 30_000, 40_000, None)  # the month at $0.84 (0.9 already sent)
            await new.alerter.drain()  # type: ignore[union-attr]
            await new.aclose()
        assert [(b.get("tag"), b["level"], b["monthly_limit"]) for b in rx.bodies] == [
            ("t", "0.7", 0.1),
            ("t", "0.7", 0.2),
            (None, "0.7", 1.0),
        ]

    asyncio.run(main())


def test_a_stop_alert_stored_before_limits_were_kept_is_not_sent_again(make_guard: Callable[..., BudgetGuard]) -> None:
    """A month (or a tag) that stopped before the upgrade holds 'stop' ('tag:stop:t') with no limit: the upgraded
    guard's next refused call must not send the stop webhook a second time (the 70% levels already count such keys)."""

    async def main() -> None:
        async with Receiver() as rx:
            hook = {"alert_webhook": rx.url, "alert_webhook_backoff_s": 0.05}
            g = make_guard(monthly_limit_usd=1.0, tags={"t": {"monthly_limit_usd": 0.1}}, **hook)
            month = (await g.status())["month"]
            for key in ("0.7", "stop", "tag:0.7:t", "tag:stop:t"):  # as stored before dab0f80
                await g.store.mark_alert(month, key, 0.0)
            await g.aclose()
            g = make_guard(monthly_limit_usd=1.0, tags={"t": {"monthly_limit_usd": 0.1}}, **hook)
            await g.status()  # as the proxy's start-up, which reads the month's alerts
            await _spend(g, "t1", "claude-sonnet", 5_000, 4_000, "t")  # $0.075: 75% of the tag's cap
            with pytest.raises(BudgetExhausted):  # its stop
                await g.reserve("t2", "claude-sonnet", 5_000, 5_000, tag="t")
            await _spend(g, "m1", "claude-sonnet", 50_000, 40_000, None)  # the month at $0.825
            with pytest.raises(BudgetExhausted):  # the month's stop
                await g.reserve("m2", "claude-sonnet", 10_000, 10_000)
            assert g.is_stopped()
            await g.alerter.drain()  # type: ignore[union-attr]
            await g.aclose()
        assert [(b.get("tag"), b["level"]) for b in rx.bodies] == []  # main: [('t', 'stop'), (None, 'stop')]

    asyncio.run(main())


def test_an_exhausted_small_budget_says_what_is_spent_of_what(make_guard: Callable[..., BudgetGuard]) -> None:
    """Found by review16 on the stack: a tag capped at $0.002 was refused with '$0.00 of its $0.00 limit', and a
    month of $0.0039 alike: the figures were rounded to cents (the too-costly message already showed small sums)."""

    async def main() -> tuple[BudgetRefused, BudgetRefused]:
        g = make_guard(monthly_limit_usd=0.0039, tags={"small": {"monthly_limit_usd": 0.002}})
        await _spend(g, "s1", "claude-sonnet", 100, 100, "small")  # $0.0018 of the tag's $0.002 (stops at 95%)
        acc = Accountant(g, "local-llama")
        data = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}
        with pytest.raises(BudgetRefused) as tag_err:
            await acc.admit(RequestState("t", call_type="acompletion", tag="small"), dict(data), "claude-sonnet", False)
        await _spend(g, "s2", "claude-sonnet", 100, 100, None)  # $0.0036 of the month's $0.0039
        with pytest.raises(BudgetRefused) as month_err:
            await acc.admit(RequestState("m", call_type="acompletion"), dict(data), "claude-sonnet", False)
        await g.aclose()
        return tag_err.value, month_err.value

    tag, month = asyncio.run(main())
    assert tag.status == 429 and "$0.0018 of its $0.002 limit" in tag.message, tag.message
    assert month.status == 429 and "$0.0036 of the $0.0039 limit" in month.message, month.message
