"""uvicorn's sans-I/O WebSocket protocol, changed in one respect the agent contract requires.

PROTOCOL.md: a text frame that is not valid UTF-8 is answered with an `error` message and the
connection stays open. uvicorn closes such connections with 1007; this subclass hands the raw
bytes to the app instead, flagged `invalid_utf8`, so the agent endpoint can reply.
"""

from __future__ import annotations

from typing import Any, cast

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol


class AgentWebSocketProtocol(WebSocketsSansIOProtocol):
    """Deliver invalid UTF-8 text frames to the app instead of closing the connection."""

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
            try:
                data.decode()
            except UnicodeDecodeError:
                self.frames = []
                event = {"type": "websocket.receive", "bytes": data, "invalid_utf8": True}
                self.queue.put_nowait(cast(Any, event))
                if not self.read_paused:
                    self.read_paused = True
                    self.transport.pause_reading()
                return
        super().send_receive_event_to_app()
