"""Frames as TCP delivers them: split anywhere, mixed with control frames and fragments.

The server parses whole, final text frames itself (src/aster_studio/ws_protocol.py) and hands
everything else to websockets; these tests hold the two paths to the same result.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Iterator

import orjson

from tests.integration.test_frame_fuzz import frame, handshake
from tests.support.api import events, wait_for
from tests.support.server import StudioProcess


def trickle(sock: socket.socket, data: bytes, rng: random.Random) -> None:
    """Send `data` in pieces of 1 to 9 bytes, each its own TCP segment."""
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    pos = 0
    while pos < len(data):
        step = rng.randrange(1, 10)
        sock.sendall(data[pos : pos + step])
        pos += step
        time.sleep(0.0005)


def text(message: dict[str, object]) -> bytes:
    return frame(1, orjson.dumps(message))


def read_frames(sock: socket.socket, wanted: int, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """Read `wanted` server frames (unmasked, short): (opcode, payload) each."""
    sock.settimeout(timeout)
    buf, found = b"", []
    while len(found) < wanted:
        chunk = sock.recv(65536)
        assert chunk, "the server closed the connection"
        buf += chunk
        while len(buf) >= 2:
            length, head = buf[1] & 0x7F, 2
            if length == 126:
                length, head = int.from_bytes(buf[2:4], "big"), 4
            if len(buf) < head + length:
                break
            found.append((buf[0] & 0x0F, buf[head : head + length]))
            buf = buf[head + length :]
    return found


@contextlib.contextmanager
def greeted(port: int) -> Iterator[socket.socket]:
    """A raw agent socket past the opening handshake and the greeting, closed afterwards."""
    sock = handshake(port)
    try:
        read_frames(sock, 1)
        yield sock
    finally:
        sock.close()


def test_frames_split_anywhere_are_read_whole(studio: StudioProcess) -> None:
    rng = random.Random(7)
    with greeted(studio.port) as sock:
        stream = text({"type": "register", "agent": {"id": "split"}})
        for i in range(40):
            # Short, 16-bit-length and multi-byte UTF-8 payloads, and pings between them.
            body = "é" * rng.choice([1, 60, 200])
            stream += text(
                {"type": "event", "agent_id": "split", "event": {"type": "x", "i": i, "s": body}}
            )
            if i % 10 == 0:
                stream += frame(9, b"p%d" % i)
        trickle(sock, stream, rng)
        replies = read_frames(sock, 5)  # `registered` and four pongs, in some order
        assert sorted(p for op, p in replies if op == 0xA) == [b"p0", b"p10", b"p20", b"p30"]
        stored = wait_for(lambda: events(studio.http_url, "agent_id=split"), lambda e: len(e) == 40)
        assert [e["event"]["i"] for e in stored] == list(range(40))
        assert all(set(e["event"]["s"]) == {"é"} for e in stored)


def test_a_fragmented_message_after_whole_frames_is_read_too(studio: StudioProcess) -> None:
    with greeted(studio.port) as sock:
        whole = text({"type": "event", "agent_id": "frag", "event": {"type": "x", "n": 1}})
        parts = orjson.dumps({"type": "event", "agent_id": "frag", "event": {"type": "x", "n": 2}})
        half = len(parts) // 2
        fragmented = frame(1, parts[:half], fin=False) + frame(9, b"mid") + frame(0, parts[half:])
        after = text({"type": "event", "agent_id": "frag", "event": {"type": "x", "n": 3}})
        trickle(sock, whole + fragmented + after, random.Random(3))
        assert read_frames(sock, 1) == [(0xA, b"mid")]
        stored = wait_for(lambda: events(studio.http_url, "agent_id=frag"), lambda e: len(e) == 3)
        assert [e["event"]["n"] for e in stored] == [1, 2, 3]


def test_an_oversized_frame_after_whole_frames_closes_with_1009(studio: StudioProcess) -> None:
    with greeted(studio.port) as sock:
        whole = text({"type": "event", "agent_id": "big", "event": {"type": "x"}})
        sock.sendall(whole + frame(1, b"x" * 16, declared=2**20 + 1))
        ((opcode, payload),) = read_frames(sock, 1)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1009)
        assert len(wait_for(lambda: events(studio.http_url, "agent_id=big"), len)) == 1
