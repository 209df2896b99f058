"""`cdc status` for people: one screen (a rich renderable), refreshed in place by --watch."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cdc.ops.status import Status, TableStatus
from cdc.ops.text import human_bytes


def render(status: Status) -> RenderableType:
    parts: list[RenderableType] = [Text(f"cdc status at {status.taken_at}", style="bold")]
    parts.append(_pipeline(status))
    if status.tables:
        parts.append(_tables(status.tables))
    elif not status.problems:
        parts.append(Text("no change topic (of the tables asked for) in Kafka yet, and nothing applied"))
    parts.extend(Text(f"could not read {p}", style="bold red") for p in status.problems)
    return Group(*parts)


def _pipeline(status: Status) -> Text:
    connector, slot = status.connector, status.slot
    line = Text()
    if connector:
        tasks = ", ".join(f"task {t['id']} {t['state']}" for t in connector["tasks"]) or "no task"
        healthy = connector["state"] == "RUNNING" and all(t["state"] == "RUNNING" for t in connector["tasks"])
        line.append(
            f"connector {connector['name']}: {connector['state']} ({tasks})", "green" if healthy else "bold red"
        )
        if connector.get("trace"):
            line.append(f"\n  {connector['trace']}", "red")
        line.append("\n")
    if slot:
        if not slot["exists"]:
            line.append(f"slot {slot['name']}: missing", "bold red")
        else:
            safe = slot["safe_wal_size"]
            line.append(
                f"slot {slot['name']}: {'active' if slot['active'] else 'inactive'}, wal_status {slot['wal_status']}, "
                f"{human_bytes(slot['retained_bytes'])} retained"
                + ("" if safe is None else f", {human_bytes(safe)} before max_slot_wal_keep_size"),
                "green"
                if slot["active"]
                and slot["wal_status"] in ("reserved", "extended")
                and not slot["retained_above_limit"]
                else "yellow",
            )
        line.append("\n")
    line.append(f"lag: {status.lag_messages:,} messages, oldest waiting change {status.lag_seconds:.1f} s old")
    return line


def _tables(rows: list[TableStatus]) -> Table:
    table = Table(
        "source table",
        "warehouse table",
        "lag (msgs)",
        "lag (s)",
        "applied",
        "last source commit",
        "position",
        "dead letters",
        "state",
    )
    for row in rows:
        state = []
        if row.held:
            state.append("[bold red]held: cdc schema accept[/]")
        if row.backfill:
            state.append(f"backfill {row.backfill}")
        if row.lost_messages:
            state.append(f"[bold red]{row.lost_messages:,} lost from Kafka: cdc doctor[/]")
        table.add_row(
            row.source_table,
            row.target_table or "-",
            f"{row.lag_messages:,}",
            f"{row.lag_seconds:.1f}",
            f"{row.events_applied:,}",
            row.last_source_ts or "-",
            row.last_commit_lsn or "-",
            f"[red]{row.dead_letters:,}[/]" if row.dead_letters else "0",
            ", ".join(state) or "ok",
        )
    return table
