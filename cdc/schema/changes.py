"""Schema changes as data: a small frozen vocabulary. Each change knows what it is and whether it
is destructive (applied to the warehouse as the source applied it, it would lose data or give a
value another meaning); what to do with it is the policy's business, not the change's."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Kind(StrEnum):
    COLUMN_ADDED = "column_added"
    COLUMN_DROPPED = "column_dropped"
    COLUMN_RENAMED = "column_renamed"
    TYPE_WIDENED = "type_widened"
    TYPE_NARROWED = "type_narrowed"
    TYPE_INCOMPATIBLE = "type_incompatible"
    NULLABILITY_CHANGED = "nullability_changed"
    DEFAULT_CHANGED = "default_changed"
    KEY_CHANGED = "key_changed"
    TABLE_CREATED = "table_created"
    TABLE_DROPPED = "table_dropped"
    TABLE_RENAMED = "table_renamed"
    TABLE_TRUNCATED = "table_truncated"
    UNKNOWN = "unknown"  # a DDL the classifier does not understand: alerted with its statement


_DESTRUCTIVE = frozenset(
    {
        Kind.COLUMN_DROPPED,
        Kind.TYPE_NARROWED,
        Kind.TYPE_INCOMPATIBLE,
        Kind.KEY_CHANGED,  # rows distinct under the old key may collide under the new one
        Kind.TABLE_DROPPED,
        Kind.TABLE_TRUNCATED,
    }
)


@dataclass(frozen=True, slots=True)
class ColumnDef:
    """A source column as drift sees it: enough to compare two shapes of a table."""

    name: str
    type: str  # the warehouse type cdc maps it to (SQL text), e.g. "numeric(12,2)"
    optional: bool = True
    default: str | None = None  # the source's default, as Debezium or the catalog states it

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "optional": self.optional, "default": self.default}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ColumnDef:
        return cls(str(data["name"]), str(data["type"]), bool(data.get("optional", True)), data.get("default"))

    def __str__(self) -> str:
        text = f"{self.name} {self.type}" + ("" if self.optional else " NOT NULL")
        return text + (f" DEFAULT {self.default}" if self.default is not None else "")


@dataclass(frozen=True, slots=True)
class Change:
    kind: Kind
    column: str | None = None  # the column it is about (the new name of a renamed one)
    before: ColumnDef | None = None
    after: ColumnDef | None = None
    detail: str = ""  # for table and key changes, and for unknown DDL: what happened, in words
    statement: str | None = None  # the source DDL, when the DDL capture saw it

    @property
    def destructive(self) -> bool:
        return self.kind in _DESTRUCTIVE

    def describe(self) -> str:  # noqa: PLR0911 - one sentence per kind
        """One line for people: log lines, alerts, `cdc schema history`."""
        kind = self.kind
        if kind is Kind.COLUMN_ADDED and self.after is not None:
            return f"column added: {self.after}"
        if kind is Kind.COLUMN_DROPPED and self.before is not None:
            return f"column dropped: {self.before}"
        if kind is Kind.COLUMN_RENAMED and self.before is not None and self.after is not None:
            return f"column renamed: {self.before.name} -> {self.after.name}"
        if kind in _TYPE_KINDS and self.before is not None and self.after is not None:
            return f"{kind.value.replace('_', ' ')}: {self.column} {self.before.type} -> {self.after.type}"
        if kind is Kind.NULLABILITY_CHANGED and self.after is not None:
            return f"nullability changed: {self.column} is now {'NULL' if self.after.optional else 'NOT NULL'}"
        if kind is Kind.DEFAULT_CHANGED and self.before is not None and self.after is not None:
            return f"default changed: {self.column} {self.before.default or 'none'} -> {self.after.default or 'none'}"
        return f"{kind.value.replace('_', ' ')}: {self.detail}" if self.detail else kind.value.replace("_", " ")


_TYPE_KINDS = frozenset({Kind.TYPE_WIDENED, Kind.TYPE_NARROWED, Kind.TYPE_INCOMPATIBLE})
