"""What the exactly-once guard of a keyless table costs a flush: cdc's warehouse writer applies the
same flushes of inserts into a table without a primary key, once with the guard (read and lock the
table's high-water mark per partition, skip what it covers, move it; cdc.keyless_position) and
once without it (the writer's guard step replaced by one that takes every event), alternating
which goes first, into two warehouse schemas. Then the same flushes again with the guard: a replay, all skipped.

Warehouse only: the running stack's warehouse PostgreSQL, no Kafka. The events are fx.no_pk's
recorded insert, with positions and offsets made unique.

    python -m benchmarks.keyless_guard [--flushes 10] [--rows 20000]
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from pathlib import Path
from typing import Any

from benchmarks.common import Stack, machine_facts, save_result, table_text
from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder
from cdc.events import ChangeEvent, Origin
from cdc.warehouse import Flush
from cdc.warehouse.postgres import PostgresWarehouse
from cdc.warehouse.statements import Target

RECORDED = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "debezium" / "fx.no_pk.jsonl"


def flushes(count: int, rows: int) -> list[Flush]:
    first = json.loads(RECORDED.read_text(encoding="utf-8").splitlines()[0])
    template = json.loads(first["value"])
    decoder = EnvelopeDecoder()
    out = []
    for f in range(count):
        buffer = Buffer()
        for r in range(rows):
            n = f * rows + r
            payload = template["payload"]
            payload["after"] = {"a": n, "b": f"row {n}"}
            payload["source"]["sequence"] = f'["1000","{2000 + n}"]'
            value = json.dumps(template).encode()
            event = decoder.decode(Origin("cdc.fx.no_pk", 0, n), None, value)
            assert event is not None
            buffer.add(event)
        out.append(Flush(buffer.batches(), {}))
    return out


def unguarded(writer: PostgresWarehouse) -> PostgresWarehouse:
    def take_all(_cur: Any, _target: Target, events: list[ChangeEvent], _work: Any) -> list[ChangeEvent]:
        return events

    writer._unapplied = take_all  # type: ignore[method-assign]
    return writer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--flushes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=20_000, help="events per flush (CDC_FLUSH_ROWS' default)")
    args = parser.parse_args()

    stack = Stack.load()
    work = flushes(args.flushes, args.rows)
    tag = uuid.uuid4().hex[:8]
    schemas = {"guarded": f"bench_guard_{tag}", "unguarded": f"bench_noguard_{tag}"}
    writers = {
        name: PostgresWarehouse(stack.warehouse_url, schema=schema, group=f"bench-{schema}")
        for name, schema in schemas.items()
    }
    unguarded(writers["unguarded"])
    seconds = {"guarded": 0.0, "unguarded": 0.0, "replayed": 0.0}
    try:
        for writer in writers.values():
            writer.prepare()
        for i, flush in enumerate(work):
            # Each goes first every other flush: whatever the first pays (a cold cache), both pay.
            for name in ("guarded", "unguarded") if i % 2 else ("unguarded", "guarded"):
                started = time.perf_counter()
                result = writers[name].apply(flush)
                seconds[name] += time.perf_counter() - started
                assert result.rows == args.rows, result
        for flush in work:
            started = time.perf_counter()
            result = writers["guarded"].apply(flush)
            seconds["replayed"] += time.perf_counter() - started
            assert (result.rows, result.skipped) == (0, args.rows), result
    finally:
        for name, writer in writers.items():
            conn = writer._connection()
            with conn.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schemas[name]}" CASCADE')
                cur.execute("DELETE FROM cdc.table_map WHERE target_schema = %s", (schemas[name],))
                cur.execute("DELETE FROM cdc.keyless_position WHERE target_schema = %s", (schemas[name],))
            conn.commit()
            writer.close()

    events = args.flushes * args.rows
    rates = {name: events / s for name, s in seconds.items()}
    rows = [
        [name, f"{seconds[name]:.2f}", f"{rates[name]:,.0f}", f"{rates[name] / rates['unguarded']:.2f}"]
        for name in ("unguarded", "guarded", "replayed")
    ]
    print(table_text(["flushes of keyless inserts", "seconds", "events/s", "vs unguarded"], rows))
    path = save_result(
        "keyless_guard",
        {
            "benchmark": "keyless_guard",
            "options": vars(args),
            "seconds": seconds,
            "events_per_s": rates,
            "guarded_vs_unguarded": rates["guarded"] / rates["unguarded"],
            "machine": machine_facts(stack),
        },
    )
    print(f"written {path}")


if __name__ == "__main__":
    main()
