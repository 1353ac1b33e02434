"""The inference log: one SQLite file (WAL) of routed requests and the labels that arrive for them.

Several proxy processes on one host share the file: WAL lets readers run beside the one writer,
and each writer waits for the lock (busy timeout) in its own background thread, never in a
request (writer.py). Replicas on different hosts keep their own files and merge them with
`export_jsonl` / `import_jsonl` (rows and labels are keyed, so a second import adds nothing).

Rows (`routed`): time, request id, the router's representation (representation.py; the request
text only when keep_text), route score, scorer, router version, tier chosen and served, escalation
chain, cost. Labels (`labels`): request id, source, value in [0, 1], time, optional note; a request
may collect several (the gate's verdict, then a judge's, then the application's feedback).
"""

from __future__ import annotations

import base64
import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from policies.learning.labels import check_label
from policies.learning.representation import Representation, decode_tokens

FILENAME = "inference_log.sqlite3"
SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS routed (
    request_id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    repr_key TEXT NOT NULL,
    feats BLOB NOT NULL,
    emb BLOB NOT NULL,
    tokens BLOB NOT NULL,
    tok_width INTEGER NOT NULL,
    request_json TEXT,
    route_score REAL,
    scorer TEXT,
    router_version TEXT,
    tier_chosen TEXT,
    mode TEXT,
    tier_served TEXT,
    escalation TEXT,
    cost_usd REAL,
    done_ts REAL
);
CREATE INDEX IF NOT EXISTS routed_ts ON routed (ts);
CREATE TABLE IF NOT EXISTS labels (
    request_id TEXT NOT NULL,
    source TEXT NOT NULL,
    value REAL NOT NULL,
    ts REAL NOT NULL,
    note TEXT,
    PRIMARY KEY (request_id, source, ts)
);
CREATE INDEX IF NOT EXISTS labels_ts ON labels (ts);
"""
_ROUTE_COLS = (
    "request_id",
    "ts",
    "repr_key",
    "feats",
    "emb",
    "tokens",
    "tok_width",
    "request_json",
    "route_score",
    "scorer",
    "router_version",
    "tier_chosen",
    "mode",
)
_OUTCOME_COLS = ("tier_served", "escalation", "cost_usd", "done_ts")
_BLOBS = ("feats", "emb", "tokens")


@dataclass(frozen=True)
class RouteRow:
    request_id: str
    ts: float
    repr_key: str
    feats: bytes
    emb: bytes
    tokens: bytes
    tok_width: int
    request_json: str | None
    route_score: float | None
    scorer: str | None
    router_version: str | None
    tier_chosen: str | None
    mode: str | None


@dataclass(frozen=True)
class Outcome:
    request_id: str
    tier_served: str | None
    escalation: str | None  # the chain, e.g. "local-llama>deepseek-chat"; None: not escalated
    cost_usd: float | None
    done_ts: float


@dataclass(frozen=True)
class Cost:
    """A ledger row of a logged request (its own call, a fallback, an escalation): added to the row's cost."""

    request_id: str
    cost_usd: float


@dataclass(frozen=True)
class Label:
    request_id: str
    source: str
    value: float
    ts: float
    note: str | None = None


@dataclass
class LabelledRows:
    """The labelled rows of one representation key, oldest first."""

    ids: list[str]
    ts: np.ndarray  # request time
    rep: Representation
    label: np.ndarray  # combined label in [0, 1]
    weight: np.ndarray  # row weight in the fit
    sources: list[tuple[str, ...]]  # label sources of each row
    label_ts: np.ndarray  # time of each row's newest label
    skipped_other_key: int = 0  # labelled rows of another representation (no text to re-read)
    by_source: dict[str, int] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.ids)


