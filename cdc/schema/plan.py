"""Changes + the warehouse table as it is -> what to do to it, by policy. Pure: the operations are
data, and cdc/warehouse/drift.py turns them into SQL.

The rules of `evolve` (the README's "Schema changes" lists them for users):
- column added: added (nullable); a column of that name the warehouse kept is reused if its type holds the values;
- column dropped: kept, nullable, with the values it had; new rows hold NULL there;
- column renamed (known from the DDL capture): the warehouse column is renamed, its values kept;
- type widened: the warehouse column takes the wider type;
- type narrowed: the warehouse column keeps its wider type, which holds every new value;
- type incompatible: the old column keeps the old values; new values land in `<column>__<type>`;
- nullability or default changed: nothing to do (warehouse columns are nullable, defaults are not copied);
- primary key changed: the warehouse table is re-keyed.
`alert` does none of it; `halt` waits for `cdc schema accept`, then does what `evolve` does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

from cdc.events import TableSchema
from cdc.schema.changes import Change, Kind
from cdc.schema.classify import constant_default, type_change
from cdc.schema.policy import Policy
from cdc.warehouse.naming import fit_identifier


@dataclass(frozen=True, slots=True)
class AddColumn:
    name: str
    type: str
    fill: str | None = None  # the value rows already there take (a source default that is a constant)


@dataclass(frozen=True, slots=True)
class RenameColumn:
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class AlterType:
    name: str
    type: str


@dataclass(frozen=True, slots=True)
class Rekey:
    columns: tuple[str, ...]  # warehouse column names; empty: no primary key any more


Operation = AddColumn | RenameColumn | AlterType | Rekey


@dataclass(slots=True)
class Layout:
    """The warehouse table: its columns and types, and which source column each source name is
    stored in where the two differ."""

    columns: dict[str, str]  # warehouse column -> type
    stored_as: dict[str, str] = field(default_factory=dict)  # source column -> warehouse column

    def stored(self, source_column: str) -> str:
        return self.stored_as.get(source_column, source_column)

    def copy(self) -> Layout:
        return Layout(dict(self.columns), dict(self.stored_as))


@dataclass(frozen=True, slots=True)
class Step:
    change: Change
    action: str  # what cdc did about it, in words (history, alerts)
    operations: tuple[Operation, ...] = ()


def plan(changes: list[Change], layout: Layout, policy: Policy, key: tuple[str, ...]) -> tuple[list[Step], Layout]:
    """What the policy does with each change, and the warehouse table after it. `key` is the
    source's new primary key. With `alert` nothing changes shape."""
    if policy is Policy.ALERT:
        return [Step(c, _ALERT_ACTIONS.get(c.kind, "alerted only")) for c in changes], layout
    after = layout.copy()
    return [_evolve(c, after, key) for c in changes], after


_ALERT_ACTIONS = {
    Kind.COLUMN_ADDED: "alerted only: the warehouse has no such column, its values are not stored",
    Kind.COLUMN_DROPPED: "alerted only: the column stays; new rows hold NULL in it",
    Kind.COLUMN_RENAMED: "alerted only: values of the new name are not stored; the old column keeps its values",
    Kind.TYPE_WIDENED: "alerted only: values the warehouse type cannot hold are not stored",
    Kind.TYPE_INCOMPATIBLE: "alerted only: new values are not stored (their meaning changed)",
    Kind.KEY_CHANGED: "alerted only: the warehouse table keeps its key",
}


def _evolve(change: Change, layout: Layout, key: tuple[str, ...]) -> Step:  # noqa: PLR0911 - one rule per kind
    kind, name = change.kind, change.column
    if kind is Kind.COLUMN_ADDED and change.after is not None:
        return _add(change, layout, change.after.name, change.after.type, change.after.default)
    if kind is Kind.COLUMN_DROPPED and change.before is not None:
        dropped = layout.stored_as.pop(change.before.name, change.before.name)
        return Step(change, f"kept warehouse column {dropped} with its values; new rows hold NULL there")
    if kind is Kind.COLUMN_RENAMED and change.before is not None and change.after is not None:
        return _rename(change, layout, change.before.name, change.after.name)
    if kind is Kind.TYPE_WIDENED and name is not None and change.after is not None:
        return _widen(change, layout, name, change.after.type)
    if kind is Kind.TYPE_NARROWED and name is not None:
        stored = layout.stored(name)
        return Step(
            change, f"kept warehouse column {stored} as {layout.columns.get(stored)}, which holds every new value"
        )
    if kind is Kind.TYPE_INCOMPATIBLE and name is not None and change.after is not None:
        return _retype(change, layout, name, change.after.type)
    if kind is Kind.KEY_CHANGED:
        columns = tuple(layout.stored(k) for k in key)
        what = (
            f"re-keyed the warehouse table on ({', '.join(columns)})"
            if columns
            else "dropped the warehouse table's key"
        )
        return Step(change, what, (Rekey(columns),))
    if kind is Kind.NULLABILITY_CHANGED:
        return Step(change, "nothing to do: warehouse columns are nullable")
    if kind is Kind.DEFAULT_CHANGED:
        return Step(change, "nothing to do: the warehouse stores the values rows arrive with")
    return Step(change, "recorded")


