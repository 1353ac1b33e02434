"""How long the dashboard's ledger read takes for a large month (it decides how often an open page re-reads it).

Run: .venv/bin/python -m bench.dashboard_ledger_read [--rows 100000]
Writes a month of ledger rows into a fresh SQLite store (the budget store's own file and triggers), then times
what the dashboard does on a re-read: `BudgetGuard.records(month)` and `proxy.dashboard.data.ledger_view`
(the daily series and the newest rows), wall time and this process's CPU time, twice.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.measure import table, write_result
from policies.budget.guard import BudgetGuard
from policies.budget.records import LedgerRecord
from policies.common.offline import apply_offline_env
from policies.common.settings import AppConfig, ModelEntry, SynqraSettings
from proxy.dashboard.data import ledger_view

MONTH_START = datetime(2026, 3, 1, tzinfo=UTC)


def config(tmp: Path) -> AppConfig:
    prices = {
        "local-llama": (0, 0),
        "deepseek-chat": (0.28e-6, 0.42e-6),
        "claude-sonnet": (3e-6, 15e-6),
        "auto": (0, 0),
    }
    models = [
        ModelEntry(
            model_name=n,
            litellm_params={"model": f"openai/{n}"},
            model_info={"input_cost_per_token": i, "output_cost_per_token": o},
        )
        for n, (i, o) in prices.items()
    ]
    return AppConfig(
        path=tmp / "litellm_config.yaml",
        model_list=models,
        synqra=SynqraSettings.model_validate({"server": {"data_dir": str(tmp)}, "budget": {"store": "sqlite"}}),
    )


async def run(rows: int) -> list[dict[str, object]]:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        guard = BudgetGuard.from_config(config(tmp), now=lambda: datetime(2026, 3, 28, tzinfo=UTC), env={})
        t0 = MONTH_START.timestamp()
        await guard.store.settle(LedgerRecord("r0", "2026-03", t0, "auto", "local-llama", 1, 1, 0, 0))
        db = next(p for p in tmp.rglob("*") if p.suffix in (".sqlite3", ".sqlite", ".db"))
        recs = [
            LedgerRecord(
                f"r{i}",
                "2026-03",
                t0 + i * (27 * 86400 / rows),
                "auto",
                "local-llama" if i % 3 else "deepseek-chat",
                100,
                50,
                0 if i % 3 else 50_000,
                400_000,
                local=bool(i % 3),
            )
            for i in range(1, rows)
        ]
        cols = list(vars(recs[0]))
        with sqlite3.connect(db) as conn:
            conn.executemany(
                f"INSERT INTO ledger ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                [tuple(vars(r).values()) for r in recs],
            )
        out: list[dict[str, object]] = []
        for attempt in (1, 2):
            w0, c0 = time.perf_counter(), time.process_time()
            records = await guard.records("2026-03")
            w1 = time.perf_counter()
            ledger_view(records, "2026-03", "UTC")
            w2 = time.perf_counter()
            out.append(
                {
                    "read": attempt,
                    "rows": len(records),
                    "records() s": round(w1 - w0, 2),
                    "ledger_view s": round(w2 - w1, 2),
                    "CPU s": round(time.process_time() - c0, 2),
                }
            )
        await guard.aclose()
        return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    args = ap.parse_args(argv)
    apply_offline_env()
    rows = asyncio.run(run(args.rows))
    text = (
        "# Dashboard ledger read (bench/dashboard_ledger_read.py)\n\n"
        + table(rows)
        + (
            "\n\nAn open dashboard re-reads the ledger only when the month's totals moved, and never sooner than 20x the "
            "last read's wall time (proxy/dashboard/data.py). One run on a shared, noisy machine."
        )
    )
    print(text)
    write_result("dashboard_ledger_read", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
