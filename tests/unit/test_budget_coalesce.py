"""Coalescer (policies.budget.coalesce) and the SQLite store's shared write transactions."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

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
        return lambda conn: (
            conn.execute(
                "INSERT INTO reservations (request_id, month, amount_nano, expires_at) VALUES (?, 'm', 1, 9e9)", (rid,)
            ).rowcount
        )

    def insert_then_fail(conn: sqlite3.Connection) -> int:
        conn.execute(
            "INSERT INTO reservations (request_id, month, amount_nano, expires_at) VALUES ('doomed', 'm', 1, 9e9)"
        )
        raise sqlite3.IntegrityError("boom")

    async def main() -> list[object]:
        await store.ping()
        w = store._writes  # the thread's way (what writes take when one is already in flight)
        out = await asyncio.gather(
            w.run(insert("a")), w.run(insert("b")), w.run(insert_then_fail), w.run(insert("c")), return_exceptions=True
        )
        assert w.batches == 2  # "a" alone, then the three that queued behind it
        await store.close()
        return out

    out = asyncio.run(main())
    assert out[:2] == [1, 1] and out[3] == 1
    assert isinstance(out[2], StoreUnavailable) and "boom" in str(out[2])
    rows = sqlite3.connect(tmp_path / "b.sqlite3").execute("SELECT request_id FROM reservations ORDER BY 1").fetchall()
    assert rows == [("a",), ("b",), ("c",)]  # the failed body's insert was rolled back, the others kept


def test_sqlite_write_runs_on_the_loop_when_free_and_never_waits_there_for_a_lock(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    store = SqliteStore(path)

    def insert(rid: str):
        return lambda conn: (
            conn.execute(
                "INSERT INTO reservations (request_id, month, amount_nano, expires_at) VALUES (?, 'm', 1, 9e9)", (rid,)
            ).rowcount
        )

    async def main() -> None:
        await store.ping()
        assert await store._tx(insert("fast")) == 1
        assert store.fast_writes == 1 and store._writes.batches == 0
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        loop = asyncio.get_running_loop()
        loop.call_later(0.2, other.execute, "COMMIT")  # ...for 0.2 s; the loop must stay free meanwhile
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.01)

        t = asyncio.create_task(ticker())
        assert await store._tx(insert("waited")) == 1  # went to the thread, which waited for the lock
        t.cancel()
        assert store.fast_writes == 1 and store._writes.batches == 1
        assert ticks >= 10  # the event loop kept running while the write waited
        other.close()
        await store.close()

    asyncio.run(main())


def test_sqlite_loop_writes_keep_the_wal_checkpointed(tmp_path: Path) -> None:
    path = tmp_path / "b.sqlite3"
    store = SqliteStore(path)

    async def main() -> None:
        await store.ping()
        for i in range(1500):
            await store.reserve("m", f"r{i}", 1, 10**12, 9e9, 0.0)
            await asyncio.sleep(0.0005)  # requests come and go: the thread gets its turns
        assert store.fast_writes > 1400  # the rest met a checkpoint's lock and went to the thread
        await asyncio.get_running_loop().run_in_executor(store._pool, lambda: None)  # the last checkpoint ran
        size = path.with_name(path.name + "-wal").stat().st_size  # before close(), which checkpoints anyway
        await store.close()
        # A few pages of 4 KiB per write: without the checkpoints the log passes 10 MB here.
        assert size < 4 * 2**20, size

    asyncio.run(main())
