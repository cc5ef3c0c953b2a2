"""The WebSocket transport over real loopback sockets: frames, timeouts, closes, errors."""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterator

import pytest
from websockets.sync.server import Server, ServerConnection, serve

from aster_studio_sdk import (
    ConnectionClosed,
    DeliveryOptions,
    StudioClient,
    TransportError,
    WebSocketTransport,
)
from tests.support.timing import UNIT

SLACK = 0.25 * UNIT  # scheduling delay allowed past a timeout on a busy machine
# A connect attempt that outlasts every test below unless the SDK stops waiting for it.
HANGING = DeliveryOptions(
    max_queue_size=100,
    connect_timeout=10 * UNIT,
    handshake_timeout=10 * UNIT,
    backoff_initial=0.01,
    shutdown_timeout=2 * UNIT,
)

received: list[str | bytes] = []
headers_seen: list[str | None] = []


def echo(ws: ServerConnection) -> None:
    headers_seen.append(ws.request.headers.get("Authorization") if ws.request else None)
    for frame in ws:
        received.append(frame)
        if frame == '{"type":"bye"}':
            ws.close()
            return
        ws.send(frame)


@pytest.fixture
def server() -> Iterator[Server]:
    received.clear()
    headers_seen.clear()
    with serve(echo, "127.0.0.1", 0) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        yield srv
        srv.shutdown()
        thread.join(5 * UNIT)


def url_of(srv: Server) -> str:
    host, port = srv.socket.getsockname()[:2]
    return f"ws://{host}:{port}/v1/remote-agents/connect"


def test_frames_go_out_as_text_and_replies_come_back(server: Server) -> None:
    conn = WebSocketTransport().connect(url_of(server), {"Authorization": "Bearer t"}, 5 * UNIT)
    try:
        conn.send(b'{"type":"ping"}')
        assert conn.recv(5 * UNIT) == '{"type":"ping"}'
        assert received == ['{"type":"ping"}']  # a text frame, not binary
        assert headers_seen == ["Bearer t"]
    finally:
        conn.close()


def test_recv_returns_none_when_nothing_arrives(server: Server) -> None:
    conn = WebSocketTransport().connect(url_of(server), {}, 5 * UNIT)
    try:
        assert conn.recv(0) is None
        assert conn.recv(0.05 * UNIT) is None
    finally:
        conn.close()


def test_peer_close_raises_connection_closed(server: Server) -> None:
    conn = WebSocketTransport().connect(url_of(server), {}, 5 * UNIT)
    conn.send(b'{"type":"bye"}')
    with pytest.raises(ConnectionClosed):
        conn.recv(5 * UNIT)
    with pytest.raises(TransportError):
        conn.send(b"{}")
    conn.close()  # closing twice never raises


def test_connection_refused_raises_transport_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(TransportError):
        WebSocketTransport().connect(f"ws://127.0.0.1:{port}/x", {}, 2 * UNIT)


SECRETS = ("hunter22", "tok3nvalue", "bearer-s3cret")


def with_credentials(url: str) -> str:
    """`url` with a user and password and a `?token=` added."""
    return url.replace("ws://", "ws://writer:hunter22@") + "?token=tok3nvalue&x=1"


