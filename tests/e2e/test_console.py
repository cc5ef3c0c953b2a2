"""The console in real Chromium against a real Studio, with agents on the real SDK."""

from __future__ import annotations

import csv
import io
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.support.server import StudioProcess
from tests.support.timing import UNIT

from .helpers import TIMEOUT_MS, open_console, screenshot, sdk_agent, wait_until

pytestmark = pytest.mark.e2e


def api(studio: StudioProcess, path: str) -> Any:
    with urllib.request.urlopen(f"{studio.http_url}/v1/dashboard{path}", timeout=5) as r:
        body = json.load(r)
    assert body["success"], body
    return body["data"]


def terminal_has(page: Page, text: str, timeout: int = TIMEOUT_MS) -> None:
    page.wait_for_function(
        "t => (document.querySelector('[data-testid=terminal]')?.textContent ?? '').includes(t)",
        arg=text,
        polling="raf",
        timeout=timeout,
    )


def test_empty_studio_shows_its_url_and_a_connect_snippet(
    studio: StudioProcess, page: Page
) -> None:
    open_console(page, studio.http_url, "agents")
    help_box = page.get_by_test_id("connect-help")
    expect(help_box).to_be_visible()
    expect(page.get_by_test_id("connect-url")).to_have_text(
        f"ws://127.0.0.1:{studio.port}/v1/remote-agents/connect"
    )
    expect(help_box).to_contain_text("StudioClient(")
    expect(help_box).to_contain_text(f"ASTER_STUDIO_URL=ws://127.0.0.1:{studio.port}")


def test_deep_link_loads_the_console(studio: StudioProcess, page: Page) -> None:
    open_console(page, studio.http_url, "sessions/does-not-exist")
    expect(page.get_by_test_id("page-session")).to_be_visible()


def test_connected_agent_appears_and_its_status_changes_live(
    studio: StudioProcess, page: Page
) -> None:
    open_console(page, studio.http_url, "agents")
    client = sdk_agent(studio.url, "writer-1", name="Writing Agent", model="gpt-4o")
    try:
        with client.session("s-live") as s:
            s.state("working")
            row = (
                page.get_by_test_id("agents-table")
                .get_by_test_id("row")
                .filter(has_text="Writing Agent")
            )
            expect(row).to_be_visible()
            expect(row.get_by_test_id("agent-status")).to_have_text("online")
            expect(row).to_contain_text("working")
            expect(row).to_contain_text("gpt-4o")
            started = time.monotonic()
            s.state("paused")
            expect(row).to_contain_text("paused", timeout=int(2000 * UNIT))
            assert time.monotonic() - started < 1.0 * UNIT
            screenshot(page, "agents")
    finally:
        client.close(timeout=5 * UNIT)
    row = page.get_by_test_id("agents-table").get_by_test_id("row").filter(has_text="Writing Agent")
    expect(row.get_by_test_id("agent-status")).to_have_text("offline")


