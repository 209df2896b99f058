"""What a flush costs the warehouse, per event: the throughput benchmark's events (benchmarks/
events.py), decoded and compacted as `cdc sync` does, applied by cdc's own PostgresWarehouse in
flushes of 20,000, each statement timed at the client (COPY into staging, the MERGE, the rest of
the flush's bookkeeping), and the warehouse server's own CPU read from /proc around the run. The
last flush's MERGE is run again under EXPLAIN ANALYZE (rolled back) to show where its time goes.

Needs the local stack (cdc stack up); writes schema bench_wh_<run> and drops it afterwards.

    python -m benchmarks.warehouse_cost [--events 200000]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
import uuid
from collections import defaultdict
from typing import Any

import psycopg2.extensions

from benchmarks import common as c
from benchmarks.sync_cpu import records
from cdc.buffer import Buffer, TableBatch
from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage
from cdc.decode.fast import FastDecoder
from cdc.events import Origin, new_tuple
from cdc.fastpath import load
from cdc.warehouse import Flush
from cdc.warehouse import statements as stmt
from cdc.warehouse.copy import staging_text
from cdc.warehouse.postgres import PostgresWarehouse

FLUSH = 20_000
SPENT: dict[str, float] = defaultdict(float)


class TimedCursor(psycopg2.extensions.cursor):
    """Times each statement at the client, by its kind."""

    def execute(self, query: Any, vars: Any = None) -> None:
        kind = "MERGE" if _text(query, self).startswith("MERGE") else "other statements"
        started = time.perf_counter()
        try:
            super().execute(query, vars)
        finally:
            SPENT[kind] += time.perf_counter() - started

    def copy_expert(self, sql: str, file: Any, size: int = 8192) -> None:
        started = time.perf_counter()
        try:
            super().copy_expert(sql, file, size)
        finally:
            SPENT["COPY into staging"] += time.perf_counter() - started


def flushes(events: int) -> list[Flush]:
    messages = records(events)
    decoder = EnvelopeDecoder()
    extension = load()
    fast = FastDecoder(decoder, extension) if extension is not None else None
    made: list[Flush] = []
    buffer = Buffer()
    for start in range(0, len(messages), 10_000):
        poll = messages[start : start + 10_000]
        if fast is not None:
            fast.into(poll, buffer)
        else:
            for record in poll:
                try:
                    event = decoder.decode(new_tuple(Origin, record[:3]), record.key, record.value, None)
                except PoisonMessage:
                    continue
                if event is not None:
                    buffer.add(event)
        if len(buffer) >= FLUSH or start + 10_000 >= len(messages):
            made.append(Flush(buffer.batches(), {("cdc.bench.orders", 0): start + len(poll)}))
            buffer = Buffer()
    return made


def _rows(batch: TableBatch) -> int:
    """The rows a batch holds, without making the extension's kept rows events."""
    return len(batch.fast) if batch.fast is not None else len(batch.events())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=200_000)
    args = parser.parse_args(argv)
    stack = c.Stack.load()
    schema = f"bench_wh_{uuid.uuid4().hex[:8]}"
    prepared = flushes(args.events)
    rows = sum(_rows(b) for f in prepared for b in f.tables)
    warehouse = PostgresWarehouse(stack.warehouse_url, schema=schema, group=schema)
    try:
        warehouse.prepare()
        conn = warehouse._connection()
        conn.cursor_factory = TimedCursor
        warehouse.apply(prepared[0])  # creates the table: not timed
        SPENT.clear()
        before = c.cpu_by_part(stack)
        started = time.perf_counter()
        for flush in prepared[1:-1]:
            warehouse.apply(flush)
        wall = time.perf_counter() - started
        after = c.cpu_by_part(stack)
        timed = sum(_rows(b) for f in prepared[1:-1] for b in f.tables)
        explain = _explain(conn, warehouse, prepared[-1])  # a flush not applied yet: real work
        formats = _copy_formats(stack, prepared[-1])
    finally:
        cleanup = c.warehouse_conn(stack)
        cleanup.cursor().execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        cleanup.cursor().execute("DELETE FROM cdc.table_map WHERE target_schema = %s", (schema,))
        cleanup.close()
        warehouse.close()
    events = args.events * (len(prepared) - 2) // len(prepared)
    result: dict[str, Any] = {
        "benchmark": "warehouse_cost",
        "started_utc": c.now_stamp(),
        "args": vars(args),
        "machine": c.cpu_facts(),
        "flushes_timed": len(prepared) - 1,
        "rows_staged_timed": timed,
        "rows_staged_per_event": round(rows / args.events, 3),
        "wall_us_per_event": round(wall / events * 1e6, 2),
        "client_us_per_event": {k: round(v / events * 1e6, 2) for k, v in SPENT.items()},
        "warehouse_server_cpu_us_per_event": round(
            (after["PostgreSQL (warehouse)"] - before["PostgreSQL (warehouse)"]) / events * 1e6, 2
        ),
        "explain_last_merge": explain,
        "copy_text_vs_binary_us_per_row": formats,
    }
    print(f"{events:,} events ({timed:,} staged rows after compaction) in {len(prepared) - 2} flushes")
    for kind, us in result["client_us_per_event"].items():
        print(f"  {kind:<20} {us:6.2f} µs/event (client wall time)")
    print(f"  flush, whole:        {result['wall_us_per_event']:6.2f} µs/event")
    print(f"  warehouse CPU:       {result['warehouse_server_cpu_us_per_event']:6.2f} µs/event (server processes)")
    print(
        f"  COPY of one flush's staging rows, server side: text {formats['text']:.2f} µs/row, "
        f"binary {formats['binary']:.2f} µs/row (best of 5 each)"
    )
    print("  EXPLAIN ANALYZE of the next flush's MERGE:")
    for line in explain:
        print("    " + line)
    print(f"results: {c.save_result('warehouse_cost', result, result['started_utc'])}")
    return 0


