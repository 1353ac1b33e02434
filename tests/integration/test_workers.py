"""num_workers: several proxy processes on one port share one budget and one set of metrics; a worker that dies
is restarted while the others serve."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, RunningStack, proxy_workers, start_stack, wait_until

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
ASK = {"model": "claude-sonnet", "max_tokens": 8, "messages": [{"role": "user", "content": "Name a colour."}]}


def counter(s: RunningStack, name: str) -> float:
    text = httpx.get(f"{s.base_url}/metrics", headers=AUTH, timeout=30).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def test_two_workers_share_budget_metrics_and_survive_a_dead_one(
    stack: RunningStack, providers: dict[str, FakeProvider], tmp_path: Path
) -> None:
    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"server": {"num_workers": 2}})
    try:
        assert wait_until(lambda: len(proxy_workers(s)) == 2, 60)
        providers["anthropic"].reset()
        with ThreadPoolExecutor(8) as pool:
            codes = list(
                pool.map(
                    lambda _: (
                        httpx.post(f"{s.base_url}/v1/chat/completions", json=ASK, headers=AUTH, timeout=120).status_code
                    ),
                    range(40),
                )
            )
        assert codes == [200] * 40
        status = httpx.get(f"{s.base_url}/api/budget/status", headers=AUTH, timeout=30).json()
        billed = providers["anthropic"].billed_tokens()
        assert status["requests"] == 40 and status["tokens"] == {"prompt": billed[0], "completion": billed[1]}
        # Whichever worker answers the scrape, the counters are the sum of both.
        assert wait_until(lambda: counter(s, "synqra_calls_total") == 40, 10), counter(s, "synqra_calls_total")
        victim = proxy_workers(s)[0]
        os.kill(victim.pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # the other worker serves meanwhile; the manager starts a new one
            assert (
                httpx.post(f"{s.base_url}/v1/chat/completions", json=ASK, headers=AUTH, timeout=120).status_code == 200
            )
            workers = proxy_workers(s)
            if len(workers) == 2 and victim.pid not in {w.pid for w in workers}:
                break
            time.sleep(1)
        else:
            raise AssertionError("the dead worker was not replaced")
    finally:
        s.stop()
