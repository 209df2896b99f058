"""Backfill: copy an N-row table of realistic shape from the source into the warehouse with
`cdc backfill --mode direct`, with a plain `pg_dump | psql`, and with `cdc backfill --mode
debezium` (Debezium's incremental snapshot through Kafka, applied by a running `cdc sync`), in one
run; then `cdc verify` of the big table. The CPU seconds each part used (the source's and the
warehouse's PostgreSQL, cdc) are measured for the direct runs and for the warehouse's own COPY.

    python -m benchmarks.backfill                      # 10M rows direct and pg_dump, 1M rows direct, 1M via Debezium
    python -m benchmarks.backfill --rows 2000000 --debezium-rows 200000   # quicker

Peak RSS of `cdc backfill` is measured at both sizes (it must not grow with the table). See
benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2

from benchmarks import common as c
from cdc import connector
from cdc.resources import cdc_command

COLUMNS = """
    id          bigint PRIMARY KEY,
    customer_id integer NOT NULL,
    sku         text NOT NULL,
    name        text NOT NULL,
    qty         integer NOT NULL,
    price       numeric(12,2) NOT NULL,
    status      text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz,
    attrs       jsonb
"""
ROWS = """
INSERT INTO {t} SELECT i, ((i * 7919) % 100000)::integer, 'SKU-' || lpad((i % 99991)::text, 8, '0'),
    'product ' || md5(i::text), 1 + i % 17, ((i * 37) % 100000) / 100.0,
    (ARRAY['new', 'paid', 'shipped', 'returned'])[1 + i % 4],
    timestamptz '2026-01-01 00:00:00+00' + i * interval '3 seconds',
    CASE WHEN i % 3 = 0 THEN NULL ELSE timestamptz '2026-06-01 00:00:00+00' + i * interval '1 second' END,
    jsonb_build_object('color', (ARRAY['red', 'green', 'blue'])[1 + i % 3], 'size', i % 50, 'gift', i % 7 = 0)
