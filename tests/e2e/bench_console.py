"""Console under load: events at a target rate into a real Studio, the console open in Chromium.

Reports, per page, main-thread long tasks (PerformanceObserver 'longtask'), the worst gap between
animation frames, JS heap use, how many events the page received, and how long a navigation
took while the load ran. Run it on its own::

    .venv/bin/python -m tests.e2e.bench_console --rate 10000 --seconds 10

`test_load.py` runs a shorter pass and checks the bounds that must hold.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright
from websockets.sync.client import connect

from tests.support.server import StudioProcess

from .helpers import CHROMIUM, CHROMIUM_ARGS, open_console

BATCH = 250

PROBE = """() => {
  const w = window;
  w.__bench = { longtasks: [], gaps: [], heap: [], started: performance.now() };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) w.__bench.longtasks.push(e.duration);
  }).observe({ type: 'longtask', buffered: false });
  let last = performance.now();
  const frame = (t) => {
    w.__bench.gaps.push(t - last);
    last = t;
    if (!w.__bench.stop) requestAnimationFrame(frame);
  };
  requestAnimationFrame(frame);
  w.__bench.timer = setInterval(() => {
    if (performance.memory) w.__bench.heap.push(performance.memory.usedJSHeapSize);
  }, 250);
  w.__bench.received0 = w.__asterHub.received;
}"""

COLLECT = """() => {
  const b = window.__bench; b.stop = true; clearInterval(b.timer);
  const elapsed = (performance.now() - b.started) / 1000;
  const gaps = b.gaps.slice(1).sort((x, y) => x - y);
  const pct = (p) => gaps.length ? gaps[Math.min(gaps.length - 1, Math.floor(gaps.length * p))] : 0;
  return {
    seconds: elapsed,
    long_tasks: b.longtasks.length,
    long_task_ms_total: b.longtasks.reduce((a, x) => a + x, 0),
    long_task_ms_max: b.longtasks.reduce((a, x) => Math.max(a, x), 0),
    frames: gaps.length,
    frame_gap_p50_ms: pct(0.5),
    frame_gap_p95_ms: pct(0.95),
    frame_gap_max_ms: gaps.length ? gaps[gaps.length - 1] : 0,
    heap_mb_max: b.heap.length ? Math.max(...b.heap) / 1048576 : null,
    heap_mb_end: b.heap.length ? b.heap[b.heap.length - 1] / 1048576 : null,
    received: window.__asterHub.received - b.received0,
    live_rows_kept: window.__asterHub.events.size,
  };
}"""


@dataclass
class PageReport:
    page: str
    seconds: float
    events_sent_per_s: float
    events_received_per_s: float
    long_tasks: int
    long_task_ms_total: float
    long_task_ms_max: float
    frames: int
    frame_gap_p50_ms: float
    frame_gap_p95_ms: float
    frame_gap_max_ms: float
    heap_mb_max: float | None
    heap_mb_end: float | None
    live_rows_kept: int
    navigation_ms: float


class Load:
    """Send events at `rate` per second over agent WebSockets in batches until stopped."""

    def __init__(self, url: str, rate: int, agents: int = 4) -> None:
        self.url = f"{url}/v1/remote-agents/connect"
        self.rate = rate
        self.agents = agents
        self.stop = threading.Event()
        self.sent = 0
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(agents)
        ]

    def start(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def close(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(5)

    def _run(self, index: int) -> None:
        agent_id = f"load-{index}"
        per_agent = self.rate / self.agents
        interval = BATCH / per_agent
        with connect(self.url, max_size=None, open_timeout=10) as ws:
            ws.recv(5)  # connected
            ws.send(json.dumps({"type": "register", "agent": {"id": agent_id, "name": agent_id}}))
            ws.recv(5)  # registered
            ws.send(
                json.dumps(
                    {
                        "type": "register_session",
                        "session": {"id": f"{agent_id}-s", "agent_id": agent_id},
                    }
                )
            )
            n = 0
            next_at = time.monotonic()
            while not self.stop.is_set():
                messages = []
                for i in range(BATCH):
                    n += 1
                    kind = n % 10
                    if kind == 0:
                        event: dict[str, Any] = {
                            "channel": "monitor",
                            "event_type": "token_usage",
                            "input_tokens": 100,
                            "output_tokens": 20,
                            "model": "gpt-4o",
                        }
                    elif kind == 5:
                        event = {
                            "channel": "monitor",
                            "event_type": "state_changed",
                            "state": "working",
                        }
                    else:
                        event = {
                            "channel": "progress",
                            "event_type": "text_chunk",
                            "step": 1,
                            "delta": f"w{n} ",
                        }
                    messages.append({"type": "event", "agent_id": agent_id, "event": event})
                    del i
                ws.send(json.dumps({"type": "batch", "messages": messages}))
                with self.lock:
                    self.sent += BATCH
                next_at += interval
                delay = next_at - time.monotonic()
                if delay > 0:
                    self.stop.wait(delay)
                # Drain replies (errors, none expected) without blocking.
                try:
                    while True:
                        ws.recv(0)
                except TimeoutError:
                    pass


def measure(page: Page, load: Load, name: str, seconds: float, nav_to: str) -> PageReport:
    page.evaluate(PROBE)
    sent0 = load.sent
    started = time.monotonic()
    time.sleep(seconds / 2)
    # An interaction while the load runs: navigate and wait for the next page to show.
    t0 = time.monotonic()
    page.locator(".sidebar").get_by_role("link", name=nav_to).click()
    page.get_by_test_id(f"page-{nav_to.lower()}").wait_for(timeout=30_000)
    nav_ms = (time.monotonic() - t0) * 1000
    page.go_back()
    time.sleep(max(0.0, seconds - (time.monotonic() - started)))
    result = page.evaluate(COLLECT)
    elapsed = time.monotonic() - started
    return PageReport(
        page=name,
        seconds=round(result["seconds"], 2),
        events_sent_per_s=round((load.sent - sent0) / elapsed),
        events_received_per_s=round(result["received"] / result["seconds"]),
        long_tasks=result["long_tasks"],
        long_task_ms_total=round(result["long_task_ms_total"]),
        long_task_ms_max=round(result["long_task_ms_max"]),
        frames=result["frames"],
        frame_gap_p50_ms=round(result["frame_gap_p50_ms"], 1),
        frame_gap_p95_ms=round(result["frame_gap_p95_ms"], 1),
        frame_gap_max_ms=round(result["frame_gap_max_ms"], 1),
        heap_mb_max=None if result["heap_mb_max"] is None else round(result["heap_mb_max"], 1),
        heap_mb_end=None if result["heap_mb_end"] is None else round(result["heap_mb_end"], 1),
        live_rows_kept=result["live_rows_kept"],
        navigation_ms=round(nav_ms),
    )


PAGES = (
    ("events", "events", "Overview"),
    ("session", "sessions/load-0-s", "Agents"),
    ("overview", "", "Events"),
)


def run(studio: StudioProcess, page: Page, rate: int, seconds: float) -> list[PageReport]:
    """Run the load against `studio` and measure each main page in turn."""
    load = Load(studio.url, rate).start()
    try:
        reports = []
        for name, path, nav in PAGES:
            open_console(page, studio.http_url, path)
            time.sleep(1.0)  # settle: history loaded, stream flowing
            reports.append(measure(page, load, name, seconds, nav))
        return reports
    finally:
        load.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=10_000, help="events per second to send")
    parser.add_argument("--seconds", type=float, default=10.0, help="measured seconds per page")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        studio = StudioProcess(Path(tmp) / "bench.db").start()
        try:
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1440, "height": 900})
                reports = run(studio, page, args.rate, args.seconds)
                browser.close()
        finally:
            studio.stop()
    for r in reports:
        print(json.dumps(asdict(r)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