def test_debug_log_of_the_handshake_shows_no_credentials(
    server: Server, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = url_of(server)
    for target, headers in (
        (with_credentials(url), {}),  # HTTP Basic from the URL
        (url + "?token=tok3nvalue&x=1", {"Authorization": "Bearer bearer-s3cret"}),
    ):
        conn = WebSocketTransport().connect(target, headers, 5 * UNIT)
        conn.send(b'{"type":"ping"}')
        assert conn.recv(5 * UNIT) == '{"type":"ping"}'
        conn.close()
    basic = base64.b64encode(b"writer:hunter22").decode()
    assert headers_seen == [f"Basic {basic}", "Bearer bearer-s3cret"]  # sent...
    ours = [r for r in caplog.records if not r.name.startswith("websockets.server")]
    text = "\n".join(r.getMessage() for r in ours)
    assert "> GET /v1/remote-agents/connect?token=***&x=1 HTTP/1.1" in text
    assert "> Authorization: ***" in text
    for secret in (*SECRETS, basic):
        assert secret not in text  # ...and none was logged


def test_a_failed_connect_shows_no_credentials() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = with_credentials(f"ws://127.0.0.1:{port}/x")
    with pytest.raises(TransportError) as info:
        WebSocketTransport().connect(url, {"Authorization": "Bearer bearer-s3cret"}, 2 * UNIT)
    shown, error = "", info.value
    while error is not None:  # the error and what it was raised from, as a traceback shows
        shown += "".join(traceback.format_exception_only(error))
        error = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    assert f"127.0.0.1:{port}" in shown
    for secret in SECRETS:
        assert secret not in shown


def test_connect_times_out_on_a_silent_listener() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts TCP, never answers
        port = listener.getsockname()[1]
        with pytest.raises(TransportError):
            WebSocketTransport().connect(f"ws://127.0.0.1:{port}/x", {}, 0.2 * UNIT)


def test_close_code_is_reported(server: Server) -> None:
    conn = WebSocketTransport().connect(url_of(server), {}, 5 * UNIT)
    conn.send(b'{"type":"bye"}')
    with pytest.raises(ConnectionClosed) as info:
        conn.recv(5 * UNIT)
    assert info.value.code == 1000
    conn.close()


def test_close_aborts_a_send_stuck_on_a_server_that_stopped_reading() -> None:
    stop = threading.Event()

    def deaf(ws: ServerConnection) -> None:
        ws.recv()  # the register message
        ws.send('{"type":"registered","last_seq":0}')
        stop.wait(30 * UNIT)  # then never read again: the client's writes back up

    with serve(deaf, "127.0.0.1", 0, max_queue=1, max_size=None) as srv:
        thread = threading.Thread(target=srv.serve_forever, daemon=True)
        thread.start()
        client = StudioClient("deaf", url=url_of(srv), enabled=True, strict=True)
        try:
            for i in range(200_000):
                client.event("progress", "tick", i=i, pad="x" * 100)
            time.sleep(0.5 * UNIT)  # the worker is now blocked writing
            start = time.monotonic()
            assert client.close(0.3 * UNIT) is False
            assert time.monotonic() - start < 0.3 * UNIT + 0.25 * UNIT
            worker = client._worker
            assert worker is not None and worker.done.wait(3 * UNIT)
        finally:
            stop.set()
            srv.shutdown()
            thread.join(5 * UNIT)


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.002)
    return predicate()


@pytest.fixture
def silent_url() -> Iterator[str]:
    """The URL of a listener that accepts TCP and never answers the WebSocket handshake."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        yield f"ws://127.0.0.1:{listener.getsockname()[1]}"


def test_events_move_to_the_resend_buffer_while_the_websocket_handshake_hangs(
    silent_url: str,
) -> None:
    client = StudioClient("stuck", url=silent_url, enabled=True, strict=True, options=HANGING)
    try:
        for _ in range(4):  # 200 events: twice what the queue holds
            for i in range(50):
                client.text(str(i))
            assert wait_until(lambda: client.stats().queued == 0, 0.5 * UNIT)
        stats = client.stats()
        assert (stats.dropped, stats.unacked) == (0, 200)
    finally:
        client.close(0.2 * UNIT)


def test_flush_returns_on_time_while_the_websocket_handshake_hangs(silent_url: str) -> None:
    client = StudioClient("stuck", url=silent_url, enabled=True, strict=True, options=HANGING)
    try:
        client.text("x")
        start = time.monotonic()
        assert client.flush(0.2 * UNIT) is False
        assert time.monotonic() - start < 0.2 * UNIT + SLACK
    finally:
        client.close(0.2 * UNIT)


def test_close_returns_on_time_and_the_worker_ends_while_the_handshake_hangs(
    silent_url: str,
) -> None:
    client = StudioClient("stuck", url=silent_url, enabled=True, strict=True, options=HANGING)
    client.text("x")
    start = time.monotonic()
    assert client.close(0.3 * UNIT) is False
    worker = client._worker
    assert worker is not None and worker.done.wait(SLACK)
    assert time.monotonic() - start < 0.3 * UNIT + SLACK
