"""The budget guard: reserve before a paid call, settle after it, refuse past the stop level.

    guard = BudgetGuard.from_config(cfg)            # once, at start-up
    res = await guard.reserve(call_id, "claude-sonnet", prompt_tokens, max_tokens)  # may raise BudgetExhausted
    ...the model call...
    await guard.settle(res, CallRecord(call_id, "auto", "claude-sonnet", p_tok, c_tok))  # or guard.release(res)

Free (local) models are never blocked: reserve() returns an unheld zero
reservation without touching the store, and record_free() records a call that
had no reservation. pressure() and is_stopped() read an in-memory cache that
every store answer refreshes: no I/O, safe on the router's hot path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from policies.budget.alerts import WebhookAlerter
from policies.budget.policy import (
    STOP_ALERT,
    alert_key,
    budget_state,
    headroom_nano,
    level_key,
    levels_fired,
    levels_to_fire,
    projected_month_spend,
    thrift_pressure,
    usd_text,
)
from policies.budget.pricing import PriceBook, worst_case_cost
from policies.budget.records import CallRecord, LedgerRecord, MonthTotals, Reservation, TagTotals, to_nano, to_usd
from policies.budget.store import BudgetStore, StoreUnavailable
from policies.budget.stores import open_store
from policies.budget.window import MonthWindow, month_window, utc_now
from policies.common.budget_settings import UNTAGGED, BudgetSettings

if TYPE_CHECKING:
    from policies.common.settings import AppConfig

log = logging.getLogger("synqra.budget")
T = TypeVar("T")

# The longest a running call's reservation is kept past its TTL (far beyond any real call).
MAX_HOLD_S = 4 * 3600.0


_usd = usd_text  # tiny budgets keep their digits ($0.0035, not $0.00)


class BudgetExhausted(Exception):
    """A paid call refused: the month's budget is spent (or cannot be checked).

    `reason` is "exhausted", "store_unavailable" or "too_costly" (CallTooCostly); `resets_at` is when
    the month ends; `tag` names the tag whose own cap refused the call (None: the global budget did).
    Map it to HTTP 429 for explicit paid models, to the local model for `auto`.
    """

    def __init__(self, message: str, resets_at: datetime, reason: str = "exhausted", tag: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.resets_at = resets_at
        self.reason = reason
        self.tag = tag


class CallTooCostly(BudgetExhausted):
    """One call whose worst case alone passes the stop level: no month, however empty, pays for it.

    A BudgetExhausted (callers that only know that one still refuse it), but waiting for the reset
    does not help: the request itself must shrink (max_tokens), so it maps to HTTP 400, not 429.
    """

    def __init__(
        self, message: str, resets_at: datetime, worst_case_usd: float, allowed_usd: float, tag: str | None = None
    ) -> None:
        super().__init__(message, resets_at, reason="too_costly", tag=tag)
        self.worst_case_usd = worst_case_usd
        self.allowed_usd = allowed_usd


class DuplicateRequest(ValueError):
    """The request id is already reserved or recorded: ids must be unique per model call."""


TAG_ALERT_PREFIX = "tag:"


def _tag_alert_key(key: str, tag: str) -> str:
    """How a tag's alert is stored with the month's alerts ("tag:0.7@20:marketing"; key from alert_key)."""
    return f"{TAG_ALERT_PREFIX}{key}:{tag}"


def month_alerts(keys: Iterable[str]) -> list[str]:
    """The month's own alert keys among a month's stored ones (a tag's are the tag's)."""
    return [k for k in keys if not k.startswith(TAG_ALERT_PREFIX)]


def _utc_bounds(win: MonthWindow) -> tuple[datetime, datetime]:
    """The month's start and end as UTC datetimes: the same instants, compared with the clock's UTC `now` without
    the month zone's offset looked up on each comparison (2.8 -> ~1 us, several times a request)."""
    return win.start.astimezone(UTC), win.end.astimezone(UTC)


class TagCap(NamedTuple):
    """A tag's own cap in nano-dollars: its limit and its stop level (the month's stop_at ratio)."""

    limit_nano: int
    stop_nano: int


