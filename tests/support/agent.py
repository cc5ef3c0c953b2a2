"""A raw agent WebSocket for tests: send any frame, read replies as JSON with a timeout."""

from __future__ import annotations

import json
from typing import Any

from websockets.sync.client import ClientConnection, connect

from .timing import UNIT


class RawAgent:
    """A plain WebSocket client speaking the protocol by hand (no SDK)."""

    def __init__(self, url: str, *, greeting: bool = True) -> None:
        self._connect = connect(url, open_timeout=10 * UNIT, max_size=None)
        self.ws: ClientConnection = self._connect.__enter__()
        self.greeting: dict[str, Any] = {}
        if greeting:
            self.greeting = self.recv()
            assert self.greeting["type"] == "connected", self.greeting

    def send(self, message: Any) -> None:
        self.ws.send(json.dumps(message))

    def send_raw(self, data: str | bytes) -> None:
        self.ws.send(data)

    def recv(self, timeout: float = 5 * UNIT) -> Any:
        return json.loads(self.ws.recv(timeout))

    def request(self, message: Any, timeout: float = 5 * UNIT) -> Any:
        """Send a message and return the next reply."""
        self.send(message)
        return self.recv(timeout)

    def recv_until(self, kind: str, timeout: float = 5 * UNIT) -> Any:
        """Return the next reply of `kind`, skipping others (acks, errors)."""
        while True:
            reply = self.recv(timeout)
            if reply["type"] == kind:
                return reply

    def close(self) -> None:
        self._connect.__exit__(None, None, None)

    def __enter__(self) -> RawAgent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def register(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {"type": "register", "agent": {"id": agent_id, **fields}}


def event(agent_id: str, event_type: str, **fields: Any) -> dict[str, Any]:
    return {"type": "event", "agent_id": agent_id, "event": {"event_type": event_type, **fields}}
