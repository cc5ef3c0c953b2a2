"""The SDK's exceptions.

Nothing here is ever raised into the agent's code by the emitting methods; these types describe
failures inside the SDK, at its boundaries, and in strict mode (tests) they surface from
``flush``/``close``::

    StudioError                 root of everything the SDK raises
    ├── ConfigError             invalid options passed in code (also a ValueError)
    ├── TransportError          the connection failed or could not be opened
    │   ├── ConnectionClosed    the peer or the network closed an open connection
    │   └── Refused             the Studio refused the credential or the registration
    ├── InternalError           an SDK bug caught by the guard (strict mode re-raises it)
    ├── ControlError            a blocking control call made where it would stall the SDK
    └── ToolCancelled           raised by `ToolCall.raise_if_cancelled()` after a cancel
"""

from __future__ import annotations


class StudioError(Exception):
    """Root of every exception the SDK defines."""


class ConfigError(StudioError, ValueError):
    """An option passed in code is invalid."""


class TransportError(StudioError):
    """Opening, writing to or reading from the connection failed."""


class ConnectionClosed(TransportError):
    """The connection was closed by the peer or the network; `code` is the close code if any."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class Refused(TransportError):
    """The Studio refused this client: its credential (HTTP 401 or 403 on connecting) or its
    registration (an `error` reply to `register`); `code` says why (`http_401`, or the error's
    code, e.g. `forbidden_agent`). `invalid` means the register message itself was at fault."""

    def __init__(self, message: str, code: str, *, invalid: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.invalid = invalid


class InternalError(StudioError):
    """An unexpected failure inside the SDK, recorded instead of raised into the agent."""


class ControlError(StudioError, RuntimeError):
    """A blocking control call was made on a thread where waiting would stall the SDK."""


class ToolCancelled(StudioError):
    """The Studio cancelled the running tool call (raised only where the agent asks for it)."""


__all__ = [
    "ConfigError",
    "ConnectionClosed",
    "ControlError",
    "InternalError",
    "Refused",
    "StudioError",
    "ToolCancelled",
    "TransportError",
]
