"""Storage: the Store interface, its write operations, and the backends."""

from ._base import (
    AddAudit,
    AgentState,
    CommitResult,
    DeleteAgent,
    DeletePrice,
    EndSession,
    MarkProducer,
    RecordUsage,
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
    "DeleteAgent",
    "DeletePrice",
    "EndSession",
    "MarkProducer",
    "RecordUsage",
    "SaveRequest",
    "SetPrice",
    "SqliteStore",
    "Store",
    "UpsertAgent",
    "UpsertSession",
    "WriteOp",
]
