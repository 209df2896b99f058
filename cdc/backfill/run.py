"""`cdc backfill --mode direct`: every chosen table read under one snapshot of the source and
written range by range, while `cdc sync` streams on (cdc/backfill/handover.py says how the two
meet)."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extras

from cdc import pgerrors
from cdc.backfill import debezium, handover, keyless, ranges, sessions, tables
from cdc.backfill.snapshot import Snapshot, Visibility, exported_snapshot, read_in
from cdc.backfill.write import write_range
from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.settings import Settings

log = logging.getLogger(__name__)

_WAIT_REPORT_EVERY = 10.0


@dataclass(slots=True)
class TableRun:
    """One table's run: its ranges, those left to write."""

    table: tables.Backfilled
    run_id: int
    todo: list[ranges.KeyRange]
    done_before: int  # ranges a previous attempt wrote (--resume)
    total_ranges: int
    estimated_rows: int
    rows: int = 0
    direct_ranges: int = 0
    merged_ranges: int = 0
    changed: int = 0


@dataclass(slots=True)
class Progress:
    """Rows written so far, shared by the writers (the callback runs in their threads)."""

    total: int
    rows: int = 0
    started: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, rows: int) -> None:
        with self.lock:
            self.rows += rows


@dataclass(frozen=True, slots=True)
class Options:
    where: str | None = None
    resume: bool = False
    parallel: int = 1
    range_rows: int = ranges.RANGE_ROWS
    # `cdc verify --fix`: only these ranges of these tables (source table -> ranges), not all.
    only: dict[TableId, list[ranges.KeyRange]] | None = None


def backfill(
    settings: Settings,
    patterns: list[str],
    options: Options,
    *,
    say: Callable[[str], None],
    progress: Callable[[Progress], contextlib.AbstractContextManager[Callable[[], None]]] | None = None,
) -> list[TableRun]:
    source_url, warehouse_url = settings.require_source_url(), settings.require_warehouse_url()
    scope = settings.warehouse_schema
    _bootstrap(settings)
    with _connected(source_url, "source") as source, _connected(warehouse_url, "warehouse") as warehouse:
        named = _named(settings, source, warehouse, patterns, say) if options.only is None else sorted(options.only)
        chosen = tables.describe(source, warehouse, scope, named)
        for table in chosen:
            if options.where is not None and not table.key:
                raise ConfigError(
                    f"--where needs a primary key, and {table.source} has none: its warehouse table is replaced "
                    "whole by a backfill.",
                    f"backfill {table.source} without --where",
                )
            if options.where is not None:
                tables.check_where(source, table.source, options.where)
        every = [_open_run(warehouse, table, options) for table in chosen]
        runs = [r for r in every if r.table.key]
        meter = Progress(0)
        for run in (r for r in every if not r.table.key and r.todo):
            _wait_for_writers(source, say)
            with _connected(source_url, "source") as reader:
                run.rows = keyless.replace(
                    settings, reader, warehouse, run.table, run.run_id, say=say, on_rows=meter.add
                )
            run.direct_ranges = run.total_ranges = 1
            run.changed = run.rows
            _finish(warehouse, run)
        if not runs:
            return every
        _wait_for_writers(source, say)
        with _registered(source_url, warehouse, scope, runs, say) as snapshot:
            for run in runs:
                if run.todo or run.done_before:
                    continue
                if options.only is not None:
                    run.todo = _register_ranges(warehouse, run, options.only[run.table.source])
                else:
                    run.todo = _plan(source_url, snapshot, warehouse, run, options.range_rows)
                run.total_ranges = len(run.todo)
            for run in runs:
                if run.done_before:
                    say(
                        f"resuming the backfill of {run.table.source} (run {run.run_id}): {run.done_before} of "
                        f"{run.total_ranges} ranges were written before, skipped; {len(run.todo)} to write"
                    )
            meter = Progress(sum(r.estimated_rows for r in runs))
            tick: contextlib.AbstractContextManager[Callable[[], None]] = (
                progress(meter) if progress else contextlib.nullcontext(lambda: None)
            )
            with tick as refresh:
                _write_all(source_url, warehouse_url, snapshot, runs, options, settings, meter, refresh)
        for run in runs:
            _finish(warehouse, run)
    return every


def _named(
    settings: Settings, source: Any, warehouse: Any, patterns: list[str], say: Callable[[str], None]
) -> list[TableId]:
    """The tables to backfill, each with its warehouse table (made first where it is missing);
    those empty and without one left out."""
    captured = tables.select_captured(source, settings, patterns)
    missing = tables.without_target(warehouse, settings.warehouse_schema, captured)
    empty = debezium.make_targets(settings, source, warehouse, missing, say) if missing else []
    return [TableId(t.schema, t.name) for t in captured if t not in empty]


