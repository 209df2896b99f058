"""Schema drift in the PostgreSQL warehouse, inside the flush's transaction.

Before a batch of a table is applied, its event schema is compared with the shape last applied
(cdc.schema_state, locked for the transaction). A new shape is classified into changes, the table's
policy plans what to do, and the plan, the history rows, the alerts waiting for the webhook and the
new state are written in the same transaction as the rows: a change is detected, applied and
alerted exactly once, whatever crashes or restarts. The comparison runs once per distinct event
schema and table (cached by the schema object), not per event.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import orjson
from psycopg2 import sql
from psycopg2.extras import Json

from cdc.events import ChangeEvent, Op, TableId, TableSchema, Version
from cdc.schema.changes import Change, Kind
from cdc.schema.classify import (
    Shape,
    ddl_changes,
    ddl_column_changes,
    ddl_defaults,
    ddl_renames,
    ddl_statement,
    diff,
)
from cdc.schema.plan import AddColumn, AlterType, Layout, Operation, Rekey, RenameColumn, Step, plan, project
from cdc.schema.policy import Policies, Policy
from cdc.warehouse import statements as stmt

log = logging.getLogger("cdc.schema")


class Held:
    """A table whose policy is halt and whose new shape is not accepted yet."""


HELD = Held()


@dataclass(slots=True)
class Announcement:
    """A change recorded in this flush, logged once the flush commits."""

    table: str
    target: str
    change: Change
    policy: Policy
    action: str
    detected: bool = True  # False: a change detected and announced before, applied now


@dataclass(slots=True)
class _State:
    shape: Shape
    layout: Layout
    since: Version
    held_for: str | None
    accepted: str | None


@dataclass(slots=True)
class Drift:
    policies: Policies
    queue_alerts: bool = False  # a webhook is configured: each change also waits in cdc.alert_outbox
    announcements: list[Announcement] = field(default_factory=list)  # of the flush under way
    # (target, id(schema)) -> the schema as the warehouse stores it; schemas live as long as the decoder.
    _resolved: dict[tuple[stmt.Target, int], tuple[TableSchema, TableSchema]] = field(default_factory=dict)

    def forget_target(self, target: stmt.Target) -> None:
        """A warehouse table renamed: what was resolved for it names it no more."""
        for key in [k for k in self._resolved if k[0] == target]:
            del self._resolved[key]

    def forget(self) -> None:
        """After a rollback: what was resolved may describe DDL that was never committed."""
        self._resolved.clear()
        self.announcements.clear()

    def resolve(
        self, cur: Any, target: stmt.Target, schema: TableSchema, since: Version, created: bool
    ) -> TableSchema | Held:
        """The batch's schema as the warehouse table stores it (after applying a change, if the
        policy says so), or Held. `since`: the oldest version in the batch; `created`: the
        warehouse table was made from this very schema in this transaction."""
        cached = self._resolved.get((target, id(schema)))
        if cached is not None and cached[0] is schema:
            return cached[1]
        shape = Shape.of(schema)
        state = _load(cur, target)
        if state is None:
            layout = Layout({c.name: c.type for c in shape.columns}) if created else _adopt(cur, target, shape)
            _insert(cur, target, schema, shape, layout, since=since)
            return self._remember(target, schema, project(schema, layout))
        fingerprint = shape.fingerprint
        if since < state.since:
            # An older shape replayed (Debezium redelivers after a crash): stored as far as the
            # warehouse table has room for it.
            return self._remember(target, schema, project(schema, state.layout))
        if state.shape.fingerprint == fingerprint:
            self.settle(cur, target, since)
            return self._remember(target, schema, project(schema, state.layout))
        policy, _ = self.policies.for_table(schema.table)
        ddl = _ddl_between(cur, schema.table, state.since, since)
        changes = _explained(diff(state.shape, shape, ddl_renames(ddl)), ddl)
        if policy is Policy.HALT and state.accepted != fingerprint:
            if state.held_for != fingerprint:
                steps = [_held(c) for c in changes]
                self._record(cur, target, schema.table, steps, policy, state.shape.fingerprint, fingerprint, since)
                cur.execute(
                    "UPDATE cdc.schema_state SET held_for = %s, updated_at = now() "
                    "WHERE target_schema = %s AND target_table = %s",
                    (fingerprint, target.schema, target.table),
                )
            return HELD
        steps, layout = plan(changes, state.layout, policy, shape.key)
        for step in steps:
            for operation in step.operations:
                cur.execute(_ddl(target, operation))
        if policy is Policy.HALT:
            self._accepted(cur, target, schema.table, steps, state.shape.fingerprint, fingerprint, since)
        else:
            self._record(cur, target, schema.table, steps, policy, state.shape.fingerprint, fingerprint, since)
        self.settle(cur, target, since)
        cur.execute(
            "UPDATE cdc.schema_state SET columns = %s, key = %s, fingerprint = %s, layout = %s, stored_as = %s, "
            "since_commit_lsn = %s, since_lsn = %s, held_for = NULL, accepted = NULL, updated_at = now() "
            "WHERE target_schema = %s AND target_table = %s",
            (
                Json([c.as_json() for c in shape.columns]),
                Json(list(shape.key)),
                fingerprint,
                Json(layout.columns),
                Json(layout.stored_as),
                *since,
                target.schema,
                target.table,
            ),
        )
        return self._remember(target, schema, project(schema, layout))

    def record_ddl(self, cur: Any, events: list[ChangeEvent], tables: TableNames, scope: str) -> None:
        """Store the source's DDL log rows (each once: Debezium may send one again), and record for
        the warehouse schema `scope`, once each, what they show: changes to a table's columns (before
        its next row arrives), and what only they show: tables created, dropped or renamed, defaults
        changed, DDL that cdc cannot classify. A renamed table's warehouse table follows it (policy
        evolve)."""
        for event in events:
            after = event.after
            if event.op not in (Op.CREATE, Op.READ) or after is None or type(after.get("id")) is not int:
                continue  # the log is only ever appended to
            row = {name: after.get(name) for name in _DDL_COLUMNS}
            for name in _DDL_JSON:
                row[name] = _json_or_text(row[name])
            cur.execute(
                "INSERT INTO cdc.source_ddl (id, commit_lsn, lsn, command_tag, object_identity, table_oid, "
                "schema_before, table_before, schema_name, table_name, statement, columns_before, columns_after, "
                "key_before, key_after) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (id) DO NOTHING",
                (after["id"], *event.version, *(Json(row[n]) if n in _DDL_JSON else row[n] for n in _DDL_COLUMNS)),
            )
            # Stored once for the warehouse; recorded once per warehouse schema that replicates from it.
            cur.execute(
                "INSERT INTO cdc.source_ddl_seen (target_schema, id) VALUES (%s, %s) ON CONFLICT DO NOTHING "
                "RETURNING id",
                (scope, after["id"]),
            )
            if cur.fetchone() is not None:
                self._record_ddl_row(cur, after["id"], row, event.version, tables)

    def _record_ddl_row(self, cur: Any, number: int, row: dict[str, Any], since: Version, tables: TableNames) -> None:
        changes = ddl_changes(row)
        columns = ddl_column_changes(row)
        if not changes and not columns:
            return
        table = TableId(str(row.get("schema_name") or ""), str(row.get("table_name") or ""))
        old = TableId(str(row.get("schema_before") or ""), str(row.get("table_before") or ""))
        # Only what happened to a table while it is replicated here: a new group reads the whole
        # log, and a table's older DDL is already in the shape it was first seen with.
        was = old if old.name else table
        target = tables.target_for(cur, was)
        cur.execute(
            "SELECT (since_commit_lsn, since_lsn) < (%s, %s), held_for IS NOT NULL FROM cdc.schema_state "
            "WHERE target_schema = %s AND target_table = %s",
            (*since, target.schema, target.table),
        )
        state = cur.fetchone()
        replicated = state is not None and bool(state[0])
        held = state is not None and bool(state[1])
        # A table's creation is recorded whenever its DDL is read, before or after its first rows.
        created = bool(changes) and changes[0].kind is Kind.TABLE_CREATED
        if not (replicated or created):
            return
        policy, _ = self.policies.for_table(was)  # a rename is handled as the table's policy, before it
        steps = []
        for change in changes:
            if change.kind is Kind.TABLE_RENAMED and policy is not Policy.ALERT:
                steps.append(Step(change, tables.follow_rename(cur, old, table)))
                target = tables.target_for(cur, table)  # where its history now is
            else:
                steps.append(Step(change, _DDL_ACTIONS.get(change.kind, "recorded")))
        self._record(cur, target, table, steps, policy, f"ddl:{number}", f"ddl:{number}", since)
        # Changes to the columns, detected now, before any row of the new shape; that row's event
        # schema tells what to apply, and the history row then says what was (see _claimed).
        # A held table's changes were recorded when it was held (its DDL read late, by another
        # member); those made while it is held are detected from its events once accepted.
        awaiting = [] if held else [Step(c, _AWAITING[policy]) for c in columns]
        self._record(
            cur, target, table, awaiting, policy, f"ddl:{number}", f"ddl:{number}:columns", since, awaiting=True
        )

    def is_held(self, cur: Any, target: stmt.Target) -> bool:
        cur.execute(
            "SELECT held_for IS NOT NULL FROM cdc.schema_state WHERE target_schema = %s AND target_table = %s",
            (target.schema, target.table),
        )
        row = cur.fetchone()
        return bool(row and row[0])

    def truncated(self, cur: Any, target: stmt.Target, table: TableId, version: Version, *, soft: bool) -> None:
        """A truncate is data (applied whatever the policy, as the source did), and destructive:
        alerted, once per truncate."""
        policy, _ = self.policies.for_table(table)
        action = "marked every row deleted" if soft else "removed every row"
        change = Change(Kind.TABLE_TRUNCATED, detail=f"{table} truncated")
        position = f"truncate:{version.commit_lsn}:{version.lsn}"
        self._record(
            cur, target, table, [Step(change, f"{action}, as the source did")], policy, position, position, version
        )

    def _remember(self, target: stmt.Target, schema: TableSchema, stored: TableSchema) -> TableSchema:
        self._resolved[(target, id(schema))] = (schema, stored)
        return stored

    def _record(  # noqa: PLR0917
        self,
        cur: Any,
        target: stmt.Target,
        table: TableId,
        steps: list[Step],
        policy: Policy,
        before: str,
        after: str,
        since: Version,
        *,
        awaiting: bool = False,
    ) -> None:
        """History rows and webhook alerts, each once: the dedupe key names the table, the two shapes
        and the change, so a flush that is retried, or a change seen again, adds nothing. `awaiting`:
        changes the DDL log shows, recorded before the first row of the new shape arrives."""
        for number, step in enumerate(steps):
            dedupe = _dedupe(target, before, after, number, policy, step)
            if not awaiting and self._claimed(cur, target, table, step, policy, dedupe, since):
                continue
            self._record_one(cur, target, table, step, policy, dedupe, since, awaiting=awaiting)

    def _claimed(  # noqa: PLR0917
        self, cur: Any, target: stmt.Target, table: TableId, step: Step, policy: Policy, dedupe: str, since: Version
    ) -> bool:
        """Whether the change was recorded already: by this very dedupe key (a flush seen again), or
        when the source's DDL log showed it (awaiting its first row). That row, alerted then, now
        says what was done, as the event schema has it; the log says so too. One row, one alert."""
        cur.execute("SELECT 1 FROM cdc.schema_change WHERE dedupe = %s", (dedupe,))
        if cur.fetchone() is not None:
            return True
        change = step.change
        cur.execute(
            # The latest DDL before the batch that made this change (an older one, never shown by an
            # event schema, is settled below).
            "SELECT id FROM cdc.schema_change WHERE target_schema = %s AND target_table = %s AND awaiting "
            "AND change = ANY(%s) AND column_name IS NOT DISTINCT FROM %s AND (commit_lsn, lsn) < (%s, %s) "
            "ORDER BY id DESC LIMIT 1 FOR UPDATE",
            (target.schema, target.table, list(_SAME_CHANGE.get(change.kind, (change.kind,))), change.column, *since),
        )
        row = cur.fetchone()
        if row is None:
            return False
        cur.execute(
            "UPDATE cdc.schema_change SET change = %s, before = %s, after = %s, destructive = %s, "
            "statement = coalesce(statement, %s), policy = %s, action = %s, dedupe = %s, awaiting = false "
            "WHERE id = %s",
            (*_described(change), policy.value, step.action, dedupe, row[0]),
        )
        self.announcements.append(Announcement(str(table), str(target), change, policy, step.action, detected=False))
        return True

    def settle(self, cur: Any, target: stmt.Target, since: Version) -> None:
        """Changes the DDL log showed before `since` that no event schema since has: nothing was
        left to apply for them (a type change Debezium sends alike, a column added and dropped
        again before any row); their history rows say so and await no more."""
        cur.execute(
            "UPDATE cdc.schema_change SET awaiting = false, action = action || %s "
            "WHERE target_schema = %s AND target_table = %s AND awaiting AND (commit_lsn, lsn) < (%s, %s)",
            ("; the rows that followed needed nothing more", target.schema, target.table, *since),
        )

    def _accepted(  # noqa: PLR0917
        self,
        cur: Any,
        target: stmt.Target,
        table: TableId,
        steps: list[Step],
        before: str,
        after: str,
        since: Version,
    ) -> None:
        """A held change, accepted and applied: its history row (written when it was held, and
        alerted then) now says what was done. One row and one alert per change, as for every policy;
        the log says it was applied."""
        for number, step in enumerate(steps):
            was = _dedupe(target, before, after, number, Policy.HALT, _held(step.change))
            action = f"held, then accepted: {step.action}"
            cur.execute("UPDATE cdc.schema_change SET action = %s WHERE dedupe = %s RETURNING id", (action, was))
            if cur.fetchone() is None:  # its held row is gone (deleted by hand): recorded now
                dedupe = _dedupe(target, before, after, number, Policy.HALT, step)
                self._record_one(cur, target, table, replace(step, action=action), Policy.HALT, dedupe, since)
                continue
            self.announcements.append(
                Announcement(str(table), str(target), step.change, Policy.HALT, action, detected=False)
            )

    def _record_one(  # noqa: PLR0917
        self,
        cur: Any,
        target: stmt.Target,
        table: TableId,
        step: Step,
        policy: Policy,
        dedupe: str,
        since: Version,
        *,
        awaiting: bool = False,
    ) -> None:
        change = step.change
        cur.execute(
            "INSERT INTO cdc.schema_change (target_schema, target_table, source_table, column_name, change, "
            "before, after, destructive, statement, commit_lsn, lsn, policy, action, dedupe, awaiting) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (dedupe) DO NOTHING RETURNING id, detected_at",
            (
                target.schema,
                target.table,
                str(table),
                change.column,
                *_described(change),
                *since,
                policy.value,
                step.action,
                dedupe,
                awaiting,
            ),
        )
        row = cur.fetchone()
        if row is None:
            return
        announcement = Announcement(str(table), str(target), change, policy, step.action)
        if self.queue_alerts:
            cur.execute(
                "INSERT INTO cdc.alert_outbox (payload, scope) VALUES (%s, %s)",
                (Json(alert_payload(announcement, row[0], since)), target.schema),
            )
        self.announcements.append(announcement)


def held_tables(cur: Any, schema: str) -> set[TableId]:
    """The source tables of a warehouse schema that their policy holds (until `cdc schema accept`)."""
    cur.execute(
        "SELECT source_schema, source_table FROM cdc.schema_state WHERE target_schema = %s AND held_for IS NOT NULL",
        (schema,),
    )
    return {TableId(s, t) for s, t in cur.fetchall()}


def alert_payload(a: Announcement, history_id: int, since: Version) -> dict[str, Any]:
    """A Slack-compatible body: `text` for people, `attachments[].fields` for Slack's layout, and
    `cdc` with every field for machines."""
    change = a.change
    text = f"cdc: schema change in {a.table} ({change.describe()}). Policy {a.policy.value}: {a.action}."
    fields = [
        ("table", a.table),
        ("warehouse table", a.target),
        ("change", change.kind.value),
        ("destructive", "yes" if change.destructive else "no"),
        ("before", "" if change.before is None else str(change.before)),
        ("after", "" if change.after is None else str(change.after)),
        ("policy", a.policy.value),
        ("action", a.action),
        ("source position", f"{since.commit_lsn}/{since.lsn}"),
    ]
    if change.statement:
        fields.append(("statement", change.statement[:2000]))
    return {
        "text": text,
        "attachments": [
            {
                "color": "danger" if change.destructive else "warning",
                "fields": [{"title": t, "value": v, "short": len(v) < 40} for t, v in fields if v],
            }
        ],
        "cdc": {
            "id": history_id,
            "table": a.table,
            "target": a.target,
            "change": change.kind.value,
            "column": change.column,
            "before": None if change.before is None else change.before.as_json(),
            "after": None if change.after is None else change.after.as_json(),
            "destructive": change.destructive,
            "policy": a.policy.value,
            "action": a.action,
            "commit_lsn": since.commit_lsn,
            "lsn": since.lsn,
            "statement": change.statement,
        },
    }


def announce(announcements: list[Announcement]) -> None:
    """One structured log line per change, after the flush committed (a rolled-back flush says
    nothing): a warning when it is detected; what was done, when that comes later, as information."""
    for a in announcements:
        (log.warning if a.detected else log.info)(
            "schema change in %s: %s; policy %s: %s"
            if a.detected
            else "%s: applied its schema change (%s); policy %s: %s",
            a.table,
            a.change.describe(),
            a.policy.value,
            a.action,
            extra={
                "table": a.table,
                "target": a.target,
                "change": a.change.kind.value,
                "column": a.change.column,
                "destructive": a.change.destructive,
                "policy": a.policy.value,
                "action": a.action,
            },
        )


def _described(change: Change) -> tuple[Any, ...]:
    """A change's change, before, after, destructive and statement columns of cdc.schema_change."""
    before = None if change.before is None else Json(change.before.as_json())
    after = None if change.after is None else Json(change.after.as_json())
    return change.kind.value, before, after, change.destructive, change.statement


