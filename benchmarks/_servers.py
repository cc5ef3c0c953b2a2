"""Servers the benchmark launches in a subprocess besides `aster-studio serve`.

    python -m benchmarks._servers raw [--uvloop]       the bare WebSocket stack: receive + parse
    python -m benchmarks._servers studio --db P [--deflate]
        the Studio through `aster_studio.cli.serve` with settings the CLI does not expose
        (`per_message_deflate`)

Each prints `listening on http://127.0.0.1:PORT` as `aster-studio serve` does.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import uvicorn

from aster_studio.cli import bind, serve
from aster_studio.config import Settings

PONG = '{"type":"pong"}'


async def raw_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accept WebSockets; parse every text frame with orjson; answer `ping` so clients can sync."""
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
    loads = orjson.loads
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        msg = loads(message.get("text") or message.get("bytes") or b"null")
        if type(msg) is dict and msg.get("type") == "ping":
            await send({"type": "websocket.send", "text": PONG})


def run_raw(settings: Settings, *, use_uvloop: bool = False) -> None:
    """Serve `raw_app` with the transport settings `aster-studio serve` uses.

    `aster-studio serve` runs uvicorn under `asyncio.run`, which bypasses uvicorn's loop setup,
    so it gets the standard asyncio loop; `use_uvloop` shows what uvloop would change.
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
    if use_uvloop:
        import uvloop

        uvloop.run(server.serve(sockets=[sock]))
    else:
        asyncio.run(server.serve(sockets=[sock]))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks._servers")
    parser.add_argument("kind", choices=["raw", "studio"])
    parser.add_argument("--db", default="")
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--uvloop", action="store_true")
    args = parser.parse_args()
    settings = Settings(
        host="127.0.0.1",
        port=0,
        db=args.db,
        log_level="warning",
        per_message_deflate=args.deflate,
    )
    if args.kind == "raw":
        run_raw(settings, use_uvloop=args.uvloop)
    else:
        serve(settings)


if __name__ == "__main__":
    main()
