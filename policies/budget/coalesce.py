"""Coalesce concurrent store operations: while one batch is in flight, the ones that
arrive meanwhile wait and go out together as the next batch.

Every paid request runs two store operations (reserve before the call, settle
after it). Done one by one, each costs the event loop a round trip of its own: a
Redis socket write and read wake-up, or a hop to the SQLite thread and back. Under
load many requests want the store at once, so the batch that follows a busy
moment carries all of them (Redis: one pipeline; SQLite: one thread hop, one
transaction). With a single request nothing is waiting and it goes out at once,
so coalescing adds no latency. ioredis calls this auto-pipelining; group commit in
databases is the same idea.

`send(items)` returns one result per item, in order: a value, or an Exception for
that item alone. If `send` itself raises, every item of the batch gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
R = TypeVar("R")


class Coalescer(Generic[Item, R]):
    def __init__(self, send: Callable[[list[Item]], Awaitable[list[R | Exception]]], max_batch: int = 128) -> None:
        self._send = send
        self._max_batch = max_batch
        self._waiting: list[tuple[Item, asyncio.Future[R]]] = []
        self._busy = False
        self._drainer: asyncio.Task[None] | None = None
        self.batches = 0  # batches sent: shows the coalescing at work

    @property
    def idle(self) -> bool:
        """Nothing in flight and nothing waiting."""
        return not self._busy and not self._waiting

    async def run(self, item: Item) -> R:
        done: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, done))
        if self._busy:
            return await done  # goes out with the next batch
        # Nothing in flight: this caller sends now, with anything queued before it.
        self._busy = True
        try:
            await self._send_batch()
        except BaseException:
            if done.done() and not done.cancelled():
                done.exception()  # mark it retrieved: this caller raises instead
            raise
        finally:
            if self._waiting:  # items queued meanwhile: a task sends them (only under load)
                self._drainer = asyncio.get_running_loop().create_task(self._drain())
            else:
                self._busy = False
        return done.result()

    async def _drain(self) -> None:
        try:
            while self._waiting:
                await self._send_batch()
        finally:
            self._busy = False

    async def _send_batch(self) -> None:
        batch = self._waiting[: self._max_batch]
        del self._waiting[: self._max_batch]
        self.batches += 1
        try:
            results = await self._send([item for item, _ in batch])
        except BaseException as e:  # connection lost, timeout, cancelled: every caller in the batch learns it
            err = e if isinstance(e, Exception) else ConnectionError(f"store call abandoned: {e!r}")
            for _, done in batch:
                if not done.done():
                    done.set_exception(err)
            if not isinstance(e, Exception):
                raise
            return
        for (_, done), r in zip(batch, results, strict=True):
            if done.done():
                continue
            if isinstance(r, Exception):
                done.set_exception(r)
            else:
                done.set_result(r)

    async def aclose(self) -> None:
        """Wait (briefly) for batches still in flight."""
        if self._drainer is not None and not self._drainer.done():
            await asyncio.wait([self._drainer], timeout=5)
