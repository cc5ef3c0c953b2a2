"""Server -> client replies (encode_reply, decode_server) and the SDK's message builders."""

from __future__ import annotations

import json
from typing import Any

import pytest

from aster_studio_sdk.protocol import (
    Ack,
    Batch,
    Channel,
    Control,
    EndSession,
    ErrorCode,
    Event,
    MessageType,
    OtherServerMessage,
    Ping,
    ProtocolError,
    Register,
    Registered,
    RegisterSession,
    ServerError,
    Shape,
    batch_message,
    decode_server,
    encode_reply,
    end_session_message,
    error_payload,
    event_message,
    iter_messages,
    register_message,
    register_session_message,
)
from tests.unit.protocol._helpers import decoded, message

MISSING_ID = ProtocolError(
    ErrorCode.MISSING_FIELD, "missing required field 'agent.id'", "agent.id", seq=12
)


def reply(shape: Shape, mtype: MessageType, data: dict[str, Any] | None = None) -> Any:
    """Encode a reply and parse it back as plain JSON."""
    return json.loads(encode_reply(shape, mtype, data))


# ---- encode_reply ----


def test_flat_pong_is_exactly_the_documents_reply() -> None:
    assert reply(Shape.FLAT, MessageType.PONG) == {"type": "pong"}


def test_envelope_pong_has_null_payload() -> None:
    assert reply(Shape.ENVELOPE, MessageType.PONG) == {"type": "pong", "payload": None}


def test_flat_reply_puts_data_beside_type() -> None:
    assert reply(Shape.FLAT, MessageType.ACK, {"seq": 5}) == {"type": "ack", "seq": 5}


def test_envelope_reply_puts_data_in_payload() -> None:
    assert reply(Shape.ENVELOPE, MessageType.ACK, {"seq": 5}) == {
        "type": "ack",
        "payload": {"seq": 5},
    }


def test_flat_reply_starts_with_type() -> None:
    assert encode_reply(Shape.FLAT, MessageType.ACK, {"seq": 5}).startswith(b'{"type":"ack"')


def test_flat_error_reply_matches_the_documented_example() -> None:
    assert reply(Shape.FLAT, MessageType.ERROR, error_payload(MISSING_ID)) == {
        "type": "error",
        "code": "missing_field",
        "message": "missing required field 'agent.id'",
        "field": "agent.id",
        "seq": 12,
    }


def test_envelope_error_reply_has_top_level_message() -> None:
    body = error_payload(MISSING_ID)
    assert reply(Shape.ENVELOPE, MessageType.ERROR, body) == {
        "type": "error",
        "payload": body,
        "message": "missing required field 'agent.id'",
    }


def test_envelope_reply_other_than_error_has_no_top_level_message() -> None:
    data = {"agent_id": "a1", "message": "Agent registered successfully"}
    assert "message" not in reply(Shape.ENVELOPE, MessageType.REGISTERED, data)


def test_envelope_registered_reply_matches_the_go_server() -> None:
    data = {"agent_id": "a1", "message": "Agent registered successfully"}
    assert reply(Shape.ENVELOPE, MessageType.REGISTERED, data) == {
        "type": "registered",
        "payload": data,
    }


def test_reply_is_compact_utf8_json() -> None:
    encoded = encode_reply(Shape.FLAT, MessageType.ERROR, {"message": "无效"})
    assert encoded == '{"type":"error","message":"无效"}'.encode()


# ---- decode_server ----


@pytest.mark.parametrize("shape", list(Shape))
def test_ack_decodes_in_both_shapes(shape: Shape) -> None:
    assert decode_server(encode_reply(shape, MessageType.ACK, {"seq": 41})) == Ack(41)


def test_ack_without_integer_seq_is_unreadable() -> None:
    assert decode_server('{"type":"ack","seq":"41"}') is None


def test_ack_with_boolean_seq_is_unreadable() -> None:
    assert decode_server('{"type":"ack","seq":true}') is None


@pytest.mark.parametrize("shape", list(Shape))
def test_registered_decodes_last_seq_in_both_shapes(shape: Shape) -> None:
    data = {"agent_id": "a1", "last_seq": 17, "message": "Agent registered successfully"}
    assert decode_server(encode_reply(shape, MessageType.REGISTERED, data)) == Registered("a1", 17)


def test_registered_without_last_seq_has_none() -> None:
    frame = '{"type":"registered","payload":{"agent_id":"a1","message":"ok"}}'
    assert decode_server(frame) == Registered("a1", None)


def test_registered_with_zero_last_seq_keeps_zero() -> None:
    assert decode_server('{"type":"registered","agent_id":"a","last_seq":0}') == Registered("a", 0)


@pytest.mark.parametrize("shape", list(Shape))
def test_error_decodes_code_message_and_seq_in_both_shapes(shape: Shape) -> None:
    frame = encode_reply(shape, MessageType.ERROR, error_payload(MISSING_ID))
    assert decode_server(frame) == ServerError(
        "missing_field", "missing required field 'agent.id'", 12
    )


def test_go_server_error_without_seq_decodes() -> None:
    frame = (
        '{"type":"error","payload":{"code":"invalid_message","message":"Failed to parse message"}}'
    )
    assert decode_server(frame) == ServerError("invalid_message", "Failed to parse message", None)


