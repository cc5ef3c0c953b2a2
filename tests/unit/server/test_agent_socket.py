"""The agent socket's pure parts: the upgrade request, the accept key, and running a handler."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from types import SimpleNamespace
from typing import Any

import pytest
from websockets.frames import Frame, Opcode
from websockets.streams import StreamReader

from aster_studio.agent_socket import AgentSocket, Keepalive, accept_key, finish, parse_upgrade
from aster_studio.config import Settings
from aster_studio.ingest.connection import AgentConnection
from aster_studio.ingest.frames import text_frame_parts

RFC_REQUEST = (
    b"GET /v1/remote-agents/connect?token=t HTTP/1.1\r\nHost: server.example.com\r\n"
    b"Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def test_the_rfc_example_is_accepted_with_its_key() -> None:
    parsed = parse_upgrade(RFC_REQUEST)
    assert parsed is not None
    method, target, headers = parsed
    assert (method, target) == (b"GET", b"/v1/remote-agents/connect?token=t")
    assert accept_key(headers) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455, section 1.3


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"Upgrade: websocket", b"Upgrade: h2c"),
        (b"Connection: keep-alive, Upgrade", b"Connection: keep-alive"),
        (b"Version: 13", b"Version: 8"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!"),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"c2hvcnQ="),  # 5 bytes, not 16
    ],
)
def test_an_upgrade_websockets_would_refuse_is_not_taken(old: bytes, new: bytes) -> None:
    parsed = parse_upgrade(RFC_REQUEST.replace(old, new))
    assert parsed is not None
    assert accept_key(parsed[2]) is None


def test_a_repeated_key_header_is_not_taken() -> None:
    doubled = RFC_REQUEST.replace(
        b"\r\n\r\n", b"\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    )
    parsed = parse_upgrade(doubled)
    assert parsed is not None and accept_key(parsed[2]) is None


@pytest.mark.parametrize(
    "head", [b"GET / HTTP/1.0\r\n\r\n", b"nonsense\r\n\r\n", b"GET / HTTP/1.1\r\nbad\r\n\r\n"]
)
def test_a_malformed_request_head_is_none(head: bytes) -> None:
    assert parse_upgrade(head) is None


async def _started(handling: Any) -> Any:
    """Take the first step of `handling` as the agent socket does, then finish it in a task."""
    waited_on = handling.send(None)
    return asyncio.get_running_loop().create_task(finish(handling, waited_on))


async def test_finish_runs_the_rest_of_a_handler_through_every_kind_of_wait() -> None:
    steps: list[object] = []
    loop = asyncio.get_running_loop()
    later: asyncio.Future[str] = loop.create_future()
    failing: asyncio.Future[str] = loop.create_future()

    async def handler() -> None:
        steps.append("first")
        await asyncio.sleep(0)
        steps.append(await later)
        try:
            await failing
        except ValueError as exc:
            steps.append(str(exc))
        await asyncio.sleep(0.01)
        steps.append("done")

    task = await _started(handler())
    assert steps == ["first"]
    loop.call_later(0.01, later.set_result, "result")
    loop.call_later(0.02, failing.set_exception, ValueError("raised"))
    await asyncio.wait_for(task, 5)
    assert steps == ["first", "result", "raised", "done"]


async def test_cancelling_the_task_cancels_the_handler_where_it_waits() -> None:
    seen: list[str] = []
    never: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def handler() -> None:
        await asyncio.sleep(0)
        try:
            await never
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = await _started(handler())
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]
    assert never.cancelled()


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.paused = False
        self.closed = False
        self.eof_written = False

    def write(self, data: bytes) -> None:
        assert not self.eof_written, "written after the end of the stream"
        self.written += data

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else None


class FakeIngest:
    """Records what it handles; `wait` waits for `gate`, `boom` fails."""

    def __init__(self) -> None:
        self.connections: dict[int, Any] = {}
        self.stats = SimpleNamespace(refused=0)
        self.handled: list[str] = []
        self.closed: list[Any] = []
        self.gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def open_connection(self, remote: str) -> AgentConnection:
        conn = AgentConnection(1, remote, 10)
        self.connections[1] = conn
        return conn

    def close_connection(self, conn: AgentConnection) -> None:
        self.closed.append(conn)

    def take_text(self, conn: AgentConnection, text: str) -> Coroutine[Any, Any, None] | None:
        if text == "boom":
            raise RuntimeError("boom")
        if text == "wait":
            return self.handle_text(conn, text)
        self.handled.append(text)
        return None

    async def handle_text(self, conn: AgentConnection, text: str) -> None:
        if text == "wait":
            await self.gate
        self.handled.append(text)

    async def handle_invalid_text(self, conn: AgentConnection, data: bytes) -> None:
        self.handled.append(f"invalid {data!r}")


def _socket() -> tuple[AgentSocket, FakeTransport, FakeIngest]:
    ingest = FakeIngest()
    studio: Any = SimpleNamespace(
        settings=Settings(), auth=SimpleNamespace(enabled=False), ingest=ingest
    )
    config = SimpleNamespace(root_path="")
    server_state = SimpleNamespace(connections=set(), tasks=set(), default_headers=[])
    sock = AgentSocket(studio, Keepalive(0, 0, 0), config, server_state, None)
    transport = FakeTransport()
    sock.connection_made(transport)  # type: ignore[arg-type]
    sock.data_received(RFC_REQUEST)
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    transport.written = b""
    return sock, transport, ingest


def _frame(first: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([first]) + length + mask + masked


def _text(payload: bytes) -> bytes:
    return _frame(0x81, payload)


@pytest.mark.parametrize("chunk", [1, 3, 7, 1000])
async def test_frames_split_across_reads_are_applied_whole_and_in_order(chunk: int) -> None:
    sock, transport, ingest = _socket()
    texts = [b"a", b"b" * 300, b"c", b"d" * 126]  # 16-bit lengths among them
    data = b"".join(_text(t) for t in texts)
    for start in range(0, len(data), chunk):
        sock.data_received(data[start : start + chunk])
    assert ingest.handled == [t.decode() for t in texts]
    assert transport.written == b"" and not transport.closed


async def test_a_ping_between_text_frames_is_answered_and_the_text_around_it_applied() -> None:
    sock, transport, ingest = _socket()
    sock.data_received(_text(b"a") + _frame(0x89, b"hi") + _text(b"b"))
    assert ingest.handled == ["a", "b"]
    assert transport.written == b"\x8a\x02hi"  # the pong, unmasked


async def test_text_that_is_not_utf8_is_answered_and_the_frames_after_it_applied() -> None:
    sock, transport, ingest = _socket()
    sock.data_received(_text(b"a") + _text(b"\xff") + _text(b"b"))
    assert ingest.handled == ["a", "invalid b'\\xff'", "b"]


async def test_a_waiting_handler_holds_the_rest_of_the_read_in_order() -> None:
    sock, transport, ingest = _socket()
    sock.data_received(b"".join(_text(t) for t in (b"a", b"wait", b"b", b"c")))
    assert ingest.handled == ["a"]  # applied in data_received; `wait` waits
    assert transport.paused
    ingest.gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ingest.handled == ["a", "wait", "b", "c"]
    assert not transport.paused
    sock.connection_lost(None)
    assert len(ingest.closed) == 1


async def test_a_failing_handler_closes_with_1011_and_applies_nothing_after_it() -> None:
    sock, transport, ingest = _socket()
    sock.data_received(_text(b"boom") + _text(b"after"))
    assert ingest.handled == []
    assert transport.written[:1] == b"\x88"  # a close frame
    assert int.from_bytes(transport.written[2:4], "big") == 1011
    assert transport.closed


async def test_past_an_oversized_frame_the_rest_is_discarded_until_the_peer_closes() -> None:
    """A half-close after the 1009: the peer still sending its frame gets no reset, which
    could destroy the close frame before it is read."""
    sock, transport, ingest = _socket()
    size = (1 << 20) + 1
    sock.data_received(bytes([0x81, 0xFF]) + size.to_bytes(8, "big") + b"\x01\x02\x03\x04")
    assert int.from_bytes(transport.written[2:4], "big") == 1009
    assert transport.eof_written and not transport.closed
    sock.data_received(b"x" * 65_536 + _text(b"late"))  # the rest of it, and more
    assert ingest.handled == [] and not transport.closed
    assert sock.close_timer is not None  # the socket closes even if the peer never does
    sock.close_timer._run()
    assert transport.closed


async def test_a_socket_lost_while_a_handler_waits_is_closed_after_its_backlog() -> None:
    sock, transport, ingest = _socket()
    sock.data_received(b"".join(_text(t) for t in (b"wait", b"b")))
    sock.connection_lost(None)
    assert ingest.closed == []  # what was received is still being applied
    ingest.gate.set_result(None)
    for _ in range(5):
        await asyncio.sleep(0)
    assert ingest.handled == ["wait", "b"]
    assert len(ingest.closed) == 1


@pytest.mark.parametrize("size", [0, 125, 126, 65_535, 65_536, 70_000])
def test_server_text_frames_parse_as_websockets_reads_them(size: int) -> None:
    """`text_frame_parts`: each payload behind its header, whichever of the three lengths."""
    payloads = [b"x" * size, "é".encode()]
    reader = StreamReader()
    reader.feed_data(b"".join(text_frame_parts(payloads)))
    reader.feed_eof()
    for payload in payloads:
        parser = Frame.parse(reader.read_exact, mask=False)
        with pytest.raises(StopIteration) as done:
            next(parser)
        parsed = done.value.value
        assert parsed.opcode is Opcode.TEXT and parsed.fin and parsed.data == payload
