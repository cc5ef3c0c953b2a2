"""The write-behind pipeline: group commits, bounded queue, barriers, flush on stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from aster_studio.errors import StoreError
from aster_studio.ingest.pipeline import WritePipeline
from aster_studio.models import EventFilter, StoredEvent
from aster_studio.store import CommitResult, SqliteStore, Store, WriteOp
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

    def write(self, batch: list[WriteOp]) -> CommitResult:
        self.gate.wait(10)
        self.batches.append(len(batch))
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
    pipeline.submit([ev(i) for i in range(150)])
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
