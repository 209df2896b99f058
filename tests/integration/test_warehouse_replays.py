"""The warehouse writer against the real warehouse PostgreSQL, fed recorded Debezium messages: a
keyless table's changes are applied once however often they come, and warehouse table names
follow the format whatever came first. (The same through Kafka and Connect: test_replays.py.)"""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder
from cdc.decode.fast import FastDecoder
from cdc.errors import ConfigError, TerminalError
from cdc.events import Origin, TableId
from cdc.fastpath import Extension
from cdc.warehouse import Flush, FlushResult
from cdc.warehouse.naming import NameClash
from cdc.warehouse.postgres import PostgresWarehouse
from tests.db import drop_database, execute, query
from tests.flushes import Message, flush_of
from tests.unit.test_fastpath_sync import INT64, _message, _records, _small_table

RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "debezium" / "fx.no_pk.jsonl"


def recorded(
    schema: str = "fx", *, shift: int = 0, read_version: str | None = None, same_lsn: bool = False
) -> list[Message]:
    """fx.no_pk's messages (offsets 0-7: inserts of (1,one), (2,two), (2,two); an update of 1 to
    'uno'; two deletes of (2,two), each followed by a tombstone), as if captured from `schema`;
    `shift` moves their offsets (Connect sends the same changes again after a restart, at new
    offsets); with `read_version`, each becomes a snapshot read at that LSN; with `same_lsn`, all
    carry the first one's LSN, as the rows of one COPY batch do."""
    out: list[Message] = []
    for line in RECORDED.read_text(encoding="utf-8").splitlines()[:8]:
        m = json.loads(line)
        value = m["value"]
        if value is not None:
            envelope = json.loads(value)
            payload = envelope["payload"]
            payload["source"]["schema"] = schema
            if same_lsn:
                payload["source"].update(sequence='["108123552","108137600"]', lsn=108137600)
            if read_version is not None:
                payload.update(op="r", before=None, after=payload["after"] or payload["before"], transaction=None)
                payload["source"].update(snapshot="true", sequence=f'[null,"{read_version}"]', lsn=int(read_version))
            value = json.dumps(envelope)
        out.append(
            (
                Origin(f"cdc.{schema}.no_pk", 0, m["offset"] + shift),
                None if m["key"] is None else m["key"].encode(),
                None if value is None else value.encode(),
            )
        )
    return out


Writer = Callable[..., PostgresWarehouse]


@pytest.fixture
def writer(warehouse_url: str) -> Iterator[Writer]:
    """Makes cdc's warehouse writers on scratch warehouse schemas, removed afterwards."""
    made: list[tuple[PostgresWarehouse, str]] = []

    def make(
        schema: str | None = None, table_name_format: str = "{schema}__{table}", soft_delete: bool = False
    ) -> PostgresWarehouse:
        schema = schema or f"wh_replays_{uuid.uuid4().hex[:8]}"
        w = PostgresWarehouse(
            warehouse_url,
            schema=schema,
            group="g_" + schema,
            table_name_format=table_name_format,
            soft_delete=soft_delete,
        )
        made.append((w, schema))
        return w

    yield make
    for w, schema in made:
        w.close()
        execute(warehouse_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        execute(warehouse_url, f"DELETE FROM cdc.table_map WHERE target_schema = '{schema}'")
        execute(warehouse_url, f"DELETE FROM cdc.keyless_position WHERE target_schema = '{schema}'")


def _table(schema: str) -> TableId:
    return TableId(schema, "no_pk")


def rows(url: str, schema: str, table: str) -> list[tuple[object, ...]]:
    return query(url, f'SELECT a, b FROM "{schema}"."{table}" ORDER BY a, b')


def counts(result: FlushResult) -> tuple[int, int, int]:
    return result.rows, result.skipped, result.dead


def test_a_keyless_flush_applied_again_changes_nothing(writer: Writer, warehouse_url: str) -> None:
    w = writer()
    inserts = recorded()[:3]
    assert counts(w.apply(flush_of(inserts))) == (3, 0, 0)
    assert counts(w.apply(flush_of(inserts))) == (0, 3, 0)
    assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "one"), (2, "two"), (2, "two")]


