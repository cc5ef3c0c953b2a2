"""Storage: the Store interface, its write operations, and the backends."""

from ._base import (
    AddAudit,
    AgentState,
    CommitResult,
    CommittedEvent,
    DeleteAgent,
    DeletePrice,
    EndSession,
    InsertEvent,
    MarkProducer,
    SaveRequest,
    SetPrice,
    Store,
    UpsertAgent,
    UpsertSession,
    WriteOp,
)
from .sqlite import SqliteStore

__all__ = [
    "AddAudit",
    "AgentState",
    "CommitResult",
    "CommittedEvent",
    "DeleteAgent",
    "DeletePrice",
    "EndSession",
    "InsertEvent",
    "MarkProducer",
    "SaveRequest",
    "SetPrice",
    "SqliteStore",
    "Store",
    "UpsertAgent",
    "UpsertSession",
    "WriteOp",
]
