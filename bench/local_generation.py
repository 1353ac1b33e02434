"""Local generation speed: through the proxy (streamed, one client) vs llama-cpp-python in-process.

Same GGUF, thread count, prompt, sampling (greedy) and stop strings on both sides;
rounds alternate A/B so machine noise hits both. Tokens/s = completion tokens /
wall time from request to last token (prompt processing included on both sides).

Run: .venv/bin/python -m bench.local_generation [--rounds 5] [--max-tokens 128]
Target (issue 2): proxy / in-process >= 0.9.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from bench.measure import median, table, write_result
from local_backends.prompt_format import build_completion_prompt
from policies.common.model_files import resolve_gguf
from policies.common.settings import load_config
from tests.stack import MASTER_KEY, REPO, start_stack

MESSAGES = [
    {
        "role": "user",
        "content": "Write a long, detailed story about a dragon who learns to bake bread in a small village.",
    }
]


def in_process(llm, prompt: str, max_tokens: int, stop: list[str], repeat_penalty: float) -> tuple[int, float]:
    t0 = time.perf_counter()
    n = 0
    for _ in llm.create_completion(
        prompt=prompt, max_tokens=max_tokens, temperature=0.0, repeat_penalty=repeat_penalty, stop=stop, stream=True
    ):
        n += 1
    return n, time.perf_counter() - t0


def through_proxy(client, max_tokens: int) -> tuple[int, float]:
    t0 = time.perf_counter()
    usage = None
    for ch in client.chat.completions.create(
        model="local-llama",
        messages=MESSAGES,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    ):
        if ch.usage:
            usage = ch.usage
    dt = time.perf_counter() - t0
    return (usage.completion_tokens if usage else 0), dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-tokens", type=int, default=128)
    args = ap.parse_args()
    import openai
    from llama_cpp import Llama

    cfg = load_config(REPO / "litellm_config.yaml").synqra.backends.llama
    stack = start_stack(Path(tempfile.mkdtemp(prefix="bench-gen-")))
    try:
        client = openai.OpenAI(base_url=stack.base_url + "/v1", api_key=MASTER_KEY, max_retries=0, timeout=300)
        llm = Llama(
            model_path=str(resolve_gguf(cfg.model_path)),
            n_ctx=cfg.n_ctx,
            n_threads=cfg.n_threads,
            n_threads_batch=cfg.n_threads,
            n_batch=cfg.n_batch,
            verbose=False,
        )
        prompt = build_completion_prompt(MESSAGES, cfg.completion)
        through_proxy(client, 8)  # warm both paths
        in_process(llm, prompt, 8, cfg.completion.stop, cfg.repeat_penalty)
        a, b = [], []
        for _ in range(args.rounds):
            n, dt = in_process(llm, prompt, args.max_tokens, cfg.completion.stop, cfg.repeat_penalty)
            a.append(n / dt)
            n2, dt2 = through_proxy(client, args.max_tokens)
            b.append(n2 / dt2)
            print(f"round: in-process {n} tok {n / dt:.1f} tok/s | proxy {n2} tok {n2 / dt2:.1f} tok/s", flush=True)
    finally:
        stack.stop()
    rows = [
        {"path": "llama-cpp-python in-process", "median tok/s": median(a)},
        {"path": "proxy -> llama server (streamed)", "median tok/s": median(b)},
    ]
    text = (
        table(rows)
        + f"\n\nratio proxy / in-process: **{median(b) / median(a):.3f}** (target >= 0.9; {args.rounds} alternating rounds, {args.max_tokens} max tokens, {cfg.n_threads} threads)"
    )
    print(text)
    write_result("local_generation", text)


if __name__ == "__main__":
    main()
