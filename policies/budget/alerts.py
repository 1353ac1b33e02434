"""Budget alert delivery: a JSON POST to the webhook, retried in the background.

The request that crossed the threshold never waits for it: `send()` only starts
a task. Which alerts fire, and that each fires once per month, is decided by the
guard and the store; this module only delivers.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

log = logging.getLogger("synqra.budget")


class WebhookAlerter:
    def __init__(self, url: str, timeout_s: float = 5.0, attempts: int = 5, backoff_s: float = 1.0) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.backoff_s = backoff_s
        self._tasks: set[asyncio.Task[bool]] = set()
        self._client: httpx.AsyncClient | None = None

    def send(self, payload: dict[str, Any]) -> asyncio.Task[bool]:
        task = asyncio.get_running_loop().create_task(self._deliver(payload))
        self._tasks.add(task)  # keep a reference until done (the loop holds only weak ones)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _deliver(self, payload: dict[str, Any]) -> bool:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        delay = self.backoff_s
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await self._client.post(self.url, json=payload)
                if resp.status_code < 300:
                    return True
                # 4xx other than 408/429 will not get better by retrying.
                if 400 <= resp.status_code < 500 and resp.status_code not in (408, 429):
                    log.error("budget alert webhook %s refused the alert: HTTP %s", self.url, resp.status_code)
                    return False
                cause = f"HTTP {resp.status_code}"
            except httpx.HTTPError as e:
                cause = f"{type(e).__name__}: {e}"
            if attempt < self.attempts:
                log.warning("budget alert webhook attempt %d/%d failed (%s); retrying", attempt, self.attempts, cause)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 60.0)
        log.error("budget alert webhook %s failed after %d attempts (%s)", self.url, self.attempts, cause)
        return False

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Wait for pending deliveries (at shutdown), then cancel what is left."""
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
            for t in pending:
                t.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None
