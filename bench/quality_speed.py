"""Time added by scoring one answer, as the proxy does it (target: p50 <= 10 ms).

Starts the real embedding server as a subprocess on a free port, then times, one
answer at a time and side by side: the signals alone (no embedding), and the full
`QualityScorer.ascore` (signals + an embedding call only when the lexical gate
cannot vouch for relevance) with the static embedding (shipped) and with full
MiniLM through the server. Answers: GSM8K weak-model answers, under their own
question and under an unrelated MT-Bench question (so the embedding is needed).

    nice -n 10 .venv/bin/python bench/quality_speed.py [--n 200]
"""
from __future__ import annotations

import argparse
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
import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.measure import write_result  # noqa: E402
from policies.embedding.names import make_embedder  # noqa: E402
from policies.common.quality_settings import QualitySettings  # noqa: E402
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


def samples(n: int) -> tuple[list[tuple[dict, str]], list[tuple[dict, str]]]:
    """GSM8K answers to their own questions (the lexical gate usually vouches for them), and the
    same answers under MT-Bench questions (off topic: the relevance embedding is always needed)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from quality_eval import DATA, WEAK, load_gsm8k

    rows = load_gsm8k()[:n]
    own = [({"messages": [{"role": "user", "content": r["prompt"]}]}, r[WEAK + "_response"].strip()) for r in rows]
    mt_path = DATA / "mt_bench_question.jsonl"
    mt = [json.loads(line)["turns"][0] for line in mt_path.read_text().splitlines() if line.strip()]
    off = [({"messages": [{"role": "user", "content": mt[i % len(mt)]}]}, a) for i, (_, a) in enumerate(own)]
    return own, off


def pct(xs: list[float]) -> str:
    a = np.array(xs) * 1000
    return f"p50 {np.percentile(a, 50):.2f} ms, p90 {np.percentile(a, 90):.2f} ms, mean {a.mean():.2f} ms"


async def measure(url: str, own: list[tuple[dict, str]], off: list[tuple[dict, str]]) -> dict[str, list[float]]:
    """Interleaved per answer, so both embedders see the same machine load."""
    settings = QualitySettings()
    scorers = {kind: QualityScorer(settings, make_embedder(kind, server_url=url)) for kind in ("static", "minilm")}
    for sc in scorers.values():  # warm-up: connections, model caches
        for req, ans in own[:5]:
            await sc.ascore(req, ans, "stop", None)
    t: dict[str, list[float]] = {"signals only (no embedding)": []}
    for kind in scorers:
        t[f"{kind}: ascore, own question (gate decides)"] = []
        t[f"{kind}: ascore, off-topic (embedding needed)"] = []
    for (req, ans), (oreq, oans) in zip(own, off):
        t0 = time.perf_counter()
        combine(compute_signals(req, ans, "stop", None, None, None), settings)
        t["signals only (no embedding)"].append(time.perf_counter() - t0)
        for kind, sc in scorers.items():
            t0 = time.perf_counter()
            await sc.ascore(req, ans, "stop", None)
            t1 = time.perf_counter()
            await sc.ascore(oreq, oans, "stop", None)
            t[f"{kind}: ascore, own question (gate decides)"].append(t1 - t0)
            t[f"{kind}: ascore, off-topic (embedding needed)"].append(time.perf_counter() - t1)
    return t


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    args = ap.parse_args(argv)
    own, off = samples(args.n)
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
            times = asyncio.run(measure(url, own, off))
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    lines = [
        f"{len(own)} GSM8K answers (mean {np.mean([len(a) for _, a in own]):.0f} chars), one at a time; embedding server "
        "with 1 thread; static = MiniLM distilled to a token table in this process (the shipped default), "
        "minilm = the full model through the embedding server.",
        f"The lexical gate asked for the embedding on {sum(_needs_relevance(sg.question_text(r), a) for r, a in own)}/{len(own)} "
        f"own-question answers and {sum(_needs_relevance(sg.question_text(r), a) for r, a in off)}/{len(off)} off-topic ones.",
        "",
        "| scoring | p50 ms | p90 ms | mean ms |",
        "|---|---|---|---|",
    ]
    for name, xs in times.items():
        a = np.array(xs) * 1000
        lines.append(f"| {name} | {np.percentile(a, 50):.2f} | {np.percentile(a, 90):.2f} | {a.mean():.2f} |")
    worst = np.percentile(times["static: ascore, off-topic (embedding needed)"], 50) * 1000
    full = np.percentile(times["minilm: ascore, off-topic (embedding needed)"], 50) * 1000
    lines += ["", f"Shipped (static) scoring with the embedding needed: p50 {worst:.2f} ms, target <= 10 ms: "
              f"{'met' if worst <= 10 else 'NOT met'}; full MiniLM over HTTP would take {full / max(worst, 1e-9):.1f}x as long."]
    text = "\n".join(lines)
    print(text)
    write_result("quality_speed", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