def test_changes_sent_again_at_new_offsets_are_skipped_and_only_new_ones_apply(
    writer: Writer, warehouse_url: str
) -> None:
    """Connect killed: the changes since its last committed source offset come again, at new Kafka
    offsets, with the same source positions; among them one not applied yet."""
    w = writer()
    first = recorded()[:5]  # 3 inserts, the update, the first delete of (2,two)
    assert counts(w.apply(flush_of(first))) == (5, 0, 0)
    # of two identical rows, a delete removes exactly one
    assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "uno"), (2, "two")]
    again = recorded(shift=100)[2:8]  # insert 3, update, delete, tombstone, the second delete, tombstone
    assert counts(w.apply(flush_of(again))) == (1, 3, 0)
    assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "uno")]
    assert query(
        warehouse_url,
        "SELECT topic, kafka_partition, commit_lsn, lsn, change_order FROM cdc.keyless_position "
        "WHERE target_schema = %s",
        (w._schema,),
    ) == [("cdc.fx.no_pk", 0, 108123552, 108137952, 6)]  # the second delete: its table's 6th change of the transaction


def test_soft_deletes_mark_one_live_row_each_once(writer: Writer, warehouse_url: str) -> None:
    w = writer(soft_delete=True)
    assert counts(w.apply(flush_of(recorded()))) == (6, 0, 0)  # 3 inserts, an update, 2 deletes
    stored = query(
        warehouse_url,
        f'SELECT a, b, _cdc_op, _cdc_deleted_at IS NOT NULL FROM "{w._schema}".fx__no_pk ORDER BY a, b, _cdc_op',
    )
    # each delete marked a different one of the two identical rows
    assert stored == [(1, "uno", "u", False), (2, "two", "d", True), (2, "two", "d", True)]
    assert counts(w.apply(flush_of(recorded(shift=100)))) == (0, 6, 0)


def test_rows_of_one_copy_batch_share_an_lsn_and_are_told_apart_by_their_order(
    writer: Writer, warehouse_url: str
) -> None:
    """COPY writes many rows in one WAL record: their changes carry one LSN (and one sequence),
    and differ in transaction.data_collection_order. A flush may end inside such a batch."""
    w = writer()
    batch = recorded(same_lsn=True)[:3]  # (1,one), (2,two), (2,two) at one LSN, orders 1, 2, 3
    assert counts(w.apply(flush_of(batch[:1]))) == (1, 0, 0)
    assert counts(w.apply(flush_of(batch[1:]))) == (2, 0, 0)
    assert counts(w.apply(flush_of(recorded(same_lsn=True, shift=100)[:3]))) == (0, 3, 0)  # sent again
    assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "one"), (2, "two"), (2, "two")]


def test_snapshot_reads_sharing_one_position_are_each_applied_once(writer: Writer, warehouse_url: str) -> None:
    """Reads of one snapshot all carry its LSN; their Kafka offsets tell them apart."""
    w = writer()
    reads = recorded(read_version="5000")[:3]  # (1,one), (2,two), (2,two), all at LSN 5000
    assert counts(w.apply(flush_of(reads[:2]))) == (2, 0, 0)
    assert counts(w.apply(flush_of(reads))) == (1, 2, 0)  # the first two again, and the third
    assert counts(w.apply(flush_of(reads))) == (0, 3, 0)
    assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "one"), (2, "two"), (2, "two")]


def test_a_table_gets_the_formats_name_whatever_arrived_first(writer: Writer, warehouse_url: str) -> None:
    names = []
    for order in (("shop", "pagila"), ("pagila", "shop")):
        w = writer()
        for schema in order:
            w.apply(flush_of(recorded(schema)[:1]))
        mapped = query(
            warehouse_url,
            "SELECT source_schema, target_table FROM cdc.table_map WHERE target_schema = %s ORDER BY 1",
            (w._schema,),
        )
        names.append(mapped)
        assert [
            t
            for (t,) in query(
                warehouse_url, "SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1", (w._schema,)
            )
        ] == ["pagila__no_pk", "shop__no_pk"]
    assert names[0] == names[1] == [("pagila", "pagila__no_pk"), ("shop", "shop__no_pk")]


