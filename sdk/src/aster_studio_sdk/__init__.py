"""Aster Studio agent SDK: report an agent's events to a Studio without ever hurting the agent.

Quick start::

    from aster_studio_sdk import StudioClient

    studio = StudioClient(agent_id="writer-1", name="Writing Agent")
    with studio.session("session-456") as s:
        s.state("working")
        s.text("Hello, ")
    studio.close(timeout=5)

See docs/sdk.md for configuration, delivery guarantees and the full API.
"""

from ._client import Session, Stats, StudioClient, ToolCall, current_tool_call
from ._config import (
    DEFAULT_URL,
    ENV_ENABLED,
    ENV_STRICT,
    ENV_TOKEN,
    ENV_URL,
    DeliveryOptions,
    DropPolicy,
    Settings,
)
from ._control import (
    DEFAULT_TIMEOUT,
    Answers,
    Decision,
    Option,
    Permission,
    Question,
    Reason,
    Request,
    Source,
    ToolAction,
    ToolControl,
)
from ._errors import (
    ConfigError,
    ConnectionClosed,
    ControlError,
    InternalError,
    Refused,
    StudioError,
    ToolCancelled,
    TransportError,
)
from ._transport import Connection, Transport, WebSocketTransport

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "ENV_ENABLED",
    "ENV_STRICT",
    "ENV_TOKEN",
    "ENV_URL",
    "Answers",
    "ConfigError",
    "Connection",
    "ConnectionClosed",
    "ControlError",
    "Decision",
    "DeliveryOptions",
    "DropPolicy",
    "InternalError",
    "Option",
    "Permission",
    "Question",
    "Reason",
    "Refused",
    "Request",
    "Session",
    "Settings",
    "Source",
    "Stats",
    "StudioClient",
    "StudioError",
    "ToolAction",
    "ToolCall",
    "ToolCancelled",
    "ToolControl",
    "Transport",
    "TransportError",
    "WebSocketTransport",
    "current_tool_call",
]
