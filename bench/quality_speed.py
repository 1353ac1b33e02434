"""Time added by scoring one answer, as the proxy does it (target: p50 <= 10 ms).

Starts the real embedding server as a subprocess on a free port, then times, one
answer at a time and side by side: the signals alone (no embedding), the
embedding call alone (HttpEmbedder.aembed of question + answer), and the full
`QualityScorer.ascore` (signals + an embedding call only when the lexical gate
cannot vouch for relevance). Answers: GSM8K weak-model answers (worked maths).

    nice -n 10 .venv/bin/python bench/quality_speed.py [--n 200]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from policies.embedder import HttpEmbedder  # noqa: E402
from policies.quality.config import QualitySettings  # noqa: E402
from policies.quality import signals as sg  # noqa: E402
from policies.quality.scorer import QualityScorer, _needs_relevance, combine, compute_signals  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, llama_port: int, embed_port: int) -> Path:
    def entry(name: str, model: str, port: int | None = None, **info: object) -> dict:
        params: dict[str, object] = {"model": model}
        if port:
            params["api_base"] = f"http://127.0.0.1:{port}/v1"
        return {"model_name": name, "litellm_params": params, "model_info": dict(info)}

    cfg = {
        "model_list": [
            entry("local-llama", "openai/local-llama", llama_port),
            entry("local-embed", "openai/local-embed", embed_port, mode="embedding"),
            entry("deepseek-chat", "deepseek/deepseek-chat"),
            entry("claude-sonnet", "anthropic/claude-sonnet-4-5"),
            entry("auto", "openai/auto"),
        ],
        "synqra": {"backends": {"llama": {"port": llama_port}, "embed": {"port": embed_port, "n_threads": 1}}},
    }
    path = folder / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def wait_healthy(url: str, proc: subprocess.Popen, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"embedding server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError("embedding server did not become healthy")


def samples(n: int) -> list[tuple[dict, str]]:
    sys.path.insert(0, str(ROOT / "bench"))
    from quality_eval import WEAK, load_gsm8k

    rows = load_gsm8k()[:n]
    return [({"messages": [{"role": "user", "content": r["prompt"]}]}, r[WEAK + "_response"].strip()) for r in rows]


def pct(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return f"p50 {np.percentile(a, 50):.2f} ms, p90 {np.percentile(a, 90):.2f} ms, mean {a.mean():.2f} ms"


async def measure(url: str, data: list[tuple[dict, str]]) -> dict[str, list[float]]:
    emb = HttpEmbedder(url)
    settings = QualitySettings()
    scorer = QualityScorer(settings, emb)
    for req, ans in data[:5]:  # warm-up: connections, model caches
        await scorer.ascore(req, ans, "stop", None)
    t: dict[str, list[float]] = {
        "signals only": [],
        "embedding call only": [],
        "ascore (signals + embedding)": [],
        "ascore, question vector given": [],
    }
    for req, ans in data:
        qvec = (await emb.aembed([req["messages"][0]["content"][:600]]))[0]  # as the router would pass it
        t0 = time.perf_counter()
        combine(compute_signals(req, ans, "stop", None, None, None), settings)
        t1 = time.perf_counter()
        await emb.aembed([req["messages"][0]["content"][:600], ans[:600]])
        t2 = time.perf_counter()
        await scorer.ascore(req, ans, "stop", None)
        t3 = time.perf_counter()
        await scorer.ascore(req, ans, "stop", None, question_embedding=qvec)
        t["ascore, question vector given"].append(time.perf_counter() - t3)
        t["signals only"].append(t1 - t0)
        t["embedding call only"].append(t2 - t1)
        t["ascore (signals + embedding)"].append(t3 - t2)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args(argv)
    data = samples(args.n)
    with tempfile.TemporaryDirectory() as tmp:
        embed_port = free_port()
        cfg = write_config(Path(tmp), free_port(), embed_port)
        env = dict(os.environ, HF_HUB_OFFLINE="1")
        proc = subprocess.Popen(
            [sys.executable, "-m", "local_backends.embedding_server", "--config", str(cfg)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        url = f"http://127.0.0.1:{embed_port}"
        try:
            wait_healthy(url, proc)
            times = asyncio.run(measure(url, data))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    print(f"{len(data)} GSM8K answers (mean {np.mean([len(a) for _, a in data]):.0f} chars), one at a time, "
          "embedding server with 1 thread on this shared 2-core machine:")
    for name, xs in times.items():
        print(f"  {name:32s} {pct(xs)}")
    # The lexical gate decides per answer whether the embedding call is made at all.
    gated = [_needs_relevance(sg.question_text(r), a) for r, a in data]
    full = times["ascore (signals + embedding)"]
    print(f"  embedding call needed (lexical gate failed) for {sum(gated)}/{len(data)} answers:")
    print(f"  {'ascore, those answers':32s} {pct([t for t, g in zip(full, gated) if g])}")
    qv = times["ascore, question vector given"]
    print(f"  {'  same, question vector given':32s} {pct([t for t, g in zip(qv, gated) if g])}")
    print(f"  {'ascore, the others':32s} {pct([t for t, g in zip(full, gated) if not g])}")
    p50 = np.percentile(times["ascore (signals + embedding)"], 50) * 1000
    print(f"target p50 <= 10 ms added: {'met' if p50 <= 10 else 'NOT met'} ({p50:.2f} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
