"""Protocol errors: every code the codec produces, with the field at fault, seq and index."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from aster_studio_sdk.protocol import (
    DEFAULT_LIMITS,
    Batch,
    ErrorCode,
    Event,
    Limits,
    Ping,
    ProtocolError,
    binary_frame_error,
    decode,
    dumps,
    error_payload,
)
from tests.unit.protocol._helpers import decoded, error, frame, message

AGENT = {"type": "register", "agent": {"id": "a"}}
EVENT = {"type": "event", "agent_id": "a", "event": {"delta": "x"}}


def nested(depth: int) -> Any:
    """Return an array nested `depth` levels deep."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def frame_error(data: str | bytes) -> ProtocolError:
    result = decode(data).message
    assert isinstance(result, ProtocolError), result
    return result


# ---- frame-level errors ----


def test_binary_frame_error_has_its_code() -> None:
    assert binary_frame_error().code is ErrorCode.BINARY_FRAME


def test_binary_frame_error_names_no_field() -> None:
    assert binary_frame_error().field is None


def test_invalid_utf8_bytes_are_invalid_utf8() -> None:
    assert frame_error(b'{"type":"ping","x":"\xff\xfe"}').code is ErrorCode.INVALID_UTF8


@pytest.mark.parametrize("text", ["", "{", "{'type': 'ping'}", "ping", '{"type":"ping"} x', "NaN"])
def test_text_that_is_not_json_is_invalid_json(text: str) -> None:
    assert frame_error(text).code is ErrorCode.INVALID_JSON


def test_invalid_json_frame_has_no_shape() -> None:
    assert decode("{").shape is None


def test_json_nested_past_the_parser_limit_is_invalid_json() -> None:
    assert frame_error("[" * 5000 + "]" * 5000).code is ErrorCode.INVALID_JSON


def test_event_nested_past_max_depth_is_invalid_json() -> None:
    # message (1) > event (2) > array levels: one level too many.
    event = {"type": "event", "agent_id": "a", "event": {"x": nested(DEFAULT_LIMITS.max_depth - 1)}}
    assert error(event).code is ErrorCode.INVALID_JSON


def test_event_nested_to_max_depth_is_accepted() -> None:
    event = {"type": "event", "agent_id": "a", "event": {"x": nested(DEFAULT_LIMITS.max_depth - 2)}}
    assert isinstance(message(event), Event)


def test_accepted_deepest_event_can_be_encoded_again() -> None:
    # What the codec accepts must be storable: its own dumps() must not fail on it.
    event = {"type": "event", "agent_id": "a", "event": {"x": nested(DEFAULT_LIMITS.max_depth - 2)}}
    result = message(event)
    assert isinstance(result, Event)
    assert dumps(result.event).startswith(b'{"x":')


def test_max_depth_applies_to_custom_limits() -> None:
    result = decode(frame({**EVENT, "event": {"x": [[1]]}}), Limits(max_depth=3)).message
    assert isinstance(result, ProtocolError)
    assert result.code is ErrorCode.INVALID_JSON


def test_batch_item_nested_past_max_depth_is_invalid_json() -> None:
    # batch (1) > messages (2) > message (3) > event (4) > array levels: one level too many.
    deep = {**EVENT, "event": {"x": nested(DEFAULT_LIMITS.max_depth - 3)}}
    batch = {"type": "batch", "messages": [EVENT] * 200 + [deep] + [EVENT] * 200}
    assert error(batch).code is ErrorCode.INVALID_JSON


def test_batch_item_nested_to_max_depth_is_accepted() -> None:
    deep = {**EVENT, "event": {"x": nested(DEFAULT_LIMITS.max_depth - 4)}}
    result = message({"type": "batch", "messages": [EVENT] * 200 + [deep] + [EVENT] * 200})
    assert isinstance(result, Batch)
    assert isinstance(result.items[200], Event)


def test_brackets_inside_strings_do_not_count_as_depth() -> None:
    result = decode(frame({**EVENT, "event": {"delta": "[" * 500}}), Limits(max_depth=3))
    assert isinstance(result.message, Event)


@pytest.mark.parametrize("value", [[], [AGENT], 1, 1.5, "register", None, True])
def test_json_that_is_not_an_object_is_not_an_object(value: Any) -> None:
    assert error(value).code is ErrorCode.NOT_AN_OBJECT


