"""The `aster-studio` command: `serve` runs a Studio, `demo` runs one with simulated agents."""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import signal
import socket
import sys
import time
from collections.abc import Coroutine
from typing import Any

import uvicorn
from uvicorn.lifespan.on import LifespanOn

from aster_studio_sdk._native import describe as describe_code

from . import __version__, heap
from .agent_socket import agent_socket_factory
from .app import Studio, create_app
from .auth import CONSOLE_SECRET, hash_secret, new_agent_key, new_console_token
from .config import DEFAULT_PORT, Settings
from .errors import ConfigError, DatabaseInUse, DatabaseInUseElsewhere, StoreError, StudioError
from .http_protocol import head_limited_http
from .store import store_for

log = logging.getLogger("aster_studio")


def _add_server_options(parser: argparse.ArgumentParser, db_default: str = "per-user file") -> None:
    parser.add_argument("--host", help="address to bind (env ASTER_STUDIO_HOST, default 127.0.0.1)")
    parser.add_argument(
        "--port", type=int, help=f"port, 0 for any free one (env ASTER_STUDIO_PORT, {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--db",
        help="sqlite:///path, a file path, or postgresql://user@host:port/dbname "
        f"(env ASTER_STUDIO_DB, default {db_default})",
    )
    parser.add_argument(
        "--loop",
        choices=["auto", "uvloop", "asyncio"],
        help="event loop (env ASTER_STUDIO_LOOP; auto: uvloop when installed, as by default)",
    )
    parser.add_argument(
        "--log-level", default="info", choices=["debug", "info", "warning", "error"]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aster-studio", description="Watch and steer your AI agents while they run."
    )
    parser.add_argument("--version", action="version", version=f"aster-studio {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the Studio server and console")
    _add_server_options(serve)
    serve.add_argument(
        "--cluster",
        metavar="REDIS_URL",
        help="run as one of several Studios on the same PostgreSQL --db, sharing live events, "
        "presence and controls through this Redis (env ASTER_STUDIO_CLUSTER)",
    )
    serve.add_argument(
        "--stall-after",
        type=float,
        help="seconds a working agent may be silent (env ASTER_STUDIO_STALL_AFTER, default 60)",
    )
    serve.add_argument(
        "--console-token",
        help="the token people log in with (env ASTER_STUDIO_CONSOLE_TOKEN); turns auth on",
    )
    serve.add_argument(
        "--insecure",
        action="store_true",
        help="allow binding a non-loopback address with no credential configured",
    )
    serve.add_argument("--certfile", help="TLS certificate (PEM): serve https:// and wss://")
    serve.add_argument("--keyfile", help="TLS private key (PEM)")
    serve.add_argument(
        "--ws-deflate",
        action="store_true",
        help="offer permessage-deflate to agents (off by default: see docs/benchmarks.md)",
    )
    keys = commands.add_parser("keys", help="manage agent keys").add_subparsers(
        dest="keys_command", required=True
    )
    create = keys.add_parser("create", help="create a key (printed once)")
    create.add_argument("--name", required=True, help="what the key is for")
    create.add_argument(
        "--agents", default="*", help="agent ids it may write for (a glob, default *)"
    )
    keys.add_parser("list", help="list keys (never the keys themselves)")
    revoke = keys.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    for sub in keys.choices.values():
        sub.add_argument("--db", help="the Studio's database (as for serve)")
    token = commands.add_parser("console-token", help="generate a new console token")
    token.add_argument("--db", help="the Studio's database (as for serve)")
    demo = commands.add_parser("demo", help="run a Studio with simulated agents streaming to it")
    _add_server_options(demo, db_default="a new temporary one, deleted at exit")
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


