"""Two shapes of a table (and, when the source's DDL capture saw it, the DDL between them) -> the
typed changes between them. Pure: no I/O."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from cdc.events import TableSchema
from cdc.schema.changes import Change, ColumnDef, Kind


@dataclass(frozen=True, slots=True)
class Shape:
    """What drift compares: a table's columns, in source order, and its primary key."""

    columns: tuple[ColumnDef, ...]
    key: tuple[str, ...]

    @classmethod
    def of(cls, schema: TableSchema) -> Shape:
        return cls(tuple(ColumnDef(c.name, c.pg_type, c.optional) for c in schema.columns), schema.key)

    @property
    def fingerprint(self) -> str:
        # Defaults are left out: an event schema does not always carry one, the DDL capture does,
        # and the same shape must have one fingerprint whichever signal saw it.
        text = orjson.dumps([[[c.name, c.type, c.optional] for c in self.columns], list(self.key)])
        return hashlib.sha256(text).hexdigest()[:32]

    def column(self, name: str) -> ColumnDef | None:
        return next((c for c in self.columns if c.name == name), None)

    def as_json(self) -> dict[str, Any]:
        return {"columns": [c.as_json() for c in self.columns], "key": list(self.key)}

    @classmethod
    def from_json(cls, columns: list[dict[str, Any]], key: list[str]) -> Shape:
        return cls(tuple(ColumnDef.from_json(c) for c in columns), tuple(key))


def diff(before: Shape, after: Shape, renames: Mapping[str, str] | None = None) -> list[Change]:
    """The changes that turn `before` into `after`. Without `renames` (old name -> new name, known
    only from the DDL capture) a renamed column is, as the event schema shows it, a drop and an add."""
    renames = dict(renames or {})
    taken = set(renames.values()) - set(renames)  # names another column was renamed to
    changes: list[Change] = []
    new_names = {c.name for c in after.columns}
    for old in before.columns:
        name = renames.get(old.name, old.name)
        # A column whose name another was renamed to (DROP b; RENAME a TO b) is gone.
        new = None if old.name in taken else after.column(name)
        if new is None:
            changes.append(Change(Kind.COLUMN_DROPPED, old.name, before=old))
            continue
        if name != old.name:
            changes.append(Change(Kind.COLUMN_RENAMED, name, before=old, after=new))
        changes.extend(column_changes(old, new))
    kept = {renames.get(c.name, c.name) for c in before.columns}
    changes = _drops_first(changes)
    changes.extend(Change(Kind.COLUMN_ADDED, c.name, after=c) for c in after.columns if c.name not in kept)
    if before.key != after.key and new_names:
        changes.append(
            Change(
                Kind.KEY_CHANGED,
                detail=f"primary key ({', '.join(before.key) or 'none'}) -> ({', '.join(after.key) or 'none'})",
            )
        )
    return changes


def _drops_first(changes: list[Change]) -> list[Change]:
    """A column dropped whose name another column was renamed to (DROP b; RENAME a TO b) goes
    first: applied in that order, the drop is of the old b, and the rename finds b taken."""
    renamed_to = {c.column for c in changes if c.kind is Kind.COLUMN_RENAMED}
    return sorted(changes, key=lambda c: not (c.kind is Kind.COLUMN_DROPPED and c.column in renamed_to))


def column_changes(old: ColumnDef, new: ColumnDef) -> list[Change]:
    """Type, nullability and default changes of one column (under its new name)."""
    changes: list[Change] = []
    kind = type_change(old.type, new.type)
    if kind is not None:
        changes.append(Change(kind, new.name, before=old, after=new))
    if old.optional != new.optional:
        changes.append(Change(Kind.NULLABILITY_CHANGED, new.name, before=old, after=new))
    # None: not known (an event schema carries no default for an expression such as now()); only
    # two known defaults are compared. The DDL capture knows them all ("" for none).
    if None not in (old.default, new.default) and old.default != new.default:
        changes.append(Change(Kind.DEFAULT_CHANGED, new.name, before=old, after=new))
    return changes


# --- types ---------------------------------------------------------------------------------------

