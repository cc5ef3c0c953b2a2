"""One writer per database, whatever path reaches the file (store/_lock.py)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aster_studio.errors import DatabaseInUse
from aster_studio.store import SqliteStore

pytestmark = pytest.mark.skipif(os.name == "nt", reason="Windows has no flock: nothing is locked")


@pytest.fixture
def open_db(tmp_path: Path) -> Iterator[Path]:
    """A database a Studio's store holds open, in a folder of its own."""
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "studio.db"
    store = SqliteStore(path)
    store.open()
    yield path
    store.close()


def symlink(path: Path, link: Path) -> None:
    link.symlink_to(path)


def hard_link(path: Path, link: Path) -> None:
    link.hardlink_to(path)


@pytest.mark.parametrize("make", [symlink, hard_link], ids=["symlink", "hard link"])
def test_another_path_to_an_open_database_is_refused(
    open_db: Path, tmp_path: Path, make: Callable[[Path, Path], None]
) -> None:
    other = tmp_path / "elsewhere" / "studio.db"
    other.parent.mkdir()
    make(open_db, other)
    with pytest.raises(DatabaseInUse, match="in use by another Aster Studio"):
        SqliteStore(other).open()
    with pytest.raises(DatabaseInUse, match="in use by another Aster Studio"):
        SqliteStore(other).check_startable()


def test_a_symlink_names_the_process_that_holds_the_database(open_db: Path, tmp_path: Path) -> None:
    link = tmp_path / "link.db"
    link.symlink_to(open_db)
    with pytest.raises(DatabaseInUse, match=f"\\(pid {os.getpid()}\\)"):
        SqliteStore(link).open()


def test_another_path_opens_once_the_holder_closed(tmp_path: Path) -> None:
    path = tmp_path / "studio.db"
    link = tmp_path / "link.db"
    first = SqliteStore(path)
    first.open()
    link.hardlink_to(path)
    first.close()
    second = SqliteStore(link)
    second.open()
    second.close()
