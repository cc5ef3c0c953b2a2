"""Agent-supplied text is rendered as text: HTML and script payloads in every field are inert."""

from __future__ import annotations

import urllib.parse

import pytest
from playwright.sync_api import Page, expect

from tests.support import api
from tests.support.api import get, wait_for
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

from .helpers import open_console, sdk_agent

pytestmark = pytest.mark.e2e

IMG = '<img src=x onerror="window.__xss=(window.__xss||0)+1">'
SCRIPT = "<script>window.__xss=(window.__xss||0)+1</script>"
SVG = '"><svg onload="window.__xss=(window.__xss||0)+1">'
JS_URL = "javascript:window.__xss=(window.__xss||0)+1"
TEMPLATE = "{{constructor.constructor('window.__xss=1')()}}"
ALL = f"{IMG} {SCRIPT} {SVG} {JS_URL} {TEMPLATE}"

AGENT_ID = f"evil-{IMG}"
SESSION_ID = f"sess-{SVG}"

INERT = """() => ({
  xss: window.__xss ?? null,
  handlers: document.querySelectorAll('[onerror],[onload],[onclick]').length,
  imgs: document.querySelectorAll('img').length,
  svgs: [...document.querySelectorAll('svg')].filter(s => s.closest('#root')).length,
  inlineScripts: [...document.querySelectorAll('script')].filter(s => !s.src).length,
  jsLinks: [...document.querySelectorAll('a[href]')]
      .filter(a => a.getAttribute('href').trim().toLowerCase().startsWith('javascript')).length,
})"""


def assert_inert(page: Page, where: str) -> None:
    state = page.evaluate(INERT)
    assert state == {
        "xss": None,
        "handlers": 0,
        "imgs": 0,
        "svgs": 0,
        "inlineScripts": 0,
        "jsLinks": 0,
    }, f"{where}: {state}"


