"""What the warehouse remembers of schema changes: `cdc schema history`, `cdc schema accept`."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2

from cdc import pgerrors
from cdc.errors import NotFoundError
from cdc.warehouse.errors import translate


@dataclass(frozen=True, slots=True)
class Recorded:
    """A row of cdc.schema_change."""

    id: int
    table: str
    target: str
    change: str
    column: str | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    destructive: bool
    statement: str | None
    commit_lsn: int | None
    lsn: int | None
    policy: str
    action: str
    detected_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.__slots__}, "detected_at": self.detected_at.isoformat()}


def history(warehouse_url: str, schema: str, table: str | None = None) -> list[Recorded]:
    """Every change recorded for the warehouse schema, oldest first; `table` filters by source
    name (schema.table, or a glob pattern)."""
    rows = _query(
        warehouse_url,
        "SELECT id, source_table, target_schema || '.' || target_table, change, column_name, before, after, "
        "destructive, statement, commit_lsn, lsn, policy, action, detected_at FROM cdc.schema_change "
        "WHERE target_schema = %s ORDER BY id",
        (schema,),
    )
    found = [Recorded(*row) for row in rows]
    return [r for r in found if table is None or fnmatch.fnmatchcase(r.table, table)]


def accept(warehouse_url: str, schema: str, table: str) -> str:
    """Let a held table's change through: the sync process that holds it applies it (as evolve
    would) and resumes. Returns what was accepted, in words."""
    source_schema, _, name = table.partition(".")
    rows = _query(
        warehouse_url,
        "UPDATE cdc.schema_state SET accepted = held_for, held_for = NULL, updated_at = now() "
        "WHERE target_schema = %s AND source_schema = %s AND source_table = %s AND held_for IS NOT NULL "
        "RETURNING target_schema || '.' || target_table",
        (schema, source_schema, name),
        write=True,
    )
    if not rows:
        held = _query(
            warehouse_url,
            "SELECT source_schema || '.' || source_table FROM cdc.schema_state "
            "WHERE target_schema = %s AND held_for IS NOT NULL ORDER BY 1",
            (schema,),
        )
        raise NotFoundError(
            f"{table} is not held by a schema policy in warehouse schema {schema!r}"
            + (f" (held: {', '.join(r[0] for r in held)})." if held else " (no table is held)."),
            "name a held table as schema.table; cdc schema history shows what each change did",
        )
    return f"{table} ({rows[0][0]}): its schema change is accepted; cdc sync applies it and resumes the table"


def _query(url: str, statement: str, params: tuple[Any, ...], *, write: bool = False) -> list[tuple[Any, ...]]:
    conn = pgerrors.connect(url, "warehouse")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('cdc.schema_state') IS NOT NULL")
            row = cur.fetchone()
            if not (row and row[0]):
                return []  # cdc sync never ran against this warehouse
            cur.execute(statement, params)
            rows: list[tuple[Any, ...]] = cur.fetchall()
        if write:
            conn.commit()
    except psycopg2.Error as exc:
        raise translate(exc, "reading cdc's schema history") from exc
    finally:
        conn.close()
    return rows
