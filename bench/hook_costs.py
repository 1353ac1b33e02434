"""CPU per request of synqra's per-request components, measured in-process without a profiler.

The running proxy's CPU per request (bench/proxy_overhead.py) says what the hooks cost together; a sampling
profiler (bench/profile_proxy.py) splits it, but on a shared machine its samples land where a thread was
preempted, and a deterministic profiler inflates code made of many small calls. This calls each component
on the proxy_overhead benchmark's own requests (~880 characters, unique per request), many times, and divides
the process CPU time (time.process_time) by the count: the real cost of each piece, on the event loop of
this process, with the shipped config (routing tiers as proxy_overhead sets them, SQLite in a temporary
folder; `--redis` adds the Redis store, a real server on a free port).

Run: .venv/bin/python -m bench.hook_costs [--n 3000] [--redis]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.measure import table, write_result
from bench.proxy_overhead import ROUTING, prompt

MODEL = "deepseek-chat"


def cpu_us(n: int, fn: Callable[[int], object]) -> float:
    """Process CPU microseconds per call of fn(i), i in range(n), after 100 warm-up calls."""
    for i in range(100):
        fn(n + i)
    t0 = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - t0) * 1e6 / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000, help="calls per component")
    ap.add_argument("--redis", action="store_true", help="also the Redis store (starts a redis-server)")
    args = ap.parse_args()
    n = args.n

    from policies.common.request_state import RequestState
    from policies.common.settings import load_config
    from policies.routing.complexity import litellm_complexity
    from policies.routing.features import embed_text, request_text, structural_features
    from proxy.runtime import init_runtime
    from tests.stack import write_config

    root = Path(tempfile.mkdtemp(prefix="bench-hook-costs-"))
    path, _ = write_config(root, None, {"routing": ROUTING, "quality": {"enabled": False}})
    rt = init_runtime(load_config(path), "bench")
    reqs: list[dict[str, Any]] = [
        {"model": "auto", "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": 64}
        for i in range(n + 100)
    ]
    loop = asyncio.new_event_loop()

    def run(coro_of: Callable[[int], Awaitable[object]]) -> Callable[[int], object]:
        return lambda i: loop.run_until_complete(coro_of(i))

    router, guard = rt.router, rt.budget
    rows: list[dict[str, object]] = []

    def row(component: str, us: float, note: str = "") -> None:
        rows.append({"component": component, "CPU us/request": us, "note": note})

    row("loop round trip (run_until_complete of nothing)", cpu_us(n, run(lambda i: asyncio.sleep(0))), "subtract")
    row("routing: request_text", cpu_us(n, lambda i: request_text(reqs[i])))
    row("routing: structural_features", cpu_us(n, lambda i: structural_features(reqs[i])), "regexes, complexity")
    row("  of which litellm_complexity", cpu_us(n, lambda i: litellm_complexity(prompt(i))))
    texts = [embed_text(request_text(r), router.scorer.max_chars) for r in reqs]
    emb = router.embedder
    if emb is not None:
        row("routing: static embedding (tokens + mean)", cpu_us(n, lambda i: emb.embed([texts[i] + " fresh"])))
    row(
        "routing: Router.adecide (all of the above + scorer)",
        cpu_us(n, run(lambda i: router.adecide(reqs[i], budget_pressure=0.0, unavailable={}))),
        "includes a loop round trip",
    )
    row(
        "budget: prompt tokens (LiteLLM token_counter)",
        cpu_us(n, lambda i: guard.count_prompt_tokens(MODEL, messages=reqs[i]["messages"])),
        "tiktoken encode is ~2/3",
    )

    async def admit_settle(accounts: Any, i: int) -> None:
        st = RequestState.new()
        st.call_type, st.route, st.requested_model = "acompletion", MODEL, MODEL
        await accounts.admit(st, {**reqs[i], "model": MODEL}, MODEL, False)
        await accounts.settle(st, {"prompt_tokens": 190, "completion_tokens": 1})

    row(
        "budget: Accountant admit + settle, SQLite",
        cpu_us(n, run(lambda i: admit_settle(rt.accounts, i))),
        "token count, reserve tx, ledger tx; 2 loop round trips",
    )
    stores: list[tuple[str, Any]] = [("SQLite", guard.store)]
    redis = None
    if args.redis:
        from policies.budget.redis_store import RedisStore
        from tests.redis_server import RedisServer

        redis = RedisServer(root / "redis", appendfsync="everysec").start()
        stores.append(("Redis", RedisStore(redis.url)))
    try:
        for name, store in stores:

            async def cycle(i: int, s: Any = store) -> None:
                await store_cycle(s, i)

            row(f"budget: store reserve + settle, {name}", cpu_us(n, run(cycle)))
        for _, store in stores[1:]:
            loop.run_until_complete(store.close())
    finally:
        if redis is not None:
            redis.stop()
    loop.run_until_complete(rt.aclose())
    loop.close()
    text = (
        table(rows)
        + f"\n\n{n} calls each (after 100 warm-up calls), process CPU time per call; the proxy_overhead benchmark's "
        "requests (~880 characters, unique per request). One process, this machine, at "
        + time.strftime("%Y-%m-%d %H:%M")
        + "."
    )
    print(text)
    write_result("hook_costs", text)


async def store_cycle(store: Any, i: int) -> None:
    """One reserve and one settle of a fresh request id in `store` (what a paid call does to it)."""
    from policies.budget.records import LedgerRecord

    rid, month, now = uuid.uuid4().hex, "2026-12", time.time()
    await store.reserve(month, rid, 1000, 10**15, now + 600, now)
    await store.settle(
        LedgerRecord(
            request_id=rid,
            month=month,
            ts=now,
            requested_model=MODEL,
            served_model=MODEL,
            prompt_tokens=190,
            completion_tokens=1,
            cost_nano=100,
            baseline_nano=200,
            kind="chat",
            api_key_hash=None,
            user=None,
            parent_id=None,
            local=False,
            counts_request=True,
            leaves_local=False,
            tag=None,
        )
    )


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    main()
