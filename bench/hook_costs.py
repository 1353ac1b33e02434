"""CPU per request of synqra's per-request components, measured in-process without a profiler.

The running proxy's CPU per request (bench/proxy_overhead.py) says what the hooks cost together; a sampling
profiler (bench/profile_proxy.py) splits it, but on a shared machine its samples land where a thread was
preempted, and a deterministic profiler inflates code made of many small calls. This calls each component
on the proxy_overhead benchmark's own requests (~880 characters, unique per request), many times, and divides
the process CPU time (time.process_time) by the count: the real cost of each piece, on the event loop of
this process, with the shipped config (routing tiers as proxy_overhead sets them, SQLite in a temporary
folder; `--redis` adds the Redis store, a real server on a free port), the start-up heap frozen as the
proxy freezes it.

`--before CHECKOUT` measures another checkout's code the same way, side by side: each run is a fresh
process (this file run with the checkout's code first on sys.path), the two checkouts' runs alternate
`--repeats` times, and the table gives each component's median over the runs and the ratio. The components
are called through interfaces both checkouts have (main at 1086c0f and later).

Run: .venv/bin/python -m bench.hook_costs [--n 3000] [--redis] [--before CHECKOUT --repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MODEL = "deepseek-chat"
REPO = Path(__file__).resolve().parents[1]
ROUND_TRIP = "loop round trip (run_until_complete of nothing)"
NOTES = {
    ROUND_TRIP: "subtract",
    "routing: structural_features": "regexes, complexity",
    "routing: Router.adecide (all of the above + scorer)": "includes a loop round trip",
    "budget: prompt tokens (LiteLLM token_counter)": "tiktoken encode is ~2/3",
    "budget: Accountant admit + settle, SQLite": "token count, reserve tx, ledger tx, metrics; 2 loop round trips",
}


def cpu_us(n: int, fn: Callable[[int], object]) -> float:
    """Process CPU microseconds per call of fn(i), i in range(n), after 100 warm-up calls."""
    for i in range(100):
        fn(n + i)
    t0 = time.process_time()
    for i in range(n):
        fn(i)
    return (time.process_time() - t0) * 1e6 / n


def measure(n: int, redis_url: str | None) -> dict[str, float]:
    """{component: CPU us per call} of the code first on sys.path."""
    from bench.proxy_overhead import ROUTING, prompt
    from policies.common.request_state import RequestState
    from policies.common.settings import load_config
    from policies.routing.complexity import litellm_complexity
    from policies.routing.features import embed_text, request_text, structural_features
    from proxy.runtime import init_runtime
    from proxy.server import freeze_startup_heap
    from tests.stack import write_config

    root = Path(tempfile.mkdtemp(prefix="bench-hook-costs-"))
    path, _ = write_config(root, None, {"routing": ROUTING, "quality": {"enabled": False}})
    rt = init_runtime(load_config(path), "bench")
    reqs: list[dict[str, Any]] = [
        {"model": "auto", "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": 64}
        for i in range(n + 100)
    ]
    texts = [embed_text(request_text(r), rt.router.scorer.max_chars) for r in reqs]
    # As the proxy does once started (proxy.server): without it a full collection walks LiteLLM's ~800,000
    # start-up objects every few thousand container allocations, and whichever component is running then pays.
    freeze_startup_heap()
    loop = asyncio.new_event_loop()

    def run(coro_of: Callable[[int], Awaitable[object]]) -> Callable[[int], object]:
        return lambda i: loop.run_until_complete(coro_of(i))

    router, guard = rt.router, rt.budget
    out: dict[str, float] = {}
    out[ROUND_TRIP] = cpu_us(n, run(lambda i: asyncio.sleep(0)))
    out["routing: request_text"] = cpu_us(n, lambda i: request_text(reqs[i]))
    out["routing: structural_features"] = cpu_us(n, lambda i: structural_features(reqs[i]))
    out["  of which litellm_complexity"] = cpu_us(n, lambda i: litellm_complexity(prompt(i)))
    emb = router.embedder
    if emb is not None:
        out["routing: static embedding (tokens + mean)"] = cpu_us(n, lambda i: emb.embed([texts[i] + " fresh"]))
    out["routing: Router.adecide (all of the above + scorer)"] = cpu_us(
        n, run(lambda i: router.adecide(reqs[i], budget_pressure=0.0, unavailable={}))
    )
    out["budget: prompt tokens (LiteLLM token_counter)"] = cpu_us(
        n, lambda i: guard.count_prompt_tokens(MODEL, messages=reqs[i]["messages"])
    )

    async def admit_settle(accounts: Any, i: int) -> None:
        st = RequestState.new()
        st.call_type, st.route, st.requested_model = "acompletion", MODEL, MODEL
        await accounts.admit(st, {**reqs[i], "model": MODEL}, MODEL, False)
        await accounts.settle(st, {"prompt_tokens": 190, "completion_tokens": 1})

    out["budget: Accountant admit + settle, SQLite"] = cpu_us(n, run(lambda i: admit_settle(rt.accounts, i)))
    stores: list[tuple[str, Any]] = [("SQLite", guard.store)]
    if redis_url is not None:
        from policies.budget.redis_store import RedisStore

        stores.append(("Redis", RedisStore(redis_url, prefix=f"bench:{uuid.uuid4().hex}")))
    for name, store in stores:

        async def cycle(i: int, s: Any = store) -> None:
            await store_cycle(s, i)

        out[f"budget: store reserve + settle, {name}"] = cpu_us(n, run(cycle))
    for _, store in stores[1:]:
        loop.run_until_complete(store.close())
    loop.run_until_complete(rt.aclose())
    loop.close()
    return out


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


def run_child(checkout: Path, n: int, redis_url: str | None) -> dict[str, float]:
    """measure() in a fresh process, with `checkout`'s code first on sys.path."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--n", str(n)]
    if redis_url:
        cmd += ["--redis-url", redis_url]
    env = {**os.environ, "PYTHONPATH": str(checkout), "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"measuring {checkout} failed: {done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=3000, help="calls per component")
    ap.add_argument("--redis", action="store_true", help="also the Redis store (starts a redis-server)")
    ap.add_argument("--before", type=Path, help="another checkout, measured side by side (see the module doc)")
    ap.add_argument("--repeats", type=int, default=3, help="with --before: runs of each checkout, alternating")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one run of measure(), for run_child: the checkout's code first, not this file's folder
        sys.path[0] = os.getcwd()
        print(json.dumps(measure(args.n, args.redis_url)))
        return
    sys.path.insert(0, str(REPO))
    from bench.measure import median, table, write_result
    from tests.redis_server import RedisServer

    root = Path(tempfile.mkdtemp(prefix="bench-hook-costs-"))
    redis = RedisServer(root / "redis", appendfsync="everysec").start() if args.redis else None
    url = redis.url if redis is not None else None
    try:
        if args.before is None:
            runs = {"this checkout": [run_child(REPO, args.n, url)]}
        else:
            runs = {"this checkout": [], "before": []}
            for _ in range(args.repeats):
                runs["this checkout"].append(run_child(REPO, args.n, url))
                runs["before"].append(run_child(args.before.resolve(), args.n, url))
    finally:
        if redis is not None:
            redis.stop()
    rows: list[dict[str, object]] = []
    for component in runs["this checkout"][0]:
        now = median([r[component] for r in runs["this checkout"]])
        row: dict[str, object] = {"component": component, "CPU us/request": now}
        if args.before is not None:
            old = median([r[component] for r in runs["before"] if component in r])
            row = {
                "component": component,
                "before us": old,
                "this checkout us": now,
                "after/before": now / old,
                "runs before": " ".join(f"{r[component]:.0f}" for r in runs["before"]),
                "runs this checkout": " ".join(f"{r[component]:.0f}" for r in runs["this checkout"]),
            }
        row["note"] = NOTES.get(component, "")
        rows.append(row)
    how = (
        f"medians of {args.repeats} alternating runs per checkout (fresh processes); before = {args.before}"
        if args.before is not None
        else "one run"
    )
    text = (
        table(rows)
        + f"\n\n{args.n} calls each (after 100 warm-up calls), process CPU time per call; the proxy_overhead "
        f"benchmark's requests (~880 characters, unique per request); {how}. One process at a time, this machine, "
        + time.strftime("%Y-%m-%d %H:%M")
        + "."
    )
    print(text)
    write_result("hook_costs", text)


if __name__ == "__main__":
    main()
