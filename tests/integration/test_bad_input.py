"""Bad input gets a precise error; the connection, the server and valid data all survive."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, get, wait_for
from tests.support.databases import Databases
from tests.support.server import StudioProcess

BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("invalid_json", "{not json", "invalid_json"),
    ("truncated_json", '{"type":"event","agent_id":"a"', "invalid_json"),
    ("array", "[1, 2]", "not_an_object"),
    ("number", "42", "not_an_object"),
    ("null", "null", "not_an_object"),
    ("binary", b"\x00\x01binary", "binary_frame"),
    ("no_type", '{"agent_id":"a"}', "missing_type"),
    ("unknown_type", '{"type":"teleport"}', "unknown_type"),
    ("register_no_id", '{"type":"register","agent":{"name":"x"}}', "missing_field"),
    ("register_not_object", '{"type":"register","agent":"x"}', "invalid_field"),
    ("event_no_agent", '{"type":"event","event":{"delta":"x"}}', "missing_field"),
    ("event_no_event", '{"type":"event","agent_id":"a"}', "missing_field"),
    ("event_mistyped", '{"type":"event","agent_id":"a","event":[1]}', "invalid_field"),
    ("agent_id_mistyped", '{"type":"event","agent_id":{"x":1},"event":{}}', "invalid_field"),
    ("session_no_agent", '{"type":"register_session","session":{"id":"s"}}', "missing_field"),
    ("id_too_long", json.dumps(register("a" * 300)), "string_too_long"),
    ("batch_not_list", '{"type":"batch","messages":{}}', "invalid_field"),
    (
        "nested_batch",
        '{"type":"batch","messages":[{"type":"batch","messages":[]}]}',
        "nested_batch",
    ),
]


@pytest.mark.parametrize(
    ("frame", "code"), [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES]
)
def test_bad_frame_gets_error_and_connection_keeps_working(
    studio: StudioProcess, frame: str | bytes, code: str
) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.send_raw(frame)
        reply = agent.recv()
        assert reply["type"] == "error"
        assert reply["code"] == code
        assert reply["message"]
        agent.request(register("good"))
        agent.send(event("good", "text_chunk", delta="still here"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)
    assert stored[0]["event"]["delta"] == "still here"


def test_error_names_the_missing_field(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        reply = agent.request({"type": "register", "agent": {"name": "no id"}})
    assert reply["field"] == "agent.id"
    assert "agent.id" in reply["message"]


def test_invalid_utf8_text_frame_gets_error_not_close(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        # websockets validates outgoing text, so build the text frame by hand.
        from websockets.frames import Frame, Opcode

        with agent.ws.protocol_mutex:
            agent.ws.protocol.send_frame(Frame(Opcode.TEXT, b'{"type":"ping"\xff}'))
            agent.ws.send_data()
        reply = agent.recv()
        assert reply["code"] == "invalid_utf8"
        assert agent.request({"type": "ping"}) == {"type": "pong"}


def test_bad_batch_item_keeps_the_valid_items(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.send(
            {
                "type": "batch",
                "messages": [
                    event("mix", "text_chunk", delta="1"),
                    {"type": "event", "agent_id": "mix"},
                    7,
                    event("mix", "text_chunk", delta="2"),
                ],
            }
        )
        first, second = agent.recv(), agent.recv()
    assert (first["code"], first["index"]) == ("missing_field", 1)
    assert (second["code"], second["index"]) == ("not_an_object", 2)
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 2)
    assert [e["event"]["delta"] for e in stored] == ["1", "2"]


def test_oversized_frame_closes_with_1009_and_server_survives(studio: StudioProcess) -> None:
    victim = RawAgent(studio.agent_url)
    with RawAgent(studio.agent_url) as bystander:
        bystander.request(register("bystander"))
        with pytest.raises(ConnectionClosed) as closed:
            # The server may close as soon as it reads the header, before the frame is sent.
            victim.send(event("big", "text_chunk", delta="x" * (1 << 20)))
            victim.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009
        bystander.send(event("bystander", "text_chunk", delta="fine"))
        assert bystander.request({"type": "ping"}) == {"type": "pong"}
    victim.close()
    assert len(wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)) == 1
    assert call(studio.http_url, "/healthz")[1]["status"] == "ok"


def test_client_that_never_reads_does_not_stall_ingestion(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        # 5,000 pings whose pongs are never read, then events: all events must still land.
        for _ in range(5):
            agent.send({"type": "batch", "messages": [{"type": "ping"}] * 1000})
        agent.send({"type": "batch", "messages": [event("deaf", "x", i=i) for i in range(100)]})
        wait_for(lambda: events(studio.http_url), lambda e: len(e) == 100, timeout=20)


def test_times_out_of_range_or_without_zone_lose_nothing(studio: StudioProcess) -> None:
    """A time past year 9999 (in UTC) was stored, then every page of events holding it, the
    sessions list and the live stream failed on it (500s; the whole published run lost). Go's
    zero time showed as `1-01-01T...`, and a session whose `created_at` had no zone was
    refused. Now a time that cannot be shown is no time, and one without a zone is UTC."""
    from tests.integration.test_live_stream import Stream

    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        stream.subscribe(filters={}, batch=True)
        agent.request(register("clock"))
        far = {"type": "register_session", "session": {"id": "far", "agent_id": "clock"}}
        for session, created in (
            ("far", "9999-12-31T23:59:59-12:00"),
            ("naive", "2024-01-01T12:00:00"),
            ("zero", "0001-01-01T00:00:00Z"),
        ):
            reply = agent.request(
                {**far, "session": {**far["session"], "id": session, "created_at": created}}
            )
            assert reply["type"] == "session_registered", reply
        stamps = ["9999-12-31T23:59:59-12:00", "0001-01-01T00:00:00Z", "2024-01-01T12:00:00"]
        agent.send(
            {
                "type": "batch",
                "messages": [event("clock", "tick", timestamp=t, session_id="far") for t in stamps],
            }
        )
        live = stream.events(3)
    assert [e["data"]["timestamp"] for e in live] == stamps
    assert [e["client_timestamp"] for e in live] == [None, None, "2024-01-01T12:00:00.000Z"]
    # Live before stored (write-behind): wait for the commit.
    stored = wait_for(lambda: events(studio.http_url, "agent_id=clock"), lambda e: len(e) == 3)
    assert [e["event"]["timestamp"] for e in stored] == stamps
    status, body = call(studio.http_url, "/v1/dashboard/sessions")
    assert status == 200, body
    created = {s["id"]: s["created_at"] for s in body["data"]["sessions"]}
    assert created["naive"] == "2024-01-01T12:00:00.000Z"
    assert created["far"][:4] == created["zero"][:4] == "2026"  # the receive time
    assert call(studio.http_url, "/v1/dashboard/traces")[0] == 200


def test_hostile_numbers_neither_break_reads_nor_a_restart(
    tmp_path: Path, new_db: Databases
) -> None:
    """Two token counts of 5e18 overflowed the store's sums: the overview and metrics
    answered 503, and the Studio could not start again on its database. A duration of 1e25
    broke the overview with a bare 500; a timeout of 1e20 kept a request out of the store; a
    numeric call id made no request at all, and the agent waited for ever."""
    server = StudioProcess(new_db("h")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.request({"type": "register", "agent": {"id": "big", "capabilities": ["control"]}})
            for tokens in (5_000_000_000_000_000_000, 5_000_000_000_000_000_000, 2**70, 1e25):
                agent.send(
                    event(
                        "big", "token_usage", input_tokens=tokens, output_tokens=0, model="gpt-4o"
                    )
                )
            agent.send(event("big", "step_complete", duration_ms=1e25))
            agent.send(event("big", "tool:end", call={"id": "t", "name": "x"}, duration_ms=1e25))
            ask = {"id": 7, "name": "write_file", "arguments": {}}
            agent.send(
                event("big", "permission_required", channel="control", call=ask, timeout_ms=1e20)
            )
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            wait_for(
                lambda: get(server.http_url, "/v1/dashboard/requests?status=pending"),
                lambda d: d["pending"] == 1,
            )
        for path in (
            "overview",
            "metrics/tokens",
            "metrics/costs",
            "metrics/performance",
            "insights",
            "agents",
            "agents/big",
        ):
            status, body = call(server.http_url, f"/v1/dashboard/{path}")
            assert status == 200, (path, body)
        tokens = get(server.http_url, "/v1/dashboard/agents/big")["token_usage"]["input"]
        assert tokens == 4 * 10_000_000_000  # each report bounded at ten billion
        server.restart()
        assert get(server.http_url, "/v1/dashboard/agents/big")["token_usage"]["input"] == tokens
        assert get(server.http_url, "/v1/dashboard/requests?status=pending")["pending"] == 1
        status, body = call(server.http_url, "/v1/dashboard/events?start=%C2%B2")  # "²"
        assert status == 400, body
    finally:
        server.stop()


def test_lone_surrogate_from_a_javascript_client_is_stored_as_replacement(
    studio: StudioProcess,
) -> None:
    """`JSON.stringify` of chunks cut inside an emoji: each frame was refused, events lost."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("js"))
        agent.send_raw('{"type":"event","agent_id":"js","event":{"delta":"Hello \\ud83d"}}')
        batch = '{"type":"event","agent_id":"js","event":{"delta":"\\ude00 world"}}'
        agent.send_raw('{"type":"batch","messages":[' + batch + "]}")
        assert agent.request({"type": "ping"}) == {"type": "pong"}  # no error before it
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 2)
    assert [e["event"]["delta"] for e in stored] == ["Hello \ufffd", "\ufffd world"]


