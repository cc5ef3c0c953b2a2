"""The server's garbage collection: the start-up heap frozen, collections on a timer."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from aster_studio import heap


class Cycle:
    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    try:
        yield
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)


async def test_settle_freezes_what_start_up_left_and_raises_the_threshold(
    restored: None,
) -> None:
    garbage = weakref.ref(Cycle())  # unreachable, but only a collection frees it
    assert garbage() is not None
    heap.settle()()
    assert garbage() is None  # collected, not frozen for good
    assert gc.get_freeze_count() > 0
    assert gc.get_threshold()[0] == heap.YOUNG_THRESHOLD


async def test_the_timer_collects_young_garbage_and_now_and_then_the_whole_heap(
    restored: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(heap, "COLLECT_EVERY_S", 0.05)
    monkeypatch.setattr(heap, "FULL_EVERY", 3)
    stop = heap.settle()
    old = Cycle()
    gc.collect(1)  # old enough: survivors of the middle generation go to the oldest
    in_oldest = weakref.ref(old)
    young = weakref.ref(Cycle())
    del old
    await asyncio.sleep(0.07)  # one timed collection: the young generations only
    assert young() is None
    assert in_oldest() is not None
    await asyncio.sleep(0.2)  # past the third, of the whole heap
    assert in_oldest() is None
    stop()
    after_stop = weakref.ref(Cycle())
    await asyncio.sleep(0.15)
    assert after_stop() is not None  # no timed collection since
