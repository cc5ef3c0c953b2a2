"""Hypothesis properties: the codec never raises, whatever a peer sends, and builders round-trip."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aster_studio_sdk.protocol import (
    CLIENT_TYPES,
    Batch,
    Decoded,
    ErrorCode,
    Event,
    MessageType,
    ProtocolError,
    Register,
    RegisterSession,
    ServerError,
    Shape,
    decode,
    decode_server,
    dumps,
    encode_reply,
    error_payload,
    event_message,
)

# Enough examples to reach every branch of the codec, few enough to keep the package under 20 s:
# flat inputs are cheap to generate, recursive JSON costs about ten times as much.
FUZZ = settings(max_examples=300, deadline=None)
STRUCTURED = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# orjson reads integers of up to 64 bits exactly; wider ones come back as floats.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5)
    ),
    max_leaves=15,
)

# Field names the codec reads, so that generated objects reach past the first check.
FIELD_NAMES = [
    "id", "agent_id", "session_id", "name", "status", "model", "template_id", "capabilities",
    "metadata", "producer_id", "created_at", "event", "envelope", "event_type", "type",
    "channel", "delta", "state", "request_id", "timestamp", "messages", "seq", "payload",
    "session", "agent", "code", "message", "last_seq",
]  # fmt: skip
# JSON punctuation and lone surrogates, so that random text sometimes parses or half-parses.
JSONISH = list('{}[]":,0 ') + ["\ud800", "\udfff", '"type"', '"ping"', "null"]
CLIENT_TYPE_NAMES = sorted(t.value for t in CLIENT_TYPES)
ALL_TYPE_NAMES = [t.value for t in MessageType]
fields = st.sampled_from(FIELD_NAMES)
plausible = st.recursive(
    scalars | st.sampled_from(ALL_TYPE_NAMES) | st.integers(min_value=1, max_value=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(fields, inner, max_size=6),
    max_leaves=15,
)


def with_type(names: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Objects with a `type` from `names` and plausible protocol fields."""
    return st.tuples(st.sampled_from(names), st.dictionaries(fields, plausible, max_size=6)).map(
        lambda pair: {**pair[1], "type": pair[0]}
    )


client_messages = with_type(CLIENT_TYPE_NAMES)
client_batches = st.lists(client_messages | plausible, max_size=6).map(
    lambda items: {"type": "batch", "messages": items}
)
server_messages = with_type(ALL_TYPE_NAMES)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes_decode_without_raising(data: bytes) -> None:
    assert isinstance(decode(data), Decoded)


@FUZZ
@given(st.lists(st.characters(exclude_categories=()) | st.sampled_from(JSONISH)).map("".join))
def test_any_text_decodes_without_raising(text: str) -> None:
    # Includes lone surrogates, which a str can hold but UTF-8 cannot.
    assert isinstance(decode(text), Decoded)


@STRUCTURED
@given(json_values)
def test_any_json_value_decodes_without_raising(value: Any) -> None:
    assert isinstance(decode(json.dumps(value)), Decoded)


@STRUCTURED
@given(client_messages)
def test_any_message_like_object_decodes_without_raising(value: dict[str, Any]) -> None:
    assert isinstance(decode(json.dumps(value)), Decoded)


@STRUCTURED
@given(client_batches)
def test_batch_errors_carry_their_position(value: dict[str, Any]) -> None:
    result = decode(json.dumps(value)).message
    assert isinstance(result, Batch)
    indexes = [item.index for item in result.items if isinstance(item, ProtocolError)]
    positions = [i for i, item in enumerate(result.items) if isinstance(item, ProtocolError)]
    assert indexes == positions


@STRUCTURED
@given(client_messages | client_batches)
def test_every_error_has_a_code_and_a_message(value: dict[str, Any]) -> None:
    result = decode(json.dumps(value)).message
    items = result.items if isinstance(result, Batch) else (result,)
    for item in items:
        if isinstance(item, ProtocolError):
            assert isinstance(item.code, ErrorCode)
            assert item.message


