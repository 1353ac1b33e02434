"""Coalescer (policies.budget.coalesce) and the SQLite store's shared write transactions."""
from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from policies.budget.coalesce import Coalescer
from policies.budget.sqlite_store import SqliteStore
from policies.budget.store import StoreUnavailable


class Recorder:
    """A fake transport that answers after a loop turn and remembers each batch it got."""

    def __init__(self, fail_items: tuple[int, ...] = (), fail_batch: bool = False) -> None:
        self.batches: list[list[int]] = []
        self.fail_items = fail_items
        self.fail_batch = fail_batch

    async def send(self, items: list[int]) -> list[int | Exception]:
        self.batches.append(list(items))
        await asyncio.sleep(0.001)  # the round trip: others queue meanwhile
        if self.fail_batch:
            raise ConnectionError("link down")
        return [ValueError(f"bad {i}") if i in self.fail_items else i * 10 for i in items]


def test_calls_arriving_during_a_round_trip_share_the_next_one_in_order() -> None:
    async def main() -> None:
        rec = Recorder()
        c: Coalescer[int, int] = Coalescer(rec.send)
        out = await asyncio.gather(*(c.run(i) for i in range(50)))
        assert out == [i * 10 for i in range(50)]
        assert rec.batches[0] == [0]  # the first call did not wait for company
        assert [i for b in rec.batches for i in b] == list(range(50))  # order kept
        assert len(rec.batches) == 2, rec.batches  # the other 49 went together
        assert await c.run(7) == 70 and rec.batches[-1] == [7]  # idle again: a lone call goes at once

    asyncio.run(main())


def test_batch_size_is_capped() -> None:
    async def main() -> None:
        rec = Recorder()
        c: Coalescer[int, int] = Coalescer(rec.send, max_batch=10)
        await asyncio.gather(*(c.run(i) for i in range(41)))
        assert max(len(b) for b in rec.batches) == 10

    asyncio.run(main())


def test_an_item_error_reaches_only_its_caller() -> None:
    async def main() -> None:
        c: Coalescer[int, int] = Coalescer(Recorder(fail_items=(3,)).send)
        out = await asyncio.gather(*(c.run(i) for i in range(6)), return_exceptions=True)
        assert isinstance(out[3], ValueError) and [o for i, o in enumerate(out) if i != 3] == [0, 10, 20, 40, 50]

    asyncio.run(main())


def test_a_failed_round_trip_fails_every_caller_in_it_and_the_next_call_works() -> None:
    async def main() -> None:
        rec = Recorder(fail_batch=True)
        c: Coalescer[int, int] = Coalescer(rec.send)
        out = await asyncio.gather(*(c.run(i) for i in range(5)), return_exceptions=True)
        assert all(isinstance(o, ConnectionError) for o in out)
        rec.fail_batch = False
        assert await c.run(1) == 10

    asyncio.run(main())


def test_sqlite_writes_share_a_transaction_but_a_failing_one_is_undone_alone(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "b.sqlite3")

    def insert(rid: str):
        return lambda conn: conn.execute("INSERT INTO reservations VALUES (?, 'm', 1, 9e9)", (rid,)).rowcount

    def insert_then_fail(conn: sqlite3.Connection) -> int:
        conn.execute("INSERT INTO reservations VALUES ('doomed', 'm', 1, 9e9)")
        raise sqlite3.IntegrityError("boom")

    async def main() -> list[object]:
        await store.ping()
        out = await asyncio.gather(
            store._tx(insert("a")), store._tx(insert("b")), store._tx(insert_then_fail), store._tx(insert("c")),
            return_exceptions=True,
        )
        assert store._writes.batches == 2  # "a" alone, then the three that queued behind it
        await store.close()
        return out

    out = asyncio.run(main())
    assert out[:2] == [1, 1] and out[3] == 1
    assert isinstance(out[2], StoreUnavailable) and "boom" in str(out[2])
    rows = sqlite3.connect(tmp_path / "b.sqlite3").execute("SELECT request_id FROM reservations ORDER BY 1").fetchall()
    assert rows == [("a",), ("b",), ("c",)]  # the failed body's insert was rolled back, the others kept
