"""The shared store: Redis, so several proxy processes enforce one budget.

Each operation is one Lua script, which Redis runs atomically: check-and-reserve
cannot interleave with another process's reserve or settle. Keys per month
(prefix p, month m):
  p:m:totals   hash  committed, reserved, baseline, requests, local_requests, prompt_tokens, completion_tokens
  p:m:resv     hash  request_id -> reserved nano-dollars
  p:m:resv_exp zset  request_id scored by expiry time (epoch seconds)
  p:m:ledger   hash  request_id -> ledger record JSON (HSETNX: written once)
  p:m:alerts   set   alert levels fired this month
Run Redis with appendonly yes if the ledger must survive a Redis crash.
"""
from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policies.budget.records import LedgerRecord, MonthTotals, ReserveOutcome, SettleOutcome
from policies.budget.redis_pipeline import ScriptPipeline
from policies.budget.store import StoreUnavailable

# Shared by the scripts: drop reservations expired before ARGV-given `now`.
_EXPIRE = """
local function expire(totals, resv, exp, now)
  local stale = redis.call('ZRANGEBYSCORE', exp, '-inf', '(' .. now)
  for _, id in ipairs(stale) do
    local a = redis.call('HGET', resv, id)
    if a then
      redis.call('HDEL', resv, id)
      redis.call('HINCRBY', totals, 'reserved', -tonumber(a))
    end
    redis.call('ZREM', exp, id)
  end
  return #stale
end
local function drop(totals, resv, exp, id)
  local a = redis.call('HGET', resv, id)
  if a then
    redis.call('HDEL', resv, id)
    redis.call('ZREM', exp, id)
    redis.call('HINCRBY', totals, 'reserved', -tonumber(a))
  end
end
local function spend(totals)
  local v = redis.call('HMGET', totals, 'committed', 'reserved')
  return tonumber(v[1] or '0'), tonumber(v[2] or '0')
end
"""

# KEYS totals resv resv_exp ledger; ARGV request_id amount stop expires_at now
_RESERVE = _EXPIRE + """
expire(KEYS[1], KEYS[2], KEYS[3], ARGV[5])
local committed, reserved = spend(KEYS[1])
if redis.call('HEXISTS', KEYS[2], ARGV[1]) == 1 or redis.call('HEXISTS', KEYS[4], ARGV[1]) == 1 then
  return {2, committed, reserved}
end
local amount = tonumber(ARGV[2])
if committed + reserved + amount > tonumber(ARGV[3]) then
  return {0, committed, reserved}
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[1])
redis.call('HINCRBY', KEYS[1], 'reserved', amount)
return {1, committed, reserved + amount}
"""

# KEYS totals resv resv_exp ledger; ARGV request_id json cost baseline local_delta prompt_tokens completion_tokens
# request_delta (LedgerRecord: requests and local share count client requests, not calls)
_SETTLE = _EXPIRE + """
local inserted = redis.call('HSETNX', KEYS[4], ARGV[1], ARGV[2])
drop(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
if inserted == 1 then
  redis.call('HINCRBY', KEYS[1], 'committed', ARGV[3])
  redis.call('HINCRBY', KEYS[1], 'baseline', ARGV[4])
  redis.call('HINCRBY', KEYS[1], 'requests', ARGV[8])
  redis.call('HINCRBY', KEYS[1], 'local_requests', ARGV[5])
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', ARGV[6])
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', ARGV[7])
end
local committed, reserved = spend(KEYS[1])
return {inserted, committed, reserved}
"""

# KEYS totals resv resv_exp; ARGV request_id
_RELEASE = _EXPIRE + """
drop(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
return 1
"""

# KEYS totals resv resv_exp; ARGV now
_EXPIRE_ONLY = _EXPIRE + """
return expire(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
"""

_TOTAL_FIELDS = ("committed", "reserved", "baseline", "requests", "local_requests", "prompt_tokens", "completion_tokens")


