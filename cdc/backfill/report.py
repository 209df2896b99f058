"""What `cdc backfill` shows: a progress bar on a terminal (rows, rows/s, ETA), a plain line every
few seconds otherwise, and a summary (or --json) at the end."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cdc.backfill.run import Progress, TableRun

if TYPE_CHECKING:
    from cdc.backfill.debezium import Followed

_PLAIN_EVERY = 5.0


@contextlib.contextmanager
def progress_shown(meter: Progress, say: Callable[[str], None]) -> Iterator[Callable[[], None]]:
    if sys.stderr.isatty():
        with _bar(meter) as refresh:
            yield refresh
        return
    last = [time.monotonic()]

    def line() -> None:
        now = time.monotonic()
        if now - last[0] >= _PLAIN_EVERY:
            last[0] = now
            say(progress_line(meter, now))

    yield line


def progress_line(meter: Progress, now: float) -> str:
    elapsed = max(now - meter.started, 1e-9)
    rate = meter.rows / elapsed
    total = max(meter.total, meter.rows)
    left = (total - meter.rows) / rate if rate > 0 else float("nan")
    share = f" of ~{total:,}" if total else ""
    eta = f", ETA {left:.0f} s" if rate > 0 and total else ""
    return f"backfill: {meter.rows:,}{share} rows, {rate:,.0f} rows/s{eta}"


@contextlib.contextmanager
def _bar(meter: Progress) -> Iterator[Callable[[], None]]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.progress import (
        Progress as Bar,
    )

    with Bar(
        TextColumn("backfill"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("rows, {task.fields[rate]} rows/s"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("backfill", total=meter.total or None, rate="0")

        def refresh() -> None:
            elapsed = max(time.monotonic() - meter.started, 1e-9)
            bar.update(
                task,
                completed=meter.rows,
                total=max(meter.total, meter.rows) or None,
                rate=f"{meter.rows / elapsed:,.0f}",
            )

        yield refresh


def summary(runs: list[TableRun], seconds: float) -> dict[str, Any]:
    rows = sum(r.rows for r in runs)
    return {
        "tables": [
            {
                "table": str(r.table.source),
                "target": str(r.table.target),
                "run": r.run_id,
                "rows": r.rows,
                "ranges": r.total_ranges,
                "ranges_written": r.direct_ranges + r.merged_ranges,
                "ranges_skipped": r.done_before,
                "ranges_copied_directly": r.direct_ranges,
                "ranges_merged": r.merged_ranges,
                "rows_changed": r.changed,
                "copy_format": "binary" if r.table.binary else "text",
            }
            for r in runs
        ],
        "rows": rows,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
    }


def summary_lines(result: dict[str, Any]) -> list[str]:
    lines = []
    for t in result["tables"]:
        skipped = f", {t['ranges_skipped']} skipped (written before)" if t["ranges_skipped"] else ""
        lines.append(f"{t['table']} -> {t['target']}: {t['rows']:,} rows in {t['ranges_written']} range(s){skipped}")
    rate = result["rows_per_second"]
    lines.append(
        f"backfill done: {result['rows']:,} rows in {result['seconds']:.1f} s" + (f" ({rate:,} rows/s)" if rate else "")
    )
    return lines


@contextlib.contextmanager
def debezium_progress(say: Callable[[str], None]) -> Iterator[Callable[[Followed], None]]:
    """Progress of a Debezium snapshot, shown as a direct backfill's: rows sent (a chunk per
    IN_PROGRESS notification until a table's scan completes with its exact count)."""
    meter = Progress(0)
    with progress_shown(meter, say) as refresh:

        def update(followed: Followed) -> None:
            meter.started = followed.started
            meter.rows, meter.total = followed.rows, followed.estimated_rows
            refresh()

        yield update


def debezium_summary(followed: Followed, seconds: float) -> dict[str, Any]:
    rows = followed.rows
    return {
        "mode": "debezium",
        "signal": followed.signal_id,
        "tables": [{"table": str(t.table), "rows": t.rows or 0, "status": t.status} for t in followed.tables],
        "rows": rows,
        "applied": followed.applied,
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / seconds) if seconds > 0 else None,
    }
