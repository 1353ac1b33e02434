"""What synqra's hooks cost on top of bare LiteLLM, against an instantly-answering fake provider.

Three proxies side by side (same machine, same fake provider, rounds interleaved):
- bare:    LiteLLM with synqra's auth but no synqra hooks (`litellm_settings.callbacks` removed);
- budget:  synqra hooks, explicit model (checks + budget reserve/settle + ledger), SQLite store;
- budget-redis: the same with the ledger in a real Redis server;
- routed:  synqra hooks, model "auto" (routing decision with a real embedding call + budget).
Prompts are ~200 tokens and unique per request (no embedding-cache hits).

Reports requests/s at 32 concurrent clients, p50 latency at 1 client (also with single
requests interleaved across the proxies, the fairest side-by-side read), the routing
decision time measured inside the proxy (x-synqra-route-ms), and proxy RSS.

Run: .venv/bin/python -m bench.proxy_overhead [--requests 600] [--rounds 3]
Targets: issue 4: budget hook >= 0.9 of bare requests/s at 32 clients;
         issue 3: routing adds <= 10% to p50; decision p50 <= 10 ms, p99 <= 25 ms; router RSS growth <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import aiohttp

from bench.measure import cpu_seconds, median, pct, rss_mb, table, write_result
from tests.fakes.fake_providers import FakeProvider
from tests.redis_server import RedisServer
from tests.stack import MASTER_KEY, RunningStack, start_stack

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
FILLER = "Our customer asked about the invoice for the last quarter and the shipping delay of order {i}. "


def prompt(i: int) -> str:
    return (FILLER.format(i=i) * 9) + f"Can you summarise what happened with order {i}?"  # ~200 tokens


async def timed_chat(session: aiohttp.ClientSession, base_url: str, model: str, i: int) -> tuple[float, dict[str, str]]:
    """One ~200-token chat request: (latency in ms, response headers)."""
    body = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": prompt(i)}]}
    t0 = time.perf_counter()
    async with session.post(f"{base_url}/v1/chat/completions", json=body, headers=AUTH) as r:
        await r.read()
        assert r.status == 200, await r.text()
        return (time.perf_counter() - t0) * 1000, dict(r.headers)


def instant_providers() -> dict[str, FakeProvider]:
    """Fake providers that answer "ok" at once: one OpenAI-protocol server for DeepSeek and GPT-4o, one Anthropic."""
    openai_like = FakeProvider("openai", default_text="ok").start()
    return {
        "deepseek": openai_like,
        "anthropic": FakeProvider("anthropic", default_text="ok").start(),
        "openai": openai_like,
    }


def variant(stack_name: str) -> str:
    return stack_name.split("#")[0]


def pin(pid: int, cpus: set[int]) -> None:
    """Bind every thread of a process to `cpus` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


async def interleaved_latency(
    stacks: dict[str, RunningStack], model: dict[str, str], n: int, offset: int
) -> dict[str, list[float]]:
    """Latency at 1 client, one request to each proxy in turn (order shuffled every turn), so drift
    on this shared machine hits every proxy alike instead of whichever ran during a slow spell."""
    lat: dict[str, list[float]] = {name: [] for name in stacks}
    order = list(stacks)
    rng = random.Random(0)
    async with aiohttp.ClientSession() as session:
        for i in range(n):
            rng.shuffle(order)
            for name in order:
                ms, _ = await timed_chat(session, stacks[name].base_url, model[name], offset + i)
                lat[name].append(ms)
    return lat


