"""`cdc backfill --mode debezium`: Debezium's incremental snapshot of the tables, asked for with an
execute-snapshot signal and followed through the connector's notifications until cdc sync has
applied what it sent. And the one-row snapshot that gives a table captured with rows, but never
changed since, its warehouse table (cdc sync makes a table from its first change event).

The connector sends its notifications to <prefix>.notifications (notification.enabled.channels=sink,
connectors/postgres-source.json). Every notification of an incremental snapshot carries the id of
the signal that started it, so the command follows its own snapshot only, from STARTED through one
IN_PROGRESS per chunk and one TABLE_SCAN_COMPLETED per table (with its rows) to COMPLETED. The
notifications topic is read from its end as it was before the signal went in: nothing is missed.

Done means applied: the table topics' end offsets once Debezium has completed, reached by the
offsets cdc sync stored in the warehouse (cdc.kafka_offsets, in the same transaction as the rows).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from cdc import capture
from cdc.backfill import ranges, sessions, tables
from cdc.decode.json_message import payload_of
from cdc.errors import ConfigError, TerminalError
from cdc.events import TableId
from cdc.kafka_errors import check_resolvable, kafka_error
from cdc.ops.kafka_view import KafkaView
from cdc.settings import Settings
from cdc.sync.consume import topic_safe
from cdc.warehouse import statements as stmt

INCREMENTAL = "Incremental Snapshot"
DEFAULT_CHUNK = 1024  # incremental.snapshot.chunk.size, Debezium's default
STARTED_WITHIN = 60.0  # seconds for the connector to read the signal
JOIN_GRACE = 10.0  # seconds for a cdc sync just started to join its group
STALLED_AFTER = 120.0  # seconds without applied progress while cdc sync is behind
_REPORT_EVERY = 5.0
# TABLE_SCAN_COMPLETED statuses that leave a table's rows unsent.
_FAILED = {
    "NO_PRIMARY_KEY": "it has no primary key (use --mode direct)",
    "SKIPPED": "Debezium skipped it",
    "SQL_EXCEPTION": "its SELECT failed on the source (see the Kafka Connect log)",
    "UNKNOWN_SCHEMA": "Debezium does not know its schema yet (run cdc connector apply)",
}


def notification_topic(settings: Settings) -> str:
    return f"{settings.topic_prefix}.notifications"


def table_topic(settings: Settings, table: TableId) -> str:
    return f"{settings.topic_prefix}.{topic_safe(table.schema)}.{topic_safe(table.name)}"


@dataclass(slots=True)
class Scanned:
    """One table of the snapshot, as Debezium's notifications tell it."""

    table: TableId
    estimated_rows: int
    chunks: int = 0
    rows: int | None = None  # total_rows_scanned, once its scan completed
    status: str | None = None


@dataclass(slots=True)
class Followed:
    tables: list[Scanned]
    signal_id: str
    chunk: int
    started: float = field(default_factory=time.monotonic)
    applied: bool = False

    @property
    def rows(self) -> int:
        """Rows sent so far: exact for the tables scanned, a chunk per IN_PROGRESS for the one in progress."""
        return sum(t.rows if t.rows is not None else min(t.chunks * self.chunk, t.estimated_rows) for t in self.tables)

    @property
    def estimated_rows(self) -> int:
        return sum(t.rows if t.rows is not None else t.estimated_rows for t in self.tables)


