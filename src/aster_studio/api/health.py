"""Liveness and readiness (`/healthz`, `/health`) and Prometheus metrics (`/metrics`)."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from fastapi import APIRouter
from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..app import Studio
from ..errors import StoreError
from ..ingest.pipeline import PipelineStats
from ..models import iso_ms

# How long after the store last refused a write the health check says so.
WRITE_FAILURE_WINDOW_S = 60.0


def outage(pipe: PipelineStats | None) -> str:
    """What /healthz says while writes wait for the database to come back; '' if none do."""
    if pipe is None or not pipe.unavailable_since:
        return ""
    return (
        f"the database cannot be reached since {iso_ms(int(pipe.unavailable_since * 1000))}: "
        f"writes are held and retried (see the log): {pipe.unavailable_error}"
    )


def router(studio: Studio) -> APIRouter:
    api = APIRouter()
    # The store check has a thread of its own: in the shared pool it waited behind the heavy
    # reads of a big store (3.1 s with eight of them running), and a probe took that as down.
    checker = ThreadPoolExecutor(1, thread_name_prefix="health")

    async def check_store() -> dict[str, object]:
        started = time.perf_counter()
        pipe = studio.pipeline.stats if studio.pipeline else None
        try:
            await asyncio.get_running_loop().run_in_executor(checker, studio.store.ping)
        except StoreError as exc:
            return {"status": "unhealthy", "error": outage(pipe) or str(exc)}
        latency = (time.perf_counter() - started) * 1000
        # The writer may wait for the database while reads get through (another Studio took
        # its lock, or the database came back a moment ago and the writer retries soon).
        waiting = outage(pipe)
        if waiting:
            return {"status": "unhealthy", "error": waiting, "latency_ms": round(latency, 3)}
        # A store that reads but refuses writes (a full disk) is no healthy store.
        if pipe is not None and time.time() - pipe.last_failure_at < WRITE_FAILURE_WINDOW_S:
            return {
                "status": "unhealthy",
                "error": f"writes are failing: {pipe.failed_ops} ops refused, the last "
                f"at {iso_ms(int(pipe.last_failure_at * 1000))} (see the log)",
                "latency_ms": round(latency, 3),
            }
        return {"status": "healthy", "message": "OK", "latency_ms": round(latency, 3)}

    @api.get("/healthz", summary="Is the Studio up, and can it reach its store")
    async def healthz() -> Response:
        store = await check_store()
        healthy = store["status"] == "healthy"
        pipeline = studio.pipeline
        return JSONResponse(
            {
                "status": "ok" if healthy else "degraded",
                "version": __version__,
                "uptime_s": round(time.time() - studio.started_at, 3),
                "store": {"backend": studio.store.describe(), "id": studio.store.store_id, **store},
                "write_queue": pipeline.depth if pipeline else 0,
                "agents_online": sum(
                    1 for a in studio.registry.agents.values() if a.connection is not None
                ),
                **({"cluster": studio.cluster.describe()} if studio.cluster else {}),
            },
            status_code=200 if healthy else 503,
        )

    @api.get("/health", summary="Health in the original Studio's shape")
    async def health() -> Response:
        store = await check_store()
        return JSONResponse(
            {
                "status": "healthy" if store["status"] == "healthy" else "degraded",
                "version": __version__,
                "uptime": int((time.time() - studio.started_at) * 1e9),
                "timestamp": iso_ms(studio.clock()),
                "checks": {"store": store},
            }
        )

    @api.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics() -> Response:
        ingest = studio.ingest.stats
        pipe = studio.pipeline.stats if studio.pipeline else None
        counts = studio.registry.counts(studio.clock(), studio.stall_after_ms)
        # A partition, so that the series add up to the agents: the registry's `online`
        # holds the working and the stalled ones too.
        statuses = {
            "offline": counts["offline"],
            "idle": counts["online"] - counts["working"] - counts["stalled"],
            "working": counts["working"],
            "stalled": counts["stalled"],
        }
        open_ones = studio.ingest.connections.values()
        dropped_replies = ingest.dropped_replies + sum(c.dropped_replies for c in open_ones)
        lines = [
            "# TYPE aster_agents gauge",
            *(f'aster_agents{{status="{k}"}} {v}' for k, v in statuses.items()),
            "# TYPE aster_agent_connections gauge",
            f"aster_agent_connections {len(studio.ingest.connections)}",
            "# TYPE aster_dashboard_connections gauge",
            f"aster_dashboard_connections {studio.dashboard_connections}",
            "# TYPE aster_frames_received_total counter",
            f"aster_frames_received_total {ingest.frames}",
            "# TYPE aster_messages_received_total counter",
            f"aster_messages_received_total {ingest.messages}",
            "# TYPE aster_events_received_total counter",
            f"aster_events_received_total {ingest.events}",
            "# TYPE aster_protocol_errors_total counter",
            f"aster_protocol_errors_total {ingest.errors}",
            "# TYPE aster_token_counts_invalid_total counter",
            f"aster_token_counts_invalid_total {ingest.bad_token_counts}",
            "# TYPE aster_duplicates_skipped_total counter",
            f"aster_duplicates_skipped_total {ingest.duplicates}",
            "# TYPE aster_agent_refusals_total counter",
            f"aster_agent_refusals_total {ingest.refused}",
            "# TYPE aster_auth_refusals_total counter",
            f"aster_auth_refusals_total {studio.auth.refused}",
            "# TYPE aster_throttled_seconds_total counter",
            f"aster_throttled_seconds_total {ingest.throttled_s:.6f}",
            "# TYPE aster_replies_dropped_total counter",
            f"aster_replies_dropped_total {dropped_replies}",
            "# TYPE aster_stream_events_dropped_total counter",
            f"aster_stream_events_dropped_total {studio.stream_dropped}",
            "# TYPE aster_write_queue_depth gauge",
            f"aster_write_queue_depth {studio.pipeline.depth if studio.pipeline else 0}",
        ]
        if pipe is not None:
            lines += [
                "# TYPE aster_events_stored_total counter",
                f"aster_events_stored_total {pipe.events_written}",
                "# TYPE aster_store_commits_total counter",
                f"aster_store_commits_total {pipe.commits}",
                "# TYPE aster_store_commit_seconds_total counter",
                f"aster_store_commit_seconds_total {pipe.commit_seconds:.6f}",
                "# TYPE aster_store_failed_ops_total counter",
                f"aster_store_failed_ops_total {pipe.failed_ops}",
                "# TYPE aster_store_unavailable_seconds_total counter",
                f"aster_store_unavailable_seconds_total {pipe.unavailable_seconds:.6f}",
                "# TYPE aster_store_unavailable gauge",
                f"aster_store_unavailable {1 if pipe.unavailable_since else 0}",
            ]
        lines += [
            "# TYPE aster_live_events_published_total counter",
            f"aster_live_events_published_total {studio.bus.published}",
        ]
        if studio.cluster is not None:
            cluster = studio.cluster.describe()
            lines += [
                "# TYPE aster_cluster_connected gauge",
                f"aster_cluster_connected {1 if cluster['connected'] else 0}",
                "# TYPE aster_cluster_peers gauge",
                f"aster_cluster_peers {len(cluster['peers'])}",
                "# TYPE aster_cluster_events_received_total counter",
                f"aster_cluster_events_received_total {cluster['received_events']}",
                "# TYPE aster_cluster_events_filled_total counter",
                f"aster_cluster_events_filled_total {cluster['filled_events']}",
                "# TYPE aster_cluster_messages_dropped_total counter",
                f"aster_cluster_messages_dropped_total {cluster['dropped_messages']}",
            ]
        return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")

    return api
