"""Schema drift on the real stack, `cdc sync` running throughout (issue 8): each change made in the
source between rows, the warehouse's shape and every row asserted, one history row and one queued
alert per change, per policy."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cdc.resources import cdc_command
from cdc.schema.compare import schema_diff
from cdc.settings import Settings
from tests.db import execute, query
from tests.processes import apply_connector, assert_converges, assert_stopped_cleanly, log_of, wait_until
from tests.syncing import Lane, run_sync, start_sync, sync_env, target_of
from tests.webhook import Endpoint

pytestmark = pytest.mark.stack

# (step, DDL with {t} for the table, the row inserted after it)
STEPS = [
    ("column_added", "ALTER TABLE {t} ADD COLUMN extra integer", "(4, 'd', 4, 'n4', '4', 7)"),
    ("column_dropped", "ALTER TABLE {t} DROP COLUMN note", "(5, 'e', 5, '5', 8)"),
    ("type_widened", "ALTER TABLE {t} ALTER COLUMN qty TYPE bigint", "(6, 'f', 5000000000, '6', 9)"),
    ("type_widened", "ALTER TABLE {t} ALTER COLUMN name TYPE varchar(50)", f"(7, '{'g' * 40}', 7, '7', 10)"),
    ("type_incompatible", "ALTER TABLE {t} ALTER COLUMN code TYPE integer USING code::integer", "(8, 'h', 8, 99, 11)"),
    ("nullability_changed", "ALTER TABLE {t} ALTER COLUMN name SET NOT NULL", "(9, 'i', 9, 100, 12)"),
    ("key_changed", "ALTER TABLE {t} DROP CONSTRAINT {k}, ADD PRIMARY KEY (id, name)", "(10, 'j', 10, 101, 13)"),
    (
        "type_narrowed",
        "UPDATE {t} SET qty = 6 WHERE id = 6; ALTER TABLE {t} ALTER COLUMN qty TYPE integer",
        "(11, 'k', 11, 102, 14)",
    ),
]
CREATE = "CREATE TABLE {t} (id integer PRIMARY KEY, name varchar(20), qty integer, note text, code text)"
FIRST_ROWS = "INSERT INTO {t} VALUES (1, 'a', 1, 'n1', '1'), (2, 'b', 2, 'n2', '2'), (3, 'c', 3, 'n3', '3')"


def warehouse_columns(url: str, schema: str, table: str) -> dict[str, str]:
    rows = query(
        url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attname NOT LIKE '\\_cdc\\_%%'",
        (schema, table),
    )
    return {name: type_ for name, type_ in rows}


def history_of(url: str, schema: str, table: str) -> list[tuple[str, str | None, str]]:
    return [
        (change, column, policy)
        for change, column, policy in query(
            url,
            # table_created: recorded when the source's DDL capture is installed (another test may have)
            "SELECT change, column_name, policy FROM cdc.schema_change WHERE target_schema = %s AND target_table = %s "
            "AND change <> 'table_created' ORDER BY id",
            (schema, table),
        )
    ]


def alerts_of(url: str, table: str) -> int:
    rows = query(
        url,
        "SELECT count(*) FROM cdc.alert_outbox WHERE payload->'cdc'->>'table' = %s "
        "AND payload->'cdc'->>'change' <> 'table_created'",
        (table,),
    )
    return int(rows[0][0])


def cdc_schema(stack: Settings, lane: Lane, *args: str) -> str:
    """`cdc schema ARGS` as users run it; it must succeed. Its output."""
    done = subprocess.run(
        [*cdc_command(), "schema", *args],
        env=sync_env(stack, lane),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def posted_changes(hook: Endpoint) -> list[dict[str, object]]:
    """The alerts the endpoint took (200), but table_created (the DDL capture may be installed)."""
    bodies = [json.loads(r.body)["cdc"] for r in hook.answered(200)]
    return [b for b in bodies if b["change"] != "table_created"]


def has_row(url: str, target: tuple[str, str], row_id: int) -> bool:
    schema, table = target
    return bool(query(url, f'SELECT 1 FROM "{schema}"."{table}" WHERE id = %s', (row_id,)))


@pytest.fixture
def drift_cleanup(stack: Settings, lane: Lane):  # type: ignore[no-untyped-def]
    yield
    wh = stack.require_warehouse_url()
    execute(wh, f"DELETE FROM cdc.schema_change WHERE target_schema = '{lane.warehouse_schema}'")
    execute(wh, f"DELETE FROM cdc.schema_state WHERE target_schema = '{lane.warehouse_schema}'")
    execute(wh, f"DELETE FROM cdc.alert_outbox WHERE scope = '{lane.warehouse_schema}'")


@pytest.mark.both_clients
def test_evolve_and_alert_policies_apply_each_change_once_and_keep_every_row(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    execute(src, f'CREATE SCHEMA "{s}"')
    for table in ("evolving", "alerting"):
        t = f'"{s}".{table}'
        execute(src, CREATE.format(t=t))
        execute(src, FIRST_ROWS.format(t=t))
    apply_connector(stack)
    log = tmp_path / "sync.log"
    hook = Endpoint()
    settings = {"CDC_SCHEMA_POLICIES": f"{s}.alerting=alert", "CDC_ALERT_WEBHOOK_URL": hook.url}
    proc = start_sync(stack, lane, log=log, **settings)
    processes.append(proc)
    targets: dict[str, tuple[str, str]] = {}
    for table in ("evolving", "alerting"):
        wait_until(lambda table=table: _mapped(stack, lane, table), 90, f"{table} in the warehouse")
        targets[table] = target_of(stack, lane, table)
        wait_until(lambda table=table: has_row(wh, targets[table], 3), 60, f"the first rows of {table}")

    for number, (_, ddl, row) in enumerate(STEPS, start=4):
        for table in ("evolving", "alerting"):
            t = f'"{s}".{table}'
            execute(src, ddl.format(t=t, k=f"{table}_pkey"))
            execute(src, f"INSERT INTO {t} VALUES {row}")
            execute(src, f"UPDATE {t} SET qty = qty + 1000 WHERE id = 1")
        for table in ("evolving", "alerting"):
            wait_until(lambda table=table, n=number: has_row(wh, targets[table], n), 60, f"row {number} of {table}")

    # evolve: the warehouse took every change, kept the dropped column, and put the retyped column's
    # new values in a column of their own.
    schema, table = targets["evolving"]
    assert warehouse_columns(wh, schema, table) == {
        "id": "integer",
        "name": "character varying(50)",
        "qty": "bigint",
        "note": "text",
        "code": "text",
        "extra": "integer",
        "code__integer": "integer",
    }
    wait_until(
        lambda: _evolved_rows(wh, targets["evolving"]) == _source_rows(src, f'"{s}".evolving'),
        30,
        "the evolving table to equal the source",
    )
    kept_notes = query(wh, f'SELECT id, note FROM "{schema}"."{table}" ORDER BY id')
    assert kept_notes == [(1, "n1"), (2, "n2"), (3, "n3"), (4, "n4")] + [(i, None) for i in range(5, 12)]
    key = query(
        wh,
        "SELECT array_agg(a.attname ORDER BY k.ord) FROM pg_index i, unnest(i.indkey) WITH ORDINALITY k(attnum, ord), "
        "pg_attribute a WHERE i.indrelid = %s::regclass AND i.indisprimary AND a.attrelid = i.indrelid "
        "AND a.attnum = k.attnum",
        (f'"{schema}"."{table}"',),
    )
    assert key == [(["id", "name"],)]  # re-keyed as the source was
    assert history_of(wh, schema, table) == [
        ("column_added", "extra", "evolve"),
        ("column_dropped", "note", "evolve"),
        ("type_widened", "qty", "evolve"),
        ("type_widened", "name", "evolve"),
        ("type_incompatible", "code", "evolve"),
        ("nullability_changed", "name", "evolve"),
        ("key_changed", None, "evolve"),
        ("type_narrowed", "qty", "evolve"),
    ]
    assert alerts_of(wh, f"{s}.evolving") == len(STEPS)
    compared = [
        (p.source, p.source_type, p.stored, p.stored_type, p.status)
        for p in schema_diff(src, wh, schema, f"{s}.evolving")
    ]
    assert compared == [
        ("id", "integer", "id", "integer", "same"),
        ("name", "character varying(50)", "name", "character varying(50)", "same"),
        ("qty", "integer", "qty", "bigint", "type differs"),  # kept wider
        ("code", "integer", "code__integer", "integer", "stored elsewhere"),
        ("extra", "integer", "extra", "integer", "same"),
        (None, None, "note", "text", "kept (gone from the source)"),
        (None, None, "code", "text", "kept (gone from the source)"),
    ]
    shown = cdc_schema(stack, lane, "diff", f"{s}.evolving")
    assert shown.strip().splitlines()[-1] == "1 table(s), 7 column(s), 4 not the same"
    wait_until(lambda: len(posted_changes(hook)) == 2 * len(STEPS), 30, "one webhook per change")

    # alert: nothing changed shape; only values the old shape still holds with their meaning were written.
    schema, table = targets["alerting"]
    assert warehouse_columns(wh, schema, table) == {
        "id": "integer",
        "name": "character varying(20)",
        "qty": "integer",
        "note": "text",
        "code": "text",
    }
    assert [c for c, _, p in history_of(wh, schema, table) if p == "alert"] == [step for step, _, _ in STEPS]
    assert alerts_of(wh, f"{s}.alerting") == len(STEPS)
    rows = query(wh, f'SELECT id, name, qty, code FROM "{schema}"."{table}" WHERE id >= 6 ORDER BY id')
    # qty became bigint (not written into integer), name varchar(50) (not into varchar(20)), code integer
    # (another meaning: never written into the text column).
    # The key's columns are always written (rows are matched on them); qty, narrowed back to integer,
    # is written again.
    assert rows == [
        (6, "f", None, "6"),
        (7, None, None, "7"),
        (8, None, None, None),
        (9, None, None, None),
        (10, "j", None, None),
        (11, "k", 11, None),
    ]

    posted = posted_changes(hook)
    for table in ("evolving", "alerting"):
        assert [p["change"] for p in posted if p["table"] == f"{s}.{table}"] == [step for step, _, _ in STEPS]
    assert all(r.status == 200 for r in hook.requests)

    text = log_of(log)
    announced = [line for line in text.splitlines() if "schema change in " in line and "table created" not in line]
    assert len(announced) == 2 * len(STEPS), text[-3000:]
    assert "SECRETTOKEN" not in text  # the webhook URL is a secret
    assert "Traceback" not in text
    assert_stopped_cleanly(proc, signal.SIGTERM, log)

    # A restart detects nothing again.
    again = tmp_path / "again.log"
    proc = start_sync(stack, lane, log=again, **settings)
    processes.append(proc)
    execute(src, f"INSERT INTO \"{s}\".evolving VALUES (12, 'l', 12, 103, 15)")
    wait_until(lambda: has_row(wh, targets["evolving"], 12), 60, "row 12 after the restart")
    assert "schema change in " not in log_of(again)
    assert len(history_of(wh, *targets["evolving"])) == len(STEPS)
    assert len(posted_changes(hook)) == 2 * len(STEPS)

    # A truncate is applied whatever the policy, and alerted once.
    execute(src, f'TRUNCATE "{s}".evolving')
    wait_until(lambda: _count(wh, targets["evolving"]) == 0, 60, "the truncate applied")
    wait_until(lambda: len(posted_changes(hook)) == 2 * len(STEPS) + 1, 30, "the truncate alerted")
    assert history_of(wh, *targets["evolving"])[-1] == ("table_truncated", None, "evolve")
    assert_stopped_cleanly(proc, signal.SIGTERM, again)
    hook.close()


def _mapped(stack: Settings, lane: Lane, table: str) -> bool:
    try:
        target_of(stack, lane, table)
    except AssertionError:
        return False
    return True


def _source_rows(url: str, table: str) -> list[tuple[object, ...]]:
    return query(url, f"SELECT id, name, qty::text, code::text, extra FROM {table} ORDER BY id")


def _evolved_rows(url: str, target: tuple[str, str]) -> list[tuple[object, ...]]:
    schema, table = target
    return query(
        url,
        f'SELECT id, name, qty::text, coalesce(code__integer::text, code), extra FROM "{schema}"."{table}" ORDER BY id',
    )


def _count(url: str, target: tuple[str, str]) -> int:
    schema, table = target
    return int(query(url, f'SELECT count(*) FROM "{schema}"."{table}"')[0][0])


@pytest.mark.both_clients
def test_halt_holds_one_table_while_the_others_converge_until_accepted(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    tables = ("held", "flowing_a", "flowing_b")
    execute(src, f'CREATE SCHEMA "{s}"')
    for table in tables:
        execute(src, f'CREATE TABLE "{s}".{table} (id integer PRIMARY KEY, v text)')
        execute(src, f"INSERT INTO \"{s}\".{table} SELECT i, 'v' || i FROM generate_series(1, 10) i")
    apply_connector(stack)
    hook = Endpoint()
    settings = {"CDC_SCHEMA_POLICIES": f"{s}.held=halt", "CDC_ALERT_WEBHOOK_URL": hook.url}
    log = tmp_path / "sync.log"
    processes.append(start_sync(stack, lane, log=log, **settings))
    for table in tables:
        wait_until(lambda table=table: _mapped(stack, lane, table), 90, f"{table} in the warehouse")
    targets = {table: target_of(stack, lane, table) for table in tables}
    for table in tables:
        wait_until(lambda table=table: _count(wh, targets[table]) == 10, 60, f"the first rows of {table}")

    execute(src, f'ALTER TABLE "{s}".held ADD COLUMN extra integer')
    for i in range(11, 41):
        for table in tables:
            extra = ", 1" if table == "held" else ""
            execute(src, f"INSERT INTO \"{s}\".{table} VALUES ({i}, 'v{i}'{extra})")
    for table in ("flowing_a", "flowing_b"):
        wait_until(lambda table=table: _count(wh, targets[table]) == 40, 60, f"{table} to converge while held is held")
    wait_until(lambda: "is held by its schema policy (halt)" in log_of(log), 30, "the held line")
    assert _count(wh, targets["held"]) == 10
    assert history_of(wh, *targets["held"]) == [("column_added", "extra", "halt")]
    assert "extra" not in warehouse_columns(wh, *targets["held"])

    # Restarted while held: held again, nothing alerted again.
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, log)
    again = tmp_path / "again.log"
    processes.append(start_sync(stack, lane, log=again, **settings))
    wait_until(lambda: "is held by its schema policy (halt)" in log_of(again), 60, "held again after the restart")
    assert _count(wh, targets["held"]) == 10
    assert len(history_of(wh, *targets["held"])) == 1

    held = [json.loads(line) for line in cdc_schema(stack, lane, "history", f"{s}.held", "--json").splitlines()]
    held = [h for h in held if h["change"] != "table_created"]  # recorded when the DDL capture is installed
    assert [(h["change"], h["column"], h["policy"], h["action"].split(":")[0]) for h in held] == [
        ("column_added", "extra", "halt", "held")
    ]
    # default: "" (none) when the DDL capture says so, None (not known) from the event schema alone
    assert held[0]["after"] in (
        {"name": "extra", "type": "integer", "optional": True, "default": d} for d in ("", None)
    )
    cdc_schema(stack, lane, "accept", f"{s}.held")
    wait_until(lambda: "extra" in warehouse_columns(wh, *targets["held"]), 30, "the accepted change applied")
    assert_converges(stack, lane, 60, running=processes[-1:], tables=tables)
    assert warehouse_columns(wh, *targets["held"])["extra"] == "integer"
    assert history_of(wh, *targets["held"]) == [("column_added", "extra", "halt"), ("column_added", "extra", "halt")]
    wait_until(lambda: len(posted_changes(hook)) == 2, 30, "one alert when held, one when applied")
    assert [p["action"].split(":")[0] for p in posted_changes(hook)] == [
        "held",
        "added warehouse column extra integer",
    ]

    # Held again, for a destructive change and a widening in one command; accepted, both applied.
    execute(src, f'ALTER TABLE "{s}".held ALTER COLUMN extra TYPE bigint, DROP COLUMN v')
    execute(src, f'INSERT INTO "{s}".held VALUES (41, 5000000000)')
    execute(src, f"INSERT INTO \"{s}\".flowing_a VALUES (41, 'v41')")
    wait_until(lambda: _count(wh, targets["flowing_a"]) == 41, 60, "flowing_a while held again")
    wait_until(lambda: log_of(again).count("is held by its schema policy (halt)") == 2, 30, "held again")
    assert _count(wh, targets["held"]) == 40
    cdc_schema(stack, lane, "accept", f"{s}.held")
    wait_until(lambda: _count(wh, targets["held"]) == 41, 60, "the second accepted change applied")
    assert_converges(stack, lane, 60, running=processes[-1:], tables=tables)
    assert warehouse_columns(wh, *targets["held"]) == {"id": "integer", "v": "text", "extra": "bigint"}
    assert history_of(wh, *targets["held"])[2:] == [
        ("column_dropped", "v", "halt"),
        ("type_widened", "extra", "halt"),
        ("column_dropped", "v", "halt"),
        ("type_widened", "extra", "halt"),
    ]
    wait_until(lambda: len(posted_changes(hook)) == 6, 30, "two alerts when held, two when applied")
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, again)
    hook.close()


def test_a_rename_captured_by_the_ddl_log_is_applied_as_a_rename_with_its_data_kept(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    cdc_schema(stack, lane, "install", "--local-stack")  # event triggers need a superuser: the stack's
    execute(src, f'CREATE SCHEMA "{s}"')
    execute(src, f'CREATE TABLE "{s}".people (id integer PRIMARY KEY, full_name text, age integer)')
    execute(src, f"INSERT INTO \"{s}\".people SELECT i, 'name ' || i, i FROM generate_series(1, 5) i")
    apply_connector(stack)
    log = tmp_path / "sync.log"
    processes.append(start_sync(stack, lane, log=log))
    wait_until(lambda: _mapped(stack, lane, "people"), 90, "people in the warehouse")
    target = target_of(stack, lane, "people")
    wait_until(lambda: _count(wh, target) == 5, 60, "the first rows")
    # The DDL log's topic is made by its first row (connector apply writes one): sync reads it too.
    wait_until(lambda: "assigned 2 partitions" in log_of(log), 30, "the DDL log assigned")

    statement = f'ALTER TABLE "{s}".people RENAME COLUMN full_name TO display_name'
    execute(src, statement)
    execute(src, f"INSERT INTO \"{s}\".people VALUES (6, 'name 6', 6)")
    execute(src, f"UPDATE \"{s}\".people SET display_name = 'renamed 1' WHERE id = 1")
    wait_until(lambda: _count(wh, target) == 6, 60, "the row after the rename")
    assert_converges(stack, lane, 30, running=processes[-1:], tables=("people",))
    assert warehouse_columns(wh, *target) == {"id": "integer", "display_name": "text", "age": "integer"}
    rows = query(wh, f'SELECT id, display_name FROM "{target[0]}"."{target[1]}" ORDER BY id')
    assert rows == [(1, "renamed 1")] + [(i, f"name {i}") for i in range(2, 7)]
    history = query(
        wh,
        "SELECT change, column_name, before->>'name', after->>'name', statement FROM cdc.schema_change "
        "WHERE target_schema = %s AND change <> 'table_created' ORDER BY id",
        (target[0],),
    )
    assert history == [("column_renamed", "display_name", "full_name", "display_name", statement)]

    # A column added with a constant default: the rows already there hold it in the source (no
    # event says so): the warehouse fills them alike.
    execute(src, f"ALTER TABLE \"{s}\".people ADD COLUMN status text DEFAULT 'new'")
    execute(src, f"INSERT INTO \"{s}\".people VALUES (7, 'name 7', 7, 'given')")
    wait_until(lambda: _count(wh, target) == 7, 60, "the row after the added column")
    assert_converges(stack, lane, 30, running=processes[-1:], tables=("people",))
    statuses = query(wh, f'SELECT status, count(*) FROM "{target[0]}"."{target[1]}" GROUP BY 1 ORDER BY 1')
    assert statuses == [("given", 1), ("new", 6)]

    # What only the DDL log shows, recorded as it arrives: a default changed, a row of the log cdc
    # cannot read (forged here), the table renamed (its warehouse table follows), then dropped.
    execute(src, f'ALTER TABLE "{s}".people ALTER COLUMN age SET DEFAULT 18')
    execute(
        src,
        "INSERT INTO cdc.schema_ddl (command_tag, object_type, object_identity, schema_name, table_name, statement, "
        f"columns_before, columns_after) VALUES ('ALTER TABLE', 'table', 'x', '{s}', 'people', 'FORGED DDL', "
        "'\"not a column list\"', '[]')",
    )
    execute(src, f'ALTER TABLE "{s}".people RENAME TO persons')
    wait_until(lambda: len(_changes(wh, target[0])) == 6, 30, "the DDL log's changes")
    apply_connector(stack)  # captures the table under its new name
    execute(src, f"INSERT INTO \"{s}\".persons VALUES (8, 'name 8', 8, 'after')")
    renamed = (target[0], f"{s}__persons")
    wait_until(lambda: _count(wh, renamed) == 8, 60, "the row written under the new name")
    assert_converges(stack, lane, 30, running=processes[-1:], tables=("persons",))
    execute(src, f'DROP TABLE "{s}".persons')
    wait_until(lambda: len(_changes(wh, target[0])) == 7, 30, "the drop")
    assert [(c, d) for c, _, d in _changes(wh, target[0])] == [
        ("table_created", f'CREATE TABLE "{s}".people (id integer PRIMARY KEY, full_name text, age integer)'),
        ("column_renamed", None),
        ("column_added", None),
        ("default_changed", f'ALTER TABLE "{s}".people ALTER COLUMN age SET DEFAULT 18'),
        ("unknown", "FORGED DDL"),
        ("table_renamed", f'ALTER TABLE "{s}".people RENAME TO persons'),
        ("table_dropped", f'DROP TABLE "{s}".persons'),
    ]
    assert _count(wh, renamed) == 8  # the warehouse keeps a dropped table's rows
    assert "Traceback" not in log_of(log)
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, log)


def _changes(url: str, schema: str) -> list[tuple[str, str | None, str | None]]:
    rows = query(
        url,
        "SELECT change, column_name, statement FROM cdc.schema_change WHERE target_schema = %s ORDER BY id",
        (schema,),
    )
    return [(c, n, st if c not in ("column_renamed", "column_added") else None) for c, n, st in rows]


OUTAGE = 60.0  # seconds the webhook refuses connections


def test_a_webhook_down_for_a_minute_delays_no_row_and_loses_no_alert(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    execute(src, f'CREATE SCHEMA "{s}"')
    execute(src, f'CREATE TABLE "{s}".ticks (id serial PRIMARY KEY, v text, at timestamptz DEFAULT clock_timestamp())')
    execute(src, f"INSERT INTO \"{s}\".ticks (v) VALUES ('first')")
    apply_connector(stack)
    hook = Endpoint()
    hook.close()  # down from the start: connections refused
    log = tmp_path / "sync.log"
    processes.append(start_sync(stack, lane, log=log, CDC_ALERT_WEBHOOK_URL=hook.url))
    wait_until(lambda: _mapped(stack, lane, "ticks"), 90, "ticks in the warehouse")
    target = target_of(stack, lane, "ticks")
    wait_until(lambda: _count(wh, target) == 1, 60, "the first row")

    changes = {5: "ADD COLUMN one integer", 25: "ADD COLUMN two text", 45: "ALTER COLUMN one TYPE bigint"}
    began = time.monotonic()
    second = 0
    while (elapsed := time.monotonic() - began) < OUTAGE:
        if int(elapsed) in changes and int(elapsed) >= second:
            execute(src, f'ALTER TABLE "{s}".ticks {changes[int(elapsed)]}')
            second = int(elapsed) + 1
        execute(src, f"INSERT INTO \"{s}\".ticks (v) VALUES ('{elapsed:.1f}')")
        time.sleep(0.2)
    wait_until(lambda: _count(wh, target) == _count(src, (s, "ticks")), 30, "every row")
    assert hook.requests == []
    # Lag of each row: applied in the warehouse vs. committed in the source (one machine, one clock).
    lags = [
        float(lag)
        for (lag,) in query(
            wh, f'SELECT extract(epoch FROM _cdc_applied_at - "at") FROM "{target[0]}"."{target[1]}" WHERE id > 1'
        )
    ]
    assert len(lags) > 200, len(lags)
    assert max(lags) < 5.0, sorted(lags)[-10:]
    assert [c for c, _, _ in history_of(wh, *target)] == ["column_added", "column_added", "type_widened"]
    pending = query(
        wh,
        "SELECT count(*) FILTER (WHERE payload->'cdc'->>'change' <> 'table_created'), max(attempts) "
        "FROM cdc.alert_outbox WHERE scope = %s AND delivered_at IS NULL",
        (lane.warehouse_schema,),
    )
    assert pending[0][0] == 3 and pending[0][1] >= 2, pending  # waiting; the first one tried again and again

    hook.reopen()
    wait_until(lambda: len(posted_changes(hook)) == 3, 360, "the three alerts once the webhook is up")
    time.sleep(2)  # nothing more comes
    assert [p["change"] for p in posted_changes(hook)] == ["column_added", "column_added", "type_widened"]
    assert all(r.status == 200 for r in hook.requests)
    assert len({r.key for r in hook.requests}) == len(hook.requests)  # each alert posted once
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, log)
    hook.close()
    (tmp_path / "lags.txt").write_text(
        f"rows {len(lags)}, max lag {max(lags):.2f} s, mean {sum(lags) / len(lags):.2f} s\n"
    )
    print(
        f"lag while the webhook was down: {len(lags)} rows, max {max(lags):.2f} s, mean {sum(lags) / len(lags):.2f} s"
    )


def test_sync_says_once_at_start_when_the_ddl_capture_is_missing(stack: Settings, lane: Lane) -> None:
    prefix = f"nothing_{lane.group}"  # no topic at all under it, so no DDL log either
    result = run_sync(stack, lane, CDC_TOPIC_PREFIX=prefix, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    said = [line for line in result.stderr.splitlines() if "DDL capture is not installed" in line]
    assert len(said) == 1, result.stderr[-3000:]
    assert f"(no topic {prefix}.cdc.schema_ddl)" in said[0]
    assert said[0].endswith("Fix: cdc schema install (as a superuser), then cdc connector apply")