FROM generate_series({lo}::bigint, {hi}) AS i
"""
_BATCH = 1_000_000


def _sql(url: str, statement: str) -> list[tuple[Any, ...]]:
    conn = psycopg2.connect(url)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def _env(stack: c.Stack, schema: str, group: str) -> dict[str, str]:
    return stack.sync_env(CDC_WAREHOUSE_SCHEMA=schema, CDC_CONSUMER_GROUP=group)


def _cdc(
    env: dict[str, str], *args: str, timeout: float = 3600
) -> tuple[subprocess.CompletedProcess[str], float, float]:
    """Run a cdc command; (its result, seconds, peak RSS in MiB: VmHWM, read until it exits)."""
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([*cdc_command(), *args], env=env, cwd=c.REPO, stdout=out, stderr=err, text=True)
        peak = 0.0
        while proc.poll() is None:
            peak = max(peak, c.peak_rss_mb(proc.pid) or 0.0)
            if time.monotonic() - started > timeout:
                proc.kill()
            time.sleep(0.1)
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        return subprocess.CompletedProcess(proc.args, proc.returncode, out.read(), err.read()), elapsed, peak


@contextlib.contextmanager
def _table(stack: c.Stack, rows: int, tag: str, keep: bool) -> Iterator[tuple[str, str, str]]:
    """A source table of `rows` rows, captured, whose warehouse table cdc sync has made (from one
    streamed row); the other rows were written while it was out of the publication, so that only
    a backfill brings them. Yields (source schema, warehouse schema, consumer group)."""
    suffix = uuid.uuid4().hex[:6]
    schema, warehouse_schema, group = f"bench_bf_{tag}_{suffix}", f"wh_bench_bf_{tag}_{suffix}", f"bench_bf_{suffix}"
    table = f"{schema}.items"
    publication = stack.settings.publication_name
    try:
        _sql(stack.source_url, f"CREATE SCHEMA {schema}; CREATE TABLE {table} ({COLUMNS})")
        connector.apply(stack.settings, None, lambda _: None)
        _sql(stack.source_url, ROWS.format(t=table, lo=1, hi=1))
        env = _env(stack, warehouse_schema, group)
        synced, _, _ = _cdc(env, "sync", "--table", table, "--until-idle", "3", timeout=600)
        if synced.returncode != 0:
            raise SystemExit(f"cdc sync failed: {synced.stderr[-2000:]}")
        _sql(stack.source_url, f"ALTER PUBLICATION {publication} DROP TABLE {table}")
        started = time.monotonic()
        for lo in range(2, rows + 1, _BATCH):
            _sql(stack.source_url, ROWS.format(t=table, lo=lo, hi=min(rows, lo + _BATCH - 1)))
        _sql(stack.source_url, f"ALTER PUBLICATION {publication} ADD TABLE {table}")
        _sql(stack.source_url, f"VACUUM ANALYZE {table}")
        size = _sql(stack.source_url, f"SELECT pg_table_size('{table}')")[0][0]
        print(
            f"  {table}: {rows:,} rows, {size / rows:.0f} bytes/row on disk, "
            f"loaded in {time.monotonic() - started:.0f} s"
        )
        yield schema, warehouse_schema, group
    finally:
        if not keep:
            with contextlib.suppress(psycopg2.Error):
                _sql(stack.source_url, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
                _sql(
                    stack.warehouse_url,
                    f"DROP SCHEMA IF EXISTS {warehouse_schema} CASCADE; "
                    f"DROP SCHEMA IF EXISTS {schema} CASCADE; "
                    f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{group}'; "
                    f"DELETE FROM cdc.table_map WHERE source_schema = '{schema}'; "
                    f"DELETE FROM cdc.schema_state WHERE target_schema = '{warehouse_schema}'; "
                    f"DELETE FROM cdc.backfill_run WHERE target_schema = '{warehouse_schema}'; "
                    f"DELETE FROM cdc.backfill_snapshot WHERE target_schema = '{warehouse_schema}'",
                )


def _cpu(stack: c.Stack) -> dict[str, float]:
    """CPU seconds used so far by the source's and the warehouse's clusters and by the cdc
    commands this benchmark ran (all on this machine)."""
    return {
        "source": c.cluster_cpu_seconds(stack.source_url),
        "warehouse": c.cluster_cpu_seconds(stack.warehouse_url),
        "cdc": c.children_cpu_seconds(),
    }


def _cpu_used(stack: c.Stack, before: dict[str, float], elapsed: float) -> dict[str, float]:
    after = _cpu(stack)
    used = {k: round(after[k] - before[k], 2) for k in before}
    used["total"] = round(sum(used.values()), 2)
    used["cores_busy"] = round(used["total"] / elapsed, 2)  # of os.cpu_count() cores
    return used


def _per_row(cpu: dict[str, float], rows: int) -> dict[str, float]:
    """CPU seconds, and microseconds of CPU per row, per part."""
    out = dict(cpu)
    for part in ("source", "warehouse", "cdc", "total"):
        out[f"{part}_us_per_row"] = round(cpu[part] / max(rows, 1) * 1e6, 2)
    return out


def _target(stack: c.Stack, schema: str) -> str:
    ((ts, tt),) = _sql(
        stack.warehouse_url, f"SELECT target_schema, target_table FROM cdc.table_map WHERE source_schema = '{schema}'"
    )
    return f'"{ts}"."{tt}"'


def direct(stack: c.Stack, schema: str, warehouse_schema: str, group: str, parallel: int = 1) -> dict[str, Any]:
    target = _target(stack, schema)
    _sql(stack.warehouse_url, f"TRUNCATE {target}")
    env = _env(stack, warehouse_schema, group)
    before = _cpu(stack)
    done, elapsed, rss = _cdc(env, "backfill", f"{schema}.items", "--json", "--parallel", str(parallel))
    cpu = _cpu_used(stack, before, elapsed)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    summary = json.loads(done.stdout)
    count = _sql(stack.warehouse_url, f"SELECT count(*) FROM {target}")[0][0]
    return {
        "cpu": _per_row(cpu, summary["rows"]),
        "rows": summary["rows"],
        "warehouse_rows": count,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(summary["rows"] / elapsed),
        "peak_rss_mb": round(rss, 1),
        "inner_seconds": summary["seconds"],
        "parallel": parallel,
        "copy_format": summary["tables"][0]["copy_format"],
    }


def pg_dump_psql(stack: c.Stack, schema: str, rows: int) -> dict[str, Any]:
    """The same table's data through pg_dump | psql into a plain table of the same columns."""
    pg_dump, psql = shutil.which("pg_dump"), shutil.which("psql")
    if not pg_dump or not psql:
        return {"error": "pg_dump/psql not on PATH"}
    _sql(
        stack.warehouse_url,
        f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; CREATE TABLE {schema}.items ({COLUMNS})",
    )
    started = time.monotonic()
    dump = subprocess.Popen(
        [pg_dump, "--data-only", "--table", f"{schema}.items", stack.source_url], stdout=subprocess.PIPE
    )
    load = subprocess.run(
        [psql, "-q", "-v", "ON_ERROR_STOP=1", stack.warehouse_url],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
        check=False,
    )
    dump.wait()
    elapsed = time.monotonic() - started
    count = _sql(stack.warehouse_url, f"SELECT count(*) FROM {schema}.items")[0][0]
    _sql(stack.warehouse_url, f"DROP SCHEMA {schema} CASCADE")
    if load.returncode != 0 or dump.returncode != 0:
        return {"error": load.stderr[-2000:]}
    return {"rows": count, "seconds": round(elapsed, 2), "rows_per_s": round(count / elapsed)}