_INTEGERS = {"smallint": 5, "integer": 10, "bigint": 19}  # decimal digits its values may have
_INTEGER_FULL = {"smallint": 4, "integer": 9, "bigint": 18}  # digits every number of which it holds
_NUMERIC = re.compile(r"numeric\((\d+),(-?\d+)\)")
_SIZED_TEXT = re.compile(r"(varchar|char)\((\d+)\)")
_TIMED = re.compile(r"(timestamp|time)(?:\((\d)\))? (with|without) time zone")
_FLOATS = {"real": 24, "double precision": 53}  # mantissa bits


def type_change(old: str, new: str) -> Kind | None:
    """None when the type is the same; else whether every value of `old` is a value of `new`
    with the same meaning (widened), the reverse (narrowed), or neither (incompatible)."""
    if old == new:
        return None
    if _widens(old, new):
        return Kind.TYPE_WIDENED
    if _widens(new, old):
        return Kind.TYPE_NARROWED
    return Kind.TYPE_INCOMPATIBLE


def _widens(old: str, new: str) -> bool:
    if old.endswith("[]") and new.endswith("[]"):
        return _widens(old[:-2], new[:-2])
    if (old, new) == ("json", "jsonb"):
        return True
    return _widens_integer(old, new) or _widens_number(old, new) or _widens_text(old, new) or _widens_time(old, new)


def _widens_integer(old: str, new: str) -> bool:
    digits = _INTEGERS.get(old)
    if digits is None:
        return False
    if new in _INTEGERS:
        return _INTEGERS[new] > digits
    if (numeric := _NUMERIC.fullmatch(new)) is not None:
        # A negative scale rounds (numeric(8,-2) keeps hundreds): no integer keeps its value.
        return int(numeric[2]) >= 0 and int(numeric[1]) - int(numeric[2]) >= digits
    return new == "numeric" or (new in _FLOATS and _FLOATS[new] > 3.33 * digits)  # bits of the integer


def _widens_number(old: str, new: str) -> bool:
    if old in _FLOATS:
        return new in _FLOATS and _FLOATS[new] > _FLOATS[old]
    if (numeric := _NUMERIC.fullmatch(old)) is not None:
        if new == "numeric":
            return True
        if new in _INTEGER_FULL:  # numeric(5,0) values are all integers
            return int(numeric[2]) <= 0 and int(numeric[1]) - int(numeric[2]) <= _INTEGER_FULL[new]
        wider = _NUMERIC.fullmatch(new)
        precision, scale = int(numeric[1]), int(numeric[2])
        return wider is not None and int(wider[2]) >= scale and int(wider[1]) - int(wider[2]) >= precision - scale
    return False


def _widens_text(old: str, new: str) -> bool:
    if (sized := _SIZED_TEXT.fullmatch(old)) is not None:
        if new in ("text", "varchar") or (sized[1] == "char" and new == "bpchar"):
            return True
        longer = _SIZED_TEXT.fullmatch(new)
        if longer is None:
            return False
        if sized[1] == "char" and longer[1] == "varchar":  # a char(n) value has at most n characters
            return int(longer[2]) >= int(sized[2])
        return int(longer[2]) > int(sized[2]) and (longer[1] == "varchar" or sized[1] == "char")
    return old in ("varchar", "bpchar") and new == "text"


_INTERVAL = re.compile(r"interval(?:\((\d)\))?")


def _widens_time(old: str, new: str) -> bool:
    if old == "date":
        return new.startswith("timestamp")
    if (span := _INTERVAL.fullmatch(old)) is not None:
        wider = _INTERVAL.fullmatch(new)
        return wider is not None and int(wider[1] or 6) >= int(span[1] or 6)
    timed, later = _TIMED.fullmatch(old), _TIMED.fullmatch(new)
    if timed is None or later is None or later[1] != timed[1]:
        return False
    more_digits = int(later[2] or 6) >= int(timed[2] or 6)
    # timestamp -> timestamptz keeps every instant (read in the server's time zone)
    return more_digits and (later[3] == timed[3] or timed[3] == "without")


# --- the source's DDL log (sql/schema_capture.sql) -----------------------------------------------


