"""What synqra's hooks cost on top of bare LiteLLM, against an instantly-answering fake provider; and what a
second worker process gives.

Proxies side by side (same machine, same fake provider, rounds interleaved):
- bare:    LiteLLM with synqra's auth and front door but no synqra hooks (`litellm_settings.callbacks` removed);
- budget:  synqra hooks, explicit model (checks + budget reserve/settle + ledger), SQLite store;
- budget-redis: the same with the ledger in a real Redis server;
- routed:  synqra hooks, model "auto" (routing decision with the in-process embedding + budget + the learning
           loop's inference log), SQLite store;
- routed-redis: the same with the ledger in Redis.
Prompts are ~200 tokens and unique per request (no embedding-cache hits).

Reports requests/s at 32 concurrent clients, the proxy's CPU time per request at 32 clients (the noise-proof
cost: "capacity vs bare (CPU)" is bare's CPU per request over the variant's), p50 latency at 1 client (also with
single requests interleaved across the proxies, the fairest side-by-side read), the routing decision time
measured inside the proxy (x-synqra-route-ms), and proxy RSS.

Workers (`synqra.server.num_workers`, the routed variant's config): 1 worker vs 2 workers, req/s at 32 clients
and CPU per request summed over the uvicorn manager and its workers, rounds interleaved. Pinning: the load
generator, the fake providers and Redis are on CPU 1 (as above); "1 worker" is on CPU 0; "2 workers, CPU 0"
has both workers on CPU 0 (what a second process costs on one core); "2 workers, CPU 0+1" has one worker on
each core, the second sharing CPU 1 with the load (all a 2-core machine allows).

Run: .venv/bin/python -m bench.proxy_overhead [--requests 600] [--rounds 3] [--no-workers]
Targets: issue 4: budget hook >= 0.9 of bare requests/s at 32 clients;
         issue 19: budget + routing >= 0.93 of bare capacity (CPU per request), on SQLite and on Redis;
         issue 3: routing adds <= 10% to p50; decision p50 <= 10 ms, p99 <= 25 ms; router RSS growth <= 150 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from bench.measure import cpu_seconds, median, pct, rss_mb, table, write_result
from tests.fakes.fake_providers import FakeProvider
from tests.redis_server import RedisServer
from tests.stack import MASTER_KEY, REPO, RunningStack, start_stack

AUTH = {"Authorization": f"Bearer {MASTER_KEY}"}
FILLER = "Our customer asked about the invoice for the last quarter and the shipping delay of order {i}. "
VARIANTS = ("bare", "budget", "budget-redis", "routed", "routed-redis")
ROUTING = {"tiers": ["deepseek-chat", "claude-sonnet"], "thresholds": [0.999], "creative_examples": []}
# The workers comparison: (label, num_workers, CPUs of each worker).
KEEP_ALIVE_S = 3600.0
WORKER_SETUPS = (("1 worker", 1, [{0}]), ("2 workers, CPU 0", 2, [{0}, {0}]), ("2 workers, CPU 0+1", 2, [{0}, {1}]))


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
    """Fake providers that answer "ok" at once: one OpenAI-protocol server for DeepSeek and GPT-4o, one Anthropic.
    Their connections stay open while a proxy waits for its next round (else its first requests after a pause
    meet a closed pooled connection and are served by a fallback model, an extra call's CPU)."""
    openai_like = FakeProvider("openai", default_text="ok", keep_alive_s=KEEP_ALIVE_S).start()
    return {
        "deepseek": openai_like,
        "anthropic": FakeProvider("anthropic", default_text="ok", keep_alive_s=KEEP_ALIVE_S).start(),
        "openai": openai_like,
    }


def variant(stack_name: str) -> str:
    return stack_name.split("#")[0]


BEFORE = "before:"  # a variant run from another checkout (--before): "before:routed"


def bare_of(name: str) -> str:
    """The bare proxy a variant is compared with: the one from the same checkout."""
    return BEFORE + "bare" if name.startswith(BEFORE) else "bare"


def pin(pid: int, cpus: set[int]) -> None:
    """Bind every thread of a process to `cpus` (threads it starts later inherit it)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(tid), cpus)


def variant_config(name: str, redis_url: str) -> tuple[dict[str, Any], Callable[[dict[str, Any]], None] | None]:
    """(synqra overrides, whole-file edit) of a variant; the quality gate (which would score and maybe escalate
    the fake's answers) is off for the routed ones: routing and budget alone."""

    def no_hooks(cfg: dict[str, Any]) -> None:
        cfg["litellm_settings"].pop("callbacks")

    name = name.removeprefix(BEFORE)
    store = {"budget": {"store": redis_url}} if name.endswith("-redis") else {}
    if name == "bare":
        return {"routing": ROUTING}, no_hooks
    if name.startswith("budget"):
        return {"routing": ROUTING, **store}, None
    if name.startswith("routed"):
        return {"routing": ROUTING, "quality": {"enabled": False}, **store}, None
    raise ValueError(f"unknown variant {name!r}")


def model_of(name: str) -> str:
    return "auto" if variant(name).removeprefix(BEFORE).startswith("routed") else "deepseek-chat"


@contextmanager
def start_variants(
    names: list[str],
    replicas: int = 1,
    pinned: bool = True,
    workers: dict[str, int] | None = None,
    before: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> Iterator[tuple[dict[str, RunningStack], dict[str, str], bool]]:
    """Start the named variants (and `workers`: name -> num_workers, routed config) on one set of instant fake
    providers, proxies pinned to CPU 0 and this process (load generator, fake providers), Redis to CPU 1.
    Variants named "before:..." run the checkout at `before` (its code and its litellm_config.yaml); `extra_env` is
    added to the variants' proxies' environment.
    Yields (stacks by name, the model each is asked for, whether pinned); stops everything after."""
    provs = instant_providers()
    root = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    base = start_stack(root / "base", provs)
    stacks: dict[str, RunningStack] = {}
    redis: RedisServer | None = None
    try:
        redis = RedisServer(root / "redis", appendfsync="everysec").start()
        # Several processes per variant average out what differs between processes (memory layout,
        # hash seeds, garbage collection timing), which moved req/s by +-5% between runs here.
        for r in range(replicas):
            for v in names:
                name = v if r == 0 else f"{v}#{r + 1}"
                overrides, edit = variant_config(v, redis.url)
                repo = before if v.startswith(BEFORE) and before is not None else REPO
                stacks[name] = start_stack(
                    root / name.replace(":", "-"),
                    provs,
                    overrides,
                    backends_of=base,
                    edit=edit,
                    repo=repo,
                    extra_env=extra_env,
                )
        for name, n in (workers or {}).items():
            overrides, edit = variant_config("routed", redis.url)
            overrides = {**overrides, "server": {"num_workers": n}}
            stacks[name] = start_stack(root / name, provs, overrides, backends_of=base, edit=edit)
        pinned = pinned and len(os.sched_getaffinity(0)) >= 2
        if pinned:  # the proxy under test never competes with its own load for a core
            for s in stacks.values():
                pin(s.pids()["proxy"], {0})
            pin(os.getpid(), {1})
            pin(redis.proc.pid, {1})
        yield stacks, {name: model_of(name) for name in stacks}, pinned
    finally:
        for s in stacks.values():
            s.stop()
        base.stop()
        if redis is not None:
            redis.stop()


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


FELL_BACK: dict[str, int] = {}  # base URL -> answers a fallback model gave (a fault on the way: flagged in the notes)


async def load(base_url: str, model: str, n: int, clients: int, offset: int) -> tuple[float, list[float], list[float]]:
    """`n` requests from `clients` concurrent clients: (req/s, latencies in ms, in-proxy routing ms)."""
    lat: list[float] = []
    route_ms: list[float] = []
    counter = iter(range(offset, offset + n))

    async def worker(session: aiohttp.ClientSession) -> None:
        for i in counter:
            ms, headers = await timed_chat(session, base_url, model, i)
            lat.append(ms)
            if "x-synqra-route-ms" in headers:
                route_ms.append(float(headers["x-synqra-route-ms"]))
            if headers.get("x-litellm-attempted-fallbacks", "0") != "0":
                FELL_BACK[base_url] = FELL_BACK.get(base_url, 0) + 1

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=clients)) as session:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return n / (time.perf_counter() - t0), lat, route_ms


def worker_pids(s: RunningStack) -> list[int]:
    """The uvicorn manager's worker processes (its only process when num_workers is 1)."""
    manager = psutil.Process(s.pids()["proxy"])
    kids = [c.pid for c in manager.children() if "spawn_main" in " ".join(c.cmdline())]
    return kids or [manager.pid]


def stack_cpu(s: RunningStack) -> float:
    """CPU seconds of the proxy process and all its children (a manager and its workers)."""
    manager = psutil.Process(s.pids()["proxy"])
    return cpu_seconds(manager.pid) + sum(cpu_seconds(c.pid) for c in manager.children(recursive=True))


def compare_workers(
    stacks: dict[str, RunningStack], model: dict[str, str], pinned: bool, rounds: int, requests: int, offset: int
) -> tuple[list[dict[str, object]], int]:
    """req/s and CPU per request (manager + workers) at 32 clients, rounds interleaved across the setups."""
    rps: dict[str, list[float]] = {label: [] for label, _, _ in WORKER_SETUPS}
    cpu_ms: dict[str, list[float]] = {label: [] for label, _, _ in WORKER_SETUPS}
    load_ms: dict[str, list[float]] = {label: [] for label, _, _ in WORKER_SETUPS}
    for label, n, cpus in WORKER_SETUPS:  # every worker up, then each on its CPU
        s = stacks[label]
        deadline = time.monotonic() + 90
        while len(worker_pids(s)) < n and time.monotonic() < deadline:
            time.sleep(0.5)
        if pinned:
            pin(s.pids()["proxy"], set().union(*cpus))
            for pid, cpu in zip(sorted(worker_pids(s)), cpus):
                pin(pid, cpu)
        asyncio.run(load(s.base_url, model[label], 40 * n, 8, offset))  # warm-up, each worker
        offset += 40 * n
    me = os.getpid()
    for _ in range(rounds):
        for label, _, _ in WORKER_SETUPS:
            s = stacks[label]
            c0, l0 = stack_cpu(s), cpu_seconds(me)
            r, _, _ = asyncio.run(load(s.base_url, model[label], requests, 32, offset))
            cpu_ms[label].append((stack_cpu(s) - c0) * 1000 / requests)
            load_ms[label].append((cpu_seconds(me) - l0) * 1000 / requests)
            rps[label].append(r)
            offset += requests
    one = "1 worker"
    rows: list[dict[str, object]] = [
        {
            "proxy (routed, SQLite)": label,
            "req/s @32": median(rps[label]),
            "vs 1 worker": median(rps[label]) / median(rps[one]),
            "proxy CPU ms/req @32 (all workers)": median(cpu_ms[label]),
            "load generator + fakes CPU ms/req": median(load_ms[label]),
        }
        for label, _, _ in WORKER_SETUPS
    ]
    return rows, offset


def variants_of(ap: argparse.ArgumentParser, names: str, before: Path | None) -> list[str]:
    """The --variants list (bare required: every ratio is against it), each also from --before's checkout if given."""
    variants = names.split(",")
    if "bare" not in variants:
        ap.error("--variants must include bare (every ratio is against it)")
    return variants + [BEFORE + v for v in variants] if before else variants


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
    ap.add_argument("--no-workers", action="store_true", help="skip the 1 vs 2 workers comparison")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, 'bare' among them")
    ap.add_argument(
        "--before",
        type=Path,
        help="another checkout (e.g. a `git worktree` of main): its proxies run the same variants side by side, "
        "rounds interleaved, and a table compares the two",
    )
    args = ap.parse_args()
    variants = variants_of(ap, args.variants, args.before)
    workers = {} if args.no_workers else {label: n for label, n, _ in WORKER_SETUPS}
    with start_variants(variants, args.replicas, not args.no_pin, workers, args.before) as (all_stacks, model, pinned):
        stacks = {k: v for k, v in all_stacks.items() if k not in workers}
        rps: dict[str, list[list[float]]] = {v: [[] for _ in range(args.rounds)] for v in variants}  # per round
        p50: dict[str, list[float]] = {v: [] for v in variants}
        cpu_ms: dict[str, list[float]] = {v: [] for v in variants}  # proxy CPU per request: the noise-proof cost
        decisions: list[float] = []
        offset = 0
        for name, s in stacks.items():  # warm-up
            asyncio.run(load(s.base_url, model[name], 20, 4, offset))
            offset += 20
        for rnd in range(args.rounds):
            for name, s in stacks.items():
                pid = s.pids()["proxy"]
                c0 = cpu_seconds(pid)
                r, _, _ = asyncio.run(load(s.base_url, model[name], args.requests, 32, offset))
                cpu_ms[variant(name)].append((cpu_seconds(pid) - c0) * 1000 / args.requests)
                offset += args.requests
                rps[variant(name)][rnd].append(r)
                _, lat, rms = asyncio.run(load(s.base_url, model[name], 100, 1, offset))
                offset += 100
                p50[variant(name)].append(median(lat))
                decisions += rms
        lat_by_stack = asyncio.run(interleaved_latency(stacks, model, args.latency_requests, offset))
        offset += args.latency_requests
        lat1: dict[str, list[float]] = {v: [] for v in variants}
        for name, values in lat_by_stack.items():
            lat1[variant(name)] += values
        rss = {v: rss_mb(stacks[v].pids()["proxy"]) for v in variants}
        worker_rows: list[dict[str, object]] = []
        if workers:
            worker_rows, offset = compare_workers(all_stacks, model, pinned, args.rounds, args.requests, offset)
    all_rps = {v: [x for rnd in rounds for x in rnd] for v, rounds in rps.items()}
    round_mean = {v: [sum(rnd) / len(rnd) for rnd in rounds] for v, rounds in rps.items()}
    rows = [
        {
            "proxy": name,
            "req/s @32": median(all_rps[name]),
            "vs bare": median(all_rps[name]) / median(all_rps[bare_of(name)]),
            # Each round's proxies ran minutes apart at most: the ratio within a round, then the median.
            "vs bare, per round": median([a / b for a, b in zip(round_mean[name], round_mean[bare_of(name)])]),
            "proxy CPU ms/req @32": median(cpu_ms[name]),
            "CPU ms/req added": median(cpu_ms[name]) - median(cpu_ms[bare_of(name)]),
            "capacity vs bare (CPU)": median(cpu_ms[bare_of(name)]) / median(cpu_ms[name]),
            "p50 ms @1": median(p50[name]),
            "p50 vs bare": median(p50[name]) / median(p50[bare_of(name)]),
            "p50 ms @1 interleaved": pct(lat1[name], 50),
            "interleaved vs bare": pct(lat1[name], 50) / pct(lat1[bare_of(name)], 50),
            "RSS MB": rss[name],
        }
        for name in variants
    ]
    compared: list[dict[str, object]] = []
    for name in variants if args.before else []:
        if name.startswith(BEFORE):
            continue
        old = BEFORE + name
        compared.append(
            {
                "variant": name,
                f"CPU ms/req {args.before.name}": median(cpu_ms[old]),
                "CPU ms/req this checkout": median(cpu_ms[name]),
                "change": median(cpu_ms[name]) / median(cpu_ms[old]) - 1,
                f"capacity vs bare {args.before.name}": median(cpu_ms[bare_of(old)]) / median(cpu_ms[old]),
                "capacity vs bare this checkout": median(cpu_ms["bare"]) / median(cpu_ms[name]),
            }
        )
    text = (
        table(rows)
        + (f"\n\n{table(compared)}\n'before:' rows run the checkout at {args.before}." if compared else "")
        + f"\n\nrouting decision inside the proxy (embedding call included, {len(decisions)} unique ~200-token prompts): "
        f"p50 {pct(decisions, 50):.2f} ms, p99 {pct(decisions, 99):.2f} ms"
        + (
            f"\nrouting p50 added vs budget-only hooks (1 client, requests interleaved across proxies): "
            f"{pct(lat1['routed'], 50) / pct(lat1['budget'], 50) - 1:+.1%} (in blocks per round: "
            f"{median(p50['routed']) / median(p50['budget']) - 1:+.1%}); "
            f"router RSS growth (routed - budget): {rss['routed'] - rss['budget']:+.0f} MB"
            if {"routed", "budget"} <= set(variants)
            else ""
        )
        + f"\n{args.replicas} proxy process(es) per variant; "
        f"{args.rounds} interleaved rounds of {args.requests} requests at 32 clients and 100 at 1 client per proxy "
        f"(medians), then {args.latency_requests} requests per proxy at 1 client, one proxy after another."
        + ("\nproxies pinned to CPU 0; load generator, fake providers and Redis to CPU 1." if pinned else "")
        + "\nreq/s on this shared 2-core machine drifts by several percent between rounds (the load generator and fake "
        "provider share the cores); the proxy's CPU time per request is the steadier measure of what the hooks cost."
    )
    if worker_rows:
        text += (
            "\n\n"
            + table(worker_rows)
            + f"\n\nworkers: the routed variant's config with synqra.server.num_workers 1 or 2, {args.rounds} "
            f"interleaved rounds of {args.requests} requests at 32 clients (medians); CPU summed over the uvicorn "
            "manager and its workers."
            + (
                "\npinning: load generator, fake providers and Redis on CPU 1; '1 worker' on CPU 0; '2 workers, CPU 0' "
                "both workers on CPU 0; '2 workers, CPU 0+1' one worker on each CPU (the second shares CPU 1 with "
                "the load generator: on 2 cores the load cannot have a core of its own then)."
                if pinned
                else "\nnothing pinned."
            )
        )
    if FELL_BACK:
        text += f"\n\nWARNING: answers served by a fallback model (a provider fault during the run; their CPU is in the figures): {sum(FELL_BACK.values())}"
    print(text)
    write_result("proxy_overhead", text)


if __name__ == "__main__":
    main()
