"""A table without a primary key, backfilled: its rows have no identity a streamed change could be
matched on, so the warehouse table is replaced whole, in one transaction, by the rows of a snapshot
taken while `cdc sync` cannot flush the table (the backfill holds its lock from before the snapshot
to the commit). The table's positions (cdc.keyless_position) move to the snapshot's, (P, 0, -1):
a streamed change the snapshot saw is skipped as applied, one it did not see is applied after."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from cdc.backfill import handover
from cdc.backfill.ranges import KeyRange
from cdc.backfill.snapshot import exported_snapshot, read_in
from cdc.backfill.tables import Backfilled
from cdc.backfill.write import copy_rows
from cdc.settings import Settings


def replace(
    settings: Settings,
    source_reader: Any,
    warehouse: Any,
    table: Backfilled,
    run_id: int,
    *,
    on_rows: Callable[[int], None] | None = None,
    say: Callable[[str], None],
) -> int:
    """Replace the warehouse table's rows with the source's; returns the rows copied."""
    target = table.target
    partitions = _partitions(settings, warehouse, table)
    with warehouse.cursor() as cur:
        cur.execute(handover.LOCK_EXCLUSIVE, (handover.lock_key(table.source),))
        with exported_snapshot(settings.require_source_url()) as snapshot:
            visibility = read_in(source_reader, snapshot)
            say(f"{table.source} has no primary key: its rows are replaced in one transaction, cdc sync waits for it")
            handover.register_snapshot(cur, target.schema, table.source, snapshot.lsn, visibility, run_id)
            cur.execute(sql.SQL("DELETE FROM {}").format(target.ident))
            everything = KeyRange(0, None, None)
            rows = copy_rows(
                source_reader, cur, table, everything, snapshot.lsn, where=None, into=target.ident, on_rows=on_rows
            )
            cur.executemany(
                "INSERT INTO cdc.keyless_position (target_schema, target_table, topic, kafka_partition, commit_lsn, "
                "lsn, change_order) VALUES (%s, %s, %s, %s, %s, 0, -1) ON CONFLICT (target_schema, target_table, "
                "topic, kafka_partition) DO UPDATE SET commit_lsn = EXCLUDED.commit_lsn, lsn = 0, change_order = -1, "
                "updated_at = now()",
                [(target.schema, target.table, topic, number, snapshot.lsn) for topic, number in partitions],
            )
            cur.execute(
                "UPDATE cdc.backfill_range SET rows = %s, snapshot_lsn = %s, done_at = now() WHERE run_id = %s",
                (rows, snapshot.lsn, run_id),
            )
            warehouse.commit()
    return rows


def _partitions(settings: Settings, warehouse: Any, table: Backfilled) -> list[tuple[str, int]]:
    """Every partition of the table's topic: each gets the snapshot's position."""
    with warehouse.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT topic FROM cdc.keyless_position WHERE target_schema = %s AND target_table = %s",
            (table.target.schema, table.target.table),
        )
        topics = {r[0] for r in cur.fetchall()}
    warehouse.rollback()
    topics.add(f"{settings.topic_prefix}.{table.source.schema}.{table.source.name}")
    from kafka import KafkaConsumer

    from cdc.kafka_errors import kafka_error

    bootstrap = settings.require_kafka()
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    except Exception as exc:
        raise kafka_error(exc, bootstrap) from exc
    try:
        found = []
        for topic in sorted(topics):
            for number in sorted(consumer.partitions_for_topic(topic) or ()):
                found.append((topic, number))
        return found
    finally:
        with contextlib.suppress(Exception):
            consumer.close()
