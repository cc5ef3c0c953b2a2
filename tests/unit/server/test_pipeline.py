"""The write-behind pipeline: group commits, bounded queue, barriers, flush on stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from aster_studio.errors import StoreError, StoreUnavailable
from aster_studio.ingest.pipeline import WritePipeline
from aster_studio.models import EventFilter, StoredEvent
from aster_studio.store import CommitResult, MarkProducer, SqliteStore, Store, WriteOp
from tests.support.events import Numberer


class GatedStore:
    """A real store whose writes wait for a gate (to hold the writer still) and fail on cue.

    It wraps the store rather than subclassing it: `make native` compiles SqliteStore, and
    compiled classes take no Python subclasses or patched methods.
    """

    def __init__(self, path: Path) -> None:
        self.real = SqliteStore(path, synchronous="OFF")
        self.gate = threading.Event()
        self.gate.set()
        self.batches: list[int] = []
        self.failures: Iterator[bool] = iter(())
        self.outage = 0  # the next writes to fail as with the database away

    def write(self, batch: list[WriteOp]) -> CommitResult:
        self.gate.wait(10)
        self.batches.append(len(batch))
        if self.outage > 0:
            self.outage -= 1
            raise StoreUnavailable("connection lost")
        if next(self.failures, False):
            raise StoreError("disk hiccup")
        return self.real.write(batch)

    def count_events(self) -> int:
        return self.real.count_events(EventFilter())


NUMBERS = Numberer()


def ev(i: int) -> StoredEvent:
    return NUMBERS.event(ts=i, payload={"i": i})


@pytest.fixture
def store(tmp_path: Path) -> GatedStore:
    s = GatedStore(tmp_path / "p.db")
    s.real.open()
    return s


async def start(store: GatedStore, **kw: int) -> tuple[WritePipeline, list[CommitResult]]:
    results: list[CommitResult] = []
    pipeline = WritePipeline(cast(Store, store), asyncio.get_running_loop(), results.append, **kw)
    pipeline.start()
    return pipeline, results


async def test_commits_group_everything_queued(store: GatedStore) -> None:
    pipeline, results = await start(store)
    store.gate.clear()
    pipeline.submit([ev(0)])
    await asyncio.sleep(0.05)  # the writer holds op 0 at the gate
    for i in range(1, 1001):
        pipeline.submit([ev(i)])
    store.gate.set()
    await pipeline.barrier()
    assert store.batches[:2] == [1, 1000]
    assert sum(len(r.events) for r in results) == 1001
    assert await pipeline.stop(5)


async def test_full_queue_makes_producers_wait_and_drops_nothing(store: GatedStore) -> None:
    pipeline, _ = await start(store, max_ops=100, batch_max=10)
    store.gate.clear()
    for i in range(150):
        pipeline.submit([ev(i)])
    assert pipeline.full
    waiter = asyncio.create_task(pipeline.wait_for_space())
    await asyncio.sleep(0.05)
    assert not waiter.done()  # back-pressure: the producer is held
    store.gate.set()
    await asyncio.wait_for(waiter, 5)
    await pipeline.barrier()
    assert store.count_events() == 150
    assert await pipeline.stop(5)


async def test_barrier_resolves_after_earlier_ops_commit(store: GatedStore) -> None:
    pipeline, _ = await start(store)
    pipeline.submit([ev(i) for i in range(10)])
    await pipeline.barrier()
    assert store.count_events() == 10
    assert await pipeline.stop(5)


async def test_stop_flushes_everything_queued(store: GatedStore) -> None:
    pipeline, _ = await start(store)
    store.gate.clear()
    pipeline.submit([ev(i) for i in range(500)])
    store.gate.set()
    assert await pipeline.stop(5)
    assert store.count_events() == 500


async def test_one_bad_op_is_dropped_alone(store: GatedStore) -> None:
    pipeline, results = await start(store)
    bad = ev(1)._replace(payload=cast(bytes, object()))  # a value the driver cannot bind
    pipeline.submit([ev(1), bad, ev(2)])
    await pipeline.barrier()
    assert store.count_events() == 2
    assert pipeline.stats.failed_ops == 1
    assert sum(len(r.events) for r in results) == 2
    assert await pipeline.stop(5)


async def test_store_outage_is_retried(store: GatedStore) -> None:
    pipeline, _ = await start(store)
    store.failures = iter([True])
    pipeline.submit([ev(1)])
    await pipeline.barrier()
    assert store.count_events() == 1
    assert pipeline.stats.write_retries == 1
    assert await pipeline.stop(5)


def marked(producer: str, seq: int, *events: StoredEvent) -> list[WriteOp]:
    """A reliable-delivery frame's writes: its events, then its producer's mark."""
    return [*events, MarkProducer(producer, seq)]


async def test_a_unit_is_never_split_between_transactions(store: GatedStore) -> None:
    """A frame's events and its mark commit together: split, a crash between the two left
    events stored past the stored mark, and the producer's resend stored them twice."""
    pipeline, _ = await start(store, batch_max=10)
    store.gate.clear()
    pipeline.submit([ev(0)])
    await asyncio.sleep(0.05)  # the writer holds op 0 at the gate
    for frame in range(5):
        pipeline.submit(marked("p", frame + 1, *(ev(100 + frame * 7 + i) for i in range(7))))
    store.gate.set()
    await pipeline.barrier()
    assert store.batches[0] == 1
    assert all(n % 8 == 0 for n in store.batches[1:]), store.batches  # whole frames only
    assert store.count_events() == 36
    assert await pipeline.stop(5)


