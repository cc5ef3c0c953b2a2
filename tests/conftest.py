"""Shared fixtures: a real Studio server subprocess on a free port."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.databases import Databases
from tests.support.server import StudioProcess

# SDK bugs must fail tests (the demo and browser tests run the SDK too), not be logged and counted
# as they are in users' programs. Subprocesses inherit it.
os.environ.setdefault("ASTER_STUDIO_SDK_STRICT", "1")


@pytest.fixture
def new_db(tmp_path: Path) -> Iterator[Databases]:
    """Fresh databases for the test's Studios (SQLite files, or PostgreSQL schemas: BACKEND)."""
    databases = Databases(tmp_path)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture(scope="module")
def module_db(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Databases]:
    """As `new_db`, for a module's shared Studio."""
    databases = Databases(tmp_path_factory.mktemp("db"))
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
def studio_db(new_db: Databases) -> Path | str:
    return new_db("studio")


@pytest.fixture
def studio(studio_db: Path | str) -> Iterator[StudioProcess]:
    """A fresh Studio with its own database; stopped gracefully after the test."""
    server = StudioProcess(studio_db).start()
    try:
        yield server
    finally:
        server.stop()