def _connected(url: str, database: pgerrors.Database) -> contextlib.AbstractContextManager[Any]:
    return sessions.connected(url, database, "cdc backfill")


def _bootstrap(settings: Settings) -> None:
    from cdc.warehouse.postgres import PostgresWarehouse

    made = PostgresWarehouse(
        settings.require_warehouse_url(), schema=settings.warehouse_schema, group=settings.consumer_group
    )
    try:
        made.prepare()
    finally:
        made.close()


def _open_run(warehouse: Any, table: tables.Backfilled, options: Options) -> TableRun:
    """A new run of the table, or with --resume the one a crash interrupted."""
    source, target = table.source, table.target
    with warehouse.cursor() as cur:
        cur.execute(
            "SELECT id FROM cdc.backfill_run WHERE target_schema = %s AND source_schema = %s AND source_table = %s "
            "AND state = 'running'",
            (target.schema, source.schema, source.name),
        )
        row = cur.fetchone()
        if row is not None and not options.resume:
            cur.execute(
                "SELECT count(*) FILTER (WHERE done_at IS NOT NULL), count(*) FROM cdc.backfill_range "
                "WHERE run_id = %s",
                (row[0],),
            )
            done, total = cur.fetchone()
            warehouse.rollback()
            raise ConfigError(
                f"a backfill of {source} (run {row[0]}) is running or was interrupted, {done} of {total} ranges "
                "written.",
                f"continue it with cdc backfill --resume {source} (only one backfill of a table runs at a time)",
            )
        if row is not None:
            run_id = int(row[0])
            cur.execute(
                "SELECT number, lower_bound, upper_bound, done_at IS NOT NULL FROM cdc.backfill_range "
                "WHERE run_id = %s ORDER BY number",
                (run_id,),
            )
            planned = cur.fetchall()
            todo = [ranges.KeyRange(n, _bound(lo), _bound(hi)) for n, lo, hi, done in planned if not done]
            cur.execute("SELECT coalesce(sum(rows), 0) FROM cdc.backfill_range WHERE run_id = %s", (run_id,))
            rows_before = int(cur.fetchone()[0])
            warehouse.commit()
            estimate = rows_before * len(todo) // max(1, len(planned) - len(todo)) if todo else 0
            return TableRun(table, run_id, todo, len(planned) - len(todo), len(planned), estimate)
        cur.execute(
            "INSERT INTO cdc.backfill_run (target_schema, target_table, source_schema, source_table, mode, filter, "
            "key_columns) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                target.schema,
                target.table,
                source.schema,
                source.name,
                "direct" if options.only is None else "verify --fix",
                options.where,
                psycopg2.extras.Json(list(table.stored_key)),
            ),
        )
        run_id = int(cur.fetchone()[0])
        if not table.key:  # one range: the whole table, in one transaction
            cur.execute("INSERT INTO cdc.backfill_range (run_id, number) VALUES (%s, 0)", (run_id,))
    warehouse.commit()
    whole = [ranges.KeyRange(0, None, None)] if not table.key else []
    return TableRun(table, run_id, whole, 0, len(whole), 0)


def _bound(value: list[str] | None) -> tuple[str, ...] | None:
    return None if value is None else tuple(value)


def _wait_for_writers(source: Any, say: Callable[[str], None]) -> None:
    """A snapshot (a slot's creation) waits for every transaction that has written and is still
    open. Wait for those here, before the warehouse's lock is taken, and say which they are."""
    with source.cursor() as cur:
        cur.execute("SELECT now()")
        started = cur.fetchone()[0]
    source.commit()
    last_report = 0.0
    while True:
        with source.cursor() as cur:
            cur.execute(
                "SELECT pid, now() - xact_start, left(query, 80) FROM pg_stat_activity WHERE backend_xid IS NOT NULL "
                "AND pid <> pg_backend_pid() AND xact_start < %s ORDER BY xact_start",
                (started,),
            )
            open_ones = cur.fetchall()
        source.commit()
        if not open_ones:
            return
        if time.monotonic() - last_report >= _WAIT_REPORT_EVERY:
            pid, age, query = open_ones[0]
            say(
                f"waiting for {len(open_ones)} source transaction(s) in progress to end before taking the snapshot; "
                f"the oldest: pid {pid}, open for {age}, {query!r}"
            )
            last_report = time.monotonic()
        time.sleep(0.2)


