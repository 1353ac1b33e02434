"""One interface for the ledger and reservation stores (SQLite embedded, Redis shared).

Every method is atomic on its own: two processes sharing a store enforce one
budget. Amounts are integer nano-dollars; `month` is the "YYYY-MM" key of the
budget window. Implementations raise `StoreUnavailable` when the store cannot
be reached (the guard then fails closed or queues, as configured).
"""

from __future__ import annotations

from typing import Protocol

from policies.budget.records import LedgerRecord, MonthTotals, ReserveOutcome, SettleOutcome, TagTotals


class StoreUnavailable(RuntimeError):
    """The budget store did not answer; the message names the store and the cause."""


class BudgetStore(Protocol):
    name: str  # "sqlite" or "redis", shown in the status

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
        """Drop the month's reservations expired at `now`, then hold `amount_nano` for
        `request_id` only if committed + reserved + amount <= stop_nano and, when `tag_stop_nano`
        is given, the tag's committed + reserved + amount <= tag_stop_nano (else tag_refused).
        The reservation carries `tag`. A request_id already reserved or already in the ledger is
        refused with duplicate=True."""
        ...

    async def settle(self, record: LedgerRecord) -> SettleOutcome:
        """Insert the record once (keyed by request_id; a repeat is a no-op), add its cost to
        record.month (and to record.tag's share) and drop its reservation, all in one step."""
        ...

    async def release(self, month: str, request_id: str) -> None:
        """Drop a reservation without recording anything (the call failed)."""
        ...

    async def expire(self, month: str, now: float) -> int:
        """Drop the month's reservations that expired at `now`; return how many."""
        ...

    async def extend(self, month: str, request_ids: list[str], expires_at: float) -> None:
        """Move the expiry of these reservations (those still held; others are left alone) to `expires_at`."""
        ...

    async def totals(self, month: str) -> MonthTotals: ...

    async def tag_totals(self, month: str) -> dict[str, TagTotals]:
        """Every tag with ledger rows or reservations this month (untagged ones are not in it)."""
        ...

    async def mark_alert(self, month: str, level: str, now: float) -> bool:
        """Record that an alert level fired this month; True only for the first caller."""
        ...

    async def records(self, month: str) -> list[LedgerRecord]:
        """The month's ledger, oldest first."""
        ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...
