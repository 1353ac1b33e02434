"""The month report as Markdown, for the terminal."""

from __future__ import annotations

from typing import Any

from proxy.report.fmt import NOT_OFFLINE, pct, usd


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(" --- " for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def verdict_rows(verdicts: dict[str, dict[str, dict[str, int]]]) -> list[list[str]]:
    rows = []
    for mode in ("live", "shadow"):
        for tier, actions in sorted(verdicts.get(mode, {}).items()):
            n = sum(actions.values())
            rows.append(
                [
                    mode,
                    tier,
                    str(n),
                    str(actions.get("deliver", 0)),
                    str(actions.get("rephrase", 0)),
                    str(actions.get("escalate", 0)),
                    pct(100 * actions.get("escalate", 0) / n if n else 0),
                ]
            )
    return rows


TAG_HEADER = ["tag", "requests", "local", "cost", "savings", "cap"]


def tag_rows(by_tag: dict[str, dict[str, Any]]) -> list[list[str]]:
    """One row per budget tag under TAG_HEADER (cap "-": the tag has no limit of its own)."""
    return [
        [
            t,
            str(v["requests"]),
            pct(100 * v["local_share"]),
            usd(v["cost"]),
            f"{usd(v['savings'])} ({pct(v['savings_percent'])})",
            "-" if v.get("limit") is None else usd(v["limit"]),
        ]
        for t, v in by_tag.items()
    ]


def render(r: dict[str, Any]) -> str:
    b = r["budget"]
    plan = r["plan"]
    span = "closed month" if not r["current"] else f"month to date, {pct(100 * b['elapsed_share'])} elapsed"
    out = [f"# synqra-proxy report: {r['month']} ({span})", ""]
    out += _table(
        ["figure", "value"],
        [
            ["requests", f"{b['requests']:,}"],
            ["served locally", f"{b['local_requests']:,} ({pct(100 * b['local_share'])})"],
            ["spend", f"{usd(b['monthly_used'])} of {usd(b['monthly_limit'])} ({pct(b['percentage'])})"],
            ["projected month end (paid calls)", usd(b["projected_month_end"])],
            [f"all-Claude baseline ({b['baseline_model']})", usd(b["baseline_cost"])],
            ["savings", f"{usd(b['savings'])} ({pct(b['savings_percent'])})"],
            [
                "budget state",
                f"{b['state']}" + (f" (alerts fired: {', '.join(b['alerts_fired'])})" if b["alerts_fired"] else ""),
            ],
        ],
    )
    out += ["", "## Against the guide's plan", ""]
    out += _table(
        ["", "per month"],
        [
            ["before synqra (the guide)", usd(plan.before_usd)],
            ["target (the guide)", f"{usd(plan.target_low_usd)}-{usd(plan.target_high_usd)}"],
            ["projected bill this month", usd(plan.projected_usd)],
            ["the same traffic all on Claude, projected", usd(r["baseline_projected"])],
        ],
    )
    out += ["", f"Projected bill: **{plan.verdict}**.", "", "## Requests and cost per day", ""]
    busy = [d for d in r["daily"] if d["requests"] or d["cost_usd"]]
    out += (
        _table(
            ["date", "requests", "local", "cost"],
            [[d["date"], str(d["requests"]), str(d["local_requests"]), usd(d["cost_usd"])] for d in busy],
        )
        if busy
        else ["No requests."]
    )
    out += ["", "## Cost by model", ""]
    out += (
        _table(
            ["model", "calls", "tokens", "cost", "baseline"],
            [
                [m, str(v["calls"]), f"{v['tokens']:,}", usd(v["cost_usd"]), usd(v["baseline_usd"])]
                for m, v in r["by_model"].items()
            ],
        )
        if r["by_model"]
        else ["No calls."]
    )
    out += ["", "## Escalations and fallbacks", ""]
    out += _table(
        ["", "count"],
        [
            ["requests escalated to another model by the quality gate", str(r["escalated_requests"])],
            ["requests rephrased on the same model", str(r["rephrased_requests"])],
            ["requests a LiteLLM fallback answered (a model failed)", str(r["fallback_requests"])],
            [
                "failed requests billed all the same (timed out or broke off; not counted as requests)",
                f"{r['failed_billed_requests']} ({usd(r['failed_billed_usd'])})",
            ],
            *[[f"ledger calls of kind `{k}`", str(n)] for k, n in r["calls_by_kind"].items()],
        ],
    )
    out += ["", "## Quality verdicts by tier (from the proxy log)", ""]
    rows = verdict_rows(r["verdicts"])
    out += (
        _table(["mode", "first tier", "judged", "deliver", "rephrase", "escalate", "escalation rate"], rows)
        if rows
        else ["No verdicts logged this month."]
    )
    out += ["", NOT_OFFLINE, ""]
    by_tag = b.get("by_tag")
    if by_tag:
        out += ["## By tag", ""]
        out += _table(TAG_HEADER, tag_rows(by_tag))
        out += [""]
    router = r["router"]
    out += [
        "## Router and learning",
        "",
        f"Router version `{router['version']}` ({router['scorer']}), thresholds {router['thresholds']}.",
        "",
    ]
    runs = r["learning_runs"]
    if runs:
        out += _table(
            ["time", "outcome", "version", "why"],
            [
                [str(x.get("ts")), str(x.get("outcome")), str(x.get("version") or ""), str(x.get("reason") or "")]
                for x in runs
            ],
        )
    else:
        out += [f"No learning runs in {r['month']} ({router.get('note') or 'none recorded'})."]
    out += ["", f"Ledger: {r['store']} store, {r['client_requests_in_ledger']:,} client requests in the rows read."]
    return "\n".join(out) + "\n"
