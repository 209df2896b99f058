"""What `cdc verify` prints, and `--fix`: the differing ranges backfilled (only those)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cdc.backfill.run import Options, TableRun, backfill
from cdc.settings import Settings
from cdc.verify.run import TableReport, shown


def fix_ranges(settings: Settings, reports: list[TableReport], *, say: Callable[[str], None]) -> list[TableRun]:
    only = {r.table.source: [d.range for d in r.differing] for r in reports if not r.equal}
    runs = backfill(settings, [], Options(only=only), say=say)
    for run in runs:
        say(
            f"{run.table.source}: backfilled {len(only[run.table.source])} differing range(s), {run.rows} row(s) "
            f"read from the source, {run.changed} row(s) of the warehouse rewritten"
        )
    return runs


def report_lines(reports: list[TableReport], fixed: list[TableRun] | None) -> list[str]:
    lines = []
    for r in reports:
        if r.equal:
            lines.append(
                f"{r.table.source} = {r.table.target}: {r.source_rows:,} rows equal in {r.ranges} range(s) "
                f"({r.seconds:.1f} s)"
            )
            continue
        lines.append(
            f"{r.table.source} != {r.table.target}: {len(r.differing)} of {r.ranges} range(s) differ "
            f"({r.source_rows:,} rows in the source, {r.warehouse_rows:,} in the warehouse)"
        )
        for d in r.differing:
            shown_keys = ", ".join(f"{'/'.join(x.key)} ({x.kind})" for x in d.differences)
            lines.append(f"  range {shown(d.range)}: {d.differing_rows} row(s) differ, e.g. {shown_keys}")
    differ = sum(not r.equal for r in reports)
    lines.append(
        f"verify: {len(reports) - differ} of {len(reports)} table(s) equal"
        + ("" if not differ else "; fix: cdc verify --fix (backfills only the differing ranges)")
    )
    return lines


def report_json(reports: list[TableReport], fixed: list[TableRun] | None) -> dict[str, Any]:
    return {
        "equal": all(r.equal for r in reports),
        "tables": [
            {
                "table": str(r.table.source),
                "target": str(r.table.target),
                "equal": r.equal,
                "ranges": r.ranges,
                "source_rows": r.source_rows,
                "warehouse_rows": r.warehouse_rows,
                "seconds": round(r.seconds, 3),
                "differing_ranges": [
                    {
                        "lower": None if d.range.lower is None else list(d.range.lower),
                        "upper": None if d.range.upper is None else list(d.range.upper),
                        "source_rows": d.source_rows,
                        "warehouse_rows": d.warehouse_rows,
                        "differing_rows": d.differing_rows,
                        "examples": [{"key": list(x.key), "kind": x.kind} for x in d.differences],
                    }
                    for d in r.differing
                ],
            }
            for r in reports
        ],
        "fixed": None
        if fixed is None
        else [
            {"table": str(f.table.source), "ranges": f.total_ranges, "rows_read": f.rows, "rows_rewritten": f.changed}
            for f in fixed
        ],
    }
