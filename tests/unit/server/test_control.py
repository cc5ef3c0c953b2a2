"""Control requests across a crash: every stored request-creating event has its request."""

from __future__ import annotations

import asyncio
import re
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import apsw
import httpx
import orjson

from aster_studio import store as ops
from aster_studio.app import REQUEST_KEY, Studio, create_app
from aster_studio.config import Settings
from aster_studio.control.service import MARK_EVERY
from aster_studio.models import RequestRecord, StoredEvent
from aster_studio.store import SqliteStore

ASKED = 1_700_000_000_000  # when the agent asked (the event's own timestamp)
TIMEOUT_MS = 60_000


def permission_event(event_id: int, call_id: str, **body: Any) -> StoredEvent:
    payload = {"event_type": "permission_required", "call": {"id": call_id, "name": "write"}}
    return StoredEvent(
        event_id,
        "a1",
        "s1",
        "control",
        "permission_required",
        None,
        ASKED + 20,  # received
        ASKED,
        orjson.dumps({**payload, **body}),
    )


def crash_after_the_event(path: Path, *events: StoredEvent) -> None:
    """Store the events as the writer does, and stop there: the requests the control service
    would have written after the commit are never written (the process died in between)."""
    store = SqliteStore(path)
    store.open()
    store.write([ops.UpsertAgent("a1", ASKED, implicit=True), *events])
    store.close()


async def restart(path: Path, now: int) -> list[RequestRecord]:
    """Start a Studio on the database at `now`, and return its open requests; stop it."""
    studio = Studio(settings=Settings(), store=SqliteStore(path), clock=lambda: now)
    await studio.start()
    try:
        studio.control.expire_due()  # as its periodic check would, within a second
        return list(studio.control.open.values())
    finally:
        await studio.stop()


def stored_requests(path: Path) -> list[RequestRecord]:
    store = SqliteStore(path)
    store.open()
    try:
        return store.list_requests(status=None, agent_id=None, kind=None, limit=100)
    finally:
        store.close()


async def test_a_request_whose_write_a_crash_lost_is_pending_after_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(1, "call-1", timeout_ms=TIMEOUT_MS))
    (record,) = await restart(path, now=ASKED + 5_000)
    assert (record.kind, record.key, record.status, record.event_cursor) == (
        "permission",
        "call-1",
        "pending",
        1,
    )
    assert record.request == {"id": "call-1", "name": "write"}
    # Counted from when the agent asked, as it would have been before the crash.
    assert (record.created_at, record.expires_at) == (ASKED + 20, ASKED + TIMEOUT_MS)


async def test_a_rebuilt_request_is_stored_once_across_restarts(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(1, "call-1"))
    (first,) = await restart(path, now=ASKED + 5_000)
    (again,) = await restart(path, now=ASKED + 6_000)
    assert again.id == first.id
    assert [r.id for r in stored_requests(path)] == [first.id]


async def test_a_rebuilt_request_has_the_id_the_first_run_gave_it(tmp_path: Path) -> None:
    """The console was shown the request (it is published before its write commits); rebuilt
    under a new random id after a crash, its decision went to an id that no longer existed."""
    live = Studio(settings=Settings(), store=SqliteStore(tmp_path / "live.db"), clock=lambda: ASKED)
    await live.start()
    try:
        live.control.observe([permission_event(7, "call-1")])
        (shown,) = live.control.open.values()
    finally:
        await live.stop()
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(7, "call-1"))
    with closing(SqliteStore(tmp_path / "live.db")) as live_store:  # as if the same database
        live_store.open()
        key = live_store.get_secret(REQUEST_KEY)
    with closing(SqliteStore(path)) as store:
        store.open()
        assert key is not None
        store.set_secret(REQUEST_KEY, key, ASKED)
    (rebuilt,) = await restart(path, now=ASKED + 5_000)
    assert rebuilt.id == shown.id
    # Not the cursor (`r_ev7` told an agent how many events the others had sent): a keyed hash.
    assert re.fullmatch(r"r_[0-9a-f]{12}", rebuilt.id), rebuilt.id


async def test_a_rebuilt_request_whose_deadline_passed_while_down_is_expired(
    tmp_path: Path,
) -> None:
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(1, "call-1", timeout_ms=TIMEOUT_MS))
    assert await restart(path, now=ASKED + 2 * TIMEOUT_MS) == []
    (record,) = stored_requests(path)
    assert (record.key, record.status, record.expires_at) == (
        "call-1",
        "expired",
        ASKED + TIMEOUT_MS,
    )


async def test_an_acknowledgement_a_crash_lost_is_applied_at_the_restart(tmp_path: Path) -> None:
    """The agent's answer to a decision was stored, its effect on the request was not."""
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(1, "call-1"))
    (request,) = await restart(path, now=ASKED + 1_000)
    decided = StoredEvent(
        2,
        "a1",
        "s1",
        "control",
        "permission_decided",
        None,
        ASKED + 2_000,
        None,
        orjson.dumps({"event_type": "permission_decided", "call_id": "call-1", "decision": "deny"}),
    )
    store = SqliteStore(path)
    store.open()
    first = store.reserve_event_ids()
    store.write([decided._replace(id=first)])
    store.close()
    assert await restart(path, now=ASKED + 3_000) == []
    (record,) = stored_requests(path)
    assert (record.id, record.status, record.response) == (
        request.id,
        "decided",
        {"decision": "deny"},
    )
    assert (record.decided_by, record.acknowledged_at) == ("agent:a1", ASKED + 2_000)


