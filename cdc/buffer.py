"""Per-table compaction of change events between two flushes.

For a table with a primary key, only the newest event per key (by source version) is kept: that is
all the warehouse needs to reach the same state. Unchanged-TOAST placeholders in a newer event are
filled from the older image being replaced, so the value survives compaction. A table without a
primary key cannot be compacted (rows have no identity): its events are kept in order.

A primary-key change is a delete of the old key followed by a create of the new one whose
unchanged TOASTed columns are placeholders. The buffer fills them from the old key's image when it
holds one (the delete keeps the image it replaced), and counts key changes whose create has not
arrived yet, so that a flush need not split the pair.

Events the compiled fast path decoded stay in the extension (cdc/fastpath.py's FastRows), compacted
there by the same rules, until a stage needs them as events: a batch holds either only those
(`fast`) or only events, and turns into events (`spill`) as soon as anything else joins it (a
Python-decoded event, a truncate) or a stage asks for its events.

The rows of one batch share one shape. When a table's schema changes, the batch so far is sealed
and a new one starts: an event is staged with the columns its own schema describes (a renamed or
dropped column's values stay with the events that carry them), and the warehouse applies the
batches in order, the schema change between them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cdc.decode.envelope import materialize
from cdc.decode.toast import UNAVAILABLE, is_unavailable
from cdc.events import ChangeEvent, Op, Origin, TableId, TableSchema, Version, new_tuple
from cdc.fastpath import FastRows, FastRun, new_rows

__all__ = ["UNAVAILABLE", "Buffer", "TableBatch"]

_OPS = (Op.CREATE, Op.UPDATE, Op.READ, Op.DELETE)  # the order of FastRows.add's counts


@dataclass(slots=True)
class TableBatch:
    schema: TableSchema
    rows: dict[tuple[Any, ...], ChangeEvent] = field(default_factory=dict)  # keyed tables
    ordered: list[ChangeEvent] = field(default_factory=list)  # tables without a key
    truncated_at: Version | None = None  # rows older than this are removed before rows are applied
    truncated_ts_ms: int | None = None
    truncate_origin: Origin | None = None  # the newest truncate's message
    # Events taken per op (Op's letter), counted before compaction: what `cdc status` and the
    # metrics call applied, as every one of them is applied in effect once the batch is.
    ops: dict[str, int] = field(default_factory=dict)
    fast: FastRows | None = None  # the fast path's events, kept in the extension (nothing else held)

    @property
    def keyed(self) -> bool:
        return bool(self.schema.key)

    def events(self) -> list[ChangeEvent]:
        self.spill()
        return list(self.rows.values()) if self.keyed else self.ordered

    def holds_any(self) -> bool:
        return bool(self.rows or self.ordered or self.fast)

    def spill(self) -> None:
        """The fast path's events made events, in their order, each delete with its prior image."""
        fast, self.fast = self.fast, None
        if fast is None:
            return
        for key, event, replaced in fast.events():
            if replaced is not None:
                materialize(replaced)
                event.prior = replaced.after
            self.rows[key] = event

    def newest(self) -> tuple[Version, int | None] | None:
        """The source position and commit time (ms) of the newest change the batch holds."""
        if self.fast is not None:
            found = self.fast.newest()
            return None if found is None else (new_tuple(Version, found[0]), found[1])
        newest = max(self.events(), key=lambda e: e.version, default=None)
        if newest is not None and (self.truncated_at is None or newest.version > self.truncated_at):
            return newest.version, newest.commit_ts_ms
        if self.truncated_at is not None:
            return self.truncated_at, self.truncated_ts_ms
        return None


