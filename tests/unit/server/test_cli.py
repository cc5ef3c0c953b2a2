"""The command line's refusals: one line on stderr and exit 2, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from aster_studio.cli import main


@pytest.mark.parametrize("command", [["console-token"], ["keys", "list"]], ids=" ".join)
def test_a_file_that_is_not_a_database_is_refused_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    db = tmp_path / "notes.db"
    text = b"plain text, not SQLite\n" * 200
    db.write_bytes(text)
    assert main([*command, "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"aster-studio: cannot open database {db}: ")
    assert "not a database" in err
    assert db.read_bytes() == text
