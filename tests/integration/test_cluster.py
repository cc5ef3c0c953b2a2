"""Cluster mode: several Studios on one PostgreSQL schema, sharing live events, agents'
presence and controls through Redis (`serve --cluster redis://...`).

Black box: real `aster-studio serve` processes on one fresh schema each test, real sockets.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.integration.test_control import ask_permission, steerable
from tests.integration.test_live_stream import Stream
from tests.integration.test_reliable_delivery import numbered, register_producer
from tests.integration.test_security import login, request
from tests.support.agent import RawAgent, event, register
from tests.support.api import call, events, get, wait_for
from tests.support.postgres import fresh_schema, postgres_dsn
from tests.support.redis import redis_url
from tests.support.server import StudioProcess
from tests.support.timing import UNIT

StartStudios = Callable[..., list[StudioProcess]]


def each_at_once(servers: list[StudioProcess], action: Callable[[StudioProcess], object]) -> None:
    """Run `action` on every server at the same time (a thread each, bounded by the action's
    own timeouts); re-raise the first failure."""
    failures: list[BaseException] = []

    def run(server: StudioProcess) -> None:
        try:
            action(server)
        except BaseException as exc:  # re-raised below
            failures.append(exc)

    threads = [threading.Thread(target=run, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60 * UNIT)
    if failures:
        raise failures[0]


@pytest.fixture
def db() -> Iterator[str]:
    """A fresh schema's URL: the database every Studio of the test's cluster shares."""
    dsn = postgres_dsn()
    with fresh_schema(dsn) as schema:
        yield f"{dsn}?schema={schema}"


@pytest.fixture
def studios(db: str) -> Iterator[StartStudios]:
    """Start `count` Studios on `db` (with `env` added to their environment): clustered
    through the test Redis unless `clustered=False`, or through ASTER_STUDIO_CLUSTER with
    `by_env=True`. The first Studio of
    the schema starts alone (it sets the schema up: starting together is a test of its own),
    the others at once, as replicas do. All are stopped (bounded) afterwards, before the
    schema is dropped, and their logs printed (pytest shows them when the test fails)."""
    redis = redis_url()
    started: list[StudioProcess] = []

    def start(
        count: int = 1,
        *,
        clustered: bool = True,
        by_env: bool = False,
        env: dict[str, str] | None = None,
    ) -> list[StudioProcess]:
        args: tuple[str, ...] = ("--cluster", redis) if clustered and not by_env else ()
        env = {**(env or {}), **({"ASTER_STUDIO_CLUSTER": redis} if by_env else {})}
        servers = [StudioProcess(db, args=args, env=env) for _ in range(count)]
        first = not started
        started.extend(servers)
        if first:
            servers[0].start()
        each_at_once(servers[1:] if first else servers, StudioProcess.start)
        return servers

    try:
        yield start
    finally:
        # SIGTERM, SIGKILL after a bound; nothing for one already ended
        each_at_once(started, StudioProcess.stop)
        for number, server in enumerate(started, 1):
            print(f"--- studio {number} (port {server.port}) ---\n{''.join(server.output)}")


def refused(db: str, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run `serve --db DB ARGS`, which must refuse to start: (exit status, stderr). A Studio
    that starts instead is killed after a bound and fails the test."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "aster_studio", "serve", "--port", "0", "--db", db, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**{k: v for k, v in os.environ.items() if k != "ASTER_STUDIO_CLUSTER"}, **(env or {})},
    )
    try:
        _, err = proc.communicate(timeout=8 * UNIT)  # a refusal takes 1 to 2 s
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=5 * UNIT)
        pytest.fail(f"serve {' '.join(args)} ran instead of refusing:\n{out}{err}")
    return proc.returncode, err


def send_alternately(agents: dict[str, RawAgent], first: int, count: int) -> None:
    """Each agent sends events `i` = first..first+count-1, one at a time, taking turns; then a
    ping each, so every event was received before this returns."""
    for i in range(first, first + count):
        for agent_id, agent in agents.items():
            agent.send(event(agent_id, "x", i=i))
    for agent in agents.values():
        assert agent.request({"type": "ping"}) == {"type": "pong"}


def cursors(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["cursor"]) for item in items]


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in zip(values, values[1:], strict=False))


# --- the command line ------------------------------------------------------------------------


def test_cluster_with_a_sqlite_database_is_refused(tmp_path: Path) -> None:
    status, err = refused(str(tmp_path / "one.db"), "--cluster", "redis://127.0.0.1:6379/0")
    assert status == 2 and "--cluster needs a PostgreSQL database" in err, err
    assert "Traceback" not in err


def test_cluster_from_the_environment_with_a_sqlite_database_is_refused(tmp_path: Path) -> None:
    env = {"ASTER_STUDIO_CLUSTER": "redis://127.0.0.1:6379/0"}
    status, err = refused(str(tmp_path / "one.db"), env=env)
    assert status == 2 and "--cluster needs a PostgreSQL database" in err, err


def test_cluster_with_a_url_that_is_not_redis_is_refused(db: str) -> None:
    status, err = refused(db, "--cluster", "http://x")
    assert status == 2 and "--cluster takes a Redis URL" in err, err
    assert "Traceback" not in err


def test_three_clustered_studios_share_a_schema_and_a_plain_one_is_refused(
    db: str, studios: StartStudios
) -> None:
    members = [*studios(2), *studios(by_env=True)]
    ids = {call(member.http_url, "/healthz")[1]["store"]["id"] for member in members}
    assert len(ids) == 1 and "" not in ids
    for member in members:  # each hears the two others
        wait_for(
            lambda m=member: call(m.http_url, "/healthz")[1]["cluster"],
            lambda cluster: cluster["connected"] is True and len(cluster["peers"]) == 2,
            5 * UNIT,
        )
    status, err = refused(db)
    assert status == 2 and "in use" in err, err
    for member in members:  # the refused one disturbed none of them
        assert call(member.http_url, "/healthz")[0] == 200


def test_studios_started_at_once_on_a_new_schema_all_start() -> None:
    """Replicas of a deployment start together: on a new schema they set it up one at a time
    (its tables, its keys), none fails for another's doing so. A race: two Studios at once on
    each of three new schemas."""
    dsn, redis = postgres_dsn(), redis_url()
    for _ in range(3):
        with fresh_schema(dsn) as schema:
            pair = [
                StudioProcess(f"{dsn}?schema={schema}", args=("--cluster", redis)) for _ in range(2)
            ]
            try:
                each_at_once(pair, StudioProcess.start)
                ids = {call(member.http_url, "/healthz")[1]["store"]["id"] for member in pair}
                assert len(ids) == 1 and "" not in ids
            finally:
                each_at_once(pair, StudioProcess.stop)


def test_a_clustered_studio_beside_a_plain_one_is_refused(db: str, studios: StartStudios) -> None:
    (plain,) = studios(clustered=False)
    status, err = refused(db, "--cluster", redis_url())
    assert status == 2 and "in use" in err, err
    assert call(plain.http_url, "/healthz")[0] == 200


# --- live events and cursors -----------------------------------------------------------------

N = 60


def test_events_sent_to_two_studios_stream_from_one_once_each_in_cursor_order(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with (
        Stream(one) as stream,
        RawAgent(one.agent_url) as a,
        RawAgent(two.agent_url) as b,
    ):
        stream.subscribe(filters={})
        assert a.request(register("agent-a"))["type"] == "registered"
        assert b.request(register("agent-b"))["type"] == "registered"
        send_alternately({"agent-a": a, "agent-b": b}, 0, N)
        got = stream.events(2 * N, timeout=10 * UNIT)
        stream.send({"action": "ping"})
        extra, _ = stream.until("pong")
    assert [f for f in extra if f["type"] in ("event", "events")] == []  # nothing twice
    streamed = cursors(got)
    assert strictly_increasing(streamed), streamed
    assert sorted((p["agent_id"], p["data"]["i"]) for p in got) == sorted(
        (agent_id, i) for agent_id in ("agent-a", "agent-b") for i in range(N)
    )
    for studio in (one, two):  # the REST history is the stream's, on either Studio
        assert cursors(events(studio.http_url)) == streamed


def test_a_replay_on_the_other_studio_resumes_after_its_cursor_then_goes_live(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with RawAgent(one.agent_url) as a, RawAgent(two.agent_url) as b:
        agents = {"agent-a": a, "agent-b": b}
        send_alternately(agents, 0, N)
        stored = wait_for(lambda: events(two.http_url), lambda e: len(e) == 2 * N, 10 * UNIT)
        middle = stored[N - 1]["cursor"]
        with Stream(two) as stream:
            stream.subscribe(filters={}, since=middle)
            replayed, _ = stream.until("replayed")
            send_alternately(agents, N, N)
            live = stream.events(2 * N, timeout=10 * UNIT)
    assert [f["payload"]["cursor"] for f in replayed if f["type"] == "event"] == cursors(stored[N:])
    everything = events(one.http_url)
    assert len(everything) == 4 * N
    assert cursors(live) == cursors(everything[2 * N :])
    assert sorted((p["agent_id"], p["data"]["i"]) for p in live) == sorted(
        (agent_id, i) for agent_id in agents for i in range(N, 2 * N)
    )


class Senders:
    """Agents sending `each` events in batches of `batch`, one agent a thread, to their
    Studios at once: the cluster's writers commit at the same moments."""

    def __init__(self, targets: dict[str, StudioProcess], each: int, batch: int) -> None:
        self.each, self.batch = each, batch
        self.failures: list[BaseException] = []
        self.threads = [
            threading.Thread(target=self._send, args=(studio, agent_id))
            for agent_id, studio in targets.items()
        ]
        for thread in self.threads:
            thread.start()

    def _send(self, studio: StudioProcess, agent_id: str) -> None:
        try:
            with RawAgent(studio.agent_url) as agent:
                assert agent.request(register(agent_id))["type"] == "registered"
                for start in range(0, self.each, self.batch):
                    messages = [event(agent_id, "x", i=i) for i in range(start, start + self.batch)]
                    agent.send({"type": "batch", "messages": messages})
                    time.sleep(0.004)
                assert agent.request({"type": "ping"}, timeout=10 * UNIT) == {"type": "pong"}
        except BaseException as exc:  # reported by the main thread
            self.failures.append(exc)

    def running(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def join(self) -> None:
        for thread in self.threads:
            thread.join(20 * UNIT)
        assert not self.running() and self.failures == []


def dropped(*servers: StudioProcess) -> list[str]:
    """The log lines of events the Studios gave up writing."""
    return [line for s in servers for line in s.output if "dropping" in line]


def test_events_written_on_three_studios_at_once_are_all_stored(studios: StartStudios) -> None:
    """The Studios' commits contend for the next ids: one that waits or loses is retried until
    written, never dropped (these agents send no sequence numbers: nobody would resend)."""
    members = studios(3)
    senders = Senders({f"many-{n}": m for n, m in enumerate(members)}, each=900, batch=3)
    senders.join()
    found = wait_for(
        lambda: (
            get(members[0].http_url, "/v1/dashboard/events/count")["count"],
            dropped(*members),
        ),
        lambda found: found[0] == 2700 or found[1] != [],
        10 * UNIT,
    )
    assert found == (2700, []), found


def test_paging_while_both_studios_write_misses_and_repeats_no_event(
    studios: StartStudios,
) -> None:
    """Cursors are one sequence in commit order across the cluster: a reader paging with the
    last cursor it saw, while both Studios commit, still gets every event once. Numbered per
    Studio, or numbered before commit, an event committed after a later-numbered one is
    skipped by every reader already past it."""
    one, two = studios(2)
    senders = Senders({"page-a": one, "page-b": two}, each=600, batch=5)
    paged: list[dict[str, Any]] = []
    cursor, pages, count = 0, 0, -1
    deadline = time.monotonic() + 20 * UNIT
    try:
        while time.monotonic() < deadline:
            studio = (one, two)[pages % 2]
            pages += 1
            page = get(studio.http_url, f"/v1/dashboard/events/since/{cursor}?limit=20")
            paged.extend(page["events"])
            cursor = page["next_cursor"]
            if count == 1200 and not page["has_more"]:
                break  # a page read after every event was stored, and nothing newer
            if count != 1200 and not senders.running():
                count = get(one.http_url, "/v1/dashboard/events/count")["count"]
                if dropped(one, two):
                    break  # never all stored: the test above names that failure
    finally:
        senders.join()
    everything = events(two.http_url)
    assert count == len(everything) == 1200, (count, len(everything), dropped(one, two))
    assert pages > 10, pages  # the paging overlapped the writes
    assert strictly_increasing(cursors(paged)), "a page repeated an event"
    missing = sorted(set(cursors(everything)) - set(cursors(paged)))
    assert missing == [], f"paging skipped {len(missing)} events: {missing[:20]}"
    assert cursors(paged) == cursors(everything)


# --- presence --------------------------------------------------------------------------------


def presence(studio: StudioProcess) -> dict[str, tuple[str, int]]:
    agents = get(studio.http_url, "/v1/dashboard/agents")["agents"]
    return {a["id"]: (a["status"], a["event_count"]) for a in agents}


@pytest.mark.parametrize("end", ["stop", "kill"])
def test_agents_are_online_on_every_studio_and_offline_when_theirs_ends(
    studios: StartStudios, end: str
) -> None:
    one, two = studios(2)
    a, b = RawAgent(one.agent_url), RawAgent(two.agent_url)
    try:
        assert a.request(register("agent-a"))["type"] == "registered"
        assert b.request(register("agent-b"))["type"] == "registered"
        send_alternately({"agent-a": a, "agent-b": b}, 0, 10)
        both = {"agent-a": ("online", 10), "agent-b": ("online", 10)}
        for studio in (one, two):
            wait_for(lambda s=studio: presence(s), lambda p: p == both, 5 * UNIT)
        ended = time.monotonic()
        if end == "stop":
            assert two.stop() == 0
        else:
            two.kill()
        wait_for(
            lambda: presence(one),
            lambda p: p.get("agent-b", ("?", 0))[0] == "offline",
            10 * UNIT,
            interval=0.1,
        )
        print(f"agent-b offline on studio 1 {time.monotonic() - ended:.1f} s after the {end}")
        assert presence(one) == {"agent-a": ("online", 10), "agent-b": ("offline", 10)}
    finally:
        a.close()
        b.close()


# --- controls --------------------------------------------------------------------------------


def listed_pending(studio: StudioProcess) -> list[dict[str, Any]]:
    """Wait until `studio` lists the one pending request (of an agent on another Studio)."""
    requests: list[dict[str, Any]] = wait_for(
        lambda: get(studio.http_url, "/v1/dashboard/requests?status=pending")["requests"],
        lambda requests: len(requests) == 1,
        5 * UNIT,
    )
    return requests


def decide(studio: StudioProcess, request_id: str, **body: str) -> tuple[int, Any]:
    """POST a decision on a request to `studio`: (status, body)."""
    return call(studio.http_url, f"/v1/dashboard/requests/{request_id}/decision", "POST", body)


def decide_at_once(
    request_id: str, *deciders: tuple[StudioProcess, str, str]
) -> dict[str, tuple[int, Any]]:
    """Each of (studio, who, decision) POSTs its decision on `request_id` at the same moment:
    {who: (status, body)}."""
    results: dict[str, tuple[int, Any]] = {}
    start = threading.Barrier(len(deciders), timeout=5 * UNIT)

    def decide_on(studio: StudioProcess, who: str, decision: str) -> None:
        start.wait()
        results[who] = decide(studio, request_id, decision=decision, decided_by=who)

    threads = [threading.Thread(target=decide_on, args=d) for d in deciders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15 * UNIT)
    return results


def online_everywhere(studio: StudioProcess, agent_id: str = "steer") -> None:
    """Wait until `studio` sees the agent (connected to another Studio) online."""
    wait_for(
        lambda: call(studio.http_url, f"/v1/dashboard/agents/{agent_id}"),
        lambda r: r[0] == 200 and r[1]["data"]["status"] == "online",
        5 * UNIT,
    )


def offline_everywhere(studios: list[StudioProcess], agent_id: str = "steer") -> None:
    """Wait until every Studio of `studios` sees the agent offline."""
    for studio in studios:
        wait_for(
            lambda s=studio: get(s.http_url, f"/v1/dashboard/agents/{agent_id}")["status"],
            lambda status: status == "offline",
            5 * UNIT,
        )


def decided_everywhere(studios: list[StudioProcess], request_id: str) -> list[dict[str, Any]]:
    """Wait until every Studio of `studios` shows the request decided; its record on each."""
    return [
        wait_for(
            lambda s=studio: get(s.http_url, f"/v1/dashboard/requests/{request_id}"),
            lambda r: r["status"] == "decided",
            5 * UNIT,
        )
        for studio in studios
    ]


def one_winner(results: dict[str, tuple[int, Any]]) -> str:
    """Of decisions taken at once (`decide_at_once`): one was taken, the other refused (409);
    who took it."""
    assert sorted(status for status, _ in results.values()) == [200, 409], results
    return next(who for who, (status, _) in results.items() if status == 200)


def test_a_decision_posted_to_one_studio_reaches_an_agent_on_another(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with steerable(two) as agent:
        ask_permission(agent)
        listed = listed_pending(one)
        request_id = listed[0]["id"]
        status, body = decide(
            one, request_id, decision="allow", decided_by="alice", note="from studio 1"
        )
        assert status == 200, body
        control = agent.recv_until("control", timeout=5 * UNIT)
        assert (
            control["event_type"],
            control["call_id"],
            control["decision"],
            control["decided_by"],
            control["note"],
        ) == ("permission_decided", "call_1", "allow", "alice", "from studio 1")
        for decided in decided_everywhere([one, two], request_id):
            assert (decided["decided_by"], decided["response"]["decision"]) == ("alice", "allow")


def test_two_decisions_on_two_studios_one_wins_and_the_other_conflicts(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with steerable(two) as agent:
        online_everywhere(one)
        ask_permission(agent)
        for studio in (one, two):
            listed = wait_for(
                lambda s=studio: get(s.http_url, "/v1/dashboard/requests?status=pending"),
                lambda d: len(d["requests"]) == 1,
                5 * UNIT,
            )
        request_id = listed["requests"][0]["id"]
        results = decide_at_once(request_id, (one, "ann", "allow"), (two, "bob", "deny"))
        winner = one_winner(results)
        loser = next(body for status, body in results.values() if status == 409)
        assert (loser["error"]["code"], loser["error"]["decided_by"]) == ("conflict", winner)
        control = agent.recv_until("control", timeout=5 * UNIT)
        assert control["decided_by"] == winner
        assert agent.request({"type": "ping"}) == {"type": "pong"}  # no second decision came
    for studio in (one, two):
        decided = get(studio.http_url, f"/v1/dashboard/requests/{request_id}")
        assert (decided["status"], decided["decided_by"]) == ("decided", winner)


def test_two_decisions_on_two_studios_while_the_agent_is_away_one_wins(
    studios: StartStudios,
) -> None:
    """Both were taken (200 each) and the later stood: the first person was told of a
    decision the agent never received."""
    one, two = studios(2)
    with steerable(two) as agent:
        ask_permission(agent)
        request_id = listed_pending(one)[0]["id"]
    offline_everywhere([one, two])
    winner = one_winner(decide_at_once(request_id, (one, "ann", "allow"), (two, "bob", "deny")))
    for decided in decided_everywhere([one, two], request_id):
        assert decided["decided_by"] == winner
    with steerable(one) as again:
        control = again.recv_until("control", timeout=5 * UNIT)
        assert control["decided_by"] == winner
        assert again.request({"type": "ping"}) == {"type": "pong"}  # no second decision came


def test_a_decision_made_on_one_studio_while_the_agent_is_away_reaches_it_on_another(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with steerable(two) as agent:
        ask_permission(agent)
        listed = listed_pending(one)
    offline_everywhere([one])
    status, body = decide(one, listed[0]["id"], decision="allow", decided_by="carol")
    assert status == 200, body
    with steerable(two) as again:
        control = again.recv_until("control", timeout=5 * UNIT)
    assert (control["call_id"], control["decision"], control["decided_by"]) == (
        "call_1",
        "allow",
        "carol",
    )


def test_every_studio_counts_the_pending_requests_of_agents_on_the_others(
    studios: StartStudios,
) -> None:
    """The console's badge (`pending` of /requests, the overview's `pending_requests`) is the
    cluster's: a request asked through Studio 2 is pending on Studio 1 too."""
    one, two = studios(2)
    with steerable(two) as agent:
        ask_permission(agent)
        for studio in (two, one):
            wait_for(
                lambda s=studio: get(s.http_url, "/v1/dashboard/requests?status=pending"),
                lambda d: len(d["requests"]) == 1,
                5 * UNIT,
            )
        counts = {
            name: (
                get(studio.http_url, "/v1/dashboard/requests?status=pending")["pending"],
                get(studio.http_url, "/v1/dashboard/overview")["pending_requests"],
            )
            for name, studio in (("studio 1", one), ("studio 2", two))
        }
    assert counts == {"studio 1": (1, 1), "studio 2": (1, 1)}


def test_tool_controls_posted_to_one_studio_reach_an_agent_on_another(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    with steerable(two) as agent:
        online_everywhere(one)
        for action in ("pause", "resume", "cancel"):
            status, body = call(
                one.http_url,
                "/v1/dashboard/agents/steer/tools/call_9/control",
                "POST",
                {"action": action},
            )
            assert status == 200, (action, body)
            control = agent.recv_until("control", timeout=5 * UNIT)
            assert (
                control["event_type"],
                control["call_id"],
                control["action"],
                control["request_id"],
            ) == ("tool_control", "call_9", action, body["data"]["id"])


# --- reliable delivery -----------------------------------------------------------------------


def test_a_producer_taken_over_on_another_studio_closes_its_old_connection_with_4001(
    studios: StartStudios,
) -> None:
    """A client reconnecting through a load balancer lands on another Studio while its old
    connection is open: the newer closes the older (docs/protocol.md, reliable delivery 2)."""
    one, two = studios(2)
    with RawAgent(one.agent_url) as old, RawAgent(two.agent_url) as new:
        register_producer(old)
        register_producer(new)
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(100):  # bounded: a few replies, then the close
                old.recv(timeout=5 * UNIT)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


def test_a_producer_taken_over_on_another_studio_mid_batch_stores_each_event_once(
    studios: StartStudios,
) -> None:
    """The old connection on Studio 1 is still applying queued frames when the producer
    registers on Studio 2: `last_seq` must count them all (the old one's work done or stopped
    first), or the resend from it stores them twice."""
    one, two = studios(2)
    total = 20_000
    old = RawAgent(one.agent_url)
    try:
        register_producer(old)
        for start in range(1, total + 1, 5_000):  # frames queued on the old connection
            old.send(numbered(start, start + 5_000))
        with RawAgent(two.agent_url) as new:
            last = register_producer(new)
            assert 0 <= last <= total
            for start in range(last + 1, total + 1, 5_000):  # the resend from `last_seq`
                new.send(numbered(start, min(start + 5_000, total + 1)))
            while last < total and new.recv_until("ack", timeout=20 * UNIT)["seq"] < total:
                pass
        with contextlib.suppress(ConnectionClosed):  # the old one's work ends too
            while old.recv_until("ack", timeout=20 * UNIT)["seq"] < total:
                pass
    finally:
        old.close()
    stored = [int(e["event"]["delta"]) for e in events(two.http_url, "agent_id=r-1")]
    twice = len(stored) - len(set(stored))
    assert sorted(set(stored)) == list(range(1, total + 1))
    assert twice == 0, f"{twice} events stored twice (Studio 2 said last_seq {last})"


def test_a_producer_resumes_on_another_studio_after_a_kill_and_stores_each_event_once(
    studios: StartStudios,
) -> None:
    one, two = studios(2)
    total = 2000
    agent = RawAgent(one.agent_url)
    try:
        assert register_producer(agent) == 0
        for start in range(1, total + 1, 200):
            agent.send(numbered(start, start + 200))
        acked = 0
        while acked < total // 2:
            acked = agent.recv_until("ack", timeout=10 * UNIT)["seq"]
        one.kill()  # more frames in flight, some stored, some not
    finally:
        agent.close()
    with RawAgent(two.agent_url) as again:
        # Answered within 5 s, the SDK's handshake_timeout: past it, the SDK gives up on
        # exactly-once delivery for the connection.
        durable = register_producer(again)
        assert acked <= durable <= total
        if durable < total:
            again.send(numbered(durable + 1, total + 1))
            while again.recv_until("ack", timeout=10 * UNIT)["seq"] < total:
                pass
    assert get(two.http_url, "/v1/dashboard/events/count?agent_id=r-1")["count"] == total
    stored = events(two.http_url, "agent_id=r-1")
    assert [e["event"]["delta"] for e in stored] == [str(i) for i in range(1, total + 1)]


def test_a_console_logged_in_on_one_studio_is_let_in_by_the_others_until_its_logout(
    studios: StartStudios,
) -> None:
    """Sessions lived in the memory of the Studio logged in on: behind a load balancer
    without sticky sessions, a browser was refused by every other Studio."""
    one, two = studios(2, env={"ASTER_STUDIO_CONSOLE_TOKEN": "s3cret-token"})
    cookie, csrf = login(one, "s3cret-token")
    agents = "/v1/dashboard/agents"
    assert request(two.http_url, agents, headers={"Cookie": cookie})[0] == 200
    logout = request(
        two.http_url, "/v1/auth/logout", "POST", {}, {"Cookie": cookie, "X-CSRF-Token": csrf}
    )
    assert logout[0] == 200
    wait_for(
        lambda: request(one.http_url, agents, headers={"Cookie": cookie})[0],
        lambda status: status == 401,
        5 * UNIT,
    )
