"""`cdc backfill --mode debezium` (Debezium's incremental snapshot, followed through the connector's
notifications until cdc sync has applied it), and backfills of tables created with their rows after
the connector started, which have no warehouse table until a first event makes one (issue 9)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from cdc.settings import Settings
from tests.db import execute, query
from tests.integration.test_backfill import _ITEMS, _ROWS, _items_streamed, _verify, backfill_cleanup
from tests.processes import apply_connector, assert_converges
from tests.syncing import Lane, run_cdc, start_sync, target_of

pytestmark = pytest.mark.stack
__all__ = ["backfill_cleanup"]  # the fixture, shared


def test_debezium_mode_resends_the_rows_where_selects_and_waits_until_sync_applied_them(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    wh = stack.require_warehouse_url()
    table, target = _items_streamed(stack, lane, 3000, processes, tmp_path)
    assert_converges(stack, lane, 120, running=processes, tables=["items"])
    t = f'"{target[0]}"."{target[1]}"'
    # The warehouse lost rows on both sides of the --where bound, and holds a stale value on each.
    execute(
        wh,
        f"DELETE FROM {t} WHERE id % 10 = 0; UPDATE {t} SET name = 'stale' WHERE id IN (5, 2005)",
    )
    done = run_cdc(stack, lane, "backfill", table, "--mode", "debezium", "--where", "id <= 1000", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["mode"] == "debezium" and result["applied"] is True
    assert result["tables"] == [{"table": table, "rows": 1000, "status": "SUCCEEDED"}]
    assert f"asked Debezium for an incremental snapshot of {table}" in done.stderr
    assert f"{table}: Debezium sent 1,000 rows (SUCCEEDED)" in done.stderr
    # Applied when the command returns: rows 1-1000 are whole again, the rows past the bound are not.
    lost = query(wh, f"SELECT count(*) FROM generate_series(1, 1000) g WHERE NOT EXISTS (SELECT FROM {t} WHERE id = g)")
    assert lost == [(0,)]
    assert query(wh, f"SELECT array_agg(id) FROM {t} WHERE name = 'stale'") == [([2005],)]
    assert query(wh, f"SELECT count(*) FROM {t} WHERE id > 1000") == [(2000 - 200,)]


def test_debezium_mode_refuses_what_it_cannot_do_with_the_fix(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    s = lane.source_schema
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {s}; " + _ITEMS.format(t=f"{s}.items") + f"; CREATE TABLE {s}.bare (n integer)")
    apply_connector(stack)
    cases = {
        "no key": ([f"{s}.bare"], "has no primary key: Debezium's incremental snapshot reads by key ranges"),
        "resume": ([f"{s}.items", "--resume"], "--resume applies to --mode direct only"),
        "parallel": ([f"{s}.items", "--parallel", "2"], "--parallel applies to --mode direct only"),
        "where that does not parse": ([f"{s}.items", "--where", "id >>> 1"], "--where 'id >>> 1' is not a condition"),
    }
    for name, (args, message) in cases.items():
        done = run_cdc(stack, lane, "backfill", "--mode", "debezium", *args, timeout=60)
        assert done.returncode == 2, (name, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        assert "fix:" in done.stderr and "Traceback" not in done.stderr, (name, done.stderr)
    signals = query(src, "SELECT count(*) FROM cdc.debezium_signal WHERE data LIKE %s", (f"%{s}%",))
    assert signals == [(0,)]  # nothing asked of Debezium


def test_tables_created_with_rows_after_the_connector_started_are_backfilled_then_streamed(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    """Neither table has a warehouse table when the backfill starts (nothing of them was streamed):
    the keyless one is never snapshotted by Debezium, the keyed one only after `connector apply`.
    The backfill has Debezium send one row of each, cdc sync makes the tables from it, and the
    backfill writes the rest; the changes after it stream on."""
    s = lane.source_schema
    src = stack.require_source_url()
    execute(
        src,
        f"CREATE SCHEMA {s}; CREATE TABLE {s}.hits (page text, n integer); "
        f"INSERT INTO {s}.hits SELECT 'p' || (i % 300), i % 7 FROM generate_series(1, 6000) AS i; "
        + _ITEMS.format(t=f"{s}.items")
        + "; "
        + _ROWS.format(t=f"{s}.items", lo=1, hi=5000),
    )
    apply_connector(stack)
    empty_first = run_cdc(stack, lane, "backfill", f"{s}.hits", timeout=60)
    assert empty_first.returncode == 2, empty_first.stderr  # no cdc sync runs: nothing can make the table
    assert "no cdc sync runs in consumer group" in empty_first.stderr and "start cdc sync" in empty_first.stderr
    processes.append(start_sync(stack, lane, log=tmp_path / "sync.log"))
    done = run_cdc(stack, lane, "backfill", f"{s}.*", "--json")
    assert done.returncode == 0, done.stderr
    assert "no warehouse table yet; asked Debezium for one row of each, from which cdc sync makes it" in done.stderr
    rows = {t["table"]: t["rows"] for t in json.loads(done.stdout)["tables"]}
    assert rows == {f"{s}.hits": 6000, f"{s}.items": 5000}
    execute(
        src,
        f"INSERT INTO {s}.hits VALUES ('p1', 1), ('new', 0); DELETE FROM {s}.hits WHERE ctid IN "
        f"(SELECT ctid FROM {s}.hits WHERE page = 'p2' LIMIT 3); UPDATE {s}.items SET qty = -1 WHERE id <= 10; "
        f"DELETE FROM {s}.items WHERE id > 4990",
    )
    assert_converges(stack, lane, 120, running=processes, tables=["hits", "items"])  # hits as a multiset
    verified = _verify(stack, lane, f"{s}.*")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert target_of(stack, lane, "hits") and target_of(stack, lane, "items")