def _dedupe(target: stmt.Target, before: str, after: str, number: int, policy: Policy, step: Step) -> str:  # noqa: PLR0917
    """The key that makes a history row once: the table, the two shapes, the change's place among
    the changes between them, the policy and what it did."""
    key = f"{target}|{before}|{after}|{number}|{policy}|{step.action}"
    return hashlib.sha256(key.encode()).hexdigest()


def _held(change: Change) -> Step:
    return Step(change, "held: this table is not applied until `cdc schema accept`")


def _load(cur: Any, target: stmt.Target) -> _State | None:
    cur.execute(
        "SELECT columns, key, layout, stored_as, since_commit_lsn, since_lsn, held_for, accepted "
        "FROM cdc.schema_state WHERE target_schema = %s AND target_table = %s FOR UPDATE",
        (target.schema, target.table),
    )
    row = cur.fetchone()
    if row is None:
        return None
    columns, key, layout, stored_as, commit_lsn, lsn, held_for, accepted = row
    return _State(
        Shape.from_json(columns, key),
        Layout(dict(layout), dict(stored_as)),
        Version(commit_lsn, lsn),
        held_for,
        accepted,
    )


def _adopt(cur: Any, target: stmt.Target, shape: Shape) -> Layout:
    """A warehouse table made before cdc kept its shape: its columns by name, typed as the current
    source shape says where they match (cdc made them from it), else as the catalog does; a source
    column it lacks is added, as cdc always did."""
    cur.execute(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 AND NOT a.attisdropped",
        (target.regclass,),
    )
    catalog = {name: type_ for name, type_ in cur.fetchall() if not name.startswith(stmt.META_PREFIX)}
    known = {c.name: c.type for c in shape.columns}
    layout = Layout({name: known.get(name, type_) for name, type_ in catalog.items()})
    for column in shape.columns:
        if column.name not in layout.columns:
            cur.execute(_ddl(target, AddColumn(column.name, column.type)))
            layout.columns[column.name] = column.type
    return layout


