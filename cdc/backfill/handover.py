"""Where backfilled rows meet streamed changes, inside `cdc sync`'s flush.

A backfill writes each row at version (P, 0), P being its snapshot's consistent point: the commit
LSN from which transactions are not in the snapshot. A streamed change wins over it exactly when
its transaction is not in the snapshot. Debezium's `source.sequence` is [end of the previous
transaction's commit, change LSN], so every transaction not in the snapshot already sorts after
(P, 0) but one: the first to commit after P, whose sequence starts before P. That transaction is
recognised by its id (`source.txId`), which the snapshot does not see, and its changes are raised
to (P, change LSN): above the backfilled rows, below every later transaction.

A delete that finds no row must not be undone by a backfill that writes the row later: while a
backfill of a table runs, the flush keeps the deleted keys (cdc.backfill_deleted) and the backfill
skips a key deleted after its snapshot.

The flush and the backfill meet on two advisory locks per source table. The first the flush
takes shared for all its tables before it writes anything (so it holds no transaction id a slot's
creation would wait for), and a backfill exclusive while it registers a snapshot, replaces a
keyless table, or ends. The second only while a backfill runs: its range writers share it, and a
flush takes it alone before it writes the table, so that no flush writes a table while a range of
it is written (a delete finding no row, and the range writing it, cannot cross), while ranges are
written side by side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from cdc.backfill.snapshot import Visibility
from cdc.events import ChangeEvent, TableId, Version

_LOCK_SEED = 7_241_003  # hashtextextended seed: the lock keys of backfills, apart from other locks


def lock_key(table: TableId) -> str:
    """The text whose hash is the advisory lock key of a source table's backfills."""
    return f"cdc backfill {table.schema}.{table.name}"


LOCK_SHARED = f"SELECT pg_advisory_xact_lock_shared(hashtextextended(k, {_LOCK_SEED})) FROM unnest(%s::text[]) AS k"  # noqa: S608 (a constant)
LOCK_EXCLUSIVE = f"SELECT pg_advisory_xact_lock(hashtextextended(%s, {_LOCK_SEED}))"


def write_lock_key(table: TableId) -> str:
    """The lock that keeps a flush and a backfill from writing the same table at once: the
    backfill's range writers share it, a flush takes it alone (only while a backfill runs)."""
    return f"cdc backfill write {table.schema}.{table.name}"


WRITE_SHARED = f"SELECT pg_advisory_xact_lock_shared(hashtextextended(%s, {_LOCK_SEED}))"
WRITE_EXCLUSIVE = LOCK_EXCLUSIVE


@dataclass(frozen=True, slots=True)
class Taken:
    """A snapshot a backfill of the table read (cdc.backfill_snapshot)."""

    lsn: int
    visibility: Visibility


@dataclass(frozen=True, slots=True)
class Handover:
    """What the flush needs to know of one table's backfills."""

    snapshots: tuple[Taken, ...]  # newest first
    running: bool  # a backfill is writing the table now: keep the keys deletes found missing

    def raise_versions(self, events: Iterable[ChangeEvent]) -> int:
        """Raise the version of each change whose transaction a snapshot did not see, though its
        sequence sorts it before that snapshot. Returns how many were raised."""
        if not self.snapshots:
            return 0
        newest = self.snapshots[0].lsn
        raised = 0
        for event in events:
            version = event.version
            if version.commit_lsn >= newest:
                continue
            txid = txid_of(event)
            if txid is None:
                continue  # a snapshot read (no transaction): it sorts by its own snapshot's LSN
            lifted = lifted_version(version, txid, self.snapshots)
            if lifted is not version:
                event.version = lifted
                raised += 1
        return raised


def lifted_version(version: Version, txid: int, snapshots: Sequence[Taken]) -> Version:
    """The version a change of transaction `txid` (32 bits, as Debezium sends it) must have to sort
    after the rows of every snapshot that did not see its transaction. Snapshots newest first:
    they are nested (a newer one sees everything an older one saw), so the first that does not
    see the transaction is the newest such."""
    for taken in snapshots:
        if version.commit_lsn >= taken.lsn:
            return version  # sorts after this snapshot's rows, and so after the older ones'
        if not taken.visibility.sees(widen(txid, taken.visibility.xmax)):
            return Version(taken.lsn, version.lsn)
    return version


def widen(xid: int, near: int) -> int:
    """A 32-bit transaction id as the 64-bit one (epoch and xid) nearest to `near`, a 64-bit id of
    about the same time: ids wrap around every 2^32, and a transaction seen around a snapshot
    is far less than 2^31 ids away from it."""
    full = (near & ~0xFFFFFFFF) | (xid & 0xFFFFFFFF)
    if full - near > 1 << 31:
        full -= 1 << 32
    elif near - full > 1 << 31:
        full += 1 << 32
    return full


def txid_of(event: ChangeEvent) -> int | None:
    """The transaction id of a change, from the message it came in (parsed again: this is needed
    only for the few changes that sort before a backfill's snapshot)."""
    raw = event.raw_value
    if raw is None:
        return None
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    payload = message.get("payload", message) if isinstance(message, dict) else None
    source = payload.get("source") if isinstance(payload, dict) else None
    txid = source.get("txId") if isinstance(source, dict) else None
    return txid if type(txid) is int else None


def register_snapshot(  # noqa: PLR0917
    cur: Any, scope: str, table: TableId, lsn: int, visibility: Visibility, run_id: int
) -> None:
    """Record a snapshot a backfill reads the table under (the flush orders changes against it)."""
    cur.execute(
        "INSERT INTO cdc.backfill_snapshot (target_schema, source_schema, source_table, snapshot_lsn, snapshot, "
        "run_id) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
        (scope, table.schema, table.name, lsn, visibility.text, run_id),
    )


# One round trip per flush: the shared locks first, then (a statement of its own, so that it sees
# what a backfill that held the lock committed) what the flush needs to know.
_LOAD = (
    LOCK_SHARED + "; "  # noqa: S608 (constants only)
    "SELECT s.source_schema, s.source_table, s.snapshot_lsn, s.snapshot, "
    "EXISTS (SELECT 1 FROM cdc.backfill_run r WHERE r.target_schema = s.target_schema "
    "AND r.source_schema = s.source_schema AND r.source_table = s.source_table AND r.state = 'running') "
    "FROM cdc.backfill_snapshot s WHERE s.target_schema = %s "
    "AND (s.source_schema || '.' || s.source_table) = ANY (%s::text[]) ORDER BY s.snapshot_lsn DESC"
)


def load(cur: Any, scope: str, tables: Sequence[TableId]) -> dict[TableId, Handover]:
    """Take the flush's shared locks on its tables, and read their backfills (only tables that
    had one are in the result)."""
    if not tables:
        return {}
    names = [f"{t.schema}.{t.name}" for t in tables]
    cur.execute(_LOAD, ([lock_key(t) for t in tables], scope, names))
    found: dict[TableId, tuple[list[Taken], bool]] = {}
    for schema, name, lsn, snapshot, running in cur.fetchall():
        taken, _ = found.setdefault(TableId(schema, name), ([], bool(running)))
        taken.append(Taken(int(lsn), Visibility.parse(snapshot)))
    wanted = set(tables)
    return {t: Handover(tuple(s), r) for t, (s, r) in found.items() if t in wanted}
