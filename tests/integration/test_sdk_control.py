"""The SDK's steering API against the real Studio: decisions, answers, tool control, expiry."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from aster_studio_sdk import (
    Answers,
    Decision,
    DeliveryOptions,
    Question,
    Reason,
    Source,
    StudioClient,
    TransportError,
    WebSocketTransport,
)
from aster_studio_sdk._transport import Connection
from tests.support.api import call, get, wait_for
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

OPTS = DeliveryOptions(
    flush_interval=0.01,
    poll_interval=0.005,
    idle_poll_interval=0.02,
    backoff_initial=0.02,
    backoff_max=0.2,
    connect_timeout=2 * UNIT,
    handshake_timeout=2 * UNIT,
    shutdown_timeout=2 * UNIT,
)


class Link:
    """The network between agent and Studio: a test cuts it (both ends see it) and mends it."""

    def __init__(self) -> None:
        self._inner = WebSocketTransport(close_timeout=0.2)
        self._lock = threading.Lock()
        self._up = True
        self._conns: list[Connection] = []

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        with self._lock:
            if not self._up:
                raise TransportError("link down")
        conn = self._inner.connect(url, headers, timeout)
        with self._lock:
            self._conns.append(conn)
        return conn

    def cut(self) -> None:
        with self._lock:
            self._up = False
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.abort()

    def mend(self) -> None:
        with self._lock:
            self._up = True


@contextlib.contextmanager
def agent(studio: StudioProcess, agent_id: str = "steered", **kw: Any) -> Iterator[StudioClient]:
    client = StudioClient(agent_id, url=studio.url, enabled=True, strict=True, options=OPTS, **kw)
    try:
        yield client
    finally:
        client.close(2 * UNIT)


class Background:
    """Run the agent's blocking call in a thread; remember its result and when it returned."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        self.result: Any = None
        self.returned_at = 0.0
        self._thread = threading.Thread(target=self._run, args=(fn,), daemon=True)
        self._thread.start()

    def _run(self, fn: Callable[[], Any]) -> None:
        self.result = fn()
        self.returned_at = time.monotonic()

    def join(self, timeout: float) -> Any:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the agent is still waiting"
        return self.result


def one_pending(studio: StudioProcess, kind: str) -> dict[str, Any]:
    data = wait_for(
        lambda: get(studio.http_url, f"/v1/dashboard/requests?status=pending&kind={kind}"),
        lambda d: len(d["requests"]) == 1,
        timeout=10 * UNIT,
    )
    return dict(data["requests"][0])


def request_view(studio: StudioProcess, request_id: str, stage: str) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: get(studio.http_url, f"/v1/dashboard/requests/{request_id}"),
            lambda r: r["stage"] == stage,
            timeout=10 * UNIT,
        )
    )


def events_of(studio: StudioProcess, agent_id: str, event_type: str) -> list[dict[str, Any]]:
    path = f"/v1/dashboard/events?agent_id={agent_id}&event_type={event_type}"
    return list(get(studio.http_url, path)["events"])


def decide(studio: StudioProcess, request_id: str, decision: str, **extra: Any) -> float:
    """Decide through REST; return when the decision was made (monotonic)."""
    status, body = call(
        studio.http_url,
        f"/v1/dashboard/requests/{request_id}/decision",
        "POST",
        {"decision": decision, **extra},
    )
    assert status == 200, body
    return time.monotonic()


def test_approve_reaches_the_agent_within_a_second_and_is_acknowledged(
    studio: StudioProcess,
) -> None:
    with agent(studio) as client, client.session("s1") as s:
        tool = s.tool_call("write_file", {"path": "/tmp/x"})
        waiting = Background(lambda: tool.request_permission(timeout=30 * UNIT))
        request = one_pending(studio, "permission")
        assert (request["key"], request["session_id"]) == (tool.id, "s1")
        assert request["request"]["name"] == "write_file"
        assert request["expires_at"] is not None  # the agent's timeout travels with the request
        decided_at = decide(studio, request["id"], "allow", note="once", decided_by="alice")
        decision: Decision = waiting.join(5 * UNIT)
        assert waiting.returned_at - decided_at < 1.0
        assert decision.allowed and decision.source is Source.STUDIO
        assert (decision.note, decision.decided_by) == ("once", "alice")
        done = request_view(studio, request["id"], "acknowledged")
    assert done["agent_response"]["decision"] == "allow"
    assert done["agent_response"]["applied"] is True