class RedisStore:
    name = "redis"

    def __init__(
        self, url: str, prefix: str = "synqra:budget", timeout_s: float = 2.0, max_connections: int = 16
    ) -> None:
        self.url = url
        self.prefix = prefix
        # A small blocking pool: a burst of calls waits for a connection (each script takes
        # microseconds) instead of failing with "Too many connections" like an outage, and
        # never opens dozens of connections at once.
        # No automatic command retries: a reserve whose reply was lost must not be replayed
        # (it would look like a duplicate); the guard's own queue retries idempotent settles.
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=max_connections,
            timeout=max(5.0, timeout_s),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )
        self._r = aioredis.Redis(connection_pool=pool)
        self._reserve = self._r.register_script(_RESERVE)
        self._settle = self._r.register_script(_SETTLE)
        self._release = self._r.register_script(_RELEASE)
        self._expire = self._r.register_script(_EXPIRE_ONLY)
        # Every script runs through one pipeline: reserve and settle, on each paid request's path, coalesce.
        self._pipeline = ScriptPipeline(self._r)

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return await self._call(self._pipeline.run(script.sha, script.script, keys, args))

    def _keys(self, month: str) -> list[str]:
        base = f"{self.prefix}:{month}"
        return [f"{base}:totals", f"{base}:resv", f"{base}:resv_exp", f"{base}:ledger"]

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (RedisConnectionError, RedisTimeoutError, OSError) as e:
            raise StoreUnavailable(f"budget store redis ({self._safe_url()}) unreachable: {e}") from e

    def _safe_url(self) -> str:
        # Never log a password embedded in the URL.
        scheme, _, rest = self.url.partition("://")
        return f"{scheme}://{rest.rsplit('@', 1)[-1]}"

    async def reserve(
        self, month: str, request_id: str, amount_nano: int, stop_nano: int, expires_at: float, now: float
    ) -> ReserveOutcome:
        code, committed, reserved = await self._script(
            self._reserve, self._keys(month), [request_id, amount_nano, stop_nano, repr(expires_at), repr(now)]
        )
        return ReserveOutcome(code == 1, int(committed), int(reserved), duplicate=code == 2)

    async def settle(self, record: LedgerRecord) -> SettleOutcome:
        args = [
            record.request_id,
            record.to_json(),
            record.cost_nano,
            record.baseline_nano,
            record.local_delta,
            record.prompt_tokens,
            record.completion_tokens,
            record.request_delta,
        ]
        inserted, committed, reserved = await self._script(self._settle, self._keys(record.month), args)
        return SettleOutcome(inserted == 1, int(committed), int(reserved))

    async def release(self, month: str, request_id: str) -> None:
        await self._script(self._release, self._keys(month)[:3], [request_id])

    async def expire(self, month: str, now: float) -> int:
        return int(await self._script(self._expire, self._keys(month)[:3], [repr(now)]))

    async def totals(self, month: str) -> MonthTotals:
        pipe = self._r.pipeline(transaction=True)
        pipe.hmget(self._keys(month)[0], *_TOTAL_FIELDS)
        pipe.smembers(f"{self.prefix}:{month}:alerts")
        vals, alerts = await self._call(pipe.execute())
        c, r, b, n, loc, pt, ct = (int(v or 0) for v in vals)
        return MonthTotals(month, c, r, b, n, loc, pt, ct, tuple(sorted(a.decode() for a in alerts)))

    async def mark_alert(self, month: str, level: str, now: float) -> bool:
        return int(await self._call(self._r.sadd(f"{self.prefix}:{month}:alerts", level))) == 1

    async def records(self, month: str) -> list[LedgerRecord]:
        raw = await self._call(self._r.hvals(self._keys(month)[3]))
        return sorted((LedgerRecord.from_json(v) for v in raw), key=lambda r: (r.ts, r.request_id))

    async def ping(self) -> None:
        await self._call(self._r.ping())

    async def close(self) -> None:
        await self._pipeline.aclose()
        await self._r.aclose(close_connection_pool=True)
