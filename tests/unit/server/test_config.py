"""Server settings from the environment, the event loop choice and what runs at start."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from aster_studio.app import create_app
from aster_studio.cli import run_loop
from aster_studio.config import Settings
from aster_studio.errors import ConfigError


def test_event_loop_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings.from_env().event_loop == "auto"
    monkeypatch.setenv("ASTER_STUDIO_LOOP", "asyncio")
    assert Settings.from_env().event_loop == "asyncio"
    monkeypatch.setenv("ASTER_STUDIO_LOOP", "trio")
    with pytest.raises(ConfigError, match="event loop must be one of auto, uvloop, asyncio"):
        Settings.from_env()


def test_stream_buffer_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTER_STUDIO_STREAM_BUFFER", "50000")
    settings = Settings.from_env(db=str(tmp_path / "studio.db"))
    sub = create_app(settings).state.studio.bus.subscribe()
    assert sub.capacity == 50_000
    monkeypatch.setenv("ASTER_STUDIO_STREAM_BUFFER", "0")
    with pytest.raises(ConfigError, match="ASTER_STUDIO_STREAM_BUFFER must be at least 1"):
        Settings.from_env()


def test_stream_buffer_bytes_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTER_STUDIO_STREAM_BUFFER_BYTES", str(64 << 20))
    settings = Settings.from_env(db=str(tmp_path / "studio.db"))
    sub = create_app(settings).state.studio.bus.subscribe()
    assert sub.max_bytes == 64 << 20
    monkeypatch.setenv("ASTER_STUDIO_STREAM_BUFFER_BYTES", "1000")
    with pytest.raises(ConfigError, match="BUFFER_BYTES must be at least 65536"):
        Settings.from_env()


@pytest.mark.parametrize("kind", ["auto", "uvloop", "asyncio"])
def test_run_loop_runs_on_the_loop_asked_for(kind: str) -> None:
    seen: list[str] = []

    async def main() -> None:
        seen.append(type(asyncio.get_running_loop()).__module__)

    run_loop(main(), kind)
    expected = "asyncio" if kind == "asyncio" else "uvloop"
    assert seen and seen[0].split(".")[0] == expected


async def test_after_start_runs_once_started_and_its_undo_before_the_stop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    def after_start() -> Callable[[], None]:
        # Called after start: the store was opened and event ids reserved from it.
        seen.append(f"started at id {app.state.studio.ingest.next_event_id}")
        return lambda: seen.append("undone")

    app = create_app(Settings(db=str(tmp_path / "studio.db")), after_start=after_start)
    studio = app.state.studio
    stop = studio.stop

    async def stopping() -> None:
        seen.append("stopping")
        await stop()

    monkeypatch.setattr(studio, "stop", stopping)
    async with app.router.lifespan_context(app):
        assert seen == ["started at id 1"]
    assert seen == ["started at id 1", "undone", "stopping"]
