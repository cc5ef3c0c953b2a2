"""Decoding client messages: both shapes, the user's exact examples, channels, ids and times."""

from __future__ import annotations

from typing import Any

import pytest

from aster_studio_sdk.protocol import (
    Batch,
    Channel,
    EndSession,
    Event,
    Ping,
    ProtocolError,
    Register,
    RegisterSession,
    SessionStatus,
    Shape,
    Unregister,
    decode,
    dumps,
    infer_channel,
    parse_timestamp_ms,
)
from tests.unit.protocol._helpers import decoded, frame, message

# 2024-01-01T12:00:00Z as epoch milliseconds.
NOON_2024_MS = 1_704_110_400_000

# ---- the user's document (remote-agent-integration.zh.md), verbatim ----

DOC_REGISTER: dict[str, Any] = {
    "type": "register",
    "agent": {
        "id": "agent-123",
        "name": "Writing Agent",
        "status": "ready",
        "model": "claude-3-5-sonnet",
        "capabilities": ["writing", "editing"],
    },
}
DOC_REGISTER_SESSION: dict[str, Any] = {
    "type": "register_session",
    "session": {
        "id": "session-456",
        "agent_id": "agent-123",
        "created_at": "2024-01-01T12:00:00Z",
    },
}
DOC_EVENT: dict[str, Any] = {
    "type": "event",
    "agent_id": "agent-123",
    "event": {
        "channel": "monitor",
        "event_type": "token_usage",
        "input_tokens": 100,
        "output_tokens": 50,
    },
}
DOC_PING: dict[str, Any] = {"type": "ping"}
# The Go client example registers like this, then wraps each SendEvent(...) map in an event.
DOC_GO_REGISTER: dict[str, Any] = {
    "type": "register",
    "agent": {"id": "agent-123", "name": "My Agent", "status": "ready"},
}
DOC_GO_EVENTS: list[dict[str, Any]] = [
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

# ---- the envelope shape the original Go server reads (DASHBOARD-API 4.15) ----

ENV_REGISTER: dict[str, Any] = {
    "type": "register",
    "payload": {"agent_id": "a1", "template_id": "writer-v1", "metadata": {"name": "writer"}},
}
ENV_REGISTER_SESSION: dict[str, Any] = {
    "type": "register_session",
    "payload": {
        "session_id": "s-01",
        "agent_id": "a1",
        "status": "active",
        "message_count": 0,
        "metadata": {"topic": "essay"},
    },
}
ENV_EVENT_INNER: dict[str, Any] = {
    "channel": "monitor",
    "event_type": "token_usage",
    "input_tokens": 100,
    "output_tokens": 50,
    "total_tokens": 150,
}
ENV_EVENT: dict[str, Any] = {
    "type": "event",
    "payload": {
        "agent_id": "a1",
        "envelope": {
            "cursor": 7,
            "bookmark": {"cursor": 7, "timestamp": "2024-01-01T12:00:00Z"},
            "event": ENV_EVENT_INNER,
        },
    },
}
ENV_UNREGISTER: dict[str, Any] = {"type": "unregister", "payload": {"agent_id": "a1"}}
ENV_PING: dict[str, Any] = {"type": "ping", "payload": None}


def event_of(event: dict[str, Any], **top: Any) -> Event:
    """Decode a flat event message for agent `a` carrying `event`."""
    result = message({"type": "event", "agent_id": "a", "event": event, **top})
    assert isinstance(result, Event)
    return result


# ---- register ----


def test_document_register_decodes_to_every_field() -> None:
    assert message(DOC_REGISTER) == Register(
        agent_id="agent-123",
        name="Writing Agent",
        status="ready",
        model="claude-3-5-sonnet",
        capabilities=("writing", "editing"),
    )


def test_document_register_is_flat() -> None:
    assert decoded(DOC_REGISTER).shape is Shape.FLAT


def test_go_client_register_decodes() -> None:
    assert message(DOC_GO_REGISTER) == Register(
        agent_id="agent-123", name="My Agent", status="ready"
    )


def test_flat_register_accepts_agent_id_key_inside_agent() -> None:
    result = message({"type": "register", "agent": {"agent_id": "a1"}})
    assert isinstance(result, Register)
    assert result.agent_id == "a1"


def test_flat_register_accepts_numeric_id_as_text() -> None:
    result = message({"type": "register", "agent": {"id": 42}})
    assert isinstance(result, Register)
    assert result.agent_id == "42"


def test_envelope_register_decodes_agent_template_and_metadata() -> None:
    assert message(ENV_REGISTER) == Register(
        agent_id="a1", name="writer", template_id="writer-v1", metadata={"name": "writer"}
    )


def test_envelope_register_is_envelope_shaped() -> None:
    assert decoded(ENV_REGISTER).shape is Shape.ENVELOPE


def test_register_name_falls_back_to_metadata_name() -> None:
    result = message({"type": "register", "agent": {"id": "a", "metadata": {"name": "meta"}}})
    assert isinstance(result, Register)
    assert result.name == "meta"


def test_envelope_register_takes_its_model_from_metadata() -> None:
    """The envelope's register has no `model` field: without it the usage went unpriced."""
    metadata = {"name": "writer", "model": "claude-3-5-sonnet"}
    result = message({"type": "register", "payload": {"agent_id": "a1", "metadata": metadata}})
    assert isinstance(result, Register) and result.model == "claude-3-5-sonnet"
    explicit = {"id": "a", "model": "gpt-4o", "metadata": {"model": "other"}}
    result = message({"type": "register", "agent": explicit})
    assert isinstance(result, Register) and result.model == "gpt-4o"


def test_register_explicit_name_beats_metadata_name() -> None:
    body = {"id": "a", "name": "explicit", "metadata": {"name": "meta"}}
    result = message({"type": "register", "agent": body})
    assert isinstance(result, Register)
    assert result.name == "explicit"


def test_register_without_producer_id_has_none() -> None:
    result = message(DOC_REGISTER)
    assert isinstance(result, Register)
    assert result.producer_id is None


def test_flat_register_reads_top_level_producer_id() -> None:
    result = message({**DOC_REGISTER, "producer_id": "p-1"})
    assert isinstance(result, Register)
    assert result.producer_id == "p-1"


def test_envelope_register_reads_top_level_producer_id() -> None:
    result = message({**ENV_REGISTER, "producer_id": "p-1"})
    assert isinstance(result, Register)
    assert result.producer_id == "p-1"


def test_envelope_register_reads_producer_id_inside_payload() -> None:
    payload = {**ENV_REGISTER["payload"], "producer_id": "p-2"}
    result = message({"type": "register", "payload": payload})
    assert isinstance(result, Register)
    assert result.producer_id == "p-2"


def test_top_level_producer_id_beats_the_one_in_payload() -> None:
    payload = {**ENV_REGISTER["payload"], "producer_id": "inner"}
    result = message({"type": "register", "payload": payload, "producer_id": "outer"})
    assert isinstance(result, Register)
    assert result.producer_id == "outer"


def test_register_carries_seq() -> None:
    result = message({**DOC_REGISTER, "seq": 3})
    assert isinstance(result, Register)
    assert result.seq == 3


# ---- register_session ----


def test_document_register_session_decodes_with_created_at_in_ms() -> None:
    assert message(DOC_REGISTER_SESSION) == RegisterSession(
        session_id="session-456", agent_id="agent-123", created_at_ms=NOON_2024_MS
    )


def test_envelope_register_session_decodes() -> None:
    # The Go client's message_count is kept with the metadata (the session views read it).
    assert message(ENV_REGISTER_SESSION) == RegisterSession(
        session_id="s-01",
        agent_id="a1",
        status="active",
        metadata={"topic": "essay", "message_count": 0},
    )


def test_envelope_register_session_is_envelope_shaped() -> None:
    assert decoded(ENV_REGISTER_SESSION).shape is Shape.ENVELOPE


def test_register_session_defaults_to_active() -> None:
    result = message({"type": "register_session", "session": {"id": "s", "agent_id": "a"}})
    assert isinstance(result, RegisterSession)
    assert result.status == SessionStatus.ACTIVE


def test_flat_register_session_takes_agent_id_beside_session() -> None:
    result = message({"type": "register_session", "agent_id": "a", "session": {"id": "s"}})
    assert result == RegisterSession(session_id="s", agent_id="a")


def test_flat_register_session_accepts_session_id_key() -> None:
    result = message({"type": "register_session", "session": {"session_id": "s", "agent_id": "a"}})
    assert result == RegisterSession(session_id="s", agent_id="a")


# ---- event ----


def test_document_event_decodes_to_monitor_token_usage() -> None:
    assert message(DOC_EVENT) == Event(
        agent_id="agent-123",
        channel=Channel.MONITOR,
        event_type="token_usage",
        event=DOC_EVENT["event"],
    )


@pytest.mark.parametrize(
    ("event", "channel", "event_type"),
    [
        (DOC_GO_EVENTS[0], Channel.MONITOR, "token_usage"),
        (DOC_GO_EVENTS[1], Channel.MONITOR, "state_changed"),
        (DOC_GO_EVENTS[2], Channel.MONITOR, "error"),
        (DOC_GO_EVENTS[3], Channel.PROGRESS, "text_chunk"),
    ],
    ids=["token_usage", "state_changed", "error", "text_chunk"],
)
def test_go_client_events_decode_to_channel_and_type(
    event: dict[str, Any], channel: Channel, event_type: str
) -> None:
    result = event_of(event)
    assert (result.channel, result.event_type) == (channel, event_type)


def test_event_keeps_every_field_as_sent() -> None:
    assert event_of(DOC_GO_EVENTS[2]).event == DOC_GO_EVENTS[2]


def test_envelope_event_reads_the_event_inside_envelope() -> None:
    assert message(ENV_EVENT) == Event(
        agent_id="a1",
        channel=Channel.MONITOR,
        event_type="token_usage",
        event=ENV_EVENT_INNER,
    )


def test_envelope_event_is_envelope_shaped() -> None:
    assert decoded(ENV_EVENT).shape is Shape.ENVELOPE


def test_envelope_event_accepts_event_directly_in_payload() -> None:
    result = message({"type": "event", "payload": {"agent_id": "a1", "event": {"delta": "x"}}})
    assert isinstance(result, Event)
    assert result.event == {"delta": "x"}


def test_envelope_event_reads_session_id_in_payload() -> None:
    payload = {**ENV_EVENT["payload"], "session_id": "s-01"}
    result = message({"type": "event", "payload": payload})
    assert isinstance(result, Event)
    assert result.session_id == "s-01"


def test_event_carries_seq() -> None:
    assert event_of({"delta": "x"}, seq=12).seq == 12


def test_flat_event_accepts_numeric_agent_id_as_text() -> None:
    result = message({"type": "event", "agent_id": 42, "event": {"delta": "x"}})
    assert isinstance(result, Event)
    assert result.agent_id == "42"


def test_numeric_event_type_is_read_as_text() -> None:
    assert event_of({"event_type": 7}).event_type == "7"


def test_event_ids_and_type_at_their_limits_are_accepted() -> None:
    event = {"event_type": "t" * 128, "session_id": "s" * 256}
    assert message({"type": "event", "agent_id": "a" * 256, "event": event}) == Event(
        agent_id="a" * 256,
        channel=Channel.PROGRESS,
        event_type="t" * 128,
        event=event,
        session_id="s" * 256,
    )


# ---- channel ----


@pytest.mark.parametrize(
    ("key", "channel"),
    [
        ("delta", Channel.PROGRESS),
        ("call", Channel.PROGRESS),
        ("text", Channel.PROGRESS),
        ("request_id", Channel.CONTROL),
        ("questions", Channel.CONTROL),
        ("approved", Channel.CONTROL),
        ("state", Channel.MONITOR),
        ("severity", Channel.MONITOR),
        ("anything_else", Channel.PROGRESS),
    ],
)
def test_channel_is_inferred_from_keys(key: str, channel: Channel) -> None:
    assert event_of({"event_type": "x", key: "v"}).channel is channel


def test_event_with_no_telling_keys_is_progress() -> None:
    assert event_of({}).channel is Channel.PROGRESS


@pytest.mark.parametrize("channel", list(Channel))
def test_explicit_channel_wins_over_keys(channel: Channel) -> None:
    keys = {"delta": "x", "request_id": "r", "state": "s"}
    assert event_of({"channel": channel.value, **keys}).channel is channel


def test_explicit_channel_is_case_insensitive() -> None:
    assert event_of({"channel": "MONITOR"}).channel is Channel.MONITOR


def test_unknown_channel_value_falls_back_to_inference() -> None:
    assert event_of({"channel": "telemetry", "severity": "warn"}).channel is Channel.MONITOR


def test_non_string_channel_falls_back_to_inference() -> None:
    assert event_of({"channel": 3, "questions": []}).channel is Channel.CONTROL


def test_progress_keys_are_checked_before_control_keys() -> None:
    assert infer_channel({"delta": "x", "request_id": "r"}) is Channel.PROGRESS


def test_control_keys_are_checked_before_monitor_keys() -> None:
    assert infer_channel({"approved": True, "state": "s"}) is Channel.CONTROL


# ---- event type ----


def test_event_type_names_the_event() -> None:
    assert event_of({"event_type": "text_chunk"}).event_type == "text_chunk"


def test_type_inside_event_names_it_when_event_type_is_absent() -> None:
    assert event_of({"type": "tool:start"}).event_type == "tool:start"


def test_event_type_beats_type_inside_event() -> None:
    assert event_of({"event_type": "a", "type": "b"}).event_type == "a"


def test_null_event_type_falls_back_to_type() -> None:
    assert event_of({"event_type": None, "type": "b"}).event_type == "b"


def test_event_without_any_type_is_unknown() -> None:
    assert event_of({"delta": "x"}).event_type == "unknown"


# ---- session id ----


def test_session_id_beside_agent_id_is_read() -> None:
    assert event_of({"delta": "x"}, session_id="s1").session_id == "s1"


def test_session_id_inside_event_is_read() -> None:
    assert event_of({"session_id": "s2"}).session_id == "s2"


def test_session_id_beside_agent_id_beats_the_one_inside_event() -> None:
    assert event_of({"session_id": "inner"}, session_id="outer").session_id == "outer"


def test_event_without_session_id_has_none() -> None:
    assert event_of({"delta": "x"}).session_id is None


# ---- client timestamps ----


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-01-01T12:00:00Z", NOON_2024_MS),
        ("2024-01-01T12:00:00+00:00", NOON_2024_MS),
        ("2024-01-01T20:00:00+08:00", NOON_2024_MS),
        ("2024-01-01T12:00:00.250Z", NOON_2024_MS + 250),
        ("2024-01-01T12:00:00", NOON_2024_MS),  # no zone: UTC, as the API reads times
        ("9999-12-31T23:59:59.999Z", 253_402_300_799_999),
        (1_704_110_400, NOON_2024_MS),
        (1_704_110_400.5, NOON_2024_MS + 500),
        (NOON_2024_MS, NOON_2024_MS),
        (float(NOON_2024_MS), NOON_2024_MS),
        ("2024-01-01t12:00:00z", NOON_2024_MS),  # RFC 3339 allows lower case
        ("1704110400", NOON_2024_MS),  # an int64 as protobuf's JSON writes it
        (str(NOON_2024_MS), NOON_2024_MS),
    ],
    ids=[
        "iso-z",
        "iso-utc",
        "iso-offset",
        "iso-fraction",
        "iso-no-zone",
        "iso-year-9999",
        "unix-s",
        "unix-s-float",
        "ms",
        "ms-float",
        "iso-lower-case",
        "unix-s-string",
        "ms-string",
    ],
)
def test_client_timestamp_is_read_as_epoch_ms(value: object, expected: int) -> None:
    assert parse_timestamp_ms(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        None,
        True,
        False,
        0,
        -5,
        float("nan"),
        float("inf"),
        float("-inf"),
        1e20,
        "",
        "yesterday",
        "2024-13-45T99:00:00Z",
        "9999-12-31T23:59:59-12:00",  # year 10000 in UTC
        "0001-01-01T00:00:00Z",  # Go's zero time
        "1969-12-31T23:59:59Z",
        "2024-01-01T12:00:00Z" + " " * 64,
        [],
        {},
        "0",
        "9" * 30,
    ],
    ids=[
        "none",
        "true",
        "false",
        "zero",
        "negative",
        "nan",
        "inf",
        "-inf",
        "far-future",
        "empty",
        "words",
        "impossible-date",
        "past-9999",
        "go-zero-time",
        "before-1970",
        "too-long",
        "list",
        "object",
        "zero-string",
        "huge-digits",
    ],
)
def test_garbage_client_timestamp_is_none(value: object) -> None:
    assert parse_timestamp_ms(value) is None


