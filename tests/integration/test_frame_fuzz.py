"""A frame-level fuzzer against the running server: garbage never takes it down."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import socket
import struct
import time

import psutil

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, wait_for
from tests.support.server import StudioProcess

ROUNDS = 300
SEED = 20261125


def handshake(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf is not None:  # before connecting: the window is agreed then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(5)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            "GET /v1/remote-agents/connect HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    # One byte at a time: a frame the server sends right after the 101 (the greeting) stays in
    # the socket for the caller instead of being read and dropped with the headers.
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        response += byte
    assert response.startswith(b"HTTP/1.1 101"), response[:100]
    return sock


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = True,
    declared: int | None = None,
) -> bytes:
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    length = len(payload) if declared is None else declared
    bit = 0x80 if mask else 0
    if length < 126:
        head += bytes([bit | length])
    elif length < 65536:
        head += bytes([bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def garbage(rng: random.Random) -> bytes:
    """One hostile byte sequence: a random pick of the kinds of broken frames."""
    kind = rng.randrange(9)
    text = rng.choice(
        [
            b'{"type":"ping"}',
            b'{"type":"event","agent_id":"f","event":{}}',
            b"\xff\xfe",
            rng.randbytes(rng.randrange(1, 200)),
        ]
    )
    if kind == 0:
        return rng.randbytes(rng.randrange(1, 300))  # pure noise
    if kind == 1:
        return frame(1, text)[: rng.randrange(1, 8)]  # truncated header
    if kind == 2:  # fragmented text with continuation frames, maybe never finished
        half = len(text) // 2
        return frame(1, text[:half], fin=False) + (
            frame(0, text[half:]) if rng.random() < 0.5 else b""
        )
    if kind == 3:
        return frame(rng.choice([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]), text)  # reserved opcodes
    if kind == 4:
        return frame(1, text, rsv=rng.randrange(1, 8))  # reserved bits
    if kind == 5:
        return frame(9, rng.randbytes(200))  # control frame over 125 bytes
    if kind == 6:
        return frame(1, text, mask=False)  # unmasked client frame
    if kind == 7:
        return frame(1, b"x" * 16, declared=rng.choice([2**20 + 1, 2**40, 2**63 - 1]))  # oversized
    return frame(2, rng.randbytes(rng.randrange(0, 100))) + frame(8, b"\x03\xe8")  # binary + close


def test_frame_garbage_never_takes_the_server_down(studio: StudioProcess) -> None:
    rng = random.Random(SEED)
    assert studio.proc is not None
    server = psutil.Process(studio.proc.pid)
    with RawAgent(studio.agent_url) as witness:
        witness.request(register("witness"))
        baseline = server.memory_info().rss
        deadline = time.monotonic() + 60
        for round_no in range(ROUNDS):
            assert time.monotonic() < deadline, f"fuzzing too slow at round {round_no}"
            sock = handshake(studio.port)
            # The server may close on us at any point: that is its right.
            with contextlib.suppress(TimeoutError, ConnectionError):
                sock.sendall(garbage(rng))
                sock.settimeout(0.05)
                sock.recv(4096)
            sock.close()
            if round_no % 50 == 0:
                witness.send(event("witness", "x", round=round_no))
                assert witness.request({"type": "ping"}) == {"type": "pong"}
        grown = server.memory_info().rss - baseline
    assert server.is_running()
    assert call(studio.http_url, "/healthz")[0] == 200
    assert (
        len(wait_for(lambda: events(studio.http_url, "agent_id=witness"), lambda e: len(e) == 6))
        == 6
    )
    assert grown < 64 * 1024 * 1024, f"server grew {grown / 1e6:.1f} MB under fuzzing"
