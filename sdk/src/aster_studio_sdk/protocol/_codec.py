"""Turn frames into typed messages or precise errors, and messages into frames; no I/O."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Final

from ._types import (
    CLIENT_TYPES,
    Ack,
    Batch,
    Channel,
    ClientMessage,
    Control,
    Decoded,
    EndSession,
    ErrorCode,
    Event,
    Limits,
    MessageType,
    OtherServerMessage,
    Ping,
    ProtocolError,
    Register,
    Registered,
    RegisterSession,
    ServerError,
    ServerMessage,
    SessionStatus,
    Shape,
    Unregister,
)

# One fast codec when present; the standard library otherwise. Defined once, not per branch of
# an import guard, so that `make native` (mypyc) can compile this module.
try:
    import orjson as _orjson
except ImportError:  # pragma: no cover - exercised only without orjson
    _orjson = None  # type: ignore[assignment]

_parse: Final[Callable[[str | bytes], Any]] = _orjson.loads if _orjson is not None else json.loads


def loads(data: str | bytes) -> Any:
    """Parse JSON text; raise ValueError when it is not JSON."""
    return _parse(data)


# chr(): mypyc compiles no string literal holding a surrogate.
_LONE_SURROGATE: Final = re.compile(f"[{chr(0xD800)}-{chr(0xDFFF)}]")
_UNPARSED: Final = object()  # what `_parse_with_stdlib` returns for text that is not JSON


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _parse_with_stdlib(text: str, max_depth: int) -> Any:
    """Parse JSON text the fast codec cannot read as sent, with the standard library's parser.

    Two kinds: integers past 64 bits, which the fast codec reads as floats; and strings that
    escape lone UTF-16 surrogates, each read as U+FFFD. JavaScript writes those
    (`JSON.stringify` of a string cut inside a surrogate pair: an emoji split between two
    streamed chunks) and JSON parsers accept them, but they are not Unicode: no UTF-8 text,
    and so no stored event, can hold them. The fast codec refuses such a frame. `_UNPARSED`
    when the text is not JSON.
    """
    try:
        return replace_surrogates(json.loads(text, parse_constant=_no_constant), max_depth)
    except (ValueError, RecursionError):
        return _UNPARSED


def replace_surrogates(value: Any, depth: int = Limits().max_depth) -> Any:
    """Return parsed JSON with each lone UTF-16 surrogate in its strings and keys as U+FFFD.

    Values nested past `depth` are left as they are (a depth check refuses them next).
    """
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if depth < 0:
        return value
    if isinstance(value, dict):
        return {
            _LONE_SURROGATE.sub("\ufffd", k): replace_surrogates(v, depth - 1)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [replace_surrogates(v, depth - 1) for v in value]
    return value


def dumps(obj: Any) -> bytes:
    """Serialize to compact UTF-8 JSON."""
    if _orjson is not None:
        try:
            return _orjson.dumps(obj, default=_default)
        except TypeError as exc:
            if not is_wide_int_error(exc):
                raise
    return dumps_wide(obj)


def dumps_wide(obj: Any) -> bytes:
    """Serialize to compact UTF-8 JSON with the standard library, which writes integers of
    any size: the fast codec refuses those past 64 bits."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, default=_default).encode()


def is_wide_int_error(exc: TypeError) -> bool:
    """Whether the fast codec refused to encode an integer past 64 bits."""
    return "64-bit" in str(exc)


def _default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    return str(obj)


DEFAULT_LIMITS = Limits()

# A named tuple built by `tuple.__new__` skips the class's generated Python `__new__`: under
# half the cost (0.09 against 0.20 µs), on the path every event takes.
_new_tuple: Final = tuple.__new__
# The names that path reads are Final, the classes through these aliases (why: "Compiled
# modules" in docs/architecture.md).
_DECODED: Final = Decoded
_EVENT: Final = Event

