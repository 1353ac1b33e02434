"""Where a proxy's CPU per request goes: py-spy samples of running proxies under the proxy_overhead load.

Starts the proxy_overhead variants (bare LiteLLM, budget on SQLite / Redis, routed on SQLite / Redis) on the
same instant fake providers, pins them as proxy_overhead does, drives each with the same 32-client load while
`py-spy record --format raw` samples it (idle threads are not sampled, so a sample is CPU time), and splits
each variant's measured proxy CPU per request across synqra's components by the frames in each sample
(`COMPONENTS`: the first rule a sample's stack matches wins; what matches none is LiteLLM, its web stack,
asyncio and the interpreter). Background threads of the proxy process (the inference log's writer) are
sampled like the rest: the benchmark counts process CPU.

Run: .venv/bin/python -m bench.profile_proxy [--variants bare,routed] [--requests 1500] [--rate 250]
     [--keep DIR]  (keeps each variant's raw py-spy stacks there; `--format speedscope` files for a viewer
     come from `py-spy record --format speedscope --pid <proxy pid>` by hand)
Needs py-spy (the `test` extra) and the right to ptrace the proxies (root, or kernel.yama.ptrace_scope 0).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path

from bench.measure import cpu_seconds, table, write_result
from bench.proxy_overhead import FELL_BACK, load, start_variants

# A sample belongs to the first component whose pattern matches one of its frames ("function (file:line)",
# paths relative to the repo) from the outermost synqra frame inwards: synqra's own code first, most specific
# first. Pass-through frames (the ASGI wrappers every request runs through) count only when they are the leaf
# (their own time); what matches nothing is LiteLLM (and FastAPI, Starlette, uvicorn, asyncio, httpx, the
# interpreter), including what LiteLLM does because callbacks are registered.
COMPONENTS: tuple[tuple[str, str], ...] = (
    ("learning: log writer thread", r"^InferenceLogWriter\._run \(policies/learning/writer\.py"),
    ("learning: request side", r"\((?:proxy/learning_loop\.py|policies/learning/)"),
    ("front door: request models", r"\(policies/common/request_models\.py"),
    ("front door: body read, parse, checks", r"\(proxy/route_guard\.py|\(policies/common/request_checks\.py"),
    ("routing: embedding", r"\(policies/embedding/"),
    ("routing: features, scorer, decision", r"\(policies/routing/|^SynqraHooks\._route "),
    ("budget: reserve", r"^Accountant\.admit |^BudgetGuard\.reserve |\(policies/budget/worst_case"),
    ("budget: settle + ledger write", r"^Accountant\.(?:settle|_record) |^BudgetGuard\.(?:settle|record_free) "),
    ("budget: other", r"\(policies/budget/"),
    ("quality gate", r"\((?:proxy/quality_gate\.py|policies/quality/)"),
    ("metrics", r"\(proxy/metrics\.py"),
    ("availability", r"\(proxy/availability\.py"),
    ("hooks: pre-call (state, tag, checks)", r"^SynqraHooks\.async_pre_call_hook "),
    ("hooks: deployment hooks", r"^SynqraHooks\.async_(?:pre_call|post_call_success)_deployment_hook "),
    ("hooks: post-call", r"^SynqraHooks\.async_post_call_success_hook "),
    ("hooks: logging event", r"^SynqraHooks\.async_log_\w+_event "),
    ("hooks: response headers", r"^SynqraHooks\.async_post_call_response_headers_hook "),
    ("synqra: other (auth, state, middleware own time)", r"\((?:proxy|policies)/"),
)
LITELLM = "LiteLLM + web stack + interpreter"
# ASGI wrappers and callbacks whose callee is not synqra's work.
PASS_THROUGH = re.compile(
    r"^(?:WarmUpLifespan\.__call__|RouteGuard\.__call__|AnthropicErrorFormat\.__call__"
    r"|RouteGuard\.__call__\.<locals>\.scrubbed|AnthropicErrorFormat\.__call__\.<locals>\.wrapped"
    r"|_replaying\.<locals>\.replay|main|<module>) \((?:proxy|policies)/"
)
# Leaves of a thread that waits (py-spy takes a thread blocked on a lock or a queue for an active one).
WAITING = re.compile(
    r"^(?:_worker \(\S*concurrent/futures/thread\.py|Condition\.wait |Event\.wait |Queue\.get |_wait_for_tstate_lock )"
)
SYNQRA = re.compile(r"\((?:proxy|policies)/")


def component(frames: list[str]) -> str:
    ours = [i for i, f in enumerate(frames) if SYNQRA.search(f)]
    leaf = len(frames) - 1
    ours = [i for i in ours if i == leaf or not PASS_THROUGH.search(frames[i])]
    if not ours:
        return LITELLM
    tail = frames[ours[0] :]
    for label, pattern in COMPONENTS:
        rx = re.compile(pattern)
        if any(rx.search(f) for f in tail):
            return label
    return LITELLM


def read_raw(path: Path, repo: Path) -> tuple[Counter[str], int]:
    """py-spy's raw (collapsed) output -> (samples per component, samples of waiting threads left out)."""
    out: Counter[str] = Counter()
    waiting = 0
    prefix = str(repo) + "/"
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        frames = stack.replace(prefix, "").split(";")
        if WAITING.search(frames[-1]):
            waiting += int(n)
            continue
        out[component(frames)] += int(n)
    return out, waiting


