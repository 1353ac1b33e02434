"""What shadow evaluation costs the requests a shadow-mode proxy actually serves.

Two proxies in shadow mode on the same local backends and fake Claude (answers at once):
- shadow:      routes and logs, serves the incumbent (claude-sonnet);
- shadow+eval: the same, and the local model also answers every request it has a free slot for, in the
               background (`shadow_eval_share: 1.0`, one at a time), judged by the quality scorer.
Requests are ~200-token prompts with max_tokens 256 (what the background generation gets), one client.
The two proxies run in alternating blocks (the background generations of one block must not land on the
other proxy's requests); each block waits for the evaluation in flight to end before the next starts.

Run: .venv/bin/python -m bench.shadow_overhead [--requests 60] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

from bench.measure import median, pct, table, write_result
from bench.proxy_overhead import AUTH, instant_providers, prompt
from tests.stack import RunningStack, start_stack, wait_until

MAX_TOKENS = 256


def evaluations(stack: RunningStack) -> dict[str, float]:
    text = httpx.get(f"{stack.base_url}/metrics", headers=AUTH, timeout=30).text
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("synqra_shadow_evaluations_total{"):
            out[line.split('outcome="')[1].split('"')[0]] = float(line.rsplit(" ", 1)[1])
    return out


def in_flight(stack: RunningStack) -> bool:
    text = httpx.get(f"{stack.base_url}/metrics", headers=AUTH, timeout=30).text
    return any(
        line.startswith("synqra_shadow_evaluations_in_flight ") and float(line.split()[1]) > 0
        for line in text.splitlines()
    )


async def block(stack: RunningStack, n: int, offset: int) -> list[float]:
    lat = []
    async with aiohttp.ClientSession() as session:
        for i in range(offset, offset + n):
            body = {"model": "auto", "max_tokens": MAX_TOKENS, "messages": [{"role": "user", "content": prompt(i)}]}
            t0 = time.perf_counter()
            async with session.post(f"{stack.base_url}/v1/chat/completions", json=body, headers=AUTH) as r:
                await r.read()
                assert r.status == 200, await r.text()
            lat.append((time.perf_counter() - t0) * 1000)
    return lat


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=60, help="requests per block")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    provs = instant_providers()
    root = Path(tempfile.mkdtemp(prefix="bench-shadow-"))
    base = start_stack(root / "base", provs)
    stacks: dict[str, RunningStack] = {}
    t_start = time.perf_counter()
    try:
        for name, share in (("shadow", 0.0), ("shadow+eval", 1.0)):
            overrides = {"routing": {"mode": "shadow", "shadow_eval_share": share}}
            stacks[name] = start_stack(root / name.replace("+", "_"), provs, overrides, backends_of=base)
        lat: dict[str, list[float]] = {n: [] for n in stacks}
        offset = 0
        for r in range(args.rounds):
            order = list(stacks) if r % 2 == 0 else list(reversed(stacks))
            for name in order:
                lat[name] += asyncio.run(block(stacks[name], args.requests, offset))
                offset += args.requests
                wait_until(lambda s=stacks[name]: not in_flight(s), 600, 0.5)
        evals = evaluations(stacks["shadow+eval"])
    finally:
        for s in stacks.values():
            s.stop()
        base.stop()
        for p in {id(p): p for p in provs.values()}.values():
            p.stop()
    p50 = {n: median(v) for n, v in lat.items()}
    rows = [
        {
            "proxy": n,
            "requests": len(v),
            "p50 ms": p50[n],
            "p99 ms": pct(v, 99),
            "p50 vs shadow": p50[n] / p50["shadow"],
        }
        for n, v in lat.items()
    ]
    judged = sum(v for k, v in evals.items() if k in ("deliver", "rephrase", "escalate"))
    text = "\n".join(
        [
            table(rows),
            "",
            f"shadow+eval: {judged:.0f} of {len(lat['shadow+eval'])} requests evaluated in the background "
            f"({', '.join(f'{k} {v:.0f}' for k, v in sorted(evals.items()))}); max_tokens {MAX_TOKENS}.",
            f"{args.rounds} rounds of alternating blocks of {args.requests} requests at 1 client; run time {time.perf_counter() - t_start:.0f} s.",
            "Command: `.venv/bin/python -m bench.shadow_overhead`.",
        ]
    )
    print(text)
    print(f"wrote {write_result('shadow_overhead', text)}")


if __name__ == "__main__":
    main()
