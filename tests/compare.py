"""Row-for-row comparison of a source table and its warehouse copy, every column as text."""

from __future__ import annotations

from collections import Counter

import psycopg2
from psycopg2 import sql


def columns_of(url: str, schema: str, table: str) -> list[str]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
                "AND column_name NOT LIKE '\\_cdc\\_%%' ORDER BY ordinal_position",
                (schema, table),
            )
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


def rows_as_text(
    url: str, schema: str, table: str, columns: list[str], where: str = ""
) -> list[tuple[str | None, ...]]:
    """Every row, each column cast to text, sorted (so tables without a key compare as multisets)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            query = sql.SQL("SELECT {} FROM {}.{} {}").format(
                sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in columns),
                sql.Identifier(schema),
                sql.Identifier(table),
                sql.SQL(where),
            )
            cur.execute(query)
            return sorted(cur.fetchall(), key=lambda row: tuple("" if v is None else v for v in row))
    finally:
        conn.close()


def assert_same_rows(
    source_url: str, source: tuple[str, str], warehouse_url: str, target: tuple[str, str], where: str = ""
) -> int:
    """Assert the warehouse table holds exactly the source table's rows; return the row count."""
    columns = columns_of(source_url, *source)
    assert columns, f"source table {source} has no columns (does it exist?)"
    expected = rows_as_text(source_url, *source, columns)
    actual = rows_as_text(warehouse_url, *target, columns, where)
    if expected == actual:
        return len(expected)
    # As multisets, in linear time: polled until equal, a 100k-row table must not cost minutes.
    want, have = Counter(expected), Counter(actual)
    missing = list((want - have).elements())[:5]
    extra = list((have - want).elements())[:5]
    raise AssertionError(
        f"{source} -> {target}: {len(expected)} source rows, {len(actual)} warehouse rows; "
        f"missing in warehouse (first 5): {missing}; extra (first 5): {extra}"
    )
