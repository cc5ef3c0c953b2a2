"""The agent endpoint's own WebSocket protocol: bytes from the socket straight into the ingest.

The ASGI route (api/remote.py) costs an agent connection a task, a queue, and a chain of a dozen
suspended middleware coroutines, about 31 KB per idle connection with uvicorn's protocol, and
each frame a queue hand-off and a task wake-up. Here a connection is this object and its
`AgentConnection`. Frames are parsed in `data_received`, and each message is applied there, by
running the ingest's handler until it first waits. Only a handler that waits (a rate limit, a
full write queue, a producer's resume point) gets a task, and reading pauses until it is done.
One timer serves every connection's keepalive pings and first-message deadline.

What it takes: a WebSocket upgrade to `/v1/remote-agents/connect` with a valid credential when
auth is on. Everything else (other paths, a refused credential, a handshake websockets would
reject) becomes uvicorn's protocol in place and goes to the ASGI app, which answers as before.

Frames: whole, final, masked text frames are parsed and applied by the compiled
`ingest.frames.TextFrames`; pings, pongs and the text it leaves (invalid UTF-8, a message while
a handler waits) are parsed here. The first other
frame (a fragment, binary, oversized or unmasked frame, a close) hands parsing to websockets'
sans-I/O `Protocol` for the rest of the connection, as does a close we send, and so does
permessage-deflate when it is enabled (`--ws-deflate`) and negotiated, from the start.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import logging
import random
import socket
import struct
from collections import deque
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from websockets.exceptions import InvalidHeader, NegotiationError
from websockets.extensions import Extension
from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.headers import build_extension, parse_extension
from websockets.protocol import Protocol, Side, State

from aster_studio_sdk.protocol import CloseCode

try:  # the C version that ships with websockets' wheels
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover
    from websockets.utils import apply_mask

from .api.guard import AGENT_PATH, agent_credential, is_agent_path
from .api.remote import GREETING
from .ingest.frames import DONE, FAILED, OTHER, WAITS, TextFrames, frame_at, frame_header
from .ws_protocol import AgentWebSocketProtocol

if TYPE_CHECKING:
    from .app import Studio
    from .ingest.connection import AgentConnection

log = logging.getLogger(__name__)

ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLOSE_TIMEOUT_S = 5.0  # how long a close we sent waits for the peer's before the socket closes

Handling = Coroutine[Any, Any, None]


def frame(first: int, payload: bytes) -> bytes:
    """A server frame (never masked): `first` is the FIN bit and opcode byte."""
    return frame_header(first, len(payload)) + payload


def parse_upgrade(request: bytes) -> tuple[bytes, bytes, dict[bytes, bytes]] | None:
    """(method, target, headers with lower-case names) of a whole HTTP/1.1 request head."""
    lines = request.split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3 or parts[2] != b"HTTP/1.1":
        return None
    headers: dict[bytes, bytes] = {}
    for line in lines[1:]:
        if not line:
            break
        name, sep, value = line.partition(b":")
        if not sep:
            return None
        name, value = name.strip().lower(), value.strip()
        headers[name] = headers[name] + b", " + value if name in headers else value
    return parts[0], parts[1], headers


def negotiate_deflate(offer: bytes) -> tuple[bytes, Extension] | None:
    """The Sec-WebSocket-Extensions answer and extension for an agent's permessage-deflate offer.

    None when no offer is acceptable (the connection goes on uncompressed); raises
    InvalidHeader for a malformed header. Window and memory settings are uvicorn's.
    """
    factory = ServerPerMessageDeflateFactory(
        server_max_window_bits=12, client_max_window_bits=12, compress_settings={"memLevel": 5}
    )
    for name, params in parse_extension(offer.decode("latin-1")):
        if name != factory.name:
            continue
        try:
            answer, extension = factory.process_request_params(params, [])
        except NegotiationError:
            continue
        return build_extension([(name, answer)]).encode(), extension
    return None


def accept_key(headers: dict[bytes, bytes]) -> bytes | None:
    """Sec-WebSocket-Accept for a valid version-13 upgrade request, else None."""
    if headers.get(b"upgrade", b"").lower() != b"websocket":
        return None
    tokens = [t.strip().lower() for t in headers.get(b"connection", b"").split(b",")]
    if b"upgrade" not in tokens or headers.get(b"sec-websocket-version") != b"13":
        return None
    key = headers.get(b"sec-websocket-key", b"")
    try:
        if len(base64.b64decode(key, validate=True)) != 16:
            return None
    except binascii.Error:
        return None
    return base64.b64encode(hashlib.sha1(key + ACCEPT_GUID).digest())


async def finish(handling: Handling, waited_on: Any) -> None:
    """Run the rest of a coroutine whose first step has run and yielded `waited_on`.

    This is what a Task does after each step; Python 3.12's eager tasks do it built in.
    """
    while True:
        try:
            try:
                if waited_on is None:  # asyncio.sleep(0)
                    await asyncio.sleep(0)
                else:
                    waited_on._asyncio_future_blocking = False
                    await asyncio.shield(waited_on)
            except BaseException as exc:  # its future failed, or this task was cancelled
                if waited_on is not None:
                    waited_on.cancel()
                waited_on = handling.throw(exc)
            else:
                waited_on = handling.send(None)
        except StopIteration:
            return


class Keepalive:
    """One timer for every agent socket: pings, pong deadlines and the first-message deadline."""

    def __init__(self, interval_s: float, timeout_s: float, first_message_s: float) -> None:
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.first_message_s = first_message_s
        spans = [s / 4 for s in (interval_s, timeout_s, first_message_s) if s > 0]
        self.tick_s = max(0.02, min([1.0, *spans]))
        self.sockets: set[AgentSocket] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, sock: AgentSocket) -> None:
        self.sockets.add(sock)
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.tick_s, self._run)

    def discard(self, sock: AgentSocket) -> None:
        self.sockets.discard(sock)

    def _run(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        for sock in list(self.sockets):
            sock.check(now)
        self._timer = loop.call_later(self.tick_s, self._run) if self.sockets else None


class AgentSocket(asyncio.Protocol):
    """One agent's WebSocket connection, from the upgrade request to `connection_lost`.

    No __slots__: a request this class does not take turns the object into uvicorn's protocol
    (uvicorn makes the object the transport's protocol right after the first data_received).
    """

    # Defaults on the class: an idle connection's instance dictionary holds only what changed.
    conn: AgentConnection | None = None
    text_frames: TextFrames | None = None  # the fast path, from the handshake on
    ws: Protocol | None = None  # websockets' parser, once a frame or a close needs it
    busy: asyncio.Task[None] | None = None  # a handler that waited, and the backlog after it
    backlog: deque[tuple[bytes, bool]] | None = None
    fragments: list[bytes] | None = None
    fragment_text = False
    read_paused = False
    writable: asyncio.Future[None] | None = None  # set while the transport's buffer is full
    closing = False  # we sent a close or the socket is gone: later messages are dropped
    lost = False
    close_timer: asyncio.TimerHandle | None = None
    first_by = 0.0  # loop time by which the first message must come, 0 once it came
    ping_at = 0.0
    pong_by = 0.0
    ping_payload: bytes | None = None
    heard = False  # anything came since the last ping: the peer is there
    answers_pings = False  # it answered one: its client reads

    def __init__(
        self, studio: Studio, keepalive: Keepalive, config: Any, server_state: Any, app_state: Any
    ) -> None:
        self.studio = studio
        self.keepalive = keepalive
        self.uvicorn = (config, server_state, app_state)
        self.transport: asyncio.Transport = None  # type: ignore[assignment]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    # ---- the upgrade ----

    def _handshake(self, request: bytes) -> None:
        settings = self.studio.settings
        config, server_state, _ = self.uvicorn
        parsed = parse_upgrade(request)
        accept = None
        if parsed is not None and parsed[0] == b"GET" and not config.root_path:
            path, _, query = parsed[1].partition(b"?")
            headers = parsed[2]
            if is_agent_path(unquote(path.decode("latin-1"))):
                accept = accept_key(headers)
        compression = None
        if accept is not None and settings.per_message_deflate:
            offer = headers.get(b"sec-websocket-extensions")
            try:
                compression = negotiate_deflate(offer) if offer else None
            except InvalidHeader:  # uvicorn's protocol refuses it with the reason
                accept = None
        if accept is None:
            self._become_uvicorn(request)
            return
        key = None
        if self.studio.auth.enabled:
            key, refusal = agent_credential(self.studio.auth, headers, query)
            if refusal is not None:  # the ASGI guard answers it, with the reason
                self._become_uvicorn(request)
                return
        server_state.connections.add(self)
        head = [
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        ]
        head.append(b"Sec-WebSocket-Accept: " + accept + b"\r\n")
        if compression is not None:
            head.append(b"Sec-WebSocket-Extensions: " + compression[0] + b"\r\n")
            self._websockets().extensions = [compression[1]]  # every frame through websockets
        head.extend(b"%s: %s\r\n" % pair for pair in server_state.default_headers)
        head.append(b"\r\n")
        self.transport.write(b"".join(head))
        ingest = self.studio.ingest
        if len(ingest.connections) >= settings.max_agent_connections:
            ingest.stats.refused += 1
            self._close(CloseCode.TRY_AGAIN_LATER, "too many agent connections")
            return
        peer = self.transport.get_extra_info("peername")
        conn = ingest.open_connection(f"{peer[0]}:{peer[1]}" if peer else "?")
        log.info('%s - "WebSocket %s" [accepted]', conn.remote, AGENT_PATH)
        conn.key = key
        self.conn = conn
        self.text_frames = TextFrames(ingest, conn, settings.max_frame_bytes)
        self._write_text(GREETING.encode())
        conn.attach(self._send_text, self._close_async)
        now = asyncio.get_running_loop().time()
        if settings.handshake_timeout_s > 0:
            self.first_by = now + settings.handshake_timeout_s
        self.ping_at = now + self.keepalive.interval_s
        self.keepalive.add(self)
        self._keep_tcp_alive()

    def _keep_tcp_alive(self) -> None:
        """Let the kernel tell whether a peer that never reads is still there: its own TCP
        stack answers keepalive probes, where a ping needs its client to read. Linux probes
        only an idle connection: one with data unacknowledged (our pings) is bounded by the
        user timeout instead, else it would wait out some 15 minutes of retransmissions."""
        interval, timeout = self.keepalive.interval_s, self.keepalive.timeout_s
        sock = self.transport.get_extra_info("socket")
        if interval <= 0 or timeout <= 0 or sock is None or not hasattr(socket, "TCP_KEEPIDLE"):
            return
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, round(interval)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, round(timeout / 4)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 4)
            if hasattr(socket, "TCP_USER_TIMEOUT"):
                user_timeout = max(60.0, 3 * (interval + timeout))
                sock.setsockopt(
                    socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(user_timeout * 1000)
                )
        except OSError:  # not TCP (a test's transport): pings alone, then
            pass

    def _become_uvicorn(self, request: bytes) -> None:
        """Hand this connection to uvicorn's protocol and the ASGI app, from its first byte."""
        config, server_state, app_state = self.uvicorn
        transport = self.transport
        this: Any = self
        this.__dict__.clear()
        this.__class__ = AgentWebSocketProtocol
        AgentWebSocketProtocol.__init__(
            this, config=config, server_state=server_state, app_state=app_state
        )
        this.connection_made(transport)
        this.data_received(request)

    # ---- frames in ----

    def data_received(self, data: bytes) -> None:
        self.heard = True
        text_frames = self.text_frames
        if self.ws is not None:
            self._feed(data)
        elif text_frames is None:
            self._handshake(data)
        elif self.busy is not None or self.closing:
            self._take(data)
        else:
            stop = text_frames.take(data)  # the common case, compiled
            if stop != DONE:
                rest, text_frames.rest = text_frames.rest, b""
                if self._handled(stop):
                    self._take(rest)
                else:
                    text_frames.partial = rest
                    self._feed(b"")

    def _handled(self, stop: int) -> bool:
        """After the fast path stopped: False if a handler failed and the socket is closing."""
        text_frames = self.text_frames
        assert text_frames is not None
        if stop == WAITS:
            assert text_frames.waiting is not None
            self._wait(text_frames.waiting, text_frames.waited_on)
            text_frames.waiting = text_frames.waited_on = None
        elif stop == FAILED:
            assert text_frames.error is not None
            error, text_frames.error = text_frames.error, None
            self._failed(error)
            return False
        return True

    def _take(self, data: bytes) -> None:
        """Parse whole text, ping and pong frames; anything else goes to websockets.

        Runs of text frames go through the fast path while no handler waits.
        """
        text_frames = self.text_frames
        assert text_frames is not None
        buf = text_frames.partial + data if text_frames.partial else data
        text_frames.partial = b""
        size = len(buf)
        limit = self.studio.settings.max_frame_bytes
        pos = 0
        while size - pos >= 2:
            if self.busy is None and not self.closing:
                pos, stop = text_frames.apply(buf, pos)
                if stop == DONE:
                    break
                if not self._handled(stop):
                    text_frames.partial = buf[pos:]
                    self._feed(b"")
                    return
                if stop != OTHER:
                    continue
            first, second, head, length = frame_at(buf, pos)
            if length < 0:
                break
            if (
                not second & 0x80  # unmasked: a protocol error websockets reports
                or length > limit
                or (first != 0x81 and (first not in (0x89, 0x8A) or length > 125))
            ):
                text_frames.partial = buf[pos:]
                self._feed(b"")
                return
            end = head + 4 + length
            if end > size:
                break
            payload = apply_mask(buf[head + 4 : end], buf[head : head + 4])
            if first == 0x81:
                self._message(payload, True)
                if self.ws is not None:  # the handler failed and the socket is closing
                    text_frames.partial = buf[end:]
                    self._feed(b"")
                    return
            elif first == 0x89:
                self._ping(payload)
            else:
                self._pong(payload)
            pos = end
        if pos < size:
            text_frames.partial = buf[pos:]

    def _ping(self, payload: bytes) -> None:
        """Answer a WebSocket ping, unless our writes wait on a peer that does not read: its
        pongs would pile up without bound (RFC 6455 lets an endpoint answer only the latest
        ping). A ping is a message for the first-message deadline, as a JSON ping is."""
        self.first_by = 0.0
        if self.writable is None:
            self.transport.write(frame(0x8A, payload))
        else:
            self._drop_reply()

    def _drop_reply(self) -> None:
        if self.conn is not None:
            self.conn.dropped_replies += 1

    def _websockets(self) -> Protocol:
        """websockets' parser for the rest of the connection, fed what the fast path holds."""
        ws = self.ws
        if ws is None:
            limit = self.studio.settings.max_frame_bytes
            ws = self.ws = Protocol(Side.SERVER, state=State.OPEN, max_size=limit)
            text_frames = self.text_frames
            if text_frames is not None and text_frames.partial:
                ws.receive_data(text_frames.partial)
                text_frames.partial = b""
        return ws

    def _feed(self, data: bytes) -> None:
        ws = self._websockets()
        if data:
            ws.receive_data(data)
        for event in ws.events_received():
            if not isinstance(event, Frame):  # a server protocol past its handshake: frames only
                continue
            opcode = event.opcode
            if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
                if event.fin:
                    self._message(bytes(event.data), opcode is Opcode.TEXT)
                else:
                    self.fragments, self.fragment_text = [bytes(event.data)], opcode is Opcode.TEXT
            elif opcode is Opcode.CONT and self.fragments is not None:
                self.fragments.append(bytes(event.data))
                if event.fin:
                    whole, self.fragments = b"".join(self.fragments), None
                    self._message(whole, self.fragment_text)
            elif opcode is Opcode.PING:
                self.first_by = 0.0  # websockets queued the pong; `_flush` may drop it
            elif opcode is Opcode.PONG:
                self._pong(bytes(event.data))
            elif opcode is Opcode.CLOSE:
                self.closing = True  # websockets has queued the echo
        self._flush()

    def _flush(self) -> None:
        """Write what websockets queued; close the socket when the closing handshake says so."""
        ws = self._websockets()
        out = ws.data_to_send()
        for chunk in out:
            if chunk:
                # One frame a chunk; 0x8A starts a pong (ours are unmasked, unfragmented).
                if chunk[0] == 0x8A and self.writable is not None:
                    self._drop_reply()
                    continue
                self.transport.write(chunk)
        if ws.state is State.CLOSED:
            self.transport.close()
        elif out and not out[-1] and self.transport.can_write_eof():
            # b"": websockets ends our side of the stream. A half-close, as websockets' own
            # asyncio layer does: what the peer still sends (the rest of an oversized frame,
            # say) is read and discarded until it closes too, instead of a reset that could
            # destroy the close frame, and its reason, before the peer reads them.
            self.transport.write_eof()
            if self.close_timer is None:
                loop = asyncio.get_running_loop()
                self.close_timer = loop.call_later(CLOSE_TIMEOUT_S, self.transport.close)
        elif out and not out[-1]:
            self.transport.close()
        elif ws.close_expected() and self.close_timer is None:
            loop = asyncio.get_running_loop()
            self.close_timer = loop.call_later(CLOSE_TIMEOUT_S, self.transport.close)

    # ---- messages ----

    def _message(self, data: bytes, text: bool) -> None:
        if self.closing:  # past our close: dropped, as the peer's close is awaited
            return
        self.first_by = 0.0
        if self.busy is not None:  # reading is paused: these are the rest of one read
            if self.backlog is None:
                self.backlog = deque()
            self.backlog.append((data, text))
            return
        handling = self._handling(data, text)
        try:
            waited_on = handling.send(None)
        except StopIteration:
            return
        except Exception as exc:
            self._failed(exc)
            return
        self._wait(handling, waited_on)

    def _failed(self, error: Exception) -> None:
        log.error("agent message handler failed; closing the connection", exc_info=error)
        self._fail(CloseCode.INTERNAL_ERROR, "internal error")

    def _wait(self, handling: Handling, waited_on: Any) -> None:
        """The handler waits: it finishes in a task.

        Reading pauses until it and the rest of this read are handled, in order.
        """
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        task = asyncio.get_running_loop().create_task(self._finish(handling, waited_on))
        self.busy = task
        tasks = self.uvicorn[1].tasks
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def _handling(self, data: bytes, text: bool) -> Handling:
        ingest, conn = self.studio.ingest, self.conn
        assert conn is not None
        if not text:
            return ingest.handle_binary(conn)
        try:
            return ingest.handle_text(conn, data.decode())
        except UnicodeDecodeError:
            return ingest.handle_invalid_text(conn, data)

    async def _finish(self, handling: Handling, waited_on: Any) -> None:
        try:
            await finish(handling, waited_on)
            while self.backlog:
                await self._handling(*self.backlog.popleft())
        except Exception:
            log.exception("agent message handler failed; closing the connection")
            self._fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            self.busy = None
            if self.lost:
                self._finalize()
            elif self.read_paused and not self.transport.is_closing():
                self.read_paused = False
                self.transport.resume_reading()

    # ---- frames out ----

    async def _send_text(self, text: str) -> None:
        while self.writable is not None:
            await self.writable
        ws = self.ws
        if self.lost or (ws is not None and ws.state is not State.OPEN):
            return  # the socket is going: replies to it are dropped
        self._write_text(text.encode())

    def _write_text(self, payload: bytes) -> None:
        ws = self.ws
        if ws is not None and ws.extensions:  # compressed: websockets frames it
            ws.send_text(payload)
            self._flush()
        else:
            self.transport.write(frame(0x81, payload))

    async def _close_async(self, code: int, reason: str) -> None:
        self._close(code, reason)

    def _close(self, code: int, reason: str) -> None:
        """Start the closing handshake: send our close, await the peer's (with a deadline)."""
        if self.lost or self.closing:
            return
        self.closing = True
        self._websockets().send_close(code, reason)
        self._flush()

    def _fail(self, code: int, reason: str) -> None:
        """Send a close frame and close the socket without waiting for the peer's."""
        if self.lost:
            return
        self.closing = True
        ws = self._websockets()
        if ws.state is State.OPEN:
            ws.fail(code, reason)
            self._flush()
        self.transport.close()

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    # ---- keepalive and the end ----

    def check(self, now: float) -> None:
        """Called by the keepalive timer: deadlines, and a ping when one is due."""
        if self.first_by and now >= self.first_by:
            self.first_by = 0.0
            # The fast path does not clear `first_by`; it counts each text frame it applies.
            if self.conn is None or self.conn.received == 0:
                self._close(CloseCode.POLICY_VIOLATION, "no message within timeout")
        elif self.pong_by:
            if now >= self.pong_by:
                self.pong_by = 0.0
                # Anything received since the ping answers it. A peer that never answered a
                # ping may be a client that never reads (the original document's may not):
                # TCP keepalive finds it gone. One that answered before and now neither
                # answers nor sends has stopped reading: its client is stuck.
                if not self.heard and self.answers_pings:
                    self._fail(CloseCode.INTERNAL_ERROR, "keepalive ping timeout")
        elif self.keepalive.interval_s > 0 and now >= self.ping_at and not self.closing:
            self.heard = False
            payload = struct.pack("!I", random.getrandbits(32))
            self.ping_payload = payload
            self.ping_at = now + self.keepalive.interval_s
            if self.keepalive.timeout_s > 0:
                self.pong_by = now + self.keepalive.timeout_s
            if self.ws is None:
                self.transport.write(frame(0x89, payload))
            else:
                self.ws.send_ping(payload)
                self._flush()

    def _pong(self, payload: bytes) -> None:
        if payload == self.ping_payload:
            self.ping_payload = None
            self.pong_by = 0.0
            self.answers_pings = True

    def shutdown(self) -> None:
        """The server is stopping (uvicorn calls this): close with 1012 at once."""
        if self.conn is None:
            self.transport.close()
            return
        self._fail(CloseCode.SERVICE_RESTART, "")

    def eof_received(self) -> bool | None:
        return None  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.closing = True
        self.uvicorn[1].connections.discard(self)
        self.keepalive.discard(self)
        if self.close_timer is not None:
            self.close_timer.cancel()
        self.resume_writing()
        if self.busy is None:
            self._finalize()

    def _finalize(self) -> None:
        """Everything received is handled: the agents go offline, as after any disconnect."""
        conn, self.conn = self.conn, None
        if conn is not None:
            log.info("%s - agent connection closed", conn.remote)
            conn.stop_sending()
            self.studio.ingest.close_connection(conn)


def agent_socket_factory(studio: Studio) -> Callable[..., asyncio.Protocol]:
    """What uvicorn's `ws` setting takes: builds each upgraded connection's protocol."""
    settings = studio.settings
    keepalive = Keepalive(
        settings.ws_ping_interval_s, settings.ws_ping_timeout_s, settings.handshake_timeout_s
    )

    def make(config: Any, server_state: Any, app_state: Any) -> AgentSocket:
        return AgentSocket(studio, keepalive, config, server_state, app_state)

    return make


__all__ = ["AgentSocket", "Keepalive", "agent_socket_factory", "finish"]
