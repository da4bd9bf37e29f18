"""Debian's Chromium driven by Playwright: one way to launch it for every
browser test (`playwright install` cannot download a browser here)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import Browser, Page, sync_playwright

from tests.helpers import require_service
from tests.procs import ROOT

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = ROOT / "test-artifacts" / "e2e"
# As root, without a sandbox; no background traffic to a network that is closed.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@contextmanager
def launch_chromium() -> Iterator[Browser]:
    """Skip (fail under CI=true) when Chromium is missing; always close it."""
    if not CHROMIUM.exists():
        require_service("Chromium", f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            browser.close()


def screenshots(prefix: str) -> Callable[[Page, str], None]:
    """shot(page, name): a full-page screenshot, test-artifacts/e2e/<prefix>-NN-name.png,
    numbered in the order they are taken."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    counter = itertools.count(1)

    def shot(page: Page, name: str) -> None:
        path = SCREENSHOTS / f"{prefix}-{next(counter):02d}-{name}.png"
        page.screenshot(path=str(path), full_page=True)

    return shot
