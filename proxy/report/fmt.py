"""How the report words money and shares (the budget guard's and the dashboard's own style: cents from a dollar up,
three significant digits below)."""

from __future__ import annotations

from policies.budget.policy import usd_text


def usd(x: float) -> str:
    return usd_text(float(x))


def pct(percent: float) -> str:
    return f"{float(percent):.1f}%"


NOT_OFFLINE = (
    "Not available offline: quality scores and the live counters (tier mix, verdicts, escalations by tier since "
    "start) are in the running proxy's GET /metrics and its dashboard; route scores per request come with the "
    "inference log."
)