def _add(change: Change, layout: Layout, name: str, type_: str, default: str | None) -> Step:
    existing = layout.columns.get(name)
    holder = _stored_there(layout, name, besides=name)
    if holder is not None:  # DROP b; RENAME a TO b; ADD a: warehouse column a holds b's values
        column = _free(layout, fit_identifier(f"{name}__{type_tag(type_)}"))
        return Step(
            change,
            f"added warehouse column {column} {type_}: warehouse column {name} holds the values of {holder}",
            (_store_in_new(layout, name, column, type_, default),),
        )
    if existing is None:
        layout.columns[name] = type_
        layout.stored_as.pop(name, None)
        # Rows the source had take the column's default there, and Debezium sends no event for them.
        fill = None if default is None else constant_default(default)
        action = f"added warehouse column {name} {type_}"
        if fill is not None:
            action += f"; rows already there take the source's default {default}"
        elif default:
            action += f"; rows already there hold NULL: the source's default {default} is computed per row"
        return Step(change, action, (AddColumn(name, type_, fill),))
    if _holds(existing, type_):
        layout.stored_as.pop(name, None)
        return Step(change, f"reused warehouse column {name} {existing}, which was kept from before")
    return _retype(change, layout, name, type_, default)


def _widen(change: Change, layout: Layout, name: str, type_: str) -> Step:
    stored = layout.stored(name)
    current = layout.columns.get(stored, type_)
    if _holds(current, type_):  # kept wider by an earlier narrowing
        return Step(change, f"kept warehouse column {stored} as {current}, which holds every new value")
    if type_change(current, type_) is not Kind.TYPE_WIDENED:  # neither holds the other
        return _retype(change, layout, name, type_)
    layout.columns[stored] = type_
    return Step(change, f"widened warehouse column {stored} to {type_}", (AlterType(stored, type_),))


def _rename(change: Change, layout: Layout, old: str, new: str) -> Step:
    stored = layout.stored_as.pop(old, old)
    if new not in layout.columns:
        layout.columns[new] = layout.columns.pop(stored)
        return Step(change, f"renamed warehouse column {stored} to {new}, values kept", (RenameColumn(stored, new),))
    # The new name is taken by a column kept from before: the renamed column's values stay where they are.
    layout.stored_as[new] = stored
    return Step(change, f"kept values in warehouse column {stored}: {new} exists in the warehouse already")


def _retype(change: Change, layout: Layout, name: str, type_: str, default: str | None = None) -> Step:
    """New values of another meaning go to a column of their own; the old one keeps the old values."""
    old = layout.stored(name)
    column = fit_identifier(f"{name}__{type_tag(type_)}")
    number = 1
    while column in layout.columns and (
        not _holds(layout.columns[column], type_) or _stored_there(layout, column, besides=name) is not None
    ):
        number += 1  # the name is taken by a column of another type, or another source column's values
        column = fit_identifier(f"{name}__{type_tag(type_)}_{number}")
    if column in layout.columns:
        layout.stored_as[name] = column
        return Step(
            change, f"kept warehouse column {old} with the old values; new values go to {column} (kept from before)"
        )
    return Step(
        change,
        f"kept warehouse column {old} with the old values; new values go to new column {column}",
        (_store_in_new(layout, name, column, type_, default),),
    )


def _store_in_new(layout: Layout, name: str, column: str, type_: str, default: str | None) -> AddColumn:
    """Source column `name` stored from now on in a new warehouse column; the rows already there
    take the source's default when it is a constant."""
    layout.columns[column] = type_
    layout.stored_as[name] = column
    return AddColumn(column, type_, None if default is None else constant_default(default))


def _stored_there(layout: Layout, column: str, *, besides: str) -> str | None:
    """The source column (but `besides`) whose values the warehouse column holds, if any."""
    return next((source for source, stored in layout.stored_as.items() if stored == column and source != besides), None)


def _free(layout: Layout, column: str) -> str:
    """The name, or name_2, name_3...: the first the warehouse table has no column of."""
    number, free = 1, column
    while free in layout.columns:
        number += 1
        free = fit_identifier(f"{column}_{number}")
    return free


def type_tag(type_: str) -> str:
    """A type as a name part: 'numeric(12,2)' -> 'numeric_12_2', 'double precision' -> 'double_precision'."""
    text = type_.lower().replace("[]", "_array").replace("-", "m")  # numeric(5,-2): numeric_5_m2
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]+", "_", text)).strip("_")


def _holds(warehouse_type: str, source_type: str) -> bool:
    """Whether a warehouse column of one type stores values of another with their meaning."""
    return warehouse_type == source_type or type_change(source_type, warehouse_type) is Kind.TYPE_WIDENED


def project(schema: TableSchema, layout: Layout) -> TableSchema:
    """The event schema as the warehouse table stores it: each column under the warehouse column
    it goes to, and without the columns the table has no place for (policy alert, or an older
    shape replayed). Key columns always stay: rows are matched on them."""
    columns = []
    for column in schema.columns:
        stored = layout.stored(column.name)
        kept = layout.columns.get(stored)
        if column.name not in schema.key and (kept is None or not _holds(kept, column.pg_type)):
            continue
        columns.append(column if stored == column.name else replace(column, stored_as=stored))
    if len(columns) == len(schema.columns) and all(c.stored_as is None for c in columns):
        return schema
    return TableSchema(schema.table, tuple(columns), schema.key)
