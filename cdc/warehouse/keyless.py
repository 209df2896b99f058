"""The guard of tables without a primary key: rows have no identity to merge on, so the source
position of the newest change applied (per warehouse table and Kafka partition, in
cdc.keyless_position, written in the flush's transaction) is what tells a replay from new work."""

from __future__ import annotations

from typing import Any

from psycopg2.extras import execute_values

from cdc.events import ChangeEvent
from cdc.warehouse import statements as stmt


def unapplied(cur: Any, target: stmt.Target, events: list[ChangeEvent]) -> list[ChangeEvent]:
    """The events of a keyless table not applied yet, and the high-water marks moved past all of
    them (a dead-lettered event too: it is in the dead-letter table, replayed from there).
    Rows have no identity to merge on, so position is the only guard against a replay; the row
    lock makes a member that flushes the same partition late (after a rebalance) wait, then see
    what the other stored."""
    partitions = sorted({(e.origin.topic, e.origin.partition) for e in events})
    rows = [(target.schema, target.table, topic, number) for topic, number in partitions]
    execute_values(
        cur,
        "INSERT INTO cdc.keyless_position (target_schema, target_table, topic, kafka_partition, commit_lsn, "
        "lsn, change_order) VALUES %s ON CONFLICT DO NOTHING",
        rows,
        template="(%s, %s, %s, %s, -1, -1, -1)",
    )
    cur.execute(
        "SELECT topic, kafka_partition, commit_lsn, lsn, change_order FROM cdc.keyless_position "
        "WHERE target_schema = %s AND target_table = %s AND (topic, kafka_partition) IN %s FOR UPDATE",
        (target.schema, target.table, tuple(partitions)),
    )
    stored: dict[tuple[str, int], tuple[int, int, int]] = {(t, p): (c, lsn, o) for t, p, c, lsn, o in cur.fetchall()}
    if len(partitions) == 1:
        groups = {partitions[0]: events}
    else:
        groups = {}
        for event in events:
            groups.setdefault((event.origin.topic, event.origin.partition), []).append(event)
    marks = dict(stored)
    fresh: list[ChangeEvent] = []
    for where, group in groups.items():
        kept, marks[where] = _after(group, stored[where])
        fresh += kept
    if len(groups) > 1:
        taken = set(map(id, fresh))
        fresh = [e for e in events if id(e) in taken]  # in the order they came
    moved = [(*marks[p], target.schema, target.table, *p) for p in partitions if marks[p] != stored[p]]
    if moved:
        execute_values(
            cur,
            "UPDATE cdc.keyless_position AS k "
            "SET commit_lsn = v.c, lsn = v.l, change_order = v.o, updated_at = now() "
            "FROM (VALUES %s) AS v (c, l, o, s, t, topic, p) WHERE k.target_schema = v.s "
            "AND k.target_table = v.t AND k.topic = v.topic AND k.kafka_partition = v.p",
            moved,
        )
    return fresh


def _after(events: list[ChangeEvent], mark: tuple[int, int, int]) -> tuple[list[ChangeEvent], tuple[int, int, int]]:
    """The events of one partition past its high-water mark, and the mark past them all.

    A keyless table's change stands at (commit LSN, change LSN, order): the rows one statement
    wrote in one WAL record (COPY's multi-insert) share an LSN, and Debezium's
    transaction.data_collection_order tells them apart (it resumes from the connector's offsets
    after a restart, so a change sent again keeps its order). Snapshot reads have no transaction
    and all carry their snapshot's LSN: the Kafka offset orders them instead."""
    positions = [(*e.version, e.origin.offset if e.order is None else e.order) for e in events]
    fresh = [e for e, position in zip(events, positions, strict=True) if position > mark]
    return fresh, max(mark, *positions)
