"""The budget's data: what a call used, what the ledger keeps, month totals.

Money is held as integer nano-dollars (1e-9 USD) in the stores: sums are exact
and atomic in SQLite and Redis alike (no float drift), and rounding one call to
a nano-dollar loses at most half a dollar per billion calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import orjson

from policies.common.api_shapes import ClientKind

# A ledger row's kind: the client's own call by API (policies.common.api_shapes.KIND_BY_CALL_TYPE), or an
# extra call synqra made for it.
LedgerKind = Literal[ClientKind, "escalation", "fallback", "judge"]

NANO = 1_000_000_000


def to_nano(usd: float) -> int:
    return int(round(usd * NANO))


def to_usd(nano: int) -> float:
    return nano / NANO


@dataclass(frozen=True)
class CallRecord:
    """What the hook knows once a model call is done; the guard prices it.

    `request_id` must be unique per model call (an escalation or a fallback is a
    call of its own: give it its own id and the client request's id as parent_id).
    """

    request_id: str
    requested_model: str
    served_model: str
    prompt_tokens: int
    completion_tokens: int
    kind: LedgerKind = "chat"
    api_key_hash: str | None = None
    user: str | None = None
    parent_id: str | None = None
    # None: tokens x the served model's prices. Set it to bill a provider-reported cost.
    cost_usd: float | None = None
    # The month's request count, all-Claude baseline and local share are per client request, not per
    # call: a call made within a request already counted (a quality escalation, or a fallback of one)
    # sets counts_request False, and the first paid call that replaces a local answer sets leaves_local.
    counts_request: bool = True
    leaves_local: bool = False
    # The request's tag (an agent or app; None: untagged); an extra call carries its request's tag.
    tag: str | None = None
    # Prompt tokens (counted in prompt_tokens) written to / read from the provider's cache, priced above / below the
    # input price; `cache_one_hour`: the writes were for Anthropic's one-hour TTL.
    cache_write_tokens: int = 0
    cache_read_tokens: int = 0
    cache_one_hour: bool = False
    # Of cache_write_tokens, those the provider reported written for the one-hour TTL (Anthropic's
    # usage.cache_creation split: a request may mix TTLs); None: not reported, cache_one_hour decides.
    cache_write_1h_tokens: int | None = None
    # Prompt tokens up to the request's last cache_control when the answering model reported no cache use (the
    # local model, DeepSeek or GPT-4o on a cold prefix): the all-Claude baseline reads them from Claude's cache.
    cache_prefix_tokens: int = 0


@dataclass(frozen=True)
class LedgerRecord:
    """One ledger row: a priced model call, stored exactly once per request_id."""

    request_id: str
    month: str
    ts: float
    requested_model: str
    served_model: str
    prompt_tokens: int
    completion_tokens: int
    cost_nano: int
    baseline_nano: int
    kind: str = "chat"
    api_key_hash: str | None = None
    user: str | None = None
    parent_id: str | None = None
    local: bool = False
    counts_request: bool = True  # see CallRecord
    leaves_local: bool = False
    tag: str | None = None

    @property
    def request_delta(self) -> int:
        """What this row adds to the month's request count."""
        return int(self.counts_request)

    @property
    def local_delta(self) -> int:
        """What this row adds to the month's locally served requests (-1: a paid call took one over)."""
        return int(self.counts_request and self.local) - int(self.leaves_local)

    @property
    def cost_usd(self) -> float:
        return to_usd(self.cost_nano)

    @property
    def baseline_usd(self) -> float:
        return to_usd(self.baseline_nano)

    def to_json(self) -> str:
        # vars(), not dataclasses.asdict(): the fields are flat, and asdict's deep copy is the
        # slowest step of a settle on this per-request path.
        return orjson.dumps(vars(self)).decode()

    @classmethod
    def from_json(cls, s: str | bytes) -> LedgerRecord:
        return cls(**orjson.loads(s))


@dataclass(frozen=True)
class Reservation:
    """Worst-case cost held against the month until settled, released or expired."""

    request_id: str
    model_name: str
    month: str
    amount_nano: int
    expires_at: float
    # False when nothing was written to the store (free model, or fail_mode "open" outage).
    held: bool = True
    reserved_at: float = 0.0  # when it was made (its expiry moves while its call runs: BudgetGuard.keep_open)


@dataclass(frozen=True)
class MonthTotals:
    month: str
    committed_nano: int = 0
    reserved_nano: int = 0
    baseline_nano: int = 0
    requests: int = 0
    local_requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    alerts: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class TagTotals:
    """One tag's share of a month (ledger rows and reservations carrying that tag)."""

    tag: str
    committed_nano: int = 0
    reserved_nano: int = 0
    baseline_nano: int = 0
    requests: int = 0
    local_requests: int = 0


@dataclass(frozen=True)
class ReserveOutcome:
    """A store's answer to reserve: granted or not, and the month's spend seen at that instant.

    `tag_refused`: the month had room but the tag's cap did not; the tag's spend is then in tag_*_nano
    (they are filled only for a reservation checked against a tag cap)."""

    granted: bool
    committed_nano: int
    reserved_nano: int
    duplicate: bool = False
    tag_refused: bool = False
    tag_committed_nano: int = 0
    tag_reserved_nano: int = 0


@dataclass(frozen=True)
class SettleOutcome:
    """Whether the ledger row was new (False: already recorded), and the month's spend after it
    (`tag_committed_nano`: the record's tag's, None for an untagged record)."""

    inserted: bool
    committed_nano: int
    reserved_nano: int
    tag_committed_nano: int | None = None
