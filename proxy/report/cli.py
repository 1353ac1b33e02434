"""`synqra report [--month YYYY-MM] [--out FILE] [--format md|html] [--config FILE]`

Reads the ledger the proxy writes (no running proxy needed) and prints the month's economics as Markdown,
or writes a self-contained HTML page (`--out report.html`; the format follows the file's suffix).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from policies.common.offline import apply_offline_env

if TYPE_CHECKING:
    from policies.common.settings import AppConfig


def _month(value: str) -> str:
    if not re.fullmatch(r"\d{4}-(0[1-9]|1[0-2])", value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a month like 2026-12")
    return value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="synqra report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--month", type=_month, help="YYYY-MM (default: the budget's current month)")
    ap.add_argument("--out", type=Path, help="write to this file (default: Markdown on stdout)")
    ap.add_argument("--format", choices=("md", "html"), help="default: html for an --out not ending in .md, else md")
    ap.add_argument("--config", default=os.environ.get("SYNQRA_CONFIG", "litellm_config.yaml"))
    args = ap.parse_args(argv)
    fmt = args.format or ("html" if args.out is not None and args.out.suffix.lower() != ".md" else "md")

    apply_offline_env()
    from policies.common.settings import ConfigError, load_config

    try:
        cfg = load_config(args.config)
    except ConfigError as e:
        print(f"synqra report: {e}", file=sys.stderr)
        return 2
    text = asyncio.run(_build(cfg, args.month, fmt))
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            args.out.write_text(text)
        except OSError as e:  # a missing folder, no permission: one line, not a traceback
            print(f"synqra report: cannot write {args.out}: {e.strerror or e}", file=sys.stderr)
            return 2
        print(f"synqra report: wrote {args.out} ({len(text.encode()):,} bytes)", file=sys.stderr)
    return 0


async def _build(cfg: AppConfig, month: str | None, fmt: str) -> str:
    from policies.budget.guard import BudgetGuard
    from proxy.report import html_page, markdown
    from proxy.report.summary import month_report

    guard = BudgetGuard.from_config(cfg)
    try:
        report = await month_report(cfg, guard, month)
    finally:
        await guard.aclose()
    return html_page.render(report) if fmt == "html" else markdown.render(report)


if __name__ == "__main__":
    raise SystemExit(main())
