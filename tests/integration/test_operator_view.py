"""The operator's view against the running stack: POST /api/agents, the guide's costs, `synqra report`, and the
dashboard in a real browser (Debian's Chromium driven by Playwright), after real requests."""

from __future__ import annotations

import calendar
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from policies.budget.policy import usd_text
from tests.browser import chromium, keep_screenshot
from tests.fakes.fake_providers import Scripted
from tests.stack import MASTER_KEY, REPO, RunningStack, wait_until


def status(stack: RunningStack) -> dict[str, Any]:
    r = httpx.get(f"{stack.base_url}/api/budget/status", headers=stack.headers(), timeout=30)
    assert r.status_code == 200
    return r.json()  # type: ignore[no-any-return]


def ledger(stack: RunningStack) -> list[dict[str, Any]]:
    r = httpx.get(f"{stack.base_url}/api/budget/ledger", headers=stack.headers(), timeout=30)
    assert r.status_code == 200
    return r.json()["records"]  # type: ignore[no-any-return]


def agents(stack: RunningStack, body: Any, key: str | None = MASTER_KEY) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    kw = {"json": body} if not isinstance(body, bytes) else {"content": body}
    return httpx.post(f"{stack.base_url}/api/agents", headers=headers, timeout=180, **kw)


def some_traffic(stack: RunningStack, openai_client: Any, marker: str) -> None:
    """A routed request, a paid one by name and one through /api/agents: cost today, requests, a ledger."""
    openai_client.chat.completions.create(
        model="auto", max_tokens=8, messages=[{"role": "user", "content": f"What is 2+2? {marker}"}]
    )
    openai_client.chat.completions.create(
        model="claude-sonnet", max_tokens=8, messages=[{"role": "user", "content": f"Hello {marker}"}]
    )
    assert (
        agents(stack, {"message": f"What is your pricing? {marker}", "agent": "docs-bot", "max_tokens": 8}).status_code
        == 200
    )


# --- POST /api/agents ------------------------------------------------------------------------------