_PROGRESS_KEYS = ("delta", "call", "text")
_CONTROL_KEYS = ("request_id", "questions", "approved")
_MONITOR_KEYS = ("state", "severity")
_CHANNELS: Final = {c.value: c for c in Channel}
# A dict lookup costs a fraction of MessageType(raw); server-only types are unknown here.
_CLIENT_TYPES_BY_VALUE: Final = {t.value: t for t in CLIENT_TYPES}
_END_STATUSES = {
    SessionStatus.COMPLETED.value,
    SessionStatus.FAILED.value,
    SessionStatus.INTERRUPTED.value,
}


class _Invalid(Exception):
    """Internal: carries a ProtocolError out of nested validation."""

    def __init__(self, error: ProtocolError) -> None:
        super().__init__(error.message)
        self.error = error


def _fail(code: ErrorCode, message: str, field: str | None = None) -> _Invalid:
    return _Invalid(ProtocolError(code, message, field))


def infer_channel(event: dict[str, Any]) -> Channel:
    """Return the event's channel, inferred from its keys when absent or unknown."""
    raw = event.get("channel")
    if isinstance(raw, str):
        known = _CHANNELS.get(raw.lower())
        if known is not None:
            return known
    for key in _PROGRESS_KEYS:
        if key in event:
            return Channel.PROGRESS
    for key in _CONTROL_KEYS:
        if key in event:
            return Channel.CONTROL
    for key in _MONITOR_KEYS:
        if key in event:
            return Channel.MONITOR
    return Channel.PROGRESS


# The last millisecond of year 9999: later times have no ISO 8601 form to show them in.
MAX_TIME_MS = 253_402_300_799_999