def snapshot(
    settings: Settings,
    patterns: list[str],
    where: str | None,
    *,
    say: Callable[[str], None],
    progress: Callable[[Followed], None] = lambda _: None,
) -> Followed:
    """Run Debezium's incremental snapshot of the tables the patterns name, and wait until cdc sync
    has applied it."""
    connector = _connector_config(settings)
    with sessions.connected(settings.require_source_url(), "source", "cdc backfill", autocommit=True) as source:
        chosen = tables.select_captured(source, settings, patterns)
        for table in chosen:
            if not table.has_primary_key:
                raise ConfigError(
                    f"{table.qualified} has no primary key: Debezium's incremental snapshot reads by key ranges.",
                    f"backfill it with --mode direct, which replaces it whole: cdc backfill {table.qualified}",
                )
            if where is not None:
                tables.check_where(source, TableId(table.schema, table.name), where)
        estimates = {t.qualified: _estimated_rows(source, t) for t in chosen}
        chunk = int(connector.get("incremental.snapshot.chunk.size") or DEFAULT_CHUNK)
        with _notifications(settings) as notes:
            filters = {t.qualified: where for t in chosen} if where is not None else None
            signal_id = capture.request_snapshot(source, chosen, filters=filters)  # autocommit: sent now
            followed = Followed(
                [Scanned(TableId(t.schema, t.name), estimates[t.qualified]) for t in chosen], signal_id, chunk
            )
            say(
                f"asked Debezium for an incremental snapshot of {', '.join(t.qualified for t in chosen)} "
                f"(signal {signal_id}; ~{followed.estimated_rows:,} rows"
                + (" before --where" if where is not None else "")
                + ")"
            )
            _follow(notes, followed, say, progress)
    failed = [t for t in followed.tables if t.status not in ("SUCCEEDED", "EMPTY")]
    if failed:
        raise TerminalError(
            "Debezium did not send every table: "
            + "; ".join(f"{t.table}: {_FAILED.get(t.status or '', t.status or 'not scanned')}" for t in failed),
            "correct that and run the backfill again",
        )
    followed.applied = wait_applied(settings, [table_topic(settings, t.table) for t in followed.tables], say)
    return followed


def _connector_config(settings: Settings) -> dict[str, str]:
    from cdc.connect_api import ConnectClient

    client = ConnectClient(settings.require_connect_url())
    try:
        config = client.config(settings.connector_name)
        state = client.status(settings.connector_name) if config is not None else None
    finally:
        client.close()
    if config is None:
        raise ConfigError(
            f"Kafka Connect has no connector {settings.connector_name}: nobody would read the snapshot signal.",
            "create it with cdc connector apply",
        )
    if "sink" not in (config.get("notification.enabled.channels") or "").split(","):
        raise ConfigError(
            f"connector {settings.connector_name} sends no notifications, and they are how the command follows "
            "Debezium's snapshot.",
            "run cdc connector apply (connectors/postgres-source.json enables the sink channel)",
        )
    if config.get("notification.sink.topic.name") != notification_topic(settings):
        raise ConfigError(
            f"connector {settings.connector_name} sends its notifications to "
            f"{config.get('notification.sink.topic.name')!r}, not {notification_topic(settings)!r}.",
            "run cdc connector apply (connectors/postgres-source.json names the topic)",
        )
    if state is not None and not state.running:
        raise ConfigError(
            f"connector {settings.connector_name} is not running ({state}): it would not read the signal.",
            "see cdc connector status, and restart it (cdc connector apply)",
        )
    return config


def _estimated_rows(source: Any, table: capture.SourceTable) -> int:
    with source.cursor() as cur:
        return ranges.estimated_rows(cur, table.ident, stmt.regclass_of(table.schema, table.name))


MADE_WITHIN = 120.0  # seconds for cdc sync to make a warehouse table from Debezium's row


