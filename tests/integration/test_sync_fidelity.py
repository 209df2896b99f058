"""Type fidelity through the whole pipeline: every common PostgreSQL type, with edge values,
written in the source, captured by Debezium, applied by `cdc sync`, equal in the warehouse."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from cdc import connector
from cdc.settings import Settings
from tests.db import execute
from tests.syncing import Lane, run_sync, wait_for_events

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).parent.parent / "fixtures"

# How each side is read for the comparison. Default: the column as text. The exceptions are
# Debezium's documented losses (README, "Known limits"): timetz arrives converted to UTC,
# unconstrained numeric loses trailing zeros and cannot carry NaN/Infinity in precise mode, hstore
# arrives as JSON; the enum's type does not exist in the warehouse (text there, same text).
SOURCE_EXPR = {
    "c_timetz": "(c_timetz AT TIME ZONE 'UTC')::text",
    "c_numeric": "CASE WHEN c_numeric IN ('NaN', 'Infinity', '-Infinity') THEN NULL "
    "ELSE trim_scale(c_numeric)::text END",
    "c_hstore": "public.hstore_to_jsonb(c_hstore)::text",
}
WAREHOUSE_EXPR = {
    "c_timetz": "(c_timetz AT TIME ZONE 'UTC')::text",
    "c_numeric": "trim_scale(c_numeric)::text",
}


def every_type_sql(schema: str) -> tuple[str, str]:
    """The every_type table and its edge-value rows from the recorded scenario, in our schema."""
    ddl = (FIXTURES / "capture_scenario.sql").read_text()
    ddl = ddl[ddl.index("CREATE EXTENSION") : ddl.index("CREATE TABLE fx.no_pk")]
    dml = (FIXTURES / "capture_dml.sql").read_text()
    dml = dml[dml.index("INSERT INTO fx.every_type") : dml.index("INSERT INTO fx.no_pk")]
    return (f"CREATE SCHEMA {schema};\n" + ddl).replace("fx.", f"{schema}."), dml.replace("fx.", f"{schema}.")


def read(url: str, schema: str, table: str, exprs: dict[str, str]) -> tuple[list[str], list[tuple[object, ...]]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'; SET IntervalStyle = 'postgres'; SET extra_float_digits = 1")
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "AND column_name NOT LIKE '\\_cdc\\_%%' ORDER BY ordinal_position",
                (schema, table),
            )
            columns = [r[0] for r in cur.fetchall()]
            select = ", ".join(exprs.get(c, f'"{c}"::text') for c in columns)
            cur.execute(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY id')
            return columns, cur.fetchall()
    finally:
        conn.close()


def test_every_type_with_edge_values_arrives_equal(stack: Settings, lane: Lane) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    ddl, dml = every_type_sql(lane.source_schema)
    execute(src, ddl)
    connector.apply(stack, None, lambda _: None)
    execute(src, "SET TIME ZONE 'UTC';\n" + dml)
    wait_for_events(stack, lane.source_schema, "every_type", 9)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr

    source_columns, expected = read(src, lane.source_schema, "every_type", SOURCE_EXPR)
    target_columns, actual = read(wh, lane.warehouse_schema, "every_type", WAREHOUSE_EXPR)
    assert target_columns == source_columns
    assert len(expected) == 5  # ids 1, 2, 4, 5, 6 (3 was deleted)
    for want, got in zip(expected, actual, strict=True):
        differing = {c: (w, g) for c, w, g in zip(source_columns, want, got, strict=True) if w != g}
        assert not differing, f"row id={want[0]}: {differing}"
