"""Instructions per request of the proxy variants of bench/proxy_overhead.py, counted by valgrind's callgrind:
a figure that does not move with the load of this shared machine, unlike CPU time.

Each variant's proxy process (`python -m proxy.server`, the same config, fake providers and ~200-token unique
prompts as proxy_overhead) runs under `valgrind --tool=callgrind --instr-atstart=no` (start-up runs
uninstrumented: it takes ~1-2 minutes instead of ~15 s). After a warm-up of --warmup requests, instrumentation
is switched on (`callgrind_control --instr=on`), counters are zeroed, --requests requests are sent at --clients
concurrent clients, and the counters are dumped: instructions executed by every thread of the process in that
window, divided by the number of requests. --windows repeats the window (same process) to show how repeatable
the count is.

Valgrind runs the process ~50x slower, so whatever a process does by the clock (timers, periodic flushes) is
counted ~50x more per request than in real life: the idle rate (instructions per second with no request, a
window of --idle-s seconds) is reported to bound that; it is small against a request here.

`--before CHECKOUT` runs the same variants from another checkout (e.g. `git worktree add --detach /tmp/x main`).
`--annotate N` keeps each variant's callgrind file and prints the N costliest functions (inclusive) per variant,
by callgrind_annotate: C-level functions (the interpreter, garbage collector, sqlite, regex, tokenizers...).

Run: .venv/bin/python -m bench.proxy_instructions [--variants bare,budget,routed,routed-redis] [--requests 100]
     [--before CHECKOUT] [--parallel 2]
Needs valgrind (apt-get install -y valgrind).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.measure import median, prepend_result, table
from bench.proxy_overhead import BEFORE, bare_of, instant_providers, load, model_of, variant_config, variants_of
from policies.common.offline import apply_offline_env
from tests.fakes.fake_providers import free_port
from tests.redis_server import RedisServer
from tests.stack import MASTER_KEY, REPO, start_stack, write_config

VARIANTS = ("bare", "budget", "routed", "routed-redis")


@dataclass
class Proxy:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    out_dir: Path
    log_path: Path
    windows: list[float] = field(default_factory=list)  # instructions per request, per window
    idle_per_s: float = float("nan")
    threads: dict[str, float] = field(default_factory=dict)  # thread -> instructions per request (last window)
    events: list[dict[str, float]] = field(default_factory=list)  # per window: event -> count per request

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_proxy(
    name: str, root: Path, provs: dict, base, redis_url: str, repo: Path, separate_threads: bool, cache_sim: bool
) -> Proxy:
    overrides, edit = variant_config(name, redis_url)
    target = root / name.replace(":", "-")
    path, provider_env = write_config(target, provs, overrides, base, edit, repo)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and not k.endswith("_API_BASE")}
    env.update(provider_env)
    env.pop("REDIS_URL", None)
    env = apply_offline_env(env)
    env.update(SYNQRA_MASTER_KEY=MASTER_KEY, LITELLM_MASTER_KEY=MASTER_KEY, PYTHONUNBUFFERED="1")
    out_dir = target / "callgrind"
    out_dir.mkdir(parents=True)
    argv = [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--separate-threads={'yes' if separate_threads else 'no'}",
        f"--callgrind-out-file={out_dir}/cg.out",
        "--trace-children=no",
        f"--cache-sim={'yes' if cache_sim else 'no'}",
        sys.executable,
        "-m",
        "proxy.server",
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    log_path = target / "proxy.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(repo))
    return Proxy(name, proc, port, out_dir, log_path)


def wait_ready(p: Proxy, timeout_s: float = 900) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if p.proc.poll() is not None:
            raise RuntimeError(f"{p.name} exited:\n{p.log_path.read_text()[-4000:]}")
        try:
            if httpx.get(f"{p.base_url}/health/liveliness", timeout=30).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(2)
    raise TimeoutError(f"{p.name} not ready after {timeout_s}s:\n{p.log_path.read_text()[-4000:]}")


def control(p: Proxy, *args: str) -> str:
    return subprocess.run(
        ["callgrind_control", *args, str(p.proc.pid)], check=True, capture_output=True, text=True, timeout=600
    ).stdout


def dump(p: Proxy, label: str, events: dict[str, float] | None = None) -> dict[str, int]:
    """Dump the counters (since the last zeroing) and read them back: {thread id or 'all': instructions};
    every event's total (all threads) is added to `events`."""
    before = set(p.out_dir.iterdir())
    control(p, "--dump=" + label)
    deadline = time.monotonic() + 120
    new: list[Path] = []
    while time.monotonic() < deadline:
        new = [f for f in set(p.out_dir.iterdir()) - before if f.stat().st_size > 0]
        if new and all(_complete(f) for f in new):
            break
        time.sleep(0.5)
    out: dict[str, int] = {}
    for f in new:
        m = re.search(r"-(\d+)$", f.name)
        thread = m.group(1) if m and "-" in f.name.split(".out")[-1] else "all"
        out[thread] = out.get(thread, 0) + _total(f)
        if events is not None:
            for k, v in _events(f).items():
                events[k] = events.get(k, 0) + v
    return out


