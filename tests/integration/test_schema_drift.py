"""Schema drift on the real stack, beyond the matrix of test_schema_policies.py: a held table across
a restart and a command of two changes; a webhook down for a minute; sync without the DDL capture;
and a group of two members, one of which does not read the DDL log."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cdc.settings import Settings
from tests.db import execute, query
from tests.drift import cdc_schema, replicated, warehouse_columns
from tests.processes import (
    apply_connector,
    assert_converges,
    assert_stopped_cleanly,
    assignments,
    log_of,
    wait_until,
)
from tests.syncing import Lane, run_sync, start_sync
from tests.webhook import Endpoint

pytestmark = pytest.mark.stack


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


def posted_changes(hook: Endpoint) -> list[dict[str, object]]:
    """The alerts the endpoint took (200), but table_created (the DDL capture may be installed)."""
    bodies = [json.loads(r.body)["cdc"] for r in hook.answered(200)]
    return [b for b in bodies if b["change"] != "table_created"]


def _actions(url: str, schema: str, table: str) -> list[str]:
    rows = query(
        url,
        "SELECT action FROM cdc.schema_change WHERE target_schema = %s AND target_table = %s "
        "AND change <> 'table_created' ORDER BY id",
        (schema, table),
    )
    return [action for (action,) in rows]


def _count(url: str, target: tuple[str, str]) -> int:
    schema, table = target
    return int(query(url, f'SELECT count(*) FROM "{schema}"."{table}"')[0][0])


def test_halt_holds_a_table_across_a_restart_and_accepts_two_changes_of_one_command(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    tables = ("held", "flowing_a", "flowing_b")
    cdc_schema(stack, lane, "install", "--local-stack")  # the DDL log, whatever ran before
    execute(src, f'CREATE SCHEMA "{s}"')
    for table in tables:
        execute(src, f'CREATE TABLE "{s}".{table} (id integer PRIMARY KEY, v text)')
        execute(src, f"INSERT INTO \"{s}\".{table} SELECT i, 'v' || i FROM generate_series(1, 10) i")
    apply_connector(stack)
    hook = Endpoint()
    settings = {"CDC_SCHEMA_POLICIES": f"{s}.held=halt", "CDC_ALERT_WEBHOOK_URL": hook.url}
    log = tmp_path / "sync.log"
    processes.append(start_sync(stack, lane, log=log, **settings))
    targets = replicated(stack, lane, tables)
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
    # One history row per change, now saying what accepting it did; one alert, when it was held.
    assert history_of(wh, *targets["held"]) == [("column_added", "extra", "halt")]
    assert _actions(wh, *targets["held"]) == ["held, then accepted: added warehouse column extra integer"]
    # Alerted when the DDL log showed it, before its first row arrived.
    assert [p["action"] for p in posted_changes(hook)] == [
        "detected in the source's DDL; the table is held as its next row arrives, until cdc schema accept"
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
    assert history_of(wh, *targets["held"])[1:] == [("column_dropped", "v", "halt"), ("type_widened", "extra", "halt")]
    wait_until(lambda: len(posted_changes(hook)) == 3, 30, "one alert per change, when held")
    time.sleep(1)  # nothing more comes
    assert [p["change"] for p in posted_changes(hook)] == ["column_added", "column_dropped", "type_widened"]
    assert_stopped_cleanly(processes[-1], signal.SIGTERM, again)
    hook.close()


OUTAGE = 60.0  # seconds the webhook refuses connections


@pytest.mark.serial  # measures replication lag
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
    target = replicated(stack, lane, ("ticks",))["ticks"]
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


def test_a_member_that_does_not_read_the_ddl_log_waits_for_it_and_applies_a_rename_as_a_rename(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], drift_cleanup: None
) -> None:
    """Two members in one group: the DDL log's one partition is read by one of them; the tables the
    other reads are renamed too, and it waits (up to 5 s) until the warehouse has the log as far as
    it went before it applies their new shape. The member reading the log is stopped (SIGSTOP) for
    2 s meanwhile, so that the other one reads its rows first."""
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    s = lane.source_schema
    cdc_schema(stack, lane, "install", "--local-stack")
    tables = [f"t{i}" for i in range(1, 5)]
    execute(src, f'CREATE SCHEMA "{s}"')
    for table in tables:
        execute(src, f'CREATE TABLE "{s}".{table} (id integer PRIMARY KEY, a text)')
        execute(src, f"INSERT INTO \"{s}\".{table} VALUES (1, 'one')")
    apply_connector(stack)
    logs = [tmp_path / "a.log", tmp_path / "b.log"]
    for log in logs:
        processes.append(start_sync(stack, lane, log=log))
    targets = replicated(stack, lane, tables)

    # Both members read: the five topics (four tables, the DDL log) are shared between them.
    def shared() -> bool:
        last = [assignments(log_of(log))[-1:] for log in logs]
        return all(n and n[0] > 0 for n in last) and sum(n[0] for n in last) == 5

    wait_until(shared, 60, "both members reading")

    def reads_ddl_log(text: str) -> bool:  # since its last assignment
        return "reads the source's DDL log" in text[text.rfind("assigned ") :]

    owners = [proc for proc, log in zip(processes, logs, strict=True) if reads_ddl_log(log_of(log))]
    assert len(owners) == 1, [log_of(log)[-2000:] for log in logs]
    owners[0].send_signal(signal.SIGSTOP)
    try:
        for table in tables:
            execute(src, f'ALTER TABLE "{s}".{table} RENAME COLUMN a TO b')
            execute(src, f"INSERT INTO \"{s}\".{table} VALUES (2, 'two')")
        time.sleep(2)
    finally:
        owners[0].send_signal(signal.SIGCONT)
    for table in tables:
        wait_until(lambda table=table: _count(wh, targets[table]) == 2, 60, f"row 2 of {table}")
    for table in tables:
        assert warehouse_columns(wh, *targets[table]) == {"id": "integer", "b": "text"}, table
        assert history_of(wh, *targets[table]) == [("column_renamed", "b", "evolve")], table
        rows = query(wh, f'SELECT id, b FROM "{targets[table][0]}"."{targets[table][1]}" ORDER BY id')
        assert rows == [(1, "one"), (2, "two")], table
    for proc, log in zip(processes, logs, strict=True):
        assert_stopped_cleanly(proc, signal.SIGTERM, log)