async def run(base_url: str, model: str, n: int, clients: int, offset: int) -> tuple[float, list[float], list[float]]:
    lat: list[float] = []
    route_ms: list[float] = []
    counter = iter(range(offset, offset + n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            ms, headers = await timed_chat(session, base_url, model, i)
            lat.append(ms)
            if "x-synqra-route-ms" in headers:
                route_ms.append(float(headers["x-synqra-route-ms"]))

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return n / (time.perf_counter() - t0), lat, route_ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--no-pin",
        action="store_true",
        help="do not put the proxies on CPU 0 and this load generator, the fake providers and Redis on CPU 1",
    )
    ap.add_argument("--replicas", type=int, default=1, help="proxy processes per variant")
    ap.add_argument("--latency-requests", type=int, default=400, help="interleaved 1-client requests per proxy")
    args = ap.parse_args()
    provs = instant_providers()
    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    base = start_stack(root / "base", provs)
    routing = {"tiers": ["deepseek-chat", "claude-sonnet"], "thresholds": [0.999], "creative_examples": []}
    stacks: dict[str, RunningStack] = {}
    redis: RedisServer | None = None
    try:
        no_hooks = lambda cfg: cfg["litellm_settings"].pop("callbacks")  # noqa: E731
        redis = RedisServer(root / "redis", appendfsync="everysec").start()
        variants = {
            "bare": ({"routing": routing}, no_hooks),
            "budget": ({"routing": routing}, None),
            "budget-redis": ({"routing": routing, "budget": {"store": redis.url}}, None),
            # Routing alone: the quality gate (which would score and maybe escalate the fake's answers) is off here.
            "routed": ({"routing": routing, "quality": {"enabled": False}}, None),
        }
        # Several processes per variant average out what differs between processes (memory layout,
        # hash seeds, garbage collection timing), which moved req/s by +-5% between runs here.
        for r in range(args.replicas):
            for v, (overrides, edit) in variants.items():
                name = v if r == 0 else f"{v}#{r + 1}"
                stacks[name] = start_stack(root / name, provs, overrides, backends_of=base, edit=edit)
        pinned = not args.no_pin and len(os.sched_getaffinity(0)) >= 2
        if pinned:  # the proxy under test never competes with its own load for a core
            for s in stacks.values():
                pin(s.pids()["proxy"], {0})
            pin(os.getpid(), {1})
            pin(redis.proc.pid, {1})
        model = {name: "auto" if variant(name) == "routed" else "deepseek-chat" for name in stacks}
        rps: dict[str, list[list[float]]] = {v: [[] for _ in range(args.rounds)] for v in variants}  # per round
        p50: dict[str, list[float]] = {v: [] for v in variants}
        cpu_ms: dict[str, list[float]] = {v: [] for v in variants}  # proxy CPU per request: the noise-proof cost
        decisions: list[float] = []
        offset = 0
        for name, s in stacks.items():  # warm-up
            asyncio.run(run(s.base_url, model[name], 20, 4, offset))
            offset += 20
        for rnd in range(args.rounds):
            for name, s in stacks.items():
                pid = s.pids()["proxy"]
                c0 = cpu_seconds(pid)
                r, _, _ = asyncio.run(run(s.base_url, model[name], args.requests, 32, offset))
                cpu_ms[variant(name)].append((cpu_seconds(pid) - c0) * 1000 / args.requests)
                offset += args.requests
                rps[variant(name)][rnd].append(r)
                _, lat, rms = asyncio.run(run(s.base_url, model[name], 100, 1, offset))
                offset += 100
                p50[variant(name)].append(median(lat))
                decisions += rms
        lat_by_stack = asyncio.run(interleaved_latency(stacks, model, args.latency_requests, offset))
        lat1: dict[str, list[float]] = {v: [] for v in variants}
        for name, values in lat_by_stack.items():
            lat1[variant(name)] += values
        rss = {v: rss_mb(stacks[v].pids()["proxy"]) for v in variants}
    finally:
        for s in stacks.values():
            s.stop()
        base.stop()
        if redis is not None:
            redis.stop()
    all_rps = {v: [x for rnd in rounds for x in rnd] for v, rounds in rps.items()}
    round_mean = {v: [sum(rnd) / len(rnd) for rnd in rounds] for v, rounds in rps.items()}
    rows = [
        {
            "proxy": name,
            "req/s @32": median(all_rps[name]),
            "vs bare": median(all_rps[name]) / median(all_rps["bare"]),
            # Each round's proxies ran minutes apart at most: the ratio within a round, then the median.
            "vs bare, per round": median([a / b for a, b in zip(round_mean[name], round_mean["bare"])]),
            "proxy CPU ms/req @32": median(cpu_ms[name]),
            "capacity vs bare (CPU)": median(cpu_ms["bare"]) / median(cpu_ms[name]),
            "p50 ms @1": median(p50[name]),
            "p50 vs bare": median(p50[name]) / median(p50["bare"]),
            "p50 ms @1 interleaved": pct(lat1[name], 50),
            "interleaved vs bare": pct(lat1[name], 50) / pct(lat1["bare"], 50),
            "RSS MB": rss[name],
        }
        for name in variants
    ]
    text = (
        table(rows)
        + f"\n\nrouting decision inside the proxy (embedding call included, {len(decisions)} unique ~200-token prompts): "
        f"p50 {pct(decisions, 50):.2f} ms, p99 {pct(decisions, 99):.2f} ms"
        + f"\nrouting p50 added vs budget-only hooks (1 client, requests interleaved across proxies): "
        f"{pct(lat1['routed'], 50) / pct(lat1['budget'], 50) - 1:+.1%} (in blocks per round: "
        f"{median(p50['routed']) / median(p50['budget']) - 1:+.1%}); "
        f"router RSS growth (routed - budget): {rss['routed'] - rss['budget']:+.0f} MB"
        + f"\n{args.replicas} proxy process(es) per variant; "
        f"{args.rounds} interleaved rounds of {args.requests} requests at 32 clients and 100 at 1 client per proxy "
        f"(medians), then {args.latency_requests} requests per proxy at 1 client, one proxy after another."
        + ("\nproxies pinned to CPU 0; load generator, fake providers and Redis to CPU 1." if pinned else "")
        + "\nreq/s on this shared 2-core machine drifts by several percent between rounds (the load generator and fake "
        "provider share the cores); the proxy's CPU time per request is the steadier measure of what the hooks cost."
    )
    print(text)
    write_result("proxy_overhead", text)


if __name__ == "__main__":
    main()