def profile(pid: int, run: Callable[[], object], out: Path, rate: int, gil: bool) -> None:
    """Sample `pid` with py-spy while `run()` runs."""
    spy = subprocess.Popen(
        [
            shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(pid),
            "--format",
            "raw",
            "--rate",
            str(rate),
            "--output",
            str(out),
            "--full-filenames",
            *(["--gil"] if gil else []),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        run()
    finally:
        spy.send_signal(signal.SIGINT)
        _, err = spy.communicate(timeout=60)
    if not out.exists():
        raise RuntimeError(f"py-spy wrote nothing: {err.decode()[-2000:]}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variants", default="bare,budget,budget-redis,routed,routed-redis")
    ap.add_argument("--requests", type=int, default=1500)
    ap.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    ap.add_argument("--keep", type=Path, help="folder to keep the raw py-spy stacks in")
    ap.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every thread that is not idle (default: only the thread holding the GIL; a thread waiting "
        "for the GIL looks busy to py-spy, and LiteLLM runs part of each call on an executor thread)",
    )
    args = ap.parse_args()
    repo = Path(__file__).resolve().parent.parent
    keep = args.keep or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    keep.mkdir(parents=True, exist_ok=True)
    names = args.variants.split(",")
    with start_variants(names) as (stacks, model, pinned):
        ms_per_req: dict[str, dict[str, float]] = {}
        cpu_plain: dict[str, float] = {}  # CPU per request without the sampler: what the shares are applied to
        cpu_sampled: dict[str, float] = {}
        offset = 0
        n = args.requests
        for name in names:
            s = stacks[name]
            pid = s.pids()["proxy"]
            asyncio.run(load(s.base_url, model[name], 40, 8, offset))  # warm-up
            offset += 40
            c0 = cpu_seconds(pid)
            asyncio.run(load(s.base_url, model[name], n, 32, offset))
            cpu_plain[name] = (cpu_seconds(pid) - c0) * 1000 / n
            offset += n
            c0 = cpu_seconds(pid)
            raw = keep / f"{name}.txt"

            def sampled_load(url: str = s.base_url, m: str = model[name], o: int = offset) -> None:
                asyncio.run(load(url, m, n, 32, o))

            profile(pid, sampled_load, raw, args.rate, not args.all_threads)
            offset += n
            cpu_sampled[name] = (cpu_seconds(pid) - c0) * 1000 / n
            samples, _ = read_raw(raw, repo)
            total = sum(samples.values())
            ms_per_req[name] = {c: cpu_plain[name] * k / total for c, k in samples.items()}
    labels = [label for label, _ in COMPONENTS] + [LITELLM]
    rows = [
        {"component": c, **{f"{v} ms/req": ms_per_req[v].get(c, 0.0) for v in names}}
        for c in labels
        if any(ms_per_req[v].get(c, 0.0) for v in names)
    ]
    rows.append({"component": "total proxy CPU", **{f"{v} ms/req": cpu_plain[v] for v in names}})
    rows.append({"component": "(total while sampled)", **{f"{v} ms/req": cpu_sampled[v] for v in names}})
    rows.append(
        {"component": "capacity vs bare (CPU)", **{f"{v} ms/req": cpu_plain[names[0]] / cpu_plain[v] for v in names}}
    )
    who = "every thread not idle" if args.all_threads else "the thread holding the GIL"
    text = (
        table(rows)
        + f"\n\nproxy CPU per request (from /proc, {n} requests at 32 clients per variant, unsampled) split by the "
        f"shares of py-spy samples of {who} (a second run of {n} requests, {args.rate} samples/s); raw stacks in {keep}."
        + ("\nproxies pinned to CPU 0; load generator, fake providers, Redis and py-spy to CPU 1." if pinned else "")
    )
    if FELL_BACK:
        text += f"\nWARNING: answers served by a fallback model during the run: {sum(FELL_BACK.values())}"
    print(text)
    write_result("profile_proxy", text)


if __name__ == "__main__":
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    main()