def test_agents_is_served_like_a_chat_completion_to_auto(stack: RunningStack, openai_client: Any) -> None:
    message = "What is your pricing?"
    r = agents(stack, {"message": message, "agent": "support-bot", "max_tokens": 16, "system": "Answer briefly."})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"response", "model", "request_id", "route_score", "quality_score", "escalated", "cost_usd"} <= set(body)
    assert isinstance(body["response"], str) and body["response"]
    # The synqra headers of the chat completion it went through, and the body says the same.
    assert r.headers["x-synqra-request-id"] == body["request_id"]
    assert r.headers["x-synqra-route"] == body["model"]
    assert body["route_score"] == pytest.approx(float(r.headers["x-synqra-route-score"]))
    assert isinstance(body["escalated"], bool) and body["tag"] == "support-bot"
    # Routed as `auto` is: the same request as a chat completion gets the same route score.
    raw = openai_client.chat.completions.with_raw_response.create(
        model="auto",
        max_tokens=16,
        messages=[{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": message}],
    )
    assert raw.headers["x-synqra-route-score"] == r.headers["x-synqra-route-score"]
    # In the ledger: the request's own row (requested as auto) and any escalation, summing to cost_usd.
    rows = [
        x
        for x in ledger(stack)
        if x["request_id"] == body["request_id"] or (x["parent_id"] or "").startswith(body["request_id"])
    ]
    own = [x for x in rows if x["request_id"] == body["request_id"] or x["kind"] == "fallback"]
    assert own and own[0]["requested_model"] == "auto" and own[0]["counts_request"]
    assert body["cost_usd"] == pytest.approx(sum(x["cost_usd"] for x in rows), abs=1e-9)
    assert own[0]["tag"] == "support-bot", "the agent is the request's tag in the ledger"


def test_agents_creative_work_goes_to_claude(stack: RunningStack, fresh_providers: Any) -> None:
    r = agents(stack, {"message": "Write a compelling brand story for a luxury tech startup", "max_tokens": 32})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "claude-sonnet" and body["response"] == "Fake Claude answer."
    assert body["cost_usd"] > 0 and fresh_providers["anthropic"].requests, "the fake Claude was called and billed"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"not json", None),
        ([1, 2], None),
        ({}, "message"),
        ({"message": ""}, "message"),
        ({"message": ["a"]}, "message"),
        ({"message": "hi", "max_tokens": -1}, "max_tokens"),
        ({"message": "hi", "model": "claude-sonnet"}, "model"),
    ],
)
def test_agents_bad_input_is_a_400_in_the_api_format(stack: RunningStack, body: Any, param: str | None) -> None:
    before = len(ledger(stack))
    r = agents(stack, body)
    assert r.status_code == 400
    error = r.json()["detail"]["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["message"]
    assert len(ledger(stack)) == before, "nothing recorded, nothing spent"
    assert httpx.get(f"{stack.base_url}/health/liveliness", timeout=10).status_code == 200


def test_agents_needs_the_master_key(stack: RunningStack) -> None:
    for key in (None, "sk-wrong"):
        r = agents(stack, {"message": "hi"}, key=key)
        assert r.status_code == 401 and r.json()["detail"]["error"]["type"] == "auth_error"


# --- GET /api/models/status costs ------------------------------------------------------------------


def test_models_status_costs_are_the_budget_status(stack: RunningStack, openai_client: Any) -> None:
    some_traffic(stack, openai_client, uuid.uuid4().hex)
    r = httpx.get(f"{stack.base_url}/api/models/status", headers=stack.headers(), timeout=30)
    assert r.status_code == 200
    costs, b = r.json()["costs"], status(stack)
    assert costs == {
        "month": b["month"],
        "localInferences": b["local_requests"],
        "cloudInferences": b["requests"] - b["local_requests"],
        "monthlyCost": b["monthly_used"],
        "savings": b["savings"],
        "savingsPercentage": b["savings_percent"],
    }
    assert costs["cloudInferences"] > 0 and costs["monthlyCost"] > 0


# --- synqra report -----------------------------------------------------------------------------------


def run_report(stack: RunningStack, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    return subprocess.run(
        [sys.executable, "-m", "proxy.cli", "report", "--config", str(stack.config_path), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=120,
    )


def usd(x: float) -> str:
    """Dollars as the report and the dashboard word them (three significant digits below a dollar)."""
    return usd_text(x)


def test_report_after_real_requests(stack: RunningStack, openai_client: Any, tmp_path: Path) -> None:
    some_traffic(stack, openai_client, uuid.uuid4().hex)
    b = status(stack)
    md = run_report(stack)
    assert md.returncode == 0, md.stderr
    text = md.stdout
    assert f"# synqra-proxy report: {b['month']}" in text
    assert f"| requests | {b['requests']:,} |" in text
    assert f"| spend | {usd(b['monthly_used'])} of {usd(b['monthly_limit'])}" in text
    assert f"| savings | {usd(b['savings'])} ({b['savings_percent']:.1f}%) |" in text
    assert "claude-sonnet" in text and "## Against the guide's plan" in text

    out = tmp_path / "report.html"
    page = run_report(stack, "--out", str(out))
    assert page.returncode == 0, page.stderr
    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1366, "height": 900})
        pg = ctx.new_page()
        fetched: list[str] = []
        pg.on("request", lambda req: fetched.append(req.url))
        pg.goto(out.as_uri())
        assert fetched == [out.as_uri()], "self-contained: the page fetches nothing"
        assert pg.inner_text("[data-figure=requests] b") == f"{b['requests']:,}"
        assert pg.inner_text("[data-figure=monthly_used] b") == usd(b["monthly_used"])
        assert pg.inner_text("[data-figure=savings] b") == usd(b["savings"])
        # The daily chart: one bar per day of the month, today's drawn (real requests cost money today).
        year, month = (int(x) for x in b["month"].split("-"))
        chart = pg.locator("svg[aria-label='requests and cost per day']")
        assert chart.locator("rect.bar").count() == calendar.monthrange(year, month)[1]
        assert chart.locator("rect.bar").evaluate_all("rs => rs.filter(r => r.getBBox().height > 0).length") >= 1
        assert pg.evaluate("document.documentElement.scrollWidth") <= 1366, "fits a laptop screen's width"
        png = tmp_path / "report.png"
        pg.screenshot(path=str(png), full_page=True)
        keep_screenshot(png, "report.png")
    assert png.stat().st_size > 10_000


def test_report_refuses_a_bad_month(stack: RunningStack) -> None:
    r = run_report(stack, "--month", "2026-13")
    assert r.returncode == 2 and "not a month" in r.stderr


# --- the dashboard in a real browser -----------------------------------------------------------------

FIGURES = {  # element id -> /api/budget/status key
    "spend": "monthly_used",
    "limit": "monthly_limit",
    "percentage": "percentage",
    "savings": "savings",
    "savings-percent": "savings_percent",
    "baseline": "baseline_cost",
    "local-share": "local_share",
    "requests": "requests",
    "local-requests": "local_requests",
}


def signed_in_dashboard(browser: Any, base_url: str) -> Any:
    """A page of the dashboard, signed in with the master key and loaded."""
    pg = browser.new_context(viewport={"width": 1366, "height": 900}).new_page()
    pg.goto(f"{base_url}/dashboard")
    pg.fill("#key", MASTER_KEY)
    pg.click("button[type=submit]")
    pg.wait_for_selector("body[data-loaded]", timeout=30_000)
    return pg


def test_dashboard_in_a_real_browser(stack: RunningStack, openai_client: Any, tmp_path: Path) -> None:
    marker = "secret-prompt-" + uuid.uuid4().hex
    some_traffic(stack, openai_client, marker)
    with chromium() as browser:
        ctx = browser.new_context(viewport={"width": 1366, "height": 900})
        pg = ctx.new_page()
        pg.goto(f"{stack.base_url}/dashboard")
        # A wrong key: refused with the form again, no cookie.
        pg.fill("#key", "sk-not-the-key")
        with pg.expect_response(lambda r: r.url.endswith("/dashboard/login")) as wrong:
            pg.click("button[type=submit]")
        assert wrong.value.status == 401
        assert "not this proxy's master key" in pg.inner_text("#login-error")
        assert pg.locator("#key").is_visible() and ctx.cookies() == []
        # The right key: the dashboard, a session cookie that is not the key, no key in the URL.
        pg.fill("#key", MASTER_KEY)
        pg.click("button[type=submit]")
        pg.wait_for_selector("body[data-loaded]", timeout=30_000)
        assert MASTER_KEY not in pg.url
        (cookie,) = ctx.cookies()
        assert cookie["name"] == "synqra_dashboard" and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert MASTER_KEY not in cookie["value"] and cookie["path"] == "/dashboard"
        assert pg.evaluate("document.cookie") == "", "HttpOnly: the page's script cannot read it"

        # The page's figures are /api/budget/status's (no traffic meanwhile).
        b = status(stack)
        for el_id, key in FIGURES.items():
            assert float(pg.get_attribute(f"#{el_id}", "data-value")) == pytest.approx(b[key], abs=1e-9), el_id
        assert pg.get_attribute("#state", "data-value") == b["state"]
        assert float(pg.get_attribute("#projected", "data-value")) == pytest.approx(b["projected_month_end"], rel=1e-3)
        assert pg.inner_text("#requests") == str(b["requests"])
        # The chart is drawn: a bar per day of the month, today's bar has height (paid requests today).
        year, month = (int(x) for x in b["month"].split("-"))
        bars = pg.locator("#daily-chart rect.day-cost")
        assert bars.count() == calendar.monthrange(year, month)[1]
        assert bars.evaluate_all("rs => rs.filter(r => r.getBBox().height > 0).length") >= 1
        assert pg.locator("#daily-chart polyline").get_attribute("points")
        # Recent requests, model health and the router, never the prompt text.
        assert pg.locator("#recent-table tbody tr").count() >= 3
        assert "local-llama" in pg.inner_text("#models") and "shipped-" in pg.inner_text("#router-version")
        assert marker not in pg.content()
        shown = pg.inner_text("main")
        assert "null" not in shown and "undefined" not in shown and "NaN" not in shown
        # It refreshes by itself: a new request shows up without a reload.
        agents(stack, {"message": "One more, please.", "max_tokens": 8})
        want = status(stack)["requests"]
        assert wait_until(lambda: pg.get_attribute("#requests", "data-value") == str(want), timeout_s=30), "no refresh"
        png = tmp_path / "dashboard.png"
        pg.screenshot(path=str(png), full_page=True)
        keep_screenshot(png, "dashboard.png")
        session = cookie["value"]
        # The JSON needs the session or the master key.
        assert httpx.get(f"{stack.base_url}/dashboard/data", timeout=30).status_code == 401
        assert httpx.get(f"{stack.base_url}/dashboard/data", headers=stack.headers(), timeout=30).status_code == 200
        assert (
            httpx.get(f"{stack.base_url}/dashboard/data", cookies={"synqra_dashboard": session}, timeout=30).status_code
            == 200
        )
        # Signing out ends the session on the server too.
        pg.click("#sign-out")
        pg.wait_for_selector("#key")
        assert ctx.cookies() == []
        assert (
            httpx.get(f"{stack.base_url}/dashboard/data", cookies={"synqra_dashboard": session}, timeout=30).status_code
            == 401
        )
    assert png.stat().st_size > 10_000


def test_a_small_budget_keeps_its_digits_on_the_dashboard(stack: RunningStack, providers: Any, tmp_path: Path) -> None:
    """A $0.05 limit: its 70% alert mark is $0.035 and its 95% stop mark $0.0475, which read "$0.04" and "$0.05"
    (cents), the stop mark the limit itself. Below a dollar the page shows three significant digits."""
    from tests.stack import start_stack

    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"budget": {"monthly_limit_usd": 0.05}})
    try:
        with chromium() as browser:
            pg = signed_in_dashboard(browser, s.base_url)
            assert pg.inner_text("#limit") == "$0.05"
            assert pg.inner_text("#mark-alert-label") == "alert at 70% ($0.035)"
            assert pg.inner_text("#mark-stop-label") == "paid calls stop at 95% ($0.0475)"
    finally:
        s.stop()


