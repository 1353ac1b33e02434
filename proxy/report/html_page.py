"""The month report as one self-contained HTML page: inline CSS and SVG, no script, nothing fetched."""

from __future__ import annotations

import time
from collections.abc import Set as AbstractSet
from html import escape
from typing import Any

from proxy.report import svg
from proxy.report.fmt import NOT_OFFLINE, pct, usd
from proxy.report.markdown import TAG_HEADER, tag_rows, verdict_rows

CSS = """
body{margin:0;background:#f6f7f9;color:#1d2433;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1000px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:21px;margin:4px 0 2px}h2{font-size:15px;margin:0 0 8px}
.muted{color:#667085}.card{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:12px 16px;margin:12px 0}
.kpis{display:grid;grid-template-columns:repeat(4,1fr);gap:10px}.kpi{background:#fff;border:1px solid #e4e7ec;border-radius:8px;padding:10px 12px}
.kpi b{display:block;font-size:20px}.kpi span{color:#667085;font-size:12px}
table{border-collapse:collapse;width:100%}th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #e4e7ec}
th{color:#667085;font-weight:500;font-size:12px}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}
.verdict{font-weight:600}
"""


def _table(head: list[str], rows: list[list[str]], numeric: AbstractSet[int] = frozenset()) -> str:
    def cells(r: list[str], tag: str) -> str:
        return "".join(f"<{tag}{' class=n' if i in numeric else ''}>{escape(c)}</{tag}>" for i, c in enumerate(r))

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    return f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>{body}</tbody></table>"


def _kpi(value: str, label: str, key: str) -> str:
    return f'<div class="kpi" data-figure="{key}"><b>{escape(value)}</b><span>{escape(label)}</span></div>'


def render(r: dict[str, Any]) -> str:
    b, plan, router = r["budget"], r["plan"], r["router"]
    span = "closed month" if not r["current"] else f"month to date, {pct(100 * b['elapsed_share'])} elapsed"
    kpis = "".join(
        [
            _kpi(f"{b['requests']:,}", "requests", "requests"),
            _kpi(pct(100 * b["local_share"]), f"served locally ({b['local_requests']:,})", "local_share"),
            _kpi(
                usd(b["monthly_used"]), f"spent of {usd(b['monthly_limit'])} ({pct(b['percentage'])})", "monthly_used"
            ),
            _kpi(
                usd(b["savings"]),
                f"saved vs all-Claude ({pct(b['savings_percent'])} of {usd(b['baseline_cost'])})",
                "savings",
            ),
        ]
    )
    plan_bars = svg.hbars(
        [
            ("before synqra (the guide)", plan.before_usd, usd(plan.before_usd), svg.GREY),
            (
                "target (the guide), upper end",
                plan.target_high_usd,
                f"{usd(plan.target_low_usd)}-{usd(plan.target_high_usd)}",
                svg.GREEN,
            ),
            ("projected bill this month", plan.projected_usd, usd(plan.projected_usd), svg.BLUE),
            ("same traffic all on Claude, projected", r["baseline_projected"], usd(r["baseline_projected"]), svg.AMBER),
        ]
    )
    models = r["by_model"]
    cost_bars = (
        svg.hbars(
            [(m, v["cost_usd"], f"{usd(v['cost_usd'])} ({v['calls']} calls)", svg.BLUE) for m, v in models.items()]
        )
        if models
        else "<p>No calls.</p>"
    )
    model_table = _table(
        ["model", "calls", "tokens", "cost", "baseline"],
        [
            [m, str(v["calls"]), f"{v['tokens']:,}", usd(v["cost_usd"]), usd(v["baseline_usd"])]
            for m, v in models.items()
        ],
        {1, 2, 3, 4},
    )
    esc_table = _table(
        ["", "count"],
        [
            ["requests escalated to another model by the quality gate", str(r["escalated_requests"])],
            ["requests rephrased on the same model", str(r["rephrased_requests"])],
            ["requests a LiteLLM fallback answered (a model failed)", str(r["fallback_requests"])],
            [
                "failed requests billed all the same (timed out or broke off; not counted as requests)",
                f"{r['failed_billed_requests']} ({usd(r['failed_billed_usd'])})",
            ],
            *[[f"ledger calls of kind {k}", str(n)] for k, n in r["calls_by_kind"].items()],
        ],
        {1},
    )
    vrows = verdict_rows(r["verdicts"])
    verdicts = (
        _table(
            ["mode", "first tier", "judged", "deliver", "rephrase", "escalate", "escalation rate"],
            vrows,
            {2, 3, 4, 5, 6},
        )
        if vrows
        else "<p>No verdicts logged this month.</p>"
    )
    by_tag = b.get("by_tag")
    tags = ""
    if by_tag:
        tags = (
            '<section class="card"><h2>By tag</h2>'
            + _table(TAG_HEADER, tag_rows(by_tag), {1, 2, 3, 4, 5})
            + "</section>"
        )
    runs = r["learning_runs"]
    runs_html = (
        _table(
            ["time", "outcome", "version", "why"],
            [
                [str(x.get("ts")), str(x.get("outcome")), str(x.get("version") or ""), str(x.get("reason") or "")]
                for x in runs
            ],
        )
        if runs
        else f"<p>No learning runs in {escape(r['month'])} ({escape(router.get('note') or 'none recorded')}).</p>"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>synqra-proxy report {escape(r["month"])}</title><style>{CSS}</style></head>
<body><main>
<h1>synqra-proxy report: {escape(r["month"])}</h1>
<div class="muted">{escape(span)}; budget state <b>{escape(b["state"])}</b>{escape(" (alerts fired: " + ", ".join(b["alerts_fired"]) + ")" if b["alerts_fired"] else "")}; generated {escape(time.strftime("%Y-%m-%d %H:%M %Z"))}</div>
<section class="kpis">{kpis}</section>
<section class="card"><h2>Spend against the {escape(usd(b["monthly_limit"]))} limit</h2>
{svg.spend_bar(b["monthly_used"], b["monthly_limit"], b["alert_at"], b["stop_at"], b["projected_month_end"])}
<div class="muted">Blue: spent ({escape(usd(b["monthly_used"]))}). Dashed: projected month end ({escape(usd(b["projected_month_end"]))}). Amber: alert at {b["alert_at"]:.0%}; red: paid calls stop at {b["stop_at"]:.0%}.</div></section>
<section class="card"><h2>Against the guide's plan ($150 a month before, $30-40 target)</h2>{plan_bars}
<p>Projected bill: <span class="verdict" data-figure="plan">{escape(plan.verdict)}</span> (paid calls at this month's pace, plus the local servers' flat cost).</p></section>
<section class="card"><h2>Requests and cost per day</h2>{svg.daily_chart(r["daily"], usd)}
<div class="muted">Bars: cost per day (left scale). Line: client requests per day (right scale).</div></section>
<section class="card"><h2>Cost by model</h2>{cost_bars}{model_table}</section>
<section class="card"><h2>Escalations and fallbacks</h2>{esc_table}</section>
<section class="card"><h2>Quality verdicts by tier <span class="muted">(from the proxy log)</span></h2>{verdicts}<p class="muted">{escape(NOT_OFFLINE)}</p></section>
{tags}
<section class="card"><h2>Router and learning</h2><p>Router version <code>{escape(router["version"])}</code> ({escape(router["scorer"])}), thresholds {escape(str(router["thresholds"]))}.</p>{runs_html}</section>
<p class="muted">Ledger: {escape(r["store"])} store, {r["client_requests_in_ledger"]:,} client requests in the rows read.</p>
</main></body></html>
"""