def test_flat_control_decodes_event_type_and_data() -> None:
    frame = '{"type":"control","event_type":"permission_decided","call_id":"c1","decision":"allow"}'
    result = decode_server(frame)
    assert isinstance(result, Control)
    assert (result.event_type, result.data["call_id"], result.data["decision"]) == (
        "permission_decided",
        "c1",
        "allow",
    )


def test_envelope_control_data_is_the_payload() -> None:
    payload = {"event_type": "tool_control", "call_id": "c1", "action": "cancel"}
    assert decode_server(json.dumps({"type": "control", "payload": payload})) == Control(
        "tool_control", payload
    )


def test_control_without_event_type_has_empty_type() -> None:
    result = decode_server('{"type":"control","payload":{"request_id":"r"}}')
    assert isinstance(result, Control)
    assert result.event_type == ""


def test_connected_greeting_is_another_server_message() -> None:
    greeting = {"message": "Connected to Aster Studio Remote Agent Service"}
    frame = json.dumps({"type": "connected", "payload": greeting})
    assert decode_server(frame) == OtherServerMessage("connected", greeting)


@pytest.mark.parametrize("shape", list(Shape))
def test_pong_is_another_server_message(shape: Shape) -> None:
    result = decode_server(encode_reply(shape, MessageType.PONG))
    assert isinstance(result, OtherServerMessage)
    assert result.type == "pong"


def test_decode_server_reads_bytes() -> None:
    assert decode_server(b'{"type":"ack","seq":1}') == Ack(1)


@pytest.mark.parametrize(
    "frame",
    [b"\xff\xfe", "", "nope", "[]", "1", "null", "{}", '{"type":1}', '{"type":null}', '"ack"'],
)
def test_unreadable_server_frame_is_none(frame: str | bytes) -> None:
    assert decode_server(frame) is None


def test_server_frame_nested_past_the_interpreter_limit_is_none() -> None:
    # Parsable by orjson (under its depth limit) but too deep for str() of the value.
    frame = '{"type":"error","code":' + "[" * 1020 + "]" * 1020 + "}"
    assert decode_server(frame) is None


# ---- client builders ----


def test_register_message_is_the_documents_flat_shape() -> None:
    built = register_message("agent-123", name="Writing Agent", model="claude-3-5-sonnet")
    assert built == {
        "type": "register",
        "agent": {
            "id": "agent-123",
            "name": "Writing Agent",
            "status": "ready",
            "model": "claude-3-5-sonnet",
        },
    }


def test_register_message_round_trips() -> None:
    built = register_message(
        "a1",
        name="Writer",
        model="m",
        capabilities=["control", "writing"],
        metadata={"team": "x"},
        producer_id="p-1",
    )
    assert message(built) == Register(
        agent_id="a1",
        name="Writer",
        status="ready",
        model="m",
        capabilities=("control", "writing"),
        metadata={"team": "x"},
        producer_id="p-1",
    )


def test_register_message_without_status_round_trips() -> None:
    assert message(register_message("a1", status=None)) == Register(agent_id="a1")


def test_register_session_message_round_trips() -> None:
    built = register_session_message(
        "s1", "a1", created_at="2024-01-01T12:00:00Z", metadata={"k": 1}
    )
    assert message(built) == RegisterSession(
        session_id="s1", agent_id="a1", created_at_ms=1_704_110_400_000, metadata={"k": 1}
    )


def test_event_message_round_trips() -> None:
    event = {"channel": "progress", "event_type": "text_chunk", "delta": "Hi"}
    assert message(event_message("a1", event, session_id="s1")) == Event(
        agent_id="a1",
        channel=Channel.PROGRESS,
        event_type="text_chunk",
        event=event,
        session_id="s1",
    )


def test_event_message_without_session_round_trips() -> None:
    result = message(event_message("a1", {"state": "working"}))
    assert isinstance(result, Event)
    assert result.session_id is None


def test_end_session_message_round_trips() -> None:
    assert message(end_session_message("s1", "a1", "failed")) == EndSession(
        session_id="s1", agent_id="a1", status="failed"
    )


def test_batch_message_round_trips_with_item_seqs() -> None:
    items = [
        {**register_session_message("s1", "a1"), "seq": 1},
        {**event_message("a1", {"delta": "x"}), "seq": 2},
        {**end_session_message("s1", "a1"), "seq": 3},
    ]
    result = message(batch_message(items))
    assert isinstance(result, Batch)
    assert [(type(item), item.seq) for item in result.items] == [
        (RegisterSession, 1),
        (Event, 2),
        (EndSession, 3),
    ]


def test_batch_message_is_flat() -> None:
    assert decoded(batch_message([{"type": "ping"}])).shape is Shape.FLAT


def test_iter_messages_yields_a_batchs_items() -> None:
    result = message(batch_message([{"type": "ping"}, {"type": "ping", "seq": 2}]))
    assert isinstance(result, Batch)
    assert iter_messages(result) == (Ping(), Ping(seq=2))


def test_iter_messages_yields_a_single_message_alone() -> None:
    assert iter_messages(Ping(seq=1)) == (Ping(seq=1),)
