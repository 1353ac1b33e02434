"""Pure budget decisions: thrift pressure, alert levels, state, projection. No I/O."""

from __future__ import annotations

import math
from collections.abc import Iterable

from policies.common.budget_settings import ThriftSettings

STOP_ALERT = "stop"


def level_key(level: float) -> str:
    """How an alert level is named in the store and the status ("0.7", "0.9")."""
    return f"{level:g}"


def thrift_pressure(spent_share: float, elapsed_share: float, curve: ThriftSettings) -> float:
    """0 (route as usual) .. 1 (full pressure), from pacing alone. Pressure p raises every routing threshold t to
    t + p * budget_max_shift * (1 - t) (policies/routing/tiers.shifted_thresholds): at 1 the cuts move
    budget_max_shift of the way to the top of the scale (halfway by default), so the hardest requests still go up;
    only budget_max_shift 1 keeps all traffic local that can be."""
    if not curve.enabled or spent_share < curve.start_share:
        return 0.0
    ahead = spent_share - elapsed_share - curve.margin
    if ahead <= 0:
        return 0.0
    # float(): a positive base to a float power is real (typeshed types float ** float as Any).
    return float(min(1.0, ahead / curve.full_gap) ** curve.exponent)


def alert_key(level: str, limit_usd: float) -> str:
    """How a fired alert is stored: its level and the limit it fired against ("0.7@200"), so that raising the
    limit in the config re-arms the levels for the new limit within the month."""
    return f"{level}@{limit_usd:.12g}"


def alert_level(key: str) -> str:
    """The level of a stored alert key ("0.7@200" -> "0.7")."""
    return key.split("@", 1)[0]


def levels_fired(keys: Iterable[str], limit_usd: float) -> list[str]:
    """The levels fired against `limit_usd`, sorted; a key stored without a limit (before limits were stored)
    counts for any limit, so an upgrade sends no alert twice."""
    suffix = alert_key("", limit_usd)
    return sorted({alert_level(k) for k in keys if k.endswith(suffix) or "@" not in k})


def levels_to_fire(committed_share: float, levels: Iterable[float], fired: Iterable[str]) -> list[float]:
    """Alert levels reached by `committed_share` that have not fired this month."""
    done = set(fired)
    return [x for x in levels if committed_share >= x and level_key(x) not in done]


def headroom_nano(committed_nano: int, reserved_nano: int, stop_nano: int) -> int:
    """What a new reservation may still take before the stop level."""
    return stop_nano - committed_nano - reserved_nano


def budget_state(committed_share: float, alert_at: float, stopped: bool) -> str:
    if stopped:
        return "stopped"
    return "alert" if committed_share >= alert_at else "ok"


def projected_month_spend(committed_usd: float, elapsed_share: float, min_elapsed_share: float = 1 / 31) -> float:
    """Month-end spend if the pace so far holds (elapsed floored to a day: no blow-up on the 1st)."""
    return committed_usd / max(elapsed_share, min_elapsed_share)


def usd_text(x: float) -> str:
    """Dollars for people: cents from a dollar up ($1,234.50); below a dollar three significant digits, at least
    cents ($0.50, $0.05, $0.035, $0.0035): a small budget's marks and limits keep their digits (70% of a $0.05 limit
    read "$0.04", a $0.005 limit "$0.00")."""
    if x == 0:
        return "$0.00"
    sign, a = ("-" if x < 0 else ""), abs(x)
    if a >= 1:
        return f"{sign}${a:,.2f}"
    text = f"{a:.{max(2, 2 - math.floor(math.log10(a)))}f}"
    whole, frac = text.split(".")
    return f"{sign}${whole}.{frac[:2]}{frac[2:].rstrip('0')}"
