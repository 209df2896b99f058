"""Every change kind of issue 8, under each of the three policies at once, `cdc sync` running
throughout (and restarted once): one source table per policy, each change made in the source in
turn with rows written before and after it. Asserted: the warehouse's shape, every row with every
value, exactly one history row and exactly one webhook per change, and what the policy did.

`halting` is held at each change to its columns or key; the two other tables keep converging while
it is held; `cdc schema accept` applies the change and it converges too."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from cdc.settings import Settings
from tests.db import execute, query
from tests.drift import cdc_schema, replicated, warehouse_columns
from tests.processes import apply_connector, assert_stopped_cleanly, log_of, wait_until
from tests.syncing import Lane, start_sync
from tests.webhook import Endpoint

pytestmark = pytest.mark.stack

POLICIES = {"evolving": "evolve", "alerting": "alert", "halting": "halt"}
TABLES = tuple(POLICIES)
CREATE = "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(20), qty integer, note text, code text, label text)"
FIRST_ROWS = "INSERT INTO {t} SELECT i, chr(96 + i), i, 'n' || i, i::text, 'l' || i FROM generate_series(1, 3) i"
BEFORE = "id name qty note code"
AFTER = "id name qty code title extra status"  # the columns once the columns' changes are made
# (change, DDL with {t} for the table, the columns of the row written after it). The row's id is
# its step's place, from 4. Each changes the table's columns or key: `halting` is held by each but
# default_changed, which the DDL log alone shows.
STEPS = [
    ("column_added", "ALTER TABLE {t} ADD COLUMN extra integer", f"{BEFORE} label extra"),
    ("column_added", "ALTER TABLE {t} ADD COLUMN status text DEFAULT 'new'", f"{BEFORE} label extra status"),
    ("column_renamed", "ALTER TABLE {t} RENAME COLUMN label TO title", f"{BEFORE} title extra status"),
    ("column_dropped", "ALTER TABLE {t} DROP COLUMN note", AFTER),
    ("type_widened", "ALTER TABLE {t} ALTER COLUMN qty TYPE bigint", AFTER),
    ("type_widened", "ALTER TABLE {t} ALTER COLUMN name TYPE varchar(50)", AFTER),
    ("type_incompatible", "ALTER TABLE {t} ALTER COLUMN code TYPE integer USING code::integer", AFTER),
    ("nullability_changed", "ALTER TABLE {t} ALTER COLUMN name SET NOT NULL", AFTER),
    ("default_changed", "ALTER TABLE {t} ALTER COLUMN extra SET DEFAULT 5", "id name qty code title status"),
    ("key_changed", "ALTER TABLE {t} DROP CONSTRAINT {k}, ADD PRIMARY KEY (id, name)", AFTER),
    ("type_narrowed", "UPDATE {t} SET qty = 8 WHERE id = 8; ALTER TABLE {t} ALTER COLUMN qty TYPE integer", AFTER),
]
VALUES = {"id": "{n}", "name": "'{c}'", "qty": "{n}", "note": "'n{n}'", "code": "'{n}'", "label": "'l{n}'"}
VALUES |= {"title": "'t{n}'", "extra": "{n}0", "status": "'s{n}'"}
WIDE = {(8, "qty"): "5000000008", (9, "name"): f"'{'i' * 40}'"}  # too wide for the column before


def row(n: int, columns: str) -> str:
    """Row n's `(columns) VALUES (...)`: id n, name the n-th letter, qty n..."""
    names = columns.split()
    values = [WIDE.get((n, name), VALUES[name]).format(n=n, c=chr(96 + n)) for name in names]
    return f"({', '.join(names)}) VALUES ({', '.join(values)})"


HOLDS = {"default_changed"}.isdisjoint  # which changes hold `halting`: all but the DDL-only one
# Every change, in the order the history has them, for each table.
KINDS = [
    "table_created",
    *(change for change, _, _ in STEPS),
    "unknown",
    "table_truncated",
    "table_renamed",
    "table_dropped",
]
FORGED = (
    "INSERT INTO cdc.schema_ddl (command_tag, object_type, object_identity, schema_name, table_name, statement, "
    "columns_before, columns_after) VALUES ('ALTER TABLE', 'table', 'x', '{s}', '{t}', 'FORGED DDL', "
    "'\"not a column list\"', '[]')"
)