def test_two_tables_for_one_name_stop_the_flush_before_anything_is_stored(writer: Writer, warehouse_url: str) -> None:
    w = writer(table_name_format="{table}")
    with pytest.raises(NameClash) as caught:
        w.check_names([_table("shop"), _table("pagila")])
    assert caught.value.problem == f"pagila.no_pk and shop.no_pk would both be replicated into {w._schema}.no_pk."

    w.apply(flush_of(recorded("shop")[:1]))  # sync --table shop.*, say; then a sync of pagila.* too

    late = flush_of(recorded("pagila")[:3])
    late.offsets = {("cdc.pagila.no_pk", 0): 3}
    with pytest.raises(NameClash) as caught:
        w.apply(late)
    assert caught.value.problem == (
        f"pagila.no_pk would be replicated into {w._schema}.no_pk, which cdc.table_map already gives to shop.no_pk."
    )
    assert rows(warehouse_url, w._schema, "no_pk") == [(1, "one")]
    assert w.stored_offsets(w._group, [("cdc.pagila.no_pk", 0)]) == {}


def test_a_table_not_made_by_cdc_is_never_written_into(writer: Writer, warehouse_url: str) -> None:
    w = writer()
    w.prepare()
    execute(warehouse_url, f'CREATE TABLE "{w._schema}".fx__no_pk (a integer, b text)')
    with pytest.raises(ConfigError) as caught:
        w.apply(flush_of(recorded()[:1]))
    assert caught.value.problem == (
        f"fx.no_pk would be replicated into {w._schema}.fx__no_pk, but that table exists and was not made by cdc "
        "(it has no _cdc_commit_lsn column)."
    )
    assert rows(warehouse_url, w._schema, "fx__no_pk") == []


