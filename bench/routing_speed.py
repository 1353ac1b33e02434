"""Routing decision latency (embedding included) and the router's memory cost, one run.

- `Router.adecide` as the proxy builds it (the embedder the shipped artifact names:
  the static MiniLM table, in-process) for a ~200-token prompt, a short question and
  a repeated prompt (embedding cache hit);
- side by side, the embedding alone: the static table vs full MiniLM in-process
  (fp32, 2 threads) vs full MiniLM through the embedding server (HTTP), on the text
  the router reads;
- RSS growth of a process (with LiteLLM already imported, like the proxy) that
  builds the Router and decides, and whether it imported torch.

    cd /work/main && nice -n 10 .venv/bin/python -m bench.routing_speed
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.measure import pct, table, write_result
from policies.common.offline import apply_offline_env

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
N = 200
ENV = apply_offline_env()

SHORT = "What is your pricing?"
# About 200 MiniLM tokens.
LONG = (
    "Our team is migrating a customer support platform from a monolith to services. The current system stores "
    "tickets, customers, agents and SLA timers in one PostgreSQL database and runs nightly batch jobs that "
    "recompute escalation priorities. We want to split ticket intake, routing and reporting into separate "
    "services, keep strong consistency for SLA timers, and avoid double notifications when a ticket is escalated "
    "during a deploy. Please propose a service boundary design, the events each service should publish, how to "
    "migrate the data without downtime, and how to test that escalations behave exactly as before. Include the "
    "main risks, how to roll back each step, and which metrics to watch during the migration. Keep the answer "
    "practical for a team of five engineers with two months of time."
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(folder: Path, embed_port: int, batch_wait_ms: float) -> Path:
    llama_port = free_port()
    cfg = {
        "model_list": [
            {"model_name": "auto", "litellm_params": {"model": "openai/auto", "api_base": "http://127.0.0.1:1/v1"}},
            {
                "model_name": "local-llama",
                "litellm_params": {"model": "openai/local-llama", "api_base": f"http://127.0.0.1:{llama_port}/v1"},
                "model_info": {"max_input_tokens": 2048},
            },
            {
                "model_name": "local-embed",
                "litellm_params": {"model": "openai/local-embed", "api_base": f"http://127.0.0.1:{embed_port}/v1"},
                "model_info": {"mode": "embedding"},
            },
            {"model_name": "deepseek-chat", "litellm_params": {"model": "deepseek/deepseek-chat"}},
            {"model_name": "claude-sonnet", "litellm_params": {"model": "anthropic/claude-sonnet-4-5"}},
        ],
        "synqra": {
            "backends": {
                "llama": {"port": llama_port, "enabled": False},
                "embed": {"port": embed_port, "batch_wait_ms": batch_wait_ms},
            }
        },
    }
    path = folder / f"config_{embed_port}.yaml"
    path.write_text(json.dumps(cfg))  # JSON is valid YAML
    return path


def start_server(config: Path, port: int) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [PY, "-m", "local_backends.embedding_server", "--config", str(config)],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise RuntimeError("embedding server did not start")


async def time_decisions(router, texts: list[str]) -> list[float]:
    out = []
    for t in texts:
        req = {"messages": [{"role": "user", "content": t}]}
        t0 = time.perf_counter()
        await router.adecide(req)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def proxy_router(config: Path):
    """The Router exactly as proxy.runtime builds it."""
    from policies.common.settings import load_config
    from proxy.runtime import Runtime

    return Runtime(load_config(config), master_key="bench").router


def router_latency(config: Path) -> list[dict[str, object]]:
    router = proxy_router(config)
    setup = f"in proxy: {type(router.embedder).__name__}, scorer {router.scorer.name}"

    async def run() -> list[dict[str, object]]:
        await time_decisions(router, [f"warm up {i}" for i in range(20)])
        rows = []
        # A distinct number up front defeats the embedding cache.
        for name, base in (("200-token prompt", LONG), ("short question", SHORT)):
            ms = await time_decisions(router, [f"{i}. {base}" for i in range(N)])
            rows.append({"setup": setup, "case": name, "p50 ms": pct(ms, 50), "p99 ms": pct(ms, 99)})
        ms = await time_decisions(router, [LONG] * N)
        rows.append(
            {"setup": setup, "case": "200-token prompt, cache hit", "p50 ms": pct(ms, 50), "p99 ms": pct(ms, 99)}
        )
        return rows

    return asyncio.run(run())


def embedding_options(embed_url: str) -> list[dict[str, object]]:
    """The embedding alone, on the text the router reads, for each way to get it (interleaved)."""
    from policies.embedding.base import HttpEmbedder, InProcessEmbedder
    from policies.embedding.static import StaticEmbedder
    from policies.routing.features import embed_text, request_text
    from policies.routing.scorer import load_artifact

    max_chars = load_artifact().max_chars
    texts = {
        f"200-token prompt (first {max_chars} chars)": embed_text(
            request_text({"messages": [{"role": "user", "content": LONG}]}), max_chars
        ),
        "short question": SHORT,
    }
    ways = {
        "static table, in-process (shipped)": StaticEmbedder.default(),
        "full MiniLM fp32, in-process, 2 threads": InProcessEmbedder(n_threads=2),
        "full MiniLM, embedding server (HTTP)": HttpEmbedder(embed_url),
    }
    rows = []
    for name, text in texts.items():
        ms: dict[str, list[float]] = {w: [] for w in ways}
        for i in range(N // 2 + 10):
            for w, e in ways.items():
                t0 = time.perf_counter()
                e.embed([f"{i} {text}"])
                if i >= 10:  # warm-up
                    ms[w].append((time.perf_counter() - t0) * 1000)
        base = pct(ms["static table, in-process (shipped)"], 50)
        for w in ways:
            rows.append(
                {
                    "text": name,
                    "embedding": w,
                    "p50 ms": pct(ms[w], 50),
                    "p99 ms": pct(ms[w], 99),
                    "p50 vs static": pct(ms[w], 50) / base,
                }
            )
    return rows


RSS_PROBE = """
import os, sys, json, asyncio
import litellm, policies.common.settings
from bench.measure import rss_mb
before = rss_mb(os.getpid())
from proxy.runtime import Runtime
r = Runtime(policies.common.settings.load_config(sys.argv[1]), master_key="bench").router
for i in range(50):
    asyncio.run(r.adecide({"messages": [{"role": "user", "content": f"{i} what is your pricing?"}]}))