class BudgetGuard:
    def __init__(
        self,
        settings: BudgetSettings,
        prices: PriceBook,
        store: BudgetStore,
        now: Callable[[], datetime] = utc_now,
        alerter: WebhookAlerter | None = None,
    ) -> None:
        self.settings = settings
        self.prices = prices
        self.store = store
        self._now = now
        self.alerter = alerter
        self._limit_nano = to_nano(settings.monthly_limit_usd)
        self._stop_nano = to_nano(settings.monthly_limit_usd * settings.stop_at)
        self._levels = settings.all_alert_levels
        self._lowest_level = min(self._levels, default=math.inf)
        # Each capped tag's (limit, stop level) in nano-dollars: the global ratios apply to every cap.
        self._tag_caps = {
            tag: TagCap(to_nano(t.monthly_limit_usd), to_nano(t.monthly_limit_usd * settings.stop_at))
            for tag, t in settings.tags.items()
        }
        # Spend caps synqra sets for its own calls (a judge's monthly limit): the tag's limit in nano-dollars, a
        # hard stop held by the store across workers and replicas, with no alerts.
        self._spend_caps: dict[str, int] = {}
        self._window = month_window(now(), settings.timezone)
        self._bounds = _utc_bounds(self._window)
        self._reset_cache()
        self._open: dict[str, Reservation] = {}
        self._queue: deque[LedgerRecord] = deque()
        self._store_ok = True
        self._down_until = 0.0
        self._down_reason = ""
        self._flusher: asyncio.Task[None] | None = None
        self._maintainer: asyncio.Task[None] | None = None
        # Told of every ledger row as it is written (or queued): metrics. Must not raise or block.
        self.listeners: list[Callable[[LedgerRecord], None]] = []
        # Told of every alert as it fires, once per alert across the processes sharing the store: (level, tag),
        # level "0.7" or "stop", tag None for the month's whole budget. Metrics. Must not raise or block.
        self.alert_listeners: list[Callable[[str, str | None], None]] = []

    @classmethod
    def from_config(
        cls, cfg: AppConfig, now: Callable[[], datetime] = utc_now, env: Mapping[str, str] | None = None
    ) -> BudgetGuard:
        """Build from the app config. `env` (default os.environ) only supplies REDIS_URL."""
        s = cfg.synqra.budget
        prices = PriceBook.from_config(cfg, required=[*cfg.synqra.routing.tiers, s.baseline_model])
        store = open_store(s, cfg.synqra.server.data_path, os.environ if env is None else env)
        alerter = (
            WebhookAlerter(
                s.alert_webhook, s.alert_webhook_timeout_s, s.alert_webhook_attempts, s.alert_webhook_backoff_s
            )
            if s.alert_webhook
            else None
        )
        guard = cls(s, prices, store, now=now, alerter=alerter)
        # The judges' caps from the start, and for a reader without judges (`synqra report`): its by-tag figures
        # show each judge's limit.
        for tag, limit in cfg.synqra.judge_spend_limits().items():
            guard.cap_spend(tag, limit)
        return guard

    # -- cache (no I/O) ---------------------------------------------------------------------
    def _reset_cache(self) -> None:
        self._committed = 0
        self._reserved = 0
        self._fired: set[str] = set()
        self._min_refused: int | None = None
        self._last_totals: MonthTotals | None = None
        self._last_tags: dict[str, TagTotals] = {}

    def current_month(self) -> str:
        """The budget month now ("YYYY-MM" in the budget's time zone)."""
        return self._current_window().key

    def _current_window(self) -> MonthWindow:
        now = self._now()
        start, end = self._bounds
        if not start <= now < end:
            self._window = month_window(now, self.settings.timezone)
            self._bounds = _utc_bounds(self._window)
            self._reset_cache()  # a new month starts from zero; alerts re-arm
        return self._window

    def _observe(self, month: str, committed: int, reserved: int) -> None:
        if month == self._current_window().key:
            # Answers can arrive out of order; committed never decreases within a month.
            self._committed = max(self._committed, committed)
            self._reserved = reserved

    def pressure(self) -> float:
        """Thrift pressure 0..1 for the router (1 when paid calls are stopped). No I/O."""
        if self.is_stopped():
            return 1.0
        win = self._current_window()
        return thrift_pressure(self._committed / self._limit_nano, win.elapsed_share(self._now()), self.settings.thrift)

    def is_stopped(self) -> bool:
        """True when paid calls would be refused now (as far as this process knows). No I/O."""
        self._current_window()
        if not self._store_ok and self.settings.fail_mode == "closed":
            return True
        room = headroom_nano(self._committed, self._reserved, self._stop_nano)
        if room <= 0:
            return True
        # A refusal below the alert level is one oversized call, not a spent month.
        past_alert = self._committed + self._reserved >= self._limit_nano * self.settings.alert_at
        return past_alert and self._min_refused is not None and room < self._min_refused

    def is_free(self, model_name: str) -> bool:
        return self.prices.is_free(model_name)

    def output_ceiling(self, model_name: str) -> int:
        """The most output a call without an output allowance may be billed for (as `reserve` counts it)."""
        return self.prices.price(model_name).max_output_tokens or self.settings.default_max_output_tokens

    def snapshot(self) -> dict[str, float | bool]:
        """The month's figures this process knows without I/O (for metrics scrapes)."""
        self._current_window()
        return {
            "limit_usd": self.settings.monthly_limit_usd,
            "committed_usd": to_usd(self._committed),
            "reserved_usd": to_usd(self._reserved),
            "used_ratio": self._committed / self._limit_nano if self._limit_nano else 1.0,
            "pressure": self.pressure(),
            "stopped": self.is_stopped(),
        }

    def count_prompt_tokens(
        self, model_name: str, messages: list[dict[str, Any]] | None = None, text: str | None = None
    ) -> int:
        return self.prices.count_prompt_tokens(model_name, messages=messages, text=text)

    # -- store access with a circuit breaker ------------------------------------------------
    async def _store_call(self, op: Callable[[], Awaitable[T]]) -> T:
        if not self._store_ok and time.monotonic() < self._down_until:
            raise StoreUnavailable(self._down_reason)
        try:
            out = await op()
        except StoreUnavailable as e:
            if self._store_ok:
                log.error(
                    "%s; paid calls %s until it is back",
                    e,
                    "are refused" if self.settings.fail_mode == "closed" else "run unreserved",
                )
            self._store_ok = False
            self._down_reason = str(e)
            self._down_until = time.monotonic() + self.settings.store_retry_after_s
            raise
        if not self._store_ok:
            self._store_ok = True
            log.warning("budget store %s reachable again", self.store.name)
        return out

    def _ensure_started(self) -> None:
        if self._maintainer is None or self._maintainer.done():
            self._maintainer = asyncio.get_running_loop().create_task(self._maintain())

    async def start(self) -> None:
        """Optional at start-up: check the store and load this month's totals (errors are logged)."""
        self._ensure_started()
        await self.refresh()

    async def refresh(self) -> MonthTotals | None:
        """Drop expired reservations and reload the month's totals into the cache."""
        win = self._current_window()
        try:
            await self._store_call(lambda: self.store.expire(win.key, self._now().timestamp()))
            t = await self._store_call(lambda: self.store.totals(win.key))
        except StoreUnavailable:
            return None
        self._observe(t.month, t.committed_nano, t.reserved_nano)
        self._fired.update(t.alerts)
        self._last_totals = t
        return t

    async def _maintain(self) -> None:
        interval = min(30.0, self.settings.reservation_ttl_s / 4)
        while True:
            await asyncio.sleep(interval)
            await self.keep_open()
            await self.refresh()
            self._flush_soon()

    async def keep_open(self) -> None:
        """Move on the expiry of this process's reservations whose calls are still running (past half their TTL).

        The TTL frees the reservations of a process that died mid-call; a call that outlives it in a live process
        (a long answer, a slow provider) would otherwise lose its hold while it runs, and the room it frees be
        reserved again by other calls, taking the month past its stop level when it settles. Held for at most
        MAX_HOLD_S, so a reservation nothing settles still lapses."""
        ttl = self.settings.reservation_ttl_s
        now = self._now().timestamp()
        due = [
            r
            for r in self._open.values()
            if r.held and r.expires_at - now < ttl / 2 and now - r.reserved_at < MAX_HOLD_S
        ]
        for month in {r.month for r in due}:
            mine = [r for r in due if r.month == month]
            try:
                await self._store_call(partial(self.store.extend, month, [r.request_id for r in mine], now + ttl))
            except StoreUnavailable:
                continue
            for r in mine:
                if self._open.get(r.request_id) is r:
                    self._open[r.request_id] = dataclasses.replace(r, expires_at=now + ttl)

    # -- reserve / settle / release ---------------------------------------------------------
    def cap_spend(self, tag: str, limit_usd: float) -> None:
        """Cap what calls booked to `tag` may spend in a month at `limit_usd`: a reservation that would take the
        tag's spent and reserved money past it is refused (BudgetExhausted naming the tag). The store checks it in
        the same step as the month's budget, so every worker and replica sharing the store holds the one limit."""
        self._spend_caps[tag] = to_nano(limit_usd)

    async def reserve(
        self,
        request_id: str,
        model_name: str,
        prompt_tokens: int,
        max_tokens: int | None = None,
        choices: int = 1,
        tag: str | None = None,
    ) -> Reservation:
        """Hold the call's worst-case cost (`choices` completions of up to max_tokens each); raise
        BudgetExhausted if it would pass the stop level, or the stop level of `tag`'s own cap (the
        exception's `tag` then names it). The reservation is booked to `tag`.

        Free models get an unheld zero reservation (never blocked, no store access).
        Raises DuplicateRequest if request_id is already reserved or recorded.
        """
        self._ensure_started()
        price = self.prices.price(model_name)
        win = self._current_window()
        now = self._now().timestamp()
        if price.free:
            return Reservation(request_id, model_name, win.key, 0, now, held=False)
        counted = math.ceil(prompt_tokens * self.settings.prompt_token_margin - 1e-9)  # 100 * 1.1 is 110.00000000000001
        amount = max(
            1, to_nano(worst_case_cost(price, counted, max_tokens, self.settings.default_max_output_tokens, choices))
        )
        if amount > self._stop_nano:
            # Refused by any month: answered without a store round trip, and not remembered in
            # _min_refused (it says nothing about how full this month is).
            raise self._too_costly(win, model_name, amount)
        cap = self._tag_caps.get(tag) if tag is not None else None
        tag_stop = cap.stop_nano if cap is not None else self._spend_caps.get(tag) if tag is not None else None
        if tag_stop is not None and amount > tag_stop:
            raise self._too_costly(win, model_name, amount, tag)
        expires = now + self.settings.reservation_ttl_s
        try:
            out = await self._store_call(
                lambda: self.store.reserve(
                    win.key,
                    request_id,
                    amount,
                    self._stop_nano,
                    expires,
                    now,
                    tag,
                    tag_stop,
                )
            )
        except StoreUnavailable as e:
            if self.settings.fail_mode == "open":
                return Reservation(request_id, model_name, win.key, amount, expires, held=False)
            raise BudgetExhausted(
                f"The monthly budget cannot be checked because the budget store is unreachable ({e}); "
                "paid models are refused until it is back.",
                win.end,
                reason="store_unavailable",
            ) from None
        self._observe(win.key, out.committed_nano, out.reserved_nano)
        if out.duplicate:
            raise DuplicateRequest(f"request id {request_id!r} is already reserved or recorded in the budget ledger")
        if out.tag_refused and tag is not None and cap is None:
            used = _usd(to_usd(out.tag_committed_nano + out.tag_reserved_nano))
            message = f"{tag}: {used} of its {_usd(to_usd(tag_stop or 0))} monthly limit is spent or reserved"
            raise BudgetExhausted(message, win.end, tag=tag)
        if out.tag_refused and tag is not None and cap is not None:
            # The tag's cap, not the month: the global stop state (_min_refused) learns nothing from it.
            if out.tag_committed_nano >= cap.limit_nano * self.settings.alert_at:
                await self._fire(win, STOP_ALERT, out.tag_committed_nano, tag)
            raise BudgetExhausted(
                self._tag_exhausted_message(win, tag, out.tag_committed_nano + out.tag_reserved_nano), win.end, tag=tag
            )
        if not out.granted:
            self._min_refused = amount if self._min_refused is None else min(self._min_refused, amount)
            if self.is_stopped() and out.committed_nano >= self._limit_nano * self.settings.alert_at:
                # Spent, not merely held by calls in flight: tell finance paid calls have stopped
                # (one store write, the first time only; the webhook POST runs in the background).
                await self._fire(win, STOP_ALERT, out.committed_nano)
            raise BudgetExhausted(self._exhausted_message(win, out.committed_nano + out.reserved_nano), win.end)
        if self._min_refused is not None and amount >= self._min_refused:
            self._min_refused = None  # a call as large as a refused one fits again
        res = Reservation(request_id, model_name, win.key, amount, expires, reserved_at=now)
        self._open[request_id] = res
        return res

    def _too_costly(self, win: MonthWindow, model_name: str, amount_nano: int, tag: str | None = None) -> CallTooCostly:
        s = self.settings
        if tag is None:
            limit, stop = s.monthly_limit_usd, self._stop_nano
        elif tag in self._spend_caps:  # synqra's own cap: it stops at the limit itself
            stop = self._spend_caps[tag]
            limit = to_usd(stop)
            return CallTooCostly(
                f"its worst case on {model_name}, {_usd(to_usd(amount_nano))}, is more than {tag} may spend in a "
                f"month ({_usd(limit)})",
                win.end,
                worst_case_usd=to_usd(amount_nano),
                allowed_usd=limit,
                tag=tag,
            )
        else:
            limit, stop = s.tags[tag].monthly_limit_usd, self._tag_caps[tag].stop_nano
        who = "paid calls" if tag is None else f"paid calls tagged {tag!r}"
        return CallTooCostly(
            f"its worst case on {model_name}, {_usd(to_usd(amount_nano))}, is more than {who} may spend in a whole "
            f"month ({_usd(to_usd(stop))}: {s.stop_at:.0%} of the {_usd(limit)} limit)",
            win.end,
            worst_case_usd=to_usd(amount_nano),
            allowed_usd=to_usd(stop),
            tag=tag,
        )

    def _tag_exhausted_message(self, win: MonthWindow, tag: str, spent_nano: int) -> str:
        s = self.settings
        return (
            f"The monthly budget of tag {tag!r} is exhausted: {_usd(to_usd(spent_nano))} of its "
            f"{_usd(s.tags[tag].monthly_limit_usd)} limit for {win.key} is spent or reserved (paid calls stop at "
            f"{s.stop_at:.0%}). Paid models are unavailable to requests tagged {tag!r} until the budget resets on "
            f"{win.end.isoformat()}."
        )

    def _exhausted_message(self, win: MonthWindow, spent_nano: int) -> str:
        s = self.settings
        return (
            f"The monthly budget is exhausted: {_usd(to_usd(spent_nano))} of the {_usd(s.monthly_limit_usd)} limit "
            f"for {win.key} is spent or reserved (paid calls stop at {s.stop_at:.0%}). Paid models are "
            f"unavailable until the budget resets on {win.end.isoformat()}."
        )

    async def settle(self, reservation: Reservation | str | None, record: CallRecord) -> LedgerRecord:
        """Record the finished call once (by record.request_id) and replace its reservation by
        its actual cost. Never raises for a store outage: the record is queued and retried."""
        res = self._take(reservation)
        if res is not None and res.request_id != record.request_id:
            raise ValueError(f"reservation {res.request_id!r} settled with record {record.request_id!r}")
        month = res.month if res is not None else self._current_window().key
        ledger = self._ledger_record(record, month)
        await self._write(ledger)
        self._tell(ledger)
        return ledger

    async def record_free(self, record: CallRecord) -> LedgerRecord:
        """Record a call that had no reservation (local models). Never blocked, never raises for the store."""
        ledger = self._ledger_record(record, self._current_window().key)
        await self._write(ledger)
        self._tell(ledger)
        return ledger

    def _tell(self, ledger: LedgerRecord) -> None:
        for listener in self.listeners:
            try:
                listener(ledger)
            except Exception:  # a metrics bug must not fail a call that is already paid for
                log.exception("ledger listener %r failed", listener)

    async def release(self, reservation: Reservation | str) -> None:
        """Give a failed call's reservation back. A store outage only delays it (the TTL frees it)."""
        res = self._take(reservation)
        if res is None or not res.held:
            return
        try:
            await self._store_call(lambda: self.store.release(res.month, res.request_id))
        except StoreUnavailable:
            log.warning(
                "could not release reservation %s now; it lapses in %.0f s",
                res.request_id,
                self.settings.reservation_ttl_s,
            )
            return
        if res.month == self._window.key:
            self._reserved = max(0, self._reserved - res.amount_nano)

    def _take(self, reservation: Reservation | str | None) -> Reservation | None:
        if isinstance(reservation, str):
            return self._open.pop(reservation, None)
        if reservation is not None:
            self._open.pop(reservation.request_id, None)
        return reservation

    def _ledger_record(self, call: CallRecord, month: str) -> LedgerRecord:
        cost, baseline, free = self.prices.price_call(call)
        return LedgerRecord(
            request_id=call.request_id,
            month=month,
            ts=self._now().timestamp(),
            requested_model=call.requested_model,
            served_model=call.served_model,
            prompt_tokens=call.prompt_tokens,
            completion_tokens=call.completion_tokens,
            cost_nano=cost,
            baseline_nano=baseline,
            kind=call.kind,
            api_key_hash=call.api_key_hash,
            user=call.user,
            parent_id=call.parent_id,
            local=free,
            counts_request=call.counts_request,
            leaves_local=call.leaves_local,
            tag=call.tag,
        )

    async def _write(self, ledger: LedgerRecord) -> None:
        """Settle one record in the store now, or queue it while the store is down."""
        if not await self._try_write(ledger):
            self._enqueue(ledger)

    async def _try_write(self, ledger: LedgerRecord) -> bool:
        try:
            out = await self._store_call(lambda: self.store.settle(ledger))
        except StoreUnavailable:
            return False
        self._observe(ledger.month, out.committed_nano, out.reserved_nano)
        if out.inserted and ledger.cost_nano:
            await self._check_alerts(ledger.month, out.committed_nano)
            if ledger.tag in self._tag_caps and out.tag_committed_nano is not None:
                await self._check_tag_alerts(ledger.month, ledger.tag, out.tag_committed_nano)
        return True

    # -- outage queue -----------------------------------------------------------------------
    def _enqueue(self, ledger: LedgerRecord) -> None:
        if len(self._queue) >= self.settings.max_queued_records:
            lost = self._queue.popleft()
            log.error("budget record queue full: dropped ledger record %s ($%.6f)", lost.request_id, lost.cost_usd)
        self._queue.append(ledger)
        self._flush_soon()

    def _flush_soon(self) -> None:
        if self._queue and (self._flusher is None or self._flusher.done()):
            self._flusher = asyncio.get_running_loop().create_task(self._flush())

    async def _flush(self) -> None:
        while self._queue:
            await asyncio.sleep(max(0.05, self._down_until - time.monotonic()))
            while self._queue:
                if not await self._try_write(self._queue[0]):
                    break
                self._queue.popleft()

    @property
    def queued_records(self) -> int:
        return len(self._queue)

    # -- alerts -----------------------------------------------------------------------------
    async def _check_alerts(self, month: str, committed_nano: int) -> None:
        share = committed_nano / self._limit_nano
        if share < self._lowest_level:  # no level reached, none can fire: the fired ones need not be read (~4 us)
            return
        win = self._current_window()
        if month != win.key:
            return
        for level in levels_to_fire(share, self._levels, self._levels_fired(None)):
            await self._fire(win, level_key(level), committed_nano)

    async def _check_tag_alerts(self, month: str, tag: str, committed_nano: int) -> None:
        limit = self._tag_caps[tag].limit_nano
        share = committed_nano / limit
        if share < self._lowest_level:
            return
        win = self._current_window()
        if month != win.key:
            return
        for level in levels_to_fire(share, self._levels, self._levels_fired(tag)):
            await self._fire(win, level_key(level), committed_nano, tag)

    def _limit_usd(self, tag: str | None) -> float:
        return self.settings.monthly_limit_usd if tag is None else self.settings.tags[tag].monthly_limit_usd

    def _levels_fired(self, tag: str | None) -> list[str]:
        """The month's (or `tag`'s) levels fired against the limit in force, keys stored without a limit included."""
        if tag is None:
            keys = month_alerts(self._fired)
        else:
            keys = [
                k.split(":", 2)[1] for k in self._fired if k.startswith(TAG_ALERT_PREFIX) and k.split(":", 2)[2] == tag
            ]
        return levels_fired(keys, self._limit_usd(tag))

    async def _fire(self, win: MonthWindow, level: str, committed_nano: int, tag: str | None = None) -> None:
        """Fire alert `level` unless this month already has it for the limit in force (in any process sharing the
        store). `tag`: the alert is about that tag's own cap."""
        limit_usd = self._limit_usd(tag)
        key = alert_key(level, limit_usd) if tag is None else _tag_alert_key(alert_key(level, limit_usd), tag)
        # The stop alert comes here directly: a 'stop' stored before limits were kept has been sent already.
        if key in self._fired or level in self._levels_fired(tag):
            return
        try:
            first = await self._store_call(lambda: self.store.mark_alert(win.key, key, self._now().timestamp()))
        except StoreUnavailable:
            return  # re-checked on the next settle
        self._fired.add(key)
        if not first:
            return
        used = to_usd(committed_nano)
        limit_nano = self._limit_nano if tag is None else self._tag_caps[tag].limit_nano
        budget = "monthly budget" if tag is None else f"monthly budget of tag {tag!r}"
        if level == STOP_ALERT:
            who = "paid calls" if tag is None else f"paid calls tagged {tag!r}"
            text = f"{budget} stop reached for {win.key}: {who} refused until {win.end.isoformat()}"
        else:
            text = f"{float(level):.0%} of the {budget} spent for {win.key}"
        log.warning("budget alert: %s (%s of %s)", text, _usd(used), _usd(limit_usd))
        for listener in self.alert_listeners:
            try:
                listener(level, tag)
            except Exception:
                log.exception("alert listener %r failed", listener)
        if self.alerter is not None:
            payload: dict[str, Any] = {
                "event": "synqra.budget.alert",
                "level": level,
                "month": win.key,
                "monthly_limit": limit_usd,
                "monthly_used": round(used, 6),
                "percentage": round(100 * committed_nano / limit_nano, 2),
                "resets_at": win.end.isoformat(),
                "message": text,
            }
            if tag is not None:
                payload["tag"] = tag
            self.alerter.send(payload)

    # -- status -----------------------------------------------------------------------------
    async def status(self, by_tag: bool = False) -> dict[str, Any]:
        """The month's figures for GET /api/budget/status (store read; cached figures if it is down).
        `by_tag`: also "by_tag", the month broken down by request tag (see _by_tag)."""
        t = await self.refresh()
        win = self._current_window()
        reachable = t is not None
        if t is None:
            t = self._last_totals or MonthTotals(win.key)
            t = MonthTotals(
                win.key,
                self._committed,
                self._reserved,
                t.baseline_nano,
                t.requests,
                t.local_requests,
                t.prompt_tokens,
                t.completion_tokens,
                tuple(sorted(self._fired)),
            )
        s = self.settings
        elapsed = win.elapsed_share(self._now())
        committed = to_usd(t.committed_nano)
        share = t.committed_nano / self._limit_nano
        stopped = self.is_stopped()
        local_flat = s.local_flat_monthly_usd * elapsed
        actual = committed + local_flat
        baseline = to_usd(t.baseline_nano)
        out: dict[str, Any] = {
            "month": win.key,
            "timezone": s.timezone,
            "resets_at": win.end.isoformat(),
            "monthly_limit": s.monthly_limit_usd,
            "monthly_used": round(committed, 6),
            "reserved": round(to_usd(t.reserved_nano), 6),
            "percentage": round(100 * share, 2),
            "alert_at": s.alert_at,
            "alert_levels": self._levels,
            "stop_at": s.stop_at,
            "alerts_fired": levels_fired(month_alerts(t.alerts), s.monthly_limit_usd),
            "state": budget_state(share, s.alert_at, stopped),
            "projected_month_end": round(projected_month_spend(committed, elapsed), 6),
            "elapsed_share": round(elapsed, 4),
            "requests": t.requests,
            "local_requests": t.local_requests,
            "local_share": round(t.local_requests / t.requests, 4) if t.requests else 0.0,
            "tokens": {"prompt": t.prompt_tokens, "completion": t.completion_tokens},
            "baseline_model": s.baseline_model,
            "baseline_cost": round(baseline, 6),
            "local_flat_cost": round(local_flat, 6),
            "local_cost_per_request": round(local_flat / t.local_requests, 8) if t.local_requests else 0.0,
            "savings": round(baseline - actual, 6),
            "savings_percent": round(100 * (baseline - actual) / baseline, 2) if baseline > 0 else 0.0,
            "thrift": {
                "pressure": round(self.pressure(), 4),
                "spent_share": round(share, 4),
                "elapsed_share": round(elapsed, 4),
                "curve": s.thrift.model_dump(),
            },
            "store": {"kind": self.store.name, "reachable": reachable, "queued_records": len(self._queue)},
        }
        if by_tag:
            if reachable:
                try:
                    self._last_tags = await self._store_call(lambda: self.store.tag_totals(win.key))
                except StoreUnavailable:
                    pass  # the last figures read (this month's only)
            out["by_tag"] = self._by_tag(t, self._last_tags, local_flat)
        return out

    def _by_tag(
        self, month: MonthTotals, tags: dict[str, TagTotals], local_flat_usd: float
    ) -> dict[str, dict[str, Any]]:
        """Cost, baseline, savings and local share per tag; "untagged" is the month minus the tags.

        The local models' flat cost (local_flat_monthly_usd) is shared out by local requests (by requests
        while there are none), so the tags' savings add up to the month's."""
        untagged = TagTotals(
            UNTAGGED,
            month.committed_nano - sum(t.committed_nano for t in tags.values()),
            month.reserved_nano - sum(t.reserved_nano for t in tags.values()),
            month.baseline_nano - sum(t.baseline_nano for t in tags.values()),
            month.requests - sum(t.requests for t in tags.values()),
            month.local_requests - sum(t.local_requests for t in tags.values()),
        )
        rows = {tag: t for tag, t in sorted(tags.items()) if any((t.committed_nano, t.reserved_nano, t.requests))}
        rows.update(
            {tag: TagTotals(tag) for tag in self._tag_caps if tag not in rows}
        )  # capped tags show, spent or not
        if any((untagged.committed_nano, untagged.reserved_nano, untagged.requests)) or not rows:
            rows[UNTAGGED] = untagged
        share_by_local = month.local_requests > 0
        out: dict[str, dict[str, Any]] = {}
        for tag, t in rows.items():
            base = month.local_requests if share_by_local else month.requests
            part = (t.local_requests if share_by_local else t.requests) / base if base else 0.0
            cost = to_usd(t.committed_nano)
            baseline = to_usd(t.baseline_nano)
            savings = baseline - cost - local_flat_usd * part
            cap = self.settings.tags.get(tag)
            spend_cap = self._spend_caps.get(tag)  # a judge's monthly limit
            limit = cap.monthly_limit_usd if cap is not None else None if spend_cap is None else to_usd(spend_cap)
            out[tag] = {
                "cost": round(cost, 6),
                "baseline": round(baseline, 6),
                "savings": round(savings, 6),
                "savings_percent": round(100 * savings / baseline, 2) if baseline > 0 else 0.0,
                "requests": t.requests,
                "local_requests": t.local_requests,
                "local_share": round(t.local_requests / t.requests, 4) if t.requests else 0.0,
                "limit": limit,
            }
        return out

    async def month_by_tag(self, month: str, totals: MonthTotals, local_flat_usd: float) -> dict[str, dict[str, Any]]:
        """A (closed) month broken down by tag as `status(by_tag=True)` does for the current one: `totals` is the
        store's month totals, `local_flat_usd` the local servers' flat cost over that month."""
        tags = await self._store_call(lambda: self.store.tag_totals(month))
        return self._by_tag(totals, tags, local_flat_usd)

    async def records(self, month: str | None = None) -> list[LedgerRecord]:
        """The ledger of `month` ("YYYY-MM"; default the current one), oldest first."""
        return await self.store.records(month or self._current_window().key)

    async def aclose(self) -> None:
        """At shutdown: stop background tasks, try a last flush, deliver pending alerts, close the store."""
        for task in (self._maintainer, self._flusher):
            if task is not None:
                task.cancel()
        while self._queue and await self._try_write(self._queue[0]):
            self._queue.popleft()
        if self._queue:
            log.error("budget store unreachable at shutdown: %d ledger records not written", len(self._queue))
        if self.alerter is not None:
            await self.alerter.drain()
        await self.store.close()