def parse_timestamp_ms(value: Any) -> int | None:
    """Read a client time (ISO 8601, unix seconds or milliseconds) as epoch ms, or None.

    A time without a zone is UTC. Times before 1970 (Go's zero time among them: a field left
    unset) or after year 9999 are None, as unreadable ones are.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        if value != value or value in (float("inf"), float("-inf")) or value <= 0:
            return None
        # Values past year 2286 in seconds are milliseconds.
        ms = value if value > 1e10 else value * 1000
        return int(ms) if ms < 1e14 else None
    if isinstance(value, str) and 0 < len(value) <= 64:
        if value.isdigit():  # epoch seconds or ms written as a string (protobuf's int64)
            return parse_timestamp_ms(int(value))
        try:
            # RFC 3339 allows a lower-case `t` and `z`; fromisoformat does not.
            parsed = datetime.fromisoformat(value.upper())
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            ms = int(parsed.timestamp() * 1000)
        except (ValueError, OverflowError, OSError):
            return None
        return ms if 0 < ms <= MAX_TIME_MS else None
    return None


def _metadata_string(metadata: dict[str, Any], key: str, max_len: int) -> str | None:
    value = metadata.get(key)
    return (value[:max_len] or None) if isinstance(value, str) else None


def _string(
    obj: dict[str, Any], key: str, path: str, max_len: int, *, required: bool = False
) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(ErrorCode.MISSING_FIELD, f"missing required field '{path}'", path)
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise _fail(
            ErrorCode.INVALID_FIELD,
            f"field '{path}' must be a string, got {type(value).__name__}",
            path,
        )
    text = str(value)
    if required and not text:
        raise _fail(ErrorCode.MISSING_FIELD, f"field '{path}' must not be empty", path)
    if len(text) > max_len:
        raise _fail(
            ErrorCode.STRING_TOO_LONG,
            f"field '{path}' is {len(text)} characters long; the limit is {max_len}",
            path,
        )
    return text


def _object(obj: dict[str, Any], key: str, path: str, *, required: bool = False) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        if required:
            raise _fail(ErrorCode.MISSING_FIELD, f"missing required field '{path}'", path)
        return {}
    if not isinstance(value, dict):
        raise _fail(
            ErrorCode.INVALID_FIELD,
            f"field '{path}' must be an object, got {type(value).__name__}",
            path,
        )
    return value


_SEQ_END: Final = 2**63  # a `seq` is a positive signed 64-bit integer


def _valid_seq(obj: dict[str, Any]) -> int | None:
    """`seq` when it is a valid one, else None: for a client that does not number messages."""
    value = obj.get("seq")
    return value if type(value) is int and 0 < value < _SEQ_END else None


_ENVELOPE_ONLY: Final = frozenset(("type", "payload", "seq"))


def _shape(msg: dict[str, Any]) -> Shape:
    """The envelope carries its fields in `payload`. A flat message may hold `"payload": null`
    beside its own fields (clients that write every field of a struct); a null payload with
    nothing beside it (`{"type":"ping","payload":null}`) is still the envelope."""
    if "payload" not in msg:
        return Shape.FLAT
    if msg["payload"] is not None or msg.keys() <= _ENVELOPE_ONLY:
        return Shape.ENVELOPE
    return Shape.FLAT


def _seq(obj: dict[str, Any]) -> int | None:
    value = obj.get("seq")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value >= _SEQ_END:
        raise _fail(ErrorCode.INVALID_FIELD, "field 'seq' must be a positive integer", "seq")
    return value


def _capabilities(value: Any, path: str, limits: Limits) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(ErrorCode.INVALID_FIELD, f"field '{path}' must be a list of strings", path)
    for item in value:
        if len(item) > limits.max_name_length:
            raise _fail(ErrorCode.STRING_TOO_LONG, f"an entry of '{path}' is too long", path)
    return tuple(value)


def _register(msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None) -> Register:
    if shape is Shape.ENVELOPE:
        body = _object(msg, "payload", "payload", required=True)
        prefix = "payload."
        id_key = "agent_id"
    else:
        body = _object(msg, "agent", "agent", required=True)
        prefix = "agent."
        id_key = "id" if "id" in body or "agent_id" not in body else "agent_id"
    metadata = _object(body, "metadata", prefix + "metadata")
    agent_id = _string(body, id_key, prefix + id_key, limits.max_id_length, required=True)
    assert agent_id is not None
    name = _string(body, "name", prefix + "name", limits.max_name_length)
    if name is None:
        name = _metadata_string(metadata, "name", limits.max_name_length)
    producer = _string(msg, "producer_id", "producer_id", limits.max_id_length)
    if producer is None:
        producer = _string(body, "producer_id", prefix + "producer_id", limits.max_id_length)
    return Register(
        agent_id=agent_id,
        name=name,
        status=_string(body, "status", prefix + "status", limits.max_type_length),
        # The envelope's register has no `model`: its clients put it with the name, in metadata.
        model=_string(body, "model", prefix + "model", limits.max_name_length)
        or _metadata_string(metadata, "model", limits.max_name_length),
        template_id=_string(body, "template_id", prefix + "template_id", limits.max_name_length),
        capabilities=_capabilities(body.get("capabilities"), prefix + "capabilities", limits),
        metadata=metadata,
        producer_id=producer,
        seq=seq,
    )


def _register_session(
    msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None
) -> RegisterSession:
    if shape is Shape.ENVELOPE:
        body = _object(msg, "payload", "payload", required=True)
        prefix, id_key = "payload.", "session_id"
    else:
        body = _object(msg, "session", "session", required=True)
        prefix = "session."
        id_key = "id" if "id" in body or "session_id" not in body else "session_id"
    session_id = _string(body, id_key, prefix + id_key, limits.max_id_length, required=True)
    agent_id = _string(body, "agent_id", prefix + "agent_id", limits.max_id_length)
    if agent_id is None:
        agent_id = _string(msg, "agent_id", "agent_id", limits.max_id_length, required=True)
    assert session_id is not None and agent_id is not None
    # A time that cannot be read (Go's zero time for one) leaves the receive time: the session
    # itself is valid, and refusing it would lose every event filed under it.
    created = body.get("created_at")
    created_ms = parse_timestamp_ms(created) if created is not None else None
    status = _string(body, "status", prefix + "status", limits.max_type_length)
    metadata = _object(body, "metadata", prefix + "metadata")
    count = body.get("message_count")
    if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
        # The original Go client reports its message count here; keep it with the metadata.
        metadata = {**metadata, "message_count": count}
    return RegisterSession(
        session_id=session_id,
        agent_id=agent_id,
        created_at_ms=created_ms,
        status=status or SessionStatus.ACTIVE,
        metadata=metadata,
        seq=seq,
    )


def _flat_event(msg: dict[str, Any], limits: Limits, seq: int | None) -> Event | None:
    """Decode the common flat event quickly, or return None to leave it to `_event`.

    Only plain strings within their limits pass here, so the result is the one `_event` would give;
    anything else (an int id, a missing or bad field) gets None and so `_event`'s result or error.
    """
    event = msg.get("event")
    agent_id = msg.get("agent_id")
    if type(event) is not dict or type(agent_id) is not str:
        return None
    session_id = msg.get("session_id")
    if session_id is None:
        session_id = event.get("session_id")
    event_type = event.get("event_type")
    if event_type is None:
        event_type = event.get("type")
    if not (
        0 < len(agent_id) <= limits.max_id_length
        and (
            session_id is None
            or (type(session_id) is str and len(session_id) <= limits.max_id_length)
        )
        and (
            event_type is None
            or (type(event_type) is str and len(event_type) <= limits.max_type_length)
        )
    ):
        return None
    raw_channel = event.get("channel")
    # An exact channel name is the common case; infer_channel handles every other one.
    channel = _CHANNELS.get(raw_channel) if type(raw_channel) is str else None
    if channel is None:
        channel = infer_channel(event)
    timestamp = event.get("timestamp")
    client_ts_ms = None if timestamp is None else parse_timestamp_ms(timestamp)
    fields = (agent_id, channel, event_type or "unknown", event, session_id, client_ts_ms, seq)
    return _new_tuple(_EVENT, fields)


def _event(msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None) -> Event:
    if shape is Shape.ENVELOPE:
        body = _object(msg, "payload", "payload", required=True)
        prefix = "payload."
        inner = body.get("envelope")
        if isinstance(inner, dict) and "event" in inner:
            event = _object(inner, "event", "payload.envelope.event", required=True)
        else:
            event = _object(body, "event", "payload.envelope.event", required=True)
    else:
        body, prefix = msg, ""
        event = _object(msg, "event", "event", required=True)
    agent_id = _string(body, "agent_id", prefix + "agent_id", limits.max_id_length, required=True)
    assert agent_id is not None
    session_id = _string(body, "session_id", prefix + "session_id", limits.max_id_length)
    if session_id is None:
        session_id = _string(event, "session_id", "event.session_id", limits.max_id_length)
    type_key = "event_type" if event.get("event_type") is not None else "type"
    event_type = _string(event, type_key, "event." + type_key, limits.max_type_length)
    timestamp = event.get("timestamp")
    return Event(
        agent_id=agent_id,
        channel=infer_channel(event),
        event_type=event_type or "unknown",
        event=event,
        session_id=session_id,
        client_ts_ms=None if timestamp is None else parse_timestamp_ms(timestamp),
        seq=seq,
    )


def _unregister(msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None) -> Unregister:
    if shape is Shape.ENVELOPE:
        body, prefix = _object(msg, "payload", "payload", required=True), "payload."
    elif "agent_id" not in msg and isinstance(msg.get("agent"), dict):
        body, prefix = msg["agent"], "agent."  # as `register` names its agent
    else:
        body, prefix = msg, ""
    if body is not msg and "agent_id" not in body and "id" in body:
        agent_id = _string(body, "id", prefix + "id", limits.max_id_length, required=True)
        assert agent_id is not None
        return Unregister(agent_id=agent_id, seq=seq)
    agent_id = _string(body, "agent_id", prefix + "agent_id", limits.max_id_length, required=True)
    assert agent_id is not None
    return Unregister(agent_id=agent_id, seq=seq)


def _end_session(msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None) -> EndSession:
    if shape is Shape.ENVELOPE:
        body, prefix = _object(msg, "payload", "payload", required=True), "payload."
    elif isinstance(msg.get("session"), dict):
        body, prefix = msg["session"], "session."
    else:
        body, prefix = msg, ""
    id_key = "session_id" if "session_id" in body or "id" not in body else "id"
    session_id = _string(body, id_key, prefix + id_key, limits.max_id_length, required=True)
    assert session_id is not None
    status = _string(body, "status", prefix + "status", limits.max_type_length)
    if status is None:
        status = SessionStatus.COMPLETED
    elif status not in _END_STATUSES:
        raise _fail(
            ErrorCode.INVALID_FIELD,
            f"field '{prefix}status' must be one of completed, failed, interrupted",
            prefix + "status",
        )
    agent_id = _string(body, "agent_id", prefix + "agent_id", limits.max_id_length)
    if agent_id is None and body is not msg:
        agent_id = _string(msg, "agent_id", "agent_id", limits.max_id_length)
    return EndSession(session_id=session_id, agent_id=agent_id, status=status, seq=seq)


_Decoder = Callable[[dict[str, Any], Shape, Limits, "int | None"], ClientMessage]

_DECODERS: Final[dict[MessageType, _Decoder]] = {
    MessageType.REGISTER: _register,
    MessageType.REGISTER_SESSION: _register_session,
    MessageType.EVENT: _event,
    MessageType.UNREGISTER: _unregister,
    MessageType.END_SESSION: _end_session,
}


def _decode_one(
    msg: Any, limits: Limits, *, in_batch: bool
) -> tuple[Shape | None, ClientMessage | Batch | ProtocolError]:
    if type(msg) is dict and msg.get("type") == "event" and "payload" not in msg:
        # By far the most common message: a flat event, with a valid `seq` or none.
        number = msg.get("seq")
        if number is None or (type(number) is int and 0 < number < _SEQ_END):
            event = _flat_event(msg, limits, number)
            if event is not None:
                return Shape.FLAT, event
    if not isinstance(msg, dict):
        return None, ProtocolError(
            ErrorCode.NOT_AN_OBJECT,
            f"a message must be a JSON object, got {_json_kind(msg)}",
        )
    shape = _shape(msg)
    seq: int | None = None
    try:
        if msg.get("seq") is not None:
            seq = _seq(msg) if limits.check_seq else _valid_seq(msg)
        raw_type = msg.get("type")
        if raw_type is None:
            raise _fail(ErrorCode.MISSING_TYPE, "missing required field 'type'", "type")
        if not isinstance(raw_type, str):
            raise _fail(ErrorCode.INVALID_FIELD, "field 'type' must be a string", "type")
        mtype = _CLIENT_TYPES_BY_VALUE.get(raw_type)
        if mtype is None:
            shown = raw_type[:64]
            raise _fail(ErrorCode.UNKNOWN_TYPE, f"unknown message type '{shown}'", "type")
        if mtype is MessageType.PING:
            return shape, Ping(seq=seq)
        if mtype is MessageType.BATCH:
            if in_batch:
                raise _fail(ErrorCode.NESTED_BATCH, "a batch may not contain a batch", "type")
            return shape, _batch(msg, shape, limits, seq)
        return shape, _DECODERS[mtype](msg, shape, limits, seq)
    except _Invalid as exc:
        err = exc.error
        return shape, ProtocolError(err.code, err.message, err.field, seq)


def _batch(msg: dict[str, Any], shape: Shape, limits: Limits, seq: int | None) -> Batch:
    body = msg
    if shape is Shape.ENVELOPE and isinstance(msg.get("payload"), dict):
        body = msg["payload"]
    messages = body.get("messages")
    if messages is None:
        raise _fail(ErrorCode.MISSING_FIELD, "missing required field 'messages'", "messages")
    if not isinstance(messages, list):
        raise _fail(ErrorCode.INVALID_FIELD, "field 'messages' must be an array", "messages")
    if len(messages) > limits.max_batch_messages:
        raise _fail(
            ErrorCode.BATCH_TOO_LARGE,
            f"a batch holds {len(messages)} messages; the limit is {limits.max_batch_messages}",
            "messages",
        )
    items: list[ClientMessage | ProtocolError] = []
    for index, item in enumerate(messages):
        _, decoded = _decode_one(item, limits, in_batch=True)
        if isinstance(decoded, ProtocolError):
            decoded = ProtocolError(
                decoded.code,
                f"messages[{index}]: {decoded.message}",
                decoded.field,
                decoded.seq,
                index,
            )
        assert not isinstance(decoded, Batch)
        items.append(decoded)
    return Batch(items=tuple(items), seq=seq)


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return type(value).__name__


def too_deep(value: Any, max_depth: int, containers: int) -> bool:
    """Tell whether parsed JSON nests arrays and objects more than `max_depth` levels.

    The one check of nesting: the server runs it on every frame, the SDK on each message it
    encoded, parsed back, so both judge the same JSON. It walks one level at a time (no
    recursion). `containers` bounds the number of arrays and objects (half the text's length
    will do), so the walk stops once the ones not yet reached are too few to go past the limit.
    Parsed JSON holds plain dicts and lists only, and `type(x) is` is the cheapest test of that.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    depth = 1
    unseen = containers - len(level)
    while level:
        if depth > max_depth:
            return True
        if depth + unseen <= max_depth:
            return False
        below: list[Any] = []
        for container in level:
            for child in container.values() if type(container) is dict else container:
                if type(child) is dict or type(child) is list:
                    below.append(child)
        level = below
        depth += 1
        unseen -= len(below)
    return False


