"""The agent socket's common case, compiled: whole masked text frames parsed and applied.

An agent sends text frames, one message each (or a batch), and little else. `TextFrames` takes
them out of the bytes each read gives and hands each to the ingest's `take_text`. What that
leaves, when it has to wait, runs until it first waits, as `agent_socket.AgentSocket` would.
The start of an incomplete frame is kept for the next read. It stops at the first frame it does
not take: any other opcode (pings, pongs, closes, fragments, binary), an unmasked or oversized
frame, or text that is not UTF-8; the socket parses that frame itself. It stops too after a
frame whose handler waits or fails, and the socket goes on from there.

It lives apart from the socket because the socket cannot be compiled (it changes its own class
to become uvicorn's protocol for requests it does not take), and this loop runs for every event.
The server's frames are built here too, for the same reason: the live stream sends a few to
each console at every turn of a busy loop.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, Final, Protocol

from .connection import AgentConnection

try:  # the C version that ships with websockets' wheels
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

# The names the per-frame loop reads are Final ("Compiled modules" in docs/architecture.md).
_unmask: Final = apply_mask

TEXT: Final = 0x81  # FIN and the text opcode: a whole text frame

# Why `take` stopped.
DONE: Final = 0  # every frame was taken; the start of an incomplete one is kept in `partial`
OTHER: Final = 1  # at a frame this does not take: `rest` starts with it
WAITS: Final = 2  # after a frame whose handler waits (`waiting`, `waited_on`): `rest` follows it
FAILED: Final = 3  # after a frame whose handler raised `error`: `rest` follows it


def frame_at(buf: bytes, pos: int) -> tuple[int, int, int, int]:
    """The client frame at `pos` (at least two bytes there): its first two bytes, where its
    mask key starts, and its payload's length, which is -1 while the header is incomplete.
    """
    second = buf[pos + 1]
    length = second & 0x7F
    head = pos + 2
    if length == 126:
        if len(buf) - head < 2:
            return buf[pos], second, head, -1
        length = buf[head] << 8 | buf[head + 1]
        head += 2
    elif length == 127:
        if len(buf) - head < 8:
            return buf[pos], second, head, -1
        length = int.from_bytes(buf[head : head + 8], "big")
        head += 8
    return buf[pos], second, head, length


def frame_header(first: int, size: int) -> bytes:
    """The header of a server frame (never masked): `first` is the FIN bit and opcode byte."""
    if size < 126:
        return bytes((first, size))
    if size < 1 << 16:
        return bytes((first, 126, size >> 8, size & 0xFF))
    return bytes((first, 127)) + size.to_bytes(8, "big")


def text_frame_parts(payloads: list[bytes]) -> list[bytes]:
    """Each UTF-8 payload behind its text frame's header, for one `writelines`."""
    parts: list[bytes] = []
    for payload in payloads:
        parts.append(frame_header(TEXT, len(payload)))
        parts.append(payload)
    return parts


class Ingest(Protocol):
    """What the frames go to: `IngestService`, or a test's stand-in."""

    def take_text(self, conn: AgentConnection, text: str) -> Coroutine[Any, Any, None] | None: ...


class TextFrames:
    """One agent connection's fast path; the socket takes out what `take` leaves."""

    def __init__(self, ingest: Ingest, conn: AgentConnection, limit: int) -> None:
        self.ingest = ingest
        self.conn = conn
        self.limit = limit  # the largest payload taken, in bytes
        self.partial = b""  # the start of a frame not yet whole
        self.rest = b""
        self.waiting: Coroutine[Any, Any, None] | None = None
        self.waited_on: Any = None
        self.error: Exception | None = None

    def take(self, data: bytes) -> int:
        """Apply the whole text frames in what was kept and `data`; why it stopped (DONE ...)."""
        buf = self.partial + data if self.partial else data
        self.partial = b""
        pos, stop = self.apply(buf, 0)
        if stop == DONE:
            if pos < len(buf):
                self.partial = buf[pos:]
        else:
            self.rest = buf[pos:]
        return stop

    def apply(self, buf: bytes, pos: int) -> tuple[int, int]:
        """Apply the whole text frames in `buf` from `pos` on: where and why it stopped.

        On WAITS and FAILED the position is just past the frame whose handler waits or raised.
        The caller takes `waiting` and `waited_on`, or `error`, out before the next call.
        """
        size = len(buf)
        ingest = self.ingest
        conn = self.conn
        while size - pos >= 2:
            first, second, head, length = frame_at(buf, pos)
            if first != TEXT or not second & 0x80:
                return pos, OTHER
            if length < 0:
                break
            if length > self.limit:
                return pos, OTHER
            end = head + 4 + length
            if end > size:
                break
            payload: bytes = _unmask(buf[head + 4 : end], buf[head : head + 4])
            try:
                text = payload.decode()
            except UnicodeDecodeError:  # the socket answers it (the codec names the fault)
                return pos, OTHER
            try:
                rest = ingest.take_text(conn, text)
                if rest is None:  # the common case: handled, nothing raised, no coroutine
                    pos = end
                    continue
                waited_on = rest.send(None)
            except StopIteration:
                pos = end
                continue
            except Exception as exc:
                self.error = exc
                return end, FAILED
            self.waiting = rest
            self.waited_on = waited_on
            return end, WAITS
        return pos, DONE


__all__ = [
    "DONE",
    "FAILED",
    "OTHER",
    "WAITS",
    "TextFrames",
    "frame_at",
    "frame_header",
    "text_frame_parts",
]
