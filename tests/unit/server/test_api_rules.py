"""Small rules the API applies: what counts as an error, safe CSV cells, loopback names."""

from __future__ import annotations

import pytest

from aster_studio.api.events import _cell
from aster_studio.api.guard import loopback_host
from aster_studio.models import counts_as_error


@pytest.mark.parametrize(
    ("event_type", "severity", "counted"),
    [
        ("error", None, True),
        ("Error", "fatal", True),  # types match whatever their case, as the filters do
        ("ERROR", "CRITICAL", True),
        ("error", "Warning", False),
        ("error", "info", False),
        ("tool:error", None, False),
        ("errors", None, False),
    ],
)
def test_what_counts_as_an_error(event_type: str, severity: str | None, counted: bool) -> None:
    assert counts_as_error(event_type, severity) is counted


def test_csv_cells_that_a_spreadsheet_would_run_are_quoted() -> None:
    assert _cell('=HYPERLINK("http://evil.example","x")').startswith("'=")
    assert [_cell(c) for c in ("+1", "-1", "@x", "\tx")] == ["'+1", "'-1", "'@x", "'\tx"]
    assert [_cell(c) for c in ("agent-1", "", "{}")] == ["agent-1", "", "{}"]


@pytest.mark.parametrize(
    ("host", "ok"),
    [
        (None, True),
        (b"127.0.0.1:3032", True),
        (b"LOCALHOST:3032", True),
        (b"studio.localhost", True),
        (b"[::1]:3032", True),
        (b"attacker.example:3032", False),
        (b"127.0.0.1.nip.io:3032", False),
        (b"localhost.attacker.example", False),
    ],
)
def test_loopback_names(host: bytes | None, ok: bool) -> None:
    headers = {} if host is None else {b"host": host}
    assert loopback_host(headers) is ok