def decode(data: str | bytes, limits: Limits = DEFAULT_LIMITS) -> Decoded:
    """Decode one text frame's content; never raises, whatever the input."""
    shape, message = decode_pair(data, limits)
    return _new_tuple(_DECODED, (shape, message))


def decode_pair(
    data: str | bytes, limits: Limits = DEFAULT_LIMITS
) -> tuple[Shape | None, ClientMessage | Batch | ProtocolError]:
    """`decode` as a plain pair, for the server's per-frame path: compiled, a pair goes back
    to a compiled caller as two values, where `Decoded` is an object built per frame (about
    900 instructions, callgrind)."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return None, ProtocolError(
                ErrorCode.INVALID_UTF8, f"frame is not valid UTF-8: {exc.reason}"
            )
    max_depth = limits.max_depth
    try:
        parsed = _parse(data)
    except (ValueError, RecursionError) as exc:
        detail = str(exc).splitlines()[0][:200] if str(exc) else "parse error"
        # Only then: any other bad frame is parsed once.
        parsed = _parse_with_stdlib(data, max_depth) if "surrogate" in detail else _UNPARSED
        if parsed is _UNPARSED:
            return None, ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {detail}")
    except Exception as exc:  # a codec must never take the caller down
        return None, ProtocolError(ErrorCode.INVALID_JSON, f"invalid JSON: {exc!r}"[:200])
    # Nesting past max_depth takes that many brackets and as many closing ones: a shorter frame
    # cannot, so most single messages are spared the walk. Each array or object takes two
    # characters at least, which bounds them. (Counting the text's brackets for a closer bound
    # read every character: 2,400 instructions an event in batches, ten times the walk.)
    if len(data) > 2 * max_depth + 1 and too_deep(parsed, max_depth, len(data) // 2):
        return None, ProtocolError(ErrorCode.INVALID_JSON, "message is nested too deeply")
    try:
        return _decode_one(parsed, limits, in_batch=False)
    except RecursionError:
        return None, ProtocolError(ErrorCode.INVALID_JSON, "message is nested too deeply")


def binary_frame_error() -> ProtocolError:
    """Return the error for a binary frame: the protocol carries JSON text frames only."""
    return ProtocolError(
        ErrorCode.BINARY_FRAME, "binary frames are not accepted; send JSON as a text frame"
    )


# ---- server -> client ----


def encode_reply(shape: Shape, mtype: MessageType, data: dict[str, Any] | None = None) -> bytes:
    """Encode a server reply in the shape the client speaks."""
    if shape is Shape.ENVELOPE:
        reply: dict[str, Any] = {"type": mtype.value, "payload": data}
        if mtype is MessageType.ERROR and data is not None:
            reply["message"] = data.get("message")
        return dumps(reply)
    flat: dict[str, Any] = {"type": mtype.value}
    if data:
        flat.update(data)
        flat["type"] = mtype.value  # a `type` key in the data never renames the reply
    return dumps(flat)


def error_payload(error: ProtocolError) -> dict[str, Any]:
    """Return the body of an `error` reply for a protocol error."""
    body: dict[str, Any] = {"code": error.code.value, "message": error.message}
    if error.field is not None:
        body["field"] = error.field
    if error.seq is not None:
        body["seq"] = error.seq
    if error.index is not None:
        body["index"] = error.index
    return body


def decode_server(data: str | bytes) -> ServerMessage | None:
    """Decode a frame the server sent to an agent, in either shape; None if unreadable."""
    try:
        msg = loads(data)
    except Exception:
        return None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        return None
    try:
        return _server_message(msg)
    except RecursionError:  # str() of a value nested deeper than the interpreter allows
        return None


def _server_message(msg: dict[str, Any]) -> ServerMessage | None:
    mtype = msg["type"]
    payload = msg.get("payload")
    body: dict[str, Any] = payload if isinstance(payload, dict) else msg
    if mtype == MessageType.ACK:
        seq = body.get("seq")
        return Ack(seq) if isinstance(seq, int) and not isinstance(seq, bool) else None
    if mtype == MessageType.REGISTERED:
        last = body.get("last_seq")
        return Registered(
            str(body.get("agent_id", "")),
            last if isinstance(last, int) and not isinstance(last, bool) else None,
        )
    if mtype == MessageType.ERROR:
        seq = body.get("seq")
        return ServerError(
            str(body.get("code", "")),
            str(body.get("message", "")),
            seq if isinstance(seq, int) and not isinstance(seq, bool) else None,
        )
    if mtype == MessageType.CONTROL:
        kind = body.get("event_type")
        return Control(str(kind) if kind is not None else "", body)
    return OtherServerMessage(mtype, body)


# ---- client -> server (used by SDKs) ----


def register_message(
    agent_id: str,
    *,
    name: str | None = None,
    status: str | None = "ready",
    model: str | None = None,
    capabilities: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    producer_id: str | None = None,
) -> dict[str, Any]:
    """Build a flat `register` message; `producer_id` opts in to reliable delivery."""
    agent: dict[str, Any] = {"id": agent_id}
    if name is not None:
        agent["name"] = name
    if status is not None:
        agent["status"] = status
    if model is not None:
        agent["model"] = model
    if capabilities:
        agent["capabilities"] = list(capabilities)
    if metadata:
        agent["metadata"] = metadata
    msg: dict[str, Any] = {"type": "register", "agent": agent}
    if producer_id is not None:
        msg["producer_id"] = producer_id
    return msg


def register_session_message(
    session_id: str,
    agent_id: str,
    *,
    created_at: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build a flat `register_session` message."""
    session: dict[str, Any] = {"id": session_id, "agent_id": agent_id}
    if created_at is not None:
        session["created_at"] = created_at
    if metadata:
        session["metadata"] = metadata
    return {"type": "register_session", "session": session}


