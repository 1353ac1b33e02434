"""The embedded store: one SQLite file (WAL), shared safely by several processes.

Check-and-reserve runs inside BEGIN IMMEDIATE, which takes SQLite's write lock
up front, so no other connection can slip a reservation in between the check
and the insert. Month totals are kept by a trigger on the ledger, so they can
never disagree with it. All calls run on one dedicated thread per store: the
event loop never blocks on the file lock or an fsync. Writes that arrive while one
is running share the next transaction (policies.budget.coalesce), each in its own
savepoint.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable, TypeVar

from policies.budget.coalesce import Coalescer
from policies.budget.records import LedgerRecord, MonthTotals, ReserveOutcome, SettleOutcome
from policies.budget.store import StoreUnavailable

T = TypeVar("T")

_COLUMNS = [f.name for f in fields(LedgerRecord)]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, ts REAL NOT NULL,
    requested_model TEXT NOT NULL, served_model TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL,
    cost_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL, kind TEXT NOT NULL,
    api_key_hash TEXT, user TEXT, parent_id TEXT, local INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS ledger_month_ts ON ledger (month, ts);
CREATE TABLE IF NOT EXISTS totals (
    month TEXT PRIMARY KEY, committed_nano INTEGER NOT NULL, baseline_nano INTEGER NOT NULL,
    requests INTEGER NOT NULL, local_requests INTEGER NOT NULL,
    prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS ledger_totals AFTER INSERT ON ledger BEGIN
    INSERT INTO totals VALUES (NEW.month, NEW.cost_nano, NEW.baseline_nano, 1, NEW.local,
                               NEW.prompt_tokens, NEW.completion_tokens)
    ON CONFLICT (month) DO UPDATE SET
        committed_nano = committed_nano + excluded.committed_nano,
        baseline_nano = baseline_nano + excluded.baseline_nano,
        requests = requests + 1,
        local_requests = local_requests + excluded.local_requests,
        prompt_tokens = prompt_tokens + excluded.prompt_tokens,
        completion_tokens = completion_tokens + excluded.completion_tokens;
END;
CREATE TABLE IF NOT EXISTS reservations (
    request_id TEXT PRIMARY KEY, month TEXT NOT NULL, amount_nano INTEGER NOT NULL, expires_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS reservations_month_exp ON reservations (month, expires_at);
CREATE TABLE IF NOT EXISTS alerts (
    month TEXT NOT NULL, level TEXT NOT NULL, fired_at REAL NOT NULL, PRIMARY KEY (month, level)
);
"""


