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


def plan(
    cur: Any,
    table: sql.Composable,
    key: Sequence[str],
    rows: int,
    per_range: int = RANGE_ROWS,
    *,
    regclass: str | None = None,
) -> list[KeyRange]:
    """Ranges covering every key (the first and last open-ended), about `per_range` rows each.
    Their bounds come from the key's histogram that ANALYZE keeps (pg_stats: no scan) when it
    has enough of them, else from a row sample of the keys (TABLESAMPLE BERNOULLI, spread over
    the whole table where a block sample takes clusters of neighbouring keys). Either way the same
    table gives the same ranges: those verify names are those its --fix writes."""
    wanted = max(1, math.ceil(rows / per_range))
    if wanted == 1 or not key:
        return [KeyRange(0, None, None)]
    bounds = _histogram(cur, regclass, key, rows, wanted) if regclass and len(key) == 1 else None
    if bounds is None:
        bounds = _sampled(cur, table, key, rows, wanted)
    edges: list[Bound] = [None, *bounds, None]
    return [KeyRange(n, edges[n], edges[n + 1]) for n in range(len(edges) - 1)]


def _histogram(cur: Any, regclass: str, key: Sequence[str], rows: int, wanted: int) -> list[tuple[str, ...]] | None:
    """Bounds from the key's histogram, if it has enough and the table changed little since it
    was made (rows added after would all fall in the last range)."""
    cur.execute(
        "SELECT s.histogram_bounds::text::text[], coalesce(u.n_mod_since_analyze, 0) FROM pg_stats s "
        "JOIN pg_class c ON c.relname = s.tablename "
        "JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = s.schemaname "
        "LEFT JOIN pg_stat_user_tables u ON u.relid = c.oid WHERE c.oid = %s::regclass AND s.attname = %s",
        (regclass, key[0]),
    )
    row = cur.fetchone()
    if row is None or not row[0] or len(row[0]) - 2 < wanted - 1 or row[1] > rows // 10:
        return None
    return _spread([(v,) for v in row[0][1:-1]], wanted)


def _sampled(cur: Any, table: sql.Composable, key: Sequence[str], rows: int, wanted: int) -> list[tuple[str, ...]]:
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
    return _spread([tuple(r) for r in cur.fetchall()], wanted)


def _spread(ordered: list[tuple[str, ...]], wanted: int) -> list[tuple[str, ...]]:
    """wanted - 1 bounds taken evenly from ordered keys, without repeats."""
    bounds: list[tuple[str, ...]] = []
    for i in range(1, wanted):
        if not ordered:
            break
        bound = ordered[len(ordered) * i // wanted]
        if not bounds or bound != bounds[-1]:
            bounds.append(bound)
    return bounds


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