def test_a_warehouse_named_by_the_old_rule_keeps_its_tables(
    warehouse_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A table map made before names were per warehouse schema and by format: its key is widened
    and its names honoured; a table it does not map gets the format's name."""
    database = f"wh_legacy_{uuid.uuid4().hex[:8]}"
    execute(warehouse_url, f'CREATE DATABASE "{database}"')
    url = warehouse_url.rsplit("/", 1)[0] + "/" + database
    try:
        execute(
            url,
            """CREATE SCHEMA cdc;
            CREATE TABLE cdc.table_map (
                source_schema text NOT NULL, source_table text NOT NULL, target_schema text NOT NULL,
                target_table text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (source_schema, source_table), UNIQUE (target_schema, target_table));
            INSERT INTO cdc.table_map VALUES ('shop', 'no_pk', 'replica', 'no_pk', now());""",
        )
        w = PostgresWarehouse(url, schema="replica", group="g")
        try:
            with caplog.at_level(logging.INFO, logger="cdc.warehouse.postgres"):
                w.check_names([_table("shop"), _table("pagila")])
            # What check_names said (apply logs too when an earlier test left cdc's loggers at INFO).
            said = [r.getMessage() for r in caplog.records]
            w.apply(flush_of(recorded("shop")[:1] + recorded("pagila")[:1]))
        finally:
            w.close()
        assert said == [
            "1 table(s) keep the warehouse name cdc.table_map gave them before, not the one "
            "CDC_TABLE_NAME_FORMAT='{schema}__{table}' gives: shop.no_pk -> replica.no_pk (the README's "
            "'Warehouse table names' says how to move them)"
        ]
        assert query(url, "SELECT source_schema, target_table FROM cdc.table_map ORDER BY 1") == [
            ("pagila", "pagila__no_pk"),
            ("shop", "no_pk"),
        ]
        assert query(
            url,
            "SELECT array_agg(a.attname ORDER BY a.attname) FROM pg_constraint c JOIN pg_attribute a "
            "ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey) WHERE c.conrelid = 'cdc.table_map'::regclass "
            "AND c.contype = 'p'",
        ) == [(["source_schema", "source_table", "target_schema"],)]
    finally:
        drop_database(warehouse_url, database)


def test_a_replayed_letter_is_marked_with_its_rows_and_never_applied_twice(writer: Writer, warehouse_url: str) -> None:
    """`cdc dlq replay`: a keyless letter is applied below the high-water mark (on purpose), marked
    replayed in the same transaction; a letter another replay took meanwhile stops the flush."""
    w = writer()
    messages = recorded()
    assert counts(w.apply(flush_of(messages[:3]))) == (3, 0, 0)
    origin, key, value = messages[1]  # (2,two): as if the warehouse had refused it then
    ((letter,),) = query(
        warehouse_url,
        "INSERT INTO cdc.dead_letter (consumer_group, topic, kafka_partition, kafka_offset, message_key, "
        "message_value, reason) VALUES (%s, %s, %s, %s, NULL, %s, 'refused') RETURNING id",
        (w._group, origin.topic, origin.partition, origin.offset, value),
    )
    try:
        replay = flush_of([(origin, key, value)])
        replay.replaying = {origin: letter}
        assert counts(w.apply(replay)) == (1, 0, 0)
        assert query(warehouse_url, "SELECT replayed_at IS NOT NULL FROM cdc.dead_letter WHERE id = %s", (letter,)) == [
            (True,)
        ]
        with pytest.raises(TerminalError) as caught:
            w.apply(replay)  # a second replay that read the letter before the first committed
        assert caught.value.problem == (
            f"dead letter(s) {letter} were replayed by another cdc dlq replay meanwhile; nothing was applied."
        )
        assert rows(warehouse_url, w._schema, "fx__no_pk") == [(1, "one"), (2, "two"), (2, "two"), (2, "two")]
    finally:
        execute(warehouse_url, f"DELETE FROM cdc.dead_letter WHERE id = {letter}")


def test_a_writer_starting_beside_running_flushes_takes_no_lock_on_cdcs_tables(
    writer: Writer, warehouse_url: str
) -> None:
    """A process starting while others flush: with cdc's tables up to date its bootstrap runs no
    DDL, which would lock those tables one after another against the flushes (a deadlock was
    seen, 40P01, with two processes starting beside running ones). Shown against a transaction
    that holds a row lock on each of cdc's tables, as a flush holds some."""
    writer().prepare()  # cdc's tables up to date
    import psycopg2

    flush = psycopg2.connect(warehouse_url)
    try:
        with flush.cursor() as cur:
            for table in ("kafka_offsets", "schema_change", "alert_outbox", "source_ddl", "backfill_run"):
                cur.execute(f"LOCK TABLE cdc.{table} IN ROW EXCLUSIVE MODE")
            started = writer()
            thread = threading.Thread(target=started.prepare, daemon=True)
            thread.start()
            thread.join(20)
            waited = thread.is_alive()  # blocked behind the transaction above
    finally:
        flush.rollback()
        flush.close()
    thread.join(30)
    assert not waited, "the starting writer's bootstrap waited for the running flush's locks"


def test_a_row_refused_in_a_batch_the_fast_path_kept_is_dead_lettered_alone(
    writer: Writer, warehouse_url: str, fast: Extension
) -> None:
    """A batch the compiled fast path kept (its rows in the extension, written from its COPY text)
    with a row the warehouse refuses (a NUL byte, which PostgreSQL's text cannot hold): the batch
    is made events and halved until the row is found, which is dead-lettered with the warehouse's
    reason; every other row is stored."""
    prefix, key_prefix = _small_table([INT64, {"type": "string", "optional": True, "field": "name"}], "t")
    names = {n: "nul \u0000 byte" if n == 16 else f"row {n}" for n in range(1, 32)}
    records = _records(
        [(key_prefix + b'{"id":%d}}' % n, _message(prefix, "c", n, {"name": name}, 8 * n)) for n, name in names.items()]
    )
    decoder = FastDecoder(EnvelopeDecoder(), fast)
    schema = f"wh_replays_{uuid.uuid4().hex[:8]}"
    w = writer(schema)
    taught = Buffer()
    decoder.into(records[:1], taught)  # the first message teaches the decoder the table's shape
    assert counts(w.apply(Flush(taught.batches(), {}))) == (1, 0, 0)
    kept = Buffer()
    decoder.into(records[1:], kept)
    (batch,) = kept.batches()
    assert batch.fast is not None and len(batch.fast) == 30  # kept in the extension, no event made
    result = w.apply(Flush(kept.batches(), {}))
    assert counts(result) == (29, 0, 1)
    assert result.dead_origins == (Origin("cdc.public.t", 0, 15),)
    reason = query(warehouse_url, "SELECT reason FROM cdc.dead_letter WHERE consumer_group = %s", ("g_" + schema,))
    assert len(reason) == 1 and "the warehouse cannot store this row" in reason[0][0], reason
    stored = query(warehouse_url, f'SELECT id, name FROM "{schema}"."public__t" ORDER BY id')
    assert stored == [(n, name) for n, name in names.items() if n != 16]
