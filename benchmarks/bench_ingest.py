"""The event loop's share of ingesting an event, without sockets or the writer.

    python -m benchmarks.bench_ingest

Text frames go straight to `IngestService.handle_text` as the agent socket hands them over:
decoding, numbering, the rows queued for writing and publication to five unfiltered live
subscribers, whose queues are emptied every ten frames as their senders would. No write
pipeline is attached (nothing is stored) and nothing is sent, so this is the Python the
loop runs per event, the part of the server's cost that the WebSocket stack, the kernel and
SQLite do not decide. Wall time per event, the best of REPEAT runs of FRAMES frames, pinned to
core 1 when there is one; one event per frame (as the document's client sends) and batches of
100. Then the same single events as client WebSocket frames (`_wire.frame`) through the agent
socket's `data_received`, one frame per read as a paced agent's frames arrive, to a transport
that writes nothing: the socket layer's share added. Run from another checkout (its `src/` first on
PYTHONPATH) to compare code.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson

from aster_studio.agent_socket import AgentSocket, Keepalive
from aster_studio.api.guard import AGENT_PATH
from aster_studio.app import Studio, wall_clock_ms
from aster_studio.config import Settings
from aster_studio.store import SqliteStore
from aster_studio_sdk._native import describe as describe_code

from ._wire import frame as client_frame
from ._wire import upgrade_request

AGENTS = 50
SUBSCRIBERS = 5
REPEAT = 5
EVENTS = 100_000  # per run


def frame(agent_id: str, count: int, first: int) -> str:
    """`count` text chunks of about 200 bytes for `agent_id`, as one frame (a batch if > 1)."""
    delta = "x" * 120
    items = [
        orjson.dumps(
            {
                "type": "event",
                "agent_id": agent_id,
                "event": {
                    "channel": "progress",
                    "event_type": "text_chunk",
                    "delta": delta,
                    "t": t,
                },
            }
        ).decode()
        for t in range(first, first + count)
    ]
    return f'{{"type":"batch","messages":[{",".join(items)}]}}' if count > 1 else items[0]


class NullTransport:
    """What the agent socket calls on its transport; everything written is dropped."""

    def write(self, data: bytes) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def is_closing(self) -> bool:
        return False

    def get_extra_info(self, name: str) -> Any:
        return ("127.0.0.1", 5000) if name == "peername" else None


def agent_socket(studio: Studio) -> AgentSocket:
    """An agent socket past its upgrade, as uvicorn would have made it."""
    config = SimpleNamespace(root_path="")
    state = SimpleNamespace(connections=set(), tasks=set(), default_headers=[])
    sock = AgentSocket(studio, Keepalive(0, 0, 0), config, state, None)
    sock.connection_made(NullTransport())  # type: ignore[arg-type]
    sock.data_received(upgrade_request("bench", AGENT_PATH))
    assert sock.conn is not None, "the upgrade was refused"
    return sock


async def per_event_us(batch: int, through_socket: bool = False) -> float:
    with tempfile.TemporaryDirectory(prefix="aster-bench-ingest-") as tmp:
        studio = Studio(
            settings=Settings(), store=SqliteStore(Path(tmp) / "b.db"), clock=wall_clock_ms
        )
        ingest, bus = studio.ingest, studio.bus
        subscribers = [bus.subscribe() for _ in range(SUBSCRIBERS)]
        for sub in subscribers:
            sub.active = sub.batch = True
        sockets = [agent_socket(studio) for _ in range(AGENTS)] if through_socket else []
        if sockets:
            conns = [sock.conn for sock in sockets if sock.conn is not None]
        else:
            conns = [ingest.open_connection("bench") for _ in range(AGENTS)]
        for i, conn in enumerate(conns):
            conn.tokens = float("inf")  # no rate limit
            conn.agents.add(f"bench-{i:03d}")
        frames = [frame(f"bench-{i:03d}", batch, i) for i in range(AGENTS)]
        wire = [client_frame(text.encode()) for text in frames]

        async def run(count: int) -> None:
            for i in range(count):
                if through_socket:
                    sockets[i % AGENTS].data_received(wire[i % AGENTS])
                else:
                    await ingest.handle_text(conns[i % AGENTS], frames[i % AGENTS])
                if i % 10 == 9:
                    await asyncio.sleep(0)  # the loop iteration ends: publication
                    for sub in subscribers:
                        sub.take()
                    bus.committed(ingest.next_event_id)

        await run(max(1, 20_000 // batch))  # agents created, caches warm
        try:
            from aster_studio import heap  # the server's collector settings

            heap.settle()
        except ImportError:  # a checkout from before them
            pass
        best = float("inf")
        for _ in range(REPEAT):
            start = time.perf_counter()
            await run(EVENTS // batch)
            best = min(best, time.perf_counter() - start)
        return best / EVENTS * 1e6


def main() -> None:
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) > 1:
        os.sched_setaffinity(0, {1})
    print(f"code: {describe_code()}")
    for batch in (1, 100):
        shape = "one event per frame" if batch == 1 else f"batches of {batch}"
        print(f"{shape}: {asyncio.run(per_event_us(batch)):.2f} µs per event")
    through = asyncio.run(per_event_us(1, through_socket=True))
    print(f"one event per frame, through the agent socket: {through:.2f} µs per event")


if __name__ == "__main__":
    main()
