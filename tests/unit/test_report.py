"""`synqra report`'s figures and pages from a real SQLite ledger written by the budget guard."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from policies.budget.guard import BudgetGuard
from policies.budget.policy import usd_text
from policies.budget.records import CallRecord
from policies.common.budget_settings import BudgetSettings
from policies.common.offline import apply_offline_env
from policies.common.settings import LOG_FORMAT, AppConfig, ModelEntry, SynqraSettings
from proxy.report import html_page, markdown
from proxy.report.summary import logged_verdicts, month_report

apply_offline_env()

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def app_config(tmp: Path) -> AppConfig:
    def entry(name: str, i: float, o: float, **info: Any) -> ModelEntry:
        return ModelEntry(
            model_name=name,
            litellm_params={"model": f"openai/{name}"},
            model_info={"input_cost_per_token": i, "output_cost_per_token": o, **info},
        )

    models = [
        entry("local-llama", 0, 0),
        entry("local-embed", 0, 0, mode="embedding"),
        entry("deepseek-chat", 0.28e-6, 0.42e-6),
        entry("claude-sonnet", 3e-6, 15e-6),
        entry("auto", 0, 0),
    ]
    synqra = SynqraSettings.model_validate(
        {"server": {"data_dir": str(tmp)}, "budget": {"store": "sqlite", "monthly_limit_usd": 10}}
    )
    return AppConfig(path=tmp / "litellm_config.yaml", model_list=models, synqra=synqra)


async def fill(guard: BudgetGuard) -> None:
    """Three client requests: one local, one escalated local -> DeepSeek, one on Claude."""
    await guard.record_free(CallRecord("r1", "auto", "local-llama", 100, 50))
    await guard.record_free(CallRecord("r2", "auto", "local-llama", 100, 50))
    res = await guard.reserve("r2:escalation:deepseek-chat:1", "deepseek-chat", 100, 200)
    await guard.settle(
        res,
        CallRecord(
            "r2:escalation:deepseek-chat:1",
            "auto",
            "deepseek-chat",
            100,
            80,
            kind="escalation",
            parent_id="r2",
            counts_request=False,
            leaves_local=True,
        ),
    )
    res = await guard.reserve("r3", "claude-sonnet", 1000, 500)
    await guard.settle(res, CallRecord("r3", "auto", "claude-sonnet", 1000, 400))


def build(tmp_path: Path, month: str | None = None, now: datetime = NOW) -> tuple[dict[str, Any], dict[str, Any]]:
    cfg = app_config(tmp_path)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        guard = BudgetGuard.from_config(cfg, now=lambda: NOW, env={})
        await fill(guard)
        await guard.aclose()
        guard = BudgetGuard.from_config(cfg, now=lambda: now, env={})  # a fresh reader, as `synqra report` is
        try:
            report = await month_report(cfg, guard, month, now=lambda: now)
            return report, await guard.status()
        finally:
            await guard.aclose()

    return asyncio.run(main())


def test_report_figures_are_the_budget_status(tmp_path: Path) -> None:
    report, status = build(tmp_path)
    b = report["budget"]
    for key in (
        "requests",
        "local_requests",
        "local_share",
        "monthly_used",
        "baseline_cost",
        "savings",
        "savings_percent",
        "projected_month_end",
        "state",
    ):
        assert b[key] == status[key], key
    assert b["requests"] == 3 and b["local_requests"] == 1
    assert report["escalated_requests"] == 1 and report["fallback_requests"] == 0
    assert report["by_model"]["claude-sonnet"]["calls"] == 1
    assert abs(sum(m["cost_usd"] for m in report["by_model"].values()) - status["monthly_used"]) < 1e-6
    assert report["daily"][9]["requests"] == 3 and sum(d["requests"] for d in report["daily"]) == 3
    assert report["plan"].projected_usd == status["projected_month_end"]
    assert report["learning_runs"] == [] and report["router"]["version"].startswith("shipped-")


def test_markdown_and_html_pages(tmp_path: Path) -> None:
    report, status = build(tmp_path)
    md = markdown.render(report)
    assert "# synqra-proxy report: 2026-03" in md
    assert "| requests | 3 |" in md and "1 (33.3%)" in md
    assert f"{status['savings_percent']:.1f}%" in md
    assert "requests escalated to another model by the quality gate | 1 |" in md
    page = html_page.render(report)
    assert page.startswith("<!doctype html>") and page.count("<svg") >= 4
    # Self-contained: nothing to fetch, no script.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "<script" not in page.lower()
    # One bar per day of March in the daily chart, plus the spend bar and the bars of the other charts.
    daily = page[page.index('aria-label="requests and cost per day"') :]
    assert daily[: daily.index("</svg>")].count('class="bar"') == 31


def test_a_closed_month_projects_what_it_spent(tmp_path: Path) -> None:
    report, _ = build(tmp_path, month="2026-03", now=datetime(2026, 4, 2, tzinfo=UTC))
    b = report["budget"]
    assert not report["current"] and b["state"] == "closed" and b["elapsed_share"] == 1.0
    assert b["projected_month_end"] == b["monthly_used"] > 0 and b["requests"] == 3


def test_verdicts_are_read_from_the_quality_gates_log_lines() -> None:
    # The line proxy/quality_gate.py logs, through the proxy's own log format.
    handler_lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handler_lines.append(self.format(record))

    h = Keep()
    h.setFormatter(logging.Formatter(LOG_FORMAT))
    log = logging.getLogger("synqra.quality")
    log.addHandler(h)
    log.setLevel(logging.INFO)
    try:
        for action, first in (("deliver", "local-llama"), ("escalate", "local-llama"), ("rephrase", "deepseek-chat")):
            log.info(
                "quality %.3f %s (%s) -> chain %s served by %s%s first=%s route_score=%s scorer=%s",
                0.5,
                action,
                "ok",
                "false",
                first,
                "",
                first,
                0.2,
                "learned",
            )
        # proxy/shadow_eval.py's line
        log.info(
            "shadow quality %.3f %s (%s) first=%s %s chosen=%s request=%s",
            0.9,
            "deliver",
            "ok",
            "local-llama",
            "route_score=0.1 scorer=learned",
            "deepseek-chat",
            "synqra-x",
        )
    finally:
        log.removeHandler(h)
    month = datetime.now().strftime("%Y-%m")  # asctime is the process's local time
    got = logged_verdicts(handler_lines, month)
    assert got["live"] == {"local-llama": {"deliver": 1, "escalate": 1}, "deepseek-chat": {"rephrase": 1}}
    assert got["shadow"] == {"local-llama": {"deliver": 1}}
    assert logged_verdicts(handler_lines, "1999-01") == {"live": {}, "shadow": {}}


def test_a_request_that_only_timed_out_is_spend_not_a_request(tmp_path: Path) -> None:
    """A non-streamed call that timed out, whose fallback timed out too, is recorded at its worst case as rows that
    count no request (`<id>:timeout1`, the Accountant's attempt_timed_out). The report's footer counted it as a client
    request (4 where the month has 3); its cost must stay in the spend, and the report says where it went."""
    cfg = app_config(tmp_path)

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        guard = BudgetGuard.from_config(cfg, now=lambda: NOW, env={})
        try:
            await fill(guard)
            await guard.record_free(
                CallRecord(
                    "t:timeout1", "claude-sonnet", "claude-sonnet", 500, 4096, parent_id="t", counts_request=False
                )
            )
            await guard.record_free(
                CallRecord(
                    "t:fallback:deepseek-chat:timeout1",
                    "claude-sonnet",
                    "deepseek-chat",
                    500,
                    4096,
                    kind="fallback",
                    parent_id="t:fallback:deepseek-chat",
                    counts_request=False,
                )
            )
            return await month_report(cfg, guard, None, now=lambda: NOW), await guard.status()
        finally:
            await guard.aclose()

    report, status = asyncio.run(main())
    assert status["requests"] == 3
    assert report["client_requests_in_ledger"] == 3 and report["fallback_requests"] == 0
    assert report["failed_billed_requests"] == 1
    timed_out = 500 * 3e-6 + 4096 * 15e-6 + 500 * 0.28e-6 + 4096 * 0.42e-6
    assert abs(report["failed_billed_usd"] - timed_out) < 1e-9
    assert abs(sum(m["cost_usd"] for m in report["by_model"].values()) - status["monthly_used"]) < 1e-6
    md = markdown.render(report)
    assert "3 client requests in the rows read" in md and f"| 1 ({usd_text(timed_out)})" in md


def test_a_closed_months_alerts_are_its_own_and_its_tags_are_listed(tmp_path: Path) -> None:
    """A tag's cap fired its alert in March ("tag:0.7:docs-bot" in the store's alerts). The closed month's report listed
    it among the month's alerts (status() never does: the month spent 0.1% of its limit) and had no spend by tag."""
    cfg = app_config(tmp_path)
    cfg.synqra.budget.tags = BudgetSettings.model_validate({"tags": {"docs-bot": {"monthly_limit_usd": 0.012}}}).tags

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        guard = BudgetGuard.from_config(cfg, now=lambda: NOW, env={})
        try:
            await fill(guard)
            res = await guard.reserve("d1", "claude-sonnet", 1000, 500, tag="docs-bot")
            await guard.settle(res, CallRecord("d1", "auto", "claude-sonnet", 1000, 400, tag="docs-bot"))
            march = await guard.status(by_tag=True)
        finally:
            await guard.aclose()
        april = datetime(2026, 4, 2, tzinfo=UTC)
        guard = BudgetGuard.from_config(cfg, now=lambda: april, env={})
        try:
            return await month_report(cfg, guard, "2026-03", now=lambda: april), march
        finally:
            await guard.aclose()

    report, march = asyncio.run(main())
    b = report["budget"]
    assert march["by_tag"]["docs-bot"]["cost"] == 0.009 and march["alerts_fired"] == []
    assert b["alerts_fired"] == [], b["alerts_fired"]
    assert set(b["by_tag"]) == {"docs-bot", "untagged"}
    for tag in ("docs-bot", "untagged"):
        for key in ("cost", "baseline", "requests", "local_requests", "limit"):
            assert b["by_tag"][tag][key] == march["by_tag"][tag][key], (tag, key)
    md = markdown.render(report)
    assert "## By tag" in md and "| docs-bot | 1 |" in md and "alerts fired" not in md