# ---- type ----


def test_message_without_type_is_missing_type() -> None:
    assert error({"agent": {"id": "a"}}).code is ErrorCode.MISSING_TYPE


def test_missing_type_names_the_field() -> None:
    assert error({"agent_id": "a"}).field == "type"


def test_null_type_is_missing_type() -> None:
    assert error({"type": None}).code is ErrorCode.MISSING_TYPE


@pytest.mark.parametrize("kind", ["dance", "", "PING", "pong", "ack", "registered", "control"])
def test_type_that_is_not_a_client_type_is_unknown_type(kind: str) -> None:
    assert error({"type": kind}).code is ErrorCode.UNKNOWN_TYPE


def test_unknown_type_names_the_field() -> None:
    assert error({"type": "dance"}).field == "type"


def test_unknown_type_message_quotes_the_type() -> None:
    assert "'dance'" in error({"type": "dance"}).message


def test_unknown_type_message_shortens_a_huge_type() -> None:
    assert len(error({"type": "x" * 10_000}).message) < 200


@pytest.mark.parametrize("kind", [1, ["ping"], {"t": "ping"}, True])
def test_type_that_is_not_a_string_is_invalid_field(kind: Any) -> None:
    err = error({"type": kind})
    assert (err.code, err.field) == (ErrorCode.INVALID_FIELD, "type")


# ---- missing_field ----


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"type": "register"}, "agent"),
        ({"type": "register", "agent": {}}, "agent.id"),
        ({"type": "register", "agent": {"id": ""}}, "agent.id"),
        ({"type": "register", "agent": {"id": None, "name": "n"}}, "agent.id"),
        ({"type": "register", "payload": None}, "payload"),
        ({"type": "register", "payload": {"template_id": "t"}}, "payload.agent_id"),
        ({"type": "register_session"}, "session"),
        ({"type": "register_session", "session": {"agent_id": "a"}}, "session.id"),
        ({"type": "register_session", "session": {"id": "s"}}, "agent_id"),
        ({"type": "register_session", "payload": {"agent_id": "a"}}, "payload.session_id"),
        ({"type": "register_session", "payload": {"session_id": "s"}}, "agent_id"),
        ({"type": "event", "agent_id": "a"}, "event"),
        ({"type": "event", "event": {"delta": "x"}}, "agent_id"),
        ({"type": "event", "agent_id": "", "event": {}}, "agent_id"),
        ({"type": "event", "payload": {"agent_id": "a"}}, "payload.envelope.event"),
        ({"type": "event", "payload": {"agent_id": "a", "envelope": {}}}, "payload.envelope.event"),
        (
            {"type": "event", "payload": {"agent_id": "a", "envelope": {"event": None}}},
            "payload.envelope.event",
        ),
        ({"type": "event", "payload": {"envelope": {"event": {}}}}, "payload.agent_id"),
        ({"type": "unregister"}, "agent_id"),
        ({"type": "unregister", "payload": {}}, "payload.agent_id"),
        ({"type": "end_session", "agent_id": "a"}, "session_id"),
        ({"type": "end_session", "session": {"status": "failed"}}, "session.session_id"),
        ({"type": "end_session", "payload": {"status": "failed"}}, "payload.session_id"),
        ({"type": "batch"}, "messages"),
        ({"type": "batch", "payload": {}}, "messages"),
    ],
)
def test_missing_required_field_is_named(msg: dict[str, Any], field: str) -> None:
    err = error(msg)
    assert (err.code, err.field) == (ErrorCode.MISSING_FIELD, field)


def test_register_without_agent_id_names_the_field() -> None:
    err = error({"type": "register", "agent": {"name": "Writing Agent"}})
    assert err.field == "agent.id"


def test_missing_field_message_names_the_field() -> None:
    assert "'agent.id'" in error({"type": "register", "agent": {}}).message