def test_dashboard_page_is_closed_to_other_methods_and_safe_headers(stack: RunningStack) -> None:
    r = httpx.get(f"{stack.base_url}/dashboard", timeout=10)
    assert r.status_code == 200 and 'name="key"' in r.text and MASTER_KEY not in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert httpx.delete(f"{stack.base_url}/dashboard", timeout=10).status_code == 403
    assert httpx.get(f"{stack.base_url}/dashboard/assets/../../etc/passwd", timeout=10).status_code in (403, 404)
    js = httpx.get(f"{stack.base_url}/dashboard/assets/dashboard.js", timeout=10)
    assert (
        js.status_code == 200
        and "http://" not in js.text.replace("http://www.w3.org/2000/svg", "")
        and "https://" not in js.text
    )
    assert httpx.post(f"{stack.base_url}/dashboard/login", data={"key": "nope"}, timeout=10).status_code == 401


def test_spend_by_tag_on_the_dashboard_and_in_the_report(
    stack: RunningStack, openai_client: Any, tmp_path: Path
) -> None:
    agents(stack, {"message": "Tagged question?", "agent": "docs-bot", "max_tokens": 8})
    r = httpx.get(f"{stack.base_url}/api/budget/status", params={"by": "tag"}, headers=stack.headers(), timeout=30)
    assert r.status_code == 200
    by_tag = r.json()["by_tag"]
    assert "docs-bot" in by_tag and by_tag["docs-bot"]["requests"] >= 1
    with chromium() as browser:
        pg = signed_in_dashboard(browser, stack.base_url)
        assert pg.locator("#tags-card").is_visible()
        rows = {
            tr.locator("td").first.inner_text(): [td.inner_text() for td in tr.locator("td").all()]
            for tr in pg.locator("#tags tbody tr").all()
        }
        assert set(rows) == set(by_tag)
        docs = by_tag["docs-bot"]
        assert rows["docs-bot"][1] == str(docs["requests"]) and rows["docs-bot"][3] == usd(docs["cost"])
    md = run_report(stack)
    assert md.returncode == 0 and "## By tag" in md.stdout and "| docs-bot |" in md.stdout