def test_html_and_script_payloads_in_every_field_are_inert(
    studio: StudioProcess, page: Page
) -> None:
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    client = sdk_agent(
        studio.url,
        AGENT_ID,
        name=f"Evil {ALL}",
        model=f"model-{IMG}",
        capabilities=[SCRIPT, JS_URL],
        metadata={"note": ALL, SCRIPT: IMG},
    )
    try:
        session = client.session(SESSION_ID, metadata={"title": ALL})
        session.state(f"working{IMG}")
        session.thinking_start(step=1)
        session.thinking(f"think {ALL}", step=1)
        session.thinking_end(step=1)
        session.text_start(step=1)
        session.text(f"text {ALL}", step=1)
        session.text_end(f"text {ALL}", step=1)
        with session.tool_call(f"tool{IMG}", {"arg": ALL, IMG: [SCRIPT]}) as call:
            call.result = {"html": ALL}
        try:
            with session.tool_call("failing", {"q": SVG}):
                raise RuntimeError(ALL)
        except RuntimeError:
            pass
        session.token_usage(10, 5, model=f"model-{IMG}")
        session.error(f"error {ALL}", severity="error", phase="tool", detail={"html": ALL})
        session.event("monitor", f"custom{IMG}", payload=ALL)
        session.event(
            "control",
            "permission_required",
            call={"id": "c1", "name": IMG, "arguments": {"x": ALL}},
        )
        session.event(
            "control",
            "ask_user",
            request_id=f"q-{IMG}",
            questions=[
                {
                    "question": f"pick {ALL}",
                    "header": SCRIPT,
                    "multi_select": True,
                    "options": [{"label": IMG, "description": ALL}, {"label": SVG}],
                },
                {"question": f"free {SCRIPT}", "header": IMG, "options": []},
            ],
        )
        session.event(
            "control", "permission_required", call={"id": "c2", "name": SVG, "arguments": [ALL]}
        )
        assert client.flush(5 * UNIT)
        requests = wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/requests"),
            lambda d: d["pending"] == 3,
        )["requests"]
        by_key = {r["key"]: r["id"] for r in requests}

        open_console(page, studio.http_url)
        expect(page.get_by_test_id("latest-errors")).to_contain_text("error <img")
        assert_inert(page, "overview")

        page.locator(".sidebar").get_by_role("link", name="Agents").click()
        row = page.get_by_test_id("agents-table").get_by_test_id("row").first
        expect(row).to_contain_text("Evil <img src=x")
        assert_inert(page, "agents")

        open_console(page, studio.http_url, "agents/" + urllib.parse.quote(AGENT_ID, safe=""))
        expect(page.get_by_test_id("agent-name")).to_contain_text("<script>")
        expect(page.get_by_test_id("terminal")).to_contain_text("text <img src=x")
        page.locator("details summary").click()
        assert_inert(page, "agent")

        open_console(page, studio.http_url, "sessions/" + urllib.parse.quote(SESSION_ID, safe=""))
        expect(page.get_by_test_id("terminal")).to_contain_text(f"think {IMG}")
        inline = page.get_by_test_id("inline-request")
        expect(inline.filter(has_text="c1")).to_contain_text(IMG)
        expect(inline.filter(has_text="pick")).to_contain_text(f"pick {ALL}")
        expect(page.get_by_test_id("approvals-slot")).to_contain_text(SVG)
        for row in page.get_by_test_id("tool-row").all():
            row.click()
            assert_inert(page, "tool detail")
        page.get_by_test_id("tab-usage").click()
        expect(page.get_by_test_id("usage-panel")).to_contain_text(f"model-{IMG}")
        page.get_by_test_id("tab-errors").click()
        page.get_by_test_id("errors-panel").locator("li").first.click()
        assert_inert(page, "session")

        open_console(page, studio.http_url, "events?mode=history")
        rows = page.get_by_test_id("events-table").get_by_test_id("row")
        expect(rows.first).to_be_visible()
        for i in range(min(rows.count(), 12)):
            rows.nth(i).click()
            assert_inert(page, f"inspector row {i}")
        page.get_by_test_id("event-search").fill(IMG)
        page.get_by_test_id("apply-filters").click()
        assert_inert(page, "events search")

        # Requests: what agents asked in the inbox, then what people answered, and the audit log.
        open_console(page, studio.http_url, "inbox")
        expect(page.get_by_test_id("inbox-count")).to_have_text("3")
        cards = page.get_by_test_id("request")
        expect(cards).to_have_count(3)
        expect(page.get_by_test_id("question-form")).to_contain_text(f"pick {ALL}")
        expect(page.get_by_test_id("question-form")).to_contain_text(f"free {SCRIPT}")
        assert_inert(page, "inbox")
        form = page.get_by_test_id("question-form")
        form.get_by_test_id("question-other").fill(ALL)
        form.get_by_test_id("question-text").fill(ALL)
        page.get_by_test_id("decider-name").fill(IMG)
        form.get_by_test_id("answer-submit").click()
        svg_card = cards.filter(has_text="c2")
        svg_card.get_by_test_id("decision-note").fill(ALL)
        svg_card.get_by_test_id("deny").click()
        status, _ = api.call(
            studio.http_url,
            f"/v1/dashboard/requests/{by_key['c1']}/decision",
            "POST",
            {"decision": "allow", "note": ALL, "decided_by": SVG},
        )
        assert status == 200
        wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/requests"),
            lambda d: d["pending"] == 0,
        )
        page.get_by_test_id("inbox-view").get_by_role("tab", name="all").click()
        expect(page.get_by_test_id("request-outcome")).to_have_count(3)
        expect(page.get_by_test_id("inbox-list")).to_contain_text(f"note: {ALL}")
        expect(page.get_by_test_id("request-answer").first).to_contain_text(ALL)
        expect(page.get_by_test_id("audit-log")).to_contain_text(IMG)
        assert_inert(page, "inbox decided and audit log")

        open_console(page, studio.http_url, "metrics")
        expect(page.get_by_test_id("by-model")).to_contain_text(f"model-{IMG}")
        assert_inert(page, "metrics")

        open_console(page, studio.http_url, "settings")
        page.get_by_test_id("price-model").fill(IMG)
        page.get_by_test_id("price-input").fill("1")
        page.get_by_test_id("price-output").fill("2")
        page.get_by_test_id("price-add").click()
        expect(page.get_by_test_id("pricing-table")).to_contain_text(IMG)
        assert_inert(page, "settings")
        session.end()
    finally:
        client.close(timeout=5 * UNIT)
    assert dialogs == []
