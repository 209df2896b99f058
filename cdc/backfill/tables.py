"""Which tables a backfill writes, and how: from the command's TABLE patterns, the capture settings
(only captured tables are replicated), and what the warehouse knows of each (its table, the shape
cdc applied). Everything is checked before anything is written."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any

import psycopg2
from psycopg2 import sql

from cdc import capture, pgerrors
from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.settings import Settings
from cdc.warehouse import statements as stmt


@dataclass(frozen=True, slots=True)
class Backfilled:
    """One table to backfill."""

    source: TableId
    target: stmt.Target
    columns: tuple[str, ...]  # the source's columns, as the warehouse shape has them
    stored: tuple[str, ...]  # the warehouse column of each
    key: tuple[str, ...]  # the primary key (source names); () without one
    # What the source selects for each column: its value in the form the stream gives the
    # warehouse column (cdc/backfill/tables.py, _as_streamed).
    selected: tuple[sql.Composable, ...] = ()
    # Whether the rows travel in COPY's binary format: each selected value is cast to its
    # warehouse column's (built-in) type, so the two ends agree on every value's binary form.
    binary: bool = False

    @property
    def copy_format(self) -> sql.Composable:
        return sql.SQL(" (FORMAT binary)" if self.binary else "")

    @property
    def source_ident(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.source.schema), sql.Identifier(self.source.name)])

    @property
    def source_regclass(self) -> str:
        return stmt.regclass_of(self.source.schema, self.source.name)

    @property
    def stored_key(self) -> tuple[str, ...]:
        where = dict(zip(self.columns, self.stored, strict=True))
        return tuple(where[k] for k in self.key)


def select(source: Any, settings: Settings, patterns: list[str]) -> list[TableId]:
    """The captured tables the patterns name (schema.table, globs allowed); an error for a pattern
    that names no table, or only tables cdc does not capture."""
    return [TableId(t.schema, t.name) for t in select_captured(source, settings, patterns)]


def select_captured(source: Any, settings: Settings, patterns: list[str]) -> list[capture.SourceTable]:
    """select(), with what the capture knows of each table (its key, its replica identity)."""
    selection = capture.survey(source, settings)
    captured = {t.qualified: t for t in selection.captured_user_tables}
    skipped = {t.qualified: why for why, tables in selection.skipped.items() for t in tables}
    chosen: dict[str, capture.SourceTable] = {}
    for pattern in patterns:
        if "." not in pattern:
            raise ConfigError(
                f"{pattern!r} does not name a table as schema.table.",
                f"write it as schema.table, e.g. public.{pattern}",
            )
        hits = [name for name in captured if fnmatch.fnmatchcase(name, pattern)]
        if not hits:
            left_out = sorted(name for name in skipped if fnmatch.fnmatchcase(name, pattern))
            if left_out:
                raise ConfigError(
                    f"{', '.join(left_out[:5])} is not captured ({skipped[left_out[0]].value}), so cdc does not "
                    "replicate it and has nowhere to backfill it.",
                    "capture it (CDC_INCLUDE_TABLES / CDC_EXCLUDE_TABLES), run cdc connector apply, then backfill",
                )
            raise ConfigError(
                f"no table of the source matches {pattern!r}.",
                "check the name with \\dt in psql (schema.table; globs such as public.order* are allowed)",
            )
        for name in hits:
            chosen[name] = captured[name]
    return sorted(chosen.values())


def check_where(source: Any, table: TableId, where: str) -> None:
    """--where must be a condition the source can evaluate on the table: checked by planning it,
    in a read-only transaction (the fragment is SQL and runs as such)."""
    ident = sql.SQL(".").join([sql.Identifier(table.schema), sql.Identifier(table.name)])
    autocommit, source.autocommit = source.autocommit, True
    try:
        with source.cursor() as cur:
            cur.execute("BEGIN READ ONLY")
            try:
                cur.execute(sql.SQL("EXPLAIN SELECT 1 FROM {} WHERE ({})").format(ident, sql.SQL(where)))
            except psycopg2.Error as exc:
                raise ConfigError(
                    f"--where {where!r} is not a condition on {table}: {pgerrors.describe(exc)}",
                    "write it as an SQL condition on the table's columns, e.g. --where \"created_at >= '2026-01-01'\"",
                ) from None
            finally:
                cur.execute("ROLLBACK")
    finally:
        source.autocommit = autocommit


def without_target(warehouse: Any, scope: str, chosen: list[capture.SourceTable]) -> list[capture.SourceTable]:
    """The tables cdc sync has not made a warehouse table for yet (it makes one from a table's first
    change event)."""
    known = _known(warehouse, scope)
    return [t for t in chosen if (known.get(TableId(t.schema, t.name)) or (None, None))[1] is None]


def _known(warehouse: Any, scope: str) -> dict[TableId, tuple[Any, ...]]:
    """Source table -> (warehouse table, columns, key, stored_as, held_for, layout) of the shape
    cdc applied; columns None when it has applied none."""
    with warehouse.cursor() as cur:
        cur.execute(
            "SELECT m.source_schema, m.source_table, m.target_table, s.columns, s.key, s.stored_as, s.held_for, "
            "s.layout "
            "FROM cdc.table_map m LEFT JOIN cdc.schema_state s "
            "ON s.target_schema = m.target_schema AND s.target_table = m.target_table WHERE m.target_schema = %s",
            (scope,),
        )
        known = {TableId(r[0], r[1]): tuple(r[2:]) for r in cur.fetchall()}
    warehouse.rollback()
    return known


def describe(source: Any, warehouse: Any, scope: str, tables: list[TableId]) -> list[Backfilled]:
    """Each table's warehouse table and columns; an error for a table the warehouse cannot take a
    backfill of yet."""
    known = _known(warehouse, scope)
    found: list[Backfilled] = []
    for table in tables:
        entry = known.get(table)
        if entry is None or entry[1] is None:
            raise ConfigError(
                f"{table} has no warehouse table in {scope} yet: cdc sync makes it from the table's first change "
                "event, and the backfill writes into it.",
                f"let cdc sync run until it has replicated a change of {table} (any insert, update or delete), "
                "then run the backfill again",
            )
        target_table, columns, key, stored_as, held_for, layout = entry
        if held_for is not None:
            raise ConfigError(
                f"{table} is held by its schema policy (halt) until `cdc schema accept`; its warehouse shape is "
                "not the source's.",
                f"review it with cdc schema diff {table}, accept it, then backfill",
            )
        names = tuple(c["name"] for c in columns)
        source_types = _source_columns(source, table)
        now = list(source_types)
        if set(now) != set(names):
            missing = sorted(set(now) - set(names)) + sorted(set(names) - set(now))
            raise ConfigError(
                f"{table} has changed shape in the source ({', '.join(missing)}) and cdc sync has not applied that "
                "change to the warehouse yet.",
                "let cdc sync apply it (it does so with the table's next change), then backfill",
            )
        stored = tuple(stored_as.get(n, n) for n in names)
        selected = tuple(
            _as_streamed(n, source_types[n], layout.get(s, "")) for n, s in zip(names, stored, strict=True)
        )
        typed = tuple(
            sql.SQL("({})::{}").format(expr, sql.SQL(layout[s])) if layout.get(s) else expr
            for expr, s in zip(selected, stored, strict=True)
        )
        backfilled = Backfilled(table, stmt.Target(scope, target_table), names, stored, tuple(key), typed, True)
        if any(not layout.get(s) for s in stored) or not _selectable(source, backfilled):
            backfilled = Backfilled(table, stmt.Target(scope, target_table), names, stored, tuple(key), selected)
        found.append(backfilled)
    return found


def _source_columns(source: Any, table: TableId) -> dict[str, str]:
    """The table's columns and their types, in order."""
    with source.cursor() as cur:
        found = catalog_types(cur, stmt.regclass_of(table.schema, table.name))
    source.rollback()
    return found