# ---- invalid_field ----


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"type": "register", "agent": "a"}, "agent"),
        ({"type": "register", "agent": ["a"]}, "agent"),
        ({"type": "register", "agent": {"id": ["a"]}}, "agent.id"),
        ({"type": "register", "agent": {"id": True}}, "agent.id"),
        ({"type": "register", "agent": {"id": 1.5}}, "agent.id"),
        ({"type": "register", "agent": {"id": "a", "name": {}}}, "agent.name"),
        ({"type": "register", "agent": {"id": "a", "capabilities": "x"}}, "agent.capabilities"),
        ({"type": "register", "agent": {"id": "a", "capabilities": [1]}}, "agent.capabilities"),
        ({"type": "register", "agent": {"id": "a", "metadata": []}}, "agent.metadata"),
        ({"type": "register", "payload": {"agent_id": "a", "metadata": 1}}, "payload.metadata"),
        ({"type": "register", "payload": "a"}, "payload"),
        ({**AGENT, "producer_id": []}, "producer_id"),
        (
            {"type": "register", "payload": {"agent_id": "a", "producer_id": {}}},
            "payload.producer_id",
        ),
        ({"type": "register_session", "session": "s"}, "session"),
        (
            {"type": "register_session", "session": {"id": "s", "agent_id": "a", "metadata": 1}},
            "session.metadata",
        ),
        ({"type": "event", "agent_id": "a", "event": "x"}, "event"),
        ({"type": "event", "agent_id": "a", "event": [1]}, "event"),
        ({"type": "event", "agent_id": {}, "event": {}}, "agent_id"),
        ({"type": "event", "agent_id": "a", "session_id": [], "event": {}}, "session_id"),
        ({"type": "event", "agent_id": "a", "event": {"session_id": {}}}, "event.session_id"),
        ({"type": "event", "agent_id": "a", "event": {"event_type": 1.5}}, "event.event_type"),
        ({"type": "event", "agent_id": "a", "event": {"type": ["t"]}}, "event.type"),
        ({"type": "unregister", "agent_id": []}, "agent_id"),
        ({"type": "end_session", "session_id": "s", "status": "done"}, "status"),
        ({"type": "end_session", "session_id": "s", "status": "active"}, "status"),
        ({"type": "end_session", "payload": {"session_id": "s", "status": 1}}, "payload.status"),
        ({"type": "batch", "messages": {"0": AGENT}}, "messages"),
        ({"type": "batch", "messages": "x"}, "messages"),
    ],
)
def test_field_of_wrong_type_or_value_is_named(msg: dict[str, Any], field: str) -> None:
    err = error(msg)
    assert (err.code, err.field) == (ErrorCode.INVALID_FIELD, field)


@pytest.mark.parametrize("seq", [0, -1, 1.5, "1", True, [1], 2**63])
def test_seq_that_is_not_a_positive_integer_is_invalid_field(seq: Any) -> None:
    err = error({"type": "ping", "seq": seq})
    assert (err.code, err.field) == (ErrorCode.INVALID_FIELD, "seq")


def test_largest_seq_is_accepted() -> None:
    assert message({"type": "ping", "seq": 2**63 - 1}) == Ping(seq=2**63 - 1)


# ---- string_too_long ----


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        ({"type": "register", "agent": {"id": "a" * 257}}, "agent.id"),
        ({"type": "register", "payload": {"agent_id": "a" * 257}}, "payload.agent_id"),
        ({"type": "register", "agent": {"id": "a", "name": "n" * 1025}}, "agent.name"),
        ({"type": "register", "agent": {"id": "a", "status": "s" * 129}}, "agent.status"),
        (
            {"type": "register", "agent": {"id": "a", "capabilities": ["c" * 1025]}},
            "agent.capabilities",
        ),
        ({**AGENT, "producer_id": "p" * 257}, "producer_id"),
        ({"type": "register_session", "session": {"id": "s" * 257, "agent_id": "a"}}, "session.id"),
        ({"type": "event", "agent_id": "a" * 257, "event": {}}, "agent_id"),
        ({"type": "event", "agent_id": "a", "session_id": "s" * 257, "event": {}}, "session_id"),
        (
            {"type": "event", "agent_id": "a", "event": {"session_id": "s" * 257}},
            "event.session_id",
        ),
        (
            {"type": "event", "agent_id": "a", "event": {"event_type": "t" * 129}},
            "event.event_type",
        ),
        ({"type": "unregister", "agent_id": "a" * 257}, "agent_id"),
        ({"type": "end_session", "session_id": "s" * 257}, "session_id"),
    ],
)
def test_string_over_its_limit_is_named(msg: dict[str, Any], field: str) -> None:
    err = error(msg)
    assert (err.code, err.field) == (ErrorCode.STRING_TOO_LONG, field)


