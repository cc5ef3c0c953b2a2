"""The agent endpoint over real sockets: the document's messages, both shapes, batches."""

from __future__ import annotations

import time

import pytest

from tests.support.agent import RawAgent, event, register
from tests.support.api import events, get, wait_for
from tests.support.server import StudioProcess

DOC_REGISTER = {
    "type": "register",
    "agent": {
        "id": "agent-123",
        "name": "Writing Agent",
        "status": "ready",
        "model": "claude-3-5-sonnet",
        "capabilities": ["writing", "editing"],
    },
}
DOC_SESSION = {
    "type": "register_session",
    "session": {"id": "session-456", "agent_id": "agent-123", "created_at": "2024-01-01T12:00:00Z"},
}
DOC_EVENTS = [
    {"channel": "monitor", "event_type": "token_usage", "input_tokens": 100, "output_tokens": 50},
    {"channel": "monitor", "event_type": "state_changed", "state": "working"},
    {
        "channel": "monitor",
        "event_type": "error",
        "severity": "error",
        "message": "API call failed",
    },
    {"channel": "progress", "event_type": "text_chunk", "delta": "Hello, "},
]


def test_connection_is_greeted_with_connected(studio: StudioProcess) -> None:
    agent = RawAgent(studio.agent_url, greeting=False)
    with agent:
        assert agent.recv()["type"] == "connected"


def test_document_register_is_answered_registered(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        reply = agent.request(DOC_REGISTER)
    assert reply["type"] == "registered"
    assert reply["agent_id"] == "agent-123"
    assert "last_seq" not in reply  # reliable delivery is opt-in


def test_document_messages_are_stored_with_session_channel_and_type(
    studio: StudioProcess,
) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(DOC_REGISTER)
        assert agent.request(DOC_SESSION) == {
            "type": "session_registered",
            "session_id": "session-456",
            "message": "Session registered successfully",
        }
        for body in DOC_EVENTS:
            agent.send({"type": "event", "agent_id": "agent-123", "event": body})
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 4)
    assert [e["event"] for e in stored] == DOC_EVENTS
    assert {e["session_id"] for e in stored} == {"session-456"}
    assert [e["channel"] for e in stored] == ["monitor", "monitor", "monitor", "progress"]
    assert [e["event_type"] for e in stored] == [
        "token_usage",
        "state_changed",
        "error",
        "text_chunk",
    ]


def test_document_session_keeps_its_created_at(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(DOC_REGISTER)
        agent.request(DOC_SESSION)
    session = get(studio.http_url, "/v1/dashboard/sessions/session-456")
    assert session["created_at"] == "2024-01-01T12:00:00.000Z"
    assert session["agent_name"] == "Writing Agent"


def test_state_changed_sets_agent_state(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(DOC_REGISTER)
        agent.send(event("agent-123", "state_changed", state="working"))
        view = wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents/agent-123"),
            lambda v: v["state"] == "working",
        )
        assert view["status"] == "online"


def test_done_completes_the_agent(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(DOC_REGISTER)
        agent.send(event("agent-123", "state_changed", state="working"))
        agent.send(event("agent-123", "done", step=3, reason="completed"))
        wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents/agent-123"),
            lambda v: v["state"] == "completed",
        )


def test_token_usage_is_priced_by_the_agents_model(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(DOC_REGISTER)
        agent.send({"type": "event", "agent_id": "agent-123", "event": DOC_EVENTS[0]})
    view = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/agents/agent-123"),
        lambda v: v["token_usage"]["total"] == 150,
    )
    # claude-3-5-sonnet: $3 in, $15 out per million tokens.
    assert abs(view["cost"]["amount"] - (100 * 3 + 50 * 15) / 1e6) < 1e-12
    assert view["unpriced_tokens"] == 0


def test_usage_without_known_model_is_unpriced_not_free(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("mystery"))
        agent.send(event("mystery", "token_usage", input_tokens=10, output_tokens=5))
    view = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/agents/mystery"),
        lambda v: v["token_usage"]["total"] == 15,
    )
    assert view["unpriced_tokens"] == 15
    costs = get(studio.http_url, "/v1/dashboard/metrics/costs?period=1h")
    assert costs["unpriced_tokens"] == 15
    assert costs["unpriced_models"] == ["(unknown)"]


