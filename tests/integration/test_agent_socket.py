"""The agent endpoint's own socket (src/aster_studio/agent_socket.py) against a real server."""

from __future__ import annotations

import socket
import struct
import time
import urllib.request
from pathlib import Path

import orjson
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from tests.integration.test_frame_fuzz import frame, handshake
from tests.integration.test_frames import greeted, read_frames
from tests.support.agent import RawAgent, event, register
from tests.support.api import events, wait_for
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

KEEPALIVE = {"ASTER_STUDIO_WS_PING_INTERVAL": "0.2", "ASTER_STUDIO_WS_PING_TIMEOUT": "0.4"}


def test_a_peer_that_answered_pings_then_goes_silent_is_closed_with_1011(tmp_path: Path) -> None:
    with StudioProcess(tmp_path / "k.db", env=KEEPALIVE) as server:
        answering = RawAgent(server.agent_url)  # websockets answers pings by itself
        stuck = handshake(server.port)
        try:
            stuck.sendall(frame(1, orjson.dumps(register("stuck"))))
            seen: list[tuple[int, bytes]] = []
            while not any(op == 9 for op, _ in seen):
                seen += read_frames(stuck, 1, timeout=10 * UNIT)
            ping = next(payload for op, payload in seen if op == 9)
            stuck.sendall(frame(0xA, ping))  # it reads, once: then its client hangs
            started = time.monotonic()
            while not any(op == 8 for op, _ in seen):
                seen += read_frames(stuck, 1, timeout=10 * UNIT)
            close = next(payload for op, payload in seen if op == 8)
            assert int.from_bytes(close[:2], "big") == 1011
            assert time.monotonic() - started >= 0.4
            assert answering.request({"type": "ping"}) == {"type": "pong"}  # still open
        finally:
            stuck.close()
            answering.close()


def test_a_client_that_never_reads_stays_connected(tmp_path: Path) -> None:
    """The original document's client may never read, so it never answers a ping: it is kept,
    whether it sends or stays quiet, as its kernel still acknowledges. It was closed with 1011
    after two ping periods, events and JSON pings notwithstanding."""
    with StudioProcess(tmp_path / "k.db", env=KEEPALIVE) as server:
        sending, quiet = handshake(server.port), handshake(server.port)
        try:
            sending.sendall(frame(1, orjson.dumps(register("sender"))))
            quiet.sendall(frame(1, orjson.dumps(register("quiet"))))
            deadline = time.monotonic() + 10 * 0.2  # ten ping periods
            sent = 0
            while time.monotonic() < deadline:
                sending.sendall(frame(1, orjson.dumps(event("sender", "text_chunk", i=sent))))
                sent += 1
                time.sleep(0.05)
            for sock in (sending, quiet):
                sock.sendall(frame(1, b'{"type":"ping"}'))
                seen: list[tuple[int, bytes]] = []
                while (1, b'{"type":"pong"}') not in seen:
                    seen += read_frames(sock, 1, timeout=10 * UNIT)
                assert 9 in [op for op, _ in seen]  # pinged all along, never answered
                assert 8 not in [op for op, _ in seen]  # and never closed
            wait_for(lambda: events(server.http_url, "agent_id=sender"), lambda e: len(e) == sent)
        finally:
            sending.close()
            quiet.close()


def test_pings_from_the_agent_are_answered_between_its_messages(studio: StudioProcess) -> None:
    with greeted(studio.port) as sock:
        sock.sendall(
            frame(9, b"one")
            + frame(1, b'{"type":"ping"}')
            + frame(9, b"two")
            + frame(10, b"unsolicited")  # a pong nobody asked for is ignored
        )
        replies = read_frames(sock, 3)
        # Control pongs go out as the frames are read; replies from the outbox may follow them.
        assert [p for op, p in replies if op == 0xA] == [b"one", b"two"]
        assert (1, b'{"type":"pong"}') in replies