def test_id_at_the_limit_is_accepted() -> None:
    assert not isinstance(
        decoded({"type": "register", "agent": {"id": "a" * 256}}).message, ProtocolError
    )


def test_string_limits_follow_custom_limits() -> None:
    result = decode(frame({"type": "unregister", "agent_id": "abcd"}), Limits(max_id_length=3))
    assert isinstance(result.message, ProtocolError)
    assert result.message.code is ErrorCode.STRING_TOO_LONG


def test_string_too_long_message_gives_length_and_limit() -> None:
    assert "257" in error({"type": "unregister", "agent_id": "a" * 257}).message


# ---- batch limits ----


def test_batch_over_the_limit_is_batch_too_large() -> None:
    batch = {"type": "batch", "messages": [{"type": "ping"}] * 3}
    result = decode(frame(batch), Limits(max_batch_messages=2)).message
    assert isinstance(result, ProtocolError)
    assert (result.code, result.field) == (ErrorCode.BATCH_TOO_LARGE, "messages")


def test_default_batch_limit_rejects_one_more_than_ten_thousand() -> None:
    batch = {"type": "batch", "messages": [{"type": "ping"}] * 10_001}
    assert error(batch).code is ErrorCode.BATCH_TOO_LARGE


def test_default_batch_limit_accepts_ten_thousand() -> None:
    result = message({"type": "batch", "messages": [{"type": "ping"}] * 10_000})
    assert isinstance(result, Batch)
    assert len(result.items) == 10_000


def test_batch_inside_a_batch_is_nested_batch() -> None:
    result = message({"type": "batch", "messages": [{"type": "batch", "messages": []}]})
    assert isinstance(result, Batch)
    err = result.items[0]
    assert isinstance(err, ProtocolError)
    assert (err.code, err.field, err.index) == (ErrorCode.NESTED_BATCH, "type", 0)


def test_bad_batch_item_reports_its_index() -> None:
    bad = {"type": "event", "event": {"delta": "x"}}
    result = message({"type": "batch", "messages": [EVENT, EVENT, bad]})
    assert isinstance(result, Batch)
    err = result.items[2]
    assert isinstance(err, ProtocolError)
    assert (err.code, err.field, err.index) == (ErrorCode.MISSING_FIELD, "agent_id", 2)


def test_bad_batch_item_message_starts_with_its_position() -> None:
    result = message({"type": "batch", "messages": [EVENT, 7]})
    assert isinstance(result, Batch)
    err = result.items[1]
    assert isinstance(err, ProtocolError)
    assert err.message.startswith("messages[1]: ")


def test_non_object_batch_item_is_not_an_object_at_its_index() -> None:
    result = message({"type": "batch", "messages": ["x"]})
    assert isinstance(result, Batch)
    assert result.items[0] == ProtocolError(
        ErrorCode.NOT_AN_OBJECT,
        "messages[0]: a message must be a JSON object, got a string",
        index=0,
    )


def test_good_batch_items_have_no_index() -> None:
    result = message({"type": "batch", "messages": [EVENT]})
    assert isinstance(result, Batch)
    assert isinstance(result.items[0], Event)


# ---- seq on errors ----


def test_seq_is_carried_onto_the_error() -> None:
    assert error({"type": "register", "agent": {}, "seq": 12}).seq == 12


def test_seq_is_carried_onto_an_unknown_type_error() -> None:
    assert error({"type": "dance", "seq": 4}).seq == 4


def test_seq_is_carried_onto_a_missing_type_error() -> None:
    assert error({"seq": 5}).seq == 5


def test_invalid_seq_is_not_carried() -> None:
    assert error({"type": "ping", "seq": -3}).seq is None


def test_bad_batch_item_carries_its_own_seq() -> None:
    bad = {"type": "event", "event": {}, "seq": 8}
    result = message({"type": "batch", "messages": [{**EVENT, "seq": 7}, bad]})
    assert isinstance(result, Batch)
    err = result.items[1]
    assert isinstance(err, ProtocolError)
    assert (err.seq, err.index) == (8, 1)


