"""Which warehouse table a source table is replicated into: a pure function of its name and the
settings (`CDC_WAREHOUSE_SCHEMA`, `CDC_TABLE_NAME_FORMAT`), never of arrival order or of what else
the warehouse holds.

The one exception is history: a source table that `cdc.table_map` already maps (for this
warehouse schema) keeps that table, so a warehouse made by an earlier version or under another
format keeps working. Two source tables that would share a table are an error, found before
anything is written: by `cdc connector apply` (from the source's catalog) and by `cdc sync` at
start (from the topics) and again when a table's first event arrives (from the event itself).
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Iterable, Mapping

from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.warehouse.statements import Target

DEFAULT_FORMAT = "{schema}__{table}"
FIELDS = ("schema", "table")
MAX_IDENT = 63  # bytes; PostgreSQL truncates longer identifiers silently
_HASH = 8  # hex digits of the digest that keeps truncated names apart


def _fix(fmt: str) -> str:
    example = "" if "{schema}" in fmt else ", such as '{schema}__{table}'"
    return (
        f"set CDC_TABLE_NAME_FORMAT (now {fmt!r}) to a format that tells them apart{example} (tables "
        "cdc.table_map already maps keep their names), or leave one out (CDC_EXCLUDE_TABLES, or sync --table)"
    )


def check_format(fmt: str) -> str:
    """The format's own errors, as the message of a ValueError (settings turn it into a fix)."""
    try:
        parsed = list(string.Formatter().parse(fmt))
    except ValueError as exc:
        raise ValueError(f"is not a format: {exc} (write a literal brace as {{{{ or }}}})") from None
    names = [name for _, name, _, _ in parsed if name is not None]
    for _, name, spec, conversion in parsed:
        if name is None:
            continue
        if name not in FIELDS:
            raise ValueError(f"names {{{name}}}; a table name format may use only {{schema}} and {{table}}")
        if spec or conversion:
            raise ValueError(f"formats {{{name}}} with a conversion or spec; write {{{name}}} alone")
    if "table" not in names:
        raise ValueError("has no {table}: every source table would get the same warehouse table")
    return fmt


def fit_identifier(name: str) -> str:
    """A name PostgreSQL keeps whole: a longer one is cut to fit and ends with a digest of the whole
    name, so two long names that share their first 54 bytes stay apart."""
    raw = name.encode()
    if len(raw) <= MAX_IDENT:
        return name
    digest = hashlib.sha256(raw).hexdigest()[:_HASH]
    return raw[: MAX_IDENT - _HASH - 1].decode(errors="ignore") + "_" + digest


def target_of(table: TableId, warehouse_schema: str, fmt: str = DEFAULT_FORMAT) -> Target:
    return Target(warehouse_schema, fit_identifier(fmt.format(schema=table.schema, table=table.name)))


def table_of_topic(topic: str, prefix: str) -> TableId | None:
    """The source table of a change topic `<prefix>.<schema>.<table>`. Debezium replaces characters
    a topic name cannot hold with '_', so for such names this is an approximation; sync checks the
    exact name again when the table's first event arrives."""
    head = prefix + "."
    if not topic.startswith(head):
        return None
    schema, dot, name = topic[len(head) :].partition(".")
    if not dot or not schema or not name:
        return None
    return TableId(schema, name)


class NameClash(ConfigError):
    """Two source tables would be replicated into one warehouse table."""


def plan(
    tables: Iterable[TableId],
    warehouse_schema: str,
    fmt: str,
    existing: Mapping[TableId, Target] | None = None,
) -> dict[TableId, Target]:
    """Each table's warehouse table: the one cdc.table_map already holds for it, else the format's.
    Raises NameClash naming the first two tables that would share one."""
    existing = existing or {}
    owners: dict[Target, TableId] = {target: table for table, target in existing.items()}
    planned: dict[TableId, Target] = {}
    for table in sorted(set(tables)):
        target = existing.get(table) or target_of(table, warehouse_schema, fmt)
        owner = owners.setdefault(target, table)
        if owner != table:
            raise _clash(table, owner, target, fmt, recorded=owner in existing)
        planned[table] = target
    return planned


def _clash(table: TableId, owner: TableId, target: Target, fmt: str, *, recorded: bool) -> NameClash:
    first, second = sorted((table, owner))
    if recorded:
        return NameClash(
            f"{table} would be replicated into {target}, which cdc.table_map already gives to {owner}.",
            _fix(fmt),
        )
    return NameClash(f"{first} and {second} would both be replicated into {target}.", _fix(fmt))
