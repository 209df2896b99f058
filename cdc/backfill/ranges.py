"""Splitting a table into key ranges a backfill writes one transaction each (and `--resume`
continues from): about RANGE_ROWS rows per range, bounds taken from a sample of the primary key."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

RANGE_ROWS = 200_000  # rows per range: a transaction of the warehouse, and what a crash loses
_SAMPLES_PER_RANGE = 20

Bound = tuple[str, ...] | None  # key values as text, in key order; None: open


@dataclass(frozen=True, slots=True)
class KeyRange:
    number: int
    lower: Bound  # included
    upper: Bound  # excluded


def estimated_rows(cur: Any, table: sql.Composable, regclass: str) -> int:
    """The planner's row estimate (no scan); a table never analysed (or analysed empty) is counted."""
    cur.execute("SELECT reltuples::bigint FROM pg_class WHERE oid = %s::regclass", (regclass,))
    row = cur.fetchone()
    estimate = int(row[0]) if row else -1
    if estimate > 0:
        return estimate
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
    return int(cur.fetchone()[0])


def plan(cur: Any, table: sql.Composable, key: Sequence[str], rows: int, per_range: int = RANGE_ROWS) -> list[KeyRange]:
    """Ranges covering every key (the first and last open-ended), about `per_range` rows each,
    from a block sample of the keys (TABLESAMPLE SYSTEM: a few pages, not a scan)."""
    wanted = max(1, math.ceil(rows / per_range))
    if wanted == 1 or not key:
        return [KeyRange(0, None, None)]
    percent = min(100.0, 100.0 * wanted * _SAMPLES_PER_RANGE / max(rows, 1))
    columns = sql.SQL(", ").join(map(sql.Identifier, key))
    cur.execute(
        sql.SQL("SELECT {text} FROM {t} TABLESAMPLE SYSTEM (%s) ORDER BY {cols}").format(
            text=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in key),
            t=table,
            cols=columns,
        ),
        (percent,),
    )
    sample = [tuple(r) for r in cur.fetchall()]
    bounds: list[tuple[str, ...]] = []
    for i in range(1, wanted):
        if not sample:
            break
        bound = sample[len(sample) * i // wanted]
        if not bounds or bound != bounds[-1]:
            bounds.append(bound)
    edges: list[Bound] = [None, *bounds, None]
    return [KeyRange(n, edges[n], edges[n + 1]) for n in range(len(edges) - 1)]


def predicate(
    key: Sequence[str], lower: Bound, upper: Bound, alias: str | None = None
) -> tuple[sql.Composable, list[str]]:
    """`(k1, k2) >= (..) AND (k1, k2) < (..)` with the bounds as parameters: untyped literals,
    which each take the type of the key column they are compared with."""

    def ident(name: str) -> sql.Composable:
        return sql.SQL("{}.{}").format(sql.Identifier(alias), sql.Identifier(name)) if alias else sql.Identifier(name)

    row = sql.SQL("({})").format(sql.SQL(", ").join(map(ident, key)))
    parts: list[sql.Composable] = []
    params: list[str] = []
    for bound, op in ((lower, ">="), (upper, "<")):
        if bound is None:
            continue
        values = sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in bound))
        parts.append(sql.SQL("{} {} {}").format(row, sql.SQL(op), values))
        params += bound
    if not parts:
        return sql.SQL("true"), []
    return sql.SQL(" AND ").join(parts), params
