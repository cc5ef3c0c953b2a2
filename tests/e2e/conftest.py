"""Browser fixtures: Debian's Chromium driven by Playwright, against a real Studio subprocess."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from aster_studio.app import STATIC_DIR
from tests.support.services import missing

from .helpers import CHROMIUM, CHROMIUM_ARGS


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (make browser)"
    if not (STATIC_DIR / "index.html").exists():
        return "the console is not built (make web)"
    return None


# Package scope: Playwright's sync API runs its own event loop in this thread, which must be gone
# before the asyncio tests of other packages run.
@pytest.fixture(scope="package")
def playwright_instance() -> Iterator[Playwright]:
    reason = _missing()
    if reason:
        missing(reason)
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright_instance: Playwright) -> Iterator[Browser]:
    browser = playwright_instance.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield browser
    browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh page that fails the test on any uncaught script error."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.set_default_timeout(10_000)
    yield page
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"