def test_dashboard_with_two_workers(stack: RunningStack, providers: Any, tmp_path: Path) -> None:
    """With num_workers 2, whichever worker answers: the counters are both workers' sums, as /metrics has them,
    and a sign-out on one worker ends the session on the other."""
    from tests.stack import start_stack

    s = start_stack(tmp_path, providers, backends_of=stack, synqra_overrides={"server": {"num_workers": 2}})
    try:
        auth = s.headers()
        for i in range(6):
            r = httpx.post(
                f"{s.base_url}/v1/chat/completions",
                headers=auth,
                timeout=120,
                json={
                    "model": "auto",
                    "max_tokens": 8,
                    "messages": [{"role": "user", "content": f"Name a colour {i}."}],
                },
            )
            assert r.status_code == 200
        login = httpx.post(f"{s.base_url}/dashboard/login", data={"key": MASTER_KEY}, timeout=30)
        assert login.status_code == 303
        session = login.cookies["synqra_dashboard"]

        def live_decisions() -> float:
            text = httpx.get(f"{s.base_url}/metrics", headers=auth, timeout=30).text
            return sum(
                float(x.rsplit(" ", 1)[1])
                for x in text.splitlines()
                if x.startswith("synqra_route_decisions_total{") and 'mode="live"' in x
            )

        assert live_decisions() == 6
        for _ in range(6):  # a new connection each: the workers share them
            data = httpx.get(f"{s.base_url}/dashboard/data", cookies={"synqra_dashboard": session}, timeout=30)
            assert data.status_code == 200 and data.json()["tier_mix"]["total"] == 6
        out = httpx.post(f"{s.base_url}/dashboard/logout", cookies={"synqra_dashboard": session}, timeout=30)
        assert out.status_code == 303
        for _ in range(6):
            assert (
                httpx.get(f"{s.base_url}/dashboard/data", cookies={"synqra_dashboard": session}, timeout=30).status_code
                == 401
            )
    finally:
        s.stop()


