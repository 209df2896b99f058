"""What the source captures: the table list, the publication, replica identities, snapshot signals.

cdc owns the publication's table list (Debezium's `filtered` mode is given the same list), so a
table created after the connector started is captured by the next `cdc connector apply`, and its
existing rows are sent by an incremental snapshot signal.
"""

from __future__ import annotations

import fnmatch
import json
import re
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

import psycopg2
import psycopg2.errors
from psycopg2 import sql

from cdc import pgerrors
from cdc.errors import ConnectorError
from cdc.resources import sql_file
from cdc.settings import Settings, split_list

INTERNAL_SCHEMA = "cdc"
SIGNAL_TABLE = "debezium_signal"
HEARTBEAT_TABLE = "debezium_heartbeat"
DDL_TABLE = "schema_ddl"  # written by the DDL capture of `cdc schema install`, when installed
# cdc's own tables that are never captured, and never worth a word (the DDL capture's memory).
QUIET_TABLES = frozenset({(INTERNAL_SCHEMA, "schema_snapshot")})
INTERNAL_TABLES = ((INTERNAL_SCHEMA, SIGNAL_TABLE), (INTERNAL_SCHEMA, HEARTBEAT_TABLE), (INTERNAL_SCHEMA, DDL_TABLE))
_PLAIN = re.compile(r"[A-Za-z0-9_]+")
_LOWER_PLAIN = re.compile(r"[a-z_][a-z0-9_]*")

_TABLES_SQL = """
SELECT n.nspname, c.relname, c.relreplident::text,
       EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_%%'
ORDER BY 1, 2
"""


@dataclass(frozen=True, order=True)
class SourceTable:
    schema: str
    name: str
    replica_identity: str = "d"  # pg_class.relreplident: d(efault) n(othing) f(ull) i(ndex)
    has_primary_key: bool = True

    @property
    def qualified(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def ident(self) -> sql.Composed:
        return sql.SQL(".").join([sql.Identifier(self.schema), sql.Identifier(self.name)])

    @property
    def internal(self) -> bool:
        return (self.schema, self.name) in INTERNAL_TABLES


def java_regex_literal(text: str) -> str:
    """A Java regex matching exactly text. Every character but [A-Za-z0-9_] is hex-escaped, so
    dots, quotes, spaces, unicode and even commas (the include-list separator) are safe."""
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch == "_") else f"\\x{{{ord(ch):X}}}" for ch in text)


def include_list(tables: list[SourceTable]) -> str:
    return ",".join(f"{java_regex_literal(t.schema)}\\.{java_regex_literal(t.name)}" for t in tables)


def connect(url: str) -> psycopg2.extensions.connection:
    conn = pgerrors.connect(url, "source")
    conn.autocommit = True
    return conn


# pg_advisory_lock key of `cdc connector apply` ("cdcapply" in ASCII).
APPLY_LOCK = 0x6364636170706C79


def lock_apply(conn: psycopg2.extensions.connection, say: Callable[[str], None]) -> None:
    """One `cdc connector apply` at a time per source (held until the connection closes): each
    lists the tables and sends the whole table list, so two at once could each leave out what the
    other had just added."""
    with conn.cursor() as cur:
        cur.execute("SELECT pg_try_advisory_lock(%s)", (APPLY_LOCK,))
        row = cur.fetchone()
        if row and row[0]:
            return
        say("another cdc connector apply runs against this source: waiting for it to finish")
        cur.execute("SELECT pg_advisory_lock(%s)", (APPLY_LOCK,))


def setup_source(conn: psycopg2.extensions.connection) -> None:
    with conn.cursor() as cur:
        cur.execute(sql_file("source_setup.sql"))


class Skip(StrEnum):
    """Why a user table is not captured; in the order the filters apply, the first that holds."""

    INTERNAL = "in cdc's internal schema"
    SCHEMA_NOT_INCLUDED = "schema matched by no CDC_INCLUDE_SCHEMAS pattern"
    SCHEMA_EXCLUDED = "schema excluded by CDC_EXCLUDE_SCHEMAS"
    TABLE_NOT_INCLUDED = "matched by no CDC_INCLUDE_TABLES pattern"
    TABLE_EXCLUDED = "excluded by CDC_EXCLUDE_TABLES"


@dataclass(frozen=True)
class Selection:
    captured: list[SourceTable]  # with cdc's signal and heartbeat tables
    skipped: dict[Skip, list[SourceTable]] = field(default_factory=dict)  # only reasons that hold for some
    unmatched: list[tuple[str, str]] = field(default_factory=list)  # (setting, pattern) matching no table

    @property
    def captured_user_tables(self) -> list[SourceTable]:
        return [t for t in self.captured if not t.internal]


