"""Cold start (command to first successful chat) and resident memory of each process at idle.

Run: .venv/bin/python -m bench.stack_footprint [--runs 2]
Starts `synqra serve` on fresh ports (model files already assembled in the cache),
polls a local chat completion until it succeeds, then reads VmRSS of the supervisor,
the proxy and both backends after the stack has been idle for a few seconds.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.measure import median, rss_mb, table, write_result
from proxy.supervisor import die_with_parent
from tests.stack import MASTER_KEY, REPO, RunningStack, write_config


def cold_start(tmp: Path) -> tuple[float, dict[str, float]]:
    path, _ = write_config(tmp)
    import yaml

    port = yaml.safe_load(path.read_text())["synqra"]["server"]["port"]
    env = {**os.environ, "SYNQRA_MASTER_KEY": MASTER_KEY}
    log = open(tmp / "serve.log", "ab")
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "proxy.cli", "serve", "--config", str(path)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=str(REPO),
        preexec_fn=die_with_parent,
    )
    s = RunningStack(path, proc, port, tmp / "data", tmp / "serve.log")
    try:
        while True:
            try:
                r = httpx.post(
                    f"{s.base_url}/v1/chat/completions",
                    headers={"Authorization": f"Bearer {MASTER_KEY}"},
                    json={"model": "local-llama", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2},
                    timeout=30,
                )
                if r.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise RuntimeError("stack did not come up")
            time.sleep(0.1)
        elapsed = time.perf_counter() - t0
        time.sleep(5)
        return elapsed, {name: rss_mb(pid) for name, pid in s.pids().items()}
    finally:
        s.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    times, rss = [], []
    for _ in range(args.runs):
        t, r = cold_start(Path(tempfile.mkdtemp(prefix="bench-cold-")))
        times.append(t)
        rss.append(r)
        print(f"cold start {t:.1f} s; RSS {r}", flush=True)
    rows = [{"process": name, "idle RSS MB (median)": median([r[name] for r in rss])} for name in rss[0]]
    text = (
        f"cold start, `synqra serve` to first successful local chat: median {median(times):.1f} s over {args.runs} runs "
        f"({', '.join(f'{t:.1f}' for t in times)} s)\n\n" + table(rows)
    )
    print(text)
    write_result("stack_footprint", text)


if __name__ == "__main__":
    main()