def test_deny_reaches_the_agent_within_a_second(studio: StudioProcess) -> None:
    with agent(studio) as client:
        waiting = Background(
            lambda: client.request_permission({"id": "rm-1", "name": "rm"}, timeout=30 * UNIT)
        )
        request = one_pending(studio, "permission")
        decided_at = decide(studio, request["id"], "deny", decided_by="bob")
        decision: Decision = waiting.join(5 * UNIT)
        assert waiting.returned_at - decided_at < 1.0
        assert not decision and decision.decided_by == "bob"
        request_view(studio, request["id"], "acknowledged")


def test_ask_user_is_answered_from_the_studio(studio: StudioProcess) -> None:
    with agent(studio) as client, client.session("s1") as s:
        waiting = Background(
            lambda: s.ask_user(
                [Question("Which file?", options=["a.txt", "b.txt"], header="File")],
                timeout=30 * UNIT,
            )
        )
        request = one_pending(studio, "question")
        assert request["request"]["questions"][0]["question"] == "Which file?"
        status, _ = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/answer",
            "POST",
            {"answers": {"Which file?": "a.txt"}, "decided_by": "carol"},
        )
        assert status == 200
        answers: Answers = waiting.join(5 * UNIT)
        assert answers.answered and answers.answers == {"Which file?": "a.txt"}
        assert answers.decided_by == "carol"
        request_view(studio, request["id"], "acknowledged")


def test_cancel_of_a_running_tool_reaches_it_and_its_response_is_shown(
    studio: StudioProcess,
) -> None:
    running = threading.Event()
    with agent(studio, "tooler") as client, client.session("s1") as s:

        def crawl() -> int:
            pages = 0
            with s.tool_call("crawl", cancelable=True, pausable=True) as tool:
                running.set()
                while not tool.cancelled and pages < 100_000:
                    tool.wait_if_paused(0.5)
                    pages += 1
                    time.sleep(0.005)
            return pages

        work = Background(crawl)
        assert running.wait(5 * UNIT) and client.flush(5 * UNIT)
        (start,) = wait_for(
            lambda: events_of(studio, "tooler", "tool:start"), lambda found: len(found) == 1
        )
        call_id = start["event"]["call"]["id"]
        assert start["event"]["call"]["cancelable"] is True  # the console offers the button
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/agents/tooler/tools/{call_id}/control",
            "POST",
            {"action": "cancel", "note": "enough"},
        )
        assert status == 200, body
        sent_at = time.monotonic()
        pages = work.join(5 * UNIT)
        assert work.returned_at - sent_at < 1.0 and pages < 100_000
        done = request_view(studio, body["data"]["id"], "acknowledged")
        assert done["agent_response"]["ok"] is True
        assert done["agent_response"]["action"] == "cancel"
        (canceled,) = wait_for(
            lambda: events_of(studio, "tooler", "tool:canceled"), lambda found: len(found) == 1
        )
    assert canceled["event"]["reason"] == "enough"


def test_pause_then_cancel_each_get_the_agents_own_response(studio: StudioProcess) -> None:
    """Sent in quick succession, the pause's response was credited to the cancel."""
    with (
        agent(studio, "tooler") as client,
        client.session("s1") as s,
        s.tool_call("crawl", cancelable=True, pausable=True) as tool,
    ):
        assert client.flush(5 * UNIT)
        wait_for(lambda: events_of(studio, "tooler", "tool:start"), lambda found: len(found) == 1)
        sent: dict[str, str] = {}
        for action in ("pause", "cancel"):
            status, body = call(
                studio.http_url,
                f"/v1/dashboard/agents/tooler/tools/{tool.id}/control",
                "POST",
                {"action": action},
            )
            assert status == 200, body
            sent[action] = body["data"]["id"]
        assert wait_for(lambda: tool.cancelled, bool, timeout=5 * UNIT)
        assert client.flush(5 * UNIT)
        responses = {
            action: wait_for(
                lambda rid=rid: get(studio.http_url, f"/v1/dashboard/requests/{rid}"),
                lambda r: r["agent_response"] is not None,
                timeout=10 * UNIT,
            )["agent_response"]
            for action, rid in sent.items()
        }
    assert {a: (r["action"], r["ok"]) for a, r in responses.items()} == {
        "pause": ("pause", True),
        "cancel": ("cancel", True),
    }
    assert {a: r["request_id"] for a, r in responses.items()} == sent