def test_a_judges_monthly_limit_is_its_tags_cap_in_the_report(tmp_path: Path) -> None:
    """`synqra report` reads the ledger without a running proxy (no judge set its cap): the judges' monthly limits
    come from the config, as the proxy's judges hold them (the report's tag table showed no cap)."""
    cfg = app_config(tmp_path)
    cfg.synqra.quality.judge.enabled = True
    cfg.synqra.quality.judge.monthly_limit_usd = 2.0

    async def main() -> tuple[dict[str, Any], dict[str, Any]]:
        guard = BudgetGuard.from_config(cfg, now=lambda: NOW, env={})
        await fill(guard)
        rid = "r1:judge-quality-1"
        res = await guard.reserve(rid, "deepseek-chat", 100, 10, tag="synqra-judge-quality")
        judge = CallRecord(rid, "deepseek-chat", "deepseek-chat", 100, 5, kind="judge", parent_id="r1")
        await guard.settle(res, dataclasses.replace(judge, counts_request=False, tag="synqra-judge-quality"))
        await guard.aclose()
        guard = BudgetGuard.from_config(cfg, now=lambda: NOW, env={})
        try:
            return await month_report(cfg, guard, None, now=lambda: NOW), await guard.status(by_tag=True)
        finally:
            await guard.aclose()

    report, status = asyncio.run(main())
    for by in (report["budget"]["by_tag"], status["by_tag"]):
        assert by["synqra-judge-quality"]["limit"] == 2.0
        assert by["synqra-judge-quality"]["requests"] == 0
    assert "| synqra-judge-quality | 0 | 0.0% |" in markdown.render(report)
    assert "$2.00" in markdown.render(report).split("| synqra-judge-quality |")[1].split("\n")[0]


