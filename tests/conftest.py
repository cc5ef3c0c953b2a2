"""Shared fixtures: a real Studio server subprocess on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import StudioProcess

# SDK bugs must fail tests (the demo and browser tests run the SDK too), not be logged and counted
# as they are in users' programs. Subprocesses inherit it.
os.environ.setdefault("ASTER_STUDIO_SDK_STRICT", "1")


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[StudioProcess]:
    """A fresh Studio with its own SQLite file; stopped gracefully after the test."""
    server = StudioProcess(tmp_path / "studio.db").start()
    try:
        yield server
    finally:
        server.stop()
