"""The SQL of a comparison: per key range, a row count and an order-independent checksum (the sum
of a 64-bit hash of each row's text), computed by each database over its own rows; and for a
range that differs, each row's key and hash, to name the rows.

A row's text is the same in both databases when its values are: both sessions print values the
same way (UTC, ISO dates, shortest exact floats, hex bytea), and the source's columns are read as
the stream stores them (cdc/backfill/tables.py: a time with time zone in UTC, hstore as JSON).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from psycopg2 import sql

from cdc.backfill.ranges import Bound, KeyRange, predicate
from cdc.backfill.tables import catalog_types


@dataclass(frozen=True, slots=True)
class Side:
    """One database's table, as the comparison reads it."""

    table: sql.Composed  # schema.table
    values: tuple[sql.Composable, ...]  # the compared value of each column, in order
    key: tuple[str, ...]
    key_type: str  # format_type() of a one-column key (for width_bucket), else ""
    live: sql.Composable = field(default_factory=lambda: sql.SQL("true"))  # rows that count (soft: not deleted)
    # With the warehouse types of the values (both sides typed alike): the row is hashed by the
    # types' own hash functions (hash_record_extended, ~2.5x cheaper than printing it), each
    # value of a type without one as its text. Without: the row's text is hashed.
    types: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class Sums:
    rows: int
    checksum: int


def column_types(cur: Any, regclass: str, columns: Sequence[str]) -> tuple[str, ...]:
    types = catalog_types(cur, regclass)
    return tuple(types[c] for c in columns)


# Types with an extended hash function (arrays of them too): hashed as values, not as text.
_HASHED = re.compile(
    r"(smallint|integer|bigint|numeric(\(\d+,-?\d+\))?|real|double precision|text|boolean|date|uuid|bytea|jsonb|"
    r"inet|cidr|macaddr8?|interval(\(\d\))?|character varying(\(\d+\))?|character(\(\d+\))?|"
    r"(time|timestamp)(\(\d\))? with(out)? time zone)(\[\])*"
)


def row_hash(side: Side) -> sql.Composable:
    if side.types is None:
        texts = sql.SQL(", ").join(sql.SQL("({})::text").format(v) for v in side.values)
        return sql.SQL("hashtextextended(ROW({})::text, 0)").format(texts)
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(v) if _HASHED.fullmatch(t) else sql.SQL("({})::text").format(v)
        for v, t in zip(side.values, side.types, strict=True)
    )
    return sql.SQL("hash_record_extended(ROW({}), 0)").format(values)


def range_sums(cur: Any, side: Side, ranges: Sequence[KeyRange]) -> dict[int, Sums]:
    """Count and checksum of each range, in one scan of the table: rows are bucketed by their key
    against the ranges' bounds (width_bucket for a one-column key, a CASE over row comparisons
    otherwise)."""
    if len(ranges) == 1:
        return {ranges[0].number: _one_range(cur, side, ranges[0])}
    bucket, params = _bucket(side, ranges)
    cur.execute(
        sql.SQL("SELECT {b} AS bucket, count(*), coalesce(sum({h}), 0) FROM {t} WHERE {live} GROUP BY 1").format(
            b=bucket, h=row_hash(side), t=side.table, live=side.live
        ),
        params,
    )
    found = {int(b): Sums(int(n), int(s)) for b, n, s in cur.fetchall()}
    return {r.number: found.get(i, Sums(0, 0)) for i, r in enumerate(ranges)}


def _one_range(cur: Any, side: Side, key_range: KeyRange) -> Sums:
    where, params = predicate(side.key, key_range.lower, key_range.upper) if side.key else (sql.SQL("true"), [])
    cur.execute(
        sql.SQL("SELECT count(*), coalesce(sum({h}), 0) FROM {t} WHERE {w} AND {live}").format(
            h=row_hash(side), t=side.table, w=where, live=side.live
        ),
        params,
    )
    rows, total = cur.fetchone()
    return Sums(int(rows), int(total))


