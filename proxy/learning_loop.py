"""The proxy's side of routing that learns (policies/learning): log, label, reload.

Per worker process: the router serves the current learnt version (`synqra learn` installs one; the shipped
artifact until then); every routed request becomes a row of the inference log (a queue put, written by a
background thread; never blocks or fails the request); the quality gate's verdict on a local answer, the
shadow evaluation's, a judge's and the application's feedback become labels; a new version installed by any
process is picked up within `RELOAD_EVERY_S`, without a restart, and named in `x-synqra-router-version`.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
from collections import OrderedDict
from pathlib import Path
from typing import Any

from policies.budget.records import LedgerRecord
from policies.common.request_state import RequestState
from policies.judging import JUDGE_MAX_TOKENS, pairwise_messages_both_orders, parse_verdict
from policies.learning.labels import label_from_gate, label_from_judge
from policies.learning.registry import RouterRegistry, base_version
from policies.learning.representation import Representer
from policies.learning.store import FILENAME as LOG_FILENAME
from policies.learning.store import InferenceLog
from policies.learning.writer import InferenceLogWriter
from policies.routing.scorer import DEFAULT_ARTIFACT, ArtifactError, LearnedScorer

log = logging.getLogger("synqra.learning")

RELOAD_EVERY_S = 2.0  # how often a worker reads routers/CURRENT (one small file)
PENDING_PAIRS = 1000  # shadow requests waiting for their second answer (the local one comes in the background)
# A judge's verdict per order: which answer won, with the local answer shown first (A) or second.
_LOCAL_FIRST = {"A": "local", "B": "served", "C": "tie"}
_SERVED_FIRST = {"A": "served", "B": "local", "C": "tie"}


class LearningLoop:
    def __init__(self, rt: Any) -> None:
        s = rt.config.synqra
        self.settings = s.learning
        self.rt = rt
        self.router = rt.router
        self.folder = self.settings.store_path(s.server.data_path)
        base = Path(s.routing.artifact_path).expanduser() if s.routing.artifact_path else DEFAULT_ARTIFACT
        self.registry = RouterRegistry(self.folder / "routers", base)
        self.version: str | None = None  # the serving router's version (None: the structural fallback rule)
        self.writer: InferenceLogWriter | None = None
        self.log_problem: str | None = None  # why the inference log could not be opened (None: it was, or is off)
        self._seen = ""  # the CURRENT name last applied
        self._unreadable = ""  # why CURRENT could not be read last time (logged once)
        self._task: asyncio.Task[None] | None = None
        self._judging: set[asyncio.Task[None]] = set()
        self._pairs: OrderedDict[str, dict[str, Any]] = OrderedDict()  # request id -> the answers seen so far
        from proxy.judge import JudgeCaller

        j = self.settings.judge
        self.judge = JudgeCaller(rt, "learning", j.model, JUDGE_MAX_TOKENS)

    # --- start, reload, stop ----------------------------------------------------------------------

    def start(self) -> None:
        """At warm-up: serve the installed version, start the log writer and the reload poll."""
        name = self._read_current()
        if name is not None:
            self._apply(name)
        elif isinstance(self.router.scorer, LearnedScorer):  # CURRENT unreadable: the router this worker built serves
            self.version = base_version(self.registry.base_artifact)
        # The reload poll first: an inference log that cannot be opened ended this method before it, and the worker
        # never followed an install or a rollback again.
        # Called again (warm-up retries a start that raised): what started already is not started twice.
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._poll())
        if self.writer is None and self.settings.enabled and isinstance(self.router.scorer, LearnedScorer):
            inference_log = self._open_log()
            if inference_log is not None:
                self.writer = InferenceLogWriter(
                    inference_log, Representer(self.router.scorer, self.router.embedder), self.settings
                )
                self.writer.start()
        if self.writer is not None and self._ledger_row not in self.rt.budget.listeners:
            self.rt.budget.listeners.append(self._ledger_row)

    def _open_log(self) -> InferenceLog | None:
        """The inference log, or None when it cannot be opened (a file that is not a database, another schema, a
        folder that cannot be made): one ERROR line says which file and what to do, `log_problem` keeps why (the
        `synqra_learning_log_writable` gauge reads 0), and the proxy serves on. The file is left as it is."""
        path = self.folder / LOG_FILENAME
        try:
            return InferenceLog(self.folder)
        except (sqlite3.DatabaseError, RuntimeError, OSError) as e:
            self.log_problem = f"{type(e).__name__}: {e}"
            log.error(
                "inference log %s cannot be opened (%s): it is not being written and routing does not learn; serving "
                "is unaffected. Move it aside (it is left as it is) and restart the proxy to start a new one",
                path,
                self.log_problem,
            )
            return None

    def _apply(self, name: str) -> None:
        """Serve the version CURRENT names (the base when none); keep the serving one if it cannot load."""
        self._seen = name
        if not isinstance(self.router.scorer, LearnedScorer):
            return  # the artifact did not load at all: the structural rule routes, nothing to swap
        try:
            scorer, version = self.registry.load_current()
            if version != self.version:
                self.router.use_scorer(scorer)
                if self.writer is not None:
                    self.writer.set_representer(Representer(scorer, self.router.embedder))
                if self.version is not None:
                    log.info("router version %s installed (was %s)", version, self.version)
                self.version = version
        except (ArtifactError, ValueError, OSError) as e:  # a corrupt, foreign or unreadable version: keep what serves
            log.error("router version %s refused, keeping %s: %s", name, self.version, e)
            if self.version is None:  # a worker starting: the router it built serves, named as the registry names it
                self.version = base_version(self.registry.base_artifact)

    def _read_current(self) -> str | None:
        """The version CURRENT names, or None when it cannot be read (not text, not a file: logged once per cause)."""
        try:
            name = self.registry.current_version()
        except Exception as e:
            if repr(e) != self._unreadable:
                log.error("routers/CURRENT unreadable, keeping %s: %s: %s", self.version, type(e).__name__, e)
            self._unreadable = repr(e)
            return None
        self._unreadable = ""
        return name

    async def _poll(self) -> None:
        """Until shutdown: an unreadable CURRENT keeps the serving router and the poll goes on (it ended the poll,
        and the worker never reloaded again)."""
        while True:
            await asyncio.sleep(RELOAD_EVERY_S)
            name = await asyncio.to_thread(self._read_current)
            if name is not None and name != self._seen:
                self._apply(name)

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
        for task in list(self._judging):
            task.cancel()
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)

    # --- the request side: never blocks, never raises ---------------------------------------------

    def route(self, state: RequestState, view: dict[str, Any], decision: Any, mode: str) -> None:
        if self.writer is not None:
            self.writer.log_route(state.request_id, view, decision, router_version=self.version, mode=mode)

    def outcome(self, state: RequestState) -> None:
        """A routed request ended: what answered, after fallbacks and escalations."""
        if self.writer is not None and state.routing is not None:
            chain = (
                state.quality.escalated if state.quality is not None and state.quality.escalated != "false" else None
            )
            self.writer.log_outcome(state.request_id, state.route, chain)

    def _ledger_row(self, record: LedgerRecord) -> None:
        """A BudgetGuard listener: each call made for a logged request (its own, a fallback's, an escalation's, the
        quality gate's judge) adds to the row's cost, whenever it is settled; this loop's own judge calls are the
        learning's cost, not the request's."""
        if self.writer is not None and not self.judge.made(record):
            self.writer.log_cost(record.request_id.split(":", 1)[0], record.cost_usd)

    def gate_verdict(self, request_id: str, action: str, shadow: bool = False) -> None:
        """The quality gate's verdict on a local answer, live (`gate`) or on a shadow evaluation (`shadow_gate`)."""
        if self.writer is not None:
            self.writer.log_label(request_id, "shadow_gate" if shadow else "gate", label_from_gate(action))

    def label(self, request_id: str, source: str, value: float, note: str | None = None) -> bool:
        return self.writer is not None and self.writer.log_label(request_id, source, value, note)

    # --- the pairwise judge: local answer against the answer served ------------------------------------

    def offer(self, state: RequestState, side: str, question: str, text: str) -> None:
        """One of a shadow request's two answers ("local": the shadow evaluation's, "served": the incumbent's);
        once both are in, the judge compares them in the background (never delaying the client)."""
        if self.writer is None or not self.settings.judge.enabled or not text.strip():
            return
        pair = self._pairs.setdefault(state.request_id, {"state": state, "question": question})
        pair[side] = text
        while len(self._pairs) > PENDING_PAIRS:
            self._pairs.popitem(last=False)
        if "local" in pair and "served" in pair:
            del self._pairs[state.request_id]
            self._judge_later(state, pair["question"], pair["local"], pair["served"])

    def escalated(self, state: RequestState, question: str, local: str, served: str) -> None:
        """A live request whose local answer the gate escalated: judged for a `live_share` sample."""
        j = self.settings.judge
        if self.writer is not None and j.enabled and j.live_share > 0 and random.random() < j.live_share:
            self._judge_later(state, question, local, served)

    def _judge_later(self, state: RequestState, question: str, local: str, served: str) -> None:
        task = asyncio.get_running_loop().create_task(self._judge(state, question, local, served))
        self._judging.add(task)
        task.add_done_callback(self._judging.discard)

    async def _judge(self, state: RequestState, question: str, local: str, served: str) -> None:
        """Both orders (the judge favours a position); a label only when both verdicts could be read."""
        # Both calls reserved before the first is made: at the judge's monthly limit the pair runs whole or not at all.
        replies = await self.judge.ask_all(
            state, list(pairwise_messages_both_orders(question, local, served)), accept=lambda t: bool(parse_verdict(t))
        )
        if replies is None:
            return  # skipped, refused, failed or unreadable: no label rather than half of one
        winners = [read[v] for read, v in zip((_LOCAL_FIRST, _SERVED_FIRST), map(parse_verdict, replies)) if v]
        self.label(state.request_id, "judge", label_from_judge(winners), note=",".join(winners))