def classify(tables: Iterable[SourceTable], settings: Settings) -> Selection:
    """Which tables the include/exclude settings capture, why each other one is not, and which
    patterns match no table at all (a typo, most likely). cdc's own signal and heartbeat tables are
    always captured (Debezium must see both in the WAL); other tables of its schema never are."""
    listed = sorted(tables)
    inc_s, exc_s = split_list(settings.include_schemas), split_list(settings.exclude_schemas)
    inc_t, exc_t = split_list(settings.include_tables), split_list(settings.exclude_tables)

    def matches(value: str, patterns: list[str]) -> bool:
        return any(fnmatch.fnmatchcase(value, p) for p in patterns)

    rules: list[tuple[Skip, Callable[[SourceTable], bool]]] = [
        (Skip.INTERNAL, lambda t: t.schema == INTERNAL_SCHEMA),
        (Skip.SCHEMA_NOT_INCLUDED, lambda t: bool(inc_s) and not matches(t.schema, inc_s)),
        (Skip.SCHEMA_EXCLUDED, lambda t: matches(t.schema, exc_s)),
        (Skip.TABLE_NOT_INCLUDED, lambda t: bool(inc_t) and not matches(t.qualified, inc_t)),
        (Skip.TABLE_EXCLUDED, lambda t: matches(t.qualified, exc_t)),
    ]
    captured: list[SourceTable] = []
    skipped: dict[Skip, list[SourceTable]] = {}
    for table in listed:
        if (table.schema, table.name) in QUIET_TABLES:
            continue
        why = None if table.internal else next((skip for skip, holds in rules if holds(table)), None)
        if why is None:
            captured.append(table)
        else:
            skipped.setdefault(why, []).append(table)

    schemas, names = {t.schema for t in listed}, [t.qualified for t in listed]
    unmatched = [
        (setting, pattern)
        for setting, patterns, values in (
            ("CDC_INCLUDE_SCHEMAS", inc_s, schemas),
            ("CDC_EXCLUDE_SCHEMAS", exc_s, schemas),
            ("CDC_INCLUDE_TABLES", inc_t, names),
            ("CDC_EXCLUDE_TABLES", exc_t, names),
        )
        for pattern in patterns
        if not any(fnmatch.fnmatchcase(value, pattern) for value in values)
    ]
    return Selection(captured, {why: skipped[why] for why in Skip if why in skipped}, unmatched)


def survey(conn: psycopg2.extensions.connection, settings: Settings) -> Selection:
    with conn.cursor() as cur:
        cur.execute(_TABLES_SQL)
        rows = cur.fetchall()
    return classify((SourceTable(s, n, r, pk) for s, n, r, pk in rows), settings)


def discover(conn: psycopg2.extensions.connection, settings: Settings) -> list[SourceTable]:
    """The tables to capture: every user table, filtered by the include/exclude settings, plus
    cdc's own signal and heartbeat tables."""
    return survey(conn, settings).captured


def display_name(table: SourceTable) -> str:
    """schema.table for people: a part that is not a plain lower-case name is double-quoted as in
    SQL, and characters that would break the line (newlines, escapes) are written as \\uXXXX."""

    def part(name: str) -> str:
        if _LOWER_PLAIN.fullmatch(name):
            return name
        shown = "".join(ch if ch.isprintable() else f"\\u{ord(ch):04x}" for ch in name)
        return '"' + shown.replace('"', '""') + '"'

    return f"{part(table.schema)}.{part(table.name)}"


def name_list(tables: list[SourceTable], limit: int = 20) -> str:
    """At most limit names, then how many more: a database may hold thousands of tables."""
    if not tables:
        return "none"
    shown = [display_name(t) for t in tables[:limit]]
    if len(tables) > limit:
        shown.append(f"and {len(tables) - limit} more")
    return ", ".join(shown)


def describe(selection: Selection, limit: int = 20) -> list[str]:
    """What `cdc connector apply` says about the selection: one warning per pattern that matches no
    table, and one line naming the tables not captured, grouped by why (about limit names in all)."""
    captured = name_list(selection.captured_user_tables, limit)
    lines = [
        f"{setting} pattern {pattern!r} matches no table; captured: {captured}"
        for setting, pattern in selection.unmatched
    ]
    if selection.skipped:
        total = sum(len(tables) for tables in selection.skipped.values())
        each = max(5, limit // len(selection.skipped))
        groups = [f"{name_list(tables, each)} ({why})" for why, tables in selection.skipped.items()]
        lines.append(f"not captured ({total} {'table' if total == 1 else 'tables'}): " + "; ".join(groups))
    return lines


def ensure_replica_identity(conn: psycopg2.extensions.connection, tables: list[SourceTable]) -> list[SourceTable]:
    """REPLICA IDENTITY FULL on captured tables without a primary key (else Postgres rejects their
    UPDATE/DELETE once they are in a publication, and Debezium could not say which row changed)."""
    changed = [t for t in tables if not t.has_primary_key and t.replica_identity == "d"]
    with conn.cursor() as cur:
        for table in changed:
            cur.execute(sql.SQL("ALTER TABLE {} REPLICA IDENTITY FULL").format(table.ident))
    return changed


@dataclass(frozen=True)
class PublicationChange:
    existed: bool
    added: list[SourceTable]
    removed: list[str]


def sync_publication(conn: psycopg2.extensions.connection, name: str, tables: list[SourceTable]) -> PublicationChange:
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (name,))
        existed = cur.fetchone() is not None
        cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (name,))
        before = {f"{s}.{t}" for s, t in cur.fetchall()}
        listed = sql.SQL(", ").join(t.ident for t in tables)
        if not existed:
            cur.execute(
                sql.SQL(
                    "CREATE PUBLICATION {} FOR TABLE {} WITH "
                    "(publish = 'insert, update, delete, truncate', publish_via_partition_root = true)"
                ).format(sql.Identifier(name), listed)
            )
        elif before != {t.qualified for t in tables}:
            cur.execute(sql.SQL("ALTER PUBLICATION {} SET TABLE {}").format(sql.Identifier(name), listed))
    added = [t for t in tables if t.qualified not in before]
    removed = sorted(before - {t.qualified for t in tables})
    return PublicationChange(existed, added, removed)


