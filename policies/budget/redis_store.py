"""The shared store: Redis, so several proxy processes enforce one budget.

Each operation is one Lua script, which Redis runs atomically: check-and-reserve
cannot interleave with another process's reserve or settle. Keys per month
(prefix p, month m):
  p:m:totals   hash  committed, reserved, baseline, requests, local_requests, prompt_tokens, completion_tokens
  p:m:resv     hash  request_id -> reserved nano-dollars
  p:m:resv_exp zset  request_id scored by expiry time (epoch seconds)
  p:m:ledger   hash  request_id -> ledger record JSON (HSETNX: written once)
  p:m:tags     hash  "<figure>:<tag>" -> each tag's committed, reserved, baseline, requests, local_requests
  p:m:resv_tag hash  request_id -> tag, for the tagged reservations in p:m:resv
  p:m:alerts   set   alert levels fired this month
(the tag hashes hold tagged calls only: the untagged share is the month's totals minus the tags').
Run Redis with appendonly yes if the ledger must survive a Redis crash.
"""

from __future__ import annotations

from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from policies.budget.records import LedgerRecord, MonthTotals, ReserveOutcome, SettleOutcome, TagTotals
from policies.budget.redis_pipeline import ScriptPipeline
from policies.budget.store import StoreUnavailable

# Shared by the scripts, which all take the same KEYS (see RedisStore._keys):
# 1 totals, 2 resv, 3 resv_exp, 4 ledger, 5 tags, 6 resv_tag.
_COMMON = """
local function unhold(id, a)
  redis.call('HDEL', KEYS[2], id)
  redis.call('HINCRBY', KEYS[1], 'reserved', -a)
  local tag = redis.call('HGET', KEYS[6], id)
  if tag then
    redis.call('HDEL', KEYS[6], id)
    redis.call('HINCRBY', KEYS[5], 'reserved:' .. tag, -a)
  end
end
local function expire(now)
  local stale = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', '(' .. now)
  for _, id in ipairs(stale) do
    local a = redis.call('HGET', KEYS[2], id)
    if a then unhold(id, tonumber(a)) end
    redis.call('ZREM', KEYS[3], id)
  end
  return #stale
end
local function drop(id)
  local a = redis.call('HGET', KEYS[2], id)
  if a then
    unhold(id, tonumber(a))
    redis.call('ZREM', KEYS[3], id)
  end
end
local function spend()
  local v = redis.call('HMGET', KEYS[1], 'committed', 'reserved')
  return tonumber(v[1] or '0'), tonumber(v[2] or '0')
end
"""

# ARGV request_id, tag ("" for an untagged call), and "amount stop expires_at now tag_stop" (tag_stop -1: no cap):
# the numbers travel as one argument, since packing each argument costs the client more than Redis spends
# splitting them. Returns {code, committed, reserved, tag committed, tag reserved}; code 1 granted, 0 refused,
# 2 duplicate, 3 refused by the tag's cap.
_RESERVE = (
    _COMMON
    + """
local id, tag = ARGV[1], ARGV[2]
local amount_s, stop, expires_at, now, tag_stop = string.match(ARGV[3], '^(%S+) (%S+) (%S+) (%S+) (%S+)$')
expire(now)
local committed, reserved = spend()
if redis.call('HEXISTS', KEYS[2], id) == 1 or redis.call('HEXISTS', KEYS[4], id) == 1 then
  return {2, committed, reserved, 0, 0}
end
local amount = tonumber(amount_s)
if committed + reserved + amount > tonumber(stop) then
  return {0, committed, reserved, 0, 0}
end
tag_stop = tonumber(tag_stop)
local tc, tr = 0, 0
if tag ~= '' and tag_stop >= 0 then
  local v = redis.call('HMGET', KEYS[5], 'committed:' .. tag, 'reserved:' .. tag)
  tc, tr = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if tc + tr + amount > tag_stop then
    return {3, committed, reserved, tc, tr}
  end
end
redis.call('HSET', KEYS[2], id, amount_s)
redis.call('ZADD', KEYS[3], expires_at, id)
redis.call('HINCRBY', KEYS[1], 'reserved', amount_s)
if tag ~= '' then
  redis.call('HSET', KEYS[6], id, tag)
  tr = redis.call('HINCRBY', KEYS[5], 'reserved:' .. tag, amount_s)
end
return {1, committed, reserved + amount, tc, tr}
"""
)

# ARGV request_id, ledger record JSON, tag ("" for none), and "cost baseline local_delta prompt_tokens
# completion_tokens request_delta" (LedgerRecord: requests and local share count client requests, not calls).
# Returns {inserted, committed, reserved, the tag's committed (-1 untagged)}.
_SETTLE = (
    _COMMON
    + """
local id, tag = ARGV[1], ARGV[3]
local cost, baseline, local_delta, prompt, completion, requests =
  string.match(ARGV[4], '^(%S+) (%S+) (%S+) (%S+) (%S+) (%S+)$')
local inserted = redis.call('HSETNX', KEYS[4], id, ARGV[2])
drop(id)
if inserted == 1 then
  redis.call('HINCRBY', KEYS[1], 'committed', cost)
  redis.call('HINCRBY', KEYS[1], 'baseline', baseline)
  redis.call('HINCRBY', KEYS[1], 'requests', requests)
  redis.call('HINCRBY', KEYS[1], 'local_requests', local_delta)
  redis.call('HINCRBY', KEYS[1], 'prompt_tokens', prompt)
  redis.call('HINCRBY', KEYS[1], 'completion_tokens', completion)
  if tag ~= '' then
    redis.call('HINCRBY', KEYS[5], 'committed:' .. tag, cost)
    redis.call('HINCRBY', KEYS[5], 'baseline:' .. tag, baseline)
    redis.call('HINCRBY', KEYS[5], 'requests:' .. tag, requests)
    redis.call('HINCRBY', KEYS[5], 'local_requests:' .. tag, local_delta)
  end
end
local committed, reserved = spend()
local tc = -1
if tag ~= '' then tc = tonumber(redis.call('HGET', KEYS[5], 'committed:' .. tag) or '0') end
return {inserted, committed, reserved, tc}
"""
)