def _has_row(url: str, target: tuple[str, str], row_id: int) -> bool:
    return bool(query(url, f'SELECT 1 FROM "{target[0]}"."{target[1]}" WHERE id = %s', (row_id,)))


def _held(url: str, target: tuple[str, str]) -> bool:
    rows = query(
        url,
        "SELECT held_for IS NOT NULL FROM cdc.schema_state WHERE target_schema = %s AND target_table = %s",
        target,
    )
    return bool(rows and rows[0][0])


def _history(url: str, schema: str) -> dict[str, list[tuple[str, str | None, str, str, str | None]]]:
    """Each source table's history (a renamed table's under its first name): change, column,
    policy, action, statement."""
    rows = query(
        url,
        "SELECT source_table, change, column_name, policy, action, statement FROM cdc.schema_change "
        "WHERE target_schema = %s ORDER BY id",
        (schema,),
    )
    history: dict[str, list[tuple[str, str | None, str, str, str | None]]] = {}
    for table, *change in rows:
        history.setdefault(table.split(".", 1)[1].removesuffix("_moved"), []).append(tuple(change))  # type: ignore[arg-type]
    return history


def _detected(url: str, schema: str) -> int:
    """How many changes each of the three tables' history has (-1 unless they have as many)."""
    counts = {len(changes) for changes in _history(url, schema).values()}
    return counts.pop() if len(counts) == 1 and len(_history(url, schema)) == len(TABLES) else -1


def _posted(hook: Endpoint) -> dict[str, list[str]]:
    """The changes each source table's webhooks (taken: 200) told of."""
    posted: dict[str, list[str]] = {}
    for request in hook.answered(200):
        body = json.loads(request.body)["cdc"]
        posted.setdefault(body["table"].split(".", 1)[1].removesuffix("_moved"), []).append(body["change"])
    return posted


def _source_rows(url: str, table: str) -> list[tuple[object, ...]]:
    return query(url, f"SELECT id, name, qty::text, code::text, title, extra, status FROM {table} ORDER BY id")


def _evolved_rows(url: str, target: tuple[str, str]) -> list[tuple[object, ...]]:
    """The warehouse table as the source has it: code's new values live in code__integer."""
    return query(
        url,
        "SELECT id, name, qty::text, coalesce(code__integer::text, code), title, extra, status "
        f'FROM "{target[0]}"."{target[1]}" ORDER BY id',
    )


