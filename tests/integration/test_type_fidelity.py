"""Type fidelity through the product's own path: every common PostgreSQL type with edge values,
written in the source, captured by Debezium, read from Kafka and applied by the real `cdc sync`
(decoder, COPY text, staging, MERGE), then compared with the source column by column: the
warehouse column's type, and every value as PostgreSQL prints it. Whatever differs must be one of
the differences listed here, each a documented limit of Debezium's encoding (README, "Known
limits"), so a value cdc changes, drops or mistypes fails the test.

The tables: fx.every_type of the recorded scenario (tests/fixtures/capture_scenario.sql and
capture_dml.sql, in the test's own schema), and numeric_edges below (numeric NaN/±Infinity,
constrained, unconstrained, negative-scale and 1000-digit numerics, numeric arrays, money, domains
over numeric).

Also: messages recorded while the connector ran with decimal.handling.mode=precise
(tests/fixtures/debezium_precise) still apply through the warehouse, before and together with
string-mode ones; and every text of the unit tests' encoder table is PostgreSQL input that means
what the unit test says."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cdc import connector
from cdc.events import Origin
from cdc.settings import Settings
from cdc.warehouse.postgres import PostgresWarehouse
from tests.db import execute, query
from tests.flushes import flush_of
from tests.syncing import Lane, run_sync, target_of, wait_for_events
from tests.unit.test_types import CASES, PRECISE_EXPECTED_ROWS

pytestmark = pytest.mark.stack

FIXTURES = Path(__file__).parent.parent / "fixtures"

NUMERIC_EDGES_DDL = """
CREATE DOMAIN {s}.price AS numeric(12,2);
CREATE DOMAIN {s}.amount AS numeric;
CREATE DOMAIN {s}.whole AS numeric(12,0);
CREATE DOMAIN {s}.cash AS money;
CREATE TABLE {s}.numeric_edges (
    id int PRIMARY KEY, n numeric, n10_2 numeric(10,2), n38_10 numeric(38,10), n5_0 numeric(5,0),
    n5_m2 numeric(5,-2), n1000 numeric(1000,0), na numeric[], na10_2 numeric(10,2)[], m money,
    d_price {s}.price, d_amount {s}.amount, d_whole {s}.whole, d_cash {s}.cash
);
"""
NUMERIC_EDGES_DML = """
INSERT INTO {s}.numeric_edges VALUES
 (1, 'NaN', 'NaN', 'NaN', 'NaN', 'NaN', 'NaN', '{{NaN,1.50,Infinity,NULL}}', '{{NaN,1.50}}', '0', 'NaN', 'NaN', 'NaN',
  '-1.5'),
 (2, 'Infinity', NULL, NULL, NULL, NULL, NULL, '{{Infinity}}', NULL, NULL, NULL, 'Infinity', NULL, NULL),
 (3, '-Infinity', NULL, NULL, NULL, NULL, NULL, '{{-Infinity}}', NULL, NULL, NULL, '-Infinity', NULL, NULL),
 (4, '-0.00', '-0.00', '0', '-0', '-0', '-0', '{{0,-0.00,0.000}}', '{{0,-0.00}}', '-0.00', '-0.00', '-0.00', '-0',
  NULL),
 (5, '1e-30', '0.01', '1e-10', '1', '12345', '1e999', '{{1e-30,1e30}}', NULL, '0.01', '0.01', '1e-30', '1', NULL),
 (6, '123456789012345678901234567890123456789012.5', '-99999999.99', '-9999999999999999999999999999.9999999999',
  '-99999', '-9999900', '-1e999', NULL, NULL, '-92233720368547758.08', '9999999999.99', '1e100',
  '-999999999999', NULL),
 (7, '1.500', '1.50', '1.5000000000', '100', '50', '100', '{{1.500,100,0.0000001000}}', '{{1.50,NULL}}',
  '92233720368547758.07', '1.50', '100.000', '0', NULL);