def test_event_timestamp_becomes_client_ts_ms() -> None:
    assert event_of({"timestamp": "2024-01-01T12:00:00Z"}).client_ts_ms == NOON_2024_MS


def test_event_garbage_timestamp_is_kept_but_not_read() -> None:
    result = event_of({"timestamp": "soon"})
    assert (result.client_ts_ms, result.event["timestamp"]) == (None, "soon")


# ---- ping, unregister, end_session, batch ----


def test_document_ping_decodes() -> None:
    assert message(DOC_PING) == Ping()


def test_envelope_ping_decodes_as_envelope() -> None:
    result = decoded(ENV_PING)
    assert (result.shape, result.message) == (Shape.ENVELOPE, Ping())


def test_ping_carries_seq() -> None:
    assert message({"type": "ping", "seq": 9}) == Ping(seq=9)


def test_flat_unregister_decodes() -> None:
    assert message({"type": "unregister", "agent_id": "a1"}) == Unregister(agent_id="a1")


def test_envelope_unregister_decodes() -> None:
    assert message(ENV_UNREGISTER) == Unregister(agent_id="a1")


@pytest.mark.parametrize("agent", [{"id": "a1"}, {"agent_id": "a1"}])
def test_unregister_naming_its_agent_as_register_does_decodes(agent: dict[str, str]) -> None:
    assert message({"type": "unregister", "agent": agent}) == Unregister(agent_id="a1")