@dataclass(slots=True)
class Buffer:
    tables: dict[TableId, TableBatch] = field(default_factory=dict)  # each table's current batch
    sealed: list[TableBatch] = field(default_factory=list)  # batches closed by a schema change, in order
    events: int = 0  # events added (before compaction): the rows limit counts work, not survivors
    bytes: int = 0
    open_moves: set[tuple[TableId, tuple[Any, ...]]] = field(default_factory=set)  # (table, old key)

    def add(self, event: ChangeEvent) -> None:
        self.events += 1
        self.bytes += event.size
        batch = self._batch(event.table, event.schema, truncate=event.op is Op.TRUNCATE)
        batch.spill()
        batch.ops[event.op] = batch.ops.get(event.op, 0) + 1
        if event.op is Op.TRUNCATE:
            for older in self.sealed:
                if older.schema.table == event.table:
                    _drop_older(older, event.version)
            _truncate(batch, event)
        elif batch.schema.key and event.key is not None:  # keyed: not the property, this runs per event
            if event.moves_away:
                self.open_moves.add((event.table, event.key))
            elif event.old_key is not None:
                self.open_moves.discard((event.table, event.old_key))
                _fill_from_old_key(batch, event, event.old_key)
            _upsert(batch, event, event.key)
        else:
            batch.ordered.append(event)

    def add_run(self, run: FastRun, picked: list[int]) -> None:
        """These messages of a run the fast path decoded (FastRun.pick), as add would take each
        one's event, in order."""
        batch = self._batch(run.table, run.schema, truncate=False)
        if batch.fast is None and (batch.holds_any() or batch.truncated_at is not None or not batch.schema.key):
            for event in run.events(picked):  # the batch holds events already: these join them
                self.add(event)
            return
        if batch.fast is None:
            batch.fast = new_rows()
        count, size, ops = batch.fast.add(run, picked)
        self.events += count
        self.bytes += size
        for op, n in zip(_OPS, ops, strict=True):
            if n:
                batch.ops[op] = batch.ops.get(op, 0) + n

    def _batch(self, table: TableId, schema: TableSchema, *, truncate: bool) -> TableBatch:
        """The table's current batch for an event of this schema: a new one after a schema change."""
        batch = self.tables.get(table)
        if batch is None:
            batch = self.tables[table] = TableBatch(schema)
        elif schema is not batch.schema and not truncate:
            # Schemas are interned: another object is another shape.
            if batch.holds_any() or batch.truncated_at is not None:
                self.sealed.append(batch)
                batch = self.tables[table] = TableBatch(schema)
            else:
                batch.schema = schema
        return batch

    def drop_tables(self, tables: set[TableId]) -> dict[tuple[str, int], tuple[int, TableId]]:
        """Forget every event of these tables; returns, per partition they came from, the first
        offset forgotten (where reading must start again) and its table."""
        first: dict[tuple[str, int], tuple[int, TableId]] = {}
        dropped = [b for b in self.sealed if b.schema.table in tables]
        dropped += [self.tables.pop(t) for t in tables if t in self.tables]
        self.sealed = [b for b in self.sealed if b.schema.table not in tables]
        for batch in dropped:
            origins = [e.origin for e in batch.events()]
            if batch.truncate_origin is not None:
                origins.append(batch.truncate_origin)
            for topic, number, offset in origins:
                known = first.get((topic, number))
                if known is None or offset < known[0]:
                    first[topic, number] = (offset, batch.schema.table)
        self.open_moves = {m for m in self.open_moves if m[0] not in tables}
        return first

    def batches(self) -> list[TableBatch]:
        """Every batch, in the order the warehouse must apply them."""
        return [*self.sealed, *self.tables.values()]

    def clear(self) -> None:
        self.tables.clear()
        self.sealed.clear()
        self.open_moves.clear()
        self.events = 0
        self.bytes = 0

    def __len__(self) -> int:
        return self.events


def _truncate(batch: TableBatch, event: ChangeEvent) -> None:
    version = event.version
    _drop_older(batch, version)
    if batch.truncated_at is None or version > batch.truncated_at:
        batch.truncated_at = version
        batch.truncated_ts_ms = event.commit_ts_ms
        batch.truncate_origin = event.origin


def _upsert(batch: TableBatch, event: ChangeEvent, key: tuple[Any, ...]) -> None:
    older = batch.rows.get(key)
    if older is not None:
        if older.version > event.version:
            return  # a replayed or duplicate event: the buffer already holds newer state
        if older.staged is not None and (event.op is Op.DELETE or event.staged is None):
            # Its image is needed: kept by a delete, or to fill a Python event's placeholders
            # (a fast-path event never has one).
            materialize(older)
        if event.op is Op.DELETE:
            event.prior = older.prior if older.op is Op.DELETE else older.after
        elif event.after is not None and older.after is not None and older.op is not Op.DELETE:
            _fill_unchanged(event.after, older.after)
    batch.rows[key] = event


def _fill_from_old_key(batch: TableBatch, event: ChangeEvent, old_key: tuple[Any, ...]) -> None:
    old = batch.rows.get(old_key)
    if old is None or event.after is None:
        return  # the warehouse fills what is left from the old key's stored row
    materialize(old)
    image = old.prior if old.op is Op.DELETE else old.after
    if image is not None:
        _fill_unchanged(event.after, image)


def _fill_unchanged(after: dict[str, Any], older: dict[str, Any]) -> None:
    for name, value in after.items():
        if is_unavailable(value):
            previous = older.get(name)
            if previous is not None and not is_unavailable(previous):
                after[name] = previous


def _drop_older(batch: TableBatch, version: Version) -> None:
    # A truncate replayed by Debezium can be older than rows already buffered: keep those.
    batch.spill()
    batch.rows = {k: e for k, e in batch.rows.items() if e.version > version}
    batch.ordered = [e for e in batch.ordered if e.version > version]
