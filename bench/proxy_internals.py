"""Inside the running proxies: garbage-collection CPU per request and (with --cprofile) whose code the CPU is.

Starts the proxy_overhead variants as that benchmark does (same fake providers, same pinning) with a probe
loaded into each proxy (bench/probe/sitecustomize.py, through PYTHONPATH): during a 32-client load it records
every garbage collection (gc.callbacks: count and CPU seconds per generation) and, with --cprofile, a cProfile
of the event-loop thread on a CPU-time clock. cProfile inflates code made of many small calls several times,
so its figures are read as shares: synqra's hooks (their cumulative time) against the variant's whole
difference to bare; the rest of the difference is what LiteLLM does in addition because hooks are registered.

Run: .venv/bin/python -m bench.proxy_internals [--variants bare,budget,routed] [--requests 1000] [--cprofile]
     [--before CHECKOUT]  (also the same variants from another checkout, e.g. main before a change)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pstats
import signal
import tempfile
import time
from pathlib import Path

from bench.measure import cpu_seconds, table, write_result
from bench.proxy_overhead import BEFORE, bare_of, load, start_variants

PROBE = Path(__file__).resolve().parent / "probe"
# synqra's entry points LiteLLM calls: their cumulative time is all the hooks' own work.
HOOKS = (
    "async_pre_call_hook",
    "async_pre_call_deployment_hook",
    "async_post_call_success_deployment_hook",
    "async_post_call_success_hook",
    "async_log_success_event",
    "async_log_failure_event",
    "async_post_call_failure_hook",
    "async_post_call_response_headers_hook",
    "async_post_call_streaming_iterator_hook",
)


def profile_ms(path: Path, n: int) -> tuple[float, float]:
    """(total main-thread CPU, synqra hooks' cumulative CPU) in profiled ms per request."""
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    total = sum(v[2] for v in stats.values())
    hooks = sum(v[3] for (f, _, fn), v in stats.items() if fn in HOOKS and f.endswith("proxy/hooks.py"))
    return total * 1000 / n, hooks * 1000 / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="bare,budget,routed")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--cprofile", action="store_true", help="also profile the event-loop thread (slow)")
    ap.add_argument("--before", type=Path, help="another checkout: its proxies run the same variants")
    args = ap.parse_args()
    names = args.variants.split(",")
    if args.before:
        names += [BEFORE + v for v in names]
    out = Path(tempfile.mkdtemp(prefix="bench-internals-"))
    env = {"PYTHONPATH": str(PROBE), "SYNQRA_PROBE_DIR": str(out), "SYNQRA_PROBE_CPROFILE": str(int(args.cprofile))}
    n = args.requests
    rows: list[dict[str, object]] = []
    prof: dict[str, tuple[float, float]] = {}
    with start_variants(names, extra_env=env, before=args.before) as (stacks, model, pinned):
        offset = 0
        for name, s in stacks.items():  # warm-up
            asyncio.run(load(s.base_url, model[name], 60, 8, offset))
            offset += 60
        for name, s in stacks.items():
            pid = s.pids()["proxy"]
            os.kill(pid, signal.SIGUSR1)
            time.sleep(0.2)
            c0 = cpu_seconds(pid)
            asyncio.run(load(s.base_url, model[name], n, 32, offset))
            cpu = (cpu_seconds(pid) - c0) * 1000 / n
            offset += n
            os.kill(pid, signal.SIGUSR2)
            deadline = time.monotonic() + 30
            while not (out / f"{pid}.json").exists() and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(0.5)  # the .prof is written before the .json
            probe = json.loads((out / f"{pid}.json").read_text())
            gc_ms = [t * 1000 / n for t in probe["gc_seconds"]]
            row: dict[str, object] = {
                "proxy": name,
                "CPU ms/req (probe on)": cpu,
                "GC ms/req": sum(gc_ms),
                "GC ms/req gen0/1/2": " / ".join(f"{x:.3f}" for x in gc_ms),
                "collections per 1000 req gen0/1/2": " / ".join(str(round(c * 1000 / n)) for c in probe["gc_count"]),
                "objects frozen": probe["frozen"],
                "objects tracked": probe["tracked"],
            }
            if args.cprofile:
                prof[name] = profile_ms(out / f"{pid}.prof", n)
            rows.append(row)
    for row in rows:
        name = str(row["proxy"])
        if args.cprofile:
            total, hooks = prof[name]
            extra = total - prof[bare_of(name)][0]
            row["profiled ms/req"] = total
            row["added vs bare (profiled)"] = extra
            row["of which synqra hooks"] = hooks
            row["of which LiteLLM and the rest"] = extra - hooks
    text = (
        table(rows)
        + f"\n\n{n} requests at 32 clients per proxy, one proxy after another; GC from gc.callbacks (process CPU "
        "during each collection) in each proxy."
        + (
            " Profiled columns: cProfile of the event-loop thread on a CPU clock, which inflates code made of many "
            "small calls several times: read them as shares of the added cost, not as milliseconds."
            if args.cprofile
            else ""
        )
        + ("\nproxies pinned to CPU 0; load generator, fake providers and Redis to CPU 1." if pinned else "")
    )
    print(text)
    write_result("proxy_internals" + ("_cprofile" if args.cprofile else ""), text)


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