def event_message(
    agent_id: str, event: dict[str, Any], *, session_id: str | None = None
) -> dict[str, Any]:
    """Build a flat `event` message."""
    msg: dict[str, Any] = {"type": "event", "agent_id": agent_id, "event": event}
    if session_id is not None:
        msg["session_id"] = session_id
    return msg


def end_session_message(
    session_id: str, agent_id: str, status: str = SessionStatus.COMPLETED
) -> dict[str, Any]:
    """Build an `end_session` message."""
    return {"type": "end_session", "session_id": session_id, "agent_id": agent_id, "status": status}


def batch_message(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """Build a `batch` message from other messages (each may carry its own `seq`)."""
    return {"type": "batch", "messages": messages}


def iter_messages(decoded: ClientMessage | Batch) -> tuple[ClientMessage | ProtocolError, ...]:
    """Return a frame's messages in order: a batch's items, or the one message."""
    if isinstance(decoded, Batch):
        return decoded.items
    return (decoded,)


__all__ = [
    "Ack",
    "Control",
    "Registered",
    "ServerError",
    "batch_message",
    "binary_frame_error",
    "decode",
    "decode_server",
    "dumps",
    "dumps_wide",
    "encode_reply",
    "end_session_message",
    "error_payload",
    "event_message",
    "infer_channel",
    "is_wide_int_error",
    "iter_messages",
    "loads",
    "parse_timestamp_ms",
    "register_message",
    "register_session_message",
    "too_deep",
]
