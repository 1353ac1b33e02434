"""The embedded store: one SQLite file (WAL), shared safely by several processes.

Check-and-reserve runs inside BEGIN IMMEDIATE, which takes SQLite's write lock
up front, so no other connection can slip a reservation in between the check
and the insert. Month totals are kept by a trigger on the ledger, so they can
never disagree with it. All calls run on one dedicated thread per store: the
event loop never blocks on the file lock or an fsync. Writes that arrive while one
is running share the next transaction (policies.budget.coalesce), each in its own
savepoint.

One exception, for latency: when no write is in flight, a write first tries its
transaction right on the event loop, on a second connection that never waits for
the lock (busy_timeout 0) and leaves checkpoints to the thread. An
uncontended WAL commit without fsync takes tens of microseconds, less than the hop
to the thread and back; and an await in the request's path lets LiteLLM's own
post-response work run first, which cost about 2 ms per request at one client.
If the lock is taken (another write, another process), it goes the thread's way.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal, TypeVar, cast

from policies.budget.coalesce import Coalescer
from policies.budget.records import LedgerRecord, MonthTotals, ReserveOutcome, SettleOutcome, TagTotals
from policies.budget.store import StoreUnavailable

T = TypeVar("T")

_COLUMNS = [f.name for f in fields(LedgerRecord)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, ts REAL NOT NULL,
    requested_model TEXT NOT NULL, served_model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL, kind TEXT NOT NULL,
    api_key_hash TEXT, user TEXT, parent_id TEXT, local INTEGER NOT NULL,
    counts_request INTEGER NOT NULL DEFAULT 1, leaves_local INTEGER NOT NULL DEFAULT 0, tag TEXT
);
CREATE INDEX IF NOT EXISTS ledger_month_ts ON ledger (month, ts);
CREATE TABLE IF NOT EXISTS totals (
    month TEXT PRIMARY KEY, committed_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL,
    requests INTEGER NOT NULL, local_requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, amount_nano INTEGER NOT NULL, expires_at REAL NOT NULL,
    tag TEXT
);
CREATE INDEX IF NOT EXISTS reservations_month_exp ON reservations (month, expires_at);
CREATE TABLE IF NOT EXISTS alerts (
    month TEXT NOT NULL, level TEXT NOT NULL, fired_at REAL NOT NULL, PRIMARY KEY (month, level)
);
"""

# Requests and local share count client requests, not calls (LedgerRecord.request_delta/local_delta).
# Installed by _migrate, which also replaces the rule of a ledger written by an older version.
_TRIGGER = """
CREATE TRIGGER ledger_totals AFTER INSERT ON ledger BEGIN
    INSERT INTO totals VALUES (NEW.month, NEW.cost_nano, NEW.baseline_nano, NEW.counts_request,
                               NEW.counts_request * NEW.local - NEW.leaves_local,
                               NEW.prompt_tokens, NEW.completion_tokens)
    ON CONFLICT (month) DO UPDATE SET
        committed_nano = committed_nano + excluded.committed_nano,
        baseline_nano = baseline_nano + excluded.baseline_nano,
        requests = requests + excluded.requests,
        local_requests = local_requests + excluded.local_requests,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens;
END
"""


# Each tag's share of the month (tagged rows only: the untagged share is the month's totals minus the
# tags'), kept by its own trigger like `totals`, so a tag cap is checked without summing the ledger.
_TAG_TOTALS = """
CREATE TABLE tag_totals (
    month TEXT NOT NULL, tag TEXT NOT NULL, committed_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL,
    requests INTEGER NOT NULL, local_requests INTEGER NOT NULL, PRIMARY KEY (month, tag)
)
"""
_TAG_TRIGGER = """
CREATE TRIGGER ledger_tag_totals AFTER INSERT ON ledger WHEN NEW.tag IS NOT NULL BEGIN
    INSERT INTO tag_totals VALUES (NEW.month, NEW.tag, NEW.cost_nano, NEW.baseline_nano, NEW.counts_request,
                                   NEW.counts_request * NEW.local - NEW.leaves_local)
    ON CONFLICT (month, tag) DO UPDATE SET
        committed_nano = committed_nano + excluded.committed_nano,
        baseline_nano = baseline_nano + excluded.baseline_nano,
        requests = requests + excluded.requests,
        local_requests = local_requests + excluded.local_requests;
END
"""

