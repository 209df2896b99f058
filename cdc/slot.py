"""The replication slot as the source shows it (pg_replication_slots): where the truth about WAL
retained, and about a slot lost or recreated, lives. Read by doctor, status, the metrics and the
slot guard."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class SlotReading:
    exists: bool
    active: bool = False
    wal_status: str | None = None
    confirmed_flush_lsn: int | None = None
    retained_bytes: int = 0  # WAL from the slot's restart_lsn to the source's current position
    safe_wal_size: int | None = None  # WAL that may still be written before the slot is lost; None: unlimited


def read_slot(cur: Any, slot: str) -> SlotReading:
    cur.execute(
        "SELECT active, wal_status, (confirmed_flush_lsn - '0/0'::pg_lsn)::bigint, "
        "pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    row = cur.fetchone()
    if row is None:
        return SlotReading(exists=False)
    active, wal_status, confirmed, retained, safe = row
    return SlotReading(True, bool(active), wal_status, confirmed, retained or 0, safe)


def lsn_text(value: int | None) -> str | None:
    """An LSN as PostgreSQL prints it (16/B374D848)."""
    return None if value is None else f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