def observed_through(path: Path) -> int:
    with closing(apsw.Connection(str(path), flags=apsw.SQLITE_OPEN_READONLY)) as conn:
        row = conn.execute("SELECT value FROM meta WHERE name = 'observed_through'").fetchone()
    assert row is not None
    return int(row[0])


async def test_commits_without_control_events_write_the_mark_only_every_mark_every_events(
    tmp_path: Path,
) -> None:
    """The event path pays nothing per event for the mark: one write per MARK_EVERY events."""
    path = tmp_path / "c.db"
    studio = Studio(settings=Settings(), store=SqliteStore(path), clock=lambda: ASKED)
    await studio.start()
    try:
        pipeline = studio.pipeline
        assert pipeline is not None
        plain = [
            StoredEvent(i, "a1", None, "progress", "text_chunk", None, ASKED, None, b"{}")
            for i in range(1, MARK_EVERY + 1)
        ]
        for start in range(0, MARK_EVERY - 1, 100):  # commits of 100 events
            studio.control.observe(plain[start : min(start + 100, MARK_EVERY - 1)])
        await pipeline.barrier()
        assert observed_through(path) == 0
        studio.control.observe(plain[-1:])
        await pipeline.barrier()
        assert observed_through(path) == MARK_EVERY
    finally:
        await studio.stop()


class HeldWrites:
    """A real store whose writer can be held still: its writes wait while `hold` is set.

    It wraps the store rather than subclassing it (compiled classes take no subclasses).
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self.released = threading.Event()
        self.released.set()

    def write(self, batch: list[ops.WriteOp]) -> ops.CommitResult:
        self.released.wait(10)
        return self._store.write(batch)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_superseded_request_is_not_listed_as_pending_while_its_write_is_queued(
    tmp_path: Path,
) -> None:
    """The live stream shows a request closed the moment it is superseded; the REST list read
    the store, where it stayed pending until the writer got to it."""
    store = HeldWrites(SqliteStore(tmp_path / "c.db"))
    app = create_app(Settings(db=str(tmp_path / "c.db")), store=store)  # type: ignore[arg-type]
    studio: Studio = app.state.studio
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            studio.control.observe([permission_event(1, "call-1")])
            assert studio.pipeline is not None
            await studio.pipeline.barrier()
            (first,) = studio.control.open.values()
            store.released.clear()  # the writer holds the next writes
            try:
                studio.control.observe([permission_event(2, "call-1", ask_id="again")])
                await asyncio.sleep(0.05)  # the writer has the batch, and waits
                listed = (await http.get("/v1/dashboard/requests?status=pending")).json()
                one = (await http.get(f"/v1/dashboard/requests/{first.id}")).json()
                closed = (await http.get("/v1/dashboard/requests?status=expired")).json()
            finally:
                store.released.set()
            await studio.pipeline.barrier()
            after = (await http.get("/v1/dashboard/requests?status=all")).json()
    pending = [(r["event_cursor"], r["status"]) for r in listed["data"]["requests"]]
    assert (pending, listed["data"]["pending"]) == ([(2, "pending")], 1)
    assert one["data"]["status"] == "expired"
    assert [r["id"] for r in closed["data"]["requests"]] == [first.id]
    statuses = [(r["event_cursor"], r["status"]) for r in after["data"]["requests"]]
    assert sorted(statuses) == [(1, "expired"), (2, "pending")]


class Peers:
    """The other Studios of a cluster, as far as the control service asks them."""

    def __init__(self, leading: bool) -> None:
        self.leading = leading
        self.forwarded: list[tuple[str, dict[str, Any]]] = []

    def leads(self) -> bool:
        return self.leading

    async def forward(self, op: str, args: dict[str, Any]) -> RequestRecord | None:
        self.forwarded.append((op, args))
        return None  # no Studio took it


async def test_in_a_cluster_the_leading_studio_alone_expires_and_decides_for_an_agent_away(
    tmp_path: Path,
) -> None:
    """Every Studio holding the request of an agent connected to none closed it (an audit
    line each) and decided it (the later decision stood, both were answered 200)."""
    path = tmp_path / "c.db"
    crash_after_the_event(path, permission_event(1, "call-1", timeout_ms=TIMEOUT_MS))
    now = [ASKED + 5_000]
    studio = Studio(settings=Settings(), store=SqliteStore(path), clock=lambda: now[0])
    await studio.start()
    try:
        peers = Peers(leading=False)
        studio.control.peers = peers
        (request,) = studio.control.open.values()
        await studio.control.decide(request.id, "allow", None, "ann")
        assert peers.forwarded == [
            (
                "decide",
                {
                    "request_id": request.id,
                    "decision": "allow",
                    "note": None,
                    "by": "ann",
                    "agent_id": "a1",
                    "lead": True,
                },
            )
        ]
        # No Studio took it (the leader gone meanwhile, say): taken here, as if alone.
        assert studio.control.open[request.id].status == "decided"
        now[0] = ASKED + 2 * TIMEOUT_MS
        studio.control.expire_due()
        assert studio.control.open[request.id].status == "decided"  # the leader's to close
        peers.leading = True
        studio.control.expire_due()
        assert request.id not in studio.control.open
    finally:
        await studio.stop()
