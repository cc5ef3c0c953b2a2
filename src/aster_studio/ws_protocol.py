"""uvicorn's sans-I/O WebSocket protocol, changed where the agent contract or speed requires.

1. PROTOCOL.md: a text frame that is not valid UTF-8 is answered with an `error` message and the
   connection stays open. uvicorn closes such connections with 1007; this subclass hands the raw
   bytes to the app instead, flagged `invalid_utf8`, so the agent endpoint can reply.
2. Flow control with watermarks: uvicorn pauses the socket after every message and resumes it
   when the app has taken it, an `epoll_ctl` pair per message (10-13% of the server's time under
   load, see docs/benchmarks.md). Here reading pauses only when a connection has many messages
   or bytes waiting, and resumes when the app has drained most of them; back-pressure to a
   flooding client still holds, with a bounded backlog per connection.
3. A stop does not wait for clients that stopped reading: closing a transport waits until its
   buffer is sent, so a live-stream client in a frozen tab kept its connection, and the stop
   waited uvicorn's whole graceful timeout (10 s), then logged an error. It is cut off after
   SHUTDOWN_DRAIN_S instead.
4. Text frames from bytes: the live stream sends one JSON document to many consoles. The ASGI
   path would decode it to `str` per connection, encode it back, and frame it in Python; the
   ASGI extension `aster.text_frames` takes the UTF-8 bytes and writes the frame directly (and
   offers `receive` without Starlette's per-message checks, for the agent endpoint's loop).

Agents' connections seldom come here: src/aster_studio/agent_socket.py takes plain upgrades to
the agent endpoint itself and hands this class only the requests it does not take.
"""

from __future__ import annotations

from typing import Any, cast

from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request

from .ingest.frames import text_frame_parts

TEXT_FRAMES = "aster.text_frames"

# Each pause/resume pair is two epoll_ctl calls: the gap between the marks sets how many
# messages pass per pair. Memory per connection stays bounded by HIGH_BYTES.
HIGH_MESSAGES = 512
HIGH_BYTES = 1 << 20
LOW_MESSAGES = 128
# At a stop, how long a client has to take our close frame, behind whatever it has not read
# yet, before its connection is cut: a console that reads takes it in milliseconds.
SHUTDOWN_DRAIN_S = 1.0


class AgentWebSocketProtocol(WebSocketsSansIOProtocol):
    """Deliver invalid UTF-8 text to the app, and pause reading only above a watermark."""

    queued_bytes = 0

    def send_receive_event_to_app(self) -> None:
        data = self.frames[0] if len(self.frames) == 1 else b"".join(self.frames)
        self.frames = []
        self._deliver(data, text=self.curr_msg_data_type == "text")

    def _deliver(self, data: bytes, *, text: bool) -> None:
        """Queue one message for the app, pausing reads above the watermarks."""
        if self.close_sent:  # past our close: drop it, keep reading for the peer's close
            return
        event: dict[str, Any]
        if text:
            try:
                event = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                event = {"type": "websocket.receive", "bytes": data, "invalid_utf8": True}
        else:
            event = {"type": "websocket.receive", "bytes": data}
        event["size"] = len(data)  # what receive() gives back to the byte watermark
        self.queued_bytes += len(data)
        self.queue.put_nowait(cast(Any, event))
        if not self.read_paused and (
            self.queue.qsize() >= HIGH_MESSAGES or self.queued_bytes >= HIGH_BYTES
        ):
            self.read_paused = True
            self.transport.pause_reading()

    async def receive(self) -> Any:
        message: dict[str, Any] = cast(Any, await self.queue.get())
        self.queued_bytes -= int(message.get("size", 0))
        if (
            self.read_paused
            and self.queue.qsize() <= LOW_MESSAGES
            and (self.queued_bytes < HIGH_BYTES // 2)
        ):
            self.read_paused = False
            self.transport.resume_reading()
        return message

    def shutdown(self) -> None:
        """The server is stopping: close as uvicorn does (1012), and cut the connection off if
        it is still open SHUTDOWN_DRAIN_S later (its client does not read: point 3 above)."""
        super().shutdown()
        if not self.disconnected:
            self.loop.call_later(SHUTDOWN_DRAIN_S, self._cut_off)

    def _cut_off(self) -> None:
        if not self.disconnected:
            self.transport.abort()  # what it has not read is dropped; connection_lost follows

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][TEXT_FRAMES] = {
                "send": self.send_text_bytes,
                "send_now": self.send_text_bytes_now,
                "receive": self.receive,
            }

    async def send_text_bytes(self, *payloads: bytes) -> None:
        """Send each UTF-8 payload as a text frame, all in one write (server frames are not
        masked): a console's events and the views that changed with them cost one syscall."""
        await self.writable.wait()
        if self.disconnected or self.close_sent or self.transport.is_closing():
            raise WebSocketDisconnect(1006)
        self._write_text(list(payloads))

    def send_text_bytes_now(self, payloads: list[bytes]) -> bool:
        """`send_text_bytes` without waiting: False, and nothing sent, unless the connection
        is open and its transport takes more (not paused by a full buffer)."""
        if (
            not self.writable.is_set()
            or self.disconnected
            or self.close_sent
            or self.transport.is_closing()
        ):
            return False
        self._write_text(payloads)
        return True

    def _write_text(self, payloads: list[bytes]) -> None:
        if self.conn.extensions:  # permessage-deflate: websockets compresses and frames it
            for payload in payloads:
                self.conn.send_text(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
            return
        self.transport.writelines(text_frame_parts(payloads))