def sync_publication_retrying(
    conn: psycopg2.extensions.connection, settings: Settings, tables: list[SourceTable], attempts: int = 5
) -> tuple[PublicationChange, list[SourceTable]]:
    """sync_publication, listing the tables again if one was dropped since it was listed."""
    for attempt in range(attempts):
        try:
            return sync_publication(conn, settings.publication_name, tables), tables
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
            if attempt == attempts - 1:
                raise
            tables = discover(conn, settings)
    raise AssertionError("unreachable")


def has_rows(conn: psycopg2.extensions.connection, table: SourceTable) -> bool:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT EXISTS (SELECT 1 FROM {})").format(table.ident))
        row = cur.fetchone()
    return bool(row and row[0])


def slot_walsender(conn: psycopg2.extensions.connection, slot: str) -> int | None:
    """The pid of the walsender streaming from the slot, None when nobody streams from it."""
    with conn.cursor() as cur:
        cur.execute("SELECT active_pid FROM pg_replication_slots WHERE slot_name = %s", (slot,))
        row = cur.fetchone()
    return int(row[0]) if row and row[0] is not None else None


def wait_new_walsender(conn: psycopg2.extensions.connection, slot: str, old: int | None, timeout: float = 90) -> None:
    """Wait until a connector task other than the one streaming before (pid old) streams."""
    deadline = time.monotonic() + timeout
    while (pid := slot_walsender(conn, slot)) is None or pid == old:
        if time.monotonic() > deadline:
            raise ConnectorError(
                f"the connector restarted, but after {timeout:.0f}s no new task streams from slot {slot}.",
                "see `cdc connector status` and the Connect worker's log",
            )
        time.sleep(0.3)


def snapshot_collection(table: SourceTable) -> str:
    """How a table is named in an execute-snapshot signal: a plain schema.table when that is
    unambiguous, else an exact regex."""
    if _PLAIN.fullmatch(table.schema) and _PLAIN.fullmatch(table.name):
        return table.qualified
    return f"{java_regex_literal(table.schema)}\\.{java_regex_literal(table.name)}"


def request_snapshot(
    conn: psycopg2.extensions.connection,
    tables: list[SourceTable],
    *,
    kind: str = "incremental",
    filters: dict[str, str] | None = None,
) -> str:
    """Insert an execute-snapshot signal; its id, which Debezium's notifications of an incremental
    snapshot carry. kind: incremental (chunked by key, alongside streaming) or blocking (streaming
    paused meanwhile; the one kind a table without a key allows). filters: table.qualified -> an SQL
    condition on the table (Debezium's additional-conditions, matched by an exact regex)."""
    signal_id = str(uuid.uuid4())
    data: dict[str, object] = {
        "data-collections": [snapshot_collection(t) for t in tables],
        "type": kind,
    }
    if filters:
        data["additional-conditions"] = [
            {
                "data-collection": f"{java_regex_literal(t.schema)}\\.{java_regex_literal(t.name)}",
                "filter": filters[t.qualified],
            }
            for t in tables
            if t.qualified in filters
        ]
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("INSERT INTO {}.{} (id, type, data) VALUES (%s, 'execute-snapshot', %s)").format(
                sql.Identifier(INTERNAL_SCHEMA), sql.Identifier(SIGNAL_TABLE)
            ),
            (signal_id, json.dumps(data)),
        )
    return signal_id


def open_ddl_log(conn: psycopg2.extensions.connection) -> None:
    """A first row in the DDL log once it is captured, so that its topic exists, and `cdc sync`
    reads it, before the first DDL it must explain (a topic made by that DDL's own event is found
    by the consumer only at its next metadata refresh: too late to tell a rename from drop + add)."""
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO cdc.schema_ddl (command_tag, object_type, object_identity, statement) "
            "VALUES ('CAPTURE', 'publication', 'cdc.schema_ddl', 'cdc connector apply: DDL log captured')"
        )
    conn.commit()