def ddl_renames(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Column renames (old name -> new name) across DDL log rows, oldest first: a column keeps its
    attnum through renames, so its first and last names tell them apart, and a name taken again by
    an added column is not confused with the column that had it. A dropped column renames nothing."""
    # A column is (table oid, attnum): a table dropped and made again under its name numbers anew.
    first: dict[tuple[Any, int], str] = {}  # column -> the name it had when first seen
    existed: set[tuple[Any, int]] = set()  # columns first seen before a command (not added by one)
    last: dict[tuple[Any, int], str] = {}
    for row in rows:
        oid = row.get("table_oid")
        before = {(oid, int(c["attnum"])): str(c["name"]) for c in row.get("columns_before") or ()}
        after = {(oid, int(c["attnum"])): str(c["name"]) for c in row.get("columns_after") or ()}
        for attnum, name in before.items():
            if attnum not in first:
                first[attnum] = name
                existed.add(attnum)
        for attnum, name in after.items():
            first.setdefault(attnum, name)
        for attnum in before.keys() - after.keys():
            last.pop(attnum, None)
        last.update(after)
    renamed = [(a, first[a], last[a]) for a in first if a in last and first[a] != last[a]]
    # Columns that existed before the rows win a name over columns the rows added.
    ordered = sorted(renamed, key=lambda r: r[0] in existed)
    return {old: new for _, old, new in ordered}


def ddl_statement(rows: list[dict[str, Any]], column: str | None) -> str | None:
    """The statement of the DDL that touched a column (the last one), else of the only DDL row."""
    for row in reversed(rows):
        if column is not None and _touches(row, column):
            return row.get("statement") or None
    return (rows[0].get("statement") or None) if len(rows) == 1 else None


def _touches(row: dict[str, Any], column: str) -> bool:
    """Whether the row changed the column (or a column renamed to or from that name)."""
    before = {c["attnum"]: c for c in row.get("columns_before") or ()}
    after = {c["attnum"]: c for c in row.get("columns_after") or ()}
    return any(
        before.get(n) != after.get(n) and column in (c.get("name") for c in (before.get(n), after.get(n)) if c)
        for n in before.keys() | after.keys()
    )


def ddl_defaults(rows: list[dict[str, Any]]) -> dict[str, str]:
    """Each column's default after the DDL (the newest row naming it), as PostgreSQL prints it."""
    defaults: dict[str, str] = {}
    for row in rows:
        for column in row.get("columns_after") or ():
            if column.get("default") is not None:
                defaults[column["name"]] = str(column["default"])
            else:
                defaults.pop(column["name"], None)
    return defaults


_QUOTED = re.compile(r"'((?:[^']|'')*)'::[a-z ]+(?:\(\d+(?:,\d+)?\))?(?:\[\])?")
_NUMBER = re.compile(r"\(?(-?[0-9]+(?:\.[0-9]+)?)\)?")


def constant_default(expression: str) -> str | None:
    """The value of a default that is a constant ('new'::text, 42, -1.5, true), as input text for
    the column's type; None for anything evaluated per row (now(), nextval(...), random()). Never
    the expression itself: it comes from the source and is not run in the warehouse."""
    if (quoted := _QUOTED.fullmatch(expression)) is not None:
        return quoted[1].replace("''", "'")
    if (number := _NUMBER.fullmatch(expression)) is not None:
        return number[1]
    return expression if expression in ("true", "false") else None


_CREATES = frozenset({"CREATE TABLE", "CREATE TABLE AS", "SELECT INTO"})


def ddl_changes(row: dict[str, Any]) -> list[Change]:
    """What a DDL log row says that no event schema can: a table created, dropped or renamed, a
    default changed; or that it changed something cdc cannot classify (`unknown`, with the
    statement). Changes an event schema shows (columns, types, nullability, key) are left to the
    comparison of event schemas, which the DDL log then explains (renames, defaults): each change
    is reported once. A malformed row is `unknown` too, never an error."""
    statement = row.get("statement")
    try:
        return _ddl_changes(row, statement)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return [Change(Kind.UNKNOWN, detail=f"a DDL log row cdc cannot read ({exc!r})", statement=statement)]


def _ddl_changes(row: dict[str, Any], statement: str | None) -> list[Change]:
    tag = str(row.get("command_tag") or "")
    name = f"{row.get('schema_name')}.{row.get('table_name')}"
    before_cols, after_cols = row.get("columns_before"), row.get("columns_after")
    if tag == "CAPTURE":  # written by cdc connector apply, to open the log's topic
        return []
    if after_cols is None and before_cols is not None:
        return [Change(Kind.TABLE_DROPPED, detail=f"{name} dropped", statement=statement)]
    if before_cols is None and tag in _CREATES:
        return [Change(Kind.TABLE_CREATED, detail=f"{name} created", statement=statement)]
    if before_cols is None or after_cols is None:
        return [Change(Kind.UNKNOWN, detail=f"{tag or 'a command'} on {name}", statement=statement)]
    changes: list[Change] = []
    old_name = f"{row.get('schema_before')}.{row.get('table_before')}"
    if row.get("table_before") and old_name != name:
        changes.append(Change(Kind.TABLE_RENAMED, detail=f"{old_name} -> {name}", statement=statement))
    before = {int(c["attnum"]): _catalog_column(c) for c in before_cols}
    after = {int(c["attnum"]): _catalog_column(c) for c in after_cols}
    for attnum, new in after.items():
        old = before.get(attnum)
        if old is not None and old.default != new.default:
            changes.append(Change(Kind.DEFAULT_CHANGED, new.name, before=old, after=new, statement=statement))
    shape_changed = before != after or row.get("key_before") != row.get("key_after")
    if not changes and not shape_changed:
        changes.append(Change(Kind.UNKNOWN, detail=f"{tag or 'a command'} on {name}", statement=statement))
    return changes


def ddl_column_changes(row: dict[str, Any]) -> list[Change]:
    """The changes to a table's columns and key that a DDL log row shows, as it arrives: before
    any row of the new shape (the event schemas then tell the same changes, and what was applied).
    Columns are told apart by attnum, so a rename is a rename. Types are the catalog's, in the
    names the event schemas give them where they are the same type (varchar(n), char(n)). A row
    that is not a table's columns before and after (created, dropped, malformed) gives none."""
    before_cols, after_cols = row.get("columns_before"), row.get("columns_after")
    if not isinstance(before_cols, list) or not isinstance(after_cols, list):
        return []
    statement = row.get("statement")
    try:
        before = {int(c["attnum"]): _catalog_column(c) for c in before_cols}
        after = {int(c["attnum"]): _catalog_column(c) for c in after_cols}
    except (KeyError, TypeError, ValueError):
        return []  # ddl_changes calls it unknown
    changes: list[Change] = []
    for attnum, old in before.items():
        new = after.get(attnum)
        if new is None:
            changes.append(Change(Kind.COLUMN_DROPPED, old.name, before=old, statement=statement))
            continue
        if new.name != old.name:
            changes.append(Change(Kind.COLUMN_RENAMED, new.name, before=old, after=new, statement=statement))
        kind = type_change(old.type, new.type)
        if kind is not None:
            changes.append(Change(kind, new.name, before=old, after=new, statement=statement))
        if old.optional != new.optional:
            changes.append(Change(Kind.NULLABILITY_CHANGED, new.name, before=old, after=new, statement=statement))
    changes = _drops_first(changes)
    changes.extend(
        Change(Kind.COLUMN_ADDED, c.name, after=c, statement=statement) for n, c in after.items() if n not in before
    )
    key_before, key_after = row.get("key_before"), row.get("key_after")
    if isinstance(key_before, list) and isinstance(key_after, list) and key_before != key_after and after:
        shown = [", ".join(map(str, k)) or "none" for k in (key_before, key_after)]
        changes.append(
            Change(Kind.KEY_CHANGED, detail=f"primary key ({shown[0]}) -> ({shown[1]})", statement=statement)
        )
    return changes


# format_type's names -> the names the event schemas give the same types (cdc.decode.types)
_CATALOG_NAMES = (
    (re.compile(r"^character varying"), "varchar"),
    (re.compile(r"^character\b"), "char"),
    # microseconds, the default, said as Debezium's schemas say it
    (re.compile(r"^(timestamp|time) (with|without) time zone"), r"\1(6) \2 time zone"),
)


def _catalog_column(column: dict[str, Any]) -> ColumnDef:
    """A column as the DDL log records it ("" for no default)."""
    default = column.get("default")
    type_ = str(column["type"])
    for pattern, name in _CATALOG_NAMES:
        type_ = pattern.sub(name, type_)
    return ColumnDef(str(column["name"]), type_, not column.get("not_null"), "" if default is None else str(default))
