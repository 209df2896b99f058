"""What the warehouse keeps beside the rows, in cdc's schema: Kafka offsets, dead letters and the
table map. Each function runs in the caller's transaction (the flush's, for writes)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg2
from psycopg2.extras import execute_values

from cdc import pgerrors
from cdc.errors import TerminalError
from cdc.events import Origin, TableId
from cdc.warehouse import DeadLetter, Progress, StoredLetter, TopicPartition
from cdc.warehouse import statements as stmt
from cdc.warehouse.errors import translate

log = logging.getLogger("cdc.warehouse.postgres")


def stored_offsets(cur: Any, group: str) -> dict[TopicPartition, int]:
    cur.execute(
        "SELECT topic, kafka_partition, next_offset FROM cdc.kafka_offsets WHERE consumer_group = %s",
        (group,),
    )
    return {(t, p): o for t, p, o in cur.fetchall()}


def write_offsets(cur: Any, group: str, offsets: dict[TopicPartition, int]) -> None:
    if not offsets:
        return
    # Offsets only move forward: a process that lost its partitions in a rebalance and flushes
    # late cannot move them back behind what the new owner stored.
    execute_values(
        cur,
        "INSERT INTO cdc.kafka_offsets (consumer_group, topic, kafka_partition, next_offset) VALUES %s "
        "ON CONFLICT (consumer_group, topic, kafka_partition) DO UPDATE "
        "SET next_offset = EXCLUDED.next_offset, updated_at = now() "
        "WHERE cdc.kafka_offsets.next_offset <= EXCLUDED.next_offset",
        [(group, topic, partition, offset) for (topic, partition), offset in offsets.items()],
    )


# The position only moves forward (a replayed batch still counts its events).
_WRITE_PROGRESS = (
    "INSERT INTO cdc.table_progress AS t (target_schema, target_table, events, commit_lsn, lsn, source_ts) "
    "VALUES %s ON CONFLICT (target_schema, target_table) DO UPDATE SET "
    "events = t.events + EXCLUDED.events, applied_at = now(), "
    "(commit_lsn, lsn, source_ts) = (SELECT * FROM (VALUES (t.commit_lsn, t.lsn, t.source_ts), "
    "(EXCLUDED.commit_lsn, EXCLUDED.lsn, EXCLUDED.source_ts)) AS v (c, l, s) ORDER BY c DESC, l DESC LIMIT 1)"
)


def write_progress(cur: Any, progress: dict[stmt.Target, Progress]) -> None:
    """Per table, the events applied and the newest change's position, in the flush's transaction:
    what `cdc status` reports, true to the rows whether or not cdc sync still runs."""
    if not progress:
        return
    execute_values(
        cur,
        _WRITE_PROGRESS,
        [
            (
                target.schema,
                target.table,
                sum(p.ops.values()),
                p.newest.commit_lsn,
                p.newest.lsn,
                None if p.newest_ts_ms is None else p.newest_ts_ms / 1000,
            )
            # In one order, so that two members flushing the same tables wait rather than deadlock.
            for target, p in sorted(progress.items(), key=lambda item: (item[0].schema, item[0].table))
            if p.newest is not None
        ],
        template="(%s, %s, %s, %s, %s, to_timestamp(%s))",
    )


def write_dead(cur: Any, group: str, dead: list[DeadLetter]) -> None:
    if not dead:
        return
    for letter in dead:
        log.warning(
            "dead letter %s[%d]@%d: %s",
            letter.origin.topic,
            letter.origin.partition,
            letter.origin.offset,
            letter.reason,
        )
    execute_values(
        cur,
        "INSERT INTO cdc.dead_letter (consumer_group, topic, kafka_partition, kafka_offset, "
        "message_key, message_value, reason) VALUES %s "
        # A replayed dead letter that fails again keeps its row, with the newest reason.
        "ON CONFLICT (consumer_group, topic, kafka_partition, kafka_offset) "
        "DO UPDATE SET reason = EXCLUDED.reason, failed_at = now()",
        [
            (
                group,
                d.origin.topic,
                d.origin.partition,
                d.origin.offset,
                None if d.key is None else psycopg2.Binary(d.key),
                None if d.value is None else psycopg2.Binary(d.value),
                d.reason,
            )
            for d in dead
        ],
    )


def dead_letters(cur: Any, group: str, *, include_replayed: bool, ids: list[int] | None) -> list[StoredLetter]:
    query = (
        "SELECT id, topic, kafka_partition, kafka_offset, message_key, message_value, reason, failed_at, "
        "replayed_at FROM cdc.dead_letter WHERE consumer_group = %s"
    )
    params: list[Any] = [group]
    if not include_replayed:
        query += " AND replayed_at IS NULL"
    if ids:
        query += " AND id = ANY(%s)"
        params.append(ids)
    cur.execute(query + " ORDER BY topic, kafka_partition, kafka_offset", params)
    return [
        StoredLetter(
            id=r[0],
            origin=Origin(r[1], r[2], r[3]),
            key=None if r[4] is None else bytes(r[4]),
            value=None if r[5] is None else bytes(r[5]),
            reason=r[6],
            failed_at=r[7],
            replayed_at=r[8],
        )
        for r in cur.fetchall()
    ]


def lock_letters(cur: Any, ids: list[int]) -> None:
    """A replay's letters, locked until its commit: two replays of one letter would apply it twice."""
    # FOR UPDATE waits for a replay under way, then sees what it committed.
    cur.execute("SELECT id, replayed_at FROM cdc.dead_letter WHERE id = ANY(%s) FOR UPDATE", (ids,))
    already = sorted(i for i, replayed in cur.fetchall() if replayed is not None)
    if already:
        raise TerminalError(
            f"dead letter(s) {', '.join(map(str, already))} were replayed by another cdc dlq replay meanwhile; "
            "nothing was applied.",
            "run cdc dlq replay again: it takes only the letters still waiting",
        )


def mark_replayed(cur: Any, ids: list[int]) -> None:
    if ids:
        cur.execute("UPDATE cdc.dead_letter SET replayed_at = now() WHERE id = ANY(%s)", (ids,))


def read_table_map(url: str, schema: str) -> dict[TableId, stmt.Target]:
    """cdc.table_map for one warehouse schema, without creating anything (empty if cdc never
    wrote to this warehouse)."""
    conn = pgerrors.connect(url, "warehouse")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('cdc.table_map') IS NOT NULL")
            row = cur.fetchone()
            return table_map(cur, schema) if row and row[0] else {}
    except psycopg2.Error as exc:
        raise translate(exc, "reading cdc.table_map") from exc
    finally:
        conn.close()


def table_map(cur: Any, schema: str) -> dict[TableId, stmt.Target]:
    """What cdc.table_map holds for one warehouse schema."""
    cur.execute(
        "SELECT source_schema, source_table, target_table FROM cdc.table_map WHERE target_schema = %s", (schema,)
    )
    return {TableId(s, t): stmt.Target(schema, name) for s, t, name in cur.fetchall()}