def test_a_learning_runs_month_is_the_budgets_month(tmp_path: Path) -> None:
    """A `synqra learn` run at 20:00 UTC on March 31st ran on April 1st in Tokyo: with the budget in Asia/Tokyo, the
    report of April (whose spend and requests start at Tokyo's midnight) lists it and March's does not. The run's
    month was taken in UTC whatever the budget's timezone: March's report listed it, April's did not."""
    from policies.learning.registry import RouterRegistry
    from policies.routing.scorer import DEFAULT_ARTIFACT

    cfg = app_config(tmp_path)
    cfg.synqra.budget.timezone = "Asia/Tokyo"
    folder = cfg.synqra.learning.store_path(cfg.synqra.server.data_path)
    run_at = datetime(2026, 3, 31, 20, tzinfo=UTC)
    RouterRegistry(folder / "routers", DEFAULT_ARTIFACT).record_run(
        {"ts": run_at.timestamp(), "decision": "kept", "reason": "too few labels"}
    )
    april = datetime(2026, 4, 2, tzinfo=UTC)

    async def runs(month: str) -> list[str]:
        guard = BudgetGuard.from_config(cfg, now=lambda: april, env={})
        try:
            return [r["outcome"] for r in (await month_report(cfg, guard, month, now=lambda: april))["learning_runs"]]
        finally:
            await guard.aclose()

    assert asyncio.run(runs("2026-04")) == ["kept"]
    assert asyncio.run(runs("2026-03")) == []


def test_an_out_file_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path, capsys: Any) -> None:
    # `--out /no/such/dir/report.html` ended in a FileNotFoundError traceback (found by review17).
    import yaml

    from proxy.report.cli import main

    cfg = yaml.safe_load((Path(__file__).resolve().parents[2] / "litellm_config.yaml").read_text())
    cfg["synqra"]["server"]["data_dir"] = str(tmp_path / "data")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(cfg))
    target = tmp_path / "no" / "such" / "report.html"
    assert main(["--config", str(config), "--out", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("synqra report: cannot write") and str(target) in err and "\n" not in err
    assert not target.exists()
