"""Message types, codes and typed messages of the remote-agent protocol (PROTOCOL.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, IntEnum, StrEnum
from typing import Any, NamedTuple


class Shape(Enum):
    """The two accepted message shapes; replies use the one a connection used first."""

    FLAT = "flat"
    ENVELOPE = "envelope"


class MessageType(StrEnum):
    """Every message type, both directions."""

    # client -> server
    REGISTER = "register"
    REGISTER_SESSION = "register_session"
    EVENT = "event"
    PING = "ping"
    UNREGISTER = "unregister"
    BATCH = "batch"
    END_SESSION = "end_session"
    # server -> client
    CONNECTED = "connected"
    REGISTERED = "registered"
    SESSION_REGISTERED = "session_registered"
    PONG = "pong"
    ACK = "ack"
    ERROR = "error"
    CONTROL = "control"


CLIENT_TYPES = frozenset(
    {
        MessageType.REGISTER,
        MessageType.REGISTER_SESSION,
        MessageType.EVENT,
        MessageType.PING,
        MessageType.UNREGISTER,
        MessageType.BATCH,
        MessageType.END_SESSION,
    }
)


class Channel(StrEnum):
    """The three event channels of the framework (EVENTS.md)."""

    PROGRESS = "progress"
    CONTROL = "control"
    MONITOR = "monitor"


class SessionStatus(StrEnum):
    """States of a session; `end_session` may set the last three."""

    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class ErrorCode(StrEnum):
    """Stable codes carried by `error` replies; documented in docs/protocol-errors.md."""

    BINARY_FRAME = "binary_frame"
    INVALID_UTF8 = "invalid_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    MISSING_TYPE = "missing_type"
    UNKNOWN_TYPE = "unknown_type"
    MISSING_FIELD = "missing_field"
    INVALID_FIELD = "invalid_field"
    STRING_TOO_LONG = "string_too_long"
    BATCH_TOO_LARGE = "batch_too_large"
    NESTED_BATCH = "nested_batch"
    UNKNOWN_SESSION = "unknown_session"
    INTERNAL_ERROR = "internal_error"
    # server policy (issued by the Studio, not the codec)
    FORBIDDEN_AGENT = "forbidden_agent"
    RATE_LIMITED = "rate_limited"
    TOO_MANY_AGENTS = "too_many_agents"
    TOO_MANY_SESSIONS = "too_many_sessions"


class CloseCode(IntEnum):
    """WebSocket close codes the server uses."""

    NORMAL = 1000
    GOING_AWAY = 1001
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    TAKEN_OVER = 4001


@dataclass(frozen=True, slots=True)
class Limits:
    """Size limits applied while decoding; exceeding one gives a precise error."""

    max_id_length: int = 256
    max_name_length: int = 1024
    max_type_length: int = 128
    max_batch_messages: int = 10_000
    # orjson cannot encode values nested past 254 levels; what we accept must be storable.
    max_depth: int = 128
    # False: a `seq` that is not a positive integer is ignored, not an error. For a client
    # that did not opt into numbered delivery, whose `seq` (a struct's zero value, say) means
    # nothing to the server.
    check_seq: bool = True


@dataclass(frozen=True, slots=True)
class ProtocolError:
    """A message that could not be accepted, with the field at fault."""

    code: ErrorCode
    message: str
    field: str | None = None
    seq: int | None = None
    index: int | None = None  # position inside a batch


@dataclass(frozen=True, slots=True)
class Register:
    agent_id: str
    name: str | None = None
    status: str | None = None
    model: str | None = None
    template_id: str | None = None
    capabilities: tuple[str, ...] = ()
    metadata: dict[str, Any] = field(default_factory=dict)
    producer_id: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class RegisterSession:
    session_id: str
    agent_id: str
    created_at_ms: int | None = None
    status: str = SessionStatus.ACTIVE
    metadata: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None


class Event(NamedTuple):
    """An agent's event: a named tuple, not a dataclass, as one is built per message."""

    agent_id: str
    channel: Channel
    event_type: str
    event: dict[str, Any]
    session_id: str | None = None
    client_ts_ms: int | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Ping:
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Unregister:
    agent_id: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class EndSession:
    session_id: str
    agent_id: str | None = None
    status: str = SessionStatus.COMPLETED
    seq: int | None = None


ClientMessage = Register | RegisterSession | Event | Ping | Unregister | EndSession


@dataclass(frozen=True, slots=True)
class Batch:
    """A batch's items, each decoded on its own: one bad item never sinks the others."""

    items: tuple[ClientMessage | ProtocolError, ...]
    seq: int | None = None


class Decoded(NamedTuple):
    """The result of decoding one frame: its shape (when known) and message or error.

    A named tuple, not a dataclass, as one is built per frame.
    """

    shape: Shape | None
    message: ClientMessage | Batch | ProtocolError


# ---- server -> client messages, as the SDK reads them ----


@dataclass(frozen=True, slots=True)
class Ack:
    seq: int


@dataclass(frozen=True, slots=True)
class Registered:
    agent_id: str
    last_seq: int | None = None


@dataclass(frozen=True, slots=True)
class ServerError:
    code: str
    message: str
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Control:
    """A decision or command from the console for the agent (`control` extension)."""

    event_type: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OtherServerMessage:
    type: str
    data: dict[str, Any]


ServerMessage = Ack | Registered | ServerError | Control | OtherServerMessage