def _bucket(side: Side, ranges: Sequence[KeyRange]) -> tuple[sql.Composable, list[Any]]:
    """An expression giving each row the index of its range (ranges are consecutive: each lower
    bound is the previous upper one)."""
    uppers = [r.upper for r in ranges[:-1]]
    if len(side.key) == 1:
        # width_bucket(value, thresholds) counts the thresholds at or below the value: the range's index.
        expression = sql.SQL("width_bucket({k}, %s::text[]::{t}[])").format(
            k=sql.Identifier(side.key[0]), t=sql.SQL(side.key_type)
        )
        return expression, [[u[0] for u in uppers if u is not None]]
    whens: list[sql.Composable] = []
    params: list[Any] = []
    for i, upper in enumerate(uppers):
        condition, values = predicate(side.key, None, upper)
        whens.append(sql.SQL("WHEN {} THEN {}").format(condition, sql.Literal(i)))
        params += values
    return sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(whens), sql.Literal(len(uppers))), params


def row_hashes(cur: Any, side: Side, lower: Bound, upper: Bound) -> dict[tuple[str, ...], int]:
    """Key -> row hash of every row of one range (the leaf of the recursion: only differing
    ranges get here)."""
    where, params = predicate(side.key, lower, upper)
    return _keyed_hashes(cur, side, where, params)


def hashes_of(cur: Any, side: Side, keys: Sequence[tuple[str, ...]]) -> dict[tuple[str, ...], int]:
    """Key -> row hash of the given keys (those not there are absent)."""
    if not keys:
        return {}
    row = sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, side.key)))
    values = sql.SQL(", ").join(
        sql.SQL("({})").format(sql.SQL(", ").join(sql.Placeholder() for _ in side.key)) for _ in keys
    )
    where = sql.SQL("{} IN ({})").format(row, values)
    return _keyed_hashes(cur, side, where, [v for key in keys for v in key])


def _keyed_hashes(cur: Any, side: Side, where: sql.Composable, params: list[str]) -> dict[tuple[str, ...], int]:
    cur.execute(
        sql.SQL("SELECT {keys}, {h} FROM {t} WHERE {w} AND {live}").format(
            keys=sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(k)) for k in side.key),
            h=row_hash(side),
            t=side.table,
            w=where,
            live=side.live,
        ),
        params,
    )
    width = len(side.key)
    return {tuple(r[:width]): int(r[width]) for r in cur.fetchall()}


# Tables without a primary key compare as multisets: rows are grouped by their hash, first into
# buckets (one scan), then the differing buckets hash by hash.
BUCKETS = 256


def _hashed(side: Side) -> sql.Composable:
    return sql.SQL("(SELECT {h} AS h, ROW({values}) AS r FROM {t} WHERE {live}) AS x").format(
        h=row_hash(side),
        values=sql.SQL(", ").join(sql.SQL("({})::text").format(v) for v in side.values),
        t=side.table,
        live=side.live,
    )


def bucket_sums(cur: Any, side: Side) -> dict[int, Sums]:
    cur.execute(
        sql.SQL("SELECT x.h & {m}, count(*), sum(x.h) FROM {x} GROUP BY 1").format(
            m=sql.Literal(BUCKETS - 1), x=_hashed(side)
        )
    )
    return {int(b): Sums(int(n), int(s)) for b, n, s in cur.fetchall()}


def hash_counts(cur: Any, side: Side, buckets: Sequence[int]) -> dict[int, int]:
    """How many rows have each hash, in the given buckets."""
    cur.execute(
        sql.SQL("SELECT x.h, count(*) FROM {x} WHERE x.h & {m} = ANY(%s) GROUP BY 1").format(
            m=sql.Literal(BUCKETS - 1), x=_hashed(side)
        ),
        (list(buckets),),
    )
    return {int(h): int(n) for h, n in cur.fetchall()}


def rows_of(cur: Any, side: Side, hashes: Sequence[int]) -> dict[int, str]:
    """One row's text for each of the given hashes."""
    if not hashes:
        return {}
    cur.execute(
        sql.SQL("SELECT DISTINCT ON (x.h) x.h, x.r::text FROM {x} WHERE x.h = ANY(%s)").format(x=_hashed(side)),
        (list(hashes),),
    )
    return {int(h): str(r) for h, r in cur.fetchall()}
