"""The write-behind pipeline: a bounded queue drained by one writer thread in group commits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import StoreError, StoreUnavailable
from ..store import CommitResult, MarkProducer, Store, WriteOp

log = logging.getLogger(__name__)

# While the database cannot be reached, a write is tried again after this wait, doubled each
# time up to the longest; the outage is logged again at most this often.
UNAVAILABLE_FIRST_WAIT_S = 0.05
UNAVAILABLE_LONGEST_WAIT_S = 1.0
UNAVAILABLE_LOG_EVERY_S = 30.0


@dataclass(slots=True)
class PipelineStats:
    """Counters for /metrics."""

    ops_written: int = 0
    events_written: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    failed_ops: int = 0
    write_retries: int = 0
    fenced_ops: int = 0  # ops of a producer whose earlier writes failed, left for its resend
    last_failure_at: float = 0.0  # time.time() of the last op the store refused
    # Database outages (StoreUnavailable): the writer keeps its batch and waits.
    unavailable_seconds: float = 0.0  # time spent waiting for the database, in all
    unavailable_since: float = 0.0  # time.time() the current outage began; 0: none now
    unavailable_error: str = ""  # what the store said last, in the current outage
    unwritten_ops: int = 0  # ops given up at stop, the database unreachable until the deadline


class _Marker:
    """An item of the queue that is no write: one test tells writes from these."""

    __slots__ = ()


class _Barrier(_Marker):
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback = callback


class _Resume(_Marker):
    """Lift the fence of a producer: what it submits past this point is written again."""

    __slots__ = ("producer_id",)

    def __init__(self, producer_id: str) -> None:
        self.producer_id = producer_id


class _Stop(_Marker):
    __slots__ = ()


_STOP = _Stop()

CommitCallback = Callable[[CommitResult], None]


class WritePipeline:
    """Accept write ops from the event loop without waiting; commit them in batches off-loop.

    Group commit: the writer takes everything queued (up to `batch_max`) per transaction, so a
    quiet server commits each event at once and a busy one amortizes each commit over thousands.
    The queue is bounded: when it holds `max_ops`, `wait_for_space()` blocks the producers (the
    agent sockets stop being read) until the writer catches up. Nothing is dropped.

    The ops of one `submit` that ends with a `MarkProducer` (a frame of a reliable-delivery
    producer) are one unit, never split between two transactions: else a crash could leave its
    events stored past its stored mark, to be stored again when the producer resends. (Other
    ops are queued one by one: a unit is a list kept until its commit, which cost the many
    one-event frames of other clients 6.5% of their rate.) When the store refuses a unit for
    good, its producer is fenced: its later units are not written either (a mark past the hole
    would acknowledge what is lost) until `resume_producer`, which the ingest calls once that
    producer's connection is closed: it resends from its durable mark.
    """

    def __init__(
        self,
        store: Store,
        loop: asyncio.AbstractEventLoop,
        on_commit: CommitCallback,
        *,
        max_ops: int = 50_000,
        batch_max: int = 5_000,
        commit_interval_s: float = 0.005,
    ) -> None:
        self._store = store
        self._loop = loop
        self._on_commit = on_commit
        self._max_ops = max_ops
        self._batch_max = batch_max
        self._commit_interval = commit_interval_s
        self._next_commit_at = 0.0
        self._stopping = False
        # Set by `stop`: past this monotonic time the writer gives up waiting for the database.
        self._give_up_at = 0.0
        self._given_up = False  # the writer thread's: what is left is counted, not written
        # Units of ops (lists, one per `submit`), barriers, resumes and the stop, in order.
        self._queue: deque[object] = deque()  # shared with the writer thread, under _cond
        self._queue_ops = 0  # ops in `_queue`, under _cond
        self._pending: list[object] = []  # this loop iteration's items, not yet handed over
        self._pending_ops = 0
        self._fenced: set[str] = set()  # producers whose units are not written (writer thread)
        self._hand_over_scheduled = False
        self._cond = threading.Condition()
        self._writer_idle = False  # the writer waits for work (not lingering): wake it
        self._space = asyncio.Event()
        self._space.set()
        # Not `_thread`: mypyc would name its C field `__thread`, a keyword of C.
        self._writer: threading.Thread | None = None
        self.stats = PipelineStats()

    @property
    def depth(self) -> int:
        return self._queue_ops + self._pending_ops

    def start(self) -> None:
        self._writer = threading.Thread(target=self._run, name="aster-studio-writer", daemon=True)
        self._writer.start()

    def submit(self, ops: list[WriteOp]) -> None:
        """Queue ops in order (as one unit if they end with a mark); never blocks. Call
        `wait_for_space()` before reading more input. The list is the pipeline's from then on:
        the caller must not change it.

        Ops collect on the loop and are handed to the writer once per loop iteration, so a burst
        of frames costs one lock and one wake-up, not one per frame.
        """
        if not ops:
            return
        if isinstance(ops[-1], MarkProducer):
            self._pending.append(ops)
        else:
            self._pending.extend(ops)
        self._pending_ops += len(ops)
        if self._queue_ops + self._pending_ops >= self._max_ops:
            self._space.clear()
        self._schedule_hand_over()

    def resume_producer(self, producer_id: str) -> None:
        """Write a fenced producer's units again from here on (see the class docstring)."""
        self._pending.append(_Resume(producer_id))
        self._schedule_hand_over()

    def _schedule_hand_over(self) -> None:
        if not self._hand_over_scheduled:
            self._hand_over_scheduled = True
            self._loop.call_soon(self._hand_over)

    def _hand_over(self) -> None:
        self._hand_over_scheduled = False
        pending, self._pending = self._pending, []
        if pending:
            count, self._pending_ops = self._pending_ops, 0
            with self._cond:
                self._queue.extend(pending)
                self._queue_ops += count
                # A lingering writer commits on its timer: waking it per hand-over would cost a
                # thread switch and a GIL hand-off per loop iteration for nothing.
                if self._writer_idle or self._stopping or self._queue_ops >= self._batch_max:
                    self._cond.notify()

    @property
    def full(self) -> bool:
        return not self._space.is_set()

    async def wait_for_space(self) -> None:
        if not self._space.is_set():
            await self._space.wait()

    def when_durable(self, callback: Callable[[], None]) -> None:
        """Call `callback` on the loop once every op submitted before it is committed."""
        self._pending.append(_Barrier(callback))
        self._schedule_hand_over()

    async def barrier(self) -> None:
        """Wait until every op submitted before this call is committed."""
        future: asyncio.Future[None] = self._loop.create_future()
        self.when_durable(lambda: _resolve(future))
        await future

    async def stop(self, timeout: float) -> bool:
        """Commit everything queued, then end the writer; False if it did not finish in time."""
        thread = self._writer
        if thread is None:
            return True
        deadline = time.monotonic() + timeout
        # The writer stops waiting for an unreachable database a little before the deadline,
        # to count and log what it could not write while there is time.
        self._give_up_at = deadline - min(0.25, timeout / 4)
        self._stopping = True
        self._pending.append(_STOP)
        self._hand_over()
        while thread.is_alive() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if thread.is_alive():
            log.error("writer did not finish within %.1fs; %d ops unwritten", timeout, self.depth)
            return False
        self._writer = None
        return not self._given_up

    # ---- writer thread ----

    def _take(self) -> tuple[list[WriteOp], list[tuple[int, list[WriteOp]]], list[_Barrier], bool]:
        """The next transaction's ops, its units (each with its first op's index in the ops),
        its barriers, and whether the stop came."""
        ops: list[WriteOp] = []
        units: list[tuple[int, list[WriteOp]]] = []
        barriers: list[_Barrier] = []
        stop = False
        taken = 0
        with self._cond:
            while not self._queue:
                self._writer_idle = True
                self._cond.wait()
            self._writer_idle = False
            # Linger: at most one commit per interval while the queue is short, so a moderate
            # stream of events is written in groups rather than one commit (and fsync) each.
            while self._queue_ops < self._batch_max and not self._stopping:
                remaining = self._next_commit_at - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            queue = self._queue
            fenced = self._fenced
            while queue and taken < self._batch_max:
                item = queue.popleft()
                if isinstance(item, _Marker):
                    if item is _STOP:
                        stop = True
                        break
                    if isinstance(item, _Barrier):
                        # Resolved after this batch commits, which holds every op queued before.
                        barriers.append(item)
                    elif isinstance(item, _Resume):
                        fenced.discard(item.producer_id)
                elif isinstance(item, list):
                    taken += len(item)
                    if fenced and _producer_of(item) in fenced:
                        self.stats.fenced_ops += len(item)
                        continue
                    units.append((len(ops), item))
                    ops.extend(item)
                else:
                    taken += 1
                    ops.append(item)  # type: ignore[arg-type]
            self._queue_ops -= taken
            if not self._space.is_set() and self._queue_ops < self._max_ops // 2:
                self._loop.call_soon_threadsafe(self._space.set)
        return ops, units, barriers, stop

    def _run(self) -> None:
        while True:
            ops, units, barriers, stop = self._take()
            result = None
            if self._given_up:
                self.stats.unwritten_ops += len(ops)
            elif ops:
                self._next_commit_at = time.monotonic() + self._commit_interval
                result = self._write(ops, units)
            if self._given_up:
                barriers = []  # what they wait for is not durable, and will not be
            if stop and self._given_up:
                log.error(
                    "%d ops were NOT written: the database could not be reached before the "
                    "shutdown deadline (last error: %s)",
                    self.stats.unwritten_ops,
                    self.stats.unavailable_error,
                )
            callbacks = [b.callback for b in barriers]
            if result is not None or callbacks:
                # One hand-back to the loop per commit: results first, then the barriers.
                with contextlib.suppress(RuntimeError):  # a closed loop has no one left to tell
                    self._loop.call_soon_threadsafe(self._committed, result, callbacks)
            if stop:
                return

    def _committed(self, result: CommitResult | None, callbacks: list[Callable[[], None]]) -> None:
        if result is not None:
            self._on_commit(result)
        for callback in callbacks:
            try:
                callback()
            except Exception:  # one failing callback must not starve the others
                log.exception("a callback after commit failed")

    def _write(
        self, ops: list[WriteOp], units: list[tuple[int, list[WriteOp]]]
    ) -> CommitResult | None:
        started = time.perf_counter()
        for attempt in range(3):
            try:
                result = self._write_when_available(ops)
            except StoreError as exc:
                self.stats.write_retries += 1
                log.warning("write failed (attempt %d): %s", attempt + 1, exc)
                time.sleep(0.05 * (attempt + 1))
                continue
            if result is None:  # given up: the database was away until the stop's deadline
                self.stats.unwritten_ops += len(ops)
                return None
            self._count(ops, result, started)
            return result
        # A batch that keeps failing is written unit by unit so one bad op cannot sink the rest:
        # a reliable-delivery producer's unit whole (its mark must not outlive its events),
        # any other op by op.
        merged = CommitResult()
        starts = dict(units)
        index = 0
        while index < len(ops) and not self._given_up:
            unit = starts.get(index)
            if unit is None:
                self._write_alone([ops[index]], merged)
                index += 1
                continue
            index += len(unit)
            producer_id = _producer_of(unit) or ""
            if producer_id in self._fenced:
                self.stats.fenced_ops += len(unit)
            elif not self._write_alone(unit, merged) and not self._given_up:
                self._fenced.add(producer_id)
                merged.failed_producers.append(producer_id)
        if self._given_up:
            self.stats.unwritten_ops += len(ops) - index
        self._count(ops, merged, started)
        return merged

    def _write_when_available(self, ops: list[WriteOp]) -> CommitResult | None:
        """Write `ops` in one transaction, waiting while the database cannot be reached
        (StoreUnavailable): the batch is kept whole and tried again, never split nor dropped,
        and the queue behind it fills until the producers wait. None once stopping and past
        the deadline (given up, counted by the caller); any other StoreError is raised."""
        if self._given_up:
            return None
        try:
            return self._store.write(ops)
        except StoreUnavailable as exc:
            first = exc
        stats = self.stats
        began = time.monotonic()
        if not stats.unavailable_since:
            stats.unavailable_since = time.time()
        stats.unavailable_error = str(first)
        log.error(
            "the database cannot be reached; holding %d ops (the queue pushes back on the "
            "agents) and retrying: %s",
            len(ops),
            first,
        )
        wait = UNAVAILABLE_FIRST_WAIT_S
        logged_at = counted_to = began
        try:
            while True:
                now = time.monotonic()
                # Counted as it goes, so /metrics shows an outage under way.
                stats.unavailable_seconds += now - counted_to
                counted_to = now
                if self._stopping and now >= self._give_up_at:
                    self._given_up = True
                    return None
                pause = wait
                if self._stopping:
                    pause = min(pause, max(self._give_up_at - now, 0.0))
                time.sleep(pause)
                wait = min(wait * 2, UNAVAILABLE_LONGEST_WAIT_S)
                try:
                    result = self._store.write(ops)
                except StoreUnavailable as exc:
                    stats.unavailable_error = str(exc)
                    if time.monotonic() - logged_at >= UNAVAILABLE_LOG_EVERY_S:
                        logged_at = time.monotonic()
                        log.error(
                            "the database still cannot be reached after %.0f s; %d ops queued: %s",
                            logged_at - began,
                            len(ops) + self._queue_ops,
                            exc,
                        )
                    continue
                except StoreError:  # reached, and refused: no outage, the caller's to handle
                    stats.unavailable_since = 0.0
                    stats.unavailable_error = ""
                    raise
                log.warning(
                    "the database is reachable again after %.1f s; writing resumes",
                    time.monotonic() - began,
                )
                stats.unavailable_since = 0.0
                stats.unavailable_error = ""
                return result
        finally:
            stats.unavailable_seconds += time.monotonic() - counted_to

    def _write_alone(self, ops: list[WriteOp], into: CommitResult) -> bool:
        """Write `ops` in a transaction of their own, adding what it made durable `into`;
        False (logged, counted) if the store refuses them, or if the writer gave up waiting
        for the database."""
        try:
            single = self._write_when_available(ops)
            if single is None:
                self.stats.unwritten_ops += len(ops)
                return False
        except StoreError as exc:
            self.stats.failed_ops += len(ops)
            self.stats.last_failure_at = time.time()
            kinds = ", ".join(sorted({type(op).__name__ for op in ops}))
            log.error("dropping %d ops the store refuses (%s): %s", len(ops), kinds, exc)
            return False
        into.events.extend(single.events)
        into.usage.extend(single.usage)
        for producer, seq in single.producers.items():
            into.producers[producer] = max(seq, into.producers.get(producer, 0))
        return True

    def _count(self, ops: list[WriteOp], result: CommitResult, started: float) -> None:
        stats = self.stats
        stats.commits += 1
        stats.ops_written += len(ops)
        stats.events_written += len(result.events)
        stats.commit_seconds += time.perf_counter() - started


def _producer_of(unit: list[WriteOp]) -> str | None:
    """The reliable-delivery producer a unit of ops comes from: its last op marks it."""
    last = unit[-1]
    return last.producer_id if isinstance(last, MarkProducer) else None


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