def copy_floor(stack: c.Stack, schema: str, rows: int) -> dict[str, Any]:
    """What the warehouse alone takes to COPY these rows in (no source involved): the rows as
    `cdc backfill` sends them (binary, typed as the warehouse types them), from a file, by psql,
    into an empty table of the same columns and primary key."""
    psql = shutil.which("psql")
    if not psql:
        return {"error": "psql not on PATH"}
    dump = c.WORK / "backfill-floor.bin"
    dump.parent.mkdir(parents=True, exist_ok=True)
    query = f"COPY (SELECT *, 1::bigint, 0::bigint, 'r'::char(1) FROM {schema}.items) TO STDOUT (FORMAT binary)"
    with dump.open("wb") as out:
        subprocess.run([psql, "-q", "-c", query, stack.source_url], stdout=out, check=True)
    # A table exactly like cdc's target: its metadata columns, defaults and primary key.
    _sql(
        stack.warehouse_url,
        f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; "
        f"CREATE TABLE {schema}.items (LIKE {_target(stack, schema)} INCLUDING ALL)",
    )
    columns = (
        "id, customer_id, sku, name, qty, price, status, created_at, updated_at, attrs, "
        "_cdc_commit_lsn, _cdc_lsn, _cdc_op"
    )
    before = _cpu(stack)
    started = time.monotonic()
    with dump.open("rb") as data:
        load = subprocess.run(
            [psql, "-q", "-c", f"COPY {schema}.items ({columns}) FROM STDIN (FORMAT binary)", stack.warehouse_url],
            stdin=data,
            capture_output=True,
            text=True,
            check=False,
        )
    elapsed = time.monotonic() - started
    cpu = _cpu_used(stack, before, elapsed)
    count = _sql(stack.warehouse_url, f"SELECT count(*) FROM {schema}.items")[0][0]
    _sql(stack.warehouse_url, f"DROP SCHEMA {schema} CASCADE")
    dump.unlink()
    if load.returncode != 0:
        return {"error": load.stderr[-2000:]}
    return {
        "rows": count,
        "seconds": round(elapsed, 2),
        "rows_per_s": round(count / elapsed),
        "cpu": _per_row(cpu, count),
    }


def debezium(stack: c.Stack, schema: str, warehouse_schema: str, group: str, rows: int) -> dict[str, Any]:
    """`cdc backfill --mode debezium`: Debezium's incremental snapshot of the table, its events
    applied by a running cdc sync; the command returns once sync has applied them."""
    target = _target(stack, schema)
    _sql(stack.warehouse_url, f"TRUNCATE {target}")
    env = _env(stack, warehouse_schema, group)
    log = c.WORK / f"backfill-debezium-{group}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out:
        sync = subprocess.Popen(
            [*cdc_command(), "sync", "--table", f"{schema}.items"], env=env, cwd=c.REPO, stdout=out, stderr=out
        )
    try:
        done, elapsed, rss = _cdc(env, "backfill", f"{schema}.items", "--mode", "debezium", "--json")
    finally:
        c.stop(sync)
    if done.returncode != 0:
        return {"error": done.stderr[-2000:]}
    summary = json.loads(done.stdout)
    count = _sql(stack.warehouse_url, f"SELECT count(*) FROM {target}")[0][0]
    return {
        "rows": summary["rows"],
        "warehouse_rows": count,
        "applied": summary["applied"],
        "seconds": round(elapsed, 2),
        "rows_per_s": round(summary["rows"] / elapsed),
        "peak_rss_mb": round(rss, 1),
        "complete": count >= rows,
    }