def test_flat_messages_with_a_null_payload_are_flat(studio: StudioProcess) -> None:
    """Clients that write every field of a struct (Go without omitempty, Jackson) send
    `"payload": null`: each message was read as the envelope and refused."""
    with RawAgent(studio.agent_url) as agent:
        reply = agent.request({**register("go-agent"), "payload": None})
        assert (reply["type"], reply["agent_id"]) == ("registered", "go-agent")
        assert "payload" not in reply  # answered in the client's (flat) shape
        agent.send({**event("go-agent", "text_chunk", delta="hi"), "payload": None})
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    stored = wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)
    assert stored[0]["agent_id"] == "go-agent"


@pytest.mark.parametrize("seq", [0, -1, "7", 1.5])
def test_seq_of_a_client_that_does_not_number_its_messages_is_ignored(
    studio: StudioProcess, seq: object
) -> None:
    """`seq` is ours, opt-in: a Go client's `seq: 0` (a zero value) lost every message."""
    with RawAgent(studio.agent_url) as agent:
        assert agent.request({**register("plain"), "seq": seq})["type"] == "registered"
        agent.send({**event("plain", "text_chunk", delta="kept"), "seq": seq})
        assert agent.request({"type": "ping", "seq": seq}) == {"type": "pong"}
    wait_for(lambda: events(studio.http_url), lambda e: len(e) == 1)


def test_bad_seq_of_a_numbering_client_gets_invalid_field(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        reply = agent.request({**register("numbered"), "producer_id": "p-1"})
        assert reply["type"] == "registered"
        reply = agent.request({"type": "ping", "seq": -1})
        assert (reply["type"], reply["code"], reply["field"]) == ("error", "invalid_field", "seq")
        assert agent.request({"type": "ping"}) == {"type": "pong"}


def test_token_counts_written_as_strings_are_counted(studio: StudioProcess) -> None:
    """protobuf's JSON writes an int64 as a string: "100" was counted as 0 tokens."""
    with RawAgent(studio.agent_url) as agent:
        agent.request(register("proto", model="gpt-4o"))
        agent.send(event("proto", "token_usage", input_tokens="100", output_tokens="20"))
        agent.send(event("proto", "token_usage", input_tokens="-5", output_tokens="1e3"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
    usage = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/metrics/tokens?period=1h"),
        lambda d: d["total"]["total"] >= 1120,
    )
    # "1e3" is a count written in exponent form; "-5" is none (counted as absent).
    assert (usage["total"]["input"], usage["total"]["output"]) == (100, 1020)
