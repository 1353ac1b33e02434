"""The budget window: the calendar month in the configured time zone (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class MonthWindow:
    key: str  # "YYYY-MM" in the configured zone
    start: datetime
    end: datetime  # first instant of the next month = when the budget resets

    def elapsed_share(self, now: datetime) -> float:
        total = (self.end - self.start).total_seconds()
        return min(1.0, max(0.0, (now - self.start).total_seconds() / total))


def month_window(now: datetime, tz: str) -> MonthWindow:
    """The month containing `now` (an aware datetime) in zone `tz`."""
    if now.tzinfo is None:
        raise ValueError("now() must return an aware datetime (e.g. datetime.now(timezone.utc))")
    zone = ZoneInfo(tz)
    local = now.astimezone(zone)
    start = datetime(local.year, local.month, 1, tzinfo=zone)
    end = datetime(local.year + (local.month == 12), local.month % 12 + 1, 1, tzinfo=zone)
    return MonthWindow(key=f"{local.year:04d}-{local.month:02d}", start=start, end=end)


def utc_now() -> datetime:
    return datetime.now(UTC)