UPDATE {s}.numeric_edges SET n = '0.000000100', n10_2 = 'NaN', d_amount = 'NaN' WHERE id = 7;
DELETE FROM {s}.numeric_edges WHERE id = 3;
"""

# How the source side is read where its type has no counterpart in the warehouse: hstore arrives
# as JSON (hstore.handling.mode=json), so it is compared as the jsonb it is converted to.
SOURCE_EXPR = {"c_hstore": "public.hstore_to_jsonb(c_hstore)::text"}

# (table, column) -> (source type, warehouse type): where they differ, and why.
TYPE_DIFFERENCES = {
    # Debezium reports scale 6 for both time and time(6): cdc writes the precision out; same type
    ("every_type", "c_time"): ("time without time zone", "time(6) without time zone"),
    ("every_type", "c_timetz"): ("time with time zone", "time(6) with time zone"),
    ("every_type", "c_timestamp"): ("timestamp without time zone", "timestamp(6) without time zone"),
    ("every_type", "c_timestamptz"): ("timestamp with time zone", "timestamp(6) with time zone"),
    # types the warehouse does not have: a built-in type that holds every value
    ("every_type", "c_enum"): ("{s}.mood", "text"),
    ("every_type", "c_hstore"): ("hstore", "jsonb"),
    # domains: the base type, when Debezium's schema tells it (string mode: a scale, or numeric's
    # unconstrained length). A domain over numeric(p,0) looks exactly like one over varchar(p), and
    # one over money like one over text: those stay text, which holds Debezium's text exactly.
    ("numeric_edges", "d_price"): ("{s}.price", "numeric(12,2)"),
    ("numeric_edges", "d_amount"): ("{s}.amount", "numeric"),
    ("numeric_edges", "d_whole"): ("{s}.whole", "text"),
    ("numeric_edges", "d_cash"): ("{s}.cash", "text"),
}

# (table, id, column) -> (source text, warehouse text): every value that differs, each a known limit.
VALUE_DIFFERENCES: dict[tuple[str, int, str], tuple[str, str | None]] = {
    # timetz arrives converted to UTC: the same instant, the offset lost
    ("every_type", 1, "c_timetz"): ("13:14:15.5+05:30", "07:44:15.5+00"),
    ("every_type", 2, "c_timetz"): ("23:59:59.999999-11", "10:59:59.999999+00"),
    ("every_type", 6, "c_timetz"): ("00:00:00+14", "10:00:00+00"),
    # a numeric[] holding NaN or ±Infinity: Debezium cannot read it (its JDBC array parser), the
    # whole array arrives as null (and the Connect log has "Failed to properly convert data value")
    ("every_type", 4, "c_numeric_array"): ("{NaN,1}", None),
    ("every_type", 7, "c_numeric_array"): ("{-Infinity}", None),
    ("numeric_edges", 1, "na"): ("{NaN,1.50,Infinity,NULL}", None),
    ("numeric_edges", 2, "na"): ("{Infinity}", None),
    ("numeric_edges", 1, "na10_2"): ("{NaN,1.50}", None),
    # the domains kept as text (above) hold Debezium's text: its name for NaN, money without its
    # currency format
    ("numeric_edges", 1, "d_whole"): ("NaN", "NAN"),
    ("numeric_edges", 1, "d_cash"): ("-$1.50", "-1.50"),
}


def every_type_sql(schema: str) -> tuple[str, str]:
    """The every_type table and its edge-value rows from the recorded scenario, in our schema."""
    ddl = (FIXTURES / "capture_scenario.sql").read_text()
    ddl = ddl[ddl.index("CREATE EXTENSION") : ddl.index("CREATE TABLE fx.no_pk")]
    dml = (FIXTURES / "capture_dml.sql").read_text()
    dml = dml[dml.index("INSERT INTO fx.every_type") : dml.index("INSERT INTO fx.no_pk")]
    return (f"CREATE SCHEMA {schema};\n" + ddl).replace("fx.", f"{schema}."), dml.replace("fx.", f"{schema}.")


def columns_of(cur: Any, schema: str, table: str) -> dict[str, str]:
    """The table's columns (but cdc's own) and their types, in order."""
    cur.execute(
        """SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a
           WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
             AND a.attname NOT LIKE '\\_cdc\\_%%' ORDER BY a.attnum""",
        (f'"{schema}"."{table}"',),
    )
    return dict(cur.fetchall())


Table = tuple[dict[str, str], dict[int, dict[str, Any]]]  # column types; each row's values as text, by id


def read(url: str, schema: str, table: str, exprs: dict[str, str]) -> Table:
    """The table's column types, and each row's values as text, by id. Both sides are read with
    the same settings, so that a text differs only where the value does."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SET TIME ZONE 'UTC'; SET IntervalStyle = 'postgres'; SET DateStyle = 'ISO, MDY'; "
                "SET extra_float_digits = 1; SET lc_monetary = 'C'"
            )
            types = columns_of(cur, schema, table)
            select = ", ".join(exprs.get(c, f'"{c}"::text') for c in types)
            cur.execute(f'SELECT {select} FROM "{schema}"."{table}" ORDER BY id')
            rows = {int(r[0]): dict(zip(types, r, strict=True)) for r in cur.fetchall()}
    finally:
        conn.close()
    return types, rows