def test_flat_message_with_null_payload_is_flat() -> None:
    """Clients that write every field of a struct send `"payload": null` beside the flat ones."""
    for doc in (DOC_REGISTER, DOC_REGISTER_SESSION, DOC_EVENT):
        result = decoded({**doc, "payload": None})
        assert result.shape is Shape.FLAT
        assert result.message == message(doc)


def test_envelope_ping_with_null_payload_is_envelope() -> None:
    assert decoded({"type": "ping", "payload": None}).shape is Shape.ENVELOPE


def test_flat_end_session_decodes_with_status() -> None:
    msg = {"type": "end_session", "session_id": "s", "agent_id": "a", "status": "interrupted"}
    assert message(msg) == EndSession(session_id="s", agent_id="a", status="interrupted")


def test_end_session_defaults_to_completed() -> None:
    result = message({"type": "end_session", "session_id": "s"})
    assert result == EndSession(session_id="s", status=SessionStatus.COMPLETED)


def test_end_session_accepts_a_session_object() -> None:
    msg = {"type": "end_session", "session": {"id": "s", "status": "failed"}, "agent_id": "a"}
    assert message(msg) == EndSession(session_id="s", agent_id="a", status="failed")


def test_envelope_end_session_decodes() -> None:
    msg = {"type": "end_session", "payload": {"session_id": "s-01", "status": "failed"}}
    assert message(msg) == EndSession(session_id="s-01", status="failed")


