"""Reliable delivery: acks only after storage, resume after reconnect, nothing stored twice."""

from __future__ import annotations

import os
import resource
import signal
import time
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.support.agent import RawAgent, event
from tests.support.api import call, events, get, wait_for
from tests.support.databases import Databases
from tests.support.server import StudioProcess
from tests.support.timing import UNIT


def numbered(start: int, stop: int, agent: str = "r-1") -> dict[str, object]:
    return {
        "type": "batch",
        "messages": [
            {**event(agent, "text_chunk", delta=str(i)), "seq": i} for i in range(start, stop)
        ],
    }


def register_producer(agent: RawAgent, producer: str = "prod-1", agent_id: str = "r-1") -> int:
    reply = agent.request({"type": "register", "agent": {"id": agent_id}, "producer_id": producer})
    assert reply["type"] == "registered"
    return int(reply["last_seq"])


def test_new_producer_starts_at_zero(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        assert register_producer(agent) == 0


def test_ack_is_cumulative_and_means_stored(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        register_producer(agent)
        agent.send(numbered(1, 101))
        acked = 0
        while acked < 100:
            acked = agent.recv_until("ack")["seq"]
        # The ack came after the commit: every event up to it is readable now.
        assert len(events(studio.http_url)) == 100


def test_acks_are_coalesced(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        register_producer(agent)
        for start in range(1, 1001, 100):
            agent.send(numbered(start, start + 100))
        acks = []
        while not acks or acks[-1] < 1000:
            acks.append(agent.recv_until("ack")["seq"])
    assert len(acks) < 1000
    assert acks == sorted(acks)


def store_through(studio: StudioProcess, last: int) -> None:
    """A producer's messages 1 to `last`, stored (acked) on a connection closed afterwards."""
    with RawAgent(studio.agent_url) as agent:
        register_producer(agent)
        agent.send(numbered(1, last + 1))
        while agent.recv_until("ack")["seq"] < last:
            pass


def test_resent_duplicates_get_one_ack(studio: StudioProcess) -> None:
    """Each duplicate acked the durable sequence again: `ack 15, ack 15, ack 18`."""
    store_through(studio, 15)
    with RawAgent(studio.agent_url) as agent:
        assert register_producer(agent) == 15
        for seq in range(12, 19):
            agent.send({**event("r-1", "text_chunk", delta=str(seq)), "seq": seq})
        acks = [agent.recv_until("ack")["seq"]]
        while acks[-1] < 18:
            acks.append(agent.recv_until("ack")["seq"])
    assert acks in ([15, 18], [18]), acks


def test_resend_after_reconnect_stores_each_message_once(studio: StudioProcess) -> None:
    first = RawAgent(studio.agent_url)
    register_producer(first)
    first.send(numbered(1, 301))
    first.close()  # gone before reading any ack
    with RawAgent(studio.agent_url) as second:
        last = register_producer(second)
        assert 0 <= last <= 300
        second.send(numbered(1, 401))  # a careless client resends everything
        while second.recv_until("ack")["seq"] < 400:
            pass
    stored = events(studio.http_url)
    assert [e["event"]["delta"] for e in stored] == [str(i) for i in range(1, 401)]


def test_a_registration_inside_a_numbered_batch_is_applied_in_order_and_acked(
    studio: StudioProcess,
) -> None:
    """The registration waits for the writer mid-frame; the messages after it still follow."""
    with RawAgent(studio.agent_url) as agent:
        register_producer(agent)
        batch = numbered(1, 3)
        register = {"type": "register", "agent": {"id": "r-2"}, "seq": 3}
        batch["messages"] = [*batch["messages"], register, *numbered(4, 6, "r-2")["messages"]]
        agent.send(batch)
        assert agent.recv_until("registered")["agent_id"] == "r-2"
        while agent.recv_until("ack")["seq"] < 5:
            pass
    stored = events(studio.http_url)
    assert sorted((e["agent_id"], e["event"]["delta"]) for e in stored) == [
        ("r-1", "1"),
        ("r-1", "2"),
        ("r-2", "4"),
        ("r-2", "5"),
    ]
    with RawAgent(studio.agent_url) as agent:
        assert register_producer(agent) == 5


def test_registered_reports_last_durable_seq(studio: StudioProcess) -> None:
    store_through(studio, 50)
    with RawAgent(studio.agent_url) as agent:
        assert register_producer(agent) == 50


def test_newer_connection_of_a_producer_closes_the_older_with_4001(
    studio: StudioProcess,
) -> None:
    old = RawAgent(studio.agent_url)
    register_producer(old)
    with RawAgent(studio.agent_url) as new:
        register_producer(new)
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                old.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001
    old.close()


def test_unnumbered_client_never_gets_acks(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        agent.send({"type": "batch", "messages": [event("plain", "x", i=i) for i in range(20)]})
        assert agent.request({"type": "ping"}) == {"type": "pong"}
        wait_for(lambda: events(studio.http_url), lambda e: len(e) == 20)
        assert agent.request({"type": "ping"}) == {"type": "pong"}


def test_rejected_numbered_message_is_acked_not_resent(studio: StudioProcess) -> None:
    with RawAgent(studio.agent_url) as agent:
        register_producer(agent)
        agent.send({"type": "event", "seq": 1, "agent_id": "r-1"})  # no event: rejected
        error = agent.recv_until("error")
        assert error["seq"] == 1
        assert agent.recv_until("ack")["seq"] == 1
    with RawAgent(studio.agent_url) as agent:
        assert register_producer(agent) == 1


def test_acked_events_survive_kill_9_exactly_once(tmp_path: Path, new_db: Databases) -> None:
    server = StudioProcess(new_db("k")).start()
    try:
        agent = RawAgent(server.agent_url)
        register_producer(agent)
        acked = 0
        for start in range(1, 2001, 200):
            agent.send(numbered(start, start + 200))
        while acked < 1000:
            acked = agent.recv_until("ack")["seq"]
        server.kill()
        agent.close()
        server.start()
        with RawAgent(server.agent_url) as again:
            last = register_producer(again)
            assert last >= acked
            again.send(numbered(1, 2001))  # resend everything: the server skips what it has
            while again.recv_until("ack")["seq"] < 2000:
                pass
        stored = events(server.http_url)
        assert [e["event"]["delta"] for e in stored] == [str(i) for i in range(1, 2001)]
    finally:
        server.stop()


def test_graceful_stop_flushes_everything_received(tmp_path: Path, new_db: Databases) -> None:
    server = StudioProcess(new_db("g")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            for start in range(0, 20_000, 500):
                agent.send(
                    {
                        "type": "batch",
                        "messages": [event("g", "x", i=i) for i in range(start, start + 500)],
                    }
                )
            assert agent.request({"type": "ping"}, timeout=30) == {"type": "pong"}
            # The pong follows every batch, so all 20,000 events were received; stop at once.
            assert server.stop() == 0
        server.start()
        assert get(server.http_url, "/v1/dashboard/events/count?agent_id=g")["count"] == 20_000
    finally:
        server.stop()


def test_ctrl_c_stops_gracefully_with_status_0(tmp_path: Path, new_db: Databases) -> None:
    """uvicorn re-raised the handled SIGINT after its graceful stop, so a clean Ctrl-C ended
    with status 130 as if interrupted, where the README promises 0 once everything is flushed."""
    server = StudioProcess(new_db("c")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.send({"type": "batch", "messages": [event("c", "x", i=i) for i in range(300)]})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
        assert server.proc is not None
        server.proc.send_signal(signal.SIGINT)
        assert server.proc.wait(20 * UNIT) == 0, "".join(server.output)
        server.stop()
        server.start()
        assert get(server.http_url, "/v1/dashboard/events/count?agent_id=c")["count"] == 300
    finally:
        server.stop()


def test_a_second_interrupt_stops_without_a_traceback_and_still_flushes(
    tmp_path: Path, new_db: Databases
) -> None:
    """Ctrl-C twice made uvicorn skip the app's shutdown: the loop's end cancelled it, which
    still flushed but logged a CancelledError traceback at ERROR."""
    server = StudioProcess(new_db("i")).start()
    try:
        with RawAgent(server.agent_url) as agent:
            agent.send({"type": "batch", "messages": [event("i", "x", i=i) for i in range(500)]})
            assert agent.request({"type": "ping"}) == {"type": "pong"}
            assert server.proc is not None
            server.proc.send_signal(signal.SIGINT)
            time.sleep(0.05)  # within the stop, as a second Ctrl-C is
            server.proc.send_signal(signal.SIGINT)
            server.proc.wait(20 * UNIT)
        server.stop()
        output = "".join(server.output)
        assert "Traceback" not in output and "CancelledError" not in output, output
        server.start()
        assert get(server.http_url, "/v1/dashboard/events/count?agent_id=i")["count"] == 500
    finally:
        server.stop()


def test_takeover_while_the_old_connection_is_mid_batch_stores_each_once(
    studio: StudioProcess,
) -> None:
    old = RawAgent(studio.agent_url)
    register_producer(old)
    for start in range(1, 20_001, 5_000):  # frames queued on the old connection
        old.send(numbered(start, start + 5_000))
    with RawAgent(studio.agent_url) as new:
        last = register_producer(new)  # takes over while the old one is still applying
        for start in range(1, 20_001, 5_000):  # a careless client resends everything
            new.send(numbered(start, start + 5_000))
        while new.recv_until("ack", timeout=30)["seq"] < 20_000:
            pass
    old.close()
    assert 0 <= last <= 20_000
    stored = events(studio.http_url)
    assert [e["event"]["delta"] for e in stored] == [str(i) for i in range(1, 20_001)]


def test_a_producer_resuming_after_a_restart_keeps_its_agent_state(
    tmp_path: Path, new_db: Databases
) -> None:
    """The SDK re-registers with status "ready" after every reconnect: once the Studio had
    restarted, every working agent showed "ready" (and so was never marked stalled). The
    same producer resuming is the same run, still in the state it reported; a new one is not."""
    server = StudioProcess(new_db("s")).start()
    try:
        working = {**event("r-1", "state_changed", state="working"), "seq": 1}
        with RawAgent(server.agent_url) as agent:
            register_producer(agent)
            agent.send(working)
            assert agent.recv_until("ack")["seq"] == 1
        server.restart()
        with RawAgent(server.agent_url) as agent:
            reply = agent.request(
                {
                    "type": "register",
                    "agent": {"id": "r-1", "status": "ready"},
                    "producer_id": "prod-1",
                }
            )
            assert reply["last_seq"] == 1
            assert get(server.http_url, "/v1/dashboard/agents/r-1")["state"] == "working"
        with RawAgent(server.agent_url) as agent:  # a new run of the agent
            register_producer(agent, producer="prod-2")
            assert get(server.http_url, "/v1/dashboard/agents/r-1")["state"] == "ready"
    finally:
        server.stop()


def test_a_full_disk_loses_nothing_acknowledged(tmp_path: Path) -> None:
    """Writes the store refused were dropped while later frames' marks acknowledged past
    them: the client never resent what was lost. Now the producer is closed with 1011, nothing
    past the loss is acknowledged, `/healthz` says the store fails, and the resend stores
    every event once."""
    db = tmp_path / "full.db"
    with StudioProcess(db) as server:
        assert server.proc is not None
        agent = RawAgent(server.agent_url)
        register_producer(agent)
        agent.send(numbered(1, 101))
        wait_for(lambda: agent.recv_until("ack")["seq"], lambda seq: seq == 100)
        # The disk fills: no file of the server's may grow past what it holds now.
        wal = Path(f"{db}-wal")
        size = max(os.path.getsize(db), os.path.getsize(wal) if wal.exists() else 0)
        _, hard = resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (size, hard))
        acked, closed = 100, None
        try:
            for start in range(101, 5101, 100):  # bounded: 5,000 events at most
                agent.send(numbered(start, start + 100))
            while closed is None:
                reply = agent.recv(timeout=20 * UNIT)
                if reply["type"] == "ack":
                    acked = max(acked, reply["seq"])
        except ConnectionClosed as exc:
            closed = exc.rcvd.code if exc.rcvd is not None else None
        finally:
            agent.close()
        assert closed == 1011
        status, health = call(server.http_url, "/healthz")
        assert status == 503 and health["store"]["status"] == "unhealthy"
        resource.prlimit(server.proc.pid, resource.RLIMIT_FSIZE, (hard, hard))  # space again
        with RawAgent(server.agent_url) as again:
            durable = register_producer(again)
            assert durable >= acked  # nothing acknowledged was lost
            again.send(numbered(durable + 1, 5101))
            wait_for(lambda: again.recv_until("ack")["seq"], lambda seq: seq == 5100)
        stored = [int(e["event"]["delta"]) for e in events(server.http_url, "agent_id=r-1")]
        assert sorted(stored) == list(range(1, 5101))  # each once
