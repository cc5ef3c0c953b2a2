"""`aster-studio demo`'s simulated agents, on the real SDK, bring every console page alive."""

from __future__ import annotations

import json
import threading
import urllib.request
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from aster_studio.demo import start_agents
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

from .helpers import open_console, screenshot, wait_until

pytestmark = pytest.mark.e2e


def get(studio: StudioProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{studio.http_url}/v1/dashboard{path}", timeout=5) as r:
        return json.load(r)["data"]


def test_demo_agents_stream_everything_the_console_shows(studio: StudioProcess, page: Page) -> None:
    stop = threading.Event()
    agents = start_agents(studio.url, stop, 5, speed=3.0)
    try:
        wait_until(lambda: get(studio, "/agents")["total"] == 5, timeout=15 * UNIT)
        wait_until(
            lambda: get(studio, "/events?event_type=tool:end&limit=1")["events"] != [],
            timeout=20 * UNIT,
        )
        wanted = {"gpt-4o", "claude-sonnet-4-20250514", "deepseek-chat", "gemini-2.0-flash"}
        wait_until(
            lambda: wanted <= set(get(studio, "/metrics/tokens?period=1h")["by_model"]),
            timeout=20 * UNIT,
        )
        open_console(page, studio.http_url)
        expect(page.get_by_test_id("stat-online")).to_contain_text("5")
        open_console(page, studio.http_url, "agents/coder")
        expect(page.get_by_test_id("terminal")).not_to_contain_text(
            "Waiting for output", timeout=int(15_000 * UNIT)
        )
        screenshot(page, "demo-agent")
    finally:
        stop.set()
        for agent in agents:
            agent.join(5 * UNIT)
    assert all(not a.thread.is_alive() for a in agents)
