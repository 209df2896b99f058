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
    """Rows of the table, as the planner estimates them (no scan): the density of the last
    ANALYZE times the table's pages now. A table never analysed is counted."""
    cur.execute(
        "SELECT reltuples, relpages, pg_relation_size(oid) / current_setting('block_size')::int "
        "FROM pg_class WHERE oid = %s::regclass",
        (regclass,),
    )
    tuples, pages, now = cur.fetchone()
    if tuples > 0 and pages > 0:
        return int(tuples / pages * max(now, 1))
    cur.execute(sql.SQL("SELECT count(*) FROM {}").format(table))
    return int(cur.fetchone()[0])


def plan(cur: Any, table: sql.Composable, key: Sequence[str], rows: int, per_range: int = RANGE_ROWS) -> list[KeyRange]:
    """Ranges covering every key (the first and last open-ended), about `per_range` rows each,
    from a row sample of the keys (TABLESAMPLE BERNOULLI: spread over the whole table, where a
    block sample would take whole pages, that is clusters of neighbouring keys). The same sample
    for the same table: ranges that verify names are the ones its --fix writes."""
    wanted = max(1, math.ceil(rows / per_range))
    if wanted == 1 or not key:
        return [KeyRange(0, None, None)]
    percent = min(100.0, 100.0 * wanted * _SAMPLES_PER_RANGE / max(rows, 1))
    cur.execute(
        # Ordered by the typed columns (qualified: a bare name would be the text output column).
        sql.SQL("SELECT {text} FROM {t} AS s TABLESAMPLE BERNOULLI (%s) REPEATABLE (0) ORDER BY {cols}").format(
            text=sql.SQL(", ").join(sql.SQL("s.{}::text").format(sql.Identifier(k)) for k in key),
            t=table,
            cols=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in key),
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
