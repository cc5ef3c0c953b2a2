"""A minimal WebSocket client on asyncio streams, so the load generator is not the bottleneck.

Frames are built by hand with an all-zero mask key (legal in RFC 6455, and it makes masking a
no-op), so sending costs one bytes join per frame. permessage-deflate is supported for the
agent endpoint's on/off comparison (context takeover, as the websockets and ws clients use).
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import struct
import zlib

_ZERO_MASK = b"\0\0\0\0"
_TAIL = b"\x00\x00\xff\xff"
_WINDOW = re.compile(rb"client_max_window_bits=(\d+)")


class Closed(Exception):
    """The peer closed the connection (or it broke)."""


def frame(payload: bytes, opcode: int = 0x1, rsv1: bool = False) -> bytes:
    """Encode one client frame (FIN set, masked with a zero key)."""
    n = len(payload)
    b0 = 0x80 | (0x40 if rsv1 else 0) | opcode
    if n < 126:
        head = bytes((b0, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0xFE, n)
    else:
        head = struct.pack("!BBQ", b0, 0xFF, n)
    return head + _ZERO_MASK + payload


def upgrade_request(host: str, path: str, *, deflate: bool = False) -> bytes:
    """The opening handshake's request for `path`, with a fresh key."""
    key = base64.b64encode(os.urandom(16)).decode()
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
    return (
        f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{ext if deflate else ''}\r\n"
    ).encode()


class RawWebSocket:
    """One client connection: write pre-built frames, read whole messages."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        window_bits: int | None,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.deflate = window_bits is not None
        self._compress = (
            zlib.compressobj(6, zlib.DEFLATED, -window_bits, 8) if window_bits else None
        )
        self._inflate = zlib.decompressobj(-15) if window_bits else None
        self.bytes_sent = 0

    @classmethod
    async def connect(
        cls,
        host: str,
        port: int,
        path: str,
        *,
        deflate: bool = False,
        timeout: float = 10.0,
    ) -> RawWebSocket:
        """Open a TCP connection and perform the opening handshake."""
        request = upgrade_request(f"{host}:{port}", path, deflate=deflate)
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, limit=1 << 24)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            writer.close()
            raise Closed(f"handshake refused: {head[:80]!r}")
        window: int | None = None
        lower = head.lower()
        if deflate and b"permessage-deflate" in lower:
            found = _WINDOW.search(lower)
            window = int(found.group(1)) if found else 15
            window = max(window, 9)  # zlib cannot write raw deflate with an 8-bit window
        return cls(reader, writer, window)

    def encode(self, payload: bytes) -> bytes:
        """Return a text frame for `payload`, compressed when deflate was negotiated."""
        if self._compress is None:
            return frame(payload)
        data = self._compress.compress(payload) + self._compress.flush(zlib.Z_SYNC_FLUSH)
        return frame(data[:-4] if data.endswith(_TAIL) else data, rsv1=True)

    def write(self, data: bytes) -> None:
        self.bytes_sent += len(data)
        self.writer.write(data)

    def send(self, payload: bytes) -> None:
        self.write(self.encode(payload))

    @property
    def buffered(self) -> int:
        return self.writer.transport.get_write_buffer_size()

    async def recv(self) -> bytes:
        """Return the next data message; answer pings; raise Closed on close or EOF."""
        parts: list[bytes] = []
        compressed = False
        read = self.reader.readexactly
        try:
            while True:
                b0, b1 = await read(2)
                n = b1 & 0x7F
                if n == 126:
                    (n,) = struct.unpack("!H", await read(2))
                elif n == 127:
                    (n,) = struct.unpack("!Q", await read(8))
                if b1 & 0x80:
                    await read(4)  # a server never masks; tolerate it anyway
                payload = await read(n) if n else b""
                opcode = b0 & 0x0F
                if opcode == 0x9:
                    self.write(frame(payload, 0xA))
                    continue
                if opcode == 0xA:
                    continue
                if opcode == 0x8:
                    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                    raise Closed(f"closed by peer with {code}")
                if opcode in (0x1, 0x2):
                    parts = [payload]
                    compressed = bool(b0 & 0x40)
                else:
                    parts.append(payload)
                if b0 & 0x80:
                    data = parts[0] if len(parts) == 1 else b"".join(parts)
                    if compressed and self._inflate is not None:
                        data = self._inflate.decompress(data + _TAIL)
                    return data
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            raise Closed(str(exc)) from exc

    async def close(self) -> None:
        try:
            self.write(frame(struct.pack("!H", 1000), 0x8))
            self.writer.close()
            async with asyncio.timeout(2):
                await self.writer.wait_closed()
        except (OSError, TimeoutError):
            pass
