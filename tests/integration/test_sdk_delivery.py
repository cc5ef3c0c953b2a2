"""The SDK against the real Studio over real sockets: exactly-once storage through failures."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from aster_studio_sdk import DeliveryOptions, StudioClient
from aster_studio_sdk import _client as client_module
from tests.support.api import get
from tests.support.databases import Databases
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

OPTS = DeliveryOptions(
    flush_interval=0.02,
    backoff_initial=0.02,
    backoff_max=0.25,
    connect_timeout=2 * UNIT,
    handshake_timeout=2 * UNIT,
    shutdown_timeout=2 * UNIT,
)


def stored(server: StudioProcess, agent_id: str) -> list[dict[str, Any]]:
    """Return every stored event of an agent, oldest first."""
    events: list[dict[str, Any]] = []
    cursor = 0
    while True:
        data = get(
            server.http_url, f"/v1/dashboard/events/since/{cursor}?limit=1000&agent_id={agent_id}"
        )
        events.extend(data["events"])
        if not data["events"]:
            return events
        cursor = data["next_cursor"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def client_for(url: str, agent_id: str, **kw: Any) -> Iterator[StudioClient]:
    kw.setdefault("options", OPTS)
    client = StudioClient(agent_id, url=url, enabled=True, strict=True, **kw)
    try:
        yield client
    finally:
        client.close(2 * UNIT)


def ticks(events: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(e["event"]["thread"], e["event"]["i"]) for e in events if e["event_type"] == "tick"]


def assert_exactly_once(events: list[dict[str, Any]], threads: int, per_thread: int) -> None:
    seen = ticks(events)
    assert len(seen) == len(set(seen)), "duplicates stored"
    assert len(seen) == threads * per_thread, "events lost"
    for thread in range(threads):
        assert [i for t, i in seen if t == thread] == list(range(per_thread))


def emit_ticks(client: StudioClient, thread: int, count: int, pause_every: int = 0) -> None:
    with client.session(f"session-{thread}") as s:
        for i in range(count):
            s.event("progress", "tick", thread=thread, i=i)
            if pause_every and i % pause_every == 0:
                time.sleep(0.001)


def test_events_from_many_threads_are_stored_exactly_once(studio: StudioProcess) -> None:
    with client_for(studio.url, "threads") as client:
        workers = [threading.Thread(target=emit_ticks, args=(client, t, 1_000)) for t in range(6)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        assert client.flush(20 * UNIT)
        assert client.stats().reliable is True
    assert_exactly_once(stored(studio, "threads"), 6, 1_000)


def test_session_is_registered_and_ended(studio: StudioProcess) -> None:
    with client_for(studio.url, "sessions", name="Writer") as client:
        with client.session("session-456") as s:
            s.state("working")
            s.text("Hello, ")
            s.token_usage(100, 50, model="claude-3-5-sonnet")
        assert client.flush(10 * UNIT)
        events = stored(studio, "sessions")
        assert [e["event_type"] for e in events] == ["state_changed", "text_chunk", "token_usage"]
        assert {e["session_id"] for e in events} == {"session-456"}
        session = get(studio.http_url, "/v1/dashboard/sessions/session-456")
        assert "completed" in str(session)


class Emitter(threading.Thread):
    """Stream numbered ticks into one session until stopped (about 20,000 per second)."""

    def __init__(self, client: StudioClient, thread: int = 0) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.thread = thread
        self.count = 0
        self.stop = threading.Event()

    def run(self) -> None:
        with self.client.session(f"session-{self.thread}") as s:
            while not self.stop.is_set():
                s.event("progress", "tick", thread=self.thread, i=self.count)
                self.count += 1
                if self.count % 20 == 0:
                    time.sleep(0.001)

    def finish(self) -> int:
        self.stop.set()
        self.join(10 * UNIT)
        return self.count


def test_server_killed_and_restarted_mid_stream_loses_and_duplicates_nothing(
    studio: StudioProcess,
) -> None:
    with client_for(studio.url, "survivor") as client:
        emitter = Emitter(client)
        emitter.start()
        time.sleep(0.5)
        before_kill = client.stats().delivered
        studio.kill()  # SIGKILL: only what was durable (and acknowledged) survives
        time.sleep(0.5)
        studio.start()  # a new process on the same port and database
        time.sleep(0.5)
        count = emitter.finish()
        assert client.flush(30 * UNIT)
        stats = client.stats()
        assert before_kill > 0 and stats.disconnects >= 1 and stats.connects >= 2
    assert_exactly_once(stored(studio, "survivor"), 1, count)


def test_server_stopped_gracefully_and_restarted_loses_nothing(studio: StudioProcess) -> None:
    with client_for(studio.url, "graceful") as client:
        emitter = Emitter(client)
        emitter.start()
        time.sleep(0.3)
        studio.restart()  # SIGTERM, then a new process on the same port and database
        time.sleep(0.3)
        count = emitter.finish()
        assert client.flush(30 * UNIT)
    assert_exactly_once(stored(studio, "graceful"), 1, count)


def test_server_down_at_start_that_comes_up_later_gets_everything(
    tmp_path: Path, new_db: Databases
) -> None:
    server = StudioProcess(new_db("late"), port=free_port())
    with client_for(server.url, "early-bird") as client:
        emit_ticks(client, 0, 500)
        assert client.flush(0.3 * UNIT) is False
        server.start()
        try:
            assert client.flush(20 * UNIT)
            assert_exactly_once(stored(server, "early-bird"), 1, 500)
        finally:
            client.close(2 * UNIT)
            server.stop()


def test_session_whose_start_was_dropped_ends_when_the_studio_comes_up(
    new_db: Databases, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client_module, "_CONTROL_SLACK", 5)  # session starts past the bound
    server = StudioProcess(new_db("ends"), port=free_port())
    options = replace(OPTS, max_queue_size=20, max_unacked_messages=10, drop_policy="drop_oldest")
    with client_for(server.url, "ender", options=options) as client:
        for i in range(10):  # the resend buffer fills while the Studio is down...
            client.text(f"buffered {i}")
        deadline = time.monotonic() + 5 * UNIT
        while client.stats().unacked < 10 and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(20):  # ...then the queue, then the slack for session starts
            client.text(f"queued {i}")
        fillers = [client.session(f"filler-{i}") for i in range(5)]
        assert (client.stats().unacked, client.stats().queued) == (10, 25)
        victim = client.session("victim")  # its start is dropped...
        victim.text("hello")  # ...its event gets in, in place of the oldest...
        victim.end()  # ...and its end must too
        dropped = client.stats().dropped
        server.start()
        try:
            assert client.flush(20 * UNIT)
            session = get(server.http_url, "/v1/dashboard/sessions/victim")
            assert session["status"] == "completed" and session["ended_at"] is not None
            assert dropped == 2  # the start and the oldest event, not the end
            for filler in fillers:
                filler.end()
        finally:
            client.close(2 * UNIT)
            server.stop()


def test_server_that_never_comes_up_does_not_hurt_the_agent() -> None:
    url = f"ws://127.0.0.1:{free_port()}"
    client = StudioClient("lonely", url=url, enabled=True, strict=True, options=OPTS)
    start = time.perf_counter()
    for i in range(50_000):
        client.text(str(i))
    emit_time = time.perf_counter() - start
    assert emit_time < 2 * UNIT
    begin = time.monotonic()
    assert client.close(0.5 * UNIT) is False
    assert time.monotonic() - begin < 0.5 * UNIT + 0.25 * UNIT
    stats = client.stats()
    assert stats.connect_failures >= 1 and stats.sent == 0


class FlakyProxy:
    """A loopback TCP proxy that cuts every connection through it at a fixed interval."""

    def __init__(self, target_port: int, cut_every: float) -> None:
        self._target = target_port
        self._cut_every = cut_every
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.05)
        self.port = int(self._listener.getsockname()[1])
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.cuts = 0
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._cutter, daemon=True),
        ]
        for t in self._threads:
            t.start()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                downstream, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self._target), timeout=2)
            except OSError:
                downstream.close()
                continue
            upstream.settimeout(None)
            downstream.settimeout(None)
            with self._lock:
                self._links += [downstream, upstream]
            for a, b in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def _cutter(self) -> None:
        while not self._stop.wait(self._cut_every):
            self.cut()

    def cut(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        if links:
            self.cuts += 1
        for sock in links:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self.cut()
        for t in self._threads:
            t.join(2)


@pytest.fixture
def flaky(studio: StudioProcess) -> Iterator[FlakyProxy]:
    proxy = FlakyProxy(studio.port, cut_every=0.15)
    try:
        yield proxy
    finally:
        proxy.close()


def test_connection_dropped_repeatedly_loses_and_duplicates_nothing(
    studio: StudioProcess, flaky: FlakyProxy
) -> None:
    counts = [0, 0, 0]

    def emit_until_cut(client: StudioClient, thread: int) -> None:
        # Keep streaming until the proxy has cut the connection several times.
        deadline = time.monotonic() + 20 * UNIT
        with client.session(f"session-{thread}") as s:
            i = 0
            while (i < 1_000 or flaky.cuts < 4) and time.monotonic() < deadline:
                s.event("progress", "tick", thread=thread, i=i)
                i += 1
                if i % 10 == 0:
                    time.sleep(0.001)
        counts[thread] = i

    with client_for(flaky.url, "flaky", options=replace(OPTS, max_batch_messages=200)) as client:
        workers = [threading.Thread(target=emit_until_cut, args=(client, t)) for t in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        deadline = time.monotonic() + 30 * UNIT
        while not client.flush(1 * UNIT) and time.monotonic() < deadline:
            pass  # each attempt may be cut short by the proxy; keep asking
        assert client.stats().unacked == 0 and client.stats().queued == 0
        assert flaky.cuts >= 4 and client.stats().disconnects >= 2
    seen = ticks(stored(studio, "flaky"))
    assert len(seen) == len(set(seen)), "duplicates stored"
    for thread in range(3):
        assert [i for t, i in seen if t == thread] == list(range(counts[thread])), "lost"


def test_asyncio_agent_reports_without_blocking_its_loop(studio: StudioProcess) -> None:
    async def agent() -> tuple[bool, bool, float]:
        client = StudioClient(
            "async-agent", url=studio.url, enabled=True, strict=True, options=OPTS
        )
        ticks_seen = 0

        async def heartbeat() -> None:
            nonlocal ticks_seen
            while True:
                await asyncio.sleep(0.001)
                ticks_seen += 1

        beat = asyncio.create_task(heartbeat())
        async with client.session("async-session") as s:
            for i in range(2_000):
                s.event("progress", "tick", thread=0, i=i)
                if i % 100 == 0:
                    await asyncio.sleep(0)
        flushed = await client.aflush(10 * UNIT)
        start = time.monotonic()
        closed = await client.aclose(10 * UNIT)
        beat.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await beat
        assert ticks_seen > 0  # the loop kept running while we waited
        return flushed, closed, time.monotonic() - start

    flushed, closed, _ = asyncio.run(agent())
    assert flushed and closed
    assert_exactly_once(stored(studio, "async-agent"), 1, 2_000)


@pytest.fixture
def keyed(tmp_path: Path) -> Iterator[tuple[StudioProcess, str]]:
    """A Studio with auth on and one agent key, which may write for agents named writer-*."""
    db = tmp_path / "keyed.db"
    created = subprocess.run(
        [sys.executable, "-m", "aster_studio", "keys", "create", "--name", "sdk"]
        + ["--agents", "writer-*", "--db", str(db)],
        capture_output=True,
        text=True,
        timeout=30 * UNIT,
        check=True,
    )
    key = next(line for line in created.stdout.splitlines() if line.startswith("ask_"))
    server = StudioProcess(db).start()
    try:
        yield server, key
    finally:
        server.stop()


def test_an_agent_its_key_may_not_write_for_is_refused_not_delivered(
    keyed: tuple[StudioProcess, str],
) -> None:
    """Refused (forbidden_agent), the SDK fell back to at-most-once, wrote each event (each
    refused in turn) and counted it delivered: flush() said all was well."""
    server, key = keyed
    with client_for(server.url, "reader-1", token=key) as client:
        for i in range(10):
            client.text(str(i))
        assert client.flush(1 * UNIT) is False
        stats = client.stats()
        assert (stats.delivered, stats.unacked) == (0, 10)
        assert stats.refused >= 1


def test_an_invalid_key_is_refused_with_an_error_naming_it(
    keyed: tuple[StudioProcess, str], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = keyed
    with (
        caplog.at_level(logging.WARNING, logger="aster_studio_sdk"),
        client_for(server.url, "writer-1", token="ask_nope_nope") as client,
    ):
        client.text("x")
        assert client.flush(0.5 * UNIT) is False
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("401" in message for message in errors)
    assert client.stats().refused >= 1


def test_a_register_over_the_frame_limit_is_retried_with_the_agent_id_alone(
    studio: StudioProcess,
) -> None:
    """Metadata past the Studio's 1 MiB frame limit had every register closed with 1009: the
    SDK sent the same frame again and again and delivered nothing."""
    metadata = {"blob": "x" * (1 << 20)}
    with client_for(studio.url, "big-metadata", metadata=metadata) as client:
        client.text("hello")
        assert client.flush(10 * UNIT)
        assert client.stats().reliable is True
    deltas = [e["event"].get("delta") for e in stored(studio, "big-metadata")]
    assert deltas == ["hello"]