def _complete(f: Path) -> bool:
    return b"\ntotals:" in f.read_bytes()[-4096:] or b"\nsummary:" in f.read_bytes()[:65536]


def _total(f: Path) -> int:
    text = f.read_text(errors="replace")
    m = re.search(r"^totals:\s+(\d+)", text, re.M) or re.search(r"^summary:\s+(\d+)", text, re.M)
    return int(m.group(1)) if m else 0


def _events(f: Path) -> dict[str, int]:
    """{event: total} of a callgrind file (Ir, and with --cache-sim Dr Dw I1mr D1mr D1mw ILmr DLmr DLmw)."""
    text = f.read_text(errors="replace")
    names = re.search(r"^events:\s+(.*)$", text, re.M)
    summary = re.search(r"^summary:\s+(.*)$", text, re.M)
    if not names or not summary:
        return {}
    return dict(zip(names.group(1).split(), (int(x) for x in summary.group(1).split())))


def cycle_estimate(e: dict[str, float]) -> float:
    """callgrind_annotate's estimate of cycles: Ir + 10 x L1 misses + 100 x last-level misses."""
    l1 = e.get("I1mr", 0) + e.get("D1mr", 0) + e.get("D1mw", 0)
    ll = e.get("ILmr", 0) + e.get("DLmr", 0) + e.get("DLmw", 0)
    return e.get("Ir", 0) + 10 * l1 + 100 * ll


