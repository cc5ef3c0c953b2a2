"""The console's live stream: original frames, batch mode, filters, replay then live."""

from __future__ import annotations

import base64
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, get, wait_for
from tests.support.databases import Databases
from tests.support.server import StudioProcess
from tests.support.timing import UNIT


class Stream(RawAgent):
    """A live-stream client; the greeting is `connected` as for agents."""

    def __init__(self, studio: StudioProcess) -> None:
        super().__init__(f"{studio.url}/v1/dashboard/events/stream")

    def subscribe(self, **body: Any) -> dict[str, Any]:
        self.send({"action": "subscribe", **body})
        return self.recv_until("subscribed")

    def until(self, kind: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The frames before the next `kind` frame, and that frame."""
        before: list[dict[str, Any]] = []
        while (frame := self.recv())["type"] != kind:
            before.append(frame)
        return before, frame

    def events(self, count: int, timeout: float = 10 * UNIT) -> list[dict[str, Any]]:
        """Collect `count` event payloads from `event` or `events` frames."""
        found: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while len(found) < count:
            frame = self.recv(max(deadline - time.monotonic(), 0.01))
            if frame["type"] == "event":
                found.append(frame["payload"])
            elif frame["type"] == "events":
                found.extend(frame["payload"])
        return found


def test_subscribe_is_acknowledged_with_the_filters(studio: StudioProcess) -> None:
    with Stream(studio) as stream:
        reply = stream.subscribe(filters={"channels": ["progress"]})
    assert reply["payload"]["channels"] == ["progress"]
    assert reply["payload"]["event_types"] is None


def test_original_event_frame_shape(studio: StudioProcess) -> None:
    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        stream.subscribe(filters={})
        agent.request(register("live"))
        agent.send(event("live", "text_chunk", delta="hi"))
        (payload,) = stream.events(1)
    assert payload["agent_id"] == "live"
    assert payload["channel"] == "progress"
    assert payload["type"] == payload["event_type"] == "text_chunk"
    assert payload["data"] == {"event_type": "text_chunk", "delta": "hi"}
    assert payload["timestamp"].endswith("Z")
    assert isinstance(payload["cursor"], int)


def test_default_filter_before_subscribe_is_monitor_only(studio: StudioProcess) -> None:
    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        agent.send(event("d", "text_chunk", delta="not shown"))
        agent.send(event("d", "state_changed", state="working"))
        (payload,) = stream.events(1)
    assert payload["event_type"] == "state_changed"


def test_filters_by_agent_and_type_case_insensitively(studio: StudioProcess) -> None:
    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        stream.subscribe(filters={"agent_ids": ["b"], "event_types": ["TEXT_CHUNK"]})
        agent.send(event("a", "text_chunk", delta="other agent"))
        agent.send(event("b", "error", severity="error", message="other type"))
        agent.send(event("b", "text_chunk", delta="match"))
        (payload,) = stream.events(1)
    assert payload["data"]["delta"] == "match"


def test_batch_mode_coalesces_events_and_pushes_agent_changes(studio: StudioProcess) -> None:
    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        stream.subscribe(filters={}, batch=True)
        agent.request(register("batcher"))
        agent.send({"type": "batch", "messages": [event("batcher", "x", i=i) for i in range(200)]})
        frames: list[dict[str, Any]] = []
        received = 0
        agent_views = []
        deadline = time.monotonic() + 10 * UNIT
        online = False
        while (received < 200 or not online) and time.monotonic() < deadline:
            frame = stream.recv()
            frames.append(frame)
            if frame["type"] == "events":
                received += len(frame["payload"])
            elif frame["type"] == "agent":
                agent_views.append(frame["payload"])
                online = online or frame["payload"]["status"] == "online"
    assert received == 200
    assert sum(1 for f in frames if f["type"] == "events") < 200
    assert any(v["id"] == "batcher" and v["status"] == "online" for v in agent_views)


def test_replay_from_cursor_then_live_without_gaps_or_duplicates(studio: StudioProcess) -> None:
    """Several pages of replay while the agent keeps sending: the live events published
    meanwhile go out after the replay, none twice, none missing."""
    with RawAgent(studio.agent_url) as agent:
        for start in range(0, 3000, 500):
            agent.send(
                {
                    "type": "batch",
                    "messages": [event("r", "x", i=i) for i in range(start, start + 500)],
                }
            )
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        stop = threading.Event()

        def keep_sending() -> None:
            i = 3000
            while not stop.is_set() and i < 4000:
                agent.send(
                    {"type": "batch", "messages": [event("r", "x", i=j) for j in range(i, i + 50)]}
                )
                i += 50
                time.sleep(0.002)

        sender = threading.Thread(target=keep_sending)
        sender.start()
        try:
            with Stream(studio) as stream:
                stream.subscribe(filters={}, since=100, batch=True)
                got = stream.events(3900, timeout=20 * UNIT)
        finally:
            stop.set()
            sender.join()
    indices = [p["data"]["i"] for p in got]
    assert indices == list(range(100, 100 + len(indices)))


def test_bad_json_and_unknown_action_get_error_frames(studio: StudioProcess) -> None:
    with Stream(studio) as stream:
        stream.send_raw("{nope")
        error = stream.recv_until("error")
        assert error["payload"]["code"] == "invalid_message"
        assert error["message"] == "Failed to parse message"
        stream.send({"action": "dance"})
        error = stream.recv_until("error")
        assert error["payload"] == {"code": "unknown_action", "message": "Unknown action: dance"}
        stream.send({"action": "ping"})
        assert stream.recv_until("pong")["payload"] is None


def test_a_cursor_past_64_bits_is_an_error_frame_and_the_stream_lives_on(
    studio: StudioProcess,
) -> None:
    with Stream(studio) as stream:
        stream.send({"action": "subscribe", "filters": {}, "since": 2**64 - 1})
        error = stream.recv_until("error")
        assert error["payload"]["code"] == "bad_request" and "since" in error["message"]
        stream.send({"action": "ping"})
        assert stream.recv_until("pong")["payload"] is None


def test_stats_frame_has_top_level_stats(studio: StudioProcess) -> None:
    with Stream(studio) as stream:
        stream.subscribe(filters={})
        stats = stream.recv_until("stats")
    assert set(stats["stats"]) >= {"connected_at", "events_received", "events_filtered"}
    assert json.dumps(stats["payload"]) == json.dumps(stats["stats"])


def test_replay_of_a_filter_with_nothing_in_the_bus_tail_ends(studio: StudioProcess) -> None:
    """The filter's last match is older than everything the bus still holds: the store has it
    all, so the replay ends instead of reading the store again and again."""
    with RawAgent(studio.agent_url) as agent:
        agent.send(event("quiet", "x", i=-1))
        for start in range(0, 6_000, 500):
            batch = [event("busy", "x", i=i) for i in range(start, start + 500)]
            agent.send({"type": "batch", "messages": batch})
        count = "/v1/dashboard/events/count"
        wait_for(lambda: get(studio.http_url, count)["count"], lambda n: n == 6_001)
    with Stream(studio) as stream:
        stream.subscribe(filters={"agent_ids": ["quiet"]}, since=0, batch=True)
        assert [e["data"]["i"] for e in stream.events(1)] == [-1]
        assert stream.recv_until("replayed", timeout=10 * UNIT)["payload"]["count"] == 1


def test_replay_of_more_than_a_hundred_thousand_events_leaves_no_gap(
    studio: StudioProcess,
) -> None:
    """A replay runs to the end however long: it once stopped at 100,000 events and went on
    with live ones, and the events in between never came, with nothing to say so."""
    total = 101_000
    with RawAgent(studio.agent_url) as agent:
        for start in range(0, total, 1_000):
            batch = [event("deep", "x", i=i) for i in range(start, start + 1_000)]
            agent.send({"type": "batch", "messages": batch})
        count = "/v1/dashboard/events/count"
        wait_for(lambda: get(studio.http_url, count)["count"], lambda n: n == total, 60 * UNIT)
        with Stream(studio) as stream:
            stream.subscribe(filters={}, since=0, batch=True)
            agent.send(
                {"type": "batch", "messages": [event("deep", "x", i=total + i) for i in range(500)]}
            )
            got = stream.events(total + 500, timeout=60 * UNIT)
    assert [p["data"]["i"] for p in got] == list(range(total + 500))


def stuck_viewer(studio: StudioProcess, *, batch: bool) -> socket.socket:
    """A live-stream client that subscribes to everything and then never reads: a console in a
    frozen tab. Its receive buffer is small, so the server's soon holds unsent frames."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10 * UNIT)
    sock.connect(("127.0.0.1", studio.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        f"GET /v1/dashboard/events/stream HTTP/1.1\r\nHost: 127.0.0.1:{studio.port}\r\n"
        f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    assert sock.recv(1024).startswith(b"HTTP/1.1 101")
    data = json.dumps({"action": "subscribe", "filters": {}, "batch": batch}).encode()
    assert len(data) < 126  # one byte of length
    mask = os.urandom(4)
    sock.sendall(
        bytes([0x81, 0x80 | len(data)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    )
    return sock


def test_a_stop_does_not_wait_for_stream_clients_that_stopped_reading(
    tmp_path: Path, new_db: Databases
) -> None:
    """Their unsent frames kept their sockets open: a SIGTERM waited the whole graceful timeout
    (10 s) and ended with `Cancel 0 running task(s), timeout graceful shutdown exceeded`."""
    server = StudioProcess(new_db("stuck")).start()
    viewers = [stuck_viewer(server, batch=batch) for batch in (False, True)]
    try:
        with RawAgent(server.agent_url) as agent:
            messages = [event("busy", "text_chunk", delta="x" * 500) for _ in range(1_000)]
            for _ in range(20):  # 10 MB of events: far more than the viewers' buffers take
                agent.send({"type": "batch", "messages": messages})
            assert agent.request({"type": "ping"}, timeout=30 * UNIT) == {"type": "pong"}
        wait_for(
            lambda: get(server.http_url, "/v1/dashboard/overview"),
            lambda o: o["events_total"] == 20_000,
        )
        started = time.monotonic()
        assert server.stop() == 0
        took = time.monotonic() - started
    finally:
        server.stop()
        for viewer in viewers:
            viewer.close()
    output = "".join(server.output)
    assert "graceful shutdown exceeded" not in output
    assert took < 5 * UNIT, output
    # Storage was flushed before the end, as always.
    with StudioProcess(new_db("stuck")) as again:
        assert get(again.http_url, "/v1/dashboard/events/count?agent_id=busy")["count"] == 20_000


def test_min_level_counts_events_without_severity_as_info_replayed_and_live(
    studio: StudioProcess,
) -> None:
    """`min_level: "error"` let every text chunk through, as they carry no severity; an
    `error` event without one is an error, as every error count has it."""
    with RawAgent(studio.agent_url) as agent, Stream(studio) as stream:
        agent.send(event("lv", "text_chunk", delta="old"))
        agent.send(event("lv", "error", message="old"))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        stream.subscribe(filters={"min_level": "error"}, since=0)
        replayed, _ = stream.until("replayed")
        agent.send(event("lv", "text_chunk", delta="new"))
        agent.send(event("lv", "error", severity="warn", message="a warning"))
        agent.send(event("lv", "error", message="new"))
        (live,) = stream.events(1)
    assert [f["payload"]["data"] for f in replayed if f["type"] == "event"] == [
        {"event_type": "error", "message": "old"}
    ]
    assert live["data"] == {"event_type": "error", "message": "new"}


def test_a_since_past_the_newest_cursor_follows_from_now_and_says_so(
    studio: StudioProcess,
) -> None:
    """A client resuming with a cursor of another (or an emptied) database heard nothing more
    until the cursors passed its own, and was not told."""
    with RawAgent(studio.agent_url) as agent, Stream(studio) as stream:
        agent.send(event("reset", "x", i=1))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        reply = stream.subscribe(filters={}, since=10**12)
        assert reply["payload"]["since_reset"] == {"since": 10**12, "cursor": 1}
        assert stream.recv_until("replayed")["payload"] == {"cursor": 1, "count": 0}
        agent.send(event("reset", "x", i=2))
        (live,) = stream.events(1)
    assert (live["cursor"], live["data"]["i"]) == (2, 2)


def test_a_since_within_the_store_says_nothing_of_a_reset(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent, Stream(studio) as stream:
        agent.send(event("same", "x", i=1))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        reply = stream.subscribe(filters={}, since=1)
        assert "since_reset" not in reply["payload"]
        assert stream.recv_until("replayed")["payload"] == {"cursor": 1, "count": 0}


def test_agent_count_counts_the_connected_agents_the_filter_follows(
    studio: StudioProcess,
) -> None:
    """It counted every agent ever seen, and every id in `agent_ids`, known or not."""
    for gone in ("gone1", "gone2"):
        with RawAgent(studio.agent_url) as agent:
            agent.request(register(gone))
    with RawAgent(studio.agent_url) as agent, Stream(studio) as stream:
        agent.request(register("here"))
        overview = "/v1/dashboard/overview"
        wait_for(lambda: get(studio.http_url, overview)["agents"], lambda a: a["online"] == 1)
        counts = []
        for filters in ({}, {"agent_ids": ["here", "gone1", "nobody"]}, {"agent_ids": ["x"]}):
            reply = stream.subscribe(filters=filters)
            stats = stream.recv_until("stats")["stats"]
            counts.append((reply["payload"]["agent_count"], stats["subscribed_agents"]))
    assert counts == [(1, 1), (1, 1), (0, 0)]


def test_replayed_event_frames_say_replay_and_live_ones_do_not(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent, Stream(studio) as stream:
        agent.send(event("plain", "x", i=1))
        agent.send(event("plain", "x", i=2))
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        stream.subscribe(filters={}, since=0)
        replayed, _ = stream.until("replayed")
        agent.send(event("plain", "x", i=3))
        live = stream.recv_until("event")
    assert [(f["payload"]["data"]["i"], f.get("replay")) for f in replayed] == [
        (1, True),
        (2, True),
    ]
    assert live["payload"]["data"]["i"] == 3 and "replay" not in live


def test_a_ping_or_subscribe_during_a_replay_is_answered_at_once(studio: StudioProcess) -> None:
    """The socket read nothing until a replay had sent everything: a client that asked for too
    much history could neither ping nor change its mind. A new subscribe ends the replay."""
    total = 20_000
    with RawAgent(studio.agent_url) as agent:
        for start in range(0, total, 1_000):
            batch = [event("old", "x", i=i) for i in range(start, start + 1_000)]
            agent.send({"type": "batch", "messages": batch})
        count = "/v1/dashboard/events/count"
        wait_for(lambda: get(studio.http_url, count)["count"], lambda n: n == total, 30 * UNIT)
        with Stream(studio) as stream:
            stream.subscribe(filters={}, since=0)
            agent.send(event("old", "x", i=total))  # live during the replay: it must wait
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            stream.send({"action": "ping"})
            stream.send({"action": "subscribe", "filters": {"agent_ids": ["new"]}})
            before, _ = stream.until("subscribed")
            agent.send(event("new", "x", i=-1))
            between, live = stream.until("event")
    kinds = [f["type"] for f in before]
    assert "pong" in kinds and "replayed" not in kinds
    cursors = [f["payload"]["cursor"] for f in before if f["type"] == "event"]
    assert cursors == list(range(1, len(cursors) + 1)) and len(cursors) < total  # no gap
    assert [f["type"] for f in between] == ["stats"]
    assert live["payload"]["agent_id"] == "new"


def test_the_stream_and_healthz_name_the_database(tmp_path: Path, new_db: Databases) -> None:
    """A console reconnecting to a Studio that came back on another database kept its views
    of the old one when it had seen no event: nothing said the database was another."""
    first = StudioProcess(new_db("one")).start()
    try:
        with Stream(first) as stream:
            store_id = stream.greeting["payload"]["store_id"]
        assert call(first.http_url, "/healthz")[1]["store"]["id"] == store_id
        first.restart()
        with Stream(first) as stream:
            assert stream.greeting["payload"]["store_id"] == store_id  # the same database
    finally:
        first.stop()
    second = StudioProcess(new_db("two")).start()
    try:
        with Stream(second) as stream:
            assert stream.greeting["payload"]["store_id"] not in ("", store_id)
    finally:
        second.stop()


def test_replays_of_big_events_hold_little_memory_however_often_resubscribed(
    tmp_path: Path,
    new_db: Databases,
) -> None:
    """A replay read 1,000 events a page whatever their size, and a new subscribe left the
    running read going beside the next: 800 KB events and a client resubscribing in a loop
    took the server past 4 GB."""
    server = StudioProcess(new_db("big")).start()
    try:
        big = "x" * 400_000
        with RawAgent(server.agent_url) as agent:
            agent.request(register("big"))
            for i in range(100):  # 40 MB
                agent.send(event("big", "text_chunk", delta=big, n=i))
            assert agent.request({"type": "ping"}, timeout=30 * UNIT) == {"type": "pong"}
        wait_for(
            lambda: get(server.http_url, "/v1/dashboard/events/count")["count"], lambda n: n == 100
        )
        assert server.proc is not None
        status = Path(f"/proc/{server.proc.pid}/status")

        def peak_mb() -> float:
            line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM:"))
            return int(line.split()[1]) / 1024

        before = peak_mb()
        with Stream(server) as stream:
            for _ in range(30):
                stream.send({"action": "subscribe", "since": 0, "batch": True})
            got: list[int] = []
            deadline = time.monotonic() + 60 * UNIT
            while len(got) < 100 and time.monotonic() < deadline:  # the last replay, whole
                frame = stream.recv(deadline - time.monotonic())
                if frame["type"] == "subscribed":
                    got = []
                elif frame["type"] == "events":
                    got += [e["cursor"] for e in frame["payload"]]
            assert got == list(range(1, 101))
        # 178 MB more with pages of every event, and reads left running beside the next.
        assert peak_mb() - before < 100, (before, peak_mb())
    finally:
        server.stop()


def test_an_integer_past_64_bits_in_a_frame_the_standard_parser_reads_is_kept(
    studio: StudioProcess,
) -> None:
    """A lone surrogate's escape sends a frame to the standard library's parser, which reads
    integers whole; the fast encoder then refused the integer, and the frame was lost."""
    frame = '{"type":"event","agent_id":"cut","event":{"s":"\\ud83d","n":' + str(2**64) + "}}"
    with Stream(studio) as stream, RawAgent(studio.agent_url) as agent:
        stream.subscribe(filters={})
        agent.request(register("cut"))
        agent.send_raw(frame)
        agent.send(event("cut", "after"))
        live = [e for e in stream.events(2) if e["agent_id"] == "cut"]
    stored = wait_for(lambda: events(studio.http_url, "agent_id=cut"), lambda e: len(e) == 2)
    assert live[0]["data"] == {"s": "\ufffd", "n": 2**64}
    assert stored[0]["event"]["n"] == 2**64 and type(stored[0]["event"]["n"]) is int
    assert [e["event_type"] for e in stored] == ["unknown", "after"]
