"""`cdc backfill` on the real stack (issue 9): a table's rows copied into the warehouse while
`cdc sync` streams its changes, ending equal to the source row for row."""

from __future__ import annotations

import json
import random
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from cdc.resources import cdc_command
from cdc.settings import Settings
from tests.compare import assert_same_rows
from tests.db import execute, query
from tests.processes import apply_connector, assert_converges
from tests.syncing import REPO, Lane, run_cdc, run_sync, start_sync, sync_env, target_of

pytestmark = pytest.mark.stack

_ITEMS = (
    "CREATE TABLE {t} (id bigint PRIMARY KEY, name text NOT NULL, qty integer, price numeric(12,2), "
    "at timestamptz, doc jsonb)"
)
_ROWS = (
    "INSERT INTO {t} SELECT i, 'item ' || i, i % 97, (i % 1000) / 7.0, "
    "timestamptz '2026-01-01 00:00:00+00' + i * interval '1 second', jsonb_build_object('n', i) "
    "FROM generate_series({lo}, {hi}) AS i"
)


def _backfill(stack: Settings, lane: Lane, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cdc(stack, lane, "backfill", *args)


class _Workload:
    """Small transactions on the table, each updating, deleting and inserting rows, until stopped."""

    def __init__(self, url: str, table: str, first_new_id: int) -> None:
        self._url, self._table, self._next = url, table, first_new_id
        self._stop = threading.Event()
        self.transactions = 0
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.error: BaseException | None = None

    def __enter__(self) -> _Workload:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        rng = random.Random(9)  # noqa: S311 (a workload, not a secret)
        conn = psycopg2.connect(self._url)
        try:
            while not self._stop.is_set():
                with conn.cursor() as cur:
                    for _ in range(3):
                        cur.execute(
                            f"UPDATE {self._table} SET qty = qty + 1, name = name || '+' WHERE id = %s",
                            (rng.randrange(1, self._next),),
                        )
                    cur.execute(f"DELETE FROM {self._table} WHERE id = %s", (rng.randrange(1, self._next),))
                    cur.execute(f"INSERT INTO {self._table} VALUES (%s, 'new', 1, 2.5, now(), '{{}}')", (self._next,))
                    self._next += 1
                conn.commit()
                self.transactions += 1
                time.sleep(0.005)
        except BaseException as exc:  # seen by the test
            self.error = exc
        finally:
            conn.close()


@pytest.fixture
def backfill_cleanup(stack: Settings, lane: Lane) -> Iterator[None]:
    yield
    wh = stack.require_warehouse_url()
    for table in ("backfill_snapshot", "backfill_run", "backfill_deleted"):
        execute(wh, f"DELETE FROM cdc.{table} WHERE target_schema = '{lane.warehouse_schema}'")


def test_a_backfill_while_a_workload_changes_the_table_and_sync_streams_ends_equal_to_the_source(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    table, target = _items_streamed(stack, lane, 30_000, processes, tmp_path)
    assert_converges(stack, lane, 120, running=processes, tables=["items"])
    # The warehouse loses the table's rows (the repair case): the backfill brings them back,
    # while a workload changes the table and sync streams those changes.
    execute(wh, f'TRUNCATE "{target[0]}"."{target[1]}"')
    with _Workload(src, table, 30_001) as workload:
        time.sleep(1)
        done = _backfill(stack, lane, table, "--range-rows", "2500", "--parallel", "2", "--json")
        time.sleep(1)
    assert workload.error is None, workload.error
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    (only,) = result["tables"]
    assert only["ranges"] >= 10 and only["ranges_written"] == only["ranges"]
    assert only["rows"] >= 29_000
    assert workload.transactions > 50
    assert_converges(stack, lane, 120, running=processes, tables=["items"])
    verified = _verify(stack, lane, table, "--range-rows", "2500")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "rows equal in" in verified.stdout


def _items_streamed(
    stack: Settings, lane: Lane, rows: int, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> tuple[str, tuple[str, str]]:
    """The lane's items table, captured, with `rows` rows streamed by a running cdc sync into its
    warehouse table: (source table, warehouse table)."""
    table = f"{lane.source_schema}.items"
    execute(stack.require_source_url(), f"CREATE SCHEMA {lane.source_schema}; " + _ITEMS.format(t=table))
    apply_connector(stack)
    execute(stack.require_source_url(), _ROWS.format(t=table, lo=1, hi=rows))
    processes.append(start_sync(stack, lane, log=tmp_path / "sync.log"))
    return table, _wait_for_target(stack, lane, "items")


def _wait_for_target(stack: Settings, lane: Lane, table: str) -> tuple[str, str]:
    deadline = time.monotonic() + 120
    while True:
        try:
            return target_of(stack, lane, table)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def test_a_backfill_killed_half_way_resumes_from_the_ranges_it_had_not_written(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    table, target = _items_streamed(stack, lane, 1, processes, tmp_path)
    # Rows the warehouse never received: written while the table was out of the publication.
    execute(src, f"ALTER PUBLICATION {stack.publication_name} DROP TABLE {table}")
    execute(src, _ROWS.format(t=table, lo=2, hi=150_000))
    execute(src, f"ALTER PUBLICATION {stack.publication_name} ADD TABLE {table}")
    first = subprocess.Popen(
        [*cdc_command(), "backfill", table, "--range-rows", "1500"],
        env=sync_env(stack, lane),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        done_before = _wait_for_ranges(wh, lane, 10)
        first.kill()  # SIGKILL, half-way
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    ((written, total),) = query(
        wh,
        "SELECT count(*) FILTER (WHERE r.done_at IS NOT NULL), count(*) FROM cdc.backfill_range r "
        f"JOIN cdc.backfill_run b ON b.id = r.run_id WHERE b.target_schema = '{lane.warehouse_schema}'",
    )
    assert done_before <= written < total, (written, total)
    assert query(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'cdc\\_backfill\\_%%'") == [(0,)]
    again = _backfill(stack, lane, table, "--json")
    resumed = _backfill(stack, lane, table, "--resume", "--json")
    assert again.returncode == 2, again.stderr
    assert "is running or was interrupted" in again.stderr and "--resume" in again.stderr
    assert resumed.returncode == 0, resumed.stderr
    (only,) = json.loads(resumed.stdout)["tables"]
    assert only["ranges_skipped"] == written
    assert only["ranges_written"] == total - written
    assert f"{written} of {total} ranges were written before, skipped" in resumed.stderr
    copied = query(
        wh,
        "SELECT sum(r.rows) FROM cdc.backfill_range r JOIN cdc.backfill_run b ON b.id = r.run_id "
        f"WHERE b.target_schema = '{lane.warehouse_schema}'",
    )
    assert copied == [(150_000,)]  # each row once: the ranges of the killed run were not written again
    assert_converges(stack, lane, 120, running=processes, tables=["items"])
    verified = _verify(stack, lane, table)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert target


def _wait_for_ranges(url: str, lane: Lane, minimum: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        rows = query(
            url,
            "SELECT count(*) FROM cdc.backfill_range r JOIN cdc.backfill_run b ON b.id = r.run_id "
            f"WHERE b.target_schema = '{lane.warehouse_schema}' AND r.done_at IS NOT NULL",
        )
        if rows[0][0] >= minimum:
            return int(rows[0][0])
        time.sleep(0.02)
    raise AssertionError(f"the backfill wrote fewer than {minimum} ranges in 120 s")


def test_bad_input_is_refused_with_the_fix_and_nothing_written(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(src, f"CREATE SCHEMA {s}; " + _ITEMS.format(t=f"{s}.items") + "; " + _ITEMS.format(t=f"{s}.unseen"))
    apply_connector(stack)
    execute(src, _ROWS.format(t=f"{s}.items", lo=1, hi=10))
    processes.append(start_sync(stack, lane, log=tmp_path / "sync.log"))
    _wait_for_target(stack, lane, "items")
    cases = {
        "unknown table": ([f"{s}.nope"], {}, f"no table of the source matches '{s}.nope'"),
        "no schema": (["items"], {}, "does not name a table as schema.table"),
        "not captured": ([f"{s}.items"], {"CDC_EXCLUDE_TABLES": f"{s}.items"}, "is not captured (excluded by"),
        "where that does not parse": (
            [f"{s}.items", "--where", "qty >>> 1"],
            {},
            "--where 'qty >>> 1' is not a condition on",
        ),
        "where naming no column": ([f"{s}.items", "--where", "nope = 1"], {}, 'column "nope" does not exist'),
    }
    for name, (args, env, message) in cases.items():
        done = run_cdc(stack, lane, "backfill", *args, timeout=60, **env)
        assert done.returncode == 2, (name, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        assert "fix:" in done.stderr and "Traceback" not in done.stderr, (name, done.stderr)
    # An empty table that nothing made a warehouse table for yet: nothing to copy, said so.
    empty = run_cdc(stack, lane, "backfill", f"{s}.unseen", timeout=60)
    assert empty.returncode == 0, empty.stderr
    assert f"{s}.unseen is empty and has no warehouse table yet: nothing to backfill" in empty.stdout
    assert query(wh, f"SELECT count(*) FROM cdc.backfill_run WHERE target_schema = '{lane.warehouse_schema}'") == [(0,)]


def _verify(stack: Settings, lane: Lane, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cdc(stack, lane, "verify", *args)


def test_verify_names_each_planted_difference_and_fix_rewrites_only_those_rows(
    stack: Settings, lane: Lane, backfill_cleanup: None
) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    table = f"{s}.items"
    execute(src, f"CREATE SCHEMA {s}; " + _ITEMS.format(t=table))
    apply_connector(stack)
    execute(src, _ROWS.format(t=table, lo=1, hi=30_000) + " WHERE i % 2 = 0")  # even ids: room for an extra one
    synced = run_sync(stack, lane)
    assert synced.returncode == 0, synced.stderr
    schema, name = target_of(stack, lane, "items")
    t = f'"{schema}"."{name}"'
    clean = _verify(stack, lane, table, "--range-rows", "1500", "--json")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert json.loads(clean.stdout)["tables"][0]["ranges"] >= 8
    execute(
        wh,
        f"UPDATE {t} SET name = 'changed' WHERE id = 2000; DELETE FROM {t} WHERE id = 9000; "
        f"INSERT INTO {t} (id, name, _cdc_commit_lsn, _cdc_lsn, _cdc_op) VALUES (17001, 'extra', 0, 0, 'c'); "
        f"UPDATE {t} SET qty = NULL WHERE id = 26000",
    )
    found = _verify(stack, lane, table, "--range-rows", "1500", "--json")
    assert found.returncode == 1, found.stderr
    (report,) = json.loads(found.stdout)["tables"]
    planted = {"2000": "changed", "9000": "missing", "17001": "extra", "26000": "changed"}
    named = {e["key"][0]: e["kind"] for r in report["differing_ranges"] for e in r["examples"]}
    assert named == planted
    differing = report["differing_ranges"]
    assert sum(r["differing_rows"] for r in differing) == 4, found.stdout
    for r in differing:  # each names its range, and its keys are in it
        for example in r["examples"]:
            (key,) = example["key"]
            assert r["lower"] is None or int(r["lower"][0]) <= int(key)
            assert r["upper"] is None or int(key) < int(r["upper"][0])
    fixed = _verify(stack, lane, table, "--range-rows", "1500", "--fix", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    result = json.loads(fixed.stdout)
    assert result["equal"] is True
    (repair,) = result["fixed"]
    assert repair["rows_rewritten"] == 4  # the four planted rows, nothing else
    # Only the differing ranges were read (at most four of the ten or more; the ranges of this run,
    # which may split the table a little differently if ANALYZE ran between the two commands).
    assert 1 <= repair["ranges"] <= 4 < report["ranges"]
    assert repair["rows_read"] < 15_000 * 4 // report["ranges"] * 2
    assert_same_rows(src, (s, "items"), wh, (schema, name))


def test_a_backfill_writes_every_type_as_the_stream_does(stack: Settings, lane: Lane, backfill_cleanup: None) -> None:
    """The every_type table of the recorded scenario, streamed, then backfilled from scratch: the
    two copies are equal value for value, but where the stream loses a value (the type-fidelity
    test's VALUE_DIFFERENCES, Debezium's encoding), and there the backfill has the source's."""
    from tests.integration.test_type_fidelity import (
        NUMERIC_EDGES_DDL,
        NUMERIC_EDGES_DML,
        SOURCE_EXPR,
        VALUE_DIFFERENCES,
        every_type_sql,
        read,
    )

    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    schema = lane.source_schema
    ddl, dml = every_type_sql(schema)
    execute(src, ddl + NUMERIC_EDGES_DDL.format(s=schema))
    apply_connector(stack)
    execute(src, "SET TIME ZONE 'UTC';\n" + dml + NUMERIC_EDGES_DML.format(s=schema))
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr
    tables = [f"{schema}.every_type", f"{schema}.numeric_edges"]
    lossy = _verify(stack, lane, *tables, "--json")  # the streamed copy: Debezium's losses are differences
    assert lossy.returncode == 1, lossy.stderr
    assert {
        t["table"].split(".")[1]: sorted(int(e["key"][0]) for r in t["differing_ranges"] for e in r["examples"])
        for t in json.loads(lossy.stdout)["tables"]
    } == {"every_type": [4, 7], "numeric_edges": [1, 2]}
    found: dict[tuple[str, int, str], tuple[Any, Any, Any]] = {}
    formats: dict[str, str] = {}
    for table, exprs in (("every_type", SOURCE_EXPR), ("numeric_edges", {})):
        target = target_of(stack, lane, table)
        _, streamed = read(wh, *target, {})
        execute(wh, f'TRUNCATE "{target[0]}"."{target[1]}"')
        done = _backfill(stack, lane, f"{schema}.{table}", "--json")
        assert done.returncode == 0, done.stderr
        formats[table] = json.loads(done.stdout)["tables"][0]["copy_format"]
        _, backfilled = read(wh, *target, {})
        _, source = read(src, schema, table, exprs)
        assert sorted(backfilled) == sorted(streamed)
        found |= {
            (table, i, c): (source[i][c], streamed[i][c], v)
            for i, row in backfilled.items()
            for c, v in row.items()
            if streamed[i][c] != v
        }
    # Where the stream loses a value, the backfill has the source's (a timetz it converts to UTC
    # alike: the same instant).
    assert set(found) == {k for k in VALUE_DIFFERENCES if k[2] != "c_timetz"}
    assert all(backfilled == source for source, _, backfilled in found.values()), found
    assert formats == {"every_type": "binary", "numeric_edges": "binary"}  # every value cast to its warehouse type
    equal = _verify(stack, lane, *tables)
    assert equal.returncode == 0, equal.stdout + equal.stderr


def test_a_table_without_a_primary_key_is_backfilled_and_streamed_equal_as_a_multiset(
    stack: Settings, lane: Lane, tmp_path: Path, processes: list[subprocess.Popen[bytes]], backfill_cleanup: None
) -> None:
    s = lane.source_schema
    src = stack.require_source_url()
    table = f"{s}.hits"
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {table} (page text, n integer)")
    apply_connector(stack)  # REPLICA IDENTITY FULL: no key
    execute(src, f"INSERT INTO {table} VALUES ('a', 1), ('a', 1)")
    processes.append(start_sync(stack, lane, log=tmp_path / "sync.log"))
    _wait_for_target(stack, lane, "hits")
    assert_converges(stack, lane, 120, running=processes, tables=["hits"])
    # Rows the warehouse never received, duplicates among them, then changes while the backfill runs.
    execute(src, f"ALTER PUBLICATION {stack.publication_name} DROP TABLE {table}")
    execute(src, f"INSERT INTO {table} SELECT 'p' || (i % 500), i % 7 FROM generate_series(1, 20000) AS i")
    execute(src, f"ALTER PUBLICATION {stack.publication_name} ADD TABLE {table}")
    stop = threading.Event()

    def workload() -> None:
        conn = psycopg2.connect(src)
        try:
            i = 0
            while not stop.is_set():
                with conn.cursor() as cur:
                    cur.execute(f"INSERT INTO {table} VALUES ('a', 1), ('w', %s)", (i,))
                    cur.execute(
                        f"UPDATE {table} SET n = n + 100 "
                        f"WHERE ctid = (SELECT ctid FROM {table} WHERE page = 'p{i % 500}' LIMIT 1)"
                    )
                    cur.execute(f"DELETE FROM {table} WHERE ctid = (SELECT ctid FROM {table} WHERE page = 'a' LIMIT 1)")
                conn.commit()
                i += 1
                time.sleep(0.01)
        finally:
            conn.close()

    thread = threading.Thread(target=workload, daemon=True)
    thread.start()
    try:
        time.sleep(1)
        done = _backfill(stack, lane, table, "--json")
        time.sleep(1)
    finally:
        stop.set()
        thread.join(30)
    assert done.returncode == 0, done.stderr
    (only,) = json.loads(done.stdout)["tables"]
    assert only["rows"] >= 20_000
    assert "has no primary key: its rows are replaced in one transaction" in done.stderr
    assert_converges(stack, lane, 120, running=processes, tables=["hits"])  # as multisets: duplicates count
    equal = _verify(stack, lane, table)
    assert equal.returncode == 0, equal.stdout + equal.stderr
    # One of many equal rows lost, one row too many: verify names both, --fix replaces the table.
    schema, name = target_of(stack, lane, "hits")
    t = f'"{schema}"."{name}"'
    execute(
        stack.require_warehouse_url(),
        f"DELETE FROM {t} WHERE ctid = (SELECT ctid FROM {t} WHERE page = 'p7' AND n = 0 LIMIT 1); "
        f"INSERT INTO {t} (page, n, _cdc_commit_lsn, _cdc_lsn, _cdc_op) VALUES ('zz', 9, 0, 0, 'c')",
    )
    found = _verify(stack, lane, table, "--json")
    assert found.returncode == 1, found.stderr
    (report,) = json.loads(found.stdout)["tables"]
    (differing,) = report["differing_ranges"]
    assert differing["differing_rows"] == 2
    assert sorted((e["kind"], e["key"]) for e in differing["examples"]) == [
        ("extra", ["(zz,9)"]),
        ("missing", ["(p7,0)"]),
    ]
    fixed = _verify(stack, lane, table, "--fix", "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
