"""Debezium change events for an `orders` table, byte for byte as Debezium 3.4's PostgreSQL
connector writes them with this project's connector config (JsonConverter, schemas enabled,
decimal.handling.mode=precise, column.propagate.source.type=.*, provide.transaction.metadata).

The schema text below was taken from messages that Debezium 3.4.3 wrote for the table of
`ORDERS_DDL` on this stack; `python -m benchmarks.events --verify` captures such a table again and
checks that the generated key and value schemas are byte-identical to what Debezium writes, and
that a generated payload has exactly the real payload's shape (same keys in the same order, same
value encodings).

The stream is deterministic for a (seed, events) pair, so the expected final state of any prefix
can be recomputed without building the messages again (`OrdersStream(..., build=False)`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson

DEBEZIUM_VERSION = "3.4.3.Final"
SOURCE_DB = "cdc_source"

ORDERS_DDL = """CREATE TABLE {schema}.orders (
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    amount      numeric(12,2) NOT NULL,
    status      varchar(20) NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamp NOT NULL,
    note        text,
    flag        boolean NOT NULL,
    attrs       jsonb,
    ref         uuid{ref_constraint}
)"""


def orders_ddl(schema: str, ref_not_null: bool = True) -> str:
    return ORDERS_DDL.format(schema=schema, ref_constraint=" NOT NULL" if ref_not_null else "")


def _param(src: str, length: str, scale: str, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    return {
        **(extra or {}),
        "__debezium.source.column.type": src,
        "__debezium.source.column.length": length,
        "__debezium.source.column.scale": scale,
        "__debezium.source.column.name": name,
    }


# The row fields exactly as Debezium describes them (key order matters: it is the JSON text).
ROW_FIELDS: list[dict[str, Any]] = [
    {"type": "int64", "optional": False, "parameters": _param("INT8", "19", "0", "id"), "field": "id"},
    {
        "type": "int32",
        "optional": False,
        "parameters": _param("INT4", "10", "0", "customer_id"),
        "field": "customer_id",
    },
    {
        "type": "bytes",
        "optional": False,
        "name": "org.apache.kafka.connect.data.Decimal",
        "version": 1,
        "parameters": _param("NUMERIC", "12", "2", "amount", {"scale": "2", "connect.decimal.precision": "12"}),
        "field": "amount",
    },
    {"type": "string", "optional": False, "parameters": _param("VARCHAR", "20", "0", "status"), "field": "status"},
    {
        "type": "string",
        "optional": False,
        "name": "io.debezium.time.ZonedTimestamp",
        "version": 1,
        "parameters": _param("TIMESTAMPTZ", "35", "6", "created_at"),
        "field": "created_at",
    },
    {
        "type": "int64",
        "optional": False,
        "name": "io.debezium.time.MicroTimestamp",
        "version": 1,
        "parameters": _param("TIMESTAMP", "29", "6", "updated_at"),
        "field": "updated_at",
    },
    {"type": "string", "optional": True, "parameters": _param("TEXT", "2147483647", "0", "note"), "field": "note"},
    {"type": "boolean", "optional": False, "parameters": _param("BOOL", "1", "0", "flag"), "field": "flag"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Json",
        "version": 1,
        "parameters": _param("JSONB", "2147483647", "0", "attrs"),
        "field": "attrs",
    },
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Uuid",
        "version": 1,
        "parameters": _param("UUID", "2147483647", "0", "ref"),
        "field": "ref",
    },
]
COLUMNS = [f["field"] for f in ROW_FIELDS]


def row_fields(ref_not_null: bool) -> list[dict[str, Any]]:
    """The row fields; `ref` is NOT NULL in the strict shape (then a delete's old image carries
    "ref": "", see _DELETE_FILL), nullable otherwise."""
    return [{**f, "optional": False} if ref_not_null and f["field"] == "ref" else f for f in ROW_FIELDS]


_SOURCE_FIELDS: list[dict[str, Any]] = [
    {"type": "string", "optional": False, "field": "version"},
    {"type": "string", "optional": False, "field": "connector"},
    {"type": "string", "optional": False, "field": "name"},
    {"type": "int64", "optional": False, "field": "ts_ms"},
    {
        "type": "string",
        "optional": True,
        "name": "io.debezium.data.Enum",
        "version": 1,
        "parameters": {"allowed": "true,first,first_in_data_collection,last_in_data_collection,last,false,incremental"},
        "default": "false",
        "field": "snapshot",
    },
    {"type": "string", "optional": False, "field": "db"},
    {"type": "string", "optional": True, "field": "sequence"},
    {"type": "int64", "optional": True, "field": "ts_us"},
    {"type": "int64", "optional": True, "field": "ts_ns"},
    {"type": "string", "optional": False, "field": "schema"},
    {"type": "string", "optional": False, "field": "table"},
    {"type": "int64", "optional": True, "field": "txId"},
    {"type": "int64", "optional": True, "field": "lsn"},
    {"type": "int64", "optional": True, "field": "xmin"},
]


def value_schema(prefix: str, schema: str, table: str, ref_not_null: bool = True) -> dict[str, Any]:
    row = f"{prefix}.{schema}.{table}.Value"
    fields = row_fields(ref_not_null)
    return {
        "type": "struct",
        "fields": [
            {"type": "struct", "fields": fields, "optional": True, "name": row, "field": "before"},
            {"type": "struct", "fields": fields, "optional": True, "name": row, "field": "after"},
            {
                "type": "struct",
                "fields": _SOURCE_FIELDS,
                "optional": False,
                "name": "io.debezium.connector.postgresql.Source",
                "version": 1,
                "field": "source",
            },
            {
                "type": "struct",
                "fields": [
                    {"type": "string", "optional": False, "field": "id"},
                    {"type": "int64", "optional": False, "field": "total_order"},
                    {"type": "int64", "optional": False, "field": "data_collection_order"},
                ],
                "optional": True,
                "name": "event.block",
                "version": 1,
                "field": "transaction",
            },
            {"type": "string", "optional": False, "field": "op"},
            {"type": "int64", "optional": True, "field": "ts_ms"},
            {"type": "int64", "optional": True, "field": "ts_us"},
            {"type": "int64", "optional": True, "field": "ts_ns"},
        ],
        "optional": False,
        "name": f"{prefix}.{schema}.{table}.Envelope",
        "version": 2,
    }


def key_schema(prefix: str, schema: str, table: str) -> dict[str, Any]:
    return {
        "type": "struct",
        "fields": [{"type": "int64", "optional": False, "field": "id"}],
        "optional": False,
        "name": f"{prefix}.{schema}.{table}.Key",
    }


def message_prefix(schema_obj: dict[str, Any]) -> bytes:
    """'{"schema":<schema>,"payload":' as the JsonConverter writes it (compact, keys in order)."""
    return b'{"schema":' + orjson.dumps(schema_obj) + b',"payload":'


# -- values --------------------------------------------------------------------------------------
STATUSES = ("new", "paid", "packed", "shipped", "delivered", "cancelled", "refunded")
CHANNELS = ("web", "ios", "android", "store", "phone")
WORDS = [
    "please",
    "leave",
    "at",
    "the",
    "door",
    "gift",
    "wrap",
    "fragile",
    "call",
    "before",
    "delivery",
    "second",
    "floor",
    "back",
    "entrance",
    "no",
    "plastic",
    "express",
    "customer",
    "asked",
    "for",
    "invoice",
    "repeat",
    "order",
    "discount",
    "applied",
    "loyalty",
    "member",
]
EPOCH = datetime(1970, 1, 1)
_BASE_US = int((datetime(2026, 1, 5, 8, 0, 0) - EPOCH).total_seconds()) * 1_000_000
# What Debezium puts in the non-key columns of a delete's old image (REPLICA IDENTITY DEFAULT
# sends only the key): null for a nullable column, else the type's zero value, exactly as recorded
# from Debezium 3.4 -- for a NOT NULL uuid that is "", which is not a valid uuid.
_DELETE_FILL = {
    "customer_id": 0,
    "amount": "AA==",
    "status": "",
    "created_at": "1970-01-01T00:00:00Z",
    "updated_at": 0,
    "note": None,
    "flag": False,
    "attrs": None,
    "ref": None,
}


def delete_fill(ref_not_null: bool) -> dict[str, Any]:
    return {**_DELETE_FILL, "ref": ""} if ref_not_null else _DELETE_FILL


def decimal_bytes(unscaled: int) -> str:
    """Kafka Connect Decimal: the unscaled value as minimal big-endian two's complement, base64."""
    raw = unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)
    return base64.b64encode(raw).decode()


