"""Storage: the Store interface, its write operations, and the backends."""

from aster_studio_sdk._native import compiled_path

__path__[:0] = compiled_path(__name__)  # its compiled modules first, when built (`make native`)

from ._base import (
    AddAudit,
    AgentState,
    CommitResult,
    DeleteAgent,
    DeletePrice,
    EditAgent,
    EndSession,
    MarkObserved,
    MarkProducer,
    RecordUsage,
    SaveRequest,
    SetPrice,
    Store,
    UpsertAgent,
    UpsertSession,
    WriteOp,
)
from ._select import store_for
from .sqlite import SqliteStore

__all__ = [
    "AddAudit",
    "AgentState",
    "CommitResult",
    "DeleteAgent",
    "DeletePrice",
    "EditAgent",
    "EndSession",
    "MarkObserved",
    "MarkProducer",
    "RecordUsage",
    "SaveRequest",
    "SetPrice",
    "SqliteStore",
    "Store",
    "UpsertAgent",
    "UpsertSession",
    "WriteOp",
    "store_for",
]