def _insert(
    cur: Any, target: stmt.Target, schema: TableSchema, shape: Shape, layout: Layout, *, since: Version
) -> None:
    cur.execute(
        "INSERT INTO cdc.schema_state (target_schema, target_table, source_schema, source_table, columns, key, "
        "fingerprint, layout, since_commit_lsn, since_lsn) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (
            target.schema,
            target.table,
            schema.table.schema,
            schema.table.name,
            Json([c.as_json() for c in shape.columns]),
            Json(list(shape.key)),
            shape.fingerprint,
            Json(layout.columns),
            *since,
        ),
    )


def _ddl(target: stmt.Target, operation: Operation) -> sql.Composed:
    # Types come from cdc.decode.types' fixed vocabulary, never from an event's text.
    if isinstance(operation, AddColumn):
        add = sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
            target.ident, sql.Identifier(operation.name), sql.SQL(operation.type)
        )
        if operation.fill is None:
            return add
        # A constant default fills the rows already there (no rewrite), then goes: later rows
        # always arrive with their value.
        return sql.SQL("{} DEFAULT {}::{}; ALTER TABLE {} ALTER COLUMN {} DROP DEFAULT").format(
            add, sql.Literal(operation.fill), sql.SQL(operation.type), target.ident, sql.Identifier(operation.name)
        )
    if isinstance(operation, RenameColumn):
        return sql.SQL("ALTER TABLE {} RENAME COLUMN {} TO {}").format(
            target.ident, sql.Identifier(operation.old), sql.Identifier(operation.new)
        )
    if isinstance(operation, AlterType):
        column = sql.Identifier(operation.name)
        return sql.SQL("ALTER TABLE {} ALTER COLUMN {} TYPE {} USING {}::{}").format(
            target.ident, column, sql.SQL(operation.type), column, sql.SQL(operation.type)
        )
    return _rekey(target, operation)


