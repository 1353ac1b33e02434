"""Pure figures for the operator's views (the dashboard and `synqra report`). No I/O.

Inputs are what the proxy already keeps: ledger rows (`GET /api/budget/ledger`'s rows, as dicts) and
prometheus_client counters (`GET /metrics`). Month totals (spend, baseline, savings, local share) are not
recounted here: they come from the budget guard's `status()`, the code behind `GET /api/budget/status`.
"""

from __future__ import annotations

import calendar
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from prometheus_client import Counter
from prometheus_client.metrics_core import Metric

# Ledger kinds of the extra calls synqra makes within a client request (policies/budget/records.LedgerKind).
EXTRA_KINDS = frozenset({"escalation", "fallback", "judge"})


def row_of(record: Any) -> dict[str, Any]:
    """A ledger row as the API shows it: a LedgerRecord (or a dict already) -> dict with cost_usd, baseline_usd."""
    if isinstance(record, Mapping):
        return dict(record)
    d = {k: v for k, v in vars(record).items() if not k.endswith("_nano")}
    d["cost_usd"] = record.cost_usd
    d["baseline_usd"] = record.baseline_usd
    return d


def daily_series(rows: Iterable[Mapping[str, Any]], month: str, tz: str) -> list[dict[str, Any]]:
    """Client requests and cost of each day of `month` ("YYYY-MM") in zone `tz`, every day listed.

    A request counts on the day of the row that counts it (`counts_request`); cost is every call's,
    escalations and fallbacks included, on the day it was recorded."""
    year, mon = (int(x) for x in month.split("-"))
    days = calendar.monthrange(year, mon)[1]
    requests = [0] * days
    cost = [0.0] * days
    local = [0] * days
    zone = ZoneInfo(tz)
    for r in rows:
        d = datetime.fromtimestamp(float(r["ts"]), zone)
        if (d.year, d.month) != (year, mon):
            continue
        i = d.day - 1
        cost[i] += float(r.get("cost_usd") or 0.0)
        if r.get("counts_request", True):
            requests[i] += 1
            local[i] += int(bool(r.get("local")))
        local[i] -= int(bool(r.get("leaves_local")))
    return [
        {
            "day": i + 1,
            "date": f"{month}-{i + 1:02d}",
            "requests": requests[i],
            "local_requests": local[i],
            "cost_usd": round(cost[i], 9),
        }
        for i in range(days)
    ]


def _root_id(row: Mapping[str, Any], parents: Mapping[str, str | None]) -> str:
    """The client request a call belongs to: follow parent ids up (an escalation's fallback has the
    escalation as parent); ids of extra calls are "<root>:<suffix>", which also finds a root never recorded."""
    rid = str(row["request_id"])
    seen = {rid}
    parent = row.get("parent_id")
    while parent:
        rid = str(parent)
        parent = parents.get(rid)
        if rid in seen:
            break
        seen.add(rid)
    return rid.split(":", 1)[0]


_FAILED_ATTEMPT = re.compile(r":(timeout|broken)\d+$")


def answered(row: Mapping[str, Any]) -> bool:
    """False for a billed attempt that gave no answer: a non-streamed call that timed out (":timeout<n>") or an
    attempt whose response broke off before answering (":broken<n>"); the request was answered elsewhere or not."""
    return not _FAILED_ATTEMPT.search(str(row["request_id"]))


def _gate_call(row: Mapping[str, Any], rid: str) -> bool:
    """A call the quality gate made for request `rid`: an escalation or rephrase, or a LiteLLM fallback (or broken
    attempt) of one, whose row is kind "fallback" and whose id is "<rid>:<n>:..." (the gate's call n)."""
    if row.get("kind") == "escalation":
        return True
    parts = str(row["request_id"]).split(":")
    return row.get("kind") == "fallback" and len(parts) > 2 and parts[0] == rid and parts[1].isdigit()


def group_requests(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Client requests from ledger rows, oldest first: each with the chain of models called for it.

    `first` is the model of the request's own call (the router's pick, or a fallback's when the pick
    failed); `chain` every model called, in order; `escalated` whether the quality gate sent it to another
    model (a rephrase on the same model is not an escalation; a gate call that timed out or broke off before
    answering is not one either); cost sums every call. `served` is False for a request none of whose rows counts a
    request: every call it made failed, yet some were billed (a non-streamed call that timed out, ":timeout<n>", or
    an attempt that broke off, ":broken<n>"). Its cost is in the month's spend, but status() counts no request for it."""
    rows = sorted(rows, key=lambda r: (float(r["ts"]), str(r["request_id"])))
    parents = {str(r["request_id"]): r.get("parent_id") for r in rows}
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_root_id(r, parents)].append(r)
    out: list[dict[str, Any]] = []
    for rid, calls in groups.items():
        own = [c for c in calls if c.get("kind") not in EXTRA_KINDS]
        head = own[0] if own else calls[0]
        chain = [str(c["served_model"]) for c in calls]
        # What answered: an attempt that timed out or broke off before answering escalated nothing (the gate then
        # delivers an earlier answer), and a retry's broken attempt is not a LiteLLM fallback.
        done = [c for c in calls if answered(c)]
        escalated = any(_gate_call(c, rid) and c["served_model"] != head["served_model"] for c in done)
        out.append(
            {
                "ts": float(calls[0]["ts"]),
                "request_id": rid,
                "requested_model": head.get("requested_model"),
                "first": str(head["served_model"]),
                "chain": chain,
                "escalated": escalated,
                "fallback": any(c.get("kind") == "fallback" for c in done),
                "rephrased": any(
                    c.get("kind") == "escalation" and c["served_model"] == head["served_model"] for c in done
                ),
                "cost_usd": round(sum(float(c.get("cost_usd") or 0.0) for c in calls), 9),
                "tokens": sum(int(c.get("prompt_tokens") or 0) + int(c.get("completion_tokens") or 0) for c in calls),
                "tag": head.get("tag"),
                "kind": head.get("kind"),
                "served": any(c.get("counts_request", True) for c in calls),
            }
        )
    out.sort(key=lambda g: g["ts"])
    return out


