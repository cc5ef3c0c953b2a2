"""Posting lists: which events belong to each agent and each session, written in bulk.

An index on `events (agent_id, id)` takes one entry per event at one place per agent, so a
commit of events from 50 agents dirties 50 index pages, and again for sessions; at the group
commits of a moderately busy server that was half the writer's time. Instead the store keeps
the ids of events not yet posted in memory and, every few thousand events, writes one row per
agent and per session holding the sorted ids of its events since the last such write (a
posting). Events above the newest posted id (the store's watermark) are found by scanning that
short tail of the events table.

A posting is `(last_id, first_id, ids)`, its ids packed as little-endian 64-bit integers. The
functions here are pure: the store runs the SQL and passes the rows in.
"""

from __future__ import annotations

import heapq
import sys
from array import array
from bisect import bisect_left, bisect_right
from collections import defaultdict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from operator import itemgetter

# (last_id, first_id, packed ids), as selected from a postings table.
Posting = tuple[int, int, bytes]
# (key, last_id, first_id, packed ids), as inserted into one.
Row = tuple[str, int, int, bytes]

_BIG_ENDIAN = sys.byteorder == "big"


def pack(ids: list[int]) -> bytes:
    """`ids` (ascending) as a posting's blob."""
    packed = array("q", ids)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def unpack(blob: bytes) -> array[int]:
    ids = array("q")
    ids.frombytes(blob)
    if _BIG_ENDIAN:
        ids.byteswap()
    return ids


def add(
    by_key: defaultdict[str | None, list[int]], ids: Iterable[int], keys: Iterable[str | None]
) -> None:
    """Append each id to its key's list, in the order given, with no Python per id.

    The writer calls this after every commit, so a posting write finds its events grouped
    already instead of grouping thousands at once while the event loop waits for the GIL.
    """
    deque(map(list.append, map(by_key.__getitem__, keys), ids), maxlen=0)


def rows(by_key: Mapping[str | None, list[int]]) -> list[Row]:
    """One `(key, last_id, first_id, ids)` row per key, leaving out None (no session)."""
    out = []
    for key, ids in by_key.items():
        if key is None or not ids:
            continue
        ids.sort()  # already ascending as events are written in id order; cheap if so
        out.append((key, ids[-1], ids[0], pack(ids)))
    return out


def newest_first(streams: Sequence[Iterable[Posting]], before: int) -> Iterator[list[int]]:
    """The ids below `before` of the postings of several keys, newest first, in runs.

    Each stream holds one key's postings in descending `last_id`. Merged the same way, every id
    above the next posting's `last_id` can no longer be preceded by another, so it is final.
    """
    held: list[int] = []  # ascending, not yet final
    for last_id, _, blob in heapq.merge(*streams, key=itemgetter(0), reverse=True):
        cut = bisect_right(held, last_id)
        if cut < len(held):
            yield held[cut:][::-1]
            del held[cut:]
        ids = unpack(blob)
        ids = ids[: bisect_left(ids, before)]
        held = sorted([*held, *ids]) if held else ids.tolist()
    if held:
        yield held[::-1]


def oldest_first(streams: Sequence[Iterable[Posting]], after: int) -> Iterator[list[int]]:
    """The ids above `after` of the postings of several keys, oldest first, in runs.

    Each stream holds one key's postings in ascending order (one key's postings never overlap,
    so `last_id` and `first_id` order agree). Merged by `first_id`, every id below the next
    posting's `first_id` is final.
    """
    held: list[int] = []
    for _, first_id, blob in heapq.merge(*streams, key=itemgetter(1)):
        cut = bisect_left(held, first_id)
        if cut:
            yield held[:cut]
            del held[:cut]
        ids = unpack(blob)
        ids = ids[bisect_right(ids, after) :]
        held = sorted([*held, *ids]) if held else ids.tolist()
    if held:
        yield held


def batched(runs: Iterable[list[int]], size: int) -> Iterator[list[int]]:
    """The ids of `runs`, in the same order, regrouped into lists of at most `size`."""
    batch: list[int] = []
    for run in runs:
        batch.extend(run)
        while len(batch) >= size:
            yield batch[:size]
            del batch[:size]
    if batch:
        yield batch