def _rekey(target: stmt.Target, operation: Rekey) -> sql.Composed:
    """Drop the primary key, whatever its name, and add the new one."""
    drop = sql.SQL(
        "DO $$ DECLARE pk text; BEGIN SELECT conname INTO pk FROM pg_constraint "
        "WHERE conrelid = {reg}::regclass AND contype = 'p'; "
        "IF pk IS NOT NULL THEN EXECUTE format('ALTER TABLE %s DROP CONSTRAINT %I', {reg}, pk); END IF; END $$"
    ).format(reg=sql.Literal(target.regclass))
    if not operation.columns:
        return drop
    add = sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(
        target.ident, sql.SQL(", ").join(map(sql.Identifier, operation.columns))
    )
    return sql.SQL("; ").join([drop, add])


_DDL_JSON = ("columns_before", "columns_after", "key_before", "key_after")
_DDL_COLUMNS = (
    "command_tag",
    "object_identity",
    "table_oid",
    "schema_before",
    "table_before",
    "schema_name",
    "table_name",
    "statement",
    "columns_before",
    "columns_after",
    "key_before",
    "key_after",
)


class TableNames(Protocol):
    """What drift needs of the warehouse's table naming, to record and follow table-level DDL."""

    def target_for(self, cur: Any, table: TableId) -> stmt.Target: ...

    def follow_rename(self, cur: Any, old: TableId, new: TableId) -> str: ...