def differences(
    table: str, source: Table, target: Table
) -> tuple[dict[tuple[str, str], tuple[str, str]], dict[tuple[str, int, str], tuple[Any, Any]]]:
    """Where the warehouse's copy differs from the source: column types, and values (same rows)."""
    (source_types, source_rows), (target_types, target_rows) = source, target
    assert list(target_types) == list(source_types), table
    assert sorted(target_rows) == sorted(source_rows), table
    types = {(table, c): (t, target_types[c]) for c, t in source_types.items() if target_types[c] != t}
    values = {
        (table, i, c): (v, target_rows[i][c])
        for i, row in source_rows.items()
        for c, v in row.items()
        if target_rows[i][c] != v
    }
    return types, values


@pytest.mark.both_clients
def test_every_type_arrives_exactly_through_cdc_sync(stack: Settings, lane: Lane) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    schema = lane.source_schema
    ddl, dml = every_type_sql(schema)
    execute(src, ddl + NUMERIC_EDGES_DDL.format(s=schema))
    connector.apply(stack, None, lambda _: None)
    execute(src, "SET TIME ZONE 'UTC';\n" + dml + NUMERIC_EDGES_DML.format(s=schema))
    wait_for_events(stack, schema, "every_type", 10)  # 7 inserts, an update, a delete and its tombstone
    wait_for_events(stack, schema, "numeric_edges", 10)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr

    found_types: dict[tuple[str, str], tuple[str, str]] = {}
    found_values: dict[tuple[str, int, str], tuple[Any, Any]] = {}
    for table, exprs in (("every_type", SOURCE_EXPR), ("numeric_edges", {})):
        replica = read(wh, *target_of(stack, lane, table), {})
        types, values = differences(table, read(src, schema, table, exprs), replica)
        found_types |= types
        found_values |= values
    assert found_types == {k: (t.format(s=schema), w) for k, (t, w) in TYPE_DIFFERENCES.items()}
    assert found_values == VALUE_DIFFERENCES

    # the numeric values the old setting (decimal.handling.mode=precise) lost, here by name
    _, rows = read(wh, *target_of(stack, lane, "numeric_edges"), {})
    assert [(i, rows[i]["n"], rows[i]["n10_2"], rows[i]["d_amount"]) for i in sorted(rows)] == [
        (1, "NaN", "NaN", "NaN"),
        (2, "Infinity", None, "Infinity"),
        (4, "0.00", "0.00", "0.00"),
        (5, "0.000000000000000000000000000001", "0.01", "0.000000000000000000000000000001"),
        (6, "123456789012345678901234567890123456789012.5", "-99999999.99", "1" + "0" * 100),
        (7, "0.000000100", "NaN", "NaN"),  # the update; trailing zeros of unconstrained numeric kept
    ]
    assert query(wh, "SELECT count(*) FROM cdc.dead_letter WHERE consumer_group = %s", (lane.group,)) == [(0,)]


# --- messages of the old connector setting (decimal.handling.mode=precise) -------------------------


