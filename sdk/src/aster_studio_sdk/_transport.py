"""The transport seam: how the worker opens a connection, writes frames and reads replies.

The worker only talks to a `Transport`; the default one uses the websockets sync client, tests and
the `testing` module plug in an in-memory one. Foreign exceptions are translated here.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import socket
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote, urlsplit

from ._config import is_secret_param, redact_query, redact_url
from ._errors import ConnectionClosed, Refused, TransportError


def _parameters(qualname: str) -> frozenset[str]:
    """Probe the installed websockets (the SDK supports 13 and later) for what it accepts."""
    try:
        from websockets.sync import client

        target = client.connect if qualname == "connect" else client.ClientConnection.send
        return frozenset(inspect.signature(target).parameters)
    except (ImportError, TypeError, ValueError):  # pragma: no cover - very old websockets
        return frozenset()


_CONNECT_PARAMETERS = _parameters("connect")  # keepalive pings: 14+; `legacy`: 17.1+
_TEXT_FLAG = "text" in _parameters("send")  # 14+: bytes may go out as a text frame


class Connection(Protocol):
    """One open connection to a Studio; used by one SDK thread at a time (the one that
    opened it and registered, then the worker)."""

    def send(self, frame: bytes) -> None:
        """Write one JSON text frame; raise TransportError when the connection is gone."""

    def recv(self, timeout: float) -> str | bytes | None:
        """Return the next frame from the server, or None when none arrives within timeout."""

    def close(self) -> None:
        """Close the connection politely (close frame, bounded wait); never raise."""

    def abort(self) -> None:
        """Drop the connection at once from any thread, unblocking a stuck send; never raise."""


class Transport(Protocol):
    """Opens connections; one instance serves one client for its whole life.

    `connect` runs on a short-lived SDK thread of its own, one attempt at a time.
    """

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        """Open a connection within timeout or raise TransportError."""


def _close_code(exc: Exception) -> int | None:
    rcvd = getattr(exc, "rcvd", None)
    code = getattr(rcvd, "code", None)
    return code if isinstance(code, int) else None


class WebSocketConnection:
    """A `Connection` over a websockets sync client connection."""

    def __init__(self, conn: object) -> None:
        from websockets.sync.client import ClientConnection

        assert isinstance(conn, ClientConnection)
        self._conn = conn

    def send(self, frame: bytes) -> None:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            if _TEXT_FLAG:
                self._conn.send(frame, text=True)
            else:  # pragma: no cover - websockets 13 sends bytes as binary frames
                self._conn.send(frame.decode("utf-8"))
        except WsClosed as exc:
            raise ConnectionClosed(f"connection closed: {exc}", _close_code(exc)) from exc
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"send failed: {exc!r}") from exc

    def recv(self, timeout: float) -> str | bytes | None:
        from websockets.exceptions import ConnectionClosed as WsClosed

        try:
            return self._conn.recv(timeout=timeout)
        except TimeoutError:
            return None
        except WsClosed as exc:
            raise ConnectionClosed(f"connection closed: {exc}", _close_code(exc)) from exc
        except (OSError, RuntimeError) as exc:
            raise TransportError(f"receive failed: {exc!r}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):  # best effort: the peer may already be gone
            self._conn.close()

    def abort(self) -> None:
        # Shutting the socket down makes a sendall() blocked on a peer that stopped reading fail.
        with contextlib.suppress(Exception):
            self._conn.socket.shutdown(socket.SHUT_RDWR)


class WebSocketTransport:
    """Open WebSocket connections with the websockets sync client."""

    def __init__(self, *, close_timeout: float = 1.0, ping_interval: float | None = 20.0) -> None:
        self._close_timeout = close_timeout
        self._ping_interval = ping_interval

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        from websockets.exceptions import InvalidStatus, WebSocketException
        from websockets.sync.client import connect

        options: dict[str, Any] = {
            "additional_headers": dict(headers),
            "open_timeout": max(timeout, 0.001),
            "close_timeout": self._close_timeout,
            "ping_interval": self._ping_interval,
            "ping_timeout": self._ping_interval,
            "compression": None,  # loopback and LAN: deflate costs more CPU than it saves
            "proxy": None,
            "max_size": None,
            "user_agent_header": "aster-studio-sdk",
        }
        options["legacy"] = True  # websockets >= 17.1: we use the connection directly
        # websockets logs the request line and headers at DEBUG: `?token=` and Authorization.
        options["logger"] = _RedactingLogger(logging.getLogger("websockets.client"), _secrets(url))
        try:
            conn = connect(url, **{k: v for k, v in options.items() if k in _CONNECT_PARAMETERS})
        except InvalidStatus as exc:
            status = getattr(exc.response, "status_code", None)
            if status in (401, 403):  # reached, and refused: say so, not "cannot reach"
                raise Refused(
                    f"HTTP {status} to the WebSocket handshake", f"http_{status}"
                ) from exc
            raise _failure(exc, url) from exc
        except (OSError, TimeoutError, WebSocketException, socket.gaierror) as exc:
            error = _failure(exc, url)
            # An error quoting the URL (InvalidURI) must not travel on as the cause either.
            raise error from (None if repr(exc) != _scrub(exc, url) else exc)
        return WebSocketConnection(conn)


def _failure(exc: BaseException, url: str) -> TransportError:
    return TransportError(f"cannot connect to {redact_url(url)}: {_scrub(exc, url)}")


def _secrets(url: str) -> tuple[str, ...]:
    """Return the credentials in `url` (user, password, `?token=` values), raw and decoded."""
    try:
        parts = urlsplit(url)
        found = [parts.username, parts.password]
        found += [v for k, v in parse_qsl(parts.query) if is_secret_param(k)]
    except ValueError:
        return ()
    return tuple({s for secret in found if secret for s in (secret, unquote(secret))})


class _RedactingLogger(logging.LoggerAdapter[logging.Logger]):
    """websockets' logger for one connection, with its credentials masked in every line."""

    def __init__(self, logger: logging.Logger, secrets: tuple[str, ...]) -> None:
        super().__init__(logger, {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        if not self.isEnabledFor(level):
            return
        try:
            text = str(msg) % args if args else str(msg)
        except (TypeError, ValueError):
            text = " ".join(str(part) for part in (msg, *args))
        text = _mask_line(text, self._secrets)
        kwargs.setdefault("stacklevel", 2)
        self.logger.log(level, "%s", text, **kwargs)


def _mask_line(text: str, secrets: tuple[str, ...]) -> str:
    head, sep, value = text.partition(": ")
    if sep and head.lstrip("<> ").lower() in ("authorization", "proxy-authorization"):
        return f"{head}: ***"
    if text.startswith("> GET ") and "?" in text:
        target, space, version = text[6:].rpartition(" ")
        path, _, query = target.partition("?")
        text = f"> GET {path}?{redact_query(query)}{space}{version}"
    for secret in secrets:
        if len(secret) >= 4:  # not a one-letter user name in every word
            text = text.replace(secret, "***")
    return text


def _scrub(exc: BaseException, url: str) -> str:
    """`repr(exc)` without the URL's credentials: websockets' errors quote the URL whole."""
    text = repr(exc).replace(url, redact_url(url))
    try:
        parts = urlsplit(url)
        secrets = [parts.username, parts.password]
        secrets += [v for k, v in parse_qsl(parts.query) if is_secret_param(k)]
    except ValueError:
        return text
    for secret in secrets:
        if secret and len(secret) >= 4:  # not a one-letter user name in every word
            text = text.replace(secret, "***").replace(unquote(secret), "***")
    return text