@contextlib.contextmanager
def _registered(
    source_url: str, warehouse: Any, scope: str, runs: list[TableRun], say: Callable[[str], None]
) -> Iterator[Snapshot]:
    """Take the snapshot and register it for every table, while no flush of theirs runs: each
    streamed change `cdc sync` applies from now on is ordered against it."""
    with warehouse.cursor() as cur:
        for run in sorted(runs, key=lambda r: handover.lock_key(r.table.source)):
            cur.execute(handover.LOCK_EXCLUSIVE, (handover.lock_key(run.table.source),))
        with exported_snapshot(source_url) as snapshot:
            visibility = _visibility(source_url, snapshot)
            for run in runs:
                handover.register_snapshot(cur, scope, run.table.source, snapshot.lsn, visibility, run.run_id)
            warehouse.commit()
            say(f"snapshot of the source taken at LSN {_lsn_text(snapshot.lsn)}")
            yield snapshot


def _visibility(source_url: str, snapshot: Snapshot) -> Visibility:
    conn = pgerrors.connect(source_url, "source", "cdc backfill")
    try:
        return read_in(conn, snapshot)
    finally:
        conn.close()


def _lsn_text(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def _plan(source_url: str, snapshot: Snapshot, warehouse: Any, run: TableRun, per_range: int) -> list[ranges.KeyRange]:
    table = run.table
    with _connected(source_url, "source") as source:
        read_in(source, snapshot)
        with source.cursor() as cur:
            run.estimated_rows = ranges.estimated_rows(cur, table.source_ident, table.source_regclass)
            planned = ranges.plan(
                cur, table.source_ident, table.key, run.estimated_rows, per_range, regclass=table.source_regclass
            )
    return _register_ranges(warehouse, run, planned)


def _register_ranges(warehouse: Any, run: TableRun, planned: list[ranges.KeyRange]) -> list[ranges.KeyRange]:
    numbered = [ranges.KeyRange(n, r.lower, r.upper) for n, r in enumerate(planned)]
    with warehouse.cursor() as cur:
        psycopg2.extras.execute_values(
            cur,
            "INSERT INTO cdc.backfill_range (run_id, number, lower_bound, upper_bound) VALUES %s",
            [(run.run_id, r.number, _array(r.lower), _array(r.upper)) for r in numbered],
        )
    warehouse.commit()
    return numbered


def _array(bound: tuple[str, ...] | None) -> list[str] | None:
    return None if bound is None else list(bound)


def _write_all(  # noqa: PLR0917
    source_url: str,
    warehouse_url: str,
    snapshot: Snapshot,
    runs: list[TableRun],
    options: Options,
    settings: Settings,
    meter: Progress,
    refresh: Callable[[], None],
) -> None:
    """The ranges of every run, by `options.parallel` writers, each with a connection to each end."""
    work: queue.SimpleQueue[tuple[TableRun, ranges.KeyRange]] = queue.SimpleQueue()
    for run in runs:
        for key_range in run.todo:
            work.put((run, key_range))
    failures: list[BaseException] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            with _connected(source_url, "source") as source, _connected(warehouse_url, "warehouse") as warehouse:
                read_in(source, snapshot)
                while not failures:
                    try:
                        run, key_range = work.get_nowait()
                    except queue.Empty:
                        return
                    try:
                        written = write_range(
                            source,
                            warehouse,
                            run.table,
                            run.run_id,
                            key_range,
                            snapshot.lsn,
                            where=options.where,
                            soft_delete=settings.delete_mode == "soft",
                            on_rows=meter.add,
                        )
                    except psycopg2.Error as exc:
                        raise pgerrors.translate(exc, f"backfilling {run.table.source}", "warehouse") from exc
                    with lock:
                        run.rows += written.rows
                        run.changed += written.changed
                        if written.direct:
                            run.direct_ranges += 1
                        else:
                            run.merged_ranges += 1
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [threading.Thread(target=writer, name=f"cdc-backfill-{n}", daemon=True) for n in range(options.parallel)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        refresh()
        for thread in threads:
            thread.join(timeout=0.25)
    refresh()
    if failures:
        raise failures[0]


def _finish(warehouse: Any, run: TableRun) -> None:
    """Every range written: the run is done, and the deleted keys kept for it are let go."""
    target = run.table.target
    with warehouse.cursor() as cur:
        cur.execute(handover.LOCK_EXCLUSIVE, (handover.lock_key(run.table.source),))
        cur.execute(
            "UPDATE cdc.backfill_run SET state = 'done', finished_at = now(), "
            "rows = (SELECT coalesce(sum(rows), 0) FROM cdc.backfill_range WHERE run_id = %s) WHERE id = %s",
            (run.run_id, run.run_id),
        )
        cur.execute(
            "DELETE FROM cdc.backfill_deleted WHERE target_schema = %s AND target_table = %s",
            (target.schema, target.table),
        )
    warehouse.commit()
