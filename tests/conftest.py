"""Shared fixtures: a real Studio server subprocess on a free port."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import StudioProcess


@pytest.fixture
def studio(tmp_path: Path) -> Iterator[StudioProcess]:
    """A fresh Studio with its own SQLite file; stopped gracefully after the test."""
    server = StudioProcess(tmp_path / "studio.db").start()
    try:
        yield server
    finally:
        server.stop()