class SqliteStore:
    name = "sqlite"

    def __init__(self, path: Path, synchronous: str = "NORMAL", busy_timeout_ms: int = 5000) -> None:
        self.path = Path(path)
        self.synchronous = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="synqra-budget-sqlite")
        self._writes: Coalescer[Callable[[sqlite3.Connection], Any], Any] = Coalescer(self._send_writes)

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
                return
            except sqlite3.OperationalError as e:
                if "locked" not in str(e) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    def _tx_batch(self, bodies: list[Callable[[sqlite3.Connection], Any]]) -> list[Any]:
        """Run each body in one write transaction (BEGIN IMMEDIATE: the lock is taken before any
        read), each inside its own savepoint: a body that fails is undone alone, and its
        error (StoreUnavailable for SQLite errors) is its result. Nothing is visible
        to any caller before the COMMIT."""
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        out: list[Any] = []
        try:
            for body in bodies:
                conn.execute("SAVEPOINT op")
                try:
                    out.append(body(conn))
                except Exception as e:
                    conn.execute("ROLLBACK TO op")
                    out.append(self._unavailable(e) if isinstance(e, sqlite3.Error) else e)
                conn.execute("RELEASE op")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return out

    async def _tx(self, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run `body` in a write transaction; concurrent writes share one thread hop and one commit."""
        return await self._writes.run(body)

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
    def _spend(conn: sqlite3.Connection, month: str) -> tuple[int, int]:
        row = conn.execute("SELECT committed_nano FROM totals WHERE month = ?", (month,)).fetchone()
        (reserved,) = conn.execute(
            "SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ?", (month,)
        ).fetchone()
        return (row[0] if row else 0), reserved

    @staticmethod
    def _expire(conn: sqlite3.Connection, month: str, now: float) -> int:
        return conn.execute("DELETE FROM reservations WHERE month = ? AND expires_at < ?", (month, now)).rowcount

    # -- BudgetStore ------------------------------------------------------------------------
    async def reserve(
        self, month: str, request_id: str, amount_nano: int, stop_nano: int, expires_at: float, now: float
    ) -> ReserveOutcome:
        def body(conn: sqlite3.Connection) -> ReserveOutcome:
            self._expire(conn, month, now)
            committed, reserved = self._spend(conn, month)
            seen = conn.execute(
                "SELECT 1 FROM reservations WHERE request_id = ? UNION ALL SELECT 1 FROM ledger WHERE request_id = ?",
                (request_id, request_id),
            ).fetchone()
            if seen:
                return ReserveOutcome(False, committed, reserved, duplicate=True)
            if committed + reserved + amount_nano > stop_nano:
                return ReserveOutcome(False, committed, reserved)
            conn.execute("INSERT INTO reservations VALUES (?, ?, ?, ?)", (request_id, month, amount_nano, expires_at))
            return ReserveOutcome(True, committed, reserved + amount_nano)

        return await self._tx(body)

    async def settle(self, record: LedgerRecord) -> SettleOutcome:
        values = tuple(int(v) if isinstance(v, bool) else v for v in (getattr(record, c) for c in _COLUMNS))

        def body(conn: sqlite3.Connection) -> SettleOutcome:
            inserted = conn.execute(
                f"INSERT OR IGNORE INTO ledger ({','.join(_COLUMNS)}) VALUES ({','.join('?' * len(_COLUMNS))})", values
            ).rowcount
            conn.execute("DELETE FROM reservations WHERE request_id = ?", (record.request_id,))
            committed, reserved = self._spend(conn, record.month)
            return SettleOutcome(bool(inserted), committed, reserved)

        return await self._tx(body)

    async def release(self, month: str, request_id: str) -> None:
        await self._tx(lambda conn: conn.execute("DELETE FROM reservations WHERE request_id = ?", (request_id,)).rowcount)

    async def expire(self, month: str, now: float) -> int:
        return await self._tx(lambda conn: self._expire(conn, month, now))

    async def totals(self, month: str) -> MonthTotals:
        def read() -> MonthTotals:
            conn = self._connect()
            row = conn.execute(
                "SELECT committed_nano, baseline_nano, requests, local_requests, prompt_tokens, completion_tokens "
                "FROM totals WHERE month = ?",
                (month,),
            ).fetchone() or (0, 0, 0, 0, 0, 0)
            (reserved,) = conn.execute(
                "SELECT COALESCE(SUM(amount_nano), 0) FROM reservations WHERE month = ?", (month,)
            ).fetchone()
            alerts = tuple(r[0] for r in conn.execute("SELECT level FROM alerts WHERE month = ? ORDER BY level", (month,)))
            c, b, n, loc, pt, ct = row
            return MonthTotals(month, c, reserved, b, n, loc, pt, ct, alerts)

        return await self._run(read)

    async def mark_alert(self, month: str, level: str, now: float) -> bool:
        return await self._tx(
            lambda conn: conn.execute("INSERT OR IGNORE INTO alerts VALUES (?, ?, ?)", (month, level, now)).rowcount == 1
        )

    async def records(self, month: str) -> list[LedgerRecord]:
        def read() -> list[LedgerRecord]:
            rows = self._connect().execute(
                f"SELECT {','.join(_COLUMNS)} FROM ledger WHERE month = ? ORDER BY ts, rowid", (month,)
            ).fetchall()
            out = []
            for r in rows:
                d = dict(zip(_COLUMNS, r))
                d["local"] = bool(d["local"])
                out.append(LedgerRecord(**d))
            return out

        return await self._run(read)

    async def ping(self) -> None:
        await self._run(lambda: self._connect().execute("SELECT 1").fetchone())

    async def close(self) -> None:
        await self._writes.aclose()

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.get_running_loop().run_in_executor(self._pool, shut)
        self._pool.shutdown(wait=True)
