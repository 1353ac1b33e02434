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


def test_a_ledger_written_by_the_previous_release_is_migrated(tmp_path: Path) -> None:
    """Ledger files of the release before per-request counting: the columns are added with the
    values the old rows meant (each row a request) and new rows follow today's rule."""
    import sqlite3

    from policies.budget.records import LedgerRecord

    path = tmp_path / "ledger.sqlite3"
    old = sqlite3.connect(path, isolation_level=None)
    old.executescript(  # the previous release's ledger, totals and trigger
        """
        CREATE TABLE ledger (
            request_id TEXT PRIMARY KEY, month TEXT NOT NULL, ts REAL NOT NULL,
            requested_model TEXT NOT NULL, served_model TEXT NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
            cost_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL, kind TEXT NOT NULL,
            api_key_hash TEXT, user TEXT, parent_id TEXT, local INTEGER NOT NULL);
        CREATE TABLE totals (
            month TEXT PRIMARY KEY, committed_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL,
            requests INTEGER NOT NULL, local_requests INTEGER NOT NULL,
            prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL);
        CREATE TRIGGER ledger_totals AFTER INSERT ON ledger BEGIN
            INSERT INTO totals VALUES (NEW.month, NEW.cost_nano, NEW.baseline_nano, 1, NEW.local,
                                       NEW.prompt_tokens, NEW.completion_tokens)
            ON CONFLICT (month) DO UPDATE SET requests = requests + 1,
                local_requests = local_requests + excluded.local_requests;
        END;
        INSERT INTO ledger VALUES ('old', '2026-03', 1.0, 'auto', 'local-llama', 5, 5, 0, 100, 'chat', NULL, NULL, NULL, 1);
        """
    )
    old.close()

    async def main() -> None:
        store = SqliteStore(path)
        try:
            esc = LedgerRecord(
                "old:1",
                "2026-03",
                2.0,
                "auto",
                "deepseek-chat",
                5,
                5,
                40,
                0,
                "escalation",
                parent_id="old",
                counts_request=False,
                leaves_local=True,
            )
            assert (await store.settle(esc)).inserted
            t = await store.totals("2026-03")
            assert (t.requests, t.local_requests, t.committed_nano, t.baseline_nano) == (1, 0, 40, 100)
            rows = {r.request_id: r for r in await store.records("2026-03")}
            assert rows["old"].counts_request and not rows["old"].leaves_local and rows["old"].local
            assert not rows["old:1"].counts_request and rows["old:1"].leaves_local
        finally:
            await store.close()

    asyncio.run(main())


def test_the_full_tag_index_of_an_earlier_release_becomes_partial(tmp_path: Path) -> None:
    """Files from before carry reservations_month_tag over every reservation; reopened, the index
    holds tagged ones only, and a tag cap still sees the tag's reservations (held before and after)."""
    import sqlite3

    path = tmp_path / "ledger.sqlite3"
    now = time.time()

    async def first() -> None:
        s = SqliteStore(path)
        try:
            await s.reserve("2026-03", "t1", 400, 10**12, now + 60, now, tag="sales", tag_stop_nano=1000)
            await s.reserve("2026-03", "u1", 700, 10**12, now + 60, now)
        finally:
            await s.close()

    asyncio.run(first())
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX reservations_month_tag")
    conn.execute("CREATE INDEX reservations_month_tag ON reservations (month, tag)")  # the earlier release's
    conn.commit()
    conn.close()

    async def reopened() -> None:
        s = SqliteStore(path)
        try:
            refused = await s.reserve("2026-03", "t2", 700, 10**12, now + 60, now, tag="sales", tag_stop_nano=1000)
            assert refused.tag_refused and refused.tag_reserved_nano == 400  # t1's hold is counted
            ok = await s.reserve("2026-03", "t3", 600, 10**12, now + 60, now, tag="sales", tag_stop_nano=1000)
            assert ok.granted and ok.tag_reserved_nano == 1000 and ok.reserved_nano == 1700
        finally:
            await s.close()

    asyncio.run(reopened())
    conn = sqlite3.connect(path)
    (sql,) = conn.execute("SELECT sql FROM sqlite_master WHERE name = 'reservations_month_tag'").fetchone()
    (n,) = conn.execute(
        "SELECT COUNT(*) FROM reservations INDEXED BY reservations_month_tag WHERE tag = 'sales'"
    ).fetchone()
    conn.close()
    assert sql.endswith("WHERE tag IS NOT NULL") and n == 2