def test_streamed_text_appears_within_one_second(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "streamer", name="Streamer", model="gpt-4o")
    try:
        session = client.session("s-stream")
        session.state("working")
        session.text_start(step=1)
        session.text("Hello", step=1)
        assert client.flush(5 * UNIT)
        open_console(page, studio.http_url, "sessions/s-stream")
        terminal_has(page, "Hello")
        worst = 0.0
        for word in ("alpha", "beta", "gamma"):
            marker = f" {word}-{time.time_ns()}"
            sent = time.monotonic()
            session.text(marker, step=1)
            terminal_has(page, marker.strip(), timeout=int(3000 * UNIT))
            worst = max(worst, time.monotonic() - sent)
        assert worst < 1.0 * UNIT, f"streamed text took {worst:.3f}s to appear"
        # Chunks are assembled into one block of readable text, like a terminal.
        text = page.get_by_test_id("t-text").first.text_content() or ""
        assert text.startswith("Hello alpha-")
        session.thinking("considering options", step=2)
        terminal_has(page, "considering options")
        with session.tool_call("read_file", {"path": "notes.txt"}) as call:
            call.result = {"bytes": 12}
        session.token_usage(1200, 300, model="gpt-4o")
        session.error("disk almost full", severity="warn", phase="tool", detail={"free": "1%"})
        page.get_by_test_id("t-tool").first.wait_for()
        expect(page.get_by_test_id("tool-row").first).to_contain_text("completed")
        page.get_by_test_id("tool-row").first.click()
        expect(page.get_by_test_id("tool-detail")).to_contain_text("notes.txt")
        page.get_by_test_id("tab-usage").click()
        expect(page.get_by_test_id("usage-panel")).to_contain_text("gpt-4o")
        expect(page.get_by_test_id("usage-panel")).to_contain_text("1.5k")
        # The Studio's cost, priced when the tokens came: 1,200 in at $2.50/M, 300 out at $10/M.
        expect(page.get_by_test_id("usage-panel")).to_contain_text("$0.0060")
        page.get_by_test_id("tab-errors").click()
        expect(page.get_by_test_id("errors-panel")).to_contain_text("disk almost full")
        page.get_by_test_id("tab-tools").click()
        screenshot(page, "session-live")
        session.end()
        assert client.flush(5 * UNIT)
        # "Raw events" shows the session's stored events, not a live tail that begins empty.
        open_console(page, studio.http_url, "sessions/s-stream")
        page.get_by_role("link", name="Raw events").click()
        expect(page.get_by_test_id("row").filter(has_text="read_file").first).to_be_visible()
    finally:
        client.close(timeout=5 * UNIT)


def test_finished_session_replays_the_same_as_live(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "replayer", name="Replayer", model="gpt-4o-mini")
    try:
        with client.session("s-replay") as s:
            s.state("working")
            s.thinking_start(step=1)
            for d in ("Think ", "first."):
                s.thinking(d, step=1)
            s.thinking_end(step=1)
            s.text_start(step=1)
            for d in ("The ", "answer ", "is ", "42."):
                s.text(d, step=1)
            s.text_end("The answer is 42.", step=1)
            with s.tool_call("calc", {"expr": "6*7"}) as call:
                call.result = 42
            s.done("completed", step=1)
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "sessions")
    row = page.get_by_test_id("sessions-table").get_by_test_id("row").filter(has_text="s-replay")
    expect(row).to_contain_text("completed")
    screenshot(page, "sessions")
    row.click()
    expect(page.get_by_test_id("page-session")).to_be_visible()
    terminal_has(page, "The answer is 42.")
    expect(page.get_by_test_id("t-think")).to_contain_text("Think first.")
    expect(page.get_by_test_id("t-tool")).to_contain_text("calc")
    expect(page.get_by_test_id("terminal")).to_contain_text("done (completed)")
    screenshot(page, "session-replay")


def test_overview_counters_and_charts_update(studio: StudioProcess, page: Page) -> None:
    open_console(page, studio.http_url)
    expect(page.get_by_test_id("stat-online")).to_contain_text("0")
    client = sdk_agent(studio.url, "counter", name="Counter", model="gpt-4o")
    try:
        with client.session("s-count") as s:
            s.state("working")
            expect(page.get_by_test_id("stat-online")).to_contain_text("1")
            expect(page.get_by_test_id("stat-working")).to_contain_text("1")
            for _ in range(20):
                s.token_usage(1000, 500, model="gpt-4o")
                s.text("x")
                time.sleep(0.05)
            s.error("upstream failed", severity="error", phase="model")
            expect(page.get_by_test_id("stat-tokens")).to_contain_text(
                "30k", timeout=int(12_000 * UNIT)
            )
            expect(page.get_by_test_id("latest-errors")).to_contain_text("upstream failed")
            # Counts of one read in the singular.
            expect(page.get_by_test_id("stat-errors")).to_contain_text(
                re.compile(r"\b1 error(?!s)"), timeout=int(12_000 * UNIT)
            )
            expect(page.get_by_test_id("stat-online")).to_contain_text(
                re.compile(r"of 1 agent(?!s)")
            )
            # The live events chart is a real uPlot canvas fed by the stream.
            expect(page.get_by_test_id("chart-events").locator("canvas")).to_have_count(1)
            expect(page.get_by_test_id("chart-trend").locator("canvas")).to_have_count(
                1, timeout=int(12_000 * UNIT)
            )
            eps = page.evaluate("() => window.__asterHub.eventRate.rate(Date.now(), 5)")
            assert eps > 0
            screenshot(page, "overview")
    finally:
        client.close(timeout=5 * UNIT)


