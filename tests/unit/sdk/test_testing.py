"""The in-memory Studio that agent authors use in their own tests."""

from __future__ import annotations

from aster_studio_sdk.testing import InMemoryStudio
from tests.support.timing import UNIT


def test_captures_what_an_agent_reports() -> None:
    studio = InMemoryStudio()
    client = studio.client(agent_id="writer-1", strict=True)
    try:
        with client.session("s1") as s:
            s.text("Hello, ")
            s.text("world")
            s.token_usage(10, 5)
        client.text("outside")
        assert client.flush(5 * UNIT)
        assert studio.text("s1") == "Hello, world"
        assert studio.text() == "Hello, worldoutside"
        assert [e.event["input_tokens"] for e in studio.events_of("token_usage")] == [10]
        assert studio.sessions["s1"].status == "completed"
        assert "writer-1" in studio.agents
    finally:
        client.close(5 * UNIT)


def test_stores_each_numbered_message_once_across_reconnects() -> None:
    studio = InMemoryStudio()
    client = studio.client(strict=True)
    try:
        client.text("a")
        assert client.flush(5 * UNIT)
        studio.disconnect_all()
        client.text("b")
        assert client.flush(5 * UNIT)
        assert studio.text() == "ab"
        assert studio.connects == 2
    finally:
        client.close(5 * UNIT)


def test_legacy_mode_answers_without_last_seq_and_refuses_extensions() -> None:
    studio = InMemoryStudio(legacy=True)
    transport = studio.transport()
    conn = transport.connect("ws://x", {}, 1.0)
    conn.send(b'{"type":"register","agent":{"id":"a"},"producer_id":"p"}')
    assert conn.recv(1.0) == b'{"type":"registered","agent_id":"a"}'
    conn.send(b'{"type":"batch","messages":[]}')
    reply = conn.recv(1.0)
    assert reply is not None and b"unknown_type" in reply
    conn.close()
