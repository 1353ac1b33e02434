"""What the budget hook adds per request: reserve + settle on SQLite and Redis vs a no-op.

    cd /work/main && nice -n 10 .venv/bin/python -m bench.budget_overhead [--requests 2000]

Each request does what the proxy hooks do: reserve(worst case) before the call and
settle(actual tokens) after it, against a budget that never runs out. Workers run
back to back (an instantly-answering provider); the no-op row awaits two empty
coroutines instead, so "added" is the budget's own cost on top of asyncio.
Also printed: litellm.token_counter on a typical prompt (the hook counts tokens
before reserving).
"""

from __future__ import annotations

import argparse
import asyncio
import builtins
import random
import statistics
import tempfile
import time
from pathlib import Path

from bench.measure import write_result
from policies.common.offline import apply_offline_env

apply_offline_env()

from policies.budget.guard import BudgetGuard  # noqa: E402
from policies.budget.records import CallRecord, Reservation  # noqa: E402
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

PROMPT = [{"role": "user", "content": "Summarise the causes of the French revolution in three short paragraphs. " * 4}]


class NoopGuard:
    async def reserve(self, request_id: str, model: str, prompt_tokens: int, max_tokens: int | None) -> Reservation:
        return Reservation(request_id, model, "", 0, 0.0, held=False)

    async def settle(self, reservation: Reservation, record: CallRecord) -> None:
        return None


def config(tmp: Path, store: str) -> AppConfig:
    models = [
        ModelEntry(
            model_name="local-llama",
            litellm_params={"model": "openai/local-llama"},
            model_info={"input_cost_per_token": 0, "output_cost_per_token": 0},
        ),
        ModelEntry(model_name="claude-sonnet", litellm_params={"model": "anthropic/claude-sonnet-4-5"}),
        ModelEntry(model_name="deepseek-chat", litellm_params={"model": "deepseek/deepseek-chat"}),
        ModelEntry(model_name="local-embed", litellm_params={"model": "openai/local-embed"}),
    ]
    synqra = SynqraSettings.model_validate(
        {"server": {"data_dir": str(tmp)}, "budget": {"store": store, "monthly_limit_usd": 1e9}}
    )
    return AppConfig(path=tmp / "c.yaml", model_list=models, synqra=synqra)


async def measure(
    guard: object, requests: int, concurrency: int, tag: str, pace_rps: float | None = None
) -> tuple[list[float], list[float], float]:
    """Closed loop (back to back), or paced: Poisson arrivals at `pace_rps` in total."""
    reserve_ms: list[float] = []
    total_ms: list[float] = []
    per_worker = requests // concurrency
    rng = random.Random(1)

    async def worker(w: int) -> None:
        for i in range(per_worker):
            if pace_rps:
                await asyncio.sleep(rng.expovariate(pace_rps / concurrency))
            rid = f"{tag}-{w}-{i}"
            t0 = time.perf_counter()
            res = await guard.reserve(rid, "claude-sonnet", 120, 256)
            t1 = time.perf_counter()
            await guard.settle(res, CallRecord(rid, "auto", "claude-sonnet", 120, 200))
            t2 = time.perf_counter()
            reserve_ms.append((t1 - t0) * 1e3)
            total_ms.append((t2 - t0) * 1e3)

    t = time.perf_counter()
    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return reserve_ms, total_ms, per_worker * concurrency / (time.perf_counter() - t)


def p50(xs: list[float]) -> float:
    return statistics.median(xs)


async def main(requests: int, fsync: str) -> None:
    lines: list[str] = []

    def print(line: str) -> None:  # noqa: A001  # to the terminal and to bench/results/budget_overhead.md
        lines.append(line)
        builtins.print(line, flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="budget-bench-"))
    server = RedisServer(tmp, appendfsync=fsync).start()
    try:
        guards = {
            "no-op": NoopGuard(),
            "sqlite": BudgetGuard.from_config(config(tmp, "sqlite"), env={}),
            "redis": BudgetGuard.from_config(config(tmp, server.url), env={}),
        }
        for name, g in guards.items():  # warm up connections, scripts, schema
            await measure(g, 64, 4, f"warm-{name}")
        print(
            f"reserve+settle per request, {requests} requests per row (p50 latency; throughput); "
            f"SQLite WAL synchronous=NORMAL, Redis appendfsync={fsync}"
        )
        print(f"{'clients':>9} {'store':>7} {'reserve p50':>12} {'res+settle p50':>15} {'added p50':>10} {'req/s':>9}")
        # Back to back at 1 and 32 workers (store saturated: latency is queueing), then 32
        # clients paced at 100 req/s in total, above what one LiteLLM worker serves (~65/s).
        for conc, pace, n in ((1, None, requests), (32, None, requests), (32, 100.0, 384)):
            base = None
            for name, g in guards.items():
                res_ms, tot_ms, rps = await measure(g, n, conc, f"{name}-{conc}-{pace}", pace)
                base = p50(tot_ms) if base is None else base
                label = f"{conc}@{pace:.0f}/s" if pace else str(conc)
                print(
                    f"{label:>9} {name:>7} {p50(res_ms):>9.3f} ms {p50(tot_ms):>12.3f} ms "
                    f"{p50(tot_ms) - base:>7.3f} ms {rps:>9.0f}"
                )
        for name in ("sqlite", "redis"):
            await guards[name].aclose()
        g = BudgetGuard.from_config(config(tmp, "sqlite"), env={})
        g.count_prompt_tokens("claude-sonnet", messages=PROMPT)
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 1.0:
            tokens = g.count_prompt_tokens("claude-sonnet", messages=PROMPT)
            n += 1
        print(
            f"litellm.token_counter on a {tokens}-token prompt: {(time.perf_counter() - t) / n * 1e3:.3f} ms per call"
        )
        await g.aclose()
        write_result("budget_overhead", "```\n" + "\n".join(lines) + "\n```")
    finally:
        server.stop()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2048)
    ap.add_argument(
        "--redis-fsync",
        choices=["everysec", "always"],
        default="everysec",
        help="Redis appendfsync policy (everysec is Redis's recommended default)",
    )
    args = ap.parse_args()
    asyncio.run(main(args.requests, args.redis_fsync))