def test_events_filters_inspector_and_export(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "exporter", name="Exporter", model="gpt-4o")
    try:
        with client.session("s-exp") as s:
            for i in range(30):
                s.text(f"chunk {i} ")
            s.error("needle in the haystack", severity="error", phase="tool")
            s.error("just a warning", severity="warn", phase="model")
            s.token_usage(10, 5, model="gpt-4o")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)

    open_console(page, studio.http_url, "events?mode=history")
    table = page.get_by_test_id("events-table")
    expect(table.get_by_test_id("row").first).to_be_visible()
    filters = page.get_by_test_id("event-filters")
    filters.locator("select[name=severity]").select_option("error")
    page.get_by_test_id("apply-filters").click()
    expect(table.get_by_test_id("row")).to_have_count(1)
    expect(table.get_by_test_id("row")).to_contain_text("needle in the haystack")
    table.get_by_test_id("row").first.click()
    expect(page.get_by_test_id("inspector")).to_contain_text('"needle in the haystack"')
    screenshot(page, "events")
    page.keyboard.press("Escape")
    expect(page.get_by_test_id("inspector")).to_have_count(0)

    with page.expect_download() as download:
        page.get_by_test_id("export-jsonl").click()
    lines = [json.loads(x) for x in Path(download.value.path()).read_text().splitlines() if x]
    assert len(lines) == 1
    assert "needle in the haystack" in json.dumps(lines[0])

    filters.locator("select[name=severity]").select_option("")
    page.get_by_test_id("event-search").fill("chunk 1")
    page.get_by_test_id("apply-filters").click()
    expect(table.get_by_test_id("row")).to_have_count(11)  # chunk 1, chunk 10..19
    with page.expect_download() as download:
        page.get_by_test_id("export-csv").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert len(rows) == 11
    assert all("chunk 1" in json.dumps(r) for r in rows)


def test_live_tail_opens_with_stored_events_then_follows(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "early", name="Early")
    table = page.get_by_test_id("events-table")
    try:
        with client.session("s-early") as s:
            s.text("sent before the console opened")
            assert client.flush(5 * UNIT)
            open_console(page, studio.http_url, "events")
            expect(table).to_contain_text("sent before the console opened")
            s.text("sent while it is open")
            expect(table).to_contain_text("sent while it is open")
        assert client.flush(5 * UNIT)
        # Each event once: the stored ones and the live ones do not overlap.
        expect(table.get_by_test_id("row").filter(has_text="sent before")).to_have_count(1)
        expect(table.get_by_test_id("row").filter(has_text="sent while")).to_have_count(1)
    finally:
        client.close(timeout=5 * UNIT)


def test_live_tail_pauses_and_resumes(studio: StudioProcess, page: Page) -> None:
    open_console(page, studio.http_url, "events")
    client = sdk_agent(studio.url, "tailer", name="Tailer")
    table = page.get_by_test_id("events-table")
    try:
        with client.session("s-tail") as s:
            s.text("first")
            expect(table).to_contain_text("first")
            page.get_by_test_id("pause").click()
            s.text("second")
            expect(page.get_by_test_id("resume")).to_contain_text("new", timeout=TIMEOUT_MS)
            expect(table).not_to_contain_text("second")
            page.get_by_test_id("resume").click()
            expect(table).to_contain_text("second")
    finally:
        client.close(timeout=5 * UNIT)