def test_decision_made_while_offline_arrives_after_the_agent_reconnects(
    studio: StudioProcess,
) -> None:
    link = Link()
    with agent(studio, "roamer", transport=link) as client:
        waiting = Background(
            lambda: client.request_permission({"id": "c-off", "name": "deploy"}, timeout=30 * UNIT)
        )
        request = one_pending(studio, "permission")
        link.cut()
        wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents/roamer"),
            lambda v: v["status"] == "offline",
        )
        decide(studio, request["id"], "allow", decided_by="dana")
        assert get(studio.http_url, f"/v1/dashboard/requests/{request['id']}")["stage"] == "decided"
        time.sleep(0.2)
        assert waiting.result is None  # still waiting: nothing could reach it
        link.mend()  # the SDK reconnects by itself and the Studio delivers the decision
        decision: Decision = waiting.join(10 * UNIT)
        assert decision.allowed and decision.decided_by == "dana"
        request_view(studio, request["id"], "acknowledged")


def test_pending_request_survives_a_studio_restart(studio: StudioProcess) -> None:
    with agent(studio, "patient") as client:
        waiting = Background(
            lambda: client.request_permission({"id": "c-rs", "name": "deploy"}, timeout=60 * UNIT)
        )
        request = one_pending(studio, "permission")
        studio.restart()
        wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents/patient"),
            lambda v: v["status"] != "offline",
        )
        decide(studio, request["id"], "deny")
        decision: Decision = waiting.join(10 * UNIT)
        assert not decision and decision.from_studio
        request_view(studio, request["id"], "acknowledged")


def test_expired_request_gives_the_default_and_shows_expired(studio: StudioProcess) -> None:
    with agent(studio, "hasty") as client:
        started = time.monotonic()
        decision = client.request_permission({"id": "c-exp"}, timeout=0.5, default="allow")
        assert 0.5 <= time.monotonic() - started < 0.5 + 1.0 * UNIT
        assert (decision.allowed, decision.source, decision.reason) == (
            True,
            Source.DEFAULT,
            Reason.TIMEOUT,
        )
        (request,) = get(studio.http_url, "/v1/dashboard/requests?status=all&agent_id=hasty")[
            "requests"
        ]
        expired = request_view(studio, request["id"], "expired")
        assert expired["status"] == "expired"
        status, body = call(
            studio.http_url,
            f"/v1/dashboard/requests/{request['id']}/decision",
            "POST",
            {"decision": "deny"},
        )
        assert status == 410, body


def test_a_decision_on_an_earlier_runs_request_is_not_applied_to_a_new_ask(
    studio: StudioProcess,
) -> None:
    with agent(studio, "rerun") as first:
        notes = {"id": "call_1", "name": "write_file", "arguments": {"path": "notes.txt"}}
        first.request_permission(notes, timeout=60 * UNIT, on_decision=lambda d: None)
        old = one_pending(studio, "permission")
    with agent(studio, "rerun") as second:
        assert second.flush(5 * UNIT)
        decide(studio, old["id"], "allow", decided_by="alice")  # delivered to this new run
        request_view(studio, old["id"], "delivered")
        passwd = {"id": "call_1", "name": "write_file", "arguments": {"path": "/etc/passwd"}}
        decision = second.request_permission(passwd, timeout=0.5 * UNIT)
    assert not decision and decision.source is Source.DEFAULT