def _explain(conn: Any, warehouse: PostgresWarehouse, flush: Flush) -> list[str]:
    """The flush applied again up to its MERGE, which runs under EXPLAIN (ANALYZE, BUFFERS); the
    warehouse then drops the connection (so the transaction rolls back)."""
    captured: list[str] = []

    class Explaining(TimedCursor):
        def execute(self, query: Any, vars: Any = None) -> None:
            text = _text(query, self)
            if text.startswith("MERGE"):
                super().execute("EXPLAIN (ANALYZE, BUFFERS, TIMING OFF) " + text, vars)
                captured.extend(row[0] for row in self.fetchall())
                raise _Done
            super().execute(query, vars)

    conn.cursor_factory = Explaining
    with contextlib.suppress(_Done):
        warehouse.apply(flush)
    return captured


def _copy_formats(stack: c.Stack, flush: Flush) -> dict[str, float]:
    """The same staging rows COPYed as text (what cdc sends) and as binary (what PostgreSQL itself
    writes for them), into a temp table like cdc's staging table: what binary would save."""
    batch = flush.tables[0]
    text, _ = staging_text(batch.events(), batch.schema.columns)
    conn = c.warehouse_conn(stack)
    conn.autocommit = False  # the staging table keeps its rows until the transaction ends, as in a flush
    try:
        cur = conn.cursor()
        cur.execute(stmt.create_staging("fmt", batch.schema.columns))
        copy = stmt.copy_into("fmt", stmt.staging_columns(batch.schema.columns)).as_string(cur)
        cur.copy_expert(copy, io.BytesIO(text.encode()))
        binary = io.BytesIO()
        cur.copy_expert("COPY fmt TO STDOUT (FORMAT binary)", binary)
        rows = len(batch.events())
        cur.execute("SELECT count(*) FROM fmt")
        assert cur.fetchone()[0] == rows, "the text COPY did not load the flush's rows"
        best: dict[str, float] = {}
        for name, data, sql_text in (
            ("text", text.encode(), copy),
            ("binary", binary.getvalue(), copy + " (FORMAT binary)"),
        ):
            times = []
            for _ in range(5):
                cur.execute("TRUNCATE fmt")
                started = time.perf_counter()
                cur.copy_expert(sql_text, io.BytesIO(data))
                times.append(time.perf_counter() - started)
                cur.execute("SELECT count(*) FROM fmt")
                assert cur.fetchone()[0] == rows, f"the {name} COPY did not load the rows"
            best[name] = round(min(times) / rows * 1e6, 2)
        conn.rollback()
    finally:
        conn.close()
    return best


def _text(query: Any, cur: Any) -> str:
    if isinstance(query, bytes):
        return query.decode()
    return query if isinstance(query, str) else str(query.as_string(cur))


class _Done(Exception):
    pass


if __name__ == "__main__":
    sys.exit(main())