def _escalated_served(stack: RunningStack) -> float:
    """synqra_quality_served_total summed over answers served by another tier than the one that answered first."""
    text = httpx.get(f"{stack.base_url}/metrics", headers=stack.headers(), timeout=30).text
    total = 0.0
    for m in re.finditer(
        r'^synqra_quality_served_total\{first_tier="([^"]+)",served_tier="([^"]+)"\} (\S+)$', text, re.M
    ):
        total += float(m.group(3)) if m.group(1) != m.group(2) else 0.0
    return total


def _report_counts(stack: RunningStack) -> tuple[int, int]:
    """The report's (client requests in the ledger, requests escalated by the quality gate)."""
    md = run_report(stack)
    assert md.returncode == 0, md.stderr
    served = re.search(r"([\d,]+) client requests in the rows read", md.stdout)
    escalated = re.search(r"requests escalated to another model by the quality gate \| (\d+) \|", md.stdout)
    assert served and escalated, md.stdout
    return int(served.group(1).replace(",", "")), int(escalated.group(1))


def test_billed_failures_are_spend_not_requests_nor_escalations(stack: RunningStack, fresh_providers: Any) -> None:
    """Two requests that leave billed rows without answers: a non-streamed call that timed out, its fallback too
    (rows `<id>:timeout1`, no request counted), and a streamed `auto` request whose escalation to DeepSeek broke off
    after three words (the gate delivered the local answer: escalate_failed). The budget counts one request and both
    costs; /metrics counts no escalation. The dashboard's recent list showed the timed-out request, the report's
    footer counted it, and both called the second request escalated (its cut escalation's row read as one that
    answered)."""
    claude, gpt, deepseek = fresh_providers["anthropic"], fresh_providers["openai"], fresh_providers["deepseek"]
    wait_until(lambda: status(stack)["reserved"] == 0, 30)
    before, escalated_before, report_before = status(stack), _escalated_served(stack), _report_counts(stack)
    claude.push(Scripted(delay_s=3))
    gpt.push(Scripted(delay_s=3))
    body = {"model": "claude-sonnet", "messages": [{"role": "user", "content": "Time out."}], "max_tokens": 16}
    r = httpx.post(
        f"{stack.base_url}/v1/chat/completions", json={**body, "timeout": 1}, headers=stack.headers(), timeout=60
    )
    assert r.status_code == 408, r.text
    timed_out = r.headers["x-synqra-request-id"]
    deepseek.push(
        Scripted(text="Hello there, this answer is going to be cut off after three words.", cut_after_words=3)
    )
    cut_off = {
        "model": "auto",
        "max_tokens": 3,
        "temperature": 0,
        "messages": [{"role": "user", "content": "Say hello."}],
    }
    with httpx.stream(
        "POST",
        f"{stack.base_url}/v1/chat/completions",
        json={**cut_off, "stream": True},
        headers=stack.headers(),
        timeout=120,
    ) as s:
        assert s.status_code == 200
        s.read()
        cut = s.headers["x-synqra-request-id"]

    def settled() -> bool:
        ids = {x["request_id"] for x in ledger(stack)}
        return (
            status(stack)["reserved"] == 0
            and {f"{timed_out}:timeout1", f"{timed_out}:fallback:gpt-4o:timeout1"} <= ids
            and any(i.startswith(f"{cut}:1") for i in ids)
        )

    assert wait_until(settled, 30), [x for x in ledger(stack) if x["request_id"].startswith((timed_out, cut))]
    after = status(stack)
    mine = [x for x in ledger(stack) if x["request_id"].startswith((timed_out, cut))]
    assert after["requests"] - before["requests"] == 1
    assert abs((after["monthly_used"] - before["monthly_used"]) - sum(x["cost_usd"] for x in mine)) < 2e-6
    assert _escalated_served(stack) == escalated_before, "the gate served the local answer"

    def recent() -> dict[str, Any]:
        data = httpx.get(f"{stack.base_url}/dashboard/data", headers=stack.headers(), timeout=30).json()
        return {x["request_id"]: x for x in data["recent"]}

    assert wait_until(lambda: cut in recent(), 30)
    rows = recent()
    assert timed_out not in rows, "a request that timed out is no served request"
    assert not rows[cut]["escalated"], rows[cut]
    served, escalated = _report_counts(stack)
    assert served - report_before[0] == after["requests"] - before["requests"]
    assert escalated == report_before[1]


def test_the_router_card_shows_the_last_fit_and_the_last_rollback_apart(
    stack: RunningStack, providers: Any, tmp_path: Path
) -> None:
    """After an install and a `synqra learn --rollback`, the card's "last learning run" was the rollback."""
    from policies.learning.registry import ROLLED_BACK, RouterRegistry
    from policies.routing.scorer import DEFAULT_ARTIFACT
    from tests.stack import start_stack

    s = start_stack(tmp_path, providers, backends_of=stack)
    try:
        registry = RouterRegistry(s.data_dir / "learning" / "routers", DEFAULT_ARTIFACT)
        registry.record_run({"decision": "installed", "version": "20261201T000000Z-abcdef12", "reason": "won"})
        registry.record_run({"decision": ROLLED_BACK, "version": "base", "reason": "synqra learn --rollback"})
        with chromium() as browser:
            pg = signed_in_dashboard(browser, s.base_url)
            last = pg.inner_text("#router-last-run")
            assert "installed" in last and "20261201T000000Z-abcdef12" in last and ROLLED_BACK not in last, last
            assert ROLLED_BACK in pg.inner_text("#router-last-rollback")
    finally:
        s.stop()
