"""ScriptPipeline against a real Redis server: coalescing, order, NOSCRIPT recovery, outages."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from policies.budget.redis_pipeline import ScriptPipeline
from tests.redis_server import RedisServer

# Appends ARGV[1] to a list and returns the list's new length: the order Redis ran the calls in.
APPEND = "return redis.call('RPUSH', KEYS[1], ARGV[1])"


@pytest.fixture
def server(tmp_path: Path):
    s = RedisServer(tmp_path / "redis").start()
    yield s
    s.stop()


def with_pipeline(server: RedisServer, body: Callable[[aioredis.Redis, ScriptPipeline, str], Awaitable[None]]) -> None:
    """Run `body(redis, pipeline, sha of APPEND)` on a fresh client, then close it."""

    async def main() -> None:
        r = aioredis.Redis.from_url(server.url)
        try:
            await body(r, ScriptPipeline(r), r.register_script(APPEND).sha)
        finally:
            await r.aclose()

    asyncio.run(main())


def test_concurrent_calls_share_round_trips_and_keep_their_order(server: RedisServer) -> None:
    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        results = await asyncio.gather(*(pipe.run(sha, APPEND, ["log"], [i]) for i in range(200)))
        assert results == list(range(1, 201))  # each caller got its own reply, in call order
        assert [int(x) for x in await r.lrange("log", 0, -1)] == list(range(200))
        assert pipe.round_trips < 20, pipe.round_trips  # 200 calls coalesced (first alone, then batches)

    with_pipeline(server, body)


def test_a_lone_call_goes_out_at_once(server: RedisServer) -> None:
    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        for i in range(5):
            assert await pipe.run(sha, APPEND, ["solo"], [i]) == i + 1
        assert pipe.round_trips == 5 + 1  # one each, plus the first call's script load retry

    with_pipeline(server, body)


def test_lost_script_cache_is_reloaded_and_only_unrun_calls_resent(server: RedisServer) -> None:
    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        await pipe.run(sha, APPEND, ["k"], ["a"])
        await r.script_flush()  # what a Redis restart without the scripts does
        out = await asyncio.gather(*(pipe.run(sha, APPEND, ["k"], [x]) for x in "bcd"))
        assert out == [2, 3, 4]
        assert [x.decode() for x in await r.lrange("k", 0, -1)] == list("abcd")  # nothing ran twice

    with_pipeline(server, body)


def test_redis_going_away_fails_every_waiting_call_and_recovers(server: RedisServer) -> None:
    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        await pipe.run(sha, APPEND, ["k"], ["x"])
        server.stop()
        outcomes = await asyncio.gather(*(pipe.run(sha, APPEND, ["k"], [i]) for i in range(10)), return_exceptions=True)
        assert all(isinstance(o, (RedisConnectionError, OSError)) for o in outcomes), outcomes
        server.start()
        assert await pipe.run(sha, APPEND, ["k2"], ["y"]) == 1  # the pipeline is usable again

    with_pipeline(server, body)


def test_a_lone_call_after_a_redis_restart_reconnects_without_an_error(server: RedisServer) -> None:
    """Lone calls keep one connection: once Redis has restarted (closing it), the next call must find it
    dead and reconnect before sending, as a connection from the pool would, not fail a paid request."""

    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        assert await pipe.run(sha, APPEND, ["k"], ["a"]) == 1
        server.stop()
        server.start()
        await asyncio.sleep(0.1)  # the close has reached this side
        assert await pipe.run(sha, APPEND, ["k"], ["b"]) == 2  # appendfsync always: "a" survived the restart

    with_pipeline(server, body)


def test_a_cancelled_lone_call_leaves_no_reply_for_the_next(server: RedisServer) -> None:
    """A call cancelled while its reply is in flight drops the connection: the next caller must read
    its own reply, not the cancelled call's."""
    slow = "redis.call('RPUSH', KEYS[1], ARGV[1]); local t = redis.call('TIME'); " + (
        "while true do local n = redis.call('TIME'); if (n[1] - t[1]) * 1000000 + n[2] - t[2] > 50000 then break end end "
        "return 'slow'"
    )

    async def body(r: aioredis.Redis, pipe: ScriptPipeline, sha: str) -> None:
        slow_sha = await r.script_load(slow)
        task = asyncio.ensure_future(pipe.run(slow_sha, slow, ["s"], ["x"]))
        await asyncio.sleep(0.01)  # sent, the script is running
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await pipe.run(sha, APPEND, ["k"], ["a"]) == 1  # its own reply, not b'slow'

    with_pipeline(server, body)
