"""The embedded SQLite store on real files."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from policies.budget.sqlite_store import SqliteStore


def test_two_processes_opening_a_new_ledger_at_once_both_get_in(tmp_path: Path) -> None:
    """Two stores initialising one new file together: SQLite answers one of them "database is
    locked" at once, without its busy timeout; the store must retry, not report an outage
    (which would refuse paid calls). Seen in about 7% of tries before the fix."""

    async def first_use_together(path: Path) -> None:
        a, b = SqliteStore(path), SqliteStore(path)
        now = time.time()
        try:
            await asyncio.gather(
                a.reserve("2026-03", "r1", 1, 10**12, now + 60, now),
                b.reserve("2026-03", "r2", 1, 10**12, now + 60, now),
            )
            assert (await a.totals("2026-03")).reserved_nano == 2
        finally:
            await a.close()
            await b.close()

    for i in range(60):
        asyncio.run(first_use_together(tmp_path / f"ledger{i}.sqlite3"))
