"""Warehouse targets. Each target implements the `Warehouse` protocol; PostgreSQL is the first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from cdc.buffer import TableBatch
from cdc.events import Origin, TableId, Version

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
    # `cdc dlq replay`: the dead-letter id of each message replayed, marked replayed in the flush's
    # transaction. Keyless tables apply these below their high-water mark, on purpose.
    replaying: dict[Origin, int] = field(default_factory=dict)


class Hold(NamedTuple):
    offset: int  # the partition's first message not applied: the stored offset stops there
    table: TableId


@dataclass(slots=True)
class Progress:
    """What one flush applied to one warehouse table: events by op (Op's letter, counted before
    compaction), and the newest change's position and source commit time."""

    ops: dict[str, int] = field(default_factory=dict)
    newest: Version | None = None
    newest_ts_ms: int | None = None

    def add(self, ops: dict[str, int], version: Version, ts_ms: int | None) -> None:
        for op, count in ops.items():
            self.ops[op] = self.ops.get(op, 0) + count
        if self.newest is None or version > self.newest:
            self.newest, self.newest_ts_ms = version, ts_ms


@dataclass(frozen=True, slots=True)
class FlushResult:
    rows: int  # rows the warehouse changed
    dead: int  # messages sent to the dead-letter table (given + found during the flush)
    tables: int
    dead_origins: tuple[Origin, ...] = ()  # which messages those were
    skipped: int = 0  # events whose change the warehouse already held (a replay, or an older version)
    # Tables held by their schema policy (halt): partition -> the first offset not applied, where
    # the stored offset stops; the loop reads the partition again from there once accepted.
    held: dict[TopicPartition, Hold] = field(default_factory=dict)
    schema_changes: int = 0  # schema changes recorded (and alerts queued) by this flush
    # Per warehouse table (schema.table): the events applied and the newest change.
    progress: dict[str, Progress] = field(default_factory=dict)


class Warehouse(Protocol):
    def prepare(self) -> None: ...

    def apply(self, flush: Flush) -> FlushResult: ...

    def check_names(self, tables: list[TableId]) -> None: ...

    def held_tables(self, tables: list[TableId]) -> set[TableId]: ...

    def stored_offsets(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]: ...

    def close(self) -> None: ...