def catalog_types(cur: Any, regclass: str) -> dict[str, str]:
    """A table's columns and their types (format_type), in order."""
    cur.execute(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
        "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
        (regclass,),
    )
    return {str(name): str(type_) for name, type_ in cur.fetchall()}


def _selectable(source: Any, table: Backfilled) -> bool:
    """Whether the source can read the table as the warehouse types it (every cast exists)."""
    query = sql.SQL("EXPLAIN SELECT {} FROM {}").format(sql.SQL(", ").join(table.selected), table.source_ident)
    try:
        with source.cursor() as cur:
            cur.execute(query)
    except psycopg2.Error:
        return False
    finally:
        source.rollback()
    return True


def _as_streamed(column: str, source_type: str, warehouse_type: str) -> sql.Composable:
    """The source column as the stream stores it: Debezium sends a time with time zone in UTC and
    hstore as JSON, and a type the warehouse has no counterpart for (an enum, some domains) goes
    into text. Otherwise the value itself, which the warehouse type reads from its text."""
    ident = sql.Identifier(column)
    if source_type.startswith("time") and source_type.endswith("with time zone") and "stamp" not in source_type:
        return sql.SQL("({} AT TIME ZONE 'UTC')").format(ident)
    if source_type == "hstore" and warehouse_type in {"jsonb", "json"}:
        return sql.SQL("hstore_to_jsonb({})").format(ident)
    if warehouse_type == "text" and source_type != "text":
        return sql.SQL("{}::text").format(ident)
    return ident
