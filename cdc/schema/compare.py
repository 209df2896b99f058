"""`cdc schema diff`: each replicated table's columns in the source catalog beside the warehouse
table's, now. Read-only, on both sides."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import psycopg2

from cdc import pgerrors
from cdc.warehouse.errors import translate
from cdc.warehouse.ledger import table_map
from cdc.warehouse.statements import Target

_COLUMNS = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), NOT a.attnotnull
FROM pg_attribute a
WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


@dataclass(frozen=True, slots=True)
class ColumnPair:
    table: str  # the source table, schema.table
    target: str  # its warehouse table
    source: str | None  # source column name (None: only in the warehouse)
    source_type: str | None
    stored: str | None  # the warehouse column its values go to (None: none)
    stored_type: str | None
    status: str  # same / type differs / not in warehouse / kept (gone from the source) / stored elsewhere


def schema_diff(source_url: str, warehouse_url: str, schema: str, pattern: str | None = None) -> list[ColumnPair]:
    """Every replicated table of the warehouse schema (or those matching `pattern`), column by column."""
    tables = _replicated(warehouse_url, schema)
    pairs: list[ColumnPair] = []
    source = pgerrors.connect(source_url, "source")
    warehouse = pgerrors.connect(warehouse_url, "warehouse")
    try:
        with source.cursor() as src, warehouse.cursor() as wh:
            for (source_schema, source_table), (target_table, stored_as) in sorted(tables.items()):
                name = f"{source_schema}.{source_table}"
                if pattern is not None and not fnmatch.fnmatchcase(name, pattern):
                    continue
                src.execute(_COLUMNS, (Target(source_schema, source_table).regclass,))
                wh.execute(_COLUMNS, (Target(schema, target_table).regclass,))
                pairs += _pairs(name, f"{schema}.{target_table}", src.fetchall(), wh.fetchall(), stored_as)
    except psycopg2.Error as exc:
        raise translate(exc, "comparing source and warehouse columns") from exc
    finally:
        source.close()
        warehouse.close()
    return pairs


def _pairs(
    table: str, target: str, source: list[tuple[Any, ...]], warehouse: list[tuple[Any, ...]], stored_as: dict[str, str]
) -> list[ColumnPair]:
    kept = {name: type_ for name, type_, _ in warehouse if not name.startswith("_cdc_")}
    pairs = []
    used = set()
    for name, type_, _ in source:
        stored = stored_as.get(name, name)
        stored_type = kept.get(stored)
        used.add(stored)
        if stored_type is None:
            status = "not in warehouse"
        elif stored != name:
            status = "stored elsewhere"
        else:
            status = "same" if stored_type == type_ else "type differs"
        pairs.append(ColumnPair(table, target, name, type_, stored if stored_type else None, stored_type, status))
    for name, type_ in kept.items():
        if name not in used:
            pairs.append(ColumnPair(table, target, None, None, name, type_, "kept (gone from the source)"))
    return pairs


def _replicated(warehouse_url: str, schema: str) -> dict[tuple[str, str], tuple[str, dict[str, str]]]:
    """Source table -> (warehouse table, source column -> warehouse column where they differ)."""
    conn = pgerrors.connect(warehouse_url, "warehouse")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('cdc.table_map') IS NOT NULL, to_regclass('cdc.schema_state') IS NOT NULL")
            row = cur.fetchone()
            if not (row and row[0]):
                return {}  # cdc sync never wrote to this warehouse
            mapped = {(s.schema, s.name): t.table for s, t in table_map(cur, schema).items()}
            stored: dict[str, dict[str, str]] = {}
            if row[1]:
                cur.execute("SELECT target_table, stored_as FROM cdc.schema_state WHERE target_schema = %s", (schema,))
                stored = {target: dict(columns) for target, columns in cur.fetchall()}
            return {source: (target, stored.get(target, {})) for source, target in mapped.items()}
    except psycopg2.Error as exc:
        raise translate(exc, "reading cdc.table_map") from exc
    finally:
        conn.close()