def verify(stack: c.Stack, schema: str, warehouse_schema: str, group: str) -> dict[str, Any]:
    done, elapsed, rss = _cdc(_env(stack, warehouse_schema, group), "verify", f"{schema}.items", "--json")
    result = json.loads(done.stdout) if done.stdout.strip() else {}
    return {
        "exit": done.returncode,
        "equal": result.get("equal"),
        "seconds": round(elapsed, 2),
        "peak_rss_mb": round(rss, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=10_000_000, help="rows of the big table")
    parser.add_argument("--small-rows", type=int, default=1_000_000, help="rows of the small table (RSS at two sizes)")
    parser.add_argument(
        "--debezium-rows", type=int, default=1_000_000, help="rows Debezium's snapshot copies (0: skip)"
    )
    parser.add_argument("--parallel", type=int, default=2, help="cdc backfill --parallel (also run with 1)")
    parser.add_argument("--keep", action="store_true", help="keep the tables")
    args = parser.parse_args(argv)
    stack = c.Stack.load()
    facts = c.machine_facts(stack)
    results: dict[str, Any] = {"benchmark": "backfill", "options": vars(args), "machine": facts, "runs": {}}
    runs = results["runs"]
    print(
        f"backfill benchmark: {args.rows:,} rows (and {args.small_rows:,}); Debezium path {args.debezium_rows:,} rows"
    )
    with _table(stack, args.small_rows, "small", args.keep) as (schema, wh, group):
        runs["direct_small"] = direct(stack, schema, wh, group, args.parallel)
        print("  direct, small:", runs["direct_small"])
        if args.debezium_rows:
            if args.debezium_rows != args.small_rows:
                print("  (the Debezium path copies the small table)")
            runs["debezium"] = debezium(stack, schema, wh, group, args.small_rows)
            print("  debezium:", runs["debezium"])
    with _table(stack, args.rows, "big", args.keep) as (schema, wh, group):
        runs["direct"] = direct(stack, schema, wh, group, args.parallel)
        print("  direct:", runs["direct"])
        runs["direct_parallel_1"] = direct(stack, schema, wh, group, 1)
        print("  direct, one writer:", runs["direct_parallel_1"])
        runs["pg_dump_psql"] = pg_dump_psql(stack, schema, args.rows)
        print("  pg_dump | psql:", runs["pg_dump_psql"])
        runs["warehouse_copy_floor"] = copy_floor(stack, schema, args.rows)
        print("  the warehouse's COPY FROM alone:", runs["warehouse_copy_floor"])
        runs["verify"] = verify(stack, schema, wh, group)
        print("  verify:", runs["verify"])
    d, p, z = runs.get("direct", {}), runs.get("pg_dump_psql", {}), runs.get("debezium", {})
    ratios = {}
    one = runs.get("direct_parallel_1", {})
    floor = runs.get("warehouse_copy_floor", {})
    if d.get("rows_per_s") and p.get("rows_per_s"):
        ratios["direct_vs_pg_dump"] = round(d["rows_per_s"] / p["rows_per_s"], 2)
    if one.get("rows_per_s") and p.get("rows_per_s"):
        ratios["direct_one_writer_vs_pg_dump"] = round(one["rows_per_s"] / p["rows_per_s"], 2)
    if one.get("rows_per_s") and floor.get("rows_per_s"):
        ratios["direct_one_writer_vs_warehouse_copy_floor"] = round(one["rows_per_s"] / floor["rows_per_s"], 2)
    if runs.get("direct_small", {}).get("rows_per_s") and z.get("rows_per_s"):
        ratios["direct_vs_debezium_same_table"] = round(runs["direct_small"]["rows_per_s"] / z["rows_per_s"], 1)
    results["ratios"] = ratios
    rows = [
        [
            name,
            f"{r.get('rows', 0):,}",
            f"{r.get('seconds', '-')}",
            c.fmt_rate(r.get("rows_per_s")),
            c.fmt_mb(r.get("peak_rss_mb")),
        ]
        for name, r in runs.items()
    ]
    print(c.table_text(["path", "rows", "seconds", "rows/s", "peak RSS MiB"], rows))
    print("ratios:", ratios)
    print(f"wrote {c.save_result('backfill', results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
