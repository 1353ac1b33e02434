"""How the report words money and shares (the budget guard's own style: cents, or six decimals under a cent)."""

from __future__ import annotations


def usd(x: float) -> str:
    x = float(x)
    if x == 0:
        return "$0.00"
    return f"${x:,.2f}" if abs(x) >= 0.01 else f"${x:.6f}"


def pct(percent: float) -> str:
    return f"{float(percent):.1f}%"


NOT_OFFLINE = (
    "Not available offline: quality scores and the live counters (tier mix, verdicts, escalations by tier since "
    "start) are in the running proxy's GET /metrics and its dashboard; route scores per request come with the "
    "inference log."
)
