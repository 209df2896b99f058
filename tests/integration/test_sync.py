"""`cdc sync` end to end on the real stack: the warehouse converges to the source, row for row."""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path

import psycopg2
import pytest

from cdc import connector, fastpath
from cdc.settings import Settings
from tests.compare import assert_same_rows
from tests.db import execute
from tests.processes import assert_converges, assert_stopped_cleanly, wait_for_log
from tests.syncing import Lane, number_before, run_sync, start_sync, stopped_counts, target_of, wait_for_events

pytestmark = pytest.mark.stack


@pytest.mark.both_clients
def test_mixed_workload_converges_row_for_row(stack: Settings, lane: Lane) -> None:
    s = lane.source_schema
    src = stack.require_source_url()
    execute(
        src,
        f"""
        CREATE SCHEMA {s};
        CREATE TABLE {s}.items (id integer PRIMARY KEY, name text NOT NULL, price numeric(12,2), tags text[],
                                 updated timestamptz DEFAULT now());
        CREATE TABLE {s}.lines (order_id bigint, line_no smallint, qty integer NOT NULL,
                                 PRIMARY KEY (order_id, line_no));
        CREATE TABLE {s}.docs (id integer PRIMARY KEY, counter integer NOT NULL, body text NOT NULL);
        ALTER TABLE {s}.docs ALTER COLUMN body SET STORAGE EXTERNAL;
        CREATE TABLE {s}.events (kind text, payload jsonb, at date);
        CREATE TABLE {s}."Odd ""Name"" é" ("Key" integer PRIMARY KEY, "select" text, "two words" text);
        CREATE TABLE {s}.wiped (id integer PRIMARY KEY, v text);
        INSERT INTO {s}.items SELECT g, 'item ' || g, g * 1.25, ARRAY['a', NULL, 'c'] FROM generate_series(1, 200) g;
        """,
    )
    connector.apply(stack, None, lambda _: None)  # existing rows arrive as an incremental snapshot
    execute(
        src,
        f"""
        UPDATE {s}.items SET price = price * 2, name = name || ' ✓' WHERE id % 3 = 0;
        DELETE FROM {s}.items WHERE id % 7 = 0;
        UPDATE {s}.items SET id = id + 1000 WHERE id BETWEEN 10 AND 19;   -- primary-key changes
        INSERT INTO {s}.lines SELECT o, l, o * l FROM generate_series(1, 50) o, generate_series(1, 4) l;
        UPDATE {s}.lines SET qty = qty + 1 WHERE line_no = 2;
        DELETE FROM {s}.lines WHERE order_id % 5 = 0;
        INSERT INTO {s}.docs SELECT g, 0, string_agg(md5(g::text || i::text), '') FROM generate_series(1, 5) g,
            generate_series(1, 400) i GROUP BY g;
        UPDATE {s}.docs SET counter = counter + 1;                         -- body unchanged: TOAST placeholder
        UPDATE {s}.docs SET counter = counter + 1, body = 'rewritten' WHERE id = 2;
        UPDATE {s}.docs SET counter = counter + 1;
        INSERT INTO {s}.events VALUES ('a', '{{"x": 1}}', '2024-01-01'), ('b', NULL, NULL),
                                      ('a', '{{"x": 1}}', '2024-01-01');
        DELETE FROM {s}.events WHERE kind = 'b';
        UPDATE {s}.events SET payload = '{{"x": 2}}' WHERE kind = 'a' AND ctid = (SELECT min(ctid) FROM {s}.events);
        INSERT INTO {s}."Odd ""Name"" é" VALUES (1, 'reserved', 'spaces'), (2, '', NULL);
        INSERT INTO {s}.wiped SELECT g, 'v' FROM generate_series(1, 30) g;
        TRUNCATE {s}.wiped;
        INSERT INTO {s}.wiped VALUES (99, 'after the truncate');
        """,
    )
    wait_for_events(stack, s, "wiped", 32)  # the last statement's events: all others came before
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr
    if fastpath.load() is not None:  # built in CI (tests/unit/test_fastpath.py fails there without it)
        # most of lines' 290 changes (the first teaches the decoder its shape; a poll may split them)
        decoded = number_before(result.stdout + result.stderr, "messages; the Python decoder the others")
        assert decoded >= 200, decoded
    wh = stack.require_warehouse_url()
    counts = {
        table: assert_same_rows(src, (s, table), wh, target_of(stack, lane, table))
        for table in ("items", "lines", "docs", "events", 'Odd "Name" é', "wiped")
    }
    assert counts == {"items": 172, "lines": 160, "docs": 5, "events": 2, 'Odd "Name" é': 2, "wiped": 1}

    # Running again reads nothing new and changes nothing: offsets were stored with the rows.
    again = run_sync(stack, lane)
    assert again.returncode == 0, again.stdout + again.stderr
    assert stopped_counts(again.stdout) == {"events": 0, "rows": 0, "skipped": 0, "dead": 0}
    assert counts["items"] == assert_same_rows(src, (s, "items"), wh, target_of(stack, lane, "items"))


