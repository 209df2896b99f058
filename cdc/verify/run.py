"""`cdc verify`: for each table, count and checksum per key range in both databases at once;
the ranges that differ are compared row by row (key and row hash), and the rows that differ are
read again a few times, so that a change still on its way through Kafka is not reported as a
difference. What is left is reported: the range, and example keys with what is wrong with them."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from psycopg2 import sql

from cdc import capture, pgerrors
from cdc.backfill import ranges, sessions, tables
from cdc.backfill.ranges import KeyRange
from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.settings import Settings
from cdc.verify import checksums
from cdc.verify.checksums import Side

VERIFY_RANGE_ROWS = 100_000
_RECHECKS = 3  # times a differing row is read again before it is reported
_RECHECK_PAUSE = 2.0

_T = TypeVar("_T")


@dataclass(slots=True)
class Difference:
    key: tuple[str, ...]
    kind: str  # missing (in the warehouse), extra (in the warehouse), changed


@dataclass(slots=True)
class RangeReport:
    range: KeyRange
    source_rows: int
    warehouse_rows: int
    differing_rows: int
    differences: list[Difference] = field(default_factory=list)  # the first `examples` of them


@dataclass(slots=True)
class TableReport:
    table: tables.Backfilled
    ranges: int
    source_rows: int
    warehouse_rows: int
    differing: list[RangeReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def equal(self) -> bool:
        return not self.differing


def verify(
    settings: Settings,
    patterns: list[str],
    *,
    say: Callable[[str], None],
    examples: int = 5,
    range_rows: int = VERIFY_RANGE_ROWS,
) -> list[TableReport]:
    source_url, warehouse_url = settings.require_source_url(), settings.require_warehouse_url()
    scope = settings.warehouse_schema
    soft = settings.delete_mode == "soft"
    with _connected(source_url, "source") as source, _connected(warehouse_url, "warehouse") as warehouse:
        chosen = tables.select(source, settings, patterns) if patterns else _replicated(source, warehouse, settings)
        described = tables.describe(source, warehouse, scope, chosen)
    reports = []
    for table in described:
        reports.append(_verify_table(source_url, warehouse_url, table, soft, (examples, range_rows), say))
    return reports


def _replicated(source: Any, warehouse: Any, settings: Settings) -> list[TableId]:
    """Every captured table the warehouse schema has a table of."""
    captured = {TableId(t.schema, t.name) for t in capture.survey(source, settings).captured_user_tables}
    with warehouse.cursor() as cur:
        cur.execute(
            "SELECT m.source_schema, m.source_table FROM cdc.table_map m JOIN cdc.schema_state s "
            "ON s.target_schema = m.target_schema AND s.target_table = m.target_table WHERE m.target_schema = %s",
            (settings.warehouse_schema,),
        )
        mapped = {TableId(a, b) for a, b in cur.fetchall()}
    warehouse.rollback()
    found = sorted(captured & mapped)
    if not found:
        raise ConfigError(
            f"the warehouse schema {settings.warehouse_schema} holds no replicated table to verify.",
            "run cdc sync first, or name the tables: cdc verify schema.table",
        )
    return found


def _connected(url: str, database: pgerrors.Database) -> contextlib.AbstractContextManager[Any]:
    return sessions.connected(url, database, "cdc verify", autocommit=True)


def _sides(source: Any, warehouse: Any, table: tables.Backfilled, soft: bool) -> tuple[Side, Side]:
    """The source read as the stream stores it (what a backfill writes), the warehouse as it is."""
    key_types = ("", "")
    if len(table.key) == 1:
        with source.cursor() as cur:
            (source_key,) = checksums.column_types(cur, table.source_regclass, table.key)
        with warehouse.cursor() as cur:
            (warehouse_key,) = checksums.column_types(cur, table.target.regclass, table.stored_key)
        key_types = (source_key, warehouse_key)
    live = sql.SQL("_cdc_deleted_at IS NULL") if soft else sql.SQL("true")
    types = None
    if table.binary:  # the source's values are cast to the warehouse's types: hash them as values
        with warehouse.cursor() as cur:
            types = checksums.column_types(cur, table.target.regclass, table.stored)
    return (
        Side(table.source_ident, table.selected, table.key, key_types[0], types=types),
        Side(table.target.ident, tuple(map(sql.Identifier, table.stored)), table.stored_key, key_types[1], live, types),
    )


def _verify_table(  # noqa: PLR0917
    source_url: str,
    warehouse_url: str,
    table: tables.Backfilled,
    soft: bool,
    limits: tuple[int, int],
    say: Callable[[str], None],
) -> TableReport:
    started = time.monotonic()
    examples, range_rows = limits
    with _connected(source_url, "source") as source, _connected(warehouse_url, "warehouse") as warehouse:
        src, wh = _sides(source, warehouse, table, soft)
        if not table.key:
            report = _verify_keyless(source, warehouse, (src, wh), table, examples, say)
            report.seconds = time.monotonic() - started
            return report
        with source.cursor() as cur:
            estimate = ranges.estimated_rows(cur, table.source_ident, table.source_regclass)
            planned = ranges.plan(
                cur, table.source_ident, table.key, estimate, range_rows, regclass=table.source_regclass
            )
        sums_src, sums_wh = _both(
            lambda: _read(source, lambda cur: checksums.range_sums(cur, src, planned)),
            lambda: _read(warehouse, lambda cur: checksums.range_sums(cur, wh, planned)),
        )
        report = TableReport(
            table,
            len(planned),
            sum(s.rows for s in sums_src.values()),
            sum(s.rows for s in sums_wh.values()),
        )
        found: list[tuple[KeyRange, list[Difference]]] = []
        for key_range in planned:
            if sums_src[key_range.number] == sums_wh[key_range.number]:
                continue
            rows_src, rows_wh = _both(_rows_of(source, src, key_range), _rows_of(warehouse, wh, key_range))
            found.append((key_range, _differences(rows_src, rows_wh)))
        remaining = {d.key for d in _settled(source, warehouse, src, wh, [d for _, ds in found for d in ds])}
        for key_range, differences in found:
            left = [d for d in differences if d.key in remaining]
            if not left:
                continue
            a, b = sums_src[key_range.number], sums_wh[key_range.number]
            report.differing.append(RangeReport(key_range, a.rows, b.rows, len(left), left[:examples]))
            say(
                f"{table.source}: range {shown(key_range)} differs: {len(left)} row(s), "
                f"{a.rows} in the source, {b.rows} in the warehouse"
            )
    report.seconds = time.monotonic() - started
    return report


def _verify_keyless(  # noqa: PLR0917
    source: Any,
    warehouse: Any,
    sides: tuple[Side, Side],
    table: tables.Backfilled,
    examples: int,
    say: Callable[[str], None],
) -> TableReport:
    """A table without a primary key, as a multiset of rows: count and checksum per hash bucket,
    then hash by hash in the buckets that differ; compared again until two comparisons agree."""
    src, wh = sides
    everything = KeyRange(0, None, None)
    previous: tuple[dict[int, int], dict[int, int]] | None = None
    for attempt in range(_RECHECKS + 1):
        buckets_src, buckets_wh = _both(
            lambda: _read(source, lambda cur: checksums.bucket_sums(cur, src)),
            lambda: _read(warehouse, lambda cur: checksums.bucket_sums(cur, wh)),
        )
        rows = (sum(b.rows for b in buckets_src.values()), sum(b.rows for b in buckets_wh.values()))
        differing = sorted(b for b in buckets_src.keys() | buckets_wh.keys() if buckets_src.get(b) != buckets_wh.get(b))
        report = TableReport(table, 1, *rows)
        if not differing:
            return report
        counts_src, counts_wh = _both(
            functools.partial(_read, source, functools.partial(checksums.hash_counts, side=src, buckets=differing)),
            functools.partial(_read, warehouse, functools.partial(checksums.hash_counts, side=wh, buckets=differing)),
        )
        missing = {h: n - counts_wh.get(h, 0) for h, n in counts_src.items() if n > counts_wh.get(h, 0)}
        extra = {h: n - counts_src.get(h, 0) for h, n in counts_wh.items() if n > counts_src.get(h, 0)}
        if (missing, extra) == previous or attempt == _RECHECKS:
            break
        previous = (missing, extra)
        time.sleep(_RECHECK_PAUSE)
    shown_src = _read(source, lambda cur: checksums.rows_of(cur, src, sorted(missing)[:examples]))
    shown_wh = _read(warehouse, lambda cur: checksums.rows_of(cur, wh, sorted(extra)[:examples]))
    differences = [Difference((shown_src.get(h, str(h)),), "missing") for h in sorted(missing)[:examples]]
    differences += [Difference((shown_wh.get(h, str(h)),), "extra") for h in sorted(extra)[:examples]]
    count = sum(missing.values()) + sum(extra.values())
    report.differing.append(
        RangeReport(everything, report.source_rows, report.warehouse_rows, count, differences[:examples])
    )
    say(
        f"{table.source}: {count} row(s) differ as a multiset, {report.source_rows} in the source, "
        f"{report.warehouse_rows} in the warehouse"
    )
    return report


def _differences(source: dict[tuple[str, ...], int], warehouse: dict[tuple[str, ...], int]) -> list[Difference]:
    found = [Difference(k, "missing") for k in source.keys() - warehouse.keys()]
    found += [Difference(k, "extra") for k in warehouse.keys() - source.keys()]
    found += [Difference(k, "changed") for k in source.keys() & warehouse.keys() if source[k] != warehouse[k]]
    return sorted(found, key=lambda d: d.key)


def _settled(source: Any, warehouse: Any, src: Side, wh: Side, differences: list[Difference]) -> list[Difference]:
    """The differences that remain when their rows are read again: a change in flight (committed
    in the source, not yet applied) settles within seconds while cdc sync runs. Read again until
    two reads agree, at most _RECHECKS times."""
    for _ in range(_RECHECKS):
        if not differences:
            return []
        time.sleep(_RECHECK_PAUSE)
        keys = [d.key for d in differences]
        now_src, now_wh = _both(_keys_of(source, src, keys), _keys_of(warehouse, wh, keys))
        again = _differences(now_src, now_wh)
        if again == differences:
            return again
        differences = again
    return differences


def _rows_of(conn: Any, side: Side, key_range: KeyRange) -> Callable[[], dict[tuple[str, ...], int]]:
    return lambda: _read(conn, lambda cur: checksums.row_hashes(cur, side, key_range.lower, key_range.upper))


def _keys_of(conn: Any, side: Side, keys: list[tuple[str, ...]]) -> Callable[[], dict[tuple[str, ...], int]]:
    return lambda: _read(conn, lambda cur: checksums.hashes_of(cur, side, keys))


def _read(conn: Any, query: Callable[[Any], _T]) -> _T:
    """A read in a repeatable-read, read-only transaction of its own."""
    with conn.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            return query(cur)
        finally:
            cur.execute("ROLLBACK")


def _both(first: Callable[[], _T], second: Callable[[], Any]) -> tuple[_T, Any]:
    """Run two reads at once, one per database."""
    result: list[Any] = [None]
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result[0] = second()
        except BaseException as exc:  # raised below, in the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=run, name="cdc-verify", daemon=True)
    thread.start()
    mine = first()
    thread.join()
    if failure:
        raise failure[0]
    return mine, result[0]


def shown(key_range: KeyRange) -> str:
    def bound(b: tuple[str, ...] | None, open_: str) -> str:
        if b is None:
            return open_
        return b[0] if len(b) == 1 else "(" + ", ".join(b) + ")"

    return f"[{bound(key_range.lower, '-inf')}, {bound(key_range.upper, '+inf')})"
