"""Wire settings, store, pipeline, registry and bus into an ASGI app, and run its lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from fastapi import FastAPI

from aster_studio_sdk.protocol import Limits

from . import __version__
from .auth import Auth
from .config import Settings
from .control.service import WATCHED_TYPES, ControlService
from .ingest.connection import ConnectionLimits
from .ingest.pipeline import WritePipeline
from .ingest.registry import Registry
from .ingest.service import Clock, IngestService, wall_clock_ms
from .live.bus import LiveBus
from .store import Store, store_for

if TYPE_CHECKING:
    from .live.peers import ClusterLink

log = logging.getLogger(__name__)

T = TypeVar("T")

STATIC_DIR = Path(__file__).parent / "static"
REQUEST_KEY = "request_ids"  # the secret an agent's request id is made with (`_request_key`)


@dataclass(eq=False)
class Studio:
    """Everything one Studio instance owns; built by `create_app`, reached by the routes."""

    settings: Settings
    store: Store
    clock: Clock
    registry: Registry = field(default_factory=Registry)
    bus: LiveBus = field(default_factory=LiveBus)
    started_at: float = field(default_factory=time.time)
    ingest: IngestService = field(init=False)
    control: ControlService = field(init=False)
    auth: Auth = field(init=False)
    generated_console_token: str | None = None
    pipeline: WritePipeline | None = None
    cluster: ClusterLink | None = None  # one of several Studios on the database (`--cluster`)
    dashboard_connections: int = 0
    stream_dropped: int = 0  # events dropped for live-stream clients too slow to take them
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bus = LiveBus(self.settings.subscriber_buffer, self.settings.subscriber_buffer_bytes)
        self.ingest = IngestService(
            self.store,
            self.registry,
            self.bus,
            self.clock,
            limits=Limits(),
            stall_after_ms=int(self.settings.stall_after_s * 1000),
            outbox_max=self.settings.outbox_max,
            policy=ConnectionLimits(
                messages_per_s=self.settings.max_messages_per_s,
                burst=self.settings.message_burst,
                max_agents=self.settings.max_agents_per_connection,
                max_sessions=self.settings.max_sessions_per_connection,
            ),
        )
        self.auth = Auth(self.store, self.settings.console_token)
        self.control = ControlService(self.ingest, self.bus, self.clock)
        self.ingest.on_events = self.control.observe
        self.ingest.on_agent_online = self.control.agent_online
        if self.settings.cluster is not None:
            # Events go live once committed, when the database has numbered them.
            self.ingest.live_on_receipt = False

    @property
    def stall_after_ms(self) -> int:
        return self.ingest.stall_after_ms

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self.store.open)
        self.generated_console_token = await loop.run_in_executor(None, self.auth.load)
        if self.generated_console_token is not None:
            # Shown once, like a notebook server's token: only its hash is stored.
            log.warning(
                "agent keys exist, so auth is on. Console token (shown once; "
                "`aster-studio console-token` makes a new one): %s",
                self.generated_console_token,
            )
        records = await loop.run_in_executor(None, self.store.load_agents)
        usage = await loop.run_in_executor(None, self.store.usage_by_agent)
        forgotten = await loop.run_in_executor(None, self.store.forgotten_events)
        self.registry.load(records, usage, forgotten)
        self.control.load(
            await loop.run_in_executor(None, self.store.open_requests),
            await loop.run_in_executor(None, self._request_key),
        )
        # Requests a crash lost between their events' commit and their own: written before
        # the pipeline starts, so they are durable before any agent is served.
        lost = await loop.run_in_executor(None, self.store.unobserved_events, WATCHED_TYPES)
        recovered = self.control.recover(lost)
        if recovered:
            await loop.run_in_executor(None, self.store.write, recovered)
        if self.settings.cluster is not None:
            await self._join_cluster(self.settings.cluster)
        self.pipeline = WritePipeline(
            self.store,
            loop,
            self.ingest.on_commit,
            max_ops=self.settings.queue_max_ops,
            batch_max=self.settings.writer_batch_max,
            commit_interval_s=self.settings.commit_interval_s,
        )
        first_event_id = await loop.run_in_executor(None, self.store.reserve_event_ids)
        self.ingest.attach(self.pipeline, first_event_id)
        self.pipeline.start()
        self._tasks.append(asyncio.create_task(self._watch_stalls(), name="stall-watch"))

    async def _join_cluster(self, url: str) -> None:
        from .live.peers import ClusterLink

        cluster = ClusterLink(
            url,
            store=self.store,
            bus=self.bus,
            ingest=self.ingest,
            registry=self.registry,
            control=self.control,
            clock=self.clock,
        )
        await cluster.start()
        self.cluster = cluster
        self.ingest.on_committed = cluster.committed
        self.ingest.on_view = cluster.agent_view
        self.ingest.on_claim = cluster.claim_producer
        self.control.peers = cluster
        self.control.on_saved = cluster.request_saved

    def _request_key(self) -> bytes:
        """The key request ids are made with, this database's own (made at its first start)."""
        key = self.store.get_secret(REQUEST_KEY)
        if key is None:
            # Another Studio of a cluster may make it at the same moment: one wins, both use it.
            key = self.store.add_secret(REQUEST_KEY, secrets.token_hex(32), int(time.time() * 1000))
        return key.encode()

    async def stop(self) -> None:
        """Flush every received event to storage, then close it."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        if self.pipeline is not None:
            depth = self.pipeline.depth
            ok = await self.pipeline.stop(self.settings.shutdown_timeout_s)
            log.info("flushed %d queued writes to storage (%s)", depth, "ok" if ok else "timeout")
            if ok:
                await asyncio.get_running_loop().run_in_executor(None, self.store.release_event_ids)
        if self.cluster is not None:
            await self.cluster.stop()
        await asyncio.get_running_loop().run_in_executor(None, self.store.close)

    async def _watch_stalls(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            try:
                self.ingest.check_stalls()
                self.control.expire_due()
                await asyncio.get_running_loop().run_in_executor(None, self.auth.refresh)
            except Exception:  # a watchdog must not die of one bad record
                log.exception("periodic check failed")

    async def run_sync(self, fn: Callable[..., T], *args: Any) -> T:
        """Run blocking store work off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    clock: Clock = wall_clock_ms,
    after_start: Callable[[], Callable[[], None]] | None = None,
) -> FastAPI:
    """Build the Studio's ASGI app: agent endpoint, REST API, live stream and console.

    `after_start` runs once the Studio has started, before the first connection is served;
    what it returns runs when the Studio begins to stop.
    """
    from .api import mount_routes
    from .api.guard import Guard
    from .api.head import HeadAsGet

    studio = Studio(
        settings=settings,
        store=store or store_for(settings),
        clock=clock,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await studio.start()
        undo = after_start() if after_start is not None else None
        try:
            yield
        finally:
            if undo is not None:
                undo()
            await studio.stop()

    app = FastAPI(
        title="Aster Studio",
        version=__version__,
        description="Ingest, store and serve the live events of remote AI agents.",
        lifespan=lifespan,
        docs_url=None,  # the console serves its own API browser (api/__init__.py)
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.studio = studio
    mount_routes(app, studio, STATIC_DIR)
    app.add_middleware(HeadAsGet)  # inside the guard: a HEAD is checked as what it is
    app.add_middleware(Guard, auth=studio.auth, loopback=settings.loopback)
    return app
