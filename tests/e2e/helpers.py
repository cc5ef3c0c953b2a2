"""Shared helpers of the browser tests: Chromium settings, screenshots, SDK agents."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from playwright.sync_api import Page

from aster_studio_sdk import StudioClient
from tests.support.timing import UNIT

CHROMIUM = os.environ.get("ASTER_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
    "--enable-precise-memory-info",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
TIMEOUT_MS = int(10_000 * UNIT)


def screenshot(page: Page, name: str) -> Path:
    """Save a screenshot under artifacts/screenshots/ (kept as a test artifact)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def sdk_agent(url: str, agent_id: str, **fields: Any) -> StudioClient:
    """A real SDK client reporting to the Studio at `url`."""
    return StudioClient(agent_id, url=url, enabled=True, strict=True, **fields)


def wait_until(check: Callable[[], bool], timeout: float = 10 * UNIT, every: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(every)
    raise AssertionError("condition not met in time")


def open_console(page: Page, http_url: str, path: str = "") -> None:
    """Open a console page and wait until its live stream is connected."""
    page.goto(f"{http_url}/studio/{path}")
    page.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=TIMEOUT_MS)