def connect(path: Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=timeout_s, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across a process crash, one fsync per checkpoint
    conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
    return conn


def connect_read_only(path: Path, timeout_s: float = 5.0) -> sqlite3.Connection:
    """A connection that writes nothing, for a log on a read-only store. SQLite reads a WAL file through its `-shm`
    index, which it must create when the last writer removed it: in a folder it cannot write, the file is opened
    immutable instead (read as it is: nothing can be writing it there)."""
    for mode in ("mode=ro", "immutable=1"):
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?{mode}",
            uri=True,
            timeout=timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn
        except sqlite3.OperationalError:
            conn.close()
            if mode == "immutable=1":
                raise
    raise AssertionError("unreachable")


class InferenceLog:
    """One connection to the log file; methods are serialised by a lock (one object may be shared by threads).
    `read_only`: an existing log opened to be read (`synqra learn --dry-run`, `--export`), on a store it may not write."""

    def __init__(self, path: str | Path, timeout_s: float = 5.0, read_only: bool = False) -> None:
        path = Path(path)
        self.path = path / FILENAME if path.is_dir() or path.suffix == "" else path
        self._lock = threading.Lock()
        self._conn = connect_read_only(self.path, timeout_s) if read_only else connect(self.path, timeout_s)
        with self._lock:
            if not read_only:
                self._conn.executescript(_SCHEMA)
                self._conn.execute(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
                )
            row = self._conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = row[0] if row else None
        if found is None or int(found) != SCHEMA_VERSION:
            raise RuntimeError(f"inference log {self.path} has schema {found}, this code reads {SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- writing ------------------------------------------------------------------------------

    def write(
        self,
        routes: Iterable[RouteRow] = (),
        outcomes: Iterable[Outcome] = (),
        labels: Iterable[Label] = (),
        costs: Iterable[Cost] = (),
    ) -> None:
        """One transaction: rows first, then outcomes, costs and labels (which may refer to those rows). An outcome
        without a cost keeps the row's; each Cost adds to it (a stream's call is settled after its outcome)."""
        routes, outcomes, labels, costs = list(routes), list(outcomes), list(labels), list(costs)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                if routes:
                    self._insert_folded(routes, outcomes, costs)
                else:
                    self._update(outcomes, costs)
                if labels:
                    self._conn.executemany(
                        "INSERT OR IGNORE INTO labels (request_id, source, value, ts, note) VALUES (?, ?, ?, ?, ?)",
                        [(x.request_id, x.source, float(x.value), x.ts, x.note) for x in labels],
                    )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def _insert_folded(self, routes: list[RouteRow], outcomes: list[Outcome], costs: list[Cost]) -> None:
        """The rows with the outcomes and costs of this same write already in them: one INSERT per row where an
        INSERT and two UPDATEs rewrote it (a routed request's row, outcome and cost mostly share a batch). The
        columns end as the UPDATEs would leave them: outcomes in order (tier, chain and time the last one's, the
        cost the last one given), then each cost added. A row whose id is stored already is not inserted: then the
        write is undone and made the plain way."""
        fields: dict[str, list[Any]] = {r.request_id: [None, None, None, None] for r in routes}
        rest_outcomes = [o for o in outcomes if o.request_id not in fields]
        for o in outcomes:
            if (f := fields.get(o.request_id)) is not None:
                f[0], f[1], f[3] = o.tier_served, o.escalation, o.done_ts
                if o.cost_usd is not None:
                    f[2] = o.cost_usd
        rest_costs = [c for c in costs if c.request_id not in fields]
        for c in costs:
            if (f := fields.get(c.request_id)) is not None:
                f[2] = (f[2] or 0) + c.cost_usd  # COALESCE(cost_usd, 0) + ?
        cols = _ROUTE_COLS + _OUTCOME_COLS
        self._conn.execute("SAVEPOINT folded")
        before = self._conn.total_changes
        self._conn.executemany(
            f"INSERT OR IGNORE INTO routed ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
            [(*(getattr(r, c) for c in _ROUTE_COLS), *fields[r.request_id]) for r in routes],
        )
        if self._conn.total_changes - before == len(routes):
            self._conn.execute("RELEASE folded")
            self._update(rest_outcomes, rest_costs)
            return
        # An id met twice (in this write, or stored before): its first row stays, and gets every outcome and cost.
        self._conn.execute("ROLLBACK TO folded")
        self._conn.execute("RELEASE folded")
        self._conn.executemany(
            f"INSERT OR IGNORE INTO routed ({', '.join(_ROUTE_COLS)}) VALUES ({', '.join('?' * len(_ROUTE_COLS))})",
            [tuple(getattr(r, c) for c in _ROUTE_COLS) for r in routes],
        )
        self._update(outcomes, costs)

    def _update(self, outcomes: list[Outcome], costs: list[Cost]) -> None:
        if outcomes:
            self._conn.executemany(
                "UPDATE routed SET tier_served = ?, escalation = ?, cost_usd = COALESCE(?, cost_usd), done_ts = ? "
                "WHERE request_id = ?",
                [(o.tier_served, o.escalation, o.cost_usd, o.done_ts, o.request_id) for o in outcomes],
            )
        if costs:
            self._conn.executemany(
                "UPDATE routed SET cost_usd = COALESCE(cost_usd, 0) + ? WHERE request_id = ?",
                [(c.cost_usd, c.request_id) for c in costs],
            )

    def add_label(
        self, request_id: str, source: str, value: float, ts: float | None = None, note: str | None = None
    ) -> None:
        check_label(source, value)
        self.write(labels=[Label(request_id, source, float(value), time.time() if ts is None else ts, note)])

    def purge(self, retention_days: float, now: float | None = None) -> int:
        """Delete rows older than retention_days with their labels, and labels that old of requests never
        logged. Returns the number of rows deleted."""
        cutoff = (time.time() if now is None else now) - retention_days * 86400.0
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                self._conn.execute(
                    "DELETE FROM labels WHERE request_id IN (SELECT request_id FROM routed WHERE ts < ?)", (cutoff,)
                )
                n = self._conn.execute("DELETE FROM routed WHERE ts < ?", (cutoff,)).rowcount
                # Labels of requests never logged (a dropped row): kept as long as a row would be.
                self._conn.execute(
                    "DELETE FROM labels WHERE ts < ? AND request_id NOT IN (SELECT request_id FROM routed)", (cutoff,)
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return n

    # --- reading ------------------------------------------------------------------------------

    def exists(self, request_id: str) -> bool:
        with self._lock:
            return self._conn.execute("SELECT 1 FROM routed WHERE request_id = ?", (request_id,)).fetchone() is not None

    def row(self, request_id: str) -> dict[str, Any] | None:
        """A row's plain columns (no blobs) and its labels, or None."""
        cols = [c for c in _ROUTE_COLS + _OUTCOME_COLS if c not in _BLOBS]
        with self._lock:
            r = self._conn.execute(
                f"SELECT {', '.join(cols)} FROM routed WHERE request_id = ?", (request_id,)
            ).fetchone()
            if r is None:
                return None
            labels = self._conn.execute(
                "SELECT source, value, ts, note FROM labels WHERE request_id = ? ORDER BY ts", (request_id,)
            ).fetchall()
        out = dict(zip(cols, r))
        out["labels"] = [dict(zip(("source", "value", "ts", "note"), x)) for x in labels]
        return out

    def counts(self) -> dict[str, int]:
        with self._lock:
            rows = self._conn.execute("SELECT COUNT(*) FROM routed").fetchone()[0]
            labels = self._conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0]
        return {"rows": int(rows), "labels": int(labels)}

    def labels_since(self, ts: float) -> int:
        """Labels of logged requests that arrived after ts (the schedule's "enough new labels" test)."""
        with self._lock:
            return int(
                self._conn.execute(
                    "SELECT COUNT(*) FROM labels l JOIN routed r USING (request_id) WHERE l.ts > ?", (ts,)
                ).fetchone()[0]
            )

    def representation(
        self, key: str, request_ids: list[str] | None = None
    ) -> tuple[list[str], np.ndarray, Representation]:
        """(ids, request times, Representation) of every row logged under `key`, oldest first
        (or of `request_ids`, in that order, those missing left out)."""
        sql = "SELECT request_id, ts, feats, emb, tokens, tok_width FROM routed WHERE repr_key = ?"
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY ts, request_id", (key,)).fetchall()
        if request_ids is not None:
            by_id = {r[0]: r for r in rows}
            rows = [by_id[i] for i in request_ids if i in by_id]
        return _decode(rows, key)

    def other_key_rows(self, key: str) -> list[tuple[str, float, str | None]]:
        """(request id, time, request JSON or None) of rows logged under another representation."""
        with self._lock:
            return self._conn.execute(
                "SELECT request_id, ts, request_json FROM routed WHERE repr_key != ? ORDER BY ts", (key,)
            ).fetchall()

    def route_scores(self, version: str, scorer: str) -> list[float]:
        """Route scores of the requests router `version` routed with `scorer`, oldest first: one scale, the one a
        threshold of that version cuts (another version's scores, or the structural fallback rule's, are not)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT route_score FROM routed WHERE router_version = ? AND scorer = ? AND route_score IS NOT NULL "
                "ORDER BY ts, request_id",
                (version, scorer),
            ).fetchall()
        return [float(r[0]) for r in rows]

    def gate_labels(self, version: str, scorer: str) -> list[tuple[float, float]]:
        """(route score, label) of the quality gate's verdicts on the local tier's first answers (live `gate`, and
        shadow mode's `shadow_gate`) to requests router `version` routed with `scorer`, oldest first."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT r.route_score, l.value FROM labels l JOIN routed r USING (request_id) "
                "WHERE l.source IN ('gate', 'shadow_gate') AND r.router_version = ? AND r.scorer = ? "
                "AND r.route_score IS NOT NULL ORDER BY l.ts, r.request_id",
                (version, scorer),
            ).fetchall()
        return [(float(s), float(v)) for s, v in rows]

    def labels(self) -> dict[str, list[tuple[str, float, float]]]:
        """request id -> [(source, value, time)] of every label, oldest first."""
        out: dict[str, list[tuple[str, float, float]]] = {}
        with self._lock:
            for rid, source, value, ts in self._conn.execute(
                "SELECT request_id, source, value, ts FROM labels ORDER BY ts"
            ):
                out.setdefault(rid, []).append((source, float(value), float(ts)))
        return out

    # --- merging replicas ---------------------------------------------------------------------

    def export_jsonl(self, out: IO[str], since: float | None = None) -> tuple[int, int]:
        """Rows (request time >= since) and all their labels as JSON lines; blobs base64. Returns (rows, labels)."""
        where, args = ("WHERE ts >= ?", (since,)) if since is not None else ("", ())
        cols = _ROUTE_COLS + _OUTCOME_COLS
        n_rows = n_labels = 0
        with self._lock:
            rows = self._conn.execute(f"SELECT {', '.join(cols)} FROM routed {where} ORDER BY ts", args).fetchall()
            ids = {r[0] for r in rows}
            labels = [
                x
                for x in self._conn.execute("SELECT request_id, source, value, ts, note FROM labels ORDER BY ts")
                if x[0] in ids
            ]
        for r in rows:
            obj = {c: (base64.b64encode(v).decode() if c in _BLOBS else v) for c, v in zip(cols, r)}
            out.write(json.dumps({"row": obj}) + "\n")
            n_rows += 1
        for x in labels:
            out.write(json.dumps({"label": dict(zip(("request_id", "source", "value", "ts", "note"), x))}) + "\n")
            n_labels += 1
        return n_rows, n_labels

    def import_jsonl(self, lines: Iterable[str]) -> tuple[int, int]:
        """Add another replica's export (rows already here are kept as they are). Returns (rows, labels) added."""
        routes: list[RouteRow] = []
        outcomes: list[Outcome] = []
        labels: list[Label] = []
        for n, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if "row" in obj:
                    r = obj["row"]
                    vals: dict[str, Any] = {
                        c: (base64.b64decode(r[c]) if c in _BLOBS else r.get(c)) for c in _ROUTE_COLS
                    }
                    routes.append(RouteRow(**vals))
                    if r.get("done_ts") is not None:
                        outcomes.append(
                            Outcome(
                                r["request_id"],
                                r.get("tier_served"),
                                r.get("escalation"),
                                r.get("cost_usd"),
                                r["done_ts"],
                            )
                        )
                else:
                    x = obj["label"]
                    check_label(x["source"], x["value"])
                    labels.append(Label(x["request_id"], x["source"], float(x["value"]), float(x["ts"]), x.get("note")))
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"line {n}: not an inference-log export line ({e})") from None
        before = self.counts()
        with self._lock:  # outcomes only for rows this import adds: a row here already keeps its own
            have = {rid for (rid,) in self._conn.execute("SELECT request_id FROM routed")}
        self.write(routes, [o for o in outcomes if o.request_id not in have], labels)
        after = self.counts()
        return after["rows"] - before["rows"], after["labels"] - before["labels"]


def _decode(rows: list[tuple[Any, ...]], key: str) -> tuple[list[str], np.ndarray, Representation]:
    from policies.routing.features import FEATURE_NAMES

    k = len(FEATURE_NAMES)
    if not rows:
        return [], np.zeros(0), Representation(np.zeros((0, k), np.float32), np.zeros((0, 0), np.float32), [], key)
    ids = [r[0] for r in rows]
    ts = np.array([r[1] for r in rows], dtype=np.float64)
    feats = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), -1)
    emb = np.frombuffer(b"".join(r[3] for r in rows), dtype=np.float16).reshape(len(rows), -1)
    if feats.shape[1] != k:
        raise ValueError(f"rows of key {key!r} have {feats.shape[1]} features, this code has {k}")
    tokens = [decode_tokens(r[4], r[5]) for r in rows]
    return ids, ts, Representation(feats.copy(), emb.astype(np.float32), tokens, key)


def combine_labels(
    labels: list[tuple[str, float, float]], weights: Mapping[str, float]
) -> tuple[float, float, tuple[str, ...], float] | None:
    """(label, weight, sources, newest label time) of one request from its labels: the newest label of
    each source, averaged with the sources' weights; None when no source counts."""
    newest: dict[str, tuple[float, float]] = {}
    for source, value, ts in labels:
        if source not in newest or ts >= newest[source][1]:
            newest[source] = (value, ts)
    used = {s: v for s, v in newest.items() if weights.get(s, 0.0) > 0}
    if not used:
        return None
    total = sum(weights[s] for s in used)
    value = sum(weights[s] * v[0] for s, v in used.items()) / total
    return value, min(1.0, total), tuple(sorted(used)), max(v[1] for v in used.values())
