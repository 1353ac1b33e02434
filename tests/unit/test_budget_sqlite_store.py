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


def test_a_failed_commit_leaves_no_transaction_open(tmp_path: Path) -> None:
    """A COMMIT that fails (disk full, I/O error; here a deferred constraint, the one failure
    a test can cause on cue) may leave SQLite's transaction open. Left open, every later
    BEGIN on that connection fails and the store stays down until restart."""
    import sqlite3

    import pytest

    store = SqliteStore(tmp_path / "ledger.sqlite3")
    conn = sqlite3.connect(tmp_path / "fk.sqlite3", isolation_level=None)
    conn.executescript(
        "PRAGMA foreign_keys = ON;"
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (pid INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    conn.execute("BEGIN IMMEDIATE")
    with pytest.raises(sqlite3.IntegrityError):
        store._commit_bodies(conn, [lambda c: c.execute("INSERT INTO child VALUES (1)").rowcount])
    assert not conn.in_transaction
    conn.execute("BEGIN IMMEDIATE")  # the connection is usable again
    assert store._commit_bodies(conn, [lambda c: c.execute("INSERT INTO parent VALUES (1)").rowcount]) == [1]
    assert conn.execute("SELECT COUNT(*) FROM child").fetchall() == [(0,)]
    conn.close()
