"""Chaos run (issue 19): 3 proxies on one Redis budget, faulty providers, mixed SDK traffic, kills mid-run.

Prints the invariants as figures (ledger vs the providers' bill, committed spend vs the limit, reservations
after their TTL, client outcomes by kind, the 70% alert, processes left) and writes bench/results/chaos.md.
What runs is described in tests/chaos_run.py; the suite's shorter version is tests/integration/test_chaos.py.

Run: .venv/bin/python -m bench.chaos [--requests 300] [--ramp-s 40] [--seed 19]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench.measure import write_result
from policies.common.offline import apply_offline_env

apply_offline_env()

from tests.chaos_run import ChaosConfig, ChaosRun, format_report  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--ramp-s", type=float, default=40.0, help="arrivals spread over this long")
    ap.add_argument("--seed", type=int, default=19)
    ap.add_argument("--limit-usd", type=float, default=None, help="default: sized to run out about midway")
    ap.add_argument("--workdir", type=Path, default=None, help="keep logs and data here (default: a temp dir)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave bench/results/chaos.md alone")
    args = ap.parse_args(argv)
    cfg = ChaosConfig(n_requests=args.requests, ramp_s=args.ramp_s, seed=args.seed, limit_usd=args.limit_usd)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="synqra-chaos-") as tmp:
        workdir = args.workdir or Path(tmp)
        rep = ChaosRun(workdir, cfg).run()
    text = format_report(rep)
    wall = time.monotonic() - t0
    cmd = "python -m bench.chaos " + " ".join(argv or [])
    body = (
        f"`{cmd.strip()}` ({wall:.0f}s wall, {time.strftime('%Y-%m-%d')})\n\n```\n{text}\n```\n\n"
        f"figures:\n\n```json\n{json.dumps(rep.figures, indent=1, default=str)}\n```"
    )
    print(text)
    print(f"\nwall time {wall:.0f}s")
    if not args.no_write:
        print("written:", write_result("chaos", body))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