def test_console_recovers_after_server_restart_without_gaps_or_duplicates(
    studio: StudioProcess, page: Page
) -> None:
    open_console(page, studio.http_url, "events")
    client = sdk_agent(studio.url, "survivor", name="Survivor")
    try:
        session = client.session("s-restart")
        for i in range(5):
            session.text(f"before-{i} ")
        assert client.flush(5 * UNIT)
        wait_until(lambda: page.evaluate("() => window.__asterHub.received") >= 5)
        studio.restart()
        connection = page.get_by_test_id("connection")
        expect(connection).to_have_attribute("data-state", "open", timeout=int(20_000 * UNIT))
        for i in range(5):
            session.text(f"after-{i} ")
        assert client.flush(15 * UNIT)
        wait_until(
            lambda: (
                page.evaluate(
                    "() => window.__asterHub.events.toArray().filter("
                    "e => String(e.data.delta ?? '').startsWith('after-')).length"
                )
                >= 5
            ),
            timeout=15 * UNIT,
        )
        cursors = page.evaluate("() => window.__asterHub.events.toArray().map(e => e.cursor)")
        assert len(cursors) == len(set(cursors)), "an event was shown twice"
        deltas = page.evaluate(
            "() => window.__asterHub.events.toArray().map(e => e.data.delta).filter(Boolean)"
        )
        expected = [f"before-{i} " for i in range(5)] + [f"after-{i} " for i in range(5)]
        assert [d for d in deltas if d in expected] == expected
        assert page.evaluate("() => window.__asterHub.connection.reconnects") >= 1
        session.end()
    finally:
        client.close(timeout=5 * UNIT)


def test_events_sent_while_the_console_is_offline_arrive_after_reconnect(
    studio: StudioProcess, page: Page
) -> None:
    """Resume from the last cursor: what was stored during the outage is replayed once."""
    open_console(page, studio.http_url, "events")
    client = sdk_agent(studio.url, "gap", name="Gap")
    try:
        session = client.session("s-gap")
        session.text("one ")
        wait_until(lambda: page.evaluate("() => window.__asterHub.received") >= 1)
        page.context.set_offline(True)
        # Drop the socket from the browser side; the Studio keeps storing events meanwhile.
        page.evaluate("() => window.__asterHub.stream.stop()")
        for i in range(20):
            session.text(f"gap-{i} ")
        assert client.flush(5 * UNIT)
        page.context.set_offline(False)
        page.evaluate("() => window.__asterHub.stream.start()")
        wait_until(
            lambda: (
                page.evaluate(
                    "() => window.__asterHub.events.toArray()"
                    ".filter(e => String(e.data.delta ?? '').startsWith('gap-')).length"
                )
                == 20
            ),
            timeout=10 * UNIT,
        )
        cursors = page.evaluate("() => window.__asterHub.events.toArray().map(e => e.cursor)")
        assert cursors == sorted(set(cursors))
    finally:
        client.close(timeout=5 * UNIT)


def test_metrics_and_settings_pages(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "metered", name="Metered", model="gpt-4o")
    try:
        with client.session("s-metrics") as s:
            s.token_usage(100_000, 20_000, model="gpt-4o")
            s.token_usage(50_000, 1_000, model="my-local-model")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "metrics")
    expect(page.get_by_test_id("by-model")).to_contain_text("gpt-4o")
    expect(page.get_by_test_id("by-model")).to_contain_text("my-local-model")
    expect(page.get_by_test_id("by-agent")).to_contain_text("metered")
    expect(page.get_by_test_id("metrics-tokens")).to_contain_text("171k")
    # No step_complete was sent: no latency to show, rather than "0 ms".
    expect(page.get_by_test_id("metrics-step-latency")).to_contain_text("no steps reported")
    page.get_by_test_id("metrics-period").get_by_text("1h").click()
    expect(page.get_by_test_id("metrics-tokens")).to_contain_text("171k")
    screenshot(page, "metrics")

    open_console(page, studio.http_url, "settings")
    page.get_by_test_id("price-model").fill("my-local-model")
    page.get_by_test_id("price-input").fill("0")
    page.get_by_test_id("price-output").fill("0")
    page.get_by_test_id("price-add").click()
    row = page.get_by_test_id("price-row").filter(has_text="my-local-model")
    expect(row).to_be_visible()
    pricing = api(studio, "/pricing")
    assert pricing["my-local-model"]["input_price_per_m"] == 0
    facts = page.get_by_test_id("studio-facts")
    expect(facts).to_contain_text("sqlite:///")
    expect(facts).to_contain_text("none: this Studio runs alone")
    facts.scroll_into_view_if_needed()
    screenshot(page, "settings")


