"""Does one flooding agent hurt well-behaved ones? (issue 6: "a flood from one misbehaving agent")

    python -m benchmarks.bench_fairness        (BENCH_SECONDS per phase, default 10)

Four well-behaved agents each send 1,000 events/s (a frame of 10 every 10 ms) while one
subscriber, filtered to them, measures send-to-subscriber latency. Phase one runs them alone;
phase two adds an agent that writes 1,000-event batches as fast as its socket accepts them,
without ever reading a reply. Reported: the well-behaved agents' stored rate and latency in each
phase, and the flooder's rate (held to the server's per-connection limit and to what the core
has left). Server pinned to core 0, generator to core 1, loopback.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from typing import Any

from ._wire import RawWebSocket
from .bench_server import (
    AGENT_PATH,
    HOST,
    STREAM_PATH,
    Agent,
    Meter,
    log,
    machine,
    pin_generator,
    rest,
    running,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
GOOD = 4
GOOD_RATE = 1_000
TICK_S = 0.01
FLOOD_BATCH = 1_000


async def subscribe(port: int, agent_ids: list[str], meter: Meter) -> asyncio.Task[None]:
    """A live-stream reader for `agent_ids` that records latencies into `meter`."""
    ws = await RawWebSocket.connect(HOST, port, STREAM_PATH)
    while b'"connected"' not in await ws.recv():
        pass
    ws.send(
        json.dumps(
            {"action": "subscribe", "batch": True, "filters": {"agent_ids": agent_ids}}
        ).encode()
    )
    while b'"subscribed"' not in await ws.recv():
        pass

    async def read() -> None:
        while True:
            data = await ws.recv()
            if not data.startswith(b'{"type":"events"'):
                continue
            now = time.monotonic_ns()
            for item in json.loads(data)["payload"]:
                sent = int(item["data"]["t"])
                start, end = meter.window
                if start <= sent <= end:
                    index = (now - sent) // 50_000
                    meter.hist[min(index, len(meter.hist) - 1)] += 1
                    meter.latencies += 1

    return asyncio.create_task(read())


async def pace(agents: list[Agent], stop_ns: int) -> None:
    per_tick = int(GOOD_RATE * TICK_S)
    next_at = time.monotonic()
    while time.monotonic_ns() < stop_ns:
        now = time.monotonic_ns()
        for agent in agents:
            agent.ws.write(agent.frame(now, per_tick))
        next_at += TICK_S
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))


async def flood(port: int, stop_ns: int) -> int:
    """Write big batches as fast as the socket drains, never reading: returns events sent."""
    ws = await RawWebSocket.connect(HOST, port, AGENT_PATH)
    head = b'{"type":"event","agent_id":"flooder","event":{"event_type":"x","d":"'
    event = head + b"y" * 150 + b'"}}'
    frame = ws.encode(b'{"type":"batch","messages":[' + b",".join([event] * FLOOD_BATCH) + b"]}")
    sent = 0
    while time.monotonic_ns() < stop_ns:
        ws.write(frame)
        sent += FLOOD_BATCH
        await ws.writer.drain()
    ws.writer.close()
    return sent


async def phase(port: int, flooding: bool) -> dict[str, Any]:
    agents = [await Agent.open(port, f"good-{i}") for i in range(GOOD)]
    start = time.monotonic_ns() + int(1e9)
    stop = start + int(SECONDS * 1e9)
    meter = Meter((start, stop))
    reader = await subscribe(port, [a.id for a in agents], meter)
    before = rest_count(port, [a.id for a in agents])
    flooder = asyncio.create_task(flood(port, stop + int(1e9))) if flooding else None
    sent_before = sum(a.sent for a in agents)
    await pace(agents, stop)
    good_sent = sum(a.sent for a in agents) - sent_before
    for agent in agents:
        await agent.sync()
    stored = rest_count(port, [a.id for a in agents]) - before
    flood_sent = await flooder if flooder else 0
    await asyncio.sleep(0.5)
    reader.cancel()
    for agent in agents:
        await agent.close()
    return {
        "flooding": flooding,
        "good_sent_per_s": good_sent / (SECONDS + 1),
        "good_stored": stored,
        "good_sent": good_sent,
        "p50_ms": meter.percentile(50),
        "p99_ms": meter.percentile(99),
        "flood_sent_per_s": flood_sent / (SECONDS + 2),
    }


def rest_count(port: int, agent_ids: list[str]) -> int:
    class _S:
        http = f"http://{HOST}:{port}"

    return int(rest(_S(), "/v1/dashboard/events/count?agent_id=" + ",".join(agent_ids))["count"])


async def run() -> dict[str, Any]:
    with running("studio") as server:
        alone = await phase(server.port, flooding=False)
        log(f"  alone: {alone}")
        flooded = await phase(server.port, flooding=True)
        log(f"  with a flood: {flooded}")
        flood_stored = rest_count(server.port, ["flooder"])
    return {"alone": alone, "flooded": flooded, "flood_stored": flood_stored}


def main() -> None:
    pinning = pin_generator()
    results = asyncio.run(run())
    alone, flooded = results["alone"], results["flooded"]
    m = machine()
    print(f"Machine: {m['nproc']} cores ({m['cpu']}); {pinning}; {SECONDS:g} s per phase.\n")
    print("| phase | good agents' events/s sent | stored | p50 ms | p99 ms | flooder events/s |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, p in (("4 agents alone", alone), ("with one flooder", flooded)):
        print(
            f"| {name} | {p['good_sent_per_s']:,.0f} | {p['good_stored']:,}/{p['good_sent']:,} "
            f"| {p['p50_ms'] or 0:,.1f} | {p['p99_ms'] or 0:,.1f} | "
            f"{p['flood_sent_per_s']:,.0f} |"
        )
    print(f"\nThe flooder got {results['flood_stored']:,} events stored.")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
