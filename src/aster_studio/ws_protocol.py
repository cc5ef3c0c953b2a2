"""uvicorn's sans-I/O WebSocket protocol, changed where the agent contract or speed requires.

1. PROTOCOL.md: a text frame that is not valid UTF-8 is answered with an `error` message and the
   connection stays open. uvicorn closes such connections with 1007; this subclass hands the raw
   bytes to the app instead, flagged `invalid_utf8`, so the agent endpoint can reply.
2. Flow control with watermarks: uvicorn pauses the socket after every message and resumes it
   when the app has taken it, an `epoll_ctl` pair per message (10-13% of the server's time under
   load, see docs/benchmarks.md). Here reading pauses only when a connection has many messages
   or bytes waiting, and resumes when the app has drained most of them; back-pressure to a
   flooding client still holds, with a bounded backlog per connection.
3. Text frames from bytes: the live stream sends one JSON document to many consoles. The ASGI
   path would decode it to `str` per connection, encode it back, and frame it in Python; the
   ASGI extension `aster.text_frames` takes the UTF-8 bytes and writes the frame directly (and
   offers `receive` without Starlette's per-message checks, for the agent endpoint's loop).
4. Incoming text frames parsed here: an agent sends one small text frame per event, and
   websockets' frame parser (a generator over a stream reader, in Python) costs about 4 µs per
   frame; this loop costs under 1 µs. Only whole, final, masked text frames without extension
   bits are taken here. Control frames go to websockets one whole frame at a time (so its
   parser always starts at a frame boundary), and anything else (a fragment, a binary or
   oversized frame, compression, the closing handshake) hands the connection back to
   websockets for good.
"""

from __future__ import annotations

import struct
from typing import Any, cast

from starlette.websockets import WebSocketDisconnect
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.http11 import Request
from websockets.protocol import State

try:  # the C version that ships with websockets' wheels
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

TEXT_FRAMES = "aster.text_frames"

# Each pause/resume pair is two epoll_ctl calls: the gap between the marks sets how many
# messages pass per pair. Memory per connection stays bounded by HIGH_BYTES.
HIGH_MESSAGES = 512
HIGH_BYTES = 1 << 20
LOW_MESSAGES = 128


class AgentWebSocketProtocol(WebSocketsSansIOProtocol):
    """Deliver invalid UTF-8 text to the app, and pause reading only above a watermark."""

    queued_bytes = 0
    # Whether incoming frames are parsed here: None until the first data after the handshake.
    fast_frames: bool | None = None
    _partial = b""  # the start of a frame not yet complete (fast path)

    def data_received(self, data: bytes) -> None:
        fast = self.fast_frames
        if fast is None:
            if not self.handshake_complete:
                if self.handshake_initiated:
                    self.fast_frames = False  # frames before the accept: websockets' from here
                super().data_received(data)
                return
            conn = self.conn
            fast = self.fast_frames = (
                conn.state is State.OPEN
                and not conn.extensions
                and not conn.reader.buffer
                and not self.close_sent
            )
        if not fast:
            super().data_received(data)
            return
        self._take_frames(self._partial + data if self._partial else data)

    def _take_frames(self, buf: bytes) -> None:
        self._partial = b""
        size = len(buf)
        limit = self.conn.max_message_size
        pos = 0
        while size - pos >= 2:
            first, second = buf[pos], buf[pos + 1]
            length = second & 0x7F
            head = pos + 2
            if length == 126:
                if size - head < 2:
                    break
                length = int.from_bytes(buf[head : head + 2], "big")
                head += 2
            elif length == 127:
                if size - head < 8:
                    break
                length = int.from_bytes(buf[head : head + 8], "big")
                head += 8
            simple = first == 0x81  # FIN, no extension bits, text
            if (
                not second & 0x80  # unmasked: a protocol error websockets reports
                or (limit is not None and length > limit)
                or (not simple and first & 0x0F < 8)  # a data frame we do not take
            ):
                self.fast_frames = False
                super().data_received(buf[pos:])
                return
            end = head + 4 + length
            if end > size:
                break
            if simple:
                self._deliver(apply_mask(buf[head + 4 : end], buf[head : head + 4]), text=True)
            else:  # ping, pong or close: websockets answers and keeps its state
                super().data_received(buf[pos:end])
                if self.conn.state is not State.OPEN or self.close_sent:
                    self.fast_frames = False
                    if end < size:
                        super().data_received(buf[end:])
                    return
            pos = end
        if pos < size:
            self._partial = buf[pos:]

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

    def handle_connect(self, event: Request) -> None:
        super().handle_connect(event)
        scope = getattr(self, "scope", None)  # absent when the handshake was refused
        if scope is not None:
            scope["extensions"][TEXT_FRAMES] = {
                "send": self.send_text_bytes,
                "receive": self.receive,
            }

    async def send_text_bytes(self, payload: bytes) -> None:
        """Send UTF-8 `payload` as one text frame (server frames are not masked)."""
        await self.writable.wait()
        if self.disconnected or self.close_sent or self.transport.is_closing():
            raise WebSocketDisconnect(1006)
        if self.conn.extensions:  # permessage-deflate: websockets compresses and frames it
            self.conn.send_text(payload)
            self.transport.write(b"".join(self.conn.data_to_send()))
            return
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x81, size)
        elif size < 1 << 16:
            header = struct.pack("!BBH", 0x81, 126, size)
        else:
            header = struct.pack("!BBQ", 0x81, 127, size)
        self.transport.writelines((header, payload))
