"""Storage: the Store interface, its write operations, and the backends."""

from ._base import (
    AgentState,
    CommitResult,
    CommittedEvent,
    DeleteAgent,
    DeletePrice,
    EndSession,
    InsertEvent,
    MarkProducer,
    SetPrice,
    Store,
    UpsertAgent,
    UpsertSession,
    WriteOp,
)
from .sqlite import SqliteStore

__all__ = [
    "AgentState",
    "CommitResult",
    "CommittedEvent",
    "DeleteAgent",
    "DeletePrice",
    "EndSession",
    "InsertEvent",
    "MarkProducer",
    "SetPrice",
    "SqliteStore",
    "Store",
    "UpsertAgent",
    "UpsertSession",
    "WriteOp",
]
