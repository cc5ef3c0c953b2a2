"""Records as table rows and back, where both backends store them alike."""

from __future__ import annotations

from typing import Any

import orjson

from ..models import RequestRecord, Usage


def _json(value: Any) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def request_row(r: RequestRecord) -> tuple[Any, ...]:
    """A control request's row of the `requests` table, its columns in their order."""
    return (
        r.id,
        r.kind,
        r.agent_id,
        r.session_id,
        r.key,
        r.status,
        r.created_at,
        r.expires_at,
        _json(r.request),
        _json(r.response),
        r.decided_by,
        r.decided_at,
        r.delivered_at,
        r.acknowledged_at,
        _json(r.agent_response),
        r.event_cursor,
    )


def request_of(row: tuple[Any, ...]) -> RequestRecord:
    """The control request a row of `request_row`'s columns holds."""
    return RequestRecord(
        row[0],
        row[1],
        row[2],
        row[3],
        row[4],
        row[5],
        row[6],
        row[7],
        orjson.loads(row[8]),
        orjson.loads(row[9]) if row[9] is not None else None,
        row[10],
        row[11],
        row[12],
        row[13],
        orjson.loads(row[14]) if row[14] is not None else None,
        row[15],
    )


# The usage of a range of events, as `usage_of` reads its rows (`%s` placeholders: SQLite's
# store puts its own).
USAGE_OF_EVENTS = (
    "SELECT event_id, agent_id, model, input, output, cache_read, cache_creation, reasoning, "
    "cost "
    "FROM usage WHERE event_id BETWEEN %s AND %s ORDER BY event_id"
)


def usage_of(row: tuple[Any, ...]) -> tuple[int, str, Usage]:
    """(event id, agent id, usage) of a row `USAGE_OF_EVENTS` read."""
    return row[0], row[1], Usage(*row[2:])