def test_agent_page_follows_the_current_session(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "follower", name="Follower", model="gpt-4o")
    try:
        first = client.session("s-first")
        first.state("working")
        first.text("first session text")
        assert client.flush(5 * UNIT)
        open_console(page, studio.http_url, "agents/follower")
        expect(page.get_by_test_id("agent-name")).to_have_text("Follower")
        terminal_has(page, "first session text")
        first.end()
        second = client.session("s-second")
        second.state("working")
        second.text("second session text")
        terminal_has(page, "second session text", timeout=int(15_000 * UNIT))
        screenshot(page, "agent")
        second.end()
    finally:
        client.close(timeout=5 * UNIT)


def test_agents_table_sorts_and_filters(studio: StudioProcess, page: Page) -> None:
    big = sdk_agent(studio.url, "big-spender", name="Big Spender", model="gpt-4o")
    small = sdk_agent(studio.url, "small-spender", name="Small Spender", model="gpt-4o-mini")
    try:
        with big.session("s-big") as s:
            s.token_usage(90_000, 10_000, model="gpt-4o")
        with small.session("s-small") as s:
            s.token_usage(10, 5, model="gpt-4o-mini")
        assert big.flush(5 * UNIT) and small.flush(5 * UNIT)
        open_console(page, studio.http_url, "agents")
        rows = page.get_by_test_id("agents-table").get_by_test_id("row")
        expect(rows).to_have_count(2)
        header = page.get_by_test_id("agents-table").locator('.vth[data-col="tokens"]')
        header.click()  # most tokens first
        expect(rows.first).to_contain_text("Big Spender")
        expect(rows.first).to_contain_text("100k")
        header.click()  # fewest first
        expect(rows.first).to_contain_text("Small Spender")
        page.get_by_test_id("agent-filter").fill("mini")
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Small Spender")
        page.get_by_test_id("agent-filter").fill("")
        big.close(timeout=5 * UNIT)
        page.get_by_test_id("agent-bucket").get_by_text("offline").click()
        expect(rows).to_have_count(1)
        expect(rows.first).to_contain_text("Big Spender")
    finally:
        big.close(timeout=5 * UNIT)
        small.close(timeout=5 * UNIT)


def test_console_follows_a_studio_that_comes_back_with_another_database(
    studio: StudioProcess, page: Page, tmp_path: Path
) -> None:
    client = sdk_agent(studio.url, "old-agent", name="Old Agent")
    try:
        with client.session("s-old") as s:
            for i in range(30):
                s.text(f"old-{i} ")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "events")
    # This tab resumes after the old store's cursors (as if it had watched them arrive).
    page.evaluate("() => window.__asterHub.stream.seedCursor(30)")
    studio.stop()
    fresh = StudioProcess(tmp_path / "other.db", port=studio.port).start()
    try:
        connection = page.get_by_test_id("connection")
        expect(connection).to_have_attribute("data-state", "open", timeout=int(20_000 * UNIT))
        client = sdk_agent(fresh.url, "new-agent", name="New Agent")
        try:
            with client.session("s-new") as s:
                s.text("fresh-start ")
            assert client.flush(5 * UNIT)
        finally:
            client.close(timeout=5 * UNIT)
        expect(page.get_by_test_id("events-table")).to_contain_text("fresh-start")
        assert page.evaluate("() => window.__asterHub.storeResets") == 1
    finally:
        fresh.stop()


