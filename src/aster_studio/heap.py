"""Garbage collection in the server process: when it runs, and what it walks.

Each event allocates objects the collector tracks that stay alive for tens of milliseconds
(its `StoredEvent` waits in the write queue until committed), so at the default thresholds
the young generations were collected about 15 times a second at saturation, each time walking
the thousands of events in flight, and the whole heap every second or so: 7-10% of the core
and pauses of up to 58 ms (`python -m benchmarks.bench_gc`). So the server runs the collector
itself: the start-up heap is frozen (never walked again), the young generations are collected
once a second and everything once a minute, and the automatic threshold is raised so that it
only acts on real growth between two timed collections.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Callable

YOUNG_THRESHOLD = 50_000  # allocations beyond deallocations before an automatic collection
COLLECT_EVERY_S = 1.0  # the young generations, on the event loop
FULL_EVERY = 60  # timed collections between two of the whole heap


def settle() -> Callable[[], None]:
    """Freeze the start-up heap and put collections on a timer; return what stops the timer.

    Call it once, on the event loop, once the Studio has started.
    """
    gc.collect()  # start-up's garbage is freed, not frozen for good
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    return _Timer(asyncio.get_running_loop()).stop


class _Timer:
    """The timed collections: the young generations each turn, the whole heap every FULL_EVERY."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._turns = 0
        self._handle = loop.call_later(COLLECT_EVERY_S, self._collect)

    def _collect(self) -> None:
        self._turns += 1
        gc.collect(2 if self._turns % FULL_EVERY == 0 else 1)
        self._handle = self._loop.call_later(COLLECT_EVERY_S, self._collect)

    def stop(self) -> None:
        self._handle.cancel()
