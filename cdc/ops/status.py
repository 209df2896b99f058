"""`cdc status`: is the pipeline healthy, and how far behind is each table.

Reads only, from the places where the truth lives, so it answers the same whether `cdc sync` runs
or not: Kafka Connect's REST status (connector, tasks), the source's `pg_replication_slots` (WAL
retained by the slot), Kafka (what each change topic holds) and the warehouse (what was applied:
the offsets stored with the rows, `cdc.table_progress`, dead letters, drift holds, backfills).

Lag, per table:
- in messages: the topic's end offsets minus the offsets stored in the warehouse (a partition
  with nothing stored counts from the start of what Kafka retains);
- in seconds: the age of the oldest change waiting, its source commit time read from the first
  message not applied; 0 when nothing waits. This is the end-to-end lag a user feels: how old the
  oldest change is that the warehouse does not show yet.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import psycopg2

from cdc import capture, pgerrors
from cdc.errors import CdcError
from cdc.events import TableId
from cdc.ops.kafka_view import KafkaView, Retained
from cdc.settings import Settings
from cdc.slot import lsn_text, read_slot
from cdc.warehouse import ledger
from cdc.warehouse.naming import table_of_topic

_T = TypeVar("_T")


@dataclass(slots=True)
class TableStatus:
    source_table: str
    target_table: str | None  # None until cdc sync made it
    topic: str | None
    lag_messages: int = 0
    lag_seconds: float = 0.0
    last_commit_lsn: str | None = None  # the newest applied change's position, as PostgreSQL prints LSNs
    last_lsn: str | None = None
    last_source_ts: str | None = None  # its commit time in the source (ISO 8601)
    last_applied_at: str | None = None
    # How long the newest applied change took from its source commit to the warehouse's commit.
    last_apply_lag_seconds: float | None = None
    events_applied: int = 0
    dead_letters: int = 0  # waiting in cdc.dead_letter (not replayed)
    held: bool = False  # by its schema policy, until cdc schema accept
    backfill: str | None = None  # a backfill running: "<mode>, <rows> rows so far"
    lost_messages: int = 0  # deleted from Kafka before they were applied


@dataclass(slots=True)
class Status:
    taken_at: str
    connector: dict[str, Any] = field(default_factory=dict)
    slot: dict[str, Any] = field(default_factory=dict)
    tables: list[TableStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # parts that could not be read, and why

    @property
    def lag_messages(self) -> int:
        return sum(t.lag_messages for t in self.tables)

    @property
    def lag_seconds(self) -> float:
        return max((t.lag_seconds for t in self.tables), default=0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at,
            "lag_messages": self.lag_messages,
            "lag_seconds": self.lag_seconds,
            "connector": self.connector,
            "slot": self.slot,
            "tables": [asdict(t) for t in self.tables],
            "problems": self.problems,
        }


def collect(settings: Settings, tables: tuple[str, ...] = ()) -> Status:
    """One reading of everything; a part that does not answer is named in `problems`, the rest
    is still reported."""
    status = Status(taken_at=datetime.now().astimezone().isoformat(timespec="seconds"))
    status.connector = _guard(status, "Kafka Connect", lambda: _connector(settings)) or {}
    status.slot = _guard(status, "the source", lambda: _slot(settings)) or {}
    applied = _guard(status, "the warehouse", lambda: _applied(settings))
    _guard(status, "Kafka", lambda: _tables(settings, status, applied or _Applied(), tables))
    return status


def _guard(status: Status, part: str, read: Callable[[], _T]) -> _T | None:
    try:
        return read()
    except CdcError as exc:
        status.problems.append(f"{part}: {exc.problem}" + (f" (fix: {exc.fix})" if exc.fix else ""))
    except psycopg2.Error as exc:
        status.problems.append(f"{part}: {pgerrors.describe(exc)}")
    return None


# -- Kafka Connect and the slot -------------------------------------------------------------------
def _connector(settings: Settings) -> dict[str, Any]:
    from cdc.connect_api import ConnectClient

    client = ConnectClient(settings.require_connect_url(), timeout=10)
    try:
        state = client.status(settings.connector_name)
    finally:
        client.close()
    trace = (state.trace or "").strip().splitlines()[:1]
    return {
        "name": settings.connector_name,
        "state": state.state,
        "tasks": [{"id": number, "state": task_state} for number, task_state in state.tasks],
        "trace": trace[0] if trace else None,
    }


def _slot(settings: Settings) -> dict[str, Any]:
    conn = capture.connect(settings.require_source_url())
    try:
        with conn.cursor() as cur:
            slot = read_slot(cur, settings.slot_name)
    finally:
        conn.close()
    if not slot.exists:
        return {"name": settings.slot_name, "exists": False}
    limit = settings.slot_retained_warn_bytes
    return {
        "name": settings.slot_name,
        "exists": True,
        "active": slot.active,
        "wal_status": slot.wal_status,
        "retained_bytes": slot.retained_bytes,
        "retained_above_limit": slot.retained_bytes > limit > 0,
        "safe_wal_size": slot.safe_wal_size,
        "confirmed_flush_lsn": lsn_text(slot.confirmed_flush_lsn),
    }


# -- the warehouse --------------------------------------------------------------------------------
@dataclass(slots=True)
class _Applied:
    targets: dict[TableId, str] = field(default_factory=dict)  # source table -> warehouse schema.table
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    progress: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # schema.table -> its row
    dead: dict[str, int] = field(default_factory=dict)  # topic -> letters waiting
    held: set[str] = field(default_factory=set)
    backfills: dict[str, str] = field(default_factory=dict)


def _applied(settings: Settings) -> _Applied:
    conn = pgerrors.connect(settings.require_warehouse_url(), "warehouse", "cdc status")
    schema, group = settings.warehouse_schema, settings.consumer_group
    found = _Applied()
    try:
        conn.set_session(readonly=True, autocommit=True)
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('cdc.table_progress') IS NOT NULL")
            if not cur.fetchall()[0][0]:
                return found  # cdc sync never ran against this warehouse
            found.targets = {t: f"{m.schema}.{m.table}" for t, m in ledger.table_map(cur, schema).items()}
            found.offsets = ledger.stored_offsets(cur, group)
            cur.execute(
                "SELECT target_table, events, commit_lsn, lsn, source_ts, applied_at FROM cdc.table_progress "
                "WHERE target_schema = %s",
                (schema,),
            )
            found.progress = {f"{schema}.{row[0]}": row[1:] for row in cur.fetchall()}
            cur.execute(
                "SELECT topic, count(*) FROM cdc.dead_letter WHERE consumer_group = %s AND replayed_at IS NULL "
                "GROUP BY topic",
                (group,),
            )
            found.dead = dict(cur.fetchall())
            cur.execute(
                "SELECT target_table FROM cdc.schema_state WHERE target_schema = %s AND held_for IS NOT NULL "
                "AND held_for IS DISTINCT FROM accepted",
                (schema,),
            )
            found.held = {f"{schema}.{row[0]}" for row in cur.fetchall()}
            cur.execute(
                "SELECT target_table, mode, rows FROM cdc.backfill_run WHERE target_schema = %s AND state = 'running'",
                (schema,),
            )
            found.backfills = {f"{schema}.{t}": f"{mode}, {rows:,} rows so far" for t, mode, rows in cur.fetchall()}
    finally:
        conn.close()
    return found


# -- per table: Kafka against the warehouse -------------------------------------------------------
def _tables(settings: Settings, status: Status, applied: _Applied, patterns: tuple[str, ...]) -> None:
    prefix = settings.topic_prefix

    def wanted(table: TableId) -> bool:
        if table.schema == capture.INTERNAL_SCHEMA:
            return False  # cdc's own tables (the DDL log, signals): not replicated as tables
        return not patterns or any(fnmatch.fnmatchcase(str(table), p) for p in patterns)

    now_ms = time.time() * 1000
    with KafkaView(settings.require_kafka()) as kafka:
        topics = {t: table for t in kafka.topics(f"{prefix}.") if (table := table_of_topic(t, prefix)) is not None}
        topics = {t: table for t, table in topics.items() if wanted(table)}
        retained = kafka.retained(sorted(topics))
        by_table: dict[TableId, TableStatus] = {}
        for topic, table in sorted(topics.items(), key=lambda item: item[1]):
            row = by_table[table] = TableStatus(str(table), applied.targets.get(table), topic)
            for (name, partition), kept in retained.items():
                if name == topic:
                    _partition_lag(kafka, row, partition, kept, applied.offsets.get((topic, partition)), now_ms=now_ms)
            row.dead_letters = applied.dead.get(topic, 0)
    for table, target in applied.targets.items():
        if wanted(table) and table not in by_table:
            by_table[table] = TableStatus(str(table), target, None)  # its topic is gone
    for row in by_table.values():
        _fill_applied(row, applied)
    status.tables = sorted(by_table.values(), key=lambda t: t.source_table)


def _partition_lag(
    kafka: KafkaView, row: TableStatus, partition: int, kept: Retained, stored: int | None, *, now_ms: float
) -> None:
    start = kept.begin if stored is None else stored
    if start < kept.begin:
        row.lost_messages += kept.begin - start
        start = kept.begin
    waiting = max(0, kept.end - start)
    row.lag_messages += waiting
    if waiting:
        oldest = kafka.source_ms_at(row.topic or "", partition, start)
        if oldest is not None:
            row.lag_seconds = max(row.lag_seconds, round(max(0.0, now_ms - oldest) / 1000, 3))


def _fill_applied(row: TableStatus, applied: _Applied) -> None:
    if row.target_table is None:
        return
    progress = applied.progress.get(row.target_table)
    if progress is not None:
        events, commit_lsn, lsn, source_ts, applied_at = progress
        row.events_applied = events
        row.last_commit_lsn, row.last_lsn = lsn_text(commit_lsn), lsn_text(lsn)
        row.last_source_ts = source_ts.isoformat() if source_ts else None
        row.last_applied_at = applied_at.isoformat()
        if source_ts is not None:
            row.last_apply_lag_seconds = round(max(0.0, (applied_at - source_ts).total_seconds()), 3)
    row.held = row.target_table in applied.held
    row.backfill = applied.backfills.get(row.target_table)
