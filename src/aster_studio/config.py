"""Settings of a Studio server, read from options and the environment."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from platformdirs import user_data_dir

from .errors import ConfigError

DEFAULT_PORT = 3032


def default_db_path() -> Path:
    """Return the per-user SQLite file used when no database is configured."""
    return Path(user_data_dir("aster-studio", appauthor=False)) / "studio.db"


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(db: str) -> bool:
    """Whether `db` names a PostgreSQL database (`postgresql://user@host:port/dbname`)."""
    return db.lower().startswith(POSTGRES_SCHEMES)


def sqlite_path(db: str) -> Path:
    """Turn `sqlite:///path`, `sqlite:path` or a plain path into a filesystem path."""
    if db.startswith("sqlite:///"):
        return Path("/" + db[len("sqlite:///") :].lstrip("/"))
    if db.startswith("sqlite://"):
        return Path(db[len("sqlite://") :])
    if db.startswith("sqlite:"):
        return Path(db[len("sqlite:") :])
    if "://" in db:
        scheme = db.split("://", 1)[0]
        raise ConfigError(
            f"unsupported database URL scheme {scheme!r}: use sqlite:///path, a file path, "
            "or postgresql://user@host:port/dbname"
        )
    return Path(db).expanduser()


EVENT_LOOPS = ("auto", "uvloop", "asyncio")

# Limits an operator may tune without a flag each: (variable, setting, type).
_NUMERIC_ENV: tuple[tuple[str, str, type[int] | type[float]], ...] = (
    ("ASTER_STUDIO_STALL_AFTER", "stall_after_s", float),
    ("ASTER_STUDIO_RATE_LIMIT", "max_messages_per_s", float),
    ("ASTER_STUDIO_RATE_BURST", "message_burst", int),
    ("ASTER_STUDIO_MAX_AGENTS_PER_CONNECTION", "max_agents_per_connection", int),
    ("ASTER_STUDIO_MAX_SESSIONS_PER_CONNECTION", "max_sessions_per_connection", int),
    ("ASTER_STUDIO_MAX_AGENT_CONNECTIONS", "max_agent_connections", int),
    ("ASTER_STUDIO_HANDSHAKE_TIMEOUT", "handshake_timeout_s", float),
    ("ASTER_STUDIO_MAX_FRAME_BYTES", "max_frame_bytes", int),
    ("ASTER_STUDIO_COMMIT_INTERVAL", "commit_interval_s", float),
    ("ASTER_STUDIO_WS_PING_INTERVAL", "ws_ping_interval_s", float),
    ("ASTER_STUDIO_WS_PING_TIMEOUT", "ws_ping_timeout_s", float),
    ("ASTER_STUDIO_STREAM_BUFFER", "subscriber_buffer", int),
    ("ASTER_STUDIO_STREAM_BUFFER_BYTES", "subscriber_buffer_bytes", int),
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Studio instance is configured with."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str = ""
    # A Redis URL: this Studio is one of several on the same PostgreSQL database, sharing
    # live events, agents' presence and controls through it (docs/architecture.md, "Cluster").
    cluster: str | None = None
    max_frame_bytes: int = 1 << 20
    stall_after_s: float = 60.0
    queue_max_ops: int = 50_000
    writer_batch_max: int = 5_000
    commit_interval_s: float = 0.005
    subscriber_buffer: int = 10_000
    subscriber_buffer_bytes: int = 16 << 20
    outbox_max: int = 1_000
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    shutdown_timeout_s: float = 10.0
    synchronous: str = "FULL"
    per_message_deflate: bool = False
    log_level: str = "info"
    event_loop: str = "auto"  # auto (uvloop when installed), uvloop or asyncio
    # access
    console_token: str | None = None
    insecure: bool = False
    certfile: str | None = None
    keyfile: str | None = None
    # per-connection limits on the agent endpoint
    max_messages_per_s: float = 50_000.0
    message_burst: int = 100_000
    max_agents_per_connection: int = 1_000
    max_sessions_per_connection: int = 100_000
    max_agent_connections: int = 20_000
    handshake_timeout_s: float = 30.0

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    @property
    def loopback(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")

    @property
    def db_path(self) -> Path:
        return sqlite_path(self.db) if self.db else default_db_path()

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Build settings from ASTER_STUDIO_* variables, then explicit overrides."""
        env = os.environ
        values: dict[str, object] = {}
        if "ASTER_STUDIO_HOST" in env:
            values["host"] = env["ASTER_STUDIO_HOST"]
        if "ASTER_STUDIO_PORT" in env:
            try:
                values["port"] = int(env["ASTER_STUDIO_PORT"])
            except ValueError as exc:
                raise ConfigError(
                    f"ASTER_STUDIO_PORT must be a number, got {env['ASTER_STUDIO_PORT']!r}"
                ) from exc
        if "ASTER_STUDIO_DB" in env:
            values["db"] = env["ASTER_STUDIO_DB"]
        if env.get("ASTER_STUDIO_CLUSTER"):
            values["cluster"] = env["ASTER_STUDIO_CLUSTER"]
        if "ASTER_STUDIO_LOOP" in env:
            values["event_loop"] = env["ASTER_STUDIO_LOOP"]
        if env.get("ASTER_STUDIO_CONSOLE_TOKEN"):
            values["console_token"] = env["ASTER_STUDIO_CONSOLE_TOKEN"]
        for name, key, kind in _NUMERIC_ENV:
            if name in env:
                try:
                    values[key] = kind(env[name])
                except ValueError as exc:
                    raise ConfigError(f"{name} must be a number, got {env[name]!r}") from exc
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if not 0 <= settings.port <= 65535:
            raise ConfigError(f"port {settings.port} is out of range")
        if settings.event_loop not in EVENT_LOOPS:
            raise ConfigError(
                f"the event loop must be one of {', '.join(EVENT_LOOPS)}, "
                f"got {settings.event_loop!r}"
            )
        if settings.subscriber_buffer < 1:
            raise ConfigError(
                f"ASTER_STUDIO_STREAM_BUFFER must be at least 1, got {settings.subscriber_buffer}"
            )
        if settings.subscriber_buffer_bytes < 1 << 16:
            raise ConfigError(
                "ASTER_STUDIO_STREAM_BUFFER_BYTES must be at least 65536, "
                f"got {settings.subscriber_buffer_bytes}"
            )
        if settings.cluster is not None:
            if not is_postgres(settings.db):
                raise ConfigError(
                    "--cluster needs a PostgreSQL database (--db postgresql://...) that every "
                    "Studio of the cluster shares"
                )
            if not settings.cluster.lower().startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(
                    "--cluster takes a Redis URL (redis://host:6379/0, rediss:// or unix://)"
                )
        if (settings.certfile is None) != (settings.keyfile is None):
            raise ConfigError("TLS needs both --certfile and --keyfile")
        return settings