def make_targets(
    settings: Settings, source: Any, warehouse: Any, missing: list[capture.SourceTable], say: Callable[[str], None]
) -> list[capture.SourceTable]:
    """Warehouse tables for tables that hold rows but have none yet (captured with their rows, and
    never changed since): Debezium sends one row of each, cdc sync makes the table from that event
    exactly as from any other, and the backfill then writes the rest. The tables that are empty:
    nothing to backfill, returned."""
    empty = [t for t in missing if not capture.has_rows(source, t)]
    for table in empty:
        say(
            f"{table.qualified} is empty and has no warehouse table yet: nothing to backfill "
            "(its first change makes the table)"
        )
    wanted = [t for t in missing if t not in empty]
    if not wanted:
        return empty
    group = settings.consumer_group
    if not _group_has_members(settings, group):
        raise ConfigError(
            f"{', '.join(t.qualified for t in wanted)}: no warehouse table yet, and no cdc sync runs in consumer "
            f"group {group} to make one from Debezium's event of one of its rows.",
            "start cdc sync, then run the backfill again",
        )
    # One row each, picked by its ctid. A table without a key takes a blocking snapshot (the one
    # kind Debezium allows it; streaming pauses for that one row); the others an incremental one.
    first = {t.qualified: sql_one_row(t) for t in wanted}
    keyed = [t for t in wanted if t.has_primary_key]
    keyless = [t for t in wanted if not t.has_primary_key]
    if keyed:
        capture.request_snapshot(source, keyed, filters=first)
    if keyless:
        capture.request_snapshot(source, keyless, kind="blocking", filters=first)
    source.commit()
    say(
        f"{', '.join(t.qualified for t in wanted)}: no warehouse table yet; asked Debezium for one row of each, "
        "from which cdc sync makes it"
    )
    deadline = time.monotonic() + MADE_WITHIN
    while True:
        left = tables.without_target(warehouse, settings.warehouse_schema, wanted)
        if not left:
            return empty
        if time.monotonic() > deadline:
            raise TerminalError(
                f"cdc sync made no warehouse table for {', '.join(t.qualified for t in left)} within "
                f"{MADE_WITHIN:.0f} s of Debezium's row.",
                "see cdc sync's log and cdc connector status, then run the backfill again",
            )
        time.sleep(0.5)


def sql_one_row(table: capture.SourceTable) -> str:
    """An SQL condition true for one row of the table (any one: it only carries the table's schema)."""
    # Identifiers quoted as everywhere; Debezium runs the condition inside its own SELECT.
    return f"ctid = (SELECT ctid FROM {stmt.regclass_of(table.schema, table.name)} LIMIT 1)"  # noqa: S608