def measure(p: Proxy, args: argparse.Namespace, offset: int) -> None:
    model = model_of(p.name)
    asyncio.run(load(p.base_url, model, args.warmup, min(args.clients, 4), offset))
    offset += args.warmup
    control(p, "--instr=on")
    time.sleep(2)
    control(p, "--zap")  # zero
    time.sleep(args.idle_s)
    idle = dump(p, "idle")
    p.idle_per_s = sum(idle.values()) / args.idle_s
    for w in range(args.windows):
        control(p, "--zap")
        asyncio.run(load(p.base_url, model, args.requests, args.clients, offset))
        offset += args.requests
        events: dict[str, float] = {}
        counts = dump(p, f"window{w}", events)
        p.events.append({k: v / args.requests for k, v in events.items()})
        p.windows.append(sum(counts.values()) / args.requests)
        p.threads = {t: n / args.requests for t, n in counts.items()}
    control(p, "--instr=off")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, 'bare' among them")
    ap.add_argument("--requests", type=int, default=100, help="requests per counted window")
    ap.add_argument("--windows", type=int, default=2, help="counted windows per proxy")
    ap.add_argument("--warmup", type=int, default=60, help="uncounted requests first")
    ap.add_argument("--clients", type=int, default=8, help="concurrent clients")
    ap.add_argument("--idle-s", type=float, default=5.0, help="seconds of the idle window")
    ap.add_argument("--parallel", type=int, default=2, help="proxies measured at once")
    ap.add_argument("--before", type=Path, help="another checkout whose proxies run the same variants")
    ap.add_argument("--threads", action="store_true", help="count each thread apart (--separate-threads=yes)")
    ap.add_argument(
        "--cache-sim",
        action="store_true",
        help="also simulate the caches (--cache-sim=yes, ~2x slower): L1 and last-level misses per request and "
        "callgrind's cycle estimate",
    )
    ap.add_argument("--keep", type=Path, help="copy the callgrind files here (for callgrind_annotate)")
    ap.add_argument(
        "--label",
        default="",
        help="the heading of this run's section, put at the top of bench/results/proxy_instructions.md above the "
        "earlier runs' sections (default: the date)",
    )
    args = ap.parse_args()
    started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
    variants = variants_of(ap, args.variants, args.before)
    provs = instant_providers()
    root = Path(tempfile.mkdtemp(prefix="bench-instr-"))
    base = start_stack(root / "base", provs)
    redis = RedisServer(root / "redis", appendfsync="everysec").start()
    proxies: dict[str, Proxy] = {}
    try:

        def run(i_name: tuple[int, str]) -> None:
            i, name = i_name
            repo = args.before if name.startswith(BEFORE) else REPO
            p = start_proxy(name, root, provs, base, redis.url, repo, args.threads, args.cache_sim)
            proxies[name] = p
            try:
                wait_ready(p)
                measure(p, args, 1_000_000 * (i + 1))
            finally:
                p.proc.terminate()
                try:
                    p.proc.wait(120)
                except subprocess.TimeoutExpired:
                    p.proc.kill()
                    p.proc.wait()

        with ThreadPoolExecutor(args.parallel) as pool:
            list(pool.map(run, enumerate(variants)))
    finally:
        for p in proxies.values():
            if p.proc.poll() is None:
                p.proc.kill()
        base.stop()
        redis.stop()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        for name, p in proxies.items():
            for f in p.out_dir.iterdir():
                shutil.copy(f, args.keep / f"{name.replace(':', '-')}.{f.name}")
    mi = lambda name: median(proxies[name].windows) / 1e6  # noqa: E731
    rows = [
        {
            "proxy": name,
            "M instr/req": mi(name),
            "per window": " / ".join(f"{w / 1e6:.2f}" for w in proxies[name].windows),
            "M instr/req added": mi(name) - mi(bare_of(name)),
            "capacity vs bare (instr)": mi(bare_of(name)) / mi(name),
            "idle M instr/s": proxies[name].idle_per_s / 1e6,
        }
        for name in variants
    ]
    text = (
        table(rows)
        + f"\n\ncallgrind, all threads; {args.windows} windows of {args.requests} requests at {args.clients} clients "
        f"per proxy after {args.warmup} uncounted; `idle`: instructions per second with no request (bounded above "
        "by what the clock-driven work adds to a window)."
    )
    if args.cache_sim:
        ev = lambda name, k: median([e.get(k, 0) for e in proxies[name].events])  # noqa: E731
        cyc = lambda name: median([cycle_estimate(e) for e in proxies[name].events]) / 1e6  # noqa: E731
        text += "\n\n" + table(
            [
                {
                    "proxy": name,
                    "k L1 misses/req": (ev(name, "I1mr") + ev(name, "D1mr") + ev(name, "D1mw")) / 1e3,
                    "k LL misses/req": (ev(name, "ILmr") + ev(name, "DLmr") + ev(name, "DLmw")) / 1e3,
                    "M cycles/req (estimate)": cyc(name),
                    "capacity vs bare (cycle estimate)": cyc(bare_of(name)) / cyc(name),
                }
                for name in variants
            ]
        )
        text += "\ncache simulation (valgrind's model of this machine's L1 and last-level caches); cycle estimate = Ir + 10 x L1 misses + 100 x LL misses."
    if args.threads:
        for name in variants:
            t = proxies[name].threads
            text += f"\n{name} per thread (M instr/req, last window): " + ", ".join(
                f"{k}: {v / 1e6:.3f}" for k, v in sorted(t.items(), key=lambda kv: -kv[1])
            )
    print(text)
    command = "python -m bench.proxy_instructions " + " ".join(sys.argv[1:])
    heading = f"{args.label} ({started}-{time.strftime('%H:%M', time.gmtime())} UTC)".strip()
    prepend_result("proxy_instructions", heading, f"`{command}`\n\n{text}")


if __name__ == "__main__":
    main()