def zoned_timestamp(micros: int) -> str:
    """io.debezium.time.ZonedTimestamp of a timestamptz(6) column, always 6 fraction digits."""
    return (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def amount_text(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"


def micros_text(micros: int) -> str:
    return (EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%f")


@dataclass(slots=True)
class Row:
    id: int
    customer_id: int
    cents: int
    status: str
    created_us: int
    updated_us: int
    note: str | None
    flag: bool
    attrs: str | None
    ref: str

    def image(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "customer_id": self.customer_id,
            "amount": decimal_bytes(self.cents),
            "status": self.status,
            "created_at": zoned_timestamp(self.created_us),
            "updated_at": self.updated_us,
            "note": self.note,
            "flag": self.flag,
            "attrs": self.attrs,
            "ref": self.ref,
        }

    def column_texts(self) -> dict[str, str | None]:
        """Each column as the warehouse's text of it (see CHECK_EXPRESSIONS)."""
        return {
            "id": str(self.id),
            "customer_id": str(self.customer_id),
            "amount": amount_text(self.cents),
            "status": self.status,
            "created_at": micros_text(self.created_us),
            "updated_at": micros_text(self.updated_us),
            "note": self.note,
            "flag": "true" if self.flag else "false",
            "attrs": self.attrs,
            "ref": self.ref,
        }


# How the checks read each warehouse column as text, so that every consumer's table (whatever
# exact types it chose) can be compared with the generator's expected state.
CHECK_EXPRESSIONS = {
    "id": "id::text",
    "customer_id": "customer_id::text",
    "amount": "amount::numeric(12,2)::text",
    "status": "status::text",
    "created_at": "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
    "updated_at": "to_char(updated_at, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')",
    "note": "note::text",
    "flag": "flag::text",
    "attrs": "attrs::text",
    "ref": "ref::text",
}


def column_digests(rows: Iterator[Row] | list[Row]) -> dict[str, str]:
    """md5 per column over 'id:value' lines ordered by id (NULL as \\N): what CHECK_SQL computes."""
    hashes = {c: hashlib.md5() for c in COLUMNS}  # noqa: S324 - a checksum, not security
    first = {c: True for c in COLUMNS}
    for row in sorted(rows, key=lambda r: r.id):
        texts = row.column_texts()
        for column, text in texts.items():
            line = f"{row.id}:{text if text is not None else chr(92) + 'N'}"
            hashes[column].update((line if first[column] else "\n" + line).encode())
            first[column] = False
    return {c: h.hexdigest() for c, h in hashes.items()}


def check_sql(qualified_table: str) -> str:
    parts = [
        f"md5(coalesce(string_agg(id::text || ':' || coalesce({expr}, '\\N'), E'\\n' ORDER BY id), ''))"
        for expr in CHECK_EXPRESSIONS.values()
    ]
    return f"SELECT count(*), {', '.join(parts)} FROM {qualified_table}"


# -- the stream ----------------------------------------------------------------------------------
@dataclass(slots=True)
class Counts:
    events: int = 0  # change events (c/u/d)
    messages: int = 0  # Kafka messages (events + tombstones)
    inserts: int = 0
    updates: int = 0
    deletes: int = 0
    transactions: int = 0
    bytes: int = 0


@dataclass
class OrdersStream:
    """`events` change events of one orders table: 60% inserts, 30% updates of live rows, 10%
    deletes of live rows (each followed by a tombstone), in transactions of 1-8 events."""

    events: int
    topic_prefix: str
    schema: str
    table: str = "orders"
    seed: int = 1
    ref_not_null: bool = True  # the strict shape (see row_fields)
    build: bool = True  # False: only track the state (to recompute the expected result)
    rows: dict[int, Row] = field(default_factory=dict)
    counts: Counts = field(default_factory=Counts)

    def __post_init__(self) -> None:
        self.key_prefix = message_prefix(key_schema(self.topic_prefix, self.schema, self.table))
        self.value_prefix = message_prefix(value_schema(self.topic_prefix, self.schema, self.table, self.ref_not_null))

    def messages(self, limit_messages: int | None = None) -> Iterator[tuple[bytes, bytes | None]]:  # noqa: PLR0915
        """(key, value) of every message in topic order; value None is a tombstone."""
        rng = random.Random(self.seed)  # noqa: S311 - reproducible test data, not secrets
        live: list[int] = []
        where: dict[int, int] = {}
        next_id = 1
        lsn = 0x7_1000_0000  # a plausible WAL position (~30 GB into the WAL)
        last_commit = lsn
        tx_id = 48_213
        commit_us = _BASE_US
        emit_us = commit_us + 180_000
        dumps = orjson.dumps
        key_prefix, value_prefix = self.key_prefix, self.value_prefix
        source_name, schema, table = self.topic_prefix, self.schema, self.table
        c = self.counts
        fill = delete_fill(self.ref_not_null)

        while c.events < self.events:
            tx_size = min(rng.choice((1, 1, 1, 2, 2, 3, 4, 5, 8)), self.events - c.events)
            tx_id += 1 + (rng.random() < 0.2)
            commit_us += rng.randint(200, 800)  # ~2,000 transactions per second of source time
            seq0 = str(last_commit)
            commit_ms = commit_us // 1000
            for order in range(1, tx_size + 1):
                lsn += rng.choice((152, 200, 248, 304, 328, 392))
                r = rng.random()
                if r < 0.6 or len(live) < 10:
                    op = "c"
                    row = Row(
                        id=next_id,
                        customer_id=rng.randint(1, 250_000),
                        cents=rng.randint(100, 250_000),
                        status="new",
                        created_us=commit_us,
                        updated_us=commit_us,
                        note=None if rng.random() < 0.3 else " ".join(rng.choices(WORDS, k=rng.randint(2, 12))),
                        flag=rng.random() < 0.5,
                        attrs=None
                        if rng.random() < 0.2
                        else (
                            f'{{"items": {rng.randint(1, 9)}, "source": "{rng.choice(CHANNELS)}", '
                            f'"priority": {"true" if rng.random() < 0.1 else "false"}}}'
                        ),
                        ref="%08x-%04x-4%03x-%04x-%012x"  # noqa: UP031 - the uuid text form
                        % (
                            rng.getrandbits(32),
                            rng.getrandbits(16),
                            rng.getrandbits(12),
                            0x8000 | rng.getrandbits(14),
                            rng.getrandbits(48),
                        ),
                    )
                    next_id += 1
                    where[row.id] = len(live)
                    live.append(row.id)
                    self.rows[row.id] = row
                    before, after = None, row
                    c.inserts += 1
                elif r < 0.9:
                    op = "u"
                    row = self.rows[live[rng.randrange(len(live))]]
                    row.status = rng.choice(STATUSES)
                    if rng.random() < 0.3:
                        row.cents = rng.randint(100, 250_000)
                    if rng.random() < 0.2:
                        row.note = " ".join(rng.choices(WORDS, k=rng.randint(2, 12)))
                    row.flag = rng.random() < 0.5
                    row.updated_us = commit_us
                    before, after = None, row
                    c.updates += 1
                else:
                    op = "d"
                    victim = live[rng.randrange(len(live))]
                    last = live.pop()
                    if last != victim:
                        live[where[victim]] = last
                        where[last] = where[victim]
                    del where[victim]
                    row = self.rows.pop(victim)
                    before, after = row, None
                    c.deletes += 1
                c.events += 1
                emit_us += rng.randint(15, 60)
                if self.build:
                    key = key_prefix + b'{"id":%d}}' % row.id
                    payload = {
                        "before": None if before is None else {"id": before.id, **fill},
                        "after": None if after is None else after.image(),
                        "source": {
                            "version": DEBEZIUM_VERSION,
                            "connector": "postgresql",
                            "name": source_name,
                            "ts_ms": commit_ms,
                            "snapshot": "false",
                            "db": SOURCE_DB,
                            "sequence": f'["{seq0}","{lsn}"]',
                            "ts_us": commit_us,
                            "ts_ns": commit_us * 1000,
                            "schema": schema,
                            "table": table,
                            "txId": tx_id,
                            "lsn": lsn,
                            "xmin": None,
                        },
                        "transaction": {"id": f"{tx_id}:{lsn}", "total_order": order, "data_collection_order": order},
                        "op": op,
                        "ts_ms": emit_us // 1000,
                        "ts_us": emit_us,
                        "ts_ns": emit_us * 1000 + (emit_us * 7919) % 1000,
                    }
                    value = value_prefix + dumps(payload) + b"}"
                    c.bytes += len(key) + len(value)
                    c.messages += 1
                    yield key, value
                    if op == "d":
                        c.bytes += len(key)
                        c.messages += 1
                        yield key, None
                else:
                    c.messages += 2 if op == "d" else 1
                    yield b"", b""
                if limit_messages is not None and c.messages >= limit_messages:
                    return
            last_commit = lsn + rng.choice((56, 104, 160))
            lsn = last_commit
            c.transactions += 1


def expected_after(events: int, topic_prefix: str, schema: str, seed: int, messages: int | None = None) -> OrdersStream:
    """The stream's state after its first `messages` messages (all when None), without building them."""
    stream = OrdersStream(events, topic_prefix, schema, seed=seed, build=False)
    for _ in stream.messages(limit_messages=messages):
        pass
    return stream


# -- verification against a real capture ---------------------------------------------------------
def same_shape(a: Any, b: Any) -> bool:
    """Same JSON shape: objects with the same keys in the same order, leaves of the same kind (a
    null matches any kind: a nullable column is null in one row and set in another)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return list(a) == list(b) and all(same_shape(a[k], b[k]) for k in a)
    return a is None or b is None or type(a) is type(b)


def verify(ref_not_null: bool) -> int:  # noqa: PLR0915 - one linear check
    """Capture a real orders table through Debezium and compare its messages with generated ones."""
    import uuid

    import psycopg2
    from kafka import KafkaConsumer, TopicPartition

    from cdc import connector
    from cdc.stack.state import load_local_settings

    settings = load_local_settings()
    schema = f"bench_verify_{uuid.uuid4().hex[:8]}"
    topic = f"{settings.topic_prefix}.{schema}.orders"
    conn = psycopg2.connect(settings.require_source_url())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(orders_ddl(schema, ref_not_null))
        connector.apply(settings, None, print)
        row = Row(7, 42, 123450, "new", _BASE_US + 123456, _BASE_US + 500000, "a note", True, None, "")
        row.attrs = '{"items": 3, "source": "web", "priority": false}'
        row.ref = "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"
        with conn.cursor() as cur:
            cur.execute(
                f"INSERT INTO {schema}.orders VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                (
                    row.id,
                    row.customer_id,
                    amount_text(row.cents),
                    row.status,
                    micros_text(row.created_us) + "+00",
                    micros_text(row.updated_us),
                    row.note,
                    row.flag,
                    row.attrs,
                    row.ref,
                ),
            )
            cur.execute(f"UPDATE {schema}.orders SET status = 'paid' WHERE id = 7")
            cur.execute(f"DELETE FROM {schema}.orders WHERE id = 7")
        consumer = KafkaConsumer(bootstrap_servers=settings.require_kafka(), group_id=None, enable_auto_commit=False)
        deadline = time.monotonic() + 120
        while not consumer.partitions_for_topic(topic):
            if time.monotonic() > deadline:
                raise SystemExit(f"topic {topic} never appeared")
            time.sleep(0.5)
            consumer.topics()
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        real: list[tuple[bytes, bytes | None]] = []
        while len(real) < 4 and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                real.extend((r.key, r.value) for r in records)
        consumer.close()
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.close()
        from benchmarks.common import delete_topic

        delete_topic(settings.require_kafka(), topic)
    if len(real) < 4:
        print(f"FAIL: only {len(real)} messages captured")
        return 1

    gen = OrdersStream(200, settings.topic_prefix, schema, ref_not_null=ref_not_null)
    generated = list(gen.messages())
    ok = True

    def check(what: str, good: bool) -> None:
        nonlocal ok
        ok &= good
        print(f"{'ok  ' if good else 'FAIL'} {what}")

    check("key schema text identical", real[0][0].startswith(gen.key_prefix))
    check("value schema text identical", all(v is None or v.startswith(gen.value_prefix) for _, v in real))
    by_op: dict[str, dict[str, Any]] = {}
    for _, v in generated:
        if v:
            p = json.loads(v)["payload"]
            by_op.setdefault(p["op"], p)
    for _, v in real:
        if v is None:
            continue
        p = json.loads(v)["payload"]
        check(f"op {p['op']}: payload shape identical", same_shape(p, by_op[p["op"]]))
        if p["op"] == "c":
            check("insert after image identical to the generator's encoding", p["after"] == row.image())
        if p["op"] == "d":
            check(
                "delete before image (zero-filled non-key columns) identical",
                p["before"] == {"id": 7, **delete_fill(ref_not_null)},
            )
    check("tombstone follows the delete", real[-1][1] is None and generated_has_tombstones(generated))
    return 0 if ok else 1


def generated_has_tombstones(messages: list[tuple[bytes, bytes | None]]) -> bool:
    return any(v is None for _, v in messages)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--verify", action="store_true", help="compare with a real Debezium capture (needs the stack)")
    parser.add_argument("--nullable-ref", action="store_true", help="ref a nullable uuid (default NOT NULL)")
    parser.add_argument("--sample", type=int, default=0, help="print N generated messages")
    args = parser.parse_args(argv)
    if args.verify:
        return verify(not args.nullable_ref)
    stream = OrdersStream(max(args.sample, 1), "cdc", "bench_sample", ref_not_null=not args.nullable_ref)
    for i, (key, value) in enumerate(stream.messages()):
        if i >= args.sample:
            break
        sys.stdout.write(json.dumps({"key": key.decode(), "value": value.decode() if value else None}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