@contextlib.contextmanager
def _notifications(settings: Settings) -> Iterator[Any]:
    """A consumer of the notifications topic, positioned at its end (created if it does not exist
    yet: a notification sent before the consumer saw the topic would be missed)."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    bootstrap = settings.require_kafka()
    topic = notification_topic(settings)
    check_resolvable(bootstrap)
    try:
        consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
        if topic not in consumer.topics():
            admin = KafkaAdminClient(bootstrap_servers=bootstrap)
            try:
                admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=-1)])
            except TopicAlreadyExistsError:
                pass
            finally:
                admin.close()
        deadline = time.monotonic() + 30
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise TerminalError(f"topic {topic} has no partitions 30 s after it was made.", "check the broker")
            consumer.topics()  # refreshes the metadata
            time.sleep(0.2)
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(parts)
        consumer.seek_to_end(*parts)
        for part in parts:
            consumer.position(part)  # resolved now, before the signal: not lazily after it
    except KafkaError as exc:
        raise kafka_error(exc, bootstrap) from exc
    try:
        yield consumer
    finally:
        with contextlib.suppress(Exception):
            consumer.close()


def _follow(
    consumer: Any, followed: Followed, say: Callable[[str], None], progress: Callable[[Followed], None]
) -> None:
    by_name = {str(t.table): t for t in followed.tables}
    ids = {followed.signal_id}
    started = False
    deadline = time.monotonic() + STARTED_WITHIN
    while True:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                note = payload_of(record.value)
                if note is None or note.get("aggregate_type") != INCREMENTAL:
                    continue
                data = note.get("additional_data") or {}
                if note.get("id") not in ids:
                    # A snapshot asked for while one runs joins it, and from then on every
                    # notification carries the newest signal's id: follow it when it holds ours.
                    listed = set(str(data.get("data_collections", "")).split(","))
                    if not started or not by_name.keys() <= {_plain(by_name, n) for n in listed}:
                        continue
                    ids.add(str(note.get("id")))
                started = True
                if _noted(str(note.get("type")), data, followed, by_name, say):
                    progress(followed)
                    return
        progress(followed)
        if not started and time.monotonic() > deadline:
            raise TerminalError(
                f"Debezium has not started the snapshot {STARTED_WITHIN:.0f} s after the signal: the connector "
                "reads signals from the WAL, so it is not streaming.",
                "check cdc connector status and the Kafka Connect log; the signal stays in cdc.debezium_signal",
            )


def _noted(
    kind: str, data: dict[str, Any], followed: Followed, by_name: dict[str, Scanned], say: Callable[[str], None]
) -> bool:
    """One notification of the snapshot taken in; True once it is COMPLETED."""
    if kind == "IN_PROGRESS":
        current = _named(by_name, data.get("current_collection_in_progress"))
        if current is not None:
            current.chunks += 1
    elif kind == "TABLE_SCAN_COMPLETED":
        scanned = _named(by_name, data.get("scanned_collection"))
        if scanned is not None:
            scanned.rows = int(data.get("total_rows_scanned") or 0)
            scanned.status = str(data.get("status"))
            say(f"{scanned.table}: Debezium sent {scanned.rows:,} rows ({scanned.status})")
    elif kind == "PAUSED":
        say("Debezium paused the snapshot (a pause-snapshot signal); the command waits for it to resume")
    elif kind == "ABORTED":
        raise TerminalError(
            f"Debezium aborted the snapshot (signal {followed.signal_id}): a stop-snapshot signal stopped it.",
            "run the backfill again",
        )
    return kind == "COMPLETED"


def _named(by_name: dict[str, Scanned], identifier: object) -> Scanned | None:
    return by_name.get(_plain(by_name, identifier))


def _plain(by_name: dict[str, Scanned], identifier: object) -> str:
    """The schema.table of a table a notification names (some versions put the database in front)."""
    text = str(identifier).strip()
    return text if text in by_name else text.partition(".")[2]


def wait_applied(settings: Settings, topics: list[str], say: Callable[[str], None]) -> bool:
    """Wait until cdc sync has stored offsets at the topics' current ends; False at once when no
    cdc sync runs in the consumer group (the rows then wait in Kafka)."""
    ends = _end_offsets(settings, topics)
    group = settings.consumer_group
    if not _group_has_members(settings, group):
        say(
            f"no cdc sync runs in consumer group {group}: the rows are in Kafka, and cdc sync applies them when it runs"
        )
        return False
    behind_before, moved_at, reported = None, time.monotonic(), 0.0
    with sessions.connected(settings.require_warehouse_url(), "warehouse", "cdc backfill", autocommit=True) as wh:
        while True:
            with wh.cursor() as cur:
                cur.execute(
                    "SELECT topic, kafka_partition, next_offset FROM cdc.kafka_offsets "
                    "WHERE consumer_group = %s AND topic = ANY(%s)",
                    (group, topics),
                )
                stored = {(r[0], r[1]): r[2] for r in cur.fetchall()}
            behind = sum(max(0, end - stored.get(part, 0)) for part, end in ends.items())
            if behind == 0:
                return True
            now = time.monotonic()
            if behind != behind_before:
                behind_before, moved_at = behind, now
            elif now - moved_at > STALLED_AFTER:
                raise TerminalError(
                    f"cdc sync (group {group}) has applied nothing of the snapshot for {STALLED_AFTER:.0f} s, "
                    f"{behind:,} messages behind.",
                    "see cdc sync's log; its rows are in Kafka and nothing is lost",
                )
            if now - reported >= _REPORT_EVERY:
                reported = now
                say(f"waiting for cdc sync to apply the snapshot: {behind:,} messages to go")
            time.sleep(0.5)


def _end_offsets(settings: Settings, topics: list[str]) -> dict[tuple[str, int], int]:
    with KafkaView(settings.require_kafka()) as kafka:
        return {part: kept.end for part, kept in kafka.retained(topics).items()}


def _group_has_members(settings: Settings, group: str) -> bool:
    """Whether a cdc sync is in the group, given JOIN_GRACE seconds to join (one just started)."""
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    bootstrap = settings.require_kafka()
    deadline = time.monotonic() + JOIN_GRACE
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        try:
            while True:
                (info,) = admin.describe_consumer_groups([group])
                if info.members or time.monotonic() > deadline:
                    return bool(info.members)
                time.sleep(0.5)
        finally:
            admin.close()
    except KafkaError as exc:
        raise kafka_error(exc, bootstrap) from exc
