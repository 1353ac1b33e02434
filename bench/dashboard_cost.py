"""What the dashboard weighs and costs: page weight, time to first render, and proxy CPU with the page open.

Run: .venv/bin/python -m bench.dashboard_cost [--seconds 60]
Starts the stack on fresh ports with fake cloud providers, sends a few requests so the ledger has rows, signs in
with Debian's Chromium (Playwright) and measures:
- page weight: bytes of every response the signed-in page loads (HTML, script, style sheet, the first JSON);
- time to first render: the browser's own performance timing (first contentful paint, and the first draw of
  the figures, a `performance.mark` the page sets once its first JSON is drawn), median of 5 reloads;
- proxy CPU: user + system CPU seconds of the proxy process over `--seconds` with no page open, then with the
  page open (it refreshes every 5 s), back to back. The machine is shared: rerun on a quiet one for final figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from bench.measure import cpu_seconds, median, table, write_result
from tests.browser import FLAGS, chromium_path
from tests.fakes.fake_providers import FakeProvider
from tests.stack import MASTER_KEY, start_stack


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args(argv)
    from playwright.sync_api import sync_playwright

    providers = {
        n: FakeProvider(n, default_text=f"Fake {n} answer.").start() for n in ("openai", "deepseek", "anthropic")
    }
    with tempfile.TemporaryDirectory() as tmp:
        stack = start_stack(Path(tmp), providers)
        try:
            h = stack.headers()
            for i, model in enumerate(["auto", "claude-sonnet", "deepseek-chat", "auto", "local-llama"]):
                httpx.post(
                    f"{stack.base_url}/v1/chat/completions",
                    headers=h,
                    timeout=120,
                    json={"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": f"Question {i}?"}]},
                )
            pid = stack.pids()["proxy"]
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=chromium_path(), headless=True, args=FLAGS)
                ctx = browser.new_context(viewport={"width": 1366, "height": 900})
                page = ctx.new_page()
                page.goto(f"{stack.base_url}/dashboard")
                page.fill("#key", MASTER_KEY)
                page.click("button[type=submit]")
                page.wait_for_selector("body[data-loaded]")
                sizes: dict[str, int] = {}
                page.on(
                    "response",
                    lambda r: sizes.setdefault("/dashboard" + r.url.split("/dashboard", 1)[-1], len(r.body())),
                )
                fcp, drawn = [], []
                for _ in range(5):
                    page.reload()
                    page.wait_for_selector("body[data-loaded]")
                    fcp.append(page.evaluate("performance.getEntriesByName('first-contentful-paint')[0].startTime"))
                    drawn.append(page.evaluate("performance.getEntriesByName('synqra-first-draw')[0].startTime"))
                page.close()

                c0 = cpu_seconds(pid)
                time.sleep(args.seconds)
                closed = cpu_seconds(pid) - c0
                page = ctx.new_page()
                page.goto(f"{stack.base_url}/dashboard")
                page.wait_for_selector("body[data-loaded]")
                c0 = cpu_seconds(pid)
                time.sleep(args.seconds)
                opened = cpu_seconds(pid) - c0
                browser.close()
        finally:
            stack.stop()
            for fp in providers.values():
                fp.stop()
    rows = [{"resource": k, "bytes": v} for k, v in sorted(sizes.items())]
    total = sum(sizes.values())
    text = "\n".join(
        [
            "# Dashboard cost (bench/dashboard_cost.py)",
            "",
            "Page weight (signed-in page, uncompressed bodies):",
            "",
            table(rows + [{"resource": "total", "bytes": total}]),
            "",
            f"Time to first render (median of 5 reloads): first contentful paint {median(fcp):.0f} ms; "
            f"figures first drawn {median(drawn):.0f} ms.",
            "",
            f"Proxy CPU over {args.seconds:.0f} s: page closed {closed:.2f} s, page open {opened:.2f} s "
            f"(+{opened - closed:.2f} s, {100 * (opened - closed) / args.seconds:.2f}% of one core). One run on a shared, noisy machine.",
        ]
    )
    print(text)
    write_result("dashboard_cost", text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