def served_requests(groups: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The groups of `group_requests` that are served client requests (the ones status() counts)."""
    return [g for g in groups if g["served"]]


def ledger_counts(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Calls, cost and baseline by served model, and calls by kind, from ledger rows."""
    by_model: dict[str, dict[str, float]] = defaultdict(
        lambda: {"calls": 0, "cost_usd": 0.0, "baseline_usd": 0.0, "tokens": 0}
    )
    by_kind: dict[str, int] = defaultdict(int)
    for r in rows:
        m = by_model[str(r["served_model"])]
        m["calls"] += 1
        m["cost_usd"] += float(r.get("cost_usd") or 0.0)
        m["baseline_usd"] += float(r.get("baseline_usd") or 0.0)
        m["tokens"] += int(r.get("prompt_tokens") or 0) + int(r.get("completion_tokens") or 0)
        by_kind[str(r.get("kind") or "chat")] += 1
    return {
        "by_model": {
            k: {**v, "cost_usd": round(v["cost_usd"], 9), "baseline_usd": round(v["baseline_usd"], 9)}
            for k, v in sorted(by_model.items())
        },
        "by_kind": dict(sorted(by_kind.items())),
    }


def counter_values(
    counter: Counter, families: Iterable[Metric] | None = None
) -> dict[tuple[tuple[str, str], ...], float]:
    """A prometheus_client counter's current values by label set (what `/metrics` renders as `_total`).

    `families`: what `/metrics` collects when it is not this process's own registry (several workers: the
    multiprocess collector's sums); by default the counter's own values in this process."""
    name = next(iter(counter.describe())).name + "_total"
    out: dict[tuple[tuple[str, str], ...], float] = defaultdict(float)
    for family in counter.collect() if families is None else families:
        for s in family.samples:
            if s.name == name:
                out[tuple(sorted(s.labels.items()))] += s.value
    return dict(out)


def tier_mix(route_decisions: Counter, tiers: list[str], families: Iterable[Metric] | None = None) -> dict[str, Any]:
    """Live routing decisions by tier (synqra_route_decisions_total{mode="live"}), counts and shares."""
    counts = dict.fromkeys(tiers, 0.0)
    for labels, v in counter_values(route_decisions, families).items():
        d = dict(labels)
        if d.get("mode") == "live":
            counts[d["tier"]] = counts.get(d["tier"], 0.0) + v
    total = sum(counts.values())
    return {
        "total": int(total),
        "tiers": [
            {"tier": t, "requests": int(n), "share": round(n / total, 4) if total else 0.0} for t, n in counts.items()
        ],
    }


def escalation_by_tier(
    quality_served: Counter, quality_verdicts: Counter, families: Iterable[Metric] | None = None
) -> list[dict[str, Any]]:
    """Per validated first tier: answers judged, verdicts, and the share served by another tier
    (synqra_quality_served_total{first_tier,served_tier}, synqra_quality_verdicts_total{tier,action})."""
    judged: dict[str, float] = defaultdict(float)
    moved: dict[str, float] = defaultdict(float)
    for labels, v in counter_values(quality_served, families).items():
        d = dict(labels)
        judged[d["first_tier"]] += v
        if d["served_tier"] != d["first_tier"]:
            moved[d["first_tier"]] += v
    verdicts: dict[str, dict[str, int]] = defaultdict(dict)
    for labels, v in counter_values(quality_verdicts, families).items():
        d = dict(labels)
        verdicts[d["tier"]][d["action"]] = int(v)
    return [
        {
            "tier": t,
            "judged": int(n),
            "escalated": int(moved[t]),
            "rate": round(moved[t] / n, 4) if n else 0.0,
            "verdicts": verdicts.get(t, {}),
        }
        for t, n in sorted(judged.items())
    ]


def budget_marks(status: Mapping[str, Any]) -> dict[str, float]:
    """The spend bar's marks in dollars: the first alert level and the stop level of the monthly limit."""
    limit = float(status["monthly_limit"])
    return {
        "alert_usd": round(limit * float(status["alert_at"]), 6),
        "stop_usd": round(limit * float(status["stop_at"]), 6),
    }