# ARGV request_id
_RELEASE = (
    _COMMON
    + """
drop(ARGV[1])
return 1
"""
)

# ARGV now
_EXPIRE_ONLY = (
    _COMMON
    + """
return expire(ARGV[1])
"""
)

_TOTAL_FIELDS = (
    "committed",
    "reserved",
    "baseline",
    "requests",
    "local_requests",
    "prompt_tokens",
    "completion_tokens",
)


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
        self._month_keys: dict[str, list[str]] = {}
        # Every script runs through one pipeline: reserve and settle, on each paid request's path, coalesce.
        self._pipeline = ScriptPipeline(self._r)

    async def _script(self, script: AsyncScript, keys: list[str], args: list[Any]) -> Any:
        # Registered from the str constants above (redis types a script as str | bytes | memoryview).
        source = cast(str, script.script)
        return await self._call(self._pipeline.run(script.sha, source, keys, args))

    def _keys(self, month: str) -> list[str]:
        keys = self._month_keys.get(month)
        if keys is None:
            base = f"{self.prefix}:{month}"
            keys = [
                f"{base}:totals",
                f"{base}:resv",
                f"{base}:resv_exp",
                f"{base}:ledger",
                f"{base}:tags",
                f"{base}:resv_tag",
            ]
            self._month_keys = {month: keys}  # one month at a time
        return keys

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
        self,
        month: str,
        request_id: str,
        amount_nano: int,
        stop_nano: int,
        expires_at: float,
        now: float,
        tag: str | None = None,
        tag_stop_nano: int | None = None,
    ) -> ReserveOutcome:
        tag_stop = -1 if tag_stop_nano is None else tag_stop_nano
        args = [request_id, tag or "", f"{int(amount_nano)} {int(stop_nano)} {expires_at!r} {now!r} {int(tag_stop)}"]
        code, committed, reserved, tc, tr = await self._script(self._reserve, self._keys(month), args)
        return ReserveOutcome(
            code == 1,
            int(committed),
            int(reserved),
            duplicate=code == 2,
            tag_refused=code == 3,
            tag_committed_nano=int(tc),
            tag_reserved_nano=int(tr),
        )

    async def settle(self, record: LedgerRecord) -> SettleOutcome:
        figures = (
            record.cost_nano,
            record.baseline_nano,
            record.local_delta,
            record.prompt_tokens,
            record.completion_tokens,
            record.request_delta,
        )
        args = [record.request_id, record.to_json(), record.tag or "", " ".join(str(int(x)) for x in figures)]
        inserted, committed, reserved, tc = await self._script(self._settle, self._keys(record.month), args)
        return SettleOutcome(inserted == 1, int(committed), int(reserved), None if record.tag is None else int(tc))

    async def release(self, month: str, request_id: str) -> None:
        await self._script(self._release, self._keys(month), [request_id])

    async def expire(self, month: str, now: float) -> int:
        return int(await self._script(self._expire, self._keys(month), [repr(now)]))

    async def extend(self, month: str, request_ids: list[str], expires_at: float) -> None:
        if request_ids:  # XX: only reservations still held (a settled or released one is not brought back)
            await self._call(self._r.zadd(self._keys(month)[2], dict.fromkeys(request_ids, expires_at), xx=True))

    async def totals(self, month: str) -> MonthTotals:
        pipe = self._r.pipeline(transaction=True)
        pipe.hmget(self._keys(month)[0], *_TOTAL_FIELDS)
        pipe.smembers(f"{self.prefix}:{month}:alerts")
        vals, alerts = await self._call(pipe.execute())
        c, r, b, n, loc, pt, ct = (int(v or 0) for v in vals)
        return MonthTotals(month, c, r, b, n, loc, pt, ct, tuple(sorted(a.decode() for a in alerts)))

    async def tag_totals(self, month: str) -> dict[str, TagTotals]:
        raw = await self._call(self._r.hgetall(self._keys(month)[4]))
        figures: dict[str, dict[str, int]] = {}
        for key, value in raw.items():
            figure, _, tag = key.decode().partition(":")  # a tag may itself contain ":"
            figures.setdefault(tag, {})[figure] = int(value)
        return {
            tag: TagTotals(
                tag,
                f.get("committed", 0),
                f.get("reserved", 0),
                f.get("baseline", 0),
                f.get("requests", 0),
                f.get("local_requests", 0),
            )
            for tag, f in figures.items()
        }

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