def test_envelope_register_is_answered_in_envelope_shape(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        reply = agent.request(
            {
                "type": "register",
                "payload": {"agent_id": "go-1", "template_id": "writer-v1", "metadata": {}},
            }
        )
        assert reply == {
            "type": "registered",
            "payload": {"agent_id": "go-1", "message": "Agent registered successfully"},
        }
        assert agent.request({"type": "ping", "payload": None}) == {
            "type": "pong",
            "payload": None,
        }


def test_envelope_event_is_stored(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request({"type": "register", "payload": {"agent_id": "go-1", "template_id": "t"}})
        agent.request(
            {
                "type": "register_session",
                "payload": {"session_id": "s-1", "agent_id": "go-1", "status": "active"},
            }
        )
        agent.send(
            {
                "type": "event",
                "payload": {
                    "agent_id": "go-1",
                    "envelope": {"cursor": 7, "bookmark": None, "event": {"delta": "hi"}},
                },
            }
        )
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)
    # Inferred from `delta`; beside the event and inside it, where the original console reads it.
    assert stored[0]["event"] == {"channel": "progress", "event_type": "unknown", "delta": "hi"}
    assert stored[0]["channel"] == "progress"
    assert stored[0]["session_id"] == "s-1"


def test_batch_is_applied_in_order(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.send(
            {
                "type": "batch",
                "messages": [
                    register("b-1"),
                    {"type": "register_session", "session": {"id": "bs", "agent_id": "b-1"}},
                    *[event("b-1", "text_chunk", delta=str(i)) for i in range(50)],
                ],
            }
        )
        assert agent.recv()["type"] == "registered"
        assert agent.recv()["type"] == "session_registered"
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 50)
    assert [e["event"]["delta"] for e in stored] == [str(i) for i in range(50)]
    assert {e["session_id"] for e in stored} == {"bs"}


def test_end_session_records_status_and_closes_current_session(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("e-1"))
        agent.request({"type": "register_session", "session": {"id": "es", "agent_id": "e-1"}})
        agent.send(
            {"type": "end_session", "session_id": "es", "agent_id": "e-1", "status": "failed"}
        )
        agent.send(event("e-1", "text_chunk", delta="after"))
        session = wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/sessions/es"),
            lambda s: s["status"] == "failed",
        )
    assert session["ended_at"] is not None
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)
    assert stored[0]["session_id"] is None


@pytest.mark.parametrize("agent_id", ["e-1", None])
def test_end_session_by_its_id_alone_closes_the_current_session(
    studio: StudioProcess, agent_id: str | None
) -> None:
    """The session id is all `end_session` needs: without the agent's, the agent kept the
    ended session as its current one and filed its next events there."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("e-1"))
        agent.request({"type": "register_session", "session": {"id": "es", "agent_id": "e-1"}})
        end = {"type": "end_session", "session_id": "es"}
        agent.send(end if agent_id is None else {**end, "agent_id": agent_id})
        agent.send(event("e-1", "text_chunk", delta="after"))
        agent.send({**event("e-1", "text_chunk", delta="no session"), "session_id": ""})
        stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 2)
    assert [e["session_id"] for e in stored] == [None, None]
    assert get(studio.http_url, "/v1/dashboard/sessions/es")["event_count"] == 0
    assert get(studio.http_url, "/v1/dashboard/agents/e-1")["current_session_id"] is None
    # "" names no session: none was made up for it.
    assert [s["id"] for s in get(studio.http_url, "/v1/dashboard/sessions")["sessions"]] == ["es"]


def test_a_second_connection_leaving_does_not_take_the_agent_offline(
    studio: StudioProcess,
) -> None:
    """A forked worker registers its parent's agent on a connection of its own: when it left,
    the agent showed offline (and "ready") while its parent was still connected."""
    agent_view = "/v1/dashboard/agents/p"
    with RawAgent(studio.agent_url) as parent:
        parent.request(register("p", status="working"))
        with RawAgent(studio.agent_url) as child:
            child.request({"type": "register", "agent": {"id": "p"}, "producer_id": "child-1"})
            child.send(event("p", "x"))
            assert child.request({"type": "ping"}) == {"type": "pong"}
            assert get(studio.http_url, agent_view)["state"] == "working"
        time.sleep(0.3)  # the child's close is handled
        view = get(studio.http_url, agent_view)
        assert (view["status"], view["state"]) == ("online", "working")
        parent.send(event("p", "y"))
        assert parent.request({"type": "ping"}) == {"type": "pong"}
    wait_for(lambda: get(studio.http_url, agent_view), lambda v: v["status"] == "offline")


def test_event_session_id_beside_agent_id_creates_the_session(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("x-1"))
        agent.send({**event("x-1", "text_chunk", delta="a"), "session_id": "implicit-s"})
    session = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/sessions?agent_id=x-1"),
        lambda s: s["total"] == 1,
    )["sessions"][0]
    assert session["id"] == "implicit-s"
    assert session["event_count"] == 1


def test_unregister_takes_agent_offline_and_keeps_history(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("u-1"))
        agent.send(event("u-1", "text_chunk", delta="x"))
        agent.send({"type": "unregister", "agent_id": "u-1"})
        wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents/u-1"),
            lambda v: v["status"] == "offline" and v["event_count"] == 1,
        )


def test_event_from_unregistered_agent_is_stored_and_agent_created(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.send(event("ghost", "text_chunk", delta="boo"))
        view = wait_for(
            lambda: get(studio.http_url, "/v1/dashboard/agents"),
            lambda d: d["total"] == 1,
        )["agents"][0]
        assert view["id"] == "ghost"
        assert view["implicit"] is True
        assert view["status"] == "online"
    assert len(events(studio.http_url, "agent_id=ghost")) == 1


def test_agent_goes_offline_with_last_seen_when_socket_closes(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("o-1"))
        assert get(studio.http_url, "/v1/dashboard/agents/o-1")["status"] == "online"
    view = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/agents/o-1"),
        lambda v: v["status"] == "offline",
    )
    assert view["last_seen"] is not None
    assert view["connected_at"] is None


def test_reregistering_on_a_new_connection_takes_the_agent_over(studio: StudioProcess) -> None:
    first = RawAgent(studio.agent_url)
    first.request(register("t-1"))
    with RawAgent(studio.agent_url) as second:
        second.request(register("t-1"))
        first.close()  # the old connection ending must not take the agent offline
        second.request({"type": "ping"})
        assert get(studio.http_url, "/v1/dashboard/agents/t-1")["status"] == "online"