def test_session_page_follows_a_studio_that_comes_back_with_another_database(
    studio: StudioProcess, page: Page, tmp_path: Path
) -> None:
    client = sdk_agent(studio.url, "swap-agent", name="Swap Agent")
    try:
        with client.session("s-swap") as s:
            for i in range(30):
                s.text(f"old-{i} ")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "sessions/s-swap")
    terminal_has(page, "old-29")
    studio.stop()
    fresh = StudioProcess(tmp_path / "other.db", port=studio.port).start()
    try:
        connection = page.get_by_test_id("connection")
        expect(connection).to_have_attribute("data-state", "open", timeout=int(20_000 * UNIT))
        wait_until(lambda: page.evaluate("() => window.__asterHub.storeResets") == 1)
        # The same session goes on in the new database, whose cursors start again from 1.
        client = sdk_agent(fresh.url, "swap-agent", name="Swap Agent")
        try:
            with client.session("s-swap") as s:
                s.text("after-the-swap ")
            assert client.flush(5 * UNIT)
        finally:
            client.close(timeout=5 * UNIT)
        terminal_has(page, "after-the-swap")
    finally:
        fresh.stop()


@pytest.mark.parametrize("session_id", ["pct-%2F-slash", ".", "..", "~tilde", "a/b %41"])
def test_session_with_an_awkward_id_opens_from_the_sessions_list(
    studio: StudioProcess, page: Page, session_id: str
) -> None:
    client = sdk_agent(studio.url, "odd-ids")
    try:
        with client.session(session_id) as s:
            s.text("odd-id-output ")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "sessions")
    page.get_by_role("link", name=session_id, exact=True).click()
    expect(page.get_by_test_id("page-session")).to_be_visible()
    expect(page.locator("h1")).to_contain_text(session_id)
    terminal_has(page, "odd-id-output")
    # The address opens the same session when loaded afresh.
    page.reload()
    terminal_has(page, "odd-id-output")


def test_a_long_agent_id_keeps_the_metrics_cost_column_in_its_card(
    studio: StudioProcess, page: Page
) -> None:
    long_id = "agent-" + "x" * 200
    client = sdk_agent(studio.url, long_id)
    try:
        with client.session("s-long") as s:
            s.token_usage(1000, 500, model="gpt-4o")
        assert client.flush(5 * UNIT)
    finally:
        client.close(timeout=5 * UNIT)
    open_console(page, studio.http_url, "metrics")
    card = page.get_by_test_id("by-agent")
    expect(card).to_contain_text("$")
    edges = page.evaluate(
        """() => {
          const card = document.querySelector('[data-testid=by-agent]')
          const table = card.querySelector('table')
          const cost = table.querySelector('tbody tr td:last-child')
          return [card.getBoundingClientRect().right, table.getBoundingClientRect().right,
                  cost.getBoundingClientRect().right]
        }"""
    )
    card_right, table_right, cost_right = edges
    assert table_right <= card_right and cost_right <= card_right, edges
    expect(card.locator("td.name-cell span[title]").first).to_have_attribute("title", long_id)


def test_the_api_browser_works_offline_under_the_content_security_policy(
    studio: StudioProcess, page: Page
) -> None:
    """/docs loaded Swagger UI from a CDN with an inline script, exempt from the CSP: blank on
    a machine without internet (this one), and the one page without the policy."""
    outside: list[str] = []
    console: list[str] = []
    page.on(
        "request",
        lambda r: outside.append(r.url) if not r.url.startswith(studio.http_url) else None,
    )
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    response = page.goto(f"{studio.http_url}/docs")
    assert response is not None and response.status == 200
    assert "script-src 'self'" in response.headers["content-security-policy"]
    expect(page.get_by_text("/v1/dashboard/events/since/{cursor}")).to_be_visible()
    assert outside == [] and console == [], (outside, console)
