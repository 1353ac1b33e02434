"""Embedding throughput: the embedding server (alone and through the proxy) vs in-process encode().

All figures are sentences/s over the same sentences, measured in one run:
- in-process: SentenceTransformer.encode(batch_size=32) on 2 threads (the reference);
- server alone: 32 concurrent clients, one sentence per request (what request batching is for);
- proxy: 4 clients x 32 sentences per request; and 32 clients x 1 sentence (bounded by LiteLLM, reported).

Rounds alternate reference / server / proxy, so the drift of this shared 2-core machine hits
all three alike (one run here measured the reference at 417 and then 348 sentences/s); the
ratios are of per-path medians, and each round's own ratios are printed too.

Run: .venv/bin/python -m bench.embedding_throughput [--sentences 1024] [--rounds 5]
Targets (issue 2): server alone >= 0.7 of in-process; proxy 4x32 >= 0.7 of in-process.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.measure import median, table, write_result
from tests.stack import MASTER_KEY, start_stack

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split()


def sentences(n: int) -> list[str]:
    return [
        f"Customer question {i}: how do I {WORDS[i % 16]} my {WORDS[(i * 7) % 16]} account before {WORDS[(i * 3) % 16]}?"
        for i in range(n)
    ]


def reference_model() -> Any:
    import torch
    from sentence_transformers import SentenceTransformer

    from policies.common.model_files import resolve_embedding_model

    torch.set_num_threads(2)
    model = SentenceTransformer(str(resolve_embedding_model(None)), device="cpu")
    model.encode(["warm up"] * 64, batch_size=32)
    return model


def in_process(model: Any, texts: list[str]) -> float:
    t0 = time.perf_counter()
    model.encode(texts, batch_size=32)
    return len(texts) / (time.perf_counter() - t0)


async def load(url: str, texts: list[str], clients: int, per_request: int, headers: dict[str, str]) -> float:
    chunks = [texts[i : i + per_request] for i in range(0, len(texts), per_request)]
    queue: asyncio.Queue[list[str]] = asyncio.Queue()
    for c in chunks:
        queue.put_nowait(c)

    async def worker(session: aiohttp.ClientSession) -> None:
        while True:
            try:
                batch = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            body = {
                "model": "local-embed",
                "input": batch if per_request > 1 else batch[0],
                "encoding_format": "base64",
            }
            async with session.post(url, json=body, headers=headers) as r:
                assert r.status == 200, await r.text()
                await r.read()

    conn = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=conn) as session:
        # warm-up
        async with session.post(url, json={"model": "local-embed", "input": "warm"}, headers=headers) as r:
            await r.read()
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(clients)))
        return len(texts) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sentences", type=int, default=1024)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    texts = sentences(args.sentences)
    ref: list[float] = []
    server_1x32: list[float] = []
    proxy_32x4: list[float] = []
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bench-emb-")))
    try:
        embed_url = f"http://127.0.0.1:{_embed_port(stack)}/v1/embeddings"
        proxy_url = stack.base_url + "/v1/embeddings"
        auth = {"Authorization": f"Bearer {MASTER_KEY}"}
        model = reference_model()
        for r in range(args.rounds):
            ref.append(in_process(model, texts))
            server_1x32.append(asyncio.run(load(embed_url, texts, 32, 1, {})))
            proxy_32x4.append(asyncio.run(load(proxy_url, texts, 4, 32, auth)))
            print(
                f"round {r + 1}: reference {ref[-1]:.0f}/s, server alone {server_1x32[-1] / ref[-1]:.3f}, "
                f"proxy 4x32 {proxy_32x4[-1] / ref[-1]:.3f}",
                flush=True,
            )
        proxy_1x32 = asyncio.run(load(proxy_url, texts[: max(256, args.sentences // 4)], 32, 1, auth))
    finally:
        stack.stop()
    ref_m = median(ref)
    rows = [
        {"path": "in-process encode, batch 32 (reference)", "sentences/s": ref_m, "ratio": 1.0},
        {
            "path": "embedding server alone, 32 clients x 1 sentence",
            "sentences/s": median(server_1x32),
            "ratio": median(server_1x32) / ref_m,
        },
        {
            "path": "through proxy, 4 clients x 32 sentences",
            "sentences/s": median(proxy_32x4),
            "ratio": median(proxy_32x4) / ref_m,
        },
        {
            "path": "through proxy, 32 clients x 1 sentence (LiteLLM-bound)",
            "sentences/s": proxy_1x32,
            "ratio": proxy_1x32 / ref_m,
        },
    ]
    text = table(rows) + (
        f"\n\nmedians of {args.rounds} alternating rounds; reference runs: {', '.join(f'{v:.0f}' for v in ref)} sentences/s; "
        "targets: server alone >= 0.7, proxy 4x32 >= 0.7"
    )
    print(text)
    write_result("embedding_throughput", text)


def _embed_port(stack) -> int:
    import yaml

    return int(yaml.safe_load(stack.config_path.read_text())["synqra"]["backends"]["embed"]["port"])


if __name__ == "__main__":
    main()