def test_soft_delete_mode_marks_deleted_and_truncated_rows(stack: Settings, lane: Lane) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(
        src,
        f"""CREATE SCHEMA {s};
        CREATE TABLE {s}.items (id integer PRIMARY KEY, v text);
        CREATE TABLE {s}.wiped (id integer PRIMARY KEY);""",
    )
    connector.apply(stack, None, lambda _: None)
    execute(
        src,
        f"""INSERT INTO {s}.items SELECT g, 'v' || g FROM generate_series(1, 10) g;
        DELETE FROM {s}.items WHERE id <= 3;
        INSERT INTO {s}.items VALUES (2, 'back again');
        INSERT INTO {s}.wiped SELECT generate_series(1, 5);""",
    )
    wait_for_events(stack, s, "wiped", 5)
    first = run_sync(stack, lane, CDC_DELETE_MODE="soft")
    assert first.returncode == 0, first.stdout + first.stderr
    execute(src, f"TRUNCATE {s}.wiped; INSERT INTO {s}.wiped VALUES (42);")
    result = run_sync(stack, lane, CDC_DELETE_MODE="soft")
    assert result.returncode == 0, result.stdout + result.stderr
    items, wiped = target_of(stack, lane, "items"), target_of(stack, lane, "wiped")
    live = "WHERE _cdc_deleted_at IS NULL"
    assert assert_same_rows(src, (s, "items"), wh, items, where=live) == 8
    assert assert_same_rows(src, (s, "wiped"), wh, wiped, where=live) == 1
    conn = psycopg2.connect(wh)
    try:
        with conn.cursor() as cur:
            cur.execute(
                f'SELECT id, _cdc_op FROM "{items[0]}"."{items[1]}" WHERE _cdc_deleted_at IS NOT NULL ORDER BY id'
            )
            assert cur.fetchall() == [(1, "d"), (3, "d")]
            cur.execute(
                f'SELECT count(*), min(_cdc_op) FROM "{wiped[0]}"."{wiped[1]}" WHERE _cdc_deleted_at IS NOT NULL'
            )
            assert cur.fetchone() == (5, "t")
    finally:
        conn.close()


def test_what_was_read_is_flushed_as_soon_as_a_poll_finds_nothing_new(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    s = lane.source_schema
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.items (id integer PRIMARY KEY, v text);")
    connector.apply(stack, None, lambda _: None)
    log = tmp_path / "sync.log"
    # An interval far beyond the test's patience, and far more rows per flush than it writes:
    # only the quiet poll after them can flush them in time.
    proc = start_sync(stack, lane, log=log, CDC_FLUSH_INTERVAL_MS="600000")
    processes.append(proc)
    wait_for_log(log, proc, lambda text: "assigned" in text, timeout=60)
    execute(src, f"INSERT INTO {s}.items SELECT g, 'v' || g FROM generate_series(1, 50) g")
    execute(src, f"UPDATE {s}.items SET v = 'changed' WHERE id <= 10; DELETE FROM {s}.items WHERE id > 40")
    assert_converges(stack, lane, 60, running=[proc], tables=["items"])
    assert_stopped_cleanly(proc, signal.SIGTERM, log)


def test_json_log_format_writes_one_object_per_line(stack: Settings, lane: Lane) -> None:
    import json

    s = lane.source_schema
    execute(stack.require_source_url(), f"CREATE SCHEMA {s}; CREATE TABLE {s}.t (id integer PRIMARY KEY)")
    connector.apply(stack, None, lambda _: None)
    execute(stack.require_source_url(), f"INSERT INTO {s}.t SELECT generate_series(1, 10)")
    wait_for_events(stack, s, "t", 10)
    result = run_sync(stack, lane, "--log-format", "json", "--progress-every", "1")
    assert result.returncode == 0, result.stderr
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    assert entries and all({"ts", "level", "logger", "message"} <= set(e) for e in entries)
    progress = [e for e in entries if e["logger"] == "cdc.sync" and "events/s" in e["message"]]
    assert progress and all("events_per_s" in e and "lag" in e for e in progress)
    assert any(e["message"].startswith("idle for 3.0s and caught up") for e in entries)