@pytest.mark.both_clients
def test_each_change_kind_under_each_policy_is_detected_once_and_handled_as_its_policy_says(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    cdc_schema(stack, lane, "install", "--local-stack")  # event triggers need a superuser: the stack's
    execute(src, f'CREATE SCHEMA "{s}"')
    for table in TABLES:
        execute(src, CREATE.format(t=f'"{s}".{table}'))
        execute(src, FIRST_ROWS.format(t=f'"{s}".{table}'))
    apply_connector(stack)
    hook = Endpoint()
    # Patterns, so that the tables keep their policies under their new names (table_renamed, below).
    policies = f"{s}.alerting*=alert,{s}.halting*=halt"
    settings = {"CDC_SCHEMA_POLICIES": policies, "CDC_ALERT_WEBHOOK_URL": hook.url}
    log = tmp_path / "sync.log"
    processes.append(start_sync(stack, lane, log=log, **settings))

    targets = replicated(stack, lane, TABLES)
    for table in TABLES:
        wait_until(lambda table=table: _has_row(wh, targets[table], 3), 60, f"the first rows of {table}")

    def write(values: str) -> None:
        for table in TABLES:
            execute(src, f'INSERT INTO "{s}".{table} {values}')
            execute(src, f'UPDATE "{s}".{table} SET qty = qty + 1000 WHERE id = 1')

    for n, (change, ddl, columns) in enumerate(STEPS, start=4):
        for table in TABLES:
            execute(src, ddl.format(t=f'"{s}".{table}', k=f"{table}_pkey"))
        # Detected from the DDL log before any row of the new shape is written.
        wait_until(lambda n=n: _detected(wh, lane.warehouse_schema) == n - 2, 30, f"{change} detected")
        write(row(n, columns))
        for table in ("evolving", "alerting"):
            wait_until(lambda table=table, n=n: _has_row(wh, targets[table], n), 60, f"row {n} of {table}")
        if HOLDS({change}):
            wait_until(lambda: _held(wh, targets["halting"]), 30, f"halting held at {change}")
            # Held: the two others took the row (above); halting did not, and will not until accepted.
            assert not _has_row(wh, targets["halting"], n)
            cdc_schema(stack, lane, "accept", f"{s}.halting")
        wait_until(lambda n=n: _has_row(wh, targets["halting"], n), 60, f"row {n} of halting")

    # A row of the DDL log cdc cannot read (forged here): alerted as unknown, sync goes on.
    for table in TABLES:
        execute(src, FORGED.format(s=s, t=table))
    wait_until(lambda: _detected(wh, lane.warehouse_schema) == 13, 30, "unknown")

    # Restarted after the changes: nothing is detected or alerted again.
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, log)
    again = tmp_path / "again.log"
    processes.append(start_sync(stack, lane, log=again, **settings))
    write(row(15, AFTER))
    for table in TABLES:
        wait_until(lambda table=table: _has_row(wh, targets[table], 15), 60, f"row 15 of {table} after the restart")
    assert "schema change in " not in log_of(again)

    # Every row with every value: evolve and halt (accepted) store what the source has; alert
    # stores what the old shape still holds with its meaning.
    for table in ("evolving", "halting"):
        _assert_evolved(src, wh, f'"{s}".{table}', targets[table])
    _assert_alerted(wh, targets["alerting"])

    _table_level_changes(stack, lane, targets)
    _assert_history(wh, lane.warehouse_schema, s)
    wait_until(lambda: all(len(p) == len(KINDS) for p in _posted(hook).values()), 30, "one webhook per change")
    assert _posted(hook) == {table: KINDS for table in TABLES}
    assert all(r.status == 200 for r in hook.requests)
    assert len({r.key for r in hook.requests}) == len(hook.requests) == 3 * len(KINDS)
    for text in (log_of(log), log_of(again)):
        assert "SECRETTOKEN" not in text  # the webhook URL is a secret
        assert "Traceback" not in text
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, again)
    hook.close()


def _table_level_changes(stack: Settings, lane: Lane, targets: dict[str, tuple[str, str]]) -> None:
    """A truncate is data (applied under every policy); a renamed table's warehouse table follows
    it (alert: a new one is made for the new name); a drop keeps the warehouse table's rows."""
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    for table in TABLES:
        execute(src, f'TRUNCATE "{s}".{table}')
        execute(src, f'INSERT INTO "{s}".{table} {row(16, AFTER)}')
    for table in TABLES:
        wait_until(lambda table=table: _count(wh, targets[table]) == 1, 60, f"{table} truncated")
    for table in TABLES:
        execute(src, f'ALTER TABLE "{s}".{table} RENAME TO {table}_moved')
    wait_until(lambda: _detected(wh, lane.warehouse_schema) == 15, 30, "renames")
    apply_connector(stack)  # captures the tables under their new names
    for table in TABLES:
        execute(src, f'INSERT INTO "{s}".{table}_moved {row(17, AFTER)}')
    moved = dict(zip(TABLES, replicated(stack, lane, tuple(f"{t}_moved" for t in TABLES), 60).values(), strict=True))
    for table in TABLES:
        wait_until(lambda table=table: _has_row(wh, moved[table], 17), 60, f"row 17 of {table}_moved")
    assert moved["evolving"] == (lane.warehouse_schema, f"{s}__evolving_moved")
    assert moved["halting"] == (lane.warehouse_schema, f"{s}__halting_moved")
    assert _count(wh, moved["evolving"]) == _count(wh, moved["halting"]) == 2  # rows 16 and 17, in one table
    assert _count(wh, targets["alerting"]) == 1 and _count(wh, moved["alerting"]) == 1  # in two
    for table in TABLES:
        execute(src, f'DROP TABLE "{s}".{table}_moved')
    wait_until(lambda: _detected(wh, lane.warehouse_schema) == 16, 30, "the drops")
    assert _count(wh, moved["evolving"]) == 2  # the warehouse keeps a dropped table's rows


