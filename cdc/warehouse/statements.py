"""SQL for the PostgreSQL warehouse. Every identifier comes from event schemas, which are untrusted:
all of them go through psycopg2.sql.Identifier, every literal through sql.Literal."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from psycopg2 import sql

from cdc.events import Column

META_PREFIX = "_cdc_"
# Metadata columns of every replicated table: the source version of the change that wrote the row
# (the guard against replays), its op, the source commit time, when cdc applied it, and for soft
# deletes when the source deleted it.
META_COLUMNS = (
    ("_cdc_commit_lsn", "bigint NOT NULL"),
    ("_cdc_lsn", "bigint NOT NULL"),
    ("_cdc_op", "char(1) NOT NULL"),
    ("_cdc_source_ts", "timestamptz"),
    ("_cdc_applied_at", "timestamptz NOT NULL DEFAULT now()"),
    ("_cdc_deleted_at", "timestamptz"),
)
# Staging carries the version, op and commit time as the raw numbers of the event.
STAGING_META = (
    ("_cdc_commit_lsn", "bigint"),
    ("_cdc_lsn", "bigint"),
    ("_cdc_op", "char(1)"),
    ("_cdc_source_ms", "bigint"),
    ("_cdc_unchanged", "text[]"),
)
_SOURCE_TS = sql.SQL("'epoch'::timestamptz + s._cdc_source_ms * interval '1 millisecond'")
_NEWER = sql.SQL("(t._cdc_commit_lsn, t._cdc_lsn) < (s._cdc_commit_lsn, s._cdc_lsn)")


@dataclass(frozen=True, slots=True)
class Target:
    schema: str
    table: str

    def __str__(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.table)])

    @property
    def regclass(self) -> str:
        return regclass_of(self.schema, self.table)


def regclass_of(schema: str, table: str) -> str:
    """schema.table as regclass input reads it (double quotes, doubled inside)."""
    return ".".join('"' + part.replace('"', '""') + '"' for part in (schema, table))


def _typed(name: str, pg_type: str) -> sql.Composed:
    # pg_type is produced by cdc.decode.types from a fixed vocabulary, never copied from an event.
    return sql.SQL("{} {}").format(sql.Identifier(name), sql.SQL(pg_type))


def create_table(target: Target, columns: Sequence[Column], key: Sequence[str]) -> sql.Composed:
    parts = [_typed(c.name, c.pg_type) for c in columns]
    parts += [_typed(name, definition) for name, definition in META_COLUMNS]
    if key:
        parts.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, key))))
    return sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(target.ident, sql.SQL(", ").join(parts))


def add_column(target: Target, column: Column) -> sql.Composed:
    return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {}").format(
        target.ident, _typed(column.stored, column.pg_type)
    )


def create_staging(name: str, columns: Sequence[Column]) -> sql.Composed:
    parts = [_typed(c.name, c.pg_type) for c in columns]
    parts += [_typed(n, d) for n, d in STAGING_META]
    return sql.SQL("CREATE TEMP TABLE IF NOT EXISTS {} ({}) ON COMMIT DELETE ROWS").format(
        sql.Identifier(name), sql.SQL(", ").join(parts)
    )


def copy_into(name: str | sql.Composable, columns: Sequence[str], *, binary: bool = False) -> sql.Composed:
    table = sql.Identifier(name) if isinstance(name, str) else name
    form = sql.SQL(" WITH (FORMAT binary)" if binary else "")
    return sql.SQL("COPY {} ({}) FROM STDIN{}").format(table, sql.SQL(", ").join(map(sql.Identifier, columns)), form)


def staging_columns(columns: Sequence[Column]) -> list[str]:
    return [c.name for c in columns] + [n for n, _ in STAGING_META]


def merge(
    target: Target, staging: str, columns: Sequence[Column], key: Sequence[str], soft_delete: bool
) -> sql.Composed:
    """One set-based statement applying a whole staging table: newer versions win, deletes delete
    (or mark), unchanged-TOAST columns keep the stored value."""
    stored = {c.name: c.stored for c in columns}
    on = sql.SQL(" AND ").join(
        sql.SQL("t.{t} = s.{s}").format(t=sql.Identifier(stored.get(k, k)), s=sql.Identifier(k)) for k in key
    )

    def kept_or_new(column: Column) -> sql.Composed:
        into, ident = sql.Identifier(column.stored), sql.Identifier(column.name)
        if not column.varlena:
            return sql.SQL("{t} = s.{s}").format(t=into, s=ident)
        return sql.SQL(
            "{t} = CASE WHEN s._cdc_unchanged IS NOT NULL AND {lit} = ANY(s._cdc_unchanged) THEN t.{t} ELSE s.{s} END"
        ).format(t=into, s=ident, lit=sql.Literal(column.name))

    meta_set = sql.SQL(
        "_cdc_commit_lsn = s._cdc_commit_lsn, _cdc_lsn = s._cdc_lsn, _cdc_op = s._cdc_op, "
        "_cdc_source_ts = {ts}, _cdc_applied_at = now()"
    ).format(ts=_SOURCE_TS)
    update_set = sql.SQL(", ").join([*(kept_or_new(c) for c in columns), meta_set, sql.SQL("_cdc_deleted_at = NULL")])
    insert_cols = sql.SQL(", ").join(
        [
            *(sql.Identifier(c.stored) for c in columns),
            *map(
                sql.Identifier,
                ("_cdc_commit_lsn", "_cdc_lsn", "_cdc_op", "_cdc_source_ts", "_cdc_deleted_at"),
            ),
        ]
    )
    insert_vals = sql.SQL(", ").join(
        [
            *(sql.SQL("s.{}").format(sql.Identifier(c.name)) for c in columns),
            sql.SQL("s._cdc_commit_lsn, s._cdc_lsn, s._cdc_op, {ts}").format(ts=_SOURCE_TS),
            sql.SQL("CASE WHEN s._cdc_op = 'd' THEN {ts} END").format(ts=_SOURCE_TS),
        ]
    )
    if soft_delete:
        on_delete = sql.SQL(
            "WHEN MATCHED AND s._cdc_op = 'd' AND {newer} THEN UPDATE SET {meta}, "
            "_cdc_deleted_at = coalesce({ts}, now())"
        ).format(newer=_NEWER, meta=meta_set, ts=_SOURCE_TS)
        insert_when = sql.SQL("WHEN NOT MATCHED THEN INSERT ({}) VALUES ({})").format(insert_cols, insert_vals)
    else:
        on_delete = sql.SQL("WHEN MATCHED AND s._cdc_op = 'd' AND {newer} THEN DELETE").format(newer=_NEWER)
        insert_when = sql.SQL("WHEN NOT MATCHED AND s._cdc_op <> 'd' THEN INSERT ({}) VALUES ({})").format(
            insert_cols, insert_vals
        )
    return sql.SQL(
        "MERGE INTO {target} AS t USING {staging} AS s ON {on} "
        "{on_delete} "
        "WHEN MATCHED AND s._cdc_op <> 'd' AND {newer} THEN UPDATE SET {update_set} "
        "{insert_when}"
    ).format(
        target=target.ident,
        staging=sql.Identifier(staging),
        on=on,
        on_delete=on_delete,
        newer=_NEWER,
        update_set=update_set,
        insert_when=insert_when,
    )


def keep_deleted_keys(target: Target, staging: str, key: Sequence[str]) -> sql.Composed:
    """The keys the staged deletes remove, with their versions, into cdc.backfill_deleted (the
    newest version of each key kept)."""
    return sql.SQL(
        "INSERT INTO cdc.backfill_deleted (target_schema, target_table, key, commit_lsn, lsn) "
        "SELECT {schema}, {table}, ROW({key})::text, s._cdc_commit_lsn, s._cdc_lsn FROM {staging} AS s "
        "WHERE s._cdc_op = 'd' ON CONFLICT (target_schema, target_table, key) DO UPDATE "
        "SET commit_lsn = EXCLUDED.commit_lsn, lsn = EXCLUDED.lsn "
        "WHERE (cdc.backfill_deleted.commit_lsn, cdc.backfill_deleted.lsn) < (EXCLUDED.commit_lsn, EXCLUDED.lsn)"
    ).format(
        schema=sql.Literal(target.schema),
        table=sql.Literal(target.table),
        key=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(k)) for k in key),
        staging=sql.Identifier(staging),
    )


def truncate(target: Target, soft_delete: bool) -> sql.Composed:
    """Remove (or mark) every row older than the truncate; params: (commit_lsn, lsn, source_ms)."""
    if soft_delete:
        return sql.SQL(
            "UPDATE {} SET _cdc_deleted_at = 'epoch'::timestamptz + %s * interval '1 millisecond', "
            "_cdc_op = 't' WHERE _cdc_deleted_at IS NULL AND (_cdc_commit_lsn, _cdc_lsn) < (%s, %s)"
        ).format(target.ident)
    return sql.SQL("DELETE FROM {} WHERE (_cdc_commit_lsn, _cdc_lsn) < (%s, %s)").format(target.ident)


def _image_match(columns: Sequence[Column]) -> sql.Composed:
    # Compared as text, since json, point and others have no '=' operator.
    return sql.SQL(" AND ").join(
        sql.SQL("{c}::text IS NOT DISTINCT FROM (%s::{t})::text").format(
            c=sql.Identifier(c.stored), t=sql.SQL(c.pg_type)
        )
        for c in columns
    )


def delete_one(target: Target, columns: Sequence[Column], *, live_only: bool = False) -> sql.Composed:
    """For a table without a primary key: delete one row equal to the given image (params: one
    text value per column); with live_only, one not marked deleted."""
    live = sql.SQL(" AND _cdc_deleted_at IS NULL") if live_only else sql.SQL("")
    return sql.SQL("DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE {m}{live} LIMIT 1)").format(
        t=target.ident, m=_image_match(columns), live=live
    )


def mark_one_deleted(target: Target, columns: Sequence[Column]) -> sql.Composed:
    """Soft deletes, for a table without a primary key: mark one live row equal to the image.
    Params: source time (ms), commit LSN, LSN, then one text value per column."""
    return sql.SQL(
        "UPDATE {t} SET _cdc_deleted_at = coalesce({ts}, now()), _cdc_op = 'd', _cdc_commit_lsn = %s, "
        "_cdc_lsn = %s, _cdc_applied_at = now() "
        "WHERE ctid = (SELECT ctid FROM {t} WHERE {m} AND _cdc_deleted_at IS NULL LIMIT 1)"
    ).format(
        t=target.ident,
        ts=sql.SQL("'epoch'::timestamptz + %s * interval '1 millisecond'"),
        m=_image_match(columns),
    )


def insert_from_staging(target: Target, staging: str, columns: Sequence[Column]) -> sql.Composed:
    """Append staged rows to a table without a primary key (its events cannot be merged)."""
    return sql.SQL(
        "INSERT INTO {t} ({cols}, _cdc_commit_lsn, _cdc_lsn, _cdc_op, _cdc_source_ts) "
        "SELECT {vals}, s._cdc_commit_lsn, s._cdc_lsn, s._cdc_op, {ts} FROM {s} AS s"
    ).format(
        t=target.ident,
        cols=sql.SQL(", ").join(sql.Identifier(c.stored) for c in columns),
        vals=sql.SQL(", ").join(sql.SQL("s.{}").format(sql.Identifier(c.name)) for c in columns),
        ts=_SOURCE_TS,
        s=sql.Identifier(staging),
    )


def fill_from_old_key(target: Target, staging: str, key: Sequence[Column], unchanged: Sequence[Column]) -> sql.Composed:
    """For the create of a primary-key change: take the unchanged-TOAST columns from the stored row
    of the old key. Params: the new key's values, then the old key's (text, one per key column)."""

    def match(alias: str) -> sql.Composed:
        return sql.SQL(" AND ").join(
            sql.SQL("{a}.{c} = %s::{t}").format(
                a=sql.Identifier(alias), c=sql.Identifier(c.name if alias == "s" else c.stored), t=sql.SQL(c.pg_type)
            )
            for c in key
        )

    return sql.SQL("UPDATE {s} AS s SET {sets}, _cdc_unchanged = NULL FROM {t} AS o WHERE {new} AND {old}").format(
        s=sql.Identifier(staging),
        sets=sql.SQL(", ").join(
            sql.SQL("{s} = o.{o}").format(s=sql.Identifier(c.name), o=sql.Identifier(c.stored)) for c in unchanged
        ),
        t=target.ident,
        new=match("s"),
        old=match("o"),
    )