def test_batch_error_carries_the_batch_seq() -> None:
    assert error({"type": "batch", "seq": 3}).seq == 3


# ---- error_payload ----


def test_error_payload_has_code_message_field_seq_and_index() -> None:
    err = ProtocolError(ErrorCode.MISSING_FIELD, "missing", "agent.id", seq=12, index=3)
    assert error_payload(err) == {
        "code": "missing_field",
        "message": "missing",
        "field": "agent.id",
        "seq": 12,
        "index": 3,
    }


def test_error_payload_leaves_out_what_is_unknown() -> None:
    err = ProtocolError(ErrorCode.INVALID_JSON, "invalid JSON: x")
    assert error_payload(err) == {"code": "invalid_json", "message": "invalid JSON: x"}


def test_every_code_the_codec_produces_is_in_the_docs_table() -> None:
    docs = (Path(__file__).parents[3] / "docs" / "protocol.md").read_text(encoding="utf-8")
    server_only = {ErrorCode.UNKNOWN_SESSION, ErrorCode.INTERNAL_ERROR}
    missing = [
        c.value for c in ErrorCode if c not in server_only and f"| `{c.value}` |" not in docs
    ]
    assert missing == []


def test_register_metadata_nested_past_max_depth_is_invalid_json() -> None:
    agent = {"id": "a", "metadata": {"x": nested(DEFAULT_LIMITS.max_depth)}}
    assert error({"type": "register", "agent": agent}).code is ErrorCode.INVALID_JSON


@pytest.mark.parametrize("seq", [0, -1, 1.5, "1", True, [1], 2**63])
def test_seq_that_is_not_a_positive_integer_is_ignored_when_seq_is_not_checked(seq: Any) -> None:
    unnumbered = Limits(check_seq=False)
    assert decode(frame({"type": "ping", "seq": seq}), unnumbered).message == Ping(seq=None)
    result = decode(frame({**EVENT, "seq": seq}), unnumbered).message
    assert isinstance(result, Event) and result.seq is None


def test_valid_seq_is_kept_when_seq_is_not_checked() -> None:
    result = decode(frame({**EVENT, "seq": 7}), Limits(check_seq=False)).message
    assert isinstance(result, Event) and result.seq == 7


def test_lone_surrogate_is_read_as_replacement_character() -> None:
    # JSON.stringify of a string cut inside an emoji's surrogate pair.
    result = decode('{"type":"event","agent_id":"a","event":{"delta":"Hello \\ud83d"}}').message
    assert isinstance(result, Event)
    assert result.event["delta"] == "Hello \ufffd"
    assert dumps(result.event)  # storable: valid UTF-8


def test_lone_surrogate_in_a_key_and_a_batch_is_replaced() -> None:
    text = (
        '{"type":"batch","messages":[{"type":"event","agent_id":"a",'
        '"event":{"\\udc00k":["\\ude00 world"]}},{"type":"ping"}]}'
    )
    result = decode(text).message
    assert isinstance(result, Batch)
    first = result.items[0]
    assert isinstance(first, Event)
    assert first.event["\ufffdk"] == ["\ufffd world"]


def test_surrogate_pair_escapes_stay_one_character() -> None:
    result = decode('{"type":"event","agent_id":"a","event":{"delta":"\\ud83d\\ude00"}}').message
    assert isinstance(result, Event) and result.event["delta"] == "\U0001f600"


def test_lone_surrogate_in_text_that_is_not_json_is_invalid_json() -> None:
    assert frame_error('{"delta":"\\ud83d", oops}').code is ErrorCode.INVALID_JSON


def test_lone_surrogate_does_not_admit_nan() -> None:
    assert frame_error('{"type":"ping","x":"\\ud83d","y":NaN}').code is ErrorCode.INVALID_JSON


def test_lone_surrogate_nested_too_deeply_is_refused() -> None:
    deep = "[" * 200 + '"\\ud83d"' + "]" * 200
    err = frame_error('{"type":"event","agent_id":"a","event":{"x":' + deep + "}}")
    assert err.code is ErrorCode.INVALID_JSON