class _Server(uvicorn.Server):
    """uvicorn's server, whose second Ctrl-C still runs the app's shutdown.

    A second SIGINT makes uvicorn stop waiting for connections (good: the user is in a hurry),
    and skip the app's shutdown too: the loop's end then cancelled the app, whose `finally`
    still flushed the storage, and uvicorn logged that CancelledError as a traceback. The
    flush is bounded by its own timeout, so it runs here as after one signal.
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await super().shutdown(sockets)
        lifespan = self.lifespan
        if (
            self.force_exit
            and isinstance(lifespan, LifespanOn)
            and not lifespan.shutdown_event.is_set()
        ):
            log.warning("interrupted again: not waiting for connections; storage is still flushed")
            await lifespan.shutdown()


def _has_credentials(studio: Studio) -> bool:
    """Whether any credential exists (read before serving, so auth state is known)."""
    studio.store.open()
    try:
        studio.auth.refresh()
    finally:
        studio.store.close()
    return studio.auth.enabled


def serve(settings: Settings, *, ready_message: bool = True) -> None:
    """Run the Studio until SIGINT/SIGTERM; stored data is flushed before it returns."""
    app = create_app(settings, after_start=heap.settle)
    studio = app.state.studio
    if not settings.loopback and not settings.insecure and not _has_credentials(studio):
        raise ConfigError(
            f"refusing to listen on {settings.host} with no credential configured: anyone who "
            "can reach it could read and steer your agents. Create an agent key "
            "(`aster-studio keys create --name ...`) or set --console-token, or pass --insecure."
        )
    studio.store.check_startable()  # another Studio on it, a newer schema: say so, stop
    sock = bind(settings.host, settings.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    http, ws = ("https", "wss") if settings.tls else ("http", "ws")
    if ready_message:
        print(
            f"Aster Studio {__version__} listening on {http}://{shown}:{port}\n"
            f"  console:  {http}://{shown}:{port}/studio/\n"
            f"  agents:   {ws}://{shown}:{port}/v1/remote-agents/connect\n"
            f"  data:     {studio.store.describe()}\n"
            f"  code:     {describe_code()}",
            flush=True,
        )
    config = uvicorn.Config(
        app,
        log_level=settings.log_level,
        access_log=False,
        http=head_limited_http(settings.handshake_timeout_s),
        ws=agent_socket_factory(studio),  # type: ignore[arg-type]
        ws_max_size=settings.max_frame_bytes,
        ws_ping_interval=settings.ws_ping_interval_s,
        ws_ping_timeout=settings.ws_ping_timeout_s,
        ws_per_message_deflate=settings.per_message_deflate,
        timeout_graceful_shutdown=int(settings.shutdown_timeout_s),
        lifespan="on",
        ssl_certfile=settings.certfile,
        ssl_keyfile=settings.keyfile,
    )
    # After the Config: it (re)configures uvicorn's loggers.
    logging.getLogger("uvicorn.error").addFilter(RedactTokens())
    server = _Server(config)

    # uvicorn re-raises the stop signal after its graceful shutdown. A SIGTERM or Ctrl-C that was
    # handled cleanly (everything flushed) ends the process with status 0, not death by signal
    # or KeyboardInterrupt; a Ctrl-C before serving began still interrupts.
    def interrupt(signum: int, frame: object) -> None:
        if not server.started:
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, lambda *_: None)
    previous_int = signal.signal(signal.SIGINT, interrupt)
    try:
        run_loop(server.serve(sockets=[sock]), settings.event_loop)
    finally:
        signal.signal(signal.SIGTERM, previous)
        signal.signal(signal.SIGINT, previous_int)


class RedactTokens(logging.Filter):
    """Hide credentials in the paths uvicorn logs: a client that cannot set headers sends its
    agent key as `?token=`, and a refused handshake was logged with it in clear."""

    _TOKEN = re.compile(r"((?:^|[?&])(?:token|access_token)=)[^&\s\"]+", re.IGNORECASE)

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                self._TOKEN.sub(r"\1[redacted]", a) if isinstance(a, str) else a
                for a in record.args
            )
        elif isinstance(record.msg, str):
            record.msg = self._TOKEN.sub(r"\1[redacted]", record.msg)
        return True


def run_loop(main: Coroutine[Any, Any, None], kind: str = "auto") -> None:
    """Run `main` on uvloop when asked for or installed (`auto`), else on asyncio's loop.

    uvloop halves the CPU the WebSocket stack spends per frame when frames arrive one at a
    time (docs/benchmarks.md); the server behaves the same on either.
    """
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                main.close()
                raise ConfigError("--loop uvloop: uvloop is not installed") from None
        else:
            uvloop.run(main)
            return
    asyncio.run(main)


def admin(args: argparse.Namespace) -> int:
    """Run `keys ...` and `console-token` against the database directly."""
    settings = Settings.from_env(db=args.db)
    store = store_for(settings)
    try:
        store.open()
    except DatabaseInUseElsewhere as exc:
        # Its write-ahead log is named after its own path: writes from here would miss it.
        raise StoreError(f"{exc}; or run this command with the path that Studio was given") from exc
    except DatabaseInUse:  # a running Studio writes to it: only our own connections then
        store.open_beside_studio()
    now = int(time.time() * 1000)
    try:
        if args.command == "console-token":
            token = new_console_token()
            store.set_secret(CONSOLE_SECRET, hash_secret(token), now)
            print(
                f"New console token (shown once; a running Studio accepts it within 1 s):\n{token}"
            )
            return 0
        if args.keys_command == "create":
            key, record = new_agent_key(args.name, args.agents, now)
            store.add_key(record)
            print(
                f"Created agent key {record.id} for agents matching {record.pattern!r}.\n"
                f"It is shown once; give it to the agent as ASTER_STUDIO_TOKEN:\n{key}"
            )
            if store.get_secret(CONSOLE_SECRET) is None:
                print("Auth is now on: the Studio prints a console token at its next start.")
            return 0
        if args.keys_command == "list":
            rows = store.agent_keys()
            if not rows:
                print("no agent keys: the Studio runs open on loopback")
            for k in rows:
                state = "revoked" if k.revoked_at else "active"
                print(f"{k.id}  {state:8}  agents={k.pattern!r}  name={k.name!r}")
            return 0
        if store.revoke_key(args.key_id, now):
            print(f"revoked {args.key_id}")
            return 0
        print(f"aster-studio: no active key {args.key_id!r}", file=sys.stderr)
        return 1
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(args, "log_level", "warning").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command in ("keys", "console-token"):
            return admin(args)
        settings = Settings.from_env(
            host=args.host,
            port=args.port,
            db=args.db,
            cluster=getattr(args, "cluster", None),
            log_level=args.log_level,
            event_loop=args.loop,
            stall_after_s=getattr(args, "stall_after", None),
            console_token=getattr(args, "console_token", None),
            insecure=getattr(args, "insecure", None) or None,
            certfile=getattr(args, "certfile", None),
            keyfile=getattr(args, "keyfile", None),
            per_message_deflate=getattr(args, "ws_deflate", None) or None,
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