@STRUCTURED
@given(client_messages)
def test_accepted_free_form_values_encode_again(value: dict[str, Any]) -> None:
    result = decode(json.dumps(value)).message
    if isinstance(result, Event):
        dumps(result.event)
    elif isinstance(result, (Register, RegisterSession)):
        dumps(result.metadata)


@STRUCTURED
@given(client_messages | client_batches | json_values)
def test_error_replies_read_back_as_the_same_error(value: Any) -> None:
    result = decode(json.dumps(value))
    if isinstance(result.message, ProtocolError):
        err = result.message
        frame = encode_reply(result.shape or Shape.FLAT, MessageType.ERROR, error_payload(err))
        assert decode_server(frame) == ServerError(err.code.value, err.message, err.seq)


@FUZZ
@given(st.binary(max_size=200))
def test_decode_server_never_raises_on_bytes(data: bytes) -> None:
    decode_server(data)


@FUZZ
@given(st.text(max_size=200))
def test_decode_server_never_raises_on_text(text: str) -> None:
    decode_server(text)


@STRUCTURED
@given(json_values)
def test_decode_server_never_raises_on_json_values(value: Any) -> None:
    decode_server(json.dumps(value))


@STRUCTURED
@given(server_messages)
def test_decode_server_never_raises_on_message_like_objects(value: dict[str, Any]) -> None:
    decode_server(json.dumps(value))


free_event_keys = st.text(max_size=10).filter(
    lambda k: k not in {"session_id", "event_type", "type"}
)


@STRUCTURED
@given(
    st.text(min_size=1, max_size=256),
    st.dictionaries(free_event_keys, json_values, max_size=6),
)
def test_any_event_message_round_trips(agent_id: str, event: dict[str, Any]) -> None:
    result = decode(json.dumps(event_message(agent_id, event))).message
    assert isinstance(result, Event)
    assert (result.agent_id, result.event) == (agent_id, event)


# Values a flat event's fields take in practice and at the edges the fast path decides on.
_field_values = (
    st.none()
    | st.integers(min_value=-5, max_value=5)
    | st.text(max_size=6)
    | st.sampled_from(["", "x" * 8, "x" * 9, "progress", "Monitor", "control"])
    | st.lists(st.integers(), max_size=1)
)


@FUZZ
@given(
    agent_id=_field_values,
    session_id=_field_values,
    event=st.fixed_dictionaries(
        {},
        optional={
            "event_type": _field_values,
            "type": _field_values,
            "channel": _field_values,
            "session_id": _field_values,
            "timestamp": st.none() | st.integers() | st.sampled_from(["2026-01-01T00:00:00Z"]),
            "delta": st.just("hi"),
            "state": st.just("working"),
        },
    ),
)
def test_flat_event_fast_path_agrees_with_the_full_decoder(
    agent_id: Any, session_id: Any, event: dict[str, Any]
) -> None:
    from aster_studio_sdk.protocol import Limits, _codec

    limits = Limits(max_id_length=8, max_type_length=8)
    msg: dict[str, Any] = {"type": "event", "agent_id": agent_id, "event": event}
    if session_id is not None:
        msg["session_id"] = session_id
    fast = _codec._flat_event(msg, limits, None)
    if fast is None:
        return  # left to the full decoder
    assert fast == _codec._event(msg, Shape.FLAT, limits, None)


@FUZZ
@given(
    seq=st.none()
    | st.integers(min_value=-2, max_value=2**64)
    | st.sampled_from([0, 1, 2**63 - 1, 2**63, True, False, 1.0, "1", [1]]),
    in_batch=st.booleans(),
)
def test_a_flat_event_with_any_seq_decodes_as_the_full_decoder_would(
    seq: Any, in_batch: bool
) -> None:
    from aster_studio_sdk.protocol import Limits, _codec

    limits = Limits()
    msg = {"type": "event", "agent_id": "a", "event": {"event_type": "x"}, "seq": seq}
    shape, decoded = _codec._decode_one(msg, limits, in_batch=in_batch)
    assert shape is Shape.FLAT
    try:
        number = _codec._seq(msg)
    except _codec._Invalid as exc:
        assert decoded == ProtocolError(exc.error.code, exc.error.message, "seq", None)
    else:
        assert decoded == _codec._event(msg, Shape.FLAT, limits, number)