def recorded(directory: str) -> list[tuple[Origin, bytes | None, bytes | None]]:
    out = []
    for line in (FIXTURES / directory / "fx.every_type.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        key = None if m["key"] is None else m["key"].encode()
        value = None if m["value"] is None else m["value"].encode()
        out.append((Origin(m["topic"], m["partition"], m["offset"]), key, value))
    return out


@pytest.fixture
def warehouse(warehouse_url: str) -> Iterator[tuple[PostgresWarehouse, str]]:
    """cdc's warehouse writer on a scratch schema and consumer group, both removed afterwards."""
    schema, group = f"wh_precise_{uuid.uuid4().hex[:8]}", f"g_precise_{uuid.uuid4().hex[:8]}"
    writer = PostgresWarehouse(warehouse_url, schema=schema, group=group, table_name_format="{table}")
    try:
        yield writer, schema
    finally:
        writer.close()
        execute(warehouse_url, f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        execute(warehouse_url, f"DELETE FROM cdc.dead_letter WHERE consumer_group = '{group}'")
        execute(warehouse_url, f"DELETE FROM cdc.table_map WHERE target_schema = '{schema}'")


def stored(url: str, schema: str, columns: list[str], expected: dict[int, dict[str, str]] | None = None) -> Any:
    """The warehouse rows' values as text, by id; with `expected` (id -> encoded texts of the unit
    tests), those texts read as the warehouse columns' types instead."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SET TIME ZONE 'UTC'; SET lc_monetary = 'C'")
            if expected is None:
                select = ", ".join(f'"{c}"::text' for c in columns)
                cur.execute(f'SELECT id, {select} FROM "{schema}".every_type ORDER BY id')
                return {int(r[0]): dict(zip(columns, r[1:], strict=True)) for r in cur.fetchall()}
            types = columns_of(cur, schema, "every_type")
            out: dict[int, dict[str, str | None]] = {}
            for row_id, texts in expected.items():
                out[row_id] = {}
                for column in columns:
                    text = texts.get(column)
                    if text is not None:
                        cur.execute(f"SELECT %s::{types[column]}::text", (text,))
                        (text,) = cur.fetchone() or (None,)
                    out[row_id][column] = text
            return out
    finally:
        conn.close()


NUMERIC_COLUMNS = ["c_numeric", "c_numeric_10_2", "c_numeric_38_10", "c_numeric_5_0", "c_money"]


def test_a_null_written_into_a_column_with_a_default_arrives_as_null(stack: Settings, lane: Lane) -> None:
    """Kafka Connect's JsonConverter writes a column's default for a NULL unless told not to
    (KIP-581, value.converter.replace.null.with.default=false in connectors/postgres-source.json)."""
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    execute(
        src,
        f'CREATE SCHEMA "{s}"; CREATE TABLE "{s}".defaults (id integer PRIMARY KEY, n integer DEFAULT 5, '
        "t text DEFAULT 'x', b boolean DEFAULT true, d numeric(6,2) DEFAULT 1.5, at date DEFAULT '2020-01-01')",
    )
    connector.apply(stack, None, lambda _: None)
    execute(
        src,
        f'INSERT INTO "{s}".defaults VALUES (1, NULL, NULL, NULL, NULL, NULL); '
        f'INSERT INTO "{s}".defaults (id) VALUES (2); '
        f'INSERT INTO "{s}".defaults (id) VALUES (3); UPDATE "{s}".defaults SET n = NULL, t = NULL WHERE id = 3',
    )
    wait_for_events(stack, s, "defaults", 4)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr
    schema, table = target_of(stack, lane, "defaults")
    rows = query(wh, f'SELECT id, n, t, b, d::text, at::text FROM "{schema}"."{table}" ORDER BY id')
    assert rows == [
        (1, None, None, None, None, None),
        (2, 5, "x", True, "1.50", "2020-01-01"),
        (3, None, None, True, "1.50", "2020-01-01"),
    ]


def test_precise_mode_messages_apply_then_string_mode_ones(
    warehouse: tuple[PostgresWarehouse, str], warehouse_url: str
) -> None:
    """A topic written before the connector moved to string mode: its old messages create the
    table, the new ones (another schema for the same table, one more column) apply on top."""
    writer, schema = warehouse
    precise = recorded("debezium_precise")
    result = writer.apply(flush_of(precise))
    # ids 1-6 have one newest image each; id 3's is its delete, of a row never stored: nothing to change
    assert (result.rows, result.skipped, result.dead) == (5, 1, 0)
    rows = stored(warehouse_url, schema, NUMERIC_COLUMNS)
    offsets = {1: 6, 2: 1, 4: 3, 5: 4, 6: 5}  # the newest recorded image of each id
    assert rows == stored(
        warehouse_url, schema, NUMERIC_COLUMNS, {i: PRECISE_EXPECTED_ROWS[o] for i, o in offsets.items()}
    )
    assert rows[2]["c_numeric"] == "123456789012345678901234567890.12345678901234567890123456789"
    assert rows[4]["c_numeric"] is None  # NaN: precise mode sent null

    string = recorded("debezium")
    result = writer.apply(flush_of(string))
    assert result.dead == 0
    rows = stored(warehouse_url, schema, [*NUMERIC_COLUMNS, "c_numeric_array"])
    assert {i: (r["c_numeric"], r["c_numeric_array"]) for i, r in rows.items()} == {
        1: ("3.14159265358979323846", None),
        2: ("123456789012345678901234567890.123456789012345678901234567890", None),
        4: ("NaN", None),
        5: ("Infinity", "{1.50,NULL,0.00,0.000001000,100000000000000000000}"),
        6: ("0.000000000000000000000000000001000", None),
        7: ("-Infinity", None),
    }


def test_precise_and_string_mode_messages_in_one_flush(
    warehouse: tuple[PostgresWarehouse, str], warehouse_url: str
) -> None:
    """Where a flush spans the connector's switch: old rows of some keys, new rows of others."""
    writer, schema = warehouse
    precise = recorded("debezium_precise")[:6]  # creates of ids 1-6
    string = [m for m in recorded("debezium") if m[0].offset in (5, 7)]  # create of id 7, update of id 1
    result = writer.apply(flush_of(precise + string))
    assert result.dead == 0
    rows = stored(warehouse_url, schema, ["c_numeric", "c_numeric_10_2"])
    assert rows == {
        1: {"c_numeric": "3.14159265358979323846", "c_numeric_10_2": "0.01"},
        2: {
            "c_numeric": "123456789012345678901234567890.12345678901234567890123456789",
            "c_numeric_10_2": "99999999.99",
        },
        3: {"c_numeric": None, "c_numeric_10_2": None},
        4: {"c_numeric": None, "c_numeric_10_2": None},
        5: {"c_numeric": None, "c_numeric_10_2": None},
        6: {"c_numeric": None, "c_numeric_10_2": None},
        7: {"c_numeric": "-Infinity", "c_numeric_10_2": None},
    }


# --- every encoded text of the unit-test table is PostgreSQL input for its type ----------------------

DATE = "io.debezium.time.Date"
MICRO_TIMESTAMP = "io.debezium.time.MicroTimestamp"
MILLI_TIMESTAMP = "io.debezium.time.Timestamp"
INTERVAL = "io.debezium.time.Interval"


def test_every_encoded_text_is_accepted_and_means_the_same_as_postgresql_computes(warehouse_url: str) -> None:
    conn = psycopg2.connect(warehouse_url)
    conn.autocommit = True
    checked_against_postgres = 0
    try:
        with conn.cursor() as cur:
            for case_id, schema, value, pg_type, text in CASES:
                cur.execute(f"SELECT %s::{pg_type}::text", (text,))  # accepted, or raises
                name = schema.get("name")
                if name == DATE and text not in ("infinity", "-infinity"):
                    # PostgreSQL's own calendar arithmetic from the epoch day
                    cur.execute("SELECT %s::date = DATE '1970-01-01' + %s", (text, value))
                elif name in (MICRO_TIMESTAMP, MILLI_TIMESTAMP) and text not in ("infinity", "-infinity"):
                    us = value if name == MICRO_TIMESTAMP else value * 1000
                    days, rest = divmod(us, 86_400_000_000)
                    cur.execute(
                        "SELECT %s::timestamp = (DATE '1970-01-01' + %s)::timestamp + %s * INTERVAL '1 microsecond'",
                        (text, days, rest),
                    )
                elif name == INTERVAL:
                    # PostgreSQL's own reading of Debezium's ISO 8601 text (fine for these small seconds)
                    cur.execute("SELECT %s::interval::text = %s::interval::text", (text, value))
                else:
                    continue
                assert cur.fetchone() == (True,), case_id
                checked_against_postgres += 1
            # the interval texts mean the same under every IntervalStyle
            intervals = [(c[0], c[4]) for c in CASES if c[1].get("name") == INTERVAL]
            cur.execute("SET IntervalStyle = 'postgres'")
            reference: dict[str, tuple[Any, ...]] = {}
            for case_id, text in intervals:
                cur.execute("SELECT extract(epoch FROM %s::interval)::text, %s::interval::text", (text, text))
                row = cur.fetchone()
                assert row is not None
                reference[case_id] = row
            for style in ("sql_standard", "iso_8601", "postgres_verbose"):
                cur.execute(f"SET IntervalStyle = '{style}'")
                for case_id, text in intervals:
                    cur.execute("SELECT extract(epoch FROM %s::interval)::text", (text,))
                    assert cur.fetchone() == reference[case_id][:1], (style, case_id)
    finally:
        conn.close()
    assert checked_against_postgres >= 20
