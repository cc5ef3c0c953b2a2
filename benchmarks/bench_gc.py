"""Garbage collection in the server under load: how often, how long, what it walks.

    python -m benchmarks.bench_gc          (BENCH_SECONDS per phase, default 10)

Runs the Studio through `benchmarks._servers studio --gc-log` (the server as `aster-studio
serve` runs it, collections timed by `gc.callbacks`) for three loads of `bench_server`: batches
of 100 and one event per frame, saturated, and 10,000 events/s. Each line covers the server's
whole life, start-up included (its one full collection, before the freeze, is the ~35 ms
`gen 2` pause), so the counts compare between runs of the same length.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from .bench_server import LOW_RATE, studio_load

LOADS = (
    ("batches of 100, saturated", {"batch": 100}),
    ("one event per frame, saturated", {"batch": 1}),
    ("10,000 events/s", {"batch": 1, "saturate": False, "rates": (LOW_RATE,)}),
)


async def main() -> None:
    with tempfile.TemporaryDirectory(prefix="aster-gc-") as tmp:
        for label, load in LOADS:
            log = Path(tmp) / "gc.txt"
            result = await studio_load("studio-inproc", label, extra=("--gc-log", str(log)), **load)
            phase = result["phases"][0]
            print(
                f"{label}: {phase['ingest_rate']:,.0f} ev/s, p99 {phase['p99_ms']:.1f} ms, "
                f"max {phase['max_ms']:.1f} ms, server CPU {phase['server_cpu']:.0%}"
            )
            for line in log.read_text().splitlines():
                print(f"  {line}")


if __name__ == "__main__":
    asyncio.run(main())
