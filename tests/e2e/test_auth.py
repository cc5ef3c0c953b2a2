"""With a console token set, the console asks for it, then works with cookie and CSRF."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import StudioProcess

from .helpers import TIMEOUT_MS, screenshot

pytestmark = pytest.mark.e2e

TOKEN = "console-token-for-tests-0123456789"


@pytest.fixture
def locked_studio(tmp_path: Path) -> Iterator[StudioProcess]:
    server = StudioProcess(
        tmp_path / "studio.db", env={"ASTER_STUDIO_CONSOLE_TOKEN": TOKEN}
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_console_logs_in_with_the_token_and_out_again(
    locked_studio: StudioProcess, page: Page
) -> None:
    page.goto(f"{locked_studio.http_url}/studio/settings")
    expect(page.get_by_test_id("page-login")).to_be_visible()
    screenshot(page, "login")

    page.get_by_test_id("login-token").fill("wrong")
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("page-login")).to_contain_text("Wrong console token")

    page.get_by_test_id("login-token").fill(TOKEN)
    page.get_by_test_id("login-submit").click()
    expect(page.get_by_test_id("page-settings")).to_be_visible()
    page.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=TIMEOUT_MS)

    # A state-changing request carries the CSRF token the login returned.
    page.get_by_test_id("price-model").fill("locked-model")
    page.get_by_test_id("price-input").fill("1")
    page.get_by_test_id("price-output").fill("2")
    page.get_by_test_id("price-add").click()
    expect(page.get_by_test_id("price-row").filter(has_text="locked-model")).to_be_visible()

    # The session survives a reload (HttpOnly cookie) and the CSRF token is fetched again.
    page.reload()
    expect(page.get_by_test_id("page-settings")).to_be_visible()
    row = page.get_by_test_id("price-row").filter(has_text="locked-model")
    row.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)

    page.get_by_test_id("logout").click()
    expect(page.get_by_test_id("page-login")).to_be_visible()
    page.reload()
    expect(page.get_by_test_id("page-login")).to_be_visible()
