"""The delivery worker: batching, ordering, back-pressure, reconnects, timeouts, fork."""

from __future__ import annotations

import gc
import json
import logging
import os
import re
import threading
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, replace

import pytest

from aster_studio_sdk import DropPolicy, StudioClient
from aster_studio_sdk._errors import ConnectionClosed
from aster_studio_sdk._transport import Connection
from aster_studio_sdk._worker import OP_TEXT
from aster_studio_sdk.testing import (
    IN_MEMORY_URL,
    InMemoryStudio,
    MemoryConnection,
    MemoryTransport,
)
from tests.support.timing import UNIT

from .conftest import FAST, MakeClient, wait_until

SLACK = 0.25 * UNIT  # scheduling delay allowed past a timeout on a busy machine
DROP_TOTAL = re.compile(r"^dropped \d+ events\b.*; (\d+) dropped in total$")


def deltas(studio: InMemoryStudio) -> list[str]:
    return [str(e.event.get("delta")) for e in studio.events if e.event_type == "text_chunk"]


def test_batches_respect_the_message_limit(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client(options=replace(FAST, max_batch_messages=100))
    for i in range(2_000):
        client.text(str(i))
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(2_000)]
    # register + at least 20 batches; never one frame per event
    assert 20 < memory.frames < 200


def test_batches_respect_the_byte_limit(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client(options=replace(FAST, max_batch_bytes=4_000, max_message_bytes=4_000))
    for _ in range(500):
        client.text("x" * 100)
    assert client.flush(5 * UNIT)
    assert len(memory.events) == 500
    assert max(memory.frame_sizes) <= 4_000 + 40  # the batch wrapper adds a few bytes


def test_first_event_is_sent_without_waiting_for_the_batch_interval(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client(options=replace(FAST, flush_interval=30.0))
    assert wait_until(lambda: client.stats().connected)
    client.text("hello")
    assert wait_until(lambda: len(memory.events) == 1, 2 * UNIT)


def test_events_from_many_threads_keep_per_thread_order(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()

    def emit(thread: int) -> None:
        for i in range(2_000):
            client.event("progress", "tick", thread=thread, i=i)

    threads = [threading.Thread(target=emit, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert client.flush(10 * UNIT)
    assert len(memory.events) == 16_000
    for thread in range(8):
        seen = [e.event["i"] for e in memory.events if e.event["thread"] == thread]
        assert seen == list(range(2_000))


def test_full_queue_drops_newest_and_counts(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    opts = replace(FAST, max_queue_size=100, max_unacked_messages=10)
    client = make_client(options=opts)
    for i in range(10):
        client.text(str(i))
    assert wait_until(lambda: client.stats().unacked == 10)
    for i in range(10, 1_000):
        client.text(str(i))
    assert client.stats().dropped == 890  # 100 queued + 10 in the resend buffer kept
    memory.down = False
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(110)]


def test_a_half_full_queue_wakes_the_worker_while_the_studio_is_down(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """Down, the worker looked at the queue every 0.1 s: a small queue filled up in between
    and dropped events while the resend buffer still had room (18,700 of 40,000 at 20,000/s
    with `max_queue_size=1000`). Half full, it now wakes the worker."""
    memory.down = True
    client = make_client(options=replace(FAST, max_queue_size=1_000))
    worker = client._worker
    assert worker is not None
    worker._pump = lambda: None  # type: ignore[method-assign]  # the queue stays as filled
    woken = []
    worker.wake = lambda: woken.append(len(client._queue))  # type: ignore[method-assign]
    for i in range(800):
        client.text(str(i))
    assert woken == [501]  # once, as the queue passed half its 1,000


def test_the_queue_moves_to_the_resend_buffer_while_a_connect_hangs(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """The worker connected on its own thread: while a connect hung, nothing moved the queue
    into the resend buffer, and a small queue dropped events the buffer had room for."""
    memory.connect_delay = 2 * UNIT
    client = make_client(options=replace(FAST, max_queue_size=100))
    for burst in range(4):  # 200 events: twice what the queue holds
        for i in range(50):
            client.text(str(burst * 50 + i))
        assert wait_until(lambda: client.stats().queued == 0, 0.5 * UNIT)
    assert client.stats().dropped == 0
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(200)]


def test_full_queue_drops_oldest_when_asked(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    opts = replace(FAST, max_queue_size=100, max_unacked_messages=10)
    client = make_client(options=opts, drop_policy=DropPolicy.DROP_OLDEST)
    for i in range(10):
        client.text(str(i))
    assert wait_until(lambda: client.stats().unacked == 10)
    for i in range(10, 1_000):
        client.text(str(i))
    assert client.stats().dropped == 890
    memory.down = False
    assert client.flush(5 * UNIT)
    # the resend buffer's ten and the newest hundred survive
    assert deltas(memory) == [str(i) for i in [*range(10), *range(900, 1_000)]]


def test_drop_oldest_never_drops_session_markers(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    opts = replace(FAST, max_queue_size=50, max_unacked_messages=1)
    client = make_client(options=opts, drop_policy="drop_oldest")
    time.sleep(0.05 * UNIT)
    s = client.session("s")
    for i in range(500):
        s.text(str(i))
    s.end()
    memory.down = False
    assert client.flush(5 * UNIT)
    assert memory.sessions["s"].status == "completed"


def test_emitting_never_blocks_while_the_studio_is_down(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client(options=replace(FAST, max_queue_size=1_000))
    start = time.perf_counter()
    for _ in range(100_000):
        client.text("x")
    assert time.perf_counter() - start < 2 * UNIT
    assert client.stats().queued <= 1_000


def test_reconnects_and_stores_each_event_exactly_once(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.cut_every = 3  # store every third frame, then drop the link before acking
    client = make_client(options=replace(FAST, max_batch_messages=50))
    for i in range(3_000):
        client.text(str(i))
        if i % 500 == 0:
            time.sleep(0.005)
    assert client.flush(10 * UNIT)
    assert deltas(memory) == [str(i) for i in range(3_000)]
    stats = client.stats()
    assert stats.disconnects > 0 and stats.connects > 1


def test_missing_acks_trigger_a_reconnect_and_no_duplicates(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.drop_acks = True
    client = make_client(options=replace(FAST, ack_timeout=0.05))
    for i in range(100):
        client.text(str(i))
    assert wait_until(lambda: client.stats().disconnects > 0)
    memory.drop_acks = False
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(100)]


def test_open_sessions_are_registered_again_after_reconnect(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    s = client.session("s")
    assert client.flush(5 * UNIT)
    memory.disconnect_all()
    assert wait_until(lambda: client.stats().connects == 2)
    s.text("after")
    assert client.flush(5 * UNIT)
    assert memory.sessions["s"].registrations == 2
    assert memory.sessions["s"].status == "active"


def test_server_down_at_start_then_up(memory: InMemoryStudio, make_client: MakeClient) -> None:
    memory.down = True
    client = make_client()
    for i in range(100):
        client.text(str(i))
    assert client.flush(0.1 * UNIT) is False
    memory.down = False
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(100)]


def test_legacy_server_gets_plain_messages_at_most_once() -> None:
    legacy = InMemoryStudio(legacy=True)
    client = legacy.client("old", options=FAST, strict=True)
    try:
        with client.session("s") as s:
            for i in range(50):
                s.text(str(i))
        assert client.flush(5 * UNIT)
        assert deltas(legacy) == [str(i) for i in range(50)]
        assert client.stats().reliable is False
        assert not any(e["code"] == "unknown_type" for e in legacy.errors)
    finally:
        client.close(5 * UNIT)


def test_refused_registration_is_not_reported_as_delivered(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """Refused, the SDK fell back to at-most-once: it wrote every event (each refused in
    turn), counted them delivered, and flush() returned True."""
    memory.forbidden.add("agent-1")
    client = make_client()
    for i in range(10):
        client.text(str(i))
    assert client.flush(0.3 * UNIT) is False
    stats = client.stats()
    assert (stats.delivered, stats.reliable, stats.unacked) == (0, None, 10)
    assert stats.refused >= 1


def test_events_are_kept_through_a_refusal_and_delivered_once_accepted(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.forbidden.add("agent-1")
    client = make_client()
    for i in range(10):
        client.text(str(i))
    assert wait_until(lambda: len(memory.errors) >= 2)  # refused, and refused again
    memory.forbidden.clear()
    assert client.flush(5 * UNIT)
    assert deltas(memory) == [str(i) for i in range(10)]
    assert client.stats().reliable is True


def test_refused_registration_is_logged_as_an_error_naming_the_reason(
    memory: InMemoryStudio, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    memory.forbidden.add("agent-1")
    with caplog.at_level(logging.WARNING, logger="aster_studio_sdk"):
        make_client()
        assert wait_until(lambda: any(r.levelno >= logging.ERROR for r in caplog.records))
        assert wait_until(lambda: len(memory.errors) >= 3)  # refused again, and again
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1  # once per log_interval, not once per attempt
    assert "forbidden_agent" in errors[0]


def test_registration_refused_as_invalid_is_retried_with_the_agent_id_alone(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """A name past the Studio's 1,024 characters had the register refused; the SDK then sent
    everything at-most-once, without acks or the Studio's decisions."""
    client = make_client(name="n" * 2_000)
    client.text("hello")
    assert client.flush(5 * UNIT)
    assert client.stats().reliable is True
    assert memory.agents["agent-1"].name is None
    assert deltas(memory) == ["hello"]


class NoticeFirst(MemoryTransport):
    """Connections whose first reply is a rate-limit notice, as the Studio sends while it
    slows a connection down (the frame is still handled, nothing dropped)."""

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        conn = super().connect(url, headers, timeout)
        assert isinstance(conn, MemoryConnection)
        notice = {"type": "error", "code": "rate_limited", "message": "over 10 messages/s"}
        conn.push(notice)
        return conn


def test_a_rate_limit_notice_while_registering_is_not_a_refusal(memory: InMemoryStudio) -> None:
    client = StudioClient(
        "agent-1", enabled=True, url=IN_MEMORY_URL, transport=NoticeFirst(memory), strict=True
    )
    try:
        client.text("hello")
        assert client.flush(5 * UNIT)
        assert client.stats().reliable is True
    finally:
        client.close(2 * UNIT)


def test_flush_returns_within_its_timeout_when_the_studio_is_down(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client()
    client.text("x")
    start = time.monotonic()
    assert client.flush(0.2 * UNIT) is False
    assert time.monotonic() - start < 0.2 * UNIT + SLACK


def test_close_returns_within_its_timeout_when_the_studio_never_comes_up(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client()
    client.text("x")
    start = time.monotonic()
    assert client.close(0.3 * UNIT) is False
    assert time.monotonic() - start < 0.3 * UNIT + SLACK
    assert wait_until(lambda: client.stats().undelivered >= 1)


def test_close_returns_within_its_timeout_when_sends_stall(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    assert wait_until(lambda: client.stats().connected)
    memory.stall_sends = True
    client.text("x")
    start = time.monotonic()
    assert client.close(0.3 * UNIT) is False
    assert time.monotonic() - start < 0.3 * UNIT + SLACK
    worker = client._worker
    assert worker is not None and worker.done.wait(2 * UNIT)  # the stuck send was aborted
    memory.stall_sends = False


def test_close_returns_within_its_timeout_when_connecting_hangs(memory: InMemoryStudio) -> None:
    memory.connect_delay = 1 * UNIT
    client = memory.client(options=FAST, strict=True)
    client.text("x")
    start = time.monotonic()
    assert client.close(0.2 * UNIT) is False
    assert time.monotonic() - start < 0.2 * UNIT + SLACK
    worker = client._worker
    assert worker is not None and worker.done.wait(5 * UNIT)  # it gives up after connecting


def test_oversized_and_unencodable_events_are_dropped_and_counted(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client(options=replace(FAST, max_message_bytes=1_000, max_batch_bytes=2_000))
    client.event("progress", "big", blob="x" * 5_000)
    client.event("progress", "odd_keys", data={1: "a", (2, 3): "b"})
    client.event("progress", "nan", value=float("nan"))
    client.text("ok")
    assert client.flush(5 * UNIT)
    stats = client.stats()
    assert stats.oversized == 1
    types = [e.event_type for e in memory.events]
    assert types == ["odd_keys", "nan", "text_chunk"]
    assert memory.events[0].event["data"] == {"1": "a"}


def test_a_cycle_or_nesting_past_the_studios_limit_drops_that_event_only(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """A value holding itself twice was copied as a tree of 2**100 nodes (delivery stopped
    for good, a core burnt); one nested past 126 levels made the Studio refuse its whole
    batch, and the ack after it counted the batch delivered."""
    client = make_client()
    node: dict[str, object] = {}
    node["parent"] = node
    node["self"] = node
    client.event("progress", "cycle", node=node)
    for name, levels in (("deep", 140), ("shallow", 100)):
        value: dict[str, object] = {}
        current = value
        for _ in range(levels):
            current["d"] = {}
            current = current["d"]  # type: ignore[assignment]
        client.event("progress", name, value=value)
    client.text("after")
    started = time.monotonic()
    assert client.flush(5 * UNIT)
    assert time.monotonic() - started < 2 * UNIT
    assert client.stats().unencodable == 2
    assert [e.event_type for e in memory.events] == ["shallow", "text_chunk"]


@dataclass(frozen=True)
class Holder:
    value: object


def test_nesting_past_the_limit_inside_a_dataclass_drops_that_event_only(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    """orjson writes a dataclass as an object, which the SDK's own walk of the value did not
    enter: the Studio refused every batch carrying the event, and delivery stalled."""
    client = make_client()
    value: dict[str, object] = {}
    current = value
    for _ in range(140):
        current["d"] = {}
        current = current["d"]  # type: ignore[assignment]
    client.event("progress", "deep", holder=Holder(value))
    client.text("after")
    assert client.flush(5 * UNIT)
    assert client.stats().unencodable == 1
    assert [e.event_type for e in memory.events] == ["text_chunk"]


def test_server_rejection_counts_and_does_not_block_flush(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.event("progress", "x" * 200)  # event_type over the server's 128-character limit
    client.text("fine")
    assert client.flush(5 * UNIT)
    assert client.stats().rejected == 1
    assert [e.event_type for e in memory.events] == ["text_chunk"]


def test_client_garbage_collected_without_close_still_delivers(memory: InMemoryStudio) -> None:
    client = memory.client(options=FAST, strict=True)
    client.text("bye")
    worker = client._worker
    assert worker is not None
    del client
    gc.collect()
    assert worker.done.wait(5 * UNIT)
    assert deltas(memory) == ["bye"]


def test_forked_child_reports_with_its_own_producer(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.text("parent-before")
    assert client.flush(5 * UNIT)
    read_fd, write_fd = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: report over its own connection, tell the parent what it saw
        code = 1
        try:
            client.text("child")
            ok = client.flush(5 * UNIT)
            child_events = [e.event.get("delta") for e in memory.events]
            report = {"ok": ok, "producer": client.producer_id, "events": child_events}
            os.write(write_fd, json.dumps(report).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        report = json.loads(pipe.read() or "{}")
    _, status = os.waitpid(pid, 0)
    assert status == 0
    assert report["ok"] is True
    assert report["producer"] != client.producer_id
    # the child's copy of the studio got the child's event once, none of the parent's again
    assert report["events"] == ["parent-before", "child"]
    client.text("parent-after")
    assert client.flush(5 * UNIT)
    assert deltas(memory) == ["parent-before", "parent-after"]


def test_stats_report_delivery_counters(memory: InMemoryStudio, make_client: MakeClient) -> None:
    client = make_client()
    for _ in range(10):
        client.text("x")
    assert client.flush(5 * UNIT)
    stats = client.stats()
    assert stats.enabled and stats.connected and stats.reliable
    assert stats.sent == stats.delivered == 10
    assert stats.queued == stats.unacked == stats.dropped == 0


def test_disabled_client_is_unaffected_by_many_events() -> None:
    client = StudioClient("a", enabled=False)
    start = time.perf_counter()
    for _ in range(100_000):
        client.text("x")
    assert time.perf_counter() - start < 1 * UNIT


@pytest.mark.parametrize("policy", list(DropPolicy))
def test_both_policies_bound_the_queue(
    memory: InMemoryStudio, make_client: MakeClient, policy: DropPolicy
) -> None:
    memory.down = True
    client = make_client(options=replace(FAST, max_queue_size=10), drop_policy=policy)
    for _ in range(1_000):
        client.text("x")
    assert client.stats().queued <= 10


def test_drops_are_logged_once_per_interval(
    memory: InMemoryStudio, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    memory.down = True
    opts = replace(FAST, max_queue_size=10, max_unacked_messages=1, log_interval=60.0)
    client = make_client(options=opts)
    with caplog.at_level(logging.WARNING, logger="aster_studio_sdk"):
        for _ in range(100):
            client.text("x")
        assert wait_until(lambda: any("dropped" in r.message for r in caplog.records))
        for _ in range(100):
            client.text("x")
        time.sleep(0.1 * UNIT)
    drop_logs = [r for r in caplog.records if "because the queue was full" in r.message]
    assert len(drop_logs) == 1
    assert client.stats().dropped >= 180


def logged_drop_totals(caplog: pytest.LogCaptureFixture) -> list[int]:
    """Return the running totals the drop reports logged, in order."""
    found = (DROP_TOTAL.search(r.getMessage()) for r in caplog.records)
    return [int(m.group(1)) for m in found if m is not None]


def test_drops_since_the_last_report_are_logged_at_close(
    memory: InMemoryStudio, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    """The report at shutdown waited for the log interval like any other: the drops after the
    last report were never logged (90 of 190)."""
    memory.down = True
    opts = replace(FAST, max_queue_size=10, max_unacked_messages=1, log_interval=60.0)
    client = make_client(options=opts)
    with caplog.at_level(logging.WARNING, logger="aster_studio_sdk"):
        for _ in range(100):
            client.text("x")
        assert wait_until(lambda: len(logged_drop_totals(caplog)) == 1)
        for _ in range(100):
            client.text("x")
        assert client.close(0.2 * UNIT) is False
        worker = client._worker
        assert worker is not None and worker.done.wait(2 * UNIT)  # it reports as it ends
    dropped = client.stats().dropped
    assert dropped >= 180
    assert logged_drop_totals(caplog)[-1] == dropped


def test_oversized_and_unencodable_events_count_in_the_drop_report(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    opts = replace(FAST, max_message_bytes=1_000, max_batch_bytes=2_000)
    client = make_client(options=opts)
    node: dict[str, object] = {}
    node["self"] = node
    with caplog.at_level(logging.WARNING, logger="aster_studio_sdk"):
        for _ in range(3):
            client.event("progress", "big", blob="x" * 5_000)
        for _ in range(2):
            client.event("progress", "cycle", node=node)
        assert client.close(5 * UNIT)
    assert logged_drop_totals(caplog)[-1] == 5


def test_undelivered_counts_messages_not_queued_flushes_and_closes(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.down = True
    client = make_client(options=replace(FAST, max_unacked_messages=1))
    for i in range(5):
        client.text(str(i))
    assert wait_until(lambda: client.stats().unacked == 1)
    assert client.flush(0.05 * UNIT) is False  # its flush item stays queued behind the events
    assert client.close(0.1 * UNIT) is False
    worker = client._worker
    assert worker is not None and worker.done.wait(2 * UNIT)
    assert client.stats().undelivered == 5


def test_drop_oldest_counts_no_drop_when_the_queue_emptied_meanwhile(
    make_client: MakeClient,
) -> None:
    """A producer saw the queue full, then the worker took every item before it could take
    the oldest: nothing was dropped, but one drop was counted."""
    client = make_client(drop_policy=DropPolicy.DROP_OLDEST)
    client._overflow((OP_TEXT, None, time.time(), "x", None))
    assert client.stats().dropped == 0


def test_events_reported_after_close_are_counted_as_dropped(make_client: MakeClient) -> None:
    client = make_client()
    assert client.close(5 * UNIT)
    client.text("late")
    client.event("progress", "late")
    assert client.stats().dropped == 2


def test_connection_failures_are_logged_once_per_interval(
    memory: InMemoryStudio, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    memory.down = True
    with caplog.at_level(logging.WARNING, logger="aster_studio_sdk"):
        client = make_client()
        assert wait_until(lambda: client.stats().connect_failures >= 5)
    assert len([r for r in caplog.records if "cannot reach" in r.message]) == 1


def test_lone_surrogates_never_produce_a_frame_the_server_refuses(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    client = make_client()
    client.text("broken \ud800 text")
    client.text("fine")
    assert client.flush(5 * UNIT)
    assert deltas(memory) == ["broken ? text", "fine"]
    assert memory.errors == []


def test_encode_without_orjson_matches_orjson_on_odd_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from datetime import UTC, datetime

    from aster_studio_sdk import _worker

    monkeypatch.setattr(_worker, "_FAST_CODEC", False)
    data = _worker.encode(
        {
            "a": float("nan"),
            "b": [float("inf"), 1.5],
            "c": {1: "x"},
            "d": datetime(2024, 1, 1, tzinfo=UTC),
        }
    )
    assert data is not None
    assert json.loads(data) == {
        "a": None,
        "b": [None, 1.5],
        "c": {"1": "x"},
        "d": "2024-01-01T00:00:00+00:00",
    }


def test_messages_stored_whose_acks_were_lost_count_as_delivered(
    memory: InMemoryStudio, make_client: MakeClient
) -> None:
    memory.drop_acks = True
    client = make_client()
    for i in range(300):
        client.text(str(i))
    assert wait_until(lambda: len(memory.events) == 300)
    memory.drop_acks = False
    memory.disconnect_all()  # the reconnect learns last_seq: all 300 are stored
    assert client.flush(5 * UNIT)
    stats = client.stats()
    assert stats.delivered == 300
    assert stats.sent - stats.resent == 300


class _FailingSends:
    """A transport whose connections fail the sends numbered in `fail_at` (counted across
    connections, the register included), delivering nothing for them."""

    def __init__(self, studio: InMemoryStudio, fail_at: set[int]) -> None:
        self._inner = MemoryTransport(studio)
        self.fail_at = fail_at
        self.sends = 0

    def connect(self, url: str, headers: Mapping[str, str], timeout: float) -> Connection:
        conn = self._inner.connect(url, headers, timeout)
        transport = self

        class Failing:
            def send(self, frame: bytes) -> None:
                transport.sends += 1
                if transport.sends in transport.fail_at:
                    conn.close()
                    raise ConnectionClosed("send failed")
                conn.send(frame)

            def recv(self, timeout: float) -> str | bytes | None:
                return conn.recv(timeout)

            def close(self) -> None:
                conn.close()

            def abort(self) -> None:
                conn.abort()

        return Failing()


def test_sent_minus_resent_counts_each_message_once_when_a_send_fails(
    memory: InMemoryStudio,
) -> None:
    transport = _FailingSends(memory, {3, 7})
    client = StudioClient(
        "agent-1",
        url=IN_MEMORY_URL,
        enabled=True,
        strict=True,
        transport=transport,
        options=replace(FAST, max_batch_messages=50),
    )
    try:
        for i in range(1000):
            client.text(str(i))
        assert client.flush(10 * UNIT)
        stats = client.stats()
        assert transport.sends > 7 and len(memory.events) == 1000
        assert stats.delivered == 1000
        assert stats.sent - stats.resent == 1000
    finally:
        client.close(UNIT)


def test_a_huge_integer_is_dropped_as_unreadable_not_as_too_deep(
    make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()
    client.event("monitor", "big", v=10**400)
    assert client.flush(5 * UNIT)
    assert client.stats().unencodable == 1
    assert "a number the Studio cannot read" in caplog.text
    assert "nests deeper" not in caplog.text