_DDL_ACTIONS = {
    Kind.TABLE_CREATED: "recorded; replicated once cdc connector apply captures it",
    Kind.TABLE_DROPPED: "kept the warehouse table and its rows",
    Kind.DEFAULT_CHANGED: "nothing to do: the warehouse stores the values rows arrive with",
    Kind.UNKNOWN: "recorded: cdc cannot classify this DDL; check the warehouse table against the statement",
}


# What a change the DDL log shows awaits: the first row of the new shape.
_AWAITING = {
    Policy.EVOLVE: "detected in the source's DDL; applied to the warehouse table as its next row arrives",
    Policy.ALERT: "detected in the source's DDL; the warehouse table keeps its shape",
    Policy.HALT: "detected in the source's DDL; the table is held as its next row arrives, until cdc schema accept",
}
_TYPES = (Kind.TYPE_WIDENED, Kind.TYPE_NARROWED, Kind.TYPE_INCOMPATIBLE)
# The catalog and the event schema may name a type change differently (a type Debezium sends as
# text): either is the same change of that column.
_SAME_CHANGE = dict.fromkeys(_TYPES, _TYPES)


def _json_or_text(value: Any) -> Any:
    """Debezium sends a jsonb value as its text: the log's columns and keys, parsed."""
    if isinstance(value, str):
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value  # kept as it came: the classifier calls it unknown
    return value


