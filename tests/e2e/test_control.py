"""Steering agents from the console in real Chromium: approve, deny, answer, cancel, conflicts.

Most tests drive the agent side with a raw WebSocket client that registers with the `control`
capability, sends `permission_required` / `ask_user` / tool events and reads the `control`
messages the Studio delivers (docs/control.md), so each step is checked on the wire. The last
one runs a real SDK agent (`s.request_permission`, `s.ask_user`, a cancelable tool call).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Locator, Page, expect

from aster_studio_sdk import Question
from tests.support.agent import RawAgent
from tests.support.api import call, get, wait_for
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

from .helpers import TIMEOUT_MS, open_console, screenshot, sdk_agent, wait_until

pytestmark = pytest.mark.e2e

CONSOLE_TOKEN = "console-token-for-control-tests-0123"
WRITE = {
    "id": "call_w1",
    "name": "write_file",
    "arguments": {"path": "/srv/app/config.yaml", "content": "replicas: 3\n"},
    "state": "pending",
}
QUESTIONS = [
    {
        "question": "Which environment?",
        "header": "Target",
        "multi_select": False,
        "options": [
            {"label": "staging", "description": "safe to break"},
            {"label": "production", "description": "customers see it"},
        ],
    },
    {
        "question": "Which checks first?",
        "header": "Checks",
        "multi_select": True,
        "options": [
            {"label": "lint", "description": ""},
            {"label": "unit tests", "description": ""},
            {"label": "e2e", "description": ""},
        ],
    },
    {"question": "Anything else I should know?", "header": "Notes", "options": []},
]


class SteeredAgent:
    """A raw agent with one session that asks and reads decisions (no SDK involved)."""

    def __init__(
        self, studio: StudioProcess, agent_id: str, session_id: str, key: str = ""
    ) -> None:
        self.agent_id = agent_id
        self.session_id = session_id
        self.raw = RawAgent(studio.agent_url + (f"?token={key}" if key else ""))
        reply = self.raw.request(
            {
                "type": "register",
                "agent": {"id": agent_id, "name": f"{agent_id} agent", "capabilities": ["control"]},
            }
        )
        assert reply["type"] == "registered", reply
        reply = self.raw.request(
            {"type": "register_session", "session": {"id": session_id, "agent_id": agent_id}}
        )
        assert reply["type"] == "session_registered", reply

    def send(self, event_type: str, channel: str = "control", **fields: Any) -> None:
        self.raw.send(
            {
                "type": "event",
                "agent_id": self.agent_id,
                "session_id": self.session_id,
                "event": {"event_type": event_type, "channel": channel, **fields},
            }
        )

    def text(self, text: str) -> None:
        self.send("text_chunk", "progress", step=1, delta=text)

    def control(self, timeout: float = 10 * UNIT) -> dict[str, Any]:
        return dict(self.raw.recv_until("control", timeout))

    def close(self) -> None:
        self.raw.close()


@pytest.fixture
def agent(studio: StudioProcess) -> Iterator[SteeredAgent]:
    steered = SteeredAgent(studio, "deployer", "s-deploy")
    try:
        yield steered
    finally:
        steered.close()


def pending_ids(studio: StudioProcess, count: int) -> list[str]:
    data = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/requests?status=pending"),
        lambda d: d["pending"] == count,
    )
    return [r["id"] for r in data["requests"]]


def card(page: Page, request_id: str, test_id: str = "request") -> Locator:
    return page.locator(f'[data-testid="{test_id}"][data-request-id="{request_id}"]')


def test_approve_in_the_inbox_reaches_the_agent_within_a_second(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.text("I will update the config.")
    agent.send("permission_required", call=WRITE, timeout_ms=600_000)
    agent.send("ask_user", request_id="q-env", questions=QUESTIONS, timeout_ms=45_000)
    pending_ids(studio, 2)
    request_id = next(
        r["id"]
        for r in get(studio.http_url, "/v1/dashboard/requests")["requests"]
        if r["kind"] == "permission"
    )

    open_console(page, studio.http_url)
    expect(page.get_by_test_id("waiting-banner")).to_contain_text("2 requests from 1 agent")
    page.get_by_test_id("waiting-banner").click()
    expect(page.get_by_test_id("page-inbox")).to_be_visible()
    expect(page.get_by_test_id("inbox-count")).to_have_text("2")
    permission = card(page, request_id)
    expect(permission.get_by_test_id("request-tool")).to_have_text("write_file")
    expect(permission.get_by_test_id("request-args")).to_contain_text("/srv/app/config.yaml")
    expect(permission).to_contain_text("deployer agent")
    expect(permission.get_by_test_id("request-age")).to_contain_text("ago")
    expect(permission.get_by_test_id("request-expiry")).to_contain_text("expires in 9:5")
    expect(page.get_by_test_id("question-form")).to_contain_text("Which environment?")
    screenshot(page, "inbox")

    page.get_by_test_id("decider-name").fill("alice")
    permission.get_by_test_id("decision-note").fill("ok, just this once")
    started = time.monotonic()
    permission.get_by_test_id("approve").click()
    control = agent.control()
    took = time.monotonic() - started
    assert took < 1.0 * UNIT, f"the decision took {took:.3f}s to reach the agent"
    assert (control["event_type"], control["call_id"], control["decision"]) == (
        "permission_decided",
        "call_w1",
        "allow",
    )
    assert (control["decided_by"], control["note"]) == ("alice", "ok, just this once")

    # The agent proceeds: it acknowledges, runs the tool and says so.
    agent.send("permission_decided", call_id="call_w1", decision="allow", decided_by="alice")
    agent.send("tool:start", "progress", call={**WRITE, "state": "executing"})
    agent.send("tool:end", "progress", call={**WRITE, "state": "completed", "result": "ok"})
    agent.text(" Config written.")

    expect(page.get_by_test_id("inbox-count")).to_have_text("1")
    # The card stays a moment where it was clicked, showing how it went.
    expect(permission.get_by_test_id("request-verdict")).to_have_text("Allowed")
    page.get_by_test_id("inbox-view").get_by_role("tab", name="decided").click()
    done = card(page, request_id)
    expect(done.get_by_test_id("request-stage")).to_have_attribute("data-stage", "acknowledged")
    expect(done.get_by_test_id("request-verdict")).to_have_text("Allowed")
    expect(done.get_by_test_id("request-decided-by")).to_have_text("alice")
    expect(done.get_by_test_id("request-delivered")).to_contain_text("delivered")
    expect(done.get_by_test_id("request-acknowledged")).to_contain_text("acknowledged")
    expect(done).to_contain_text("ok, just this once")

    audit = page.get_by_test_id("audit-log")
    for action in ("requested", "decided", "delivered", "acknowledged"):
        expect(
            audit.locator(f'[data-testid="audit-row"][data-action="{action}"]').first
        ).to_be_visible()
    expect(audit).to_contain_text("alice")
    screenshot(page, "inbox-decided")


def test_deny_inline_in_the_session_stream(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.text("Next I need to delete the cache.")
    deleting = {"id": "call_rm", "name": "delete_path", "arguments": {"path": "/var/cache"}}
    agent.send("permission_required", call=deleting)
    (request_id,) = pending_ids(studio, 1)

    open_console(page, studio.http_url, "sessions/s-deploy")
    inline = card(page, request_id, "inline-request")
    expect(inline.get_by_test_id("request-tool")).to_have_text("delete_path")
    expect(inline).to_contain_text("/var/cache")
    expect(page.get_by_test_id("approvals-slot")).to_contain_text("delete_path")
    screenshot(page, "inline-request")

    inline.get_by_test_id("decision-note").fill("keep the cache")
    started = time.monotonic()
    inline.get_by_test_id("deny").click()
    control = agent.control()
    took = time.monotonic() - started
    assert took < 1.0 * UNIT, f"the decision took {took:.3f}s to reach the agent"
    assert (control["call_id"], control["decision"], control["note"]) == (
        "call_rm",
        "deny",
        "keep the cache",
    )
    agent.send("permission_decided", call_id="call_rm", decision="deny")
    agent.text(" Skipping the cache then.")

    expect(inline.get_by_test_id("request-verdict")).to_have_text("Denied")
    expect(inline.get_by_test_id("request-stage")).to_have_attribute("data-stage", "acknowledged")
    expect(page.get_by_test_id("approvals-slot")).to_have_count(0)
    expect(page.get_by_test_id("terminal")).to_contain_text("Skipping the cache then.")
    screenshot(page, "inline-request-decided")


def test_questions_answered_in_the_browser_reach_the_agent(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.send("ask_user", request_id="q-env", questions=QUESTIONS)
    (request_id,) = pending_ids(studio, 1)

    open_console(page, studio.http_url, "agents/deployer")
    form = card(page, request_id, "inline-request").get_by_test_id("question-form")
    fields = form.get_by_test_id("question-field")
    expect(fields).to_have_count(3)
    # Sending with a question unanswered is refused in the form, before the Studio sees it.
    form.get_by_test_id("answer-submit").click()
    expect(form).to_contain_text("Answer every question first.")
    fields.nth(0).get_by_label("production").check()
    fields.nth(0).get_by_label("staging").check()
    fields.nth(1).get_by_label("lint").check()
    fields.nth(1).get_by_label("e2e").check()
    fields.nth(2).get_by_test_id("question-text").fill("Deploy after 18:00 only.")
    started = time.monotonic()
    form.get_by_test_id("answer-submit").click()
    control = agent.control()
    assert time.monotonic() - started < 1.0 * UNIT
    assert control["event_type"] == "user_answer" and control["request_id"] == "q-env"
    assert control["answers"] == {
        "Which environment?": "staging",
        "Which checks first?": ["lint", "e2e"],
        "Anything else I should know?": "Deploy after 18:00 only.",
    }
    agent.send("user_answer", request_id="q-env", answers=control["answers"])

    inline = card(page, request_id, "inline-request")
    expect(inline.get_by_test_id("request-verdict")).to_have_text("Answered")
    expect(inline.get_by_test_id("request-stage")).to_have_attribute("data-stage", "acknowledged")
    expect(inline.get_by_test_id("request-answer").nth(1)).to_have_text("→ lint, e2e")


def test_cancel_on_a_running_tool_call_reaches_the_agent_and_shows_its_response(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    running = {
        "id": "call_slow",
        "name": "run_migrations",
        "arguments": {"db": "main"},
        "state": "executing",
        "pausable": True,
        "cancelable": True,
    }
    agent.send("tool:start", "progress", call=running)
    open_console(page, studio.http_url, "sessions/s-deploy")
    row = page.get_by_test_id("tool-row").filter(has_text="run_migrations")
    expect(row.get_by_test_id("tool-cancel")).to_be_visible()

    row.get_by_test_id("tool-pause").click()
    control = agent.control()
    assert (control["event_type"], control["call_id"], control["action"]) == (
        "tool_control",
        "call_slow",
        "pause",
    )
    agent.send("tool_control_response", call_id="call_slow", action="pause", ok=True)
    expect(row.get_by_test_id("tool-resume")).to_be_visible()
    expect(row).to_contain_text("paused")

    row.get_by_test_id("tool-resume").click()
    assert agent.control()["action"] == "resume"
    agent.send("tool_control_response", call_id="call_slow", action="resume", ok=True)
    expect(row.get_by_test_id("tool-pause")).to_be_visible()

    row.locator(".tl-name").click()
    detail = page.get_by_test_id("tool-detail")
    started = time.monotonic()
    detail.get_by_test_id("tool-detail-cancel").click()
    control = agent.control()
    assert time.monotonic() - started < 1.0 * UNIT
    assert (control["call_id"], control["action"]) == ("call_slow", "cancel")
    agent.send("tool_control_response", call_id="call_slow", action="cancel", ok=True)
    agent.send("tool:canceled", "progress", call={**running, "state": "canceled"}, reason="user")

    log = detail.get_by_test_id("tool-control-log")
    expect(log.get_by_test_id("tool-control-response")).to_have_count(3)
    expect(log).to_contain_text("cancel by console")
    expect(log.get_by_test_id("tool-control-response").last).to_contain_text("agent: ok")
    expect(row).to_contain_text("canceled")
    expect(row.get_by_test_id("tool-cancel")).to_have_count(0)
    screenshot(page, "tool-control")


def test_a_control_replaced_before_the_agent_answered_says_so_live(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    """A pause the agent never answered, then a cancel: the pause is closed by the Studio, but
    the log kept saying "delivered · no answer yet" until the page was reloaded."""
    running = {"id": "call_r", "name": "reindex", "state": "executing", "pausable": True}
    agent.send("tool:start", "progress", call={**running, "cancelable": True})
    open_console(page, studio.http_url, "sessions/s-deploy")
    page.get_by_test_id("tool-row").filter(has_text="reindex").locator(".tl-name").click()
    detail = page.get_by_test_id("tool-detail")
    detail.get_by_test_id("tool-detail-pause").click()
    assert agent.control()["action"] == "pause"
    log = detail.get_by_test_id("tool-control-log")
    expect(log).to_contain_text("no answer yet")
    detail.get_by_test_id("tool-detail-cancel").click()
    assert agent.control()["action"] == "cancel"
    expect(log.get_by_test_id("tool-control-closed")).to_have_count(1)
    expect(log.locator("li").filter(has_text="pause")).to_contain_text("closed without an answer")
    expect(log.locator("li").filter(has_text="cancel")).to_contain_text("no answer yet")


def test_refused_tool_control_shows_the_agents_reason(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    running = {"id": "call_x", "name": "upload", "state": "executing", "cancelable": True}
    agent.send("tool:start", "progress", call=running)
    open_console(page, studio.http_url, "sessions/s-deploy")
    page.get_by_test_id("tool-row").filter(has_text="upload").locator(".tl-name").click()
    page.get_by_test_id("tool-detail").get_by_test_id("tool-detail-cancel").click()
    assert agent.control()["action"] == "cancel"
    agent.send(
        "tool_control_response",
        call_id="call_x",
        action="cancel",
        ok=False,
        reason="past the point of no return",
    )
    expect(page.get_by_test_id("tool-control-log")).to_contain_text(
        "agent: refused (past the point of no return)"
    )


def test_a_decision_made_elsewhere_first_is_a_clear_conflict(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.send("permission_required", call=WRITE)
    (request_id,) = pending_ids(studio, 1)
    open_console(page, studio.http_url, "inbox")
    permission = card(page, request_id)
    expect(permission.get_by_test_id("approve")).to_be_visible()
    # Hold this tab's live updates so it still shows the request as open when bob decides.
    page.evaluate("window.__asterHub.stop()")
    status, _ = call(
        studio.http_url,
        f"/v1/dashboard/requests/{request_id}/decision",
        "POST",
        {"decision": "deny", "decided_by": "bob"},
    )
    assert status == 200
    assert agent.control()["decided_by"] == "bob"
    permission.get_by_test_id("approve").click()
    refusal = permission.get_by_test_id("request-refusal")
    expect(refusal).to_have_attribute("data-kind", "conflict")
    expect(refusal).to_contain_text("Someone else decided first: bob at")
    # The card then shows the decision that won.
    expect(permission.get_by_test_id("request-verdict")).to_have_text("Denied")
    expect(permission.get_by_test_id("request-decided-by")).to_have_text("bob")
    with pytest.raises(TimeoutError):
        agent.raw.recv_until("control", timeout=0.3 * UNIT)
    screenshot(page, "request-conflict")


def test_expiry_counts_down_and_expired_requests_say_so(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.send("permission_required", call=WRITE, timeout_ms=int(3000 * UNIT))
    (request_id,) = pending_ids(studio, 1)
    open_console(page, studio.http_url, "inbox?view=all")
    permission = card(page, request_id)
    expect(permission.get_by_test_id("request-expiry")).to_contain_text("expires in")
    expect(page.get_by_test_id("inbox-count")).to_have_text("1")
    expect(permission.get_by_test_id("request-expiry")).to_have_text(
        "expired", timeout=int(6000 * UNIT)
    )
    expect(permission.get_by_test_id("approve")).to_have_count(0)
    expect(permission.get_by_test_id("request-stage")).to_have_attribute("data-stage", "expired")
    expect(page.get_by_test_id("inbox-count")).to_have_count(0)
    expect(permission.get_by_test_id("request-outcome")).to_contain_text("without a decision")
    wait_for(
        lambda: get(studio.http_url, f"/v1/dashboard/requests/{request_id}"),
        lambda r: r["status"] == "expired",
    )


@pytest.fixture
def locked_studio(tmp_path: Path) -> Iterator[tuple[StudioProcess, str]]:
    """A Studio with auth on: a console token for people and an agent key for the agent."""
    db = tmp_path / "studio.db"
    created = subprocess.run(
        [sys.executable, "-m", "aster_studio", "keys", "create", "--name", "e2e", "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30 * UNIT,
    )
    key = next(w for w in created.stdout.split() if w.startswith("ask_"))
    server = StudioProcess(db, env={"ASTER_STUDIO_CONSOLE_TOKEN": CONSOLE_TOKEN}).start()
    try:
        yield server, key
    finally:
        server.stop()


def test_with_auth_on_a_decision_carries_the_csrf_token(
    locked_studio: tuple[StudioProcess, str], page: Page
) -> None:
    studio, key = locked_studio
    steered = SteeredAgent(studio, "guarded", "s-guarded", key)
    try:
        steered.send("permission_required", call=WRITE)
        page.goto(f"{studio.http_url}/studio/inbox")
        page.get_by_test_id("login-token").fill(CONSOLE_TOKEN)
        page.get_by_test_id("login-submit").click()
        page.wait_for_selector('[data-testid="connection"][data-state="open"]', timeout=TIMEOUT_MS)
        permission = page.get_by_test_id("request").first
        with page.expect_request("**/decision") as sent:
            permission.get_by_test_id("approve").click()
        assert sent.value.headers.get("x-csrf-token")
        assert steered.control()["decision"] == "allow"
        expect(permission.get_by_test_id("request-verdict")).to_have_text("Allowed")
    finally:
        steered.close()


def test_an_sdk_agent_waits_for_the_console_and_proceeds(studio: StudioProcess, page: Page) -> None:
    client = sdk_agent(studio.url, "sdk-steered", name="SDK agent")
    got: dict[str, Any] = {}

    def work() -> None:
        with client.session("s-sdk") as s:
            call = s.tool_call("write_file", {"path": "notes.txt"})
            decision = s.request_permission(call, timeout=30 * UNIT)
            got["decided_at"] = time.monotonic()
            got["decision"] = decision
            if decision:
                with call:
                    call.result = {"bytes": 5}
                s.text("wrote notes.txt")
            got["answers"] = s.ask_user(
                [Question("Which checks?", options=["lint", "tests"], multi_select=True), "Why?"],
                timeout=30 * UNIT,
            )
            with s.tool_call("crawl", {"site": "example.org"}, cancelable=True) as crawl:
                deadline = time.monotonic() + 30 * UNIT
                while not crawl.cancelled and time.monotonic() < deadline:
                    time.sleep(0.02)
                got["cancelled"] = crawl.cancelled

    agent = threading.Thread(target=work, name="sdk-agent", daemon=True)
    agent.start()
    try:
        open_console(page, studio.http_url, "inbox")
        permission = page.get_by_test_id("request").filter(has_text="write_file")
        expect(permission.get_by_test_id("approve")).to_be_visible()
        expect(permission.get_by_test_id("request-expiry")).to_contain_text("expires in")
        clicked = time.monotonic()
        permission.get_by_test_id("approve").click()
        wait_until(lambda: "decided_at" in got)
        assert got["decided_at"] - clicked < 1.0 * UNIT
        assert got["decision"].allowed and got["decision"].decided_by == "console"

        form = page.get_by_test_id("question-form")
        fields = form.get_by_test_id("question-field")
        expect(fields).to_have_count(2)
        fields.nth(0).get_by_label("lint").check()
        fields.nth(0).get_by_label("tests").check()
        fields.nth(1).get_by_test_id("question-text").fill("to be sure")
        form.get_by_test_id("answer-submit").click()
        wait_until(lambda: "answers" in got)
        assert got["answers"].answered
        assert got["answers"].answers == {"Which checks?": ["lint", "tests"], "Why?": "to be sure"}

        page.get_by_role("link", name="s-sdk").first.click()
        row = page.get_by_test_id("tool-row").filter(has_text="crawl")
        row.get_by_test_id("tool-cancel").click()
        agent.join(10 * UNIT)
        assert got.get("cancelled") is True
        expect(row).to_contain_text("canceled")
        row.locator(".tl-name").click()
        expect(page.get_by_test_id("tool-control-log")).to_contain_text("agent: ok")
        done = page.get_by_test_id("inline-request").filter(has_text="write_file")
        expect(done.get_by_test_id("request-stage")).to_have_attribute("data-stage", "acknowledged")
    finally:
        client.close(timeout=5 * UNIT)
        agent.join(5 * UNIT)


def test_a_decision_that_came_too_late_for_the_agent_says_so(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    agent.send("permission_required", call=WRITE)
    (request_id,) = pending_ids(studio, 1)
    open_console(page, studio.http_url, "inbox")
    permission = card(page, request_id)
    permission.get_by_test_id("approve").click()
    assert agent.control()["decision"] == "allow"
    # The agent had timed out and gone on with its default before the decision arrived.
    agent.send(
        "permission_decided",
        call_id="call_w1",
        decision="deny",
        applied=False,
        reason="timeout",
        decided_by="console",
    )
    expect(permission.get_by_test_id("request-late")).to_have_text(
        "too late for the agent: it had already gone on with deny (timeout)"
    )


def test_a_phone_sized_screen_has_a_menu_and_approves_a_request(
    studio: StudioProcess, agent: SteeredAgent, page: Page
) -> None:
    page.set_viewport_size({"width": 390, "height": 844})
    agent.send("permission_required", call=WRITE, timeout_ms=600_000)
    [request_id] = pending_ids(studio, 1)
    open_console(page, studio.http_url)
    # The sidebar is a top bar: its page links open from the menu, which closes on a choice.
    nav = page.locator("#main-nav")
    expect(nav).to_be_hidden()
    page.get_by_test_id("menu-toggle").click()
    nav.get_by_text("Inbox").click()
    expect(page.get_by_test_id("page-inbox")).to_be_visible()
    expect(nav).to_be_hidden()
    main_width = page.evaluate("() => document.querySelector('main').getBoundingClientRect().width")
    assert main_width >= 350, main_width
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 390
    title = page.locator(".page-head h1").bounding_box()
    assert title is not None and title["height"] < 40, title  # one line, not a letter a line
    screenshot(page, "inbox_phone")
    card(page, request_id).get_by_test_id("approve").click()
    control = agent.control()
    assert (control["call_id"], control["decision"]) == ("call_w1", "allow")
