"""The change event: what every later stage (buffer, drift, flush) works with. Pure data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple

# Builds a NamedTuple from a tuple of its fields without the Python-level __new__ NamedTuple
# generates: Version, Origin and Record are made for every message.
new_tuple = tuple.__new__


class Op(StrEnum):
    CREATE = "c"
    UPDATE = "u"
    DELETE = "d"
    READ = "r"  # snapshot read
    TRUNCATE = "t"


@dataclass(frozen=True, slots=True, order=True)
class TableId:
    schema: str
    name: str
    # Looked up in dicts several times per event: the hash is computed once, not in Python each time.
    _hash: int = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_hash", hash((self.schema, self.name)))

    def __hash__(self) -> int:
        return self._hash

    def __str__(self) -> str:
        return f"{self.schema}.{self.name}"


# The source's DDL log (sql/schema_capture.sql): its events feed schema drift, never a replica table.
DDL_TABLE = TableId("cdc", "schema_ddl")


class Version(NamedTuple):
    """Where a change stands in the source's commit order.

    pgoutput streams whole transactions in commit order; Debezium's `source.sequence` is
    [LSN of the last commit streamed before this transaction, LSN of this change]. Compared as a
    pair it orders events by commit, then by position inside the transaction, whereas `source.lsn`
    alone orders by where a change was written (a transaction that wrote earlier may commit later).
    A NamedTuple: made for every message, and compared in C.
    """

    commit_lsn: int
    lsn: int


ZERO = Version(0, 0)


@dataclass(frozen=True, slots=True)
class Column:
    """A column of a captured table, as the event schema describes it."""

    name: str
    pg_type: str  # the warehouse column type, SQL text (e.g. "numeric(10,2)", "integer[]")
    optional: bool
    varlena: bool  # may arrive as Debezium's unchanged-TOAST placeholder
    # non-null JSON value -> PostgreSQL input text for pg_type (not yet escaped for COPY)
    encode: Callable[[Any], str] = field(default=str, compare=False, repr=False)
    # The warehouse column it is written into, when that is not `name`: schema drift keeps an
    # incompatibly retyped column's old values and lands new ones in a new column.
    stored_as: str | None = None

    @property
    def stored(self) -> str:
        return self.stored_as or self.name


@dataclass(frozen=True, slots=True)
class TableSchema:
    table: TableId
    columns: tuple[Column, ...]
    key: tuple[str, ...]  # primary-key column names; empty for a table without one

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)


class Origin(NamedTuple):
    """Where the message came from in Kafka (for offsets and the dead-letter table)."""

    topic: str
    partition: int
    offset: int


@dataclass(slots=True)
class ChangeEvent:
    op: Op
    table: TableId
    schema: TableSchema
    key: tuple[Any, ...] | None  # primary-key values in schema.key order; None without a key
    before: dict[str, Any] | None  # raw JSON values, converted only when (if) the row is written
    after: dict[str, Any] | None
    version: Version
    commit_ts_ms: int | None
    origin: Origin
    size: int  # bytes of the Kafka message, for the buffer's byte limit
    # The message, kept for the dead-letter table should the warehouse refuse the row. The value
    # is kept as its payload part plus the schema prefix every message of the table shares: a
    # whole message is mostly schema, and a buffer holds tens of thousands of them.
    raw_key: bytes | None = None
    raw_payload: bytes | None = None
    raw_prefix: bytes = b""
    # A primary-key change arrives as delete(old key) + create(new key). The create names the old
    # key, whose row holds any unchanged TOASTed value the create only has a placeholder for.
    old_key: tuple[Any, ...] | None = None
    moves_away: bool = False  # a delete that is the first half of a key change
    prior: dict[str, Any] | None = None  # for a delete: the buffered row image it replaced
    # Debezium's transaction.data_collection_order: the change's place among its transaction's
    # changes of this table. Rows one statement wrote in one WAL record (COPY's multi-insert) share
    # an LSN, so only this tells them apart; None without transaction metadata (snapshot reads).
    order: int | None = None
    # Decoded by the compiled fast path (cdc/fastpath.py): the staging row's columns, COPY text
    # ready, and no row images (before/after stay None until materialize() reads them from
    # raw_payload, for the rare stage that needs them).
    staged: str | None = None

    @property
    def raw_value(self) -> bytes | None:
        """The Kafka message value, byte for byte."""
        if self.raw_payload is None:
            return None
        return self.raw_prefix + self.raw_payload + b"}" if self.raw_prefix else self.raw_payload
