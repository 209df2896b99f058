"""Warehouse targets. Each target implements the `Warehouse` protocol; PostgreSQL is the first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

from cdc.buffer import TableBatch
from cdc.events import Origin

TopicPartition = tuple[str, int]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    origin: Origin
    key: bytes | None
    value: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class StoredLetter:
    """A row of the dead-letter table."""

    id: int
    origin: Origin
    key: bytes | None
    value: bytes | None
    reason: str
    failed_at: datetime
    replayed_at: datetime | None


@dataclass(slots=True)
class Flush:
    """Everything one warehouse transaction stores: rows, dead letters, and the offsets after them."""

    tables: list[TableBatch]
    offsets: dict[TopicPartition, int]  # next offset to read, per partition
    dead: list[DeadLetter] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class FlushResult:
    rows: int  # row images written (after compaction)
    dead: int  # messages sent to the dead-letter table (given + found during the flush)
    tables: int
    dead_origins: tuple[Origin, ...] = ()  # which messages those were


class Warehouse(Protocol):
    def prepare(self) -> None: ...

    def apply(self, flush: Flush) -> FlushResult: ...

    def stored_offsets(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...