# Columns added after the first release: (table, name, declaration) for ALTER TABLE on older files.
_ADDED_COLUMNS = (
    ("ledger", "counts_request", "INTEGER NOT NULL DEFAULT 1"),
    ("ledger", "leaves_local", "INTEGER NOT NULL DEFAULT 0"),
    ("ledger", "tag", "TEXT"),
    ("reservations", "tag", "TEXT"),
)


def _install_trigger(conn: sqlite3.Connection, name: str, sql: str) -> None:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = ?", (name,)).fetchone()
    if row is None or row[0].strip() != sql.strip():
        conn.execute(f"DROP TRIGGER IF EXISTS {name}")
        conn.execute(sql)


_RESERVATIONS_TAG_INDEX = "CREATE INDEX reservations_month_tag ON reservations (month, tag) WHERE tag IS NOT NULL"


def _install_index(conn: sqlite3.Connection, name: str, sql: str) -> None:
    row = conn.execute("SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?", (name,)).fetchone()
    if row is None or row[0].strip() != sql.strip():
        conn.execute(f"DROP INDEX IF EXISTS {name}")
        conn.execute(sql)


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring a ledger file to today's columns, tables and totals rules, in one transaction: a process
    writing to the same file meanwhile never inserts a row with no trigger to count it."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table, name, decl in _ADDED_COLUMNS:
            if name not in {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}:
                conn.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
        # Tagged sums of in-flight reservations (a tag cap's check). Partial: an untagged reservation, most
        # of them, is not written to it and deleted from it again (an index over all of them cost ~10% of a
        # store's reserve + settle); "tag = ?" implies the index's condition, so the tag sums still use it.
        _install_index(conn, "reservations_month_tag", _RESERVATIONS_TAG_INDEX)
        if conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'tag_totals'").fetchone() is None:
            conn.execute(_TAG_TOTALS)
            conn.execute(  # rows written before the table existed (none, from a file without the tag column)
                "INSERT INTO tag_totals SELECT month, tag, SUM(cost_nano), SUM(baseline_nano), SUM(counts_request), "
                "SUM(counts_request * local - leaves_local) FROM ledger WHERE tag IS NOT NULL GROUP BY month, tag"
            )
        _install_trigger(conn, "ledger_totals", _TRIGGER)
        _install_trigger(conn, "ledger_tag_totals", _TAG_TRIGGER)
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


_INSERT_LEDGER = f"INSERT OR IGNORE INTO ledger ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})"
_record_values = attrgetter(*_COLUMNS)
# What a reserve and a settle read, each in one statement (a statement costs more than the reads in it):
# the month's committed and reserved spend, and whether the request id is already reserved or recorded
# (?1 month, ?2 request id) / the record's tag's committed spend (?2 tag; NULL for none).
_MONTH_SPEND = (
    "COALESCE((SELECT committed_nano FROM totals WHERE month = ?1), 0), "
    "(SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ?1)"
)
_RESERVE_READ = (
    f"SELECT {_MONTH_SPEND}, EXISTS (SELECT 1 FROM reservations WHERE request_id = ?2) "
    "OR EXISTS (SELECT 1 FROM ledger WHERE request_id = ?2)"
)
_SETTLE_READ = f"SELECT {_MONTH_SPEND}, (SELECT committed_nano FROM tag_totals WHERE month = ?1 AND tag = ?2)"

_CHECKPOINT_EVERY = 200  # event-loop commits between WAL checkpoints (run on the thread)
_BACKSTOP_CHECKPOINT_PAGES = 4000  # 16 MB of log: SQLite's own checkpoint on the event-loop connection


