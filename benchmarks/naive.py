"""The baseline: a naive row-by-row consumer, as one would first write it.

kafka-python consumer; every message fully parsed with the standard `json` module; one
INSERT ... ON CONFLICT DO UPDATE (or DELETE) per event through psycopg2; a database commit and a
Kafka offset commit every 1000 events. No version guard, no batching, no schema cache.

Run by benchmarks.throughput as a subprocess (so its memory is its own):
    python -m benchmarks.naive --topic T --group G --schema S --end OFFSET --max-seconds 180
It prints one JSON line with what it did.
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal

import psycopg2
from kafka import KafkaConsumer, OffsetAndMetadata, TopicPartition

EPOCH = datetime(1970, 1, 1)
COMMIT_EVERY = 1000

CREATE = """CREATE TABLE IF NOT EXISTS {schema}.orders (
    id bigint PRIMARY KEY, customer_id integer NOT NULL, amount numeric(12,2) NOT NULL,
    status varchar(20) NOT NULL, created_at timestamptz NOT NULL, updated_at timestamp NOT NULL,
    note text, flag boolean NOT NULL, attrs jsonb, ref uuid)"""
UPSERT = """INSERT INTO {schema}.orders
    (id, customer_id, amount, status, created_at, updated_at, note, flag, attrs, ref)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (id) DO UPDATE SET customer_id = EXCLUDED.customer_id, amount = EXCLUDED.amount,
    status = EXCLUDED.status, created_at = EXCLUDED.created_at, updated_at = EXCLUDED.updated_at,
    note = EXCLUDED.note, flag = EXCLUDED.flag, attrs = EXCLUDED.attrs, ref = EXCLUDED.ref"""
DELETE = "DELETE FROM {schema}.orders WHERE id = %s"


def decimal_of(b64: str, scale: int) -> Decimal:
    return Decimal(int.from_bytes(base64.b64decode(b64), "big", signed=True)).scaleb(-scale)


def connect(url: str, wait: float = 120) -> psycopg2.extensions.connection:
    deadline = time.monotonic() + wait
    while True:
        try:
            return psycopg2.connect(url)
        except psycopg2.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def peak_rss_mb() -> float | None:
    for line in open("/proc/self/status"):  # noqa: SIM115
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0915 - deliberately one plain loop
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--warehouse-url", required=True)
    p.add_argument("--topic", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--schema", required=True)
    p.add_argument("--end", type=int, required=True, help="stop at this offset (the topic's end)")
    p.add_argument("--max-seconds", type=float, default=180, help="stop at the next commit after this long")
    args = p.parse_args(argv)
    started = time.monotonic()

    db = connect(args.warehouse_url)
    with db.cursor() as cur:
        cur.execute(f"CREATE SCHEMA IF NOT EXISTS {args.schema}")
        cur.execute(CREATE.format(schema=args.schema))
    db.commit()
    upsert, delete = UPSERT.format(schema=args.schema), DELETE.format(schema=args.schema)

    consumer = KafkaConsumer(
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    tp = TopicPartition(args.topic, 0)
    consumer.assign([tp])
    committed = position = consumer.committed(tp) or 0
    consumer.seek(tp, position)
    events = messages = since_commit = reconnects = 0
    cur = db.cursor()
    timed_out = False
    while position < args.end and not timed_out:
        try:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    messages += 1
                    position = record.offset + 1
                    if record.value is None:
                        continue  # tombstone: the delete came before it
                    msg = json.loads(record.value)
                    key = json.loads(record.key)["payload"]
                    payload = msg["payload"]
                    op = payload["op"]
                    if op == "d":
                        cur.execute(delete, (key["id"],))
                    else:
                        a = payload["after"]
                        cur.execute(
                            upsert,
                            (
                                a["id"],
                                a["customer_id"],
                                decimal_of(a["amount"], 2),
                                a["status"],
                                a["created_at"],
                                EPOCH + timedelta(microseconds=a["updated_at"]),
                                a["note"],
                                a["flag"],
                                a["attrs"],
                                a["ref"],
                            ),
                        )
                    events += 1
                    since_commit += 1
                    if since_commit >= COMMIT_EVERY:
                        db.commit()
                        consumer.commit({tp: OffsetAndMetadata(position, "", -1)})
                        committed, since_commit = position, 0
                        if time.monotonic() - started > args.max_seconds:
                            timed_out = True
                            break
                if timed_out:
                    break
        except psycopg2.OperationalError:
            # The warehouse went away (restarted): reconnect and go on from the last commit.
            reconnects += 1
            events -= since_commit
            messages -= position - committed
            since_commit, position = 0, committed
            db = connect(args.warehouse_url)
            cur = db.cursor()
            consumer.seek(tp, committed)
    db.commit()
    consumer.commit({tp: OffsetAndMetadata(position, "", -1)})
    elapsed = time.monotonic() - started
    out = {
        "events": events,
        "messages": messages,
        "next_offset": position,
        "elapsed_s": elapsed,
        "complete": position >= args.end,
        "peak_rss_mb": peak_rss_mb(),
        "reconnects": reconnects,
    }
    consumer.close()
    db.close()
    sys.stdout.write(json.dumps(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
