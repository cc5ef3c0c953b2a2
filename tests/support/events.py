"""Events as the ingest service hands them to the store: numbered rows (`StoredEvent`)."""

from __future__ import annotations

import itertools
from typing import Any

import orjson

from aster_studio.models import StoredEvent


class Numberer:
    """Number events in order, as the ingest service does on the event loop."""

    def __init__(self, first: int = 1) -> None:
        self._ids = itertools.count(first)

    def event(
        self,
        agent: str = "a",
        etype: str = "x",
        ts: int = 1000,
        *,
        session: str | None = None,
        severity: str | None = None,
        channel: str = "progress",
        payload: Any = None,
    ) -> StoredEvent:
        body = payload if payload is not None else {"event_type": etype}
        return StoredEvent(
            next(self._ids), agent, session, channel, etype, severity, ts, None, orjson.dumps(body)
        )