def test_flat_batch_decodes_its_items_in_order() -> None:
    batch = {"type": "batch", "messages": [DOC_REGISTER, DOC_REGISTER_SESSION, DOC_EVENT, DOC_PING]}
    result = message(batch)
    assert isinstance(result, Batch)
    assert [type(item) for item in result.items] == [Register, RegisterSession, Event, Ping]


def test_envelope_batch_reads_messages_in_payload() -> None:
    batch = {"type": "batch", "payload": {"messages": [ENV_REGISTER, ENV_EVENT, ENV_UNREGISTER]}}
    result = decoded(batch)
    assert result.shape is Shape.ENVELOPE
    assert isinstance(result.message, Batch)
    assert [type(item) for item in result.message.items] == [Register, Event, Unregister]


def test_batch_mixes_shapes_per_item() -> None:
    result = message({"type": "batch", "messages": [DOC_EVENT, ENV_EVENT]})
    assert isinstance(result, Batch)
    assert [item.agent_id for item in result.items if isinstance(item, Event)] == [
        "agent-123",
        "a1",
    ]


def test_batch_items_keep_their_own_seq() -> None:
    items = [{**DOC_PING, "seq": 1}, {**DOC_EVENT, "seq": 2}]
    result = message({"type": "batch", "messages": items})
    assert isinstance(result, Batch)
    assert [item.seq for item in result.items] == [1, 2]


