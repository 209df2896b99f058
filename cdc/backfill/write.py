"""Writing one key range of one table into the warehouse, in one transaction with its progress.

A range holding no row in the warehouse yet (the common case: a table backfilled before its
changes stream in) is copied straight into the table. Otherwise the rows go to a temporary table
first and are merged under the version guard: a row the warehouse holds from a change streamed
after the snapshot stays, an older one is replaced, a key deleted after the snapshot is not
written, and a row the snapshot does not have (deleted before it) is removed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from psycopg2 import sql

from cdc.backfill import handover
from cdc.backfill.pipe import CHUNK, copy_between
from cdc.backfill.ranges import KeyRange, predicate
from cdc.backfill.tables import Backfilled

_STAGE = "_cdc_backfill"
_META = ("_cdc_commit_lsn", "_cdc_lsn", "_cdc_op")


@dataclass(frozen=True, slots=True)
class Written:
    rows: int  # rows read from the source
    direct: bool  # copied straight into the table
    changed: int  # rows of the warehouse inserted, replaced or removed


def write_range(  # noqa: PLR0917
    source: Any,
    warehouse: Any,
    table: Backfilled,
    run_id: int,
    key_range: KeyRange,
    snapshot_lsn: int,
    *,
    where: str | None,
    soft_delete: bool,
    on_rows: Callable[[int], None] | None = None,
) -> Written:
    """Copy the range's rows as the snapshot (which `source`'s transaction is in) sees them, and
    mark the range done; committed together."""
    target = table.target
    stored_key = table.stored_key
    with warehouse.cursor() as cur:
        cur.execute(handover.WRITE_SHARED, (handover.write_lock_key(table.source),))
        in_range, params = predicate(stored_key, key_range.lower, key_range.upper)
        cur.execute(
            sql.SQL(
                "SELECT EXISTS (SELECT 1 FROM {t} WHERE {r}) OR EXISTS (SELECT 1 FROM cdc.backfill_deleted "
                "WHERE target_schema = %s AND target_table = %s)"
            ).format(t=target.ident, r=in_range),
            [*params, target.schema, target.table],
        )
        direct = not cur.fetchone()[0]
        into: sql.Composable = target.ident
        if not direct:
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {s} ON COMMIT DROP AS SELECT {c} FROM {t} WITH NO DATA").format(
                    s=sql.Identifier(_STAGE), c=_columns(table), t=target.ident
                )
            )
            into = sql.Identifier(_STAGE)
        rows = copy_rows(source, cur, table, key_range, snapshot_lsn, where=where, into=into, on_rows=on_rows)
        changed = rows
        if not direct:
            changed = _merge(cur, table, snapshot_lsn)
            if where is None:
                changed += _remove_missing(cur, table, key_range, snapshot_lsn, soft_delete)
        cur.execute(
            "UPDATE cdc.backfill_range SET rows = %s, snapshot_lsn = %s, done_at = now() "
            "WHERE run_id = %s AND number = %s",
            (rows, snapshot_lsn, run_id, key_range.number),
        )
    warehouse.commit()
    return Written(rows, direct, changed)


def copy_rows(
    source: Any,
    cur: Any,
    table: Backfilled,
    key_range: KeyRange,
    snapshot_lsn: int,
    *,
    where: str | None,
    into: sql.Composable,
    on_rows: Callable[[int], None] | None,
) -> int:
    """The range's rows, at version (snapshot_lsn, 0), from the source (its transaction in the
    snapshot) into `into` through `cur`; returns the rows as the warehouse counted them."""
    copy_out = _copy_out(source, table, key_range, snapshot_lsn, where)
    copy_in = sql.SQL("COPY {} ({}) FROM STDIN{}").format(into, _columns(table), table.copy_format).as_string(cur)
    with source.cursor() as out:
        copy_between(
            lambda f: out.copy_expert(copy_out, f),
            lambda f: cur.copy_expert(copy_in, f, size=CHUNK),
            on_rows,
        )
    return max(int(cur.rowcount), 0)


def _columns(table: Backfilled) -> sql.Composable:
    return sql.SQL(", ").join(map(sql.Identifier, (*table.stored, *_META)))


def _copy_out(source: Any, table: Backfilled, key_range: KeyRange, snapshot_lsn: int, where: str | None) -> str:
    in_range, params = predicate(table.key, key_range.lower, key_range.upper)
    condition: sql.Composable = in_range
    if where is not None:
        # The user's own filter, as SQL: it runs in the backfill's read-only transaction. Its '%'
        # would read as a parameter's mark in the query the bounds are put into.
        condition = sql.SQL("{} AND ({})").format(in_range, sql.SQL(where.replace("%", "%%")))
    query = sql.SQL(
        "COPY (SELECT {cols}, {lsn}::bigint, 0::bigint, 'r'::char(1) FROM {t} WHERE {c}) TO STDOUT{f}"
    ).format(
        cols=sql.SQL(", ").join(table.selected),
        lsn=sql.Literal(snapshot_lsn),
        t=table.source_ident,
        c=condition,
        f=table.copy_format,
    )
    with source.cursor() as cur:
        text: bytes = cur.mogrify(query, params)
    return text.decode()


def _merge(cur: Any, table: Backfilled, snapshot_lsn: int) -> int:
    """The staged rows into the table, under the version guard."""
    key = table.stored_key
    stored = sql.SQL(", ").join(map(sql.Identifier, (*table.stored, *_META)))
    others = [c for c in table.stored if c not in key]
    sets: list[sql.Composable] = [sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in (*others, *_META)]
    sets += [sql.SQL("_cdc_source_ts = NULL, _cdc_applied_at = now(), _cdc_deleted_at = NULL")]
    cur.execute(
        sql.SQL(
            "INSERT INTO {t} AS t ({cols}) SELECT {cols} FROM {s} AS s "
            "WHERE NOT EXISTS (SELECT 1 FROM cdc.backfill_deleted d WHERE d.target_schema = %s "
            "AND d.target_table = %s AND d.key = ROW({skey})::text AND (d.commit_lsn, d.lsn) > (%s, 0)) "
            "ON CONFLICT ({key}) DO UPDATE SET {sets} "
            "WHERE (t._cdc_commit_lsn, t._cdc_lsn) < (EXCLUDED._cdc_commit_lsn, EXCLUDED._cdc_lsn) "
            # Only rows that differ (as text: json has no '='): a repair rewrites what was wrong.
            "AND (ROW({old}) IS DISTINCT FROM ROW({new}) OR t._cdc_deleted_at IS NOT NULL)"
        ).format(
            old=sql.SQL(", ").join(sql.SQL("t.{}::text").format(sql.Identifier(c)) for c in others),
            new=sql.SQL(", ").join(sql.SQL("EXCLUDED.{}::text").format(sql.Identifier(c)) for c in others),
            t=table.target.ident,
            cols=stored,
            s=sql.Identifier(_STAGE),
            skey=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in key),
            key=sql.SQL(", ").join(map(sql.Identifier, key)),
            sets=sql.SQL(", ").join(sets),
        ),
        (table.target.schema, table.target.table, snapshot_lsn),
    )
    return max(int(cur.rowcount), 0)


def _remove_missing(cur: Any, table: Backfilled, key_range: KeyRange, snapshot_lsn: int, soft_delete: bool) -> int:
    """Rows of the range older than the snapshot that it does not have: deleted before it."""
    key = table.stored_key
    in_range, params = predicate(key, key_range.lower, key_range.upper, alias="t")
    absent = sql.SQL(
        "{r} AND (t._cdc_commit_lsn, t._cdc_lsn) < (%s, 0) AND NOT EXISTS (SELECT 1 FROM {s} AS s WHERE {same})"
    ).format(
        r=in_range,
        s=sql.Identifier(_STAGE),
        same=sql.SQL(" AND ").join(sql.SQL("s.{k} = t.{k}").format(k=sql.Identifier(k)) for k in key),
    )
    if soft_delete:
        statement = sql.SQL(
            "UPDATE {t} AS t SET _cdc_deleted_at = now(), _cdc_op = 'd', _cdc_applied_at = now() "
            "WHERE t._cdc_deleted_at IS NULL AND {a}"
        ).format(t=table.target.ident, a=absent)
    else:
        statement = sql.SQL("DELETE FROM {t} AS t WHERE {a}").format(t=table.target.ident, a=absent)
    cur.execute(statement, [*params, snapshot_lsn])
    return max(int(cur.rowcount), 0)
