"""The `aster-studio` command: `serve` runs a Studio, `demo` runs one with simulated agents."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import socket
import sys

import uvicorn

from . import __version__
from .app import create_app
from .config import DEFAULT_PORT, Settings
from .errors import StudioError
from .ws_protocol import AgentWebSocketProtocol

log = logging.getLogger("aster_studio")


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="address to bind (env ASTER_STUDIO_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help=f"port, 0 for any free one (env ASTER_STUDIO_PORT, {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--db", help="sqlite:///path or a file path (env ASTER_STUDIO_DB, default per-user file)"
    )
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aster-studio", description="Watch and steer your AI agents while they run."
    )
    parser.add_argument("--version", action="version", version=f"aster-studio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Studio server and console")
    _add_server_options(serve)
    serve.add_argument(
        "--stall-after", type=float, help="seconds a working agent may be silent (default 60)"
    )
    demo = commands.add_parser("demo", help="run a Studio with simulated agents streaming to it")
    _add_server_options(demo)
    demo.add_argument("--agents", type=int, default=5, help="how many simulated agents")
    return parser


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket ourselves so the real port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(settings: Settings, *, ready_message: bool = True) -> None:
    """Run the Studio until SIGINT/SIGTERM; stored data is flushed before it returns."""
    app = create_app(settings)
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    if ready_message:
        print(
            f"Aster Studio {__version__} listening on http://{shown}:{port}\n"
            f"  console:  http://{shown}:{port}/studio/\n"
            f"  agents:   ws://{shown}:{port}/v1/remote-agents/connect\n"
            f"  data:     {app.state.studio.store.describe()}",
            flush=True,
        )
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        ws=AgentWebSocketProtocol,
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=settings.per_message_deflate,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal after its graceful shutdown; a SIGTERM that was handled
    # cleanly (everything flushed) should end the process with status 0, not death by signal.
    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        asyncio.run(server.serve(sockets=[sock]))
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            db=args.db,
            log_level=args.log_level,
            stall_after_s=getattr(args, "stall_after", None),
        )
        if args.command == "demo":
            from .demo import run_demo

            run_demo(settings, agents=args.agents)
        else:
            serve(settings)
    except StudioError as exc:
        print(f"aster-studio: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"aster-studio: cannot listen: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
