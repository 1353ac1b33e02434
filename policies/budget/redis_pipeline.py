"""Auto-pipelining for the Redis budget store: Lua script calls that arrive while a
round trip is in flight go out together as one pipeline (see policies.budget.coalesce).

Scripts stay atomic (each is one EVALSHA), the order of calls is kept, and a
NOSCRIPT reply (Redis restarted and lost its script cache) reloads the script and
resends only those calls: NOSCRIPT means the script did not run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from policies.budget.coalesce import Coalescer


@dataclass(frozen=True)
class ScriptCall:
    sha: str
    source: str
    keys: list[str]
    args: list[Any]


class ScriptPipeline:
    """Runs EVALSHA calls on `client`, coalescing concurrent calls into pipelines."""

    def __init__(self, client: aioredis.Redis, max_batch: int = 128) -> None:
        self._r = client
        self._batches: Coalescer[ScriptCall, Any] = Coalescer(self._send, max_batch)
        self.round_trips = 0  # requests to Redis (pipelines or single calls), script loads excluded

    async def run(self, sha: str, source: str, keys: list[str], args: list[Any]) -> Any:
        return await self._batches.run(ScriptCall(sha, source, keys, args))

    async def _send(self, batch: list[ScriptCall]) -> list[Any]:
        replies = await self._execute(batch)
        missing = [i for i, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for source in {batch[i].source for i in missing}:
                await self._r.script_load(source)
            for i, r in zip(missing, await self._execute([batch[i] for i in missing])):
                replies[i] = r
        return replies

    async def _execute(self, batch: list[ScriptCall]) -> list[Any]:
        self.round_trips += 1
        if len(batch) == 1:
            c = batch[0]
            try:
                return [await self._r.evalsha(c.sha, len(c.keys), *c.keys, *c.args)]
            except NoScriptError as e:
                return [e]
        pipe = self._r.pipeline(transaction=False)
        for c in batch:
            pipe.evalsha(c.sha, len(c.keys), *c.keys, *c.args)
        return await pipe.execute(raise_on_error=False)

    async def aclose(self) -> None:
        await self._batches.aclose()