async def test_a_producer_whose_writes_fail_is_not_acknowledged_past_them(
    store: GatedStore,
) -> None:
    """Its later frames are not written (their marks would acknowledge what is lost) until it
    resumes: it was acknowledged up to its last frame with a hole of lost events behind."""
    pipeline, results = await start(store)
    store.gate.clear()
    pipeline.submit(marked("p", 1, ev(1)))
    await asyncio.sleep(0.05)  # held at the gate: the rest is taken as one batch
    pipeline.submit(marked("p", 2, ev(2)))
    pipeline.submit(marked("q", 1, ev(3)))
    pipeline.submit(marked("p", 3, ev(4)))
    # The batch of three fails three times, then p's unit fails alone (the disk is full).
    store.failures = iter([False, True, True, True, True, False, False])
    store.gate.set()
    await pipeline.barrier()
    producers = [r.producers for r in results]
    assert {"p": 1} in producers and {"q": 1} in producers
    assert all(d.get("p", 0) < 2 for d in producers)  # never past the lost frame
    assert [r.failed_producers for r in results if r.failed_producers] == [["p"]]
    assert pipeline.stats.fenced_ops == 2  # p's frame 3
    pipeline.submit(marked("p", 4, ev(5)))  # still fenced: before the resume
    pipeline.resume_producer("p")
    pipeline.submit(marked("p", 2, ev(2)))  # its resend, on a new connection
    await pipeline.barrier()
    assert results[-1].producers == {"p": 2}
    assert store.count_events() == 3  # 1 and q's 3, then the resent 2
    assert await pipeline.stop(5)


# ---- the database out of reach (StoreUnavailable): nothing is split, dropped or lost ----


async def test_an_outage_keeps_the_batch_whole_until_the_database_is_back(
    store: GatedStore,
) -> None:
    pipeline, results = await start(store)
    store.outage = 6  # more than three attempts, and the split after them
    # Submitted in one turn of the loop: handed over, and taken, as one batch.
    pipeline.submit([ev(i) for i in range(6)])
    pipeline.submit(marked("p", 1, ev(6), ev(7)))
    await asyncio.wait_for(pipeline.barrier(), 10)
    # Tried again and again whole, never op by op; each op written once.
    assert store.batches == [9] * 7
    written = [e.id for r in results for e in r.events]
    assert sorted(written) == sorted(set(written)) and len(written) == 8
    assert store.count_events() == 8
    assert {"p": 1} in [r.producers for r in results]
    assert (pipeline.stats.failed_ops, pipeline.stats.fenced_ops) == (0, 0)
    assert pipeline.stats.unavailable_seconds > 0.05
    assert pipeline.stats.unavailable_since == 0.0  # over
    assert await pipeline.stop(5)


async def test_an_outage_holds_the_producers_back(store: GatedStore) -> None:
    pipeline, _ = await start(store, max_ops=100, batch_max=10)
    store.outage = 1_000_000
    for i in range(150):
        pipeline.submit([ev(i)])
    await asyncio.sleep(0.6)  # longer than today's retries of a batch
    waiter = asyncio.create_task(pipeline.wait_for_space())
    await asyncio.sleep(0.3)
    assert not waiter.done()  # back-pressure while the writer waits for the database
    assert pipeline.stats.unavailable_since > 0
    assert store.count_events() == 0
    store.outage = 0
    await asyncio.wait_for(waiter, 5)
    await asyncio.wait_for(pipeline.barrier(), 5)
    assert store.count_events() == 150
    assert pipeline.stats.failed_ops == 0
    assert await pipeline.stop(5)


async def test_stop_in_an_outage_gives_up_at_its_deadline_and_counts_the_unwritten(
    store: GatedStore,
) -> None:
    pipeline, _ = await start(store)
    store.outage = 1_000_000
    pipeline.submit([ev(i) for i in range(20)])
    pipeline.submit([ev(20)])
    await asyncio.sleep(0.1)  # the writer holds the first 20 and waits
    loop = asyncio.get_running_loop()
    began = loop.time()
    assert not await pipeline.stop(1.0)
    assert 0.5 < loop.time() - began < 1.5
    assert pipeline.stats.unwritten_ops == 21
    assert pipeline.stats.failed_ops == 0
    assert store.count_events() == 0
