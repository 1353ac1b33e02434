"""The inference log's writer: the request path only puts a small tuple on a bounded queue.

    writer = InferenceLogWriter(InferenceLog(folder), Representer(router.scorer, router.embedder),
                                settings)              # once per process, after the router is built
    writer.start()
    writer.log_route(request_id, request, decision, router_version="...", mode="live")  # routing hook
    writer.log_outcome(request_id, tier_served, escalation_chain, cost_usd)           # after the answer
    writer.log_cost(request_id, cost_usd)             # each ledger row of the request (adds to the row's cost)
    writer.log_label(request_id, "gate", label_from_gate(action))                      # whenever one arrives
    writer.close()                                                                     # at shutdown

Every `log_*` call returns at once (True: queued, False: dropped). It never raises for a full queue,
a bad value or a broken store: drops are counted in `dropped` (by kind), which the proxy exports as
a metric. A daemon thread takes batches off the queue, takes the router's representation of the new
rows from their decisions (the features, embedding and token ids the router computed; a row whose decision
lacks them is represented here), writes each batch in one transaction, and purges rows past retention once
an hour. The thread shares the process's core and GIL with the request path: what the router computed is
never computed twice.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping
from typing import Any

import numpy as np

from policies.common.learning_settings import LearningSettings
from policies.learning.labels import check_label
from policies.learning.representation import Representation, Representer, encode_row, snapshot
from policies.learning.store import Cost, InferenceLog, Label, Outcome, RouteRow

log = logging.getLogger("synqra.learning")

BATCH_MAX = 256  # items per transaction
FLUSH_INTERVAL_S = 0.2  # how often the thread writes what was queued meanwhile
PURGE_INTERVAL_S = 3600.0
WRITE_ATTEMPTS = 3  # a batch the store refuses this often (locked, disk full) is dropped and counted
_STOP = object()
# A routed request as queued: (request id, ts, request snapshot, the router's features, score, tier, router
# version, mode, what the router embedded (RouteDecision.embedded)).
_RouteItem = tuple[str, float, dict[str, Any], Any, float, str, str | None, str, Any]
# One row's numbers: (features, embedding, distinct token ids).
_Numbers = tuple[np.ndarray, np.ndarray, np.ndarray]


class InferenceLogWriter:
    def __init__(
        self,
        store: InferenceLog,
        representer: Representer,
        settings: LearningSettings,
        flush_interval_s: float = FLUSH_INTERVAL_S,
    ) -> None:
        self.store = store
        self._representer = representer
        self.keep_text = settings.keep_text
        self.retention_days = settings.retention_days
        # A deque, not a queue.Queue: append and popleft are atomic C calls, where Queue.put_nowait takes a
        # Condition's lock and notifies in Python (~3 us of the request path). Bounded by the length test in _put.
        self._queue: deque[tuple[str, Any]] = deque()
        self._queue_size = settings.queue_size
        self._flush_interval = flush_interval_s
        self._lock = threading.Lock()
        self.dropped: Counter[str] = Counter()  # kind ("route", "outcome", "label", "cost") -> items lost
        self.written: Counter[str] = Counter()
        self._thread: threading.Thread | None = None
        # Set by flush() and close(), the only puts that wake the thread (see _run).
        self._wake = threading.Event()
        self._last_purge = 0.0

    # --- the request side: never blocks, never raises ------------------------------------------

    def _put(self, kind: str, item: tuple[Any, ...]) -> bool:
        if len(self._queue) >= self._queue_size:
            self._drop(kind)
            return False
        self._queue.append((kind, item))
        return True

    def _drop(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.dropped[kind] += n

    def log_route(
        self,
        request_id: str,
        request: Mapping[str, Any],
        decision: Any,
        router_version: str | None = None,
        mode: str = "live",
        ts: float | None = None,
    ) -> bool:
        """A routed request: `decision` is the router's RouteDecision (tier, score, features, embedded)."""
        try:
            item: _RouteItem = (
                str(request_id),
                time.time() if ts is None else ts,
                snapshot(request),
                getattr(decision, "features", None),
                float(decision.score),
                str(decision.tier),
                router_version,
                mode,
                getattr(decision, "embedded", None),
            )
        except Exception:  # a decision without score/tier: nothing to log, and the request goes on
            self._drop("route")
            return False
        return self._put("route", item)

    def log_outcome(
        self,
        request_id: str,
        tier_served: str | None,
        escalation: str | list[str] | None = None,
        cost_usd: float | None = None,
    ) -> bool:
        """What answered (after fallbacks and escalations), the chain (list or "a>b"), the request's total cost."""
        chain = ">".join(escalation) if isinstance(escalation, (list, tuple)) else escalation
        return self._put("outcome", (str(request_id), tier_served, chain or None, cost_usd, time.time()))

    def log_cost(self, request_id: str, cost_usd: float) -> bool:
        """One call made for a logged request (a ledger row: the call itself, a fallback, an escalation), added to
        the row's cost whenever it is settled (a stream's after its outcome)."""
        try:
            item = (str(request_id), float(cost_usd))
        except (TypeError, ValueError):
            self._drop("cost")
            return False
        return self._put("cost", item)

    def log_label(self, request_id: str, source: str, value: float, note: str | None = None) -> bool:
        """A label for a logged request (labels.SOURCES; 1 = the local answer was clearly not good enough)."""
        try:
            check_label(source, value)
        except ValueError as e:
            log.warning("label for %s dropped: %s", request_id, e)
            self._drop("label")
            return False
        return self._put("label", (str(request_id), source, float(value), time.time(), note))

    def set_representer(self, representer: Representer) -> None:
        """After the proxy reloads the router (a new artifact may read another embedded length)."""
        self._representer = representer

    @property
    def queued(self) -> int:
        return len(self._queue)

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="synqra-inference-log", daemon=True)
            self._thread.start()

    def flush(self, timeout_s: float = 5.0) -> bool:
        """Wait until everything queued before this call is written (e.g. before looking a request id up)."""
        if self._thread is None or not self._thread.is_alive():
            return not self._queue
        done = threading.Event()
        self._queue.append(("flush", done))  # a marker is never refused for a full queue
        self._wake.set()
        return done.wait(timeout_s)

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued (up to timeout_s), then stop the thread. Items queued later are dropped."""
        if self._thread is None:
            return
        self._queue.append(("stop", _STOP))
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    # --- the background thread ---------------------------------------------------------------------

    def _run(self) -> None:
        stop = False
        while not stop:
            # Woken by flush() and close() only: a thread blocked on the queue was woken by every request's put,
            # which then paid for a thread switch and a GIL hand-over (~0.1 ms of the proxy's CPU per request).
            self._wake.wait(self._flush_interval)
            self._wake.clear()
            stop = self._drain()
            self._maybe_purge()

    def _drain(self) -> bool:
        """Write what is queued, BATCH_MAX items per transaction, answering each flush request once what was
        queued before it is written; True when the stop marker came (what was queued after it is left)."""
        items: list[tuple[str, Any]] = []
        while True:
            try:
                kind, x = self._queue.popleft()
            except IndexError:
                self._write(items)
                return False
            if kind == "stop":
                self._write(items)
                return True
            if kind == "flush":
                self._write(items)
                items = []
                x.set()
                continue
            items.append((kind, x))
            if len(items) == BATCH_MAX:
                self._write(items)
                items = []

    def _write(self, items: list[tuple[str, Any]]) -> None:
        if not items:
            return
        routes = [x for k, x in items if k == "route"]
        outcomes = [Outcome(*x) for k, x in items if k == "outcome"]
        labels = [Label(*x) for k, x in items if k == "label"]
        costs = [Cost(*x) for k, x in items if k == "cost"]
        rows = self._rows(routes)
        for attempt in range(WRITE_ATTEMPTS):
            try:
                self.store.write(rows, outcomes, labels, costs)
                with self._lock:
                    self.written.update(
                        {"route": len(rows), "outcome": len(outcomes), "label": len(labels), "cost": len(costs)}
                    )
                return
            except Exception as e:  # locked past the busy timeout, disk full, file removed...
                log.warning("inference log write failed (attempt %d of %d): %s", attempt + 1, WRITE_ATTEMPTS, e)
                time.sleep(0.1 * (attempt + 1))
        self._drop("route", len(rows))
        self._drop("outcome", len(outcomes))
        self._drop("label", len(labels))
        self._drop("cost", len(costs))

    def _rows(self, routes: list[_RouteItem]) -> list[RouteRow]:
        """The new rows: numbers from their decisions where they carry them, the rest represented in one batch;
        a request the features cannot read is dropped alone."""
        if not routes:
            return []
        rep = self._representer
        numbers: dict[int, _Numbers] = {}
        for i, x in enumerate(routes):
            found = rep.from_decision(x[3], x[8])
            if found is not None:
                numbers[i] = found
        rest = [i for i in range(len(routes)) if i not in numbers]
        if rest:
            numbers.update(self._represent(rep, routes, rest))
        out = []
        for i, (rid, ts, req, feats, score, tier, version, mode, _) in enumerate(routes):
            if i not in numbers:
                continue
            f, e, t, width = encode_row(*numbers[i])
            text = json.dumps(req, default=str) if self.keep_text else None
            scorer = feats.get("scorer") if isinstance(feats, Mapping) else None
            out.append(RouteRow(rid, ts, rep.key, f, e, t, width, text, score, scorer, version, tier, mode))
        return out

    def _represent(self, rep: Representer, routes: list[_RouteItem], which: list[int]) -> dict[int, _Numbers]:
        """The numbers of routes[i] for i in `which`, represented from their requests in one batch, or one by one
        when the batch fails (the requests that fail alone are dropped and counted)."""
        try:
            r = rep.represent([routes[i][2] for i in which], [routes[i][3] for i in which])
            ok = which
        except Exception:
            ok, parts = [], []
            for i in which:
                try:
                    parts.append(rep.represent([routes[i][2]], [routes[i][3]]))
                    ok.append(i)
                except Exception as exc:
                    log.warning("inference log: request %s not representable: %s", routes[i][0], exc)
            self._drop("route", len(which) - len(ok))
            if not ok:
                return {}
            r = Representation.concat(parts)
        return {i: (r.feats[j], r.emb[j], r.tokens[j]) for j, i in enumerate(ok)}

    def _maybe_purge(self) -> None:
        now = time.monotonic()
        if now - self._last_purge < PURGE_INTERVAL_S:
            return
        self._last_purge = now
        try:
            n = self.store.purge(self.retention_days)
            if n:
                log.info("inference log: purged %d rows older than %d days", n, self.retention_days)
        except Exception as e:
            log.warning("inference log purge failed: %s", e)
