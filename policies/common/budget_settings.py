"""`synqra.budget` settings.

Every key has a default, so an empty `synqra.budget` section gives a working
budget: $200 a month, alert at 70%, stop paid calls at 95%, ledger in SQLite
under the data dir (or in Redis when `REDIS_URL` is set and `store` is not).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class ThriftSettings(BaseModel):
    """The curve that makes the router thriftier when spend runs ahead of the calendar.

    With spend share s (committed / limit) and elapsed share e (of the month):
    pressure = 0 while s < start_share or s - e <= margin, else
    min(1, (s - e - margin) / full_gap) ** exponent. The defaults start shifting
    once 50% of the budget is spent before 50% of the month has passed.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    start_share: float = Field(0.5, ge=0, le=1)
    margin: float = Field(0.0, ge=0, le=1)
    # How far ahead of pace (in budget share) gives full pressure.
    full_gap: float = Field(0.25, gt=0, le=1)
    exponent: float = Field(1.0, gt=0)


# What the by-tag status calls requests that carry no tag: no request or cap may take the name (tag_problem).
UNTAGGED = "untagged"
MAX_TAG_CHARS = 128
# Tags synqra books its own calls to (a judge's: "synqra-judge-<purpose>", capped at its monthly limit): a client or
# a cap of the config may not take one, or spend what the judge is allowed.
SYNQRA_TAG_PREFIX = "synqra-judge-"


def tag_problem(tag: str) -> str | None:
    """Why `tag` cannot name a budget tag (None: it can). Tags are ledger values and status keys, so they
    must be short, visible text: no control characters."""
    if not tag:
        return "a tag must not be empty"
    if len(tag) > MAX_TAG_CHARS:
        return f"a tag must be at most {MAX_TAG_CHARS} characters (got {len(tag)})"
    if tag != tag.strip():
        return f"a tag must not start or end with white space (got {tag!r})"
    if any(unicodedata.category(ch).startswith("C") for ch in tag):
        return f"a tag must not contain control characters (got {tag!r})"
    if tag == UNTAGGED:
        # LiteLLM books a request's tag as it was sent; read as no tag, its spend merged into the requests without one.
        return f"{UNTAGGED!r} is what the by-tag status calls the requests without a tag: send no tag, or another name"
    if tag.startswith(SYNQRA_TAG_PREFIX):
        return f"tags starting with {SYNQRA_TAG_PREFIX!r} are synqra's own (its judges' spend, got {tag!r})"
    return None


class TagBudget(BaseModel):
    """A tag's own monthly cap, on top of the global one (alert_at, alert_levels and stop_at apply to it too)."""

    model_config = ConfigDict(extra="forbid")

    monthly_limit_usd: float = Field(gt=0)


class BudgetSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    monthly_limit_usd: float = Field(200.0, gt=0)
    alert_at: float = Field(0.70, gt=0, le=1)
    # More alert levels (fractions of the limit), each fired once per month, e.g. [0.5, 0.9].
    alert_levels: list[float] = Field(default_factory=list)
    stop_at: float = Field(0.95, gt=0, le=1)
    alert_webhook: str | None = None
    alert_webhook_timeout_s: float = Field(5.0, gt=0)
    # Attempts per alert (exponential back-off from 1 s); the request never waits for them.
    alert_webhook_attempts: int = Field(5, ge=1)
    # First wait between attempts; doubles each time (capped at 60 s).
    alert_webhook_backoff_s: float = Field(1.0, ge=0)
    # "sqlite" (embedded) or a redis:// / rediss:// / unix:// URL. Unset: the REDIS_URL
    # environment variable when present, else "sqlite". An explicit "sqlite" ignores REDIS_URL.
    store: str | None = None
    # SQLite file; unset: <synqra.server.data_dir>/budget.sqlite3.
    sqlite_path: str | None = None
    # NORMAL (WAL): survives kill -9 of the proxy, may lose the last commits on power loss.
    # FULL: also survives power loss, costs an fsync per request.
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # A write with nothing in flight runs on the event loop (never waiting for the lock) instead of
    # the store's thread: lower latency at low load (policies/budget/sqlite_store.py).
    sqlite_loop_writes: bool = True
    redis_key_prefix: str = "synqra:budget"
    # Per store operation (and Redis connect); past it the store counts as unreachable. A refused
    # connection is detected at once; this only bounds a hung network.
    store_timeout_s: float = Field(2.0, gt=0)
    # After a store failure, calls fail fast for this long before the store is tried again.
    store_retry_after_s: float = Field(1.0, ge=0)
    # The budget month is the calendar month in this zone.
    timezone: str = "UTC"
    # What every request would have cost on the all-Claude setup it replaces.
    baseline_model: str = "claude-sonnet"
    # A reservation not settled or released within this time lapses (crashed process).
    # Keep it above the longest model call (LiteLLM's request timeout, 600 s by default).
    reservation_ttl_s: float = Field(900.0, gt=0)
    # Store unreachable: "closed" refuses paid calls (auto goes local); "open" lets them
    # through unreserved and queues their ledger records until the store returns.
    fail_mode: Literal["closed", "open"] = "closed"
    # Fixed monthly cost of running the local models (hardware, power), in dollars. Not
    # counted against the cap (it is not per-call spend); shown in the status spread over
    # the month's local requests and included in the savings figure.
    local_flat_monthly_usd: float = Field(0.0, ge=0)
    # Multiplier on counted prompt tokens when reserving: tokenizers differ by provider.
    prompt_token_margin: float = Field(1.1, ge=1)
    # Output ceiling for a model whose max output tokens are unknown and max_tokens unset.
    default_max_output_tokens: int = Field(8192, ge=1)
    # Most ledger records held in memory while the store is unreachable.
    max_queued_records: int = Field(100_000, ge=0)
    thrift: ThriftSettings = Field(default_factory=ThriftSettings)
    # Monthly caps per request tag (x-synqra-tag header, else LiteLLM's metadata.tags), e.g.
    # {"marketing": {"monthly_limit_usd": 20}}; a tag not listed has no cap of its own.
    tags: dict[str, TagBudget] = Field(default_factory=dict)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as 'UTC' or 'Europe/Berlin')") from None
        return v

    @field_validator("alert_levels")
    @classmethod
    def _levels_in_range(cls, v: list[float]) -> list[float]:
        bad = [x for x in v if not 0 < x <= 1]
        if bad:
            raise ValueError(f"alert levels must be fractions in (0, 1], got {bad}")
        return v

    @field_validator("store")
    @classmethod
    def _known_store(cls, v: str | None) -> str | None:
        if v is not None and v != "sqlite" and not v.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"store must be 'sqlite' or a redis:// URL, got {v!r}")
        return v

    @field_validator("tags")
    @classmethod
    def _valid_tag_names(cls, v: dict[str, TagBudget]) -> dict[str, TagBudget]:
        for tag in v:
            if tag == UNTAGGED:
                raise ValueError(f"{UNTAGGED!r} names the requests without a tag; it cannot have a cap of its own")
            problem = tag_problem(tag)
            if problem:
                raise ValueError(f"tag {tag!r}: {problem}")
        return v

    @model_validator(mode="after")
    def _alert_below_stop(self) -> BudgetSettings:
        if self.alert_at >= self.stop_at:
            raise ValueError(f"alert_at ({self.alert_at}) must be below stop_at ({self.stop_at})")
        return self

    @property
    def all_alert_levels(self) -> list[float]:
        """alert_at plus the extra levels, sorted, without duplicates."""
        return sorted({round(x, 6) for x in (self.alert_at, *self.alert_levels)})

    def resolved_store(self, env: Mapping[str, str]) -> str:
        """The store actually used: explicit setting, else REDIS_URL from `env`, else sqlite."""
        if self.store is not None:
            return self.store
        url = (env.get("REDIS_URL") or "").strip()
        return url or "sqlite"