class SqliteStore:
    name = "sqlite"

    def __init__(
        self, path: Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000, loop_writes: bool = True
    ) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synqra-budget-sqlite")
        self._writes: Coalescer[Callable[[sqlite3.Connection], Any], Any] = Coalescer(self._send_writes)
        self.loop_writes = loop_writes
        self._fast: sqlite3.Connection | None = None  # the event loop's own connection (see module doc)
        self.fast_writes = 0  # writes done on the event loop (the rest went to the thread)

    # -- plumbing ---------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            try:
                self._initialise(conn)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _initialise(self, conn: sqlite3.Connection) -> None:
        """WAL mode and schema. Two connections doing this at once on a new file can get "database is
        locked" at once, without the busy timeout (SQLite refuses to wait where waiting could deadlock
        a lock upgrade; seen in 21 of 300 tries here): retry until the busy timeout has passed."""
        deadline = time.monotonic() + self.busy_timeout_ms / 1000
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                conn.execute(f"PRAGMA synchronous = {self.synchronous}")
                conn.executescript(_SCHEMA)
                _migrate(conn)
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _tx_batch(self, bodies: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """Run the bodies in one write transaction on the thread's connection (BEGIN IMMEDIATE:
        the lock is taken before any read); see _commit_bodies."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        return self._commit_bodies(conn, bodies)

    def _commit_bodies(self, conn: sqlite3.Connection, bodies: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """In the write transaction `conn` has begun, run each body inside its own savepoint (a lone
        body: in the transaction itself), then commit: a body that fails is undone alone, and its error
        (StoreUnavailable for SQLite errors) is its result. Nothing is visible to any caller before the COMMIT."""
        if len(bodies) == 1:
            return [self._commit_one(conn, bodies[0])]
        out: list[Any] = []
        try:
            for body in bodies:
                conn.execute("SAVEPOINT op")
                try:
                    out.append(body(conn))
                except Exception as e:
                    conn.execute("ROLLBACK TO op")
                    if isinstance(e, sqlite3.Error):
                        err = self._unavailable(e)
                        err.__cause__ = e
                        out.append(err)
                    else:
                        out.append(e)
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException:
            # A failed COMMIT (disk full, I/O error) may leave the transaction open, and then every
            # later BEGIN on this connection would fail: roll back whatever is still open.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return out

    def _commit_one(self, conn: sqlite3.Connection, body: Callable[[sqlite3.Connection], Any]) -> Any:
        """_commit_bodies for a single body (a quiet moment's write): the transaction is its savepoint, so
        two statements fewer; a body that fails rolls the transaction back."""
        try:
            try:
                out = body(conn)
            except Exception as e:
                conn.execute("ROLLBACK")
                if isinstance(e, sqlite3.Error):
                    err = self._unavailable(e)
                    err.__cause__ = e
                    return err
                return e
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:  # see _commit_bodies
                conn.execute("ROLLBACK")
            raise
        return out

    async def _tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a write transaction: on the event loop if the lock is free and no write is
        in flight, else on the thread, where concurrent writes share one hop and one commit."""
        if self.loop_writes and self._writes.idle and self._conn is not None:
            fast = self._try_fast(body)
            if fast[0]:
                return fast[1]
        # One coalescer carries bodies of every result type: each caller gets its own body's result back.
        return cast(T, await self._writes.run(body))

    def _fast_conn(self) -> sqlite3.Connection:
        if self._fast is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA busy_timeout = 0")
            conn.execute(f"PRAGMA synchronous = {self.synchronous}")
            # Checkpoints run on the thread (see _try_fast); this is only the backstop if writes
            # never leave them a quiet moment to finish (then one commit here pays a few ms).
            conn.execute(f"PRAGMA wal_autocheckpoint = {_BACKSTOP_CHECKPOINT_PAGES}")
            self._fast = conn
        return self._fast

    def _try_fast(
        self, body: Callable[[sqlite3.Connection], T]
    ) -> tuple[Literal[True], T] | tuple[Literal[False], None]:
        """(True, result) if the transaction ran here; (False, None) if the write lock was taken."""
        try:
            conn = self._fast_conn()
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return False, None  # locked or busy: never wait on the event loop
        except sqlite3.Error as e:
            raise self._unavailable(e) from e
        try:
            (out,) = self._commit_bodies(conn, [body])
        except sqlite3.Error as e:
            raise self._unavailable(e) from e
        if isinstance(out, Exception):
            raise out
        self.fast_writes += 1
        if self.fast_writes % _CHECKPOINT_EVERY == 0:
            # Fold the log back into the database on the thread, without waiting for it. RESTART,
            # not PASSIVE: it also makes the next write start the log from the top (PASSIVE
            # left it growing, seen in tests/unit/test_budget_coalesce.py); a loop write that
            # meets its lock just takes the thread's way.
            self._pool.submit(self._checkpoint)
        return True, out

    def _checkpoint(self) -> None:
        try:
            self._connect().execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
        except sqlite3.Error:
            pass  # the next one retries; the WAL stays valid meanwhile

    async def _send_writes(self, bodies: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        return await self._run(self._tx_batch, bodies)

    def _unavailable(self, e: sqlite3.Error) -> StoreUnavailable:
        return StoreUnavailable(f"budget store sqlite:{self.path} failed: {e}")

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)
        except sqlite3.Error as e:
            raise self._unavailable(e) from e

    @staticmethod
    def _tag_spend(conn: sqlite3.Connection, month: str, tag: str) -> tuple[int, int]:
        # fetchall(), never fetchone(): a statement left unfinished keeps the connection's read
        # snapshot open, and then no checkpoint can complete and the WAL only grows.
        rows = conn.execute(
            "SELECT committed_nano FROM tag_totals WHERE month = ? AND tag = ?", (month, tag)
        ).fetchall()
        ((reserved,),) = conn.execute(
            "SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ? AND tag = ?", (month, tag)
        ).fetchall()
        return (rows[0][0] if rows else 0), reserved

    @staticmethod
    def _expire(conn: sqlite3.Connection, month: str, now: float) -> int:
        return conn.execute("DELETE FROM reservations WHERE month = ? AND expires_at < ?", (month, now)).rowcount

    # -- BudgetStore ------------------------------------------------------------------------
    async def reserve(
        self,
        month: str,
        request_id: str,
        amount_nano: int,
        stop_nano: int,
        expires_at: float,
        now: float,
        tag: str | None = None,
        tag_stop_nano: int | None = None,
    ) -> ReserveOutcome:
        def body(conn: sqlite3.Connection) -> ReserveOutcome:
            self._expire(conn, month, now)
            ((committed, reserved, seen),) = conn.execute(_RESERVE_READ, (month, request_id)).fetchall()
            if seen:
                return ReserveOutcome(False, committed, reserved, duplicate=True)
            if committed + reserved + amount_nano > stop_nano:
                return ReserveOutcome(False, committed, reserved)
            tag_committed = tag_reserved = 0
            if tag is not None and tag_stop_nano is not None:  # in the same transaction: no other reserve between
                tag_committed, tag_reserved = self._tag_spend(conn, month, tag)
                if tag_committed + tag_reserved + amount_nano > tag_stop_nano:
                    return ReserveOutcome(
                        False,
                        committed,
                        reserved,
                        tag_refused=True,
                        tag_committed_nano=tag_committed,
                        tag_reserved_nano=tag_reserved,
                    )
                tag_reserved += amount_nano
            conn.execute(
                "INSERT INTO reservations (request_id, month, amount_nano, expires_at, tag) VALUES (?, ?, ?, ?, ?)",
                (request_id, month, amount_nano, expires_at, tag),
            )
            return ReserveOutcome(
                True,
                committed,
                reserved + amount_nano,
                tag_committed_nano=tag_committed,
                tag_reserved_nano=tag_reserved,
            )

        return await self._tx(body)

    async def settle(self, record: LedgerRecord) -> SettleOutcome:
        values = _record_values(record)  # bools bind as 0/1

        def body(conn: sqlite3.Connection) -> SettleOutcome:
            inserted = conn.execute(_INSERT_LEDGER, values).rowcount
            conn.execute("DELETE FROM reservations WHERE request_id = ?", (record.request_id,))
            ((committed, reserved, tag_committed),) = conn.execute(_SETTLE_READ, (record.month, record.tag)).fetchall()
            tag = None if record.tag is None else tag_committed or 0
            return SettleOutcome(bool(inserted), committed, reserved, tag)

        return await self._tx(body)

    async def release(self, month: str, request_id: str) -> None:
        await self._tx(
            lambda conn: conn.execute("DELETE FROM reservations WHERE request_id = ?", (request_id,)).rowcount
        )

    async def expire(self, month: str, now: float) -> int:
        return await self._tx(lambda conn: self._expire(conn, month, now))

    async def extend(self, month: str, request_ids: list[str], expires_at: float) -> None:
        await self._tx(
            lambda conn: (
                conn.executemany(
                    "UPDATE reservations SET expires_at = ? WHERE month = ? AND request_id = ?",
                    [(expires_at, month, rid) for rid in request_ids],
                ).rowcount
            )
        )

    async def totals(self, month: str) -> MonthTotals:
        def read() -> MonthTotals:
            conn = self._connect()
            rows = conn.execute(
                "SELECT committed_nano, baseline_nano, requests, local_requests, prompt_tokens, completion_tokens "
                "FROM totals WHERE month = ?",
                (month,),
            ).fetchall()
            row = rows[0] if rows else (0, 0, 0, 0, 0, 0)
            ((reserved,),) = conn.execute(
                "SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ?", (month,)
            ).fetchall()
            alerts = tuple(
                r[0] for r in conn.execute("SELECT level FROM alerts WHERE month = ? ORDER BY level", (month,))
            )
            c, b, n, loc, pt, ct = row
            return MonthTotals(month, c, reserved, b, n, loc, pt, ct, alerts)

        return await self._run(read)

    async def tag_totals(self, month: str) -> dict[str, TagTotals]:
        def read() -> dict[str, TagTotals]:
            conn = self._connect()
            held = dict(
                conn.execute(
                    "SELECT tag, SUM(amount_nano) FROM reservations WHERE month = ? AND tag IS NOT NULL GROUP BY tag",
                    (month,),
                ).fetchall()
            )
            out = {
                tag: TagTotals(tag, c, held.pop(tag, 0), b, n, loc)
                for tag, c, b, n, loc in conn.execute(
                    "SELECT tag, committed_nano, baseline_nano, requests, local_requests FROM tag_totals WHERE month = ?",
                    (month,),
                ).fetchall()
            }
            out.update({tag: TagTotals(tag, reserved_nano=r) for tag, r in held.items()})  # reserved, nothing spent yet
            return out

        return await self._run(read)

    async def mark_alert(self, month: str, level: str, now: float) -> bool:
        return await self._tx(
            lambda conn: (
                conn.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?)", (month, level, now)).rowcount == 1
            )
        )

    async def records(self, month: str) -> list[LedgerRecord]:
        def read() -> list[LedgerRecord]:
            rows = (
                self._connect()
                .execute(f"SELECT {','.join(_COLUMNS)} FROM ledger WHERE month = ? ORDER BY ts, rowid", (month,))
                .fetchall()
            )
            out = []
            for r in rows:
                d = dict(zip(_COLUMNS, r))
                for flag in ("local", "counts_request", "leaves_local"):
                    d[flag] = bool(d[flag])
                out.append(LedgerRecord(**d))
            return out

        return await self._run(read)

    async def ping(self) -> None:
        await self._run(lambda: self._connect().execute("SELECT 1").fetchall())

    async def close(self) -> None:
        await self._writes.aclose()
        if self._fast is not None:
            self._fast.close()
            self._fast = None

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
