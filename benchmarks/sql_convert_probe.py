"""Probe of a different design: Python only slices each message's payload JSON out for COPY, and
PostgreSQL parses, converts (decimals, timestamps...), compacts by key and writes the rows. How fast
is each side? It answers whether moving the per-value work out of Python could reach 100,000
events/s on this machine (benchmarks/README.md, "Where the time goes now").

    python -m benchmarks.sql_convert_probe --topic cdc.bench_<run>.orders   # a topic kept with --keep

Only for the orders table of benchmarks/events.py; nothing is kept (temporary tables).
"""

from __future__ import annotations

import argparse
import io
import time

from benchmarks import common as c

CONVERT = """
CREATE OR REPLACE FUNCTION pg_temp.dec(b64 text, scale int) RETURNS numeric
LANGUAGE plpgsql IMMUTABLE STRICT AS $$
DECLARE b bytea := decode(b64, 'base64'); v numeric := 0; i int;
BEGIN
  FOR i IN 0 .. length(b) - 1 LOOP v := v * 256 + get_byte(b, i); END LOOP;
  IF length(b) > 0 AND get_byte(b, 0) >= 128 THEN v := v - 256::numeric ^ length(b); END IF;
  RETURN v / 10::numeric ^ scale;
END $$;
CREATE TEMP TABLE raw (doc jsonb);
CREATE TEMP TABLE tgt (id bigint PRIMARY KEY, customer_id int, amount numeric(12,2), status varchar(20),
  created_at timestamptz, updated_at timestamp, note text, flag boolean, attrs jsonb, ref uuid,
  _v1 bigint, _v2 bigint, _op char(1));
"""
APPLY = """
INSERT INTO tgt
SELECT DISTINCT ON (id) id, (a->>'customer_id')::int, pg_temp.dec(a->>'amount', 2), a->>'status',
  (a->>'created_at')::timestamptz, 'epoch'::timestamp + (a->>'updated_at')::bigint * interval '1 microsecond',
  a->>'note', (a->>'flag')::boolean, (a->>'attrs')::jsonb, nullif(a->>'ref', '')::uuid,
  (seq->>0)::bigint, (seq->>1)::bigint, op
FROM (SELECT doc->>'op' AS op, img AS a, (doc->'source'->>'sequence')::jsonb AS seq, (img->>'id')::bigint AS id
      FROM (SELECT doc, coalesce(nullif(doc->'after', 'null'::jsonb), doc->'before') AS img FROM raw) d) r
ORDER BY id, (seq->>0)::bigint DESC, (seq->>1)::bigint DESC
ON CONFLICT (id) DO NOTHING
"""


def read_payloads(bootstrap: str, topic: str, end: int) -> tuple[list[bytes], float]:
    prefix, lines = b"", []
    started = time.perf_counter()
    for messages in c.confluent_batches(bootstrap, topic, end):
        for message in messages:
            value = message.value()
            if value is None:
                continue  # tombstone
            if not prefix or not value.startswith(prefix):
                prefix = value[: value.index(b',"payload":') + len(b',"payload":')]
            lines.append(value[len(prefix) : -1].replace(b"\\", b"\\\\"))  # COPY text escaping
    return lines, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Python slices, PostgreSQL converts: the speed of each side")
    parser.add_argument("--topic", required=True)
    args = parser.parse_args(argv)
    stack = c.Stack.load()
    end = c.end_offset(stack.bootstrap, args.topic)
    lines, python_s = read_payloads(stack.bootstrap, args.topic, end)
    data = b"\n".join(lines) + b"\n"
    print(f"python: {end:,} messages in {python_s:.2f} s = {end / python_s:,.0f}/s (poll, prefix, slice, escape)")
    conn = c.warehouse_conn(stack)
    try:
        cur = conn.cursor()
        cur.execute(CONVERT)
        started = time.perf_counter()
        cur.copy_expert("COPY raw (doc) FROM STDIN", io.BytesIO(data))
        copy_s = time.perf_counter() - started
        started = time.perf_counter()
        cur.execute(APPLY)
        apply_s = time.perf_counter() - started
        cur.execute("SELECT count(*) FROM tgt")
        (rows,) = cur.fetchone()
    finally:
        conn.close()
    events = len(lines)
    print(f"postgres: COPY {events:,} payloads as jsonb {copy_s:.2f} s ({events / copy_s:,.0f}/s); ")
    print(f"  convert + compact + insert {apply_s:.2f} s ({events / apply_s:,.0f}/s), {rows:,} rows")
    print(f"  together {events / (copy_s + apply_s):,.0f} events/s on one core")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
