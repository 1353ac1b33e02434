"""Routing decision latency (embedding included) and the router's memory cost, one run.

- `Router.adecide` against the real embedding server (subprocess, HTTP, as in the
  proxy) for a ~200-token prompt, a short question, and a repeated prompt
  (embedding cache hit); server with the default batch wait (2 ms) and with 0 ms;
- the embedding alone in-process for the options: how much text is read
  (full 200-token prompt vs the router's head of it), fp32 vs torch int8 dynamic
  quantisation;
- RSS growth of a process (with LiteLLM already imported, like the proxy) that
  builds the Router and decides once over HTTP, and whether it imported torch.

    cd /work/main && nice -n 10 .venv/bin/python -m bench.routing_speed
"""
from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.measure import pct, table, write_result
from proxy.offline import apply_offline_env

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


def router_latency(config: Path, label: str) -> list[dict[str, object]]:
    from policies.embedder import HttpEmbedder
    from policies.routing.router import Router
    from proxy.settings import load_config

    cfg = load_config(config)
    router = Router.from_config(cfg, HttpEmbedder(cfg.synqra.backends.embed.url))

    async def run() -> list[dict[str, object]]:
        await time_decisions(router, [f"warm up {i}" for i in range(20)])
        rows = []
        # A distinct number up front defeats the embedding cache (the head is what gets embedded).
        for name, base in (("200-token prompt", LONG), ("short question", SHORT)):
            ms = await time_decisions(router, [f"{i}. {base}" for i in range(N)])
            rows.append({"setup": label, "case": name, "p50 ms": pct(ms, 50), "p99 ms": pct(ms, 99)})
        ms = await time_decisions(router, [LONG] * N)
        rows.append({"setup": label, "case": "200-token prompt, cache hit", "p50 ms": pct(ms, 50), "p99 ms": pct(ms, 99)})
        return rows

    return asyncio.run(run())


def encoder_options() -> list[dict[str, object]]:
    """The embedding alone, in-process, 2 threads: what to read and which runtime."""
    import torch

    from local_backends.embedding_server import Encoder
    from policies.routing.features import embed_text, request_text
    from policies.routing.scorer import load_artifact

    max_chars = load_artifact().max_chars
    rt = request_text({"messages": [{"role": "user", "content": LONG}]})
    texts = {
        "full 200-token prompt": LONG,
        f"head {max_chars} chars (shipped)": embed_text(rt, max_chars),
        "head 128 chars": embed_text(rt, 128),
        "short question": SHORT,
    }
    enc = Encoder(None, 2)
    q_enc = Encoder(None, 2)
    q_enc.model = torch.ao.quantization.quantize_dynamic(q_enc.model, {torch.nn.Linear}, dtype=torch.qint8)
    ref = enc.encode([LONG])[0][0]
    q = q_enc.encode([LONG])[0][0]
    cos = float(ref @ q / ((ref @ ref) ** 0.5 * (q @ q) ** 0.5))
    rows = []
    for runtime, e in (("fp32", enc), ("int8 dynamic", q_enc)):
        for name, text in texts.items():
            for _ in range(10):
                e.encode([text])
            ms = []
            for _ in range(N // 2):
                t0 = time.perf_counter()
                e.encode([text])
                ms.append((time.perf_counter() - t0) * 1000)
            tokens = enc.encode([text])[1][0]
            rows.append({"runtime": runtime, "text": name, "tokens": tokens, "p50 ms": pct(ms, 50), "p99 ms": pct(ms, 99)})
    rows.append({"runtime": "int8 vs fp32 cosine (full prompt)", "text": "", "tokens": "", "p50 ms": cos, "p99 ms": ""})
    return rows


RSS_PROBE = """
import os, sys, json, asyncio
import litellm, proxy.settings
from bench.measure import rss_mb
before = rss_mb(os.getpid())
from policies.embedder import HttpEmbedder
from policies.routing.router import Router
cfg = proxy.settings.load_config(sys.argv[1])
r = Router.from_config(cfg, HttpEmbedder(cfg.synqra.backends.embed.url))
for i in range(50):
    asyncio.run(r.adecide({"messages": [{"role": "user", "content": f"{i} what is your pricing?"}]}))
print(json.dumps({"before": before, "after": rss_mb(os.getpid()), "torch": "torch" in sys.modules,
                  "scorer": r.scorer.name}))
"""


def rss_growth(config: Path) -> dict[str, object]:
    out = subprocess.run([PY, "-c", RSS_PROBE, str(config)], cwd=ROOT, env=ENV, capture_output=True, text=True, check=True)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    return {"RSS before router MB": r["before"], "after MB": r["after"], "growth MB": r["after"] - r["before"],
            "torch imported": r["torch"], "scorer": r["scorer"]}


def main() -> int:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for wait in (2.0, 0.0):
            port = free_port()
            config = write_config(Path(tmp), port, wait)
            proc = start_server(config, port)
            try:
                rows += router_latency(config, f"HTTP server, batch_wait_ms={wait:g}")
                if wait == 0.0:
                    mem = rss_growth(config)
            finally:
                proc.terminate()
                proc.wait(10)
    enc_rows = encoder_options()
    text = "\n\n".join(
        [
            "# Routing decision speed",
            "Command: `nice -n 10 .venv/bin/python -m bench.routing_speed` (2-core machine, shared CPU).",
            "## Router.adecide, embedding over HTTP (as in the proxy)",
            table(rows),
            "## Embedding alone, in-process, 2 threads",
            table(enc_rows),
            "## Memory of a process that loads the Router (LiteLLM already imported)",
            table([mem]),
        ]
    )
    print(text)
    write_result("routing_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