def test_empty_batch_is_accepted() -> None:
    assert message({"type": "batch", "messages": []}) == Batch(items=())


def test_batch_with_some_bad_items_keeps_the_good_ones() -> None:
    bad = {"type": "event", "event": {"delta": "x"}}
    result = message({"type": "batch", "messages": [DOC_EVENT, bad, DOC_PING]})
    assert isinstance(result, Batch)
    assert [type(item) for item in result.items] == [Event, ProtocolError, Ping]


# ---- frames as bytes ----


def test_utf8_bytes_decode_like_text() -> None:
    assert decode(frame(DOC_REGISTER).encode()) == decode(frame(DOC_REGISTER))


def test_non_ascii_text_survives_decoding() -> None:
    result = event_of({"delta": "你好, 世界"})
    assert result.event["delta"] == "你好, 世界"


def test_non_object_frame_has_no_shape() -> None:
    # Nothing in a non-object frame tells its shape, so it must not fix the reply shape.
    assert decoded([DOC_PING]).shape is None


# ---- integers past 64 bits: JSON has no limit, the fast codec has ----


def _event_text(event: str) -> str:
    return '{"type":"event","agent_id":"a","event":' + event + "}"


def test_an_integer_past_64_bits_beside_a_lone_surrogate_is_decoded_whole() -> None:
    msg = decode(_event_text('{"n":' + str(2**64) + ',"s":"\\ud800"}')).message
    assert isinstance(msg, Event) and msg.event == {"n": 2**64, "s": "\ufffd"}


def test_dumps_writes_an_integer_past_64_bits() -> None:
    assert dumps({"n": 2**70, "s": "é"}) == b'{"n":1180591620717411303424,"s":"\xc3\xa9"}'