def test_a_full_server_refuses_more_agents_with_1013(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_MAX_AGENT_CONNECTIONS": "1"}
    with StudioProcess(tmp_path / "f.db", env=env) as server, RawAgent(server.agent_url) as first:
        second = RawAgent(server.agent_url, greeting=False)
        with pytest.raises(ConnectionClosed) as closed:
            second.recv(timeout=5 * UNIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        second.close()
        assert first.request({"type": "ping"}) == {"type": "pong"}


def test_stopping_the_server_closes_agents_with_1012_and_keeps_what_they_sent(
    tmp_path: Path,
) -> None:
    server = StudioProcess(tmp_path / "s.db")
    with server:
        agent = RawAgent(server.agent_url)
        agent.send(register("stopper"))
        for i in range(50):
            agent.send(event("stopper", "step", i=i))
        agent.recv_until("registered")
        assert server.stop() == 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                agent.recv(timeout=5 * UNIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
        agent.close()
        server.start()
        stored = events(server.http_url, "agent_id=stopper")
        assert sorted(e["event"]["i"] for e in stored) == list(range(50))


def test_messages_behind_a_long_batch_keep_their_order(studio: StudioProcess) -> None:
    """A batch long enough to yield the loop mid-way: what follows it waits its turn."""
    batch = {
        "type": "batch",
        "messages": [event("order", "x", n=n) for n in range(1000)],
    }
    after = b"".join(frame(1, orjson.dumps(event("order", "x", n=n))) for n in range(1000, 1100))
    with greeted(studio.port) as sock:
        sock.sendall(
            frame(1, orjson.dumps(register("order"))) + frame(1, orjson.dumps(batch)) + after
        )
        stored = wait_for(
            lambda: events(studio.http_url, "agent_id=order"), lambda e: len(e) == 1100
        )
        assert [e["event"]["n"] for e in stored] == list(range(1100))


@pytest.mark.parametrize("enabled", [False, True])
def test_compression_is_negotiated_only_when_enabled(tmp_path: Path, enabled: bool) -> None:
    """With --ws-deflate, an agent asking for compression gets it, from the agent socket."""
    args = ("--log-level", "info", *(("--ws-deflate",) if enabled else ()))
    with StudioProcess(tmp_path / "d.db", args=args) as server:
        with connect(server.agent_url, compression="deflate", open_timeout=10 * UNIT) as ws:
            assert bool(ws.protocol.extensions) is enabled
            assert orjson.loads(ws.recv(5 * UNIT))["type"] == "connected"
            ws.send(orjson.dumps(register("squeezed")).decode())
            assert orjson.loads(ws.recv(5 * UNIT))["type"] == "registered"  # a compressed reply
            ws.ping(b"still there")
            ws.send(orjson.dumps(event("squeezed", "x", text="a" * 2000)).decode())
            stored = wait_for(lambda: events(server.http_url, "agent_id=squeezed"), len)
            assert stored[0]["event"]["text"] == "a" * 2000
        # Only the agent socket logs this (the ASGI route does not): it served the connection.
        wait_for(lambda: "".join(server.output), lambda out: "agent connection closed" in out)


def test_a_client_that_closes_first_gets_the_echo(studio: StudioProcess) -> None:
    with greeted(studio.port) as sock:
        sock.sendall(frame(8, (1000).to_bytes(2, "big") + b"bye"))
        ((opcode, payload),) = read_frames(sock, 1)
        assert (opcode, int.from_bytes(payload[:2], "big")) == (8, 1000)
        sock.settimeout(5 * UNIT)
        try:
            assert sock.recv(10) == b""  # and the server ends the TCP connection
        except TimeoutError:
            pytest.fail("the server did not close after the closing handshake")


def _metric(server: StudioProcess, name: str) -> float:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_every_way_a_connection_ends_releases_it_and_keeps_what_it_sent(tmp_path: Path) -> None:
    # A low rate limit makes the handler wait mid-stream, so some connections end while one
    # of their messages is still being applied.
    env = {"ASTER_STUDIO_RATE_LIMIT": "200", "ASTER_STUDIO_RATE_BURST": "10"}
    with StudioProcess(tmp_path / "c.db", env=env) as server:
        socks = []
        for i in range(10):  # closed after a slow stream: FIN, everything sent must be stored
            sock = handshake(server.port)
            stream = frame(1, orjson.dumps(register(f"slow-{i}")))
            stream += b"".join(
                frame(1, orjson.dumps(event(f"slow-{i}", "x", n=n))) for n in range(30)
            )
            sock.sendall(stream)
            socks.append(sock)
        for sock in socks:
            sock.close()
        for i in range(10):  # reset mid-frame
            sock = handshake(server.port)
            sock.sendall(frame(1, orjson.dumps(register(f"reset-{i}")))[:7])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        for _ in range(10):  # gone during the HTTP request
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"GET /v1/remote-agents/connect HTTP/1.1\r\nHost: x\r\nUpg")
            sock.close()
        for i in range(10):  # a clean closing handshake
            with RawAgent(server.agent_url) as agent:
                agent.request(register(f"clean-{i}"))
        wait_for(lambda: _metric(server, "aster_agent_connections"), lambda n: n == 0)
        for i in range(10):
            stored = wait_for(
                lambda i=i: events(server.http_url, f"agent_id=slow-{i}"), lambda e: len(e) == 30
            )
            assert [e["event"]["n"] for e in stored] == list(range(30))
        with RawAgent(server.agent_url) as agent:
            assert agent.request({"type": "ping"}) == {"type": "pong"}


def test_pings_of_a_client_that_never_reads_do_not_pile_up(tmp_path: Path) -> None:
    """Pongs are dropped (and counted) while our writes wait on the peer: they grew the
    server's memory by the size of every ping sent."""
    with StudioProcess(tmp_path / "p.db") as server:
        sock = handshake(server.port, rcvbuf=4096)
        try:
            sock.sendall(frame(1, orjson.dumps(register("pinger"))))
            pings = frame(9, b"x" * 125) * 500  # 500 pings of 125 bytes, 65 KB
            dropped = 0
            deadline = time.monotonic() + 30 * UNIT
            for _ in range(400):  # at most 200,000 pings, 26 MB
                sock.sendall(pings)
                dropped = replies_dropped(server)
                if dropped or time.monotonic() > deadline:
                    break
            assert dropped > 0
        finally:
            sock.close()


def replies_dropped(server: StudioProcess) -> int:
    with urllib.request.urlopen(f"{server.http_url}/metrics", timeout=5 * UNIT) as response:
        for line in response.read().decode().splitlines():
            if line.startswith("aster_replies_dropped_total "):
                return int(float(line.split()[1]))
    raise AssertionError("no aster_replies_dropped_total in /metrics")


def test_a_client_that_only_pings_is_not_closed_as_silent(tmp_path: Path) -> None:
    """WebSocket pings keep a connection alive as JSON pings do (PROTOCOL.md), the first
    message's deadline included."""
    env = {"ASTER_STUDIO_HANDSHAKE_TIMEOUT": "0.5"}
    with StudioProcess(tmp_path / "h.db", env=env) as server, RawAgent(server.agent_url) as agent:
        for _ in range(8):  # 1.2 s, past the deadline
            assert agent.ws.ping().wait(5 * UNIT)
            time.sleep(0.15)
        assert agent.request({"type": "ping"}) == {"type": "pong"}  # still open


def test_agent_path_with_an_empty_segment_is_the_agent_endpoint(studio: StudioProcess) -> None:
    """A Studio URL ending in "/" joined with the document's path gives "//v1/...": 403 before."""
    url = f"ws://127.0.0.1:{studio.port}//v1/remote-agents/connect"
    with connect(url, open_timeout=5 * UNIT) as ws:
        assert orjson.loads(ws.recv(5 * UNIT))["type"] == "connected"
        ws.send(orjson.dumps(register("slashed")).decode())
        assert orjson.loads(ws.recv(5 * UNIT))["type"] == "registered"
