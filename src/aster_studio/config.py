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


def sqlite_path(db: str) -> Path:
    """Turn `sqlite:///path`, `sqlite:path` or a plain path into a filesystem path."""
    if db.startswith("sqlite:///"):
        return Path("/" + db[len("sqlite:///") :].lstrip("/"))
    if db.startswith("sqlite://"):
        return Path(db[len("sqlite://") :])
    if db.startswith("sqlite:"):
        return Path(db[len("sqlite:") :])
    if "://" in db:
        raise ConfigError(f"unsupported database URL {db!r}: use sqlite:///path or a file path")
    return Path(db).expanduser()


@dataclass(frozen=True, slots=True)
class Settings:
    """Everything a Studio instance is configured with."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    db: str = ""
    max_frame_bytes: int = 1 << 20
    stall_after_s: float = 60.0
    queue_max_ops: int = 50_000
    writer_batch_max: int = 5_000
    subscriber_buffer: int = 10_000
    outbox_max: int = 1_000
    ws_ping_interval_s: float = 20.0
    ws_ping_timeout_s: float = 20.0
    shutdown_timeout_s: float = 10.0
    synchronous: str = "FULL"
    per_message_deflate: bool = False
    log_level: str = "info"

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
        if "ASTER_STUDIO_STALL_AFTER" in env:
            values["stall_after_s"] = float(env["ASTER_STUDIO_STALL_AFTER"])
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if not 0 <= settings.port <= 65535:
            raise ConfigError(f"port {settings.port} is out of range")
        return settings