def _explained(changes: list[Change], ddl: list[dict[str, Any]]) -> list[Change]:
    """Changes with what the DDL log adds: the statement, and an added column's default ("" for
    none; left unknown without a DDL log)."""
    defaults = ddl_defaults(ddl)
    explained = []
    for change in changes:
        about = change.column or (change.before.name if change.before else None)
        better = replace(change, statement=ddl_statement(ddl, about))
        if ddl and better.kind is Kind.COLUMN_ADDED and better.after is not None:
            better = replace(better, after=replace(better.after, default=defaults.get(better.after.name, "")))
        explained.append(better)
    return explained


def _ddl_between(cur: Any, table: TableId, after: Version, until: Version) -> list[dict[str, Any]]:
    """The DDL log rows of a table between two source positions, oldest first."""
    cur.execute(
        "SELECT statement, columns_before, columns_after, table_oid FROM cdc.source_ddl "
        "WHERE schema_name = %s AND table_name = %s AND (commit_lsn, lsn) > (%s, %s) AND (commit_lsn, lsn) <= (%s, %s) "
        "ORDER BY id",
        (table.schema, table.name, *after, *until),
    )
    return [
        {"statement": s, "columns_before": b, "columns_after": a, "table_oid": oid} for s, b, a, oid in cur.fetchall()
    ]
