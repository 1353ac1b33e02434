"""A real browser for page tests: Debian's Chromium driven by Playwright (its own browser downloads are not used).

`scripts/install.sh test` installs both (apt's `chromium`, pip's `playwright`). A test skips, saying why, only
when they are truly missing, e.g. a machine where the install could not run as root.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (playwright Browser), closed afterwards."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (scripts/install.sh test installs the test extra)")
    path = chromium_path()
    if path is None:
        pytest.skip("Debian's chromium is not installed (scripts/install.sh test installs it with apt, as root)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=path, headless=True, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def keep_screenshot(png: Path, docs_name: str) -> None:
    """Screenshots stay in the test's tmp dir; SYNQRA_DOCS_SCREENSHOTS=1 also copies them into docs/ (README)."""
    if os.environ.get("SYNQRA_DOCS_SCREENSHOTS") == "1":
        (REPO / "docs").mkdir(exist_ok=True)
        shutil.copyfile(png, REPO / "docs" / docs_name)
