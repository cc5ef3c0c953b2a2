"""Servers the benchmark launches in a subprocess besides `aster-studio serve`.

    python -m benchmarks._servers raw [--uvloop] [--relay]
        the bare WebSocket stack: receive + parse; with --relay it also forwards each event
        to live-stream subscribers (at most one send each per ms, as the Studio), storing
        nothing: the latency floor of this stack and harness
    python -m benchmarks._servers studio --db P [--deflate] [--synchronous NORMAL] [--gc-log F]
            [--switch-interval S]
        the Studio through `aster_studio.cli.serve` with settings the CLI does not expose
        (`per_message_deflate`, `synchronous`), or an interpreter setting, for experiments

Each prints `listening on http://127.0.0.1:PORT` as `aster-studio serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson
import uvicorn

from aster_studio.cli import bind, run_loop, serve
from aster_studio.config import Settings
from aster_studio.live.bus import BUSY_SEND, SEND_INTERVAL_S

PONG = '{"type":"pong"}'


class Relay:
    """Forward agents' events to subscribers, one frame each for what arrived meanwhile, as the
    Studio's live stream sends them."""

    def __init__(self) -> None:
        self.subscribers: list[Any] = []
        self.pending: list[str] = []
        self.ready: asyncio.Event | None = None

    def add(self, text: str) -> None:
        if self.ready is None:
            self.ready = asyncio.Event()
            asyncio.get_running_loop().create_task(self._run(self.ready))
        self.pending.append(text)
        self.ready.set()

    async def _run(self, ready: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        busy = False
        while True:
            await ready.wait()
            ready.clear()
            wait = last + SEND_INTERVAL_S - loop.time()
            if busy and wait > 0:  # the Studio's rule: the interval only after a busy send
                await asyncio.sleep(wait)
            last = loop.time()
            items, self.pending = self.pending, []
            busy = len(items) >= BUSY_SEND
            frame = '{"type":"events","payload":[' + ",".join(items) + "]}"
            for send in list(self.subscribers):
                await send({"type": "websocket.send", "text": frame})

    async def subscriber(self, receive: Any, send: Any) -> None:
        await send({"type": "websocket.send", "text": '{"type":"connected"}'})
        try:
            while (await receive())["type"] == "websocket.receive":
                if send not in self.subscribers:
                    await send({"type": "websocket.send", "text": '{"type":"subscribed"}'})
                    self.subscribers.append(send)
        finally:
            if send in self.subscribers:
                self.subscribers.remove(send)


RELAY: Relay | None = None


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept WebSockets; parse every text frame with orjson; answer `ping` so clients can sync.

    With a relay, the live-stream path takes subscribers and agents' events are forwarded.
    """
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    relay = RELAY
    if relay is not None and scope["path"] == "/v1/dashboard/events/stream":
        await relay.subscriber(receive, send)
        return
    loads = orjson.loads
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        msg = loads(message.get("text") or message.get("bytes") or b"null")
        if type(msg) is dict and msg.get("type") == "ping":
            await send({"type": "websocket.send", "text": PONG})
        elif relay is not None and type(msg) is dict and msg.get("type") == "event":
            relay.add(message["text"])


def run_raw(settings: Settings, *, use_uvloop: bool = False) -> None:
    """Serve `raw_app` with the transport settings `aster-studio serve` uses.

    `aster-studio serve` runs on uvloop when it is installed (it comes with uvicorn[standard]),
    as here with `use_uvloop`; without, this shows the standard asyncio loop.
    """
    sock = bind(settings.host, 0)
    host, port = sock.getsockname()[:2]
    print(f"raw stack listening on http://{host}:{port}", flush=True)
    config = uvicorn.Config(
        raw_app,
        log_level="warning",
        access_log=False,
        ws="websockets-sansio",
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=False,
        lifespan="on",
    )
    server = uvicorn.Server(config)
    run_loop(server.serve(sockets=[sock]), "uvloop" if use_uvloop else "asyncio")


def _log_collections(path: str) -> None:
    """Time every garbage collection; at exit, write to PATH the pauses per generation and the
    kinds of object most often found in the young generations (sampled at every fourth
    collection of the middle one, start-up's first one left out)."""
    import atexit
    import gc
    import time

    pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
    kinds: dict[str, int] = {}
    started = 0.0

    def timed(phase: str, info: dict[str, int]) -> None:
        nonlocal started
        if phase == "start":
            if info["generation"] == 1 and len(pauses[1]) % 4 == 1:
                for obj in gc.get_objects(0) + gc.get_objects(1):
                    kinds[type(obj).__name__] = kinds.get(type(obj).__name__, 0) + 1
            started = time.perf_counter()
        else:
            pauses[info["generation"]].append((time.perf_counter() - started) * 1e3)

    def write() -> None:
        with open(path, "w") as out:
            for gen, ms in pauses.items():
                out.write(
                    f"gen {gen}: {len(ms)} collections, {sum(ms):.1f} ms in all, "
                    f"max {max(ms, default=0.0):.2f} ms, {sum(m > 1 for m in ms)} over 1 ms\n"
                )
            common = sorted(kinds.items(), key=lambda kv: -kv[1])[:12]
            out.write(f"young objects: {common}\n")

    gc.callbacks.append(timed)
    atexit.register(write)


def _trace_on_signal(path: str) -> None:
    """Start tracemalloc; on SIGUSR1, append the top allocation growth since the last signal."""
    import signal
    import tracemalloc

    tracemalloc.start(8)
    last = [tracemalloc.take_snapshot()]

    def dump(signum: int, frame: object) -> None:
        snap = tracemalloc.take_snapshot()
        stats = snap.compare_to(last[0], "traceback")
        last[0] = snap
        with open(path, "a") as out:
            out.write(f"--- growth since last snapshot: {sum(s.size_diff for s in stats)} B\n")
            for stat in stats[:25]:
                out.write(f"{stat.size_diff:>10} B {stat.count_diff:>7} blocks\n")
                for line in stat.traceback.format(limit=4):
                    out.write(f"      {line}\n")

    signal.signal(signal.SIGUSR1, dump)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._servers")
    parser.add_argument("kind", choices=["raw", "studio"])
    parser.add_argument("--db", default="")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    parser.add_argument("--relay", action="store_true", help="raw: forward events to subscribers")
    parser.add_argument("--synchronous", default="FULL", help="SQLite synchronous (experiments)")
    parser.add_argument("--switch-interval", type=float, help="sys.setswitchinterval (experiments)")
    parser.add_argument(
        "--tracemalloc",
        metavar="FILE",
        help="trace allocations; each SIGUSR1 appends the growth since the last one to FILE",
    )
    parser.add_argument("--gc-log", metavar="FILE", help="time each garbage collection")
    args = parser.parse_args()
    if args.gc_log:
        _log_collections(args.gc_log)
    if args.tracemalloc:
        _trace_on_signal(args.tracemalloc)
    if args.switch_interval:
        sys.setswitchinterval(args.switch_interval)
    settings = Settings(
        host="127.0.0.1",
        port=0,
        db=args.db,
        log_level="warning",
        per_message_deflate=args.deflate,
        synchronous=args.synchronous,
    )
    if args.kind == "raw":
        if args.relay:
            global RELAY
            RELAY = Relay()
        run_raw(settings, use_uvloop=args.uvloop)
    else:
        serve(settings)


if __name__ == "__main__":
    main()