print(json.dumps({"before": before, "after": rss_mb(os.getpid()), "torch": "torch" in sys.modules,
                  "scorer": r.scorer.name, "embedder": type(r.embedder).__name__}))
"""


def rss_growth(config: Path) -> dict[str, object]:
    out = subprocess.run(
        [PY, "-c", RSS_PROBE, str(config)], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True
    )
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {
        "RSS before router MB": r["before"],
        "after MB": r["after"],
        "growth MB": r["after"] - r["before"],
        "torch imported": r["torch"],
        "scorer": r["scorer"],
        "embedder": r["embedder"],
    }


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_config(Path(tmp), port, 0.0)
        proc = start_server(config, port)
        try:
            rows = router_latency(config)
            emb_rows = embedding_options(f"http://127.0.0.1:{port}")
            mem = rss_growth(config)
        finally:
            proc.terminate()
            proc.wait(10)
    text = "\n\n".join(
        [
            "# Routing decision speed",
            "Command: `nice -n 10 .venv/bin/python -m bench.routing_speed` (2-core machine, shared CPU).",
            "## Router.adecide as the proxy builds it",
            table(rows),
            "## The embedding alone, side by side (interleaved per request)",
            table(emb_rows),
            "## Memory of a process that loads the Router (LiteLLM already imported)",
            table([mem]),
        ]
    )
    print(text)
    write_result("routing_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