def _assert_evolved(src: str, wh: str, table: str, target: tuple[str, str]) -> None:
    assert _evolved_rows(wh, target) == _source_rows(src, table), table
    assert warehouse_columns(wh, *target) == {
        "id": "integer",
        "name": "character varying(50)",
        "qty": "bigint",  # kept wider
        "note": "text",  # dropped in the source, kept with its values
        "code": "text",  # retyped in the source: its old values stay
        "code__integer": "integer",  # and its new ones land here
        "title": "text",  # renamed, with its values
        "extra": "integer",
        "status": "text",
    }, table
    relation = f'"{target[0]}"."{target[1]}"'
    notes = query(wh, f"SELECT id, note FROM {relation} ORDER BY id")
    assert notes == [(i, f"n{i}") for i in range(1, 7)] + [(i, None) for i in range(7, 16)], table
    # The rows there before the column with a default came hold it in the source (no event says
    # so): filled alike.
    assert query(wh, f"SELECT id, status FROM {relation} WHERE id < 5 ORDER BY id") == [(i, "new") for i in range(1, 5)]
    key = query(
        wh,
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i, "
        "unnest(i.indkey) WITH ORDINALITY k(attnum, ord), pg_attribute a WHERE i.indrelid = %s::regclass "
        "AND i.indisprimary AND a.attrelid = i.indrelid AND a.attnum = k.attnum",
        (relation,),
    )
    assert key == [(["id", "name"],)], table  # re-keyed as the source was


def _assert_alerted(wh: str, target: tuple[str, str]) -> None:
    """Nothing changed shape; only values the old shape still holds with their meaning."""
    assert warehouse_columns(wh, *target) == {
        "id": "integer",
        "name": "character varying(20)",
        "qty": "integer",
        "note": "text",
        "code": "text",
        "label": "text",
    }
    rows = query(
        wh, f'SELECT id, name, qty, note, code, label FROM "{target[0]}"."{target[1]}" WHERE id >= 4 ORDER BY id'
    )
    assert rows == [
        (4, "d", 4, "n4", "4", "l4"),
        (5, "e", 5, "n5", "5", "l5"),
        (6, "f", 6, "n6", "6", None),  # label is title now: its values are not written into label
        (7, "g", 7, None, "7", None),
        (8, "h", None, None, "8", None),  # qty is a bigint now, name varchar(50), code an integer:
        (9, None, None, None, "9", None),  # none is written into the narrower or other column
        (10, None, None, None, None, None),
        (11, None, None, None, None, None),
        (12, None, None, None, None, None),
        (13, "m", None, None, None, None),  # name is in the key now: key columns are always written
        (14, "n", 14, None, None, None),  # qty an integer again
        (15, "o", 15, None, None, None),
    ]


def _assert_history(wh: str, schema: str, s: str) -> None:
    """One history row per change and table, saying what its policy did."""
    history = _history(wh, schema)
    assert sorted(history) == sorted(TABLES)
    for table in TABLES:
        assert [h[0] for h in history[table]] == KINDS, table
        assert {policy for _, _, policy, _, _ in history[table]} == {POLICIES[table]}, table
    columns = {change for change, _, _ in STEPS if HOLDS({change})}
    alerted = [action for change, _, _, action, _ in history["alerting"] if change in columns]
    assert len(alerted) == 10 and all(a.startswith("alerted only") for a in alerted), alerted
    held = [action for change, _, _, action, _ in history["halting"] if change in columns]
    evolved = [action for change, _, _, action, _ in history["evolving"] if change in columns]
    assert held == [f"held, then accepted: {a}" for a in evolved]  # accepted, halt did what evolve did
    evolving = {change: (column, action, statement) for change, column, _, action, statement in history["evolving"]}
    assert evolving["column_renamed"] == (
        "title",
        "renamed warehouse column label to title, values kept",
        f'ALTER TABLE "{s}".evolving RENAME COLUMN label TO title',
    )
    assert evolving["default_changed"][2] == f'ALTER TABLE "{s}".evolving ALTER COLUMN extra SET DEFAULT 5'
    assert evolving["unknown"][2] == "FORGED DDL"
    assert evolving["table_renamed"][2] == f'ALTER TABLE "{s}".evolving RENAME TO evolving_moved'
    assert evolving["table_dropped"][2] == f'DROP TABLE "{s}".evolving_moved'


def _count(url: str, target: tuple[str, str]) -> int:
    return int(query(url, f'SELECT count(*) FROM "{target[0]}"."{target[1]}"')[0][0])
