"""Instructions per call of the routed request's components, in-process, counted by valgrind's callgrind (the
component split that bench/proxy_instructions.py's whole-proxy counts cannot give).

Each component runs --n times inside `sys.call_tracing` (a C function nothing else here calls),
under `valgrind --tool=callgrind --toggle-collect=sys_call_tracing --dump-after=sys_call_tracing`: only what
runs inside it is counted, and each call leaves its own dump. Set-up (imports, the runtime with the
shipped config and the benchmark's routing tiers, SQLite in a temporary folder, the heap frozen as the proxy
freezes it, logging to a file as the proxy logs) is not counted. The main thread only: the inference-log
writer thread's work is not in these figures (bench/proxy_instructions.py --threads has it).

Run: .venv/bin/python -m bench.hook_instructions [--n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def measure(n: int) -> list[str]:
    """Run each component n times inside sys.call_tracing (after 50 uncounted calls); returns their names, in
    the order of the dumps."""
    from bench.proxy_overhead import ROUTING, prompt
    from policies.common.request_state import RequestState
    from policies.common.settings import LOG_FORMAT, load_config
    from policies.routing.features import embed_text, request_text, structural_features
    from proxy.runtime import init_runtime
    from proxy.server import freeze_startup_heap
    from tests.stack import write_config

    root = Path(tempfile.mkdtemp(prefix="bench-hook-instr-"))
    logging.basicConfig(level="INFO", format=LOG_FORMAT, filename=str(root / "proxy.log"))
    path, _ = write_config(root, None, {"routing": ROUTING, "quality": {"enabled": False}})
    rt = init_runtime(load_config(path), "bench")
    total = n + 50
    reqs: list[dict[str, Any]] = [
        {"model": "auto", "messages": [{"role": "user", "content": prompt(i)}], "max_tokens": 16}
        for i in range(12 * total)
    ]
    freeze_startup_heap()
    loop = asyncio.new_event_loop()
    names: list[str] = []
    next_req = iter(range(len(reqs)))

    def count(name: str, fn: Callable[[int], object]) -> None:
        for _ in range(50):
            fn(next(next_req) % len(reqs))
        idx = [next(next_req) % len(reqs) for _ in range(n)]
        sys.call_tracing(lambda: [fn(i) for i in idx], ())
        names.append(name)

    def run(coro_of: Callable[[int], Awaitable[object]]) -> Callable[[int], object]:
        return lambda i: loop.run_until_complete(coro_of(i))

    router = rt.router
    count("loop round trip (run_until_complete of nothing)", run(lambda i: asyncio.sleep(0)))
    count("Router.adecide (logging on, as served)", run(lambda i: router.adecide(reqs[i], 0.0, {})))
    rlog = logging.getLogger("synqra.routing")
    level = rlog.level
    rlog.setLevel(logging.WARNING)
    count("Router.adecide, 'route ...' line off", run(lambda i: router.adecide(reqs[i], 0.0, {})))
    rlog.setLevel(level)
    count("  request_text", lambda i: request_text(reqs[i]))
    count("  request_text + structural_features", lambda i: structural_features(reqs[i], request_text(reqs[i])))
    emb = router.embedder
    texts = [embed_text(request_text(r), router.scorer.max_chars) for r in reqs]
    if emb is not None:
        count("  embed (token ids + table mean)", lambda i: emb.embed([texts[i] + " x"]))
        count("  token ids alone", lambda i: emb.token_ids([texts[i] + " y"]))

    def routed_hook(i: int) -> Awaitable[object]:
        st = RequestState.new()
        st.call_type, st.requested_model = "acompletion", "auto"
        return _route(rt, st, reqs[i])

    count("hook _route (decision + glue + learning.route)", run(routed_hook))

    async def admit_settle(i: int, routed: bool) -> None:
        st = RequestState.new()
        st.call_type, st.route, st.requested_model = "acompletion", "deepseek-chat", "deepseek-chat"
        await rt.accounts.admit(st, {**reqs[i], "model": "deepseek-chat"}, "deepseek-chat", routed)
        await rt.accounts.settle(st, {"prompt_tokens": 190, "completion_tokens": 1})

    count("budget: admit + settle (named)", run(lambda i: admit_settle(i, False)))
    loop.run_until_complete(rt.aclose())
    loop.close()
    return names


async def _route(rt: Any, st: Any, request: dict[str, Any]) -> None:
    from proxy.hooks import SynqraHooks

    data = dict(request)
    await SynqraHooks._route(None, rt, st, data, data)  # type: ignore[arg-type]  # self is not read


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print("NAMES " + json.dumps(measure(args.n)))
        return
    out = Path(tempfile.mkdtemp(prefix="bench-hook-instr-cg-"))
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--toggle-collect=sys_call_tracing",
        "--dump-after=sys_call_tracing",
        f"--callgrind-out-file={out}/cg.out",
        sys.executable,
        "-m",
        "bench.hook_instructions",
        "--child",
        "--n",
        str(args.n),
    ]
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    line = [x for x in done.stdout.splitlines() if x.startswith("NAMES ")]
    if done.returncode != 0 or not line:
        raise SystemExit(f"failed: {done.stderr[-3000:]}")
    names = json.loads(line[0][6:])
    dumps = sorted(
        (f for f in out.iterdir() if re.search(r"\.\d+$", f.name)), key=lambda f: int(f.name.rsplit(".", 1)[1])
    )
    counts = []
    for f in dumps:
        m = re.search(r"^summary:\s+(\d+)", f.read_text(errors="replace"), re.M)
        counts.append(int(m.group(1)) if m else 0)
    counts = counts[-len(names) :]
    from bench.measure import table

    rows = [{"component": nm, "k instr/call": c / args.n / 1e3} for nm, c in zip(names, counts)]
    print(table(rows))
    print(f"\n{args.n} calls each, callgrind, main thread; callgrind files in {out}")


if __name__ == "__main__":
    main()
