"""One consistent snapshot of the source, shared by every reader of a backfill, with its exact
place in the WAL.

A temporary logical replication slot created with EXPORT_SNAPSHOT gives both at once: the snapshot
sees every transaction that committed before the slot's consistent point and none after it, so a
streamed change is newer than the backfilled rows exactly when its commit LSN is at or past that
point (the order `cdc sync`'s version guard keeps). pg_export_snapshot() alone would give the
snapshot but no such LSN: WAL positions read around it are only bounds.

The snapshot stays importable while the slot's connection is open and runs nothing else; closing
it drops the slot (temporary: also dropped by the server if cdc dies), so no WAL is held back.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2.extras import LogicalReplicationConnection

from cdc.errors import ConfigError
from cdc.pgerrors import translate


@dataclass(frozen=True, slots=True)
class Snapshot:
    name: str  # for SET TRANSACTION SNAPSHOT
    lsn: int  # the consistent point: committed before it, in the snapshot; at or after it, not


def lsn_of(text: str) -> int:
    """'16/B374D848' -> the LSN as the 64-bit number Debezium sends."""
    high, _, low = text.partition("/")
    return (int(high, 16) << 32) | int(low, 16)


@contextmanager
def exported_snapshot(source_url: str) -> Iterator[Snapshot]:
    """The source's snapshot, importable by other sessions (`read_in`) until the block ends.
    Creating it waits for the transactions in progress to end, as a slot's creation does."""
    slot = f"cdc_backfill_{uuid.uuid4().hex[:12]}"
    try:
        conn = psycopg2.connect(
            source_url,
            connect_timeout=10,
            application_name="cdc backfill",
            connection_factory=LogicalReplicationConnection,
        )
    except psycopg2.Error as exc:
        # The server refuses a replication connection to a role without REPLICATION as it opens.
        if _NO_REPLICATION in str(exc):
            raise _needs_replication() from exc
        raise translate(exc, "connecting for a consistent snapshot", "source") from exc
    try:
        with conn.cursor() as cur:
            try:
                cur.execute(f"CREATE_REPLICATION_SLOT {slot} TEMPORARY LOGICAL pgoutput EXPORT_SNAPSHOT")
            except psycopg2.errors.InsufficientPrivilege as exc:
                raise _needs_replication() from exc
            except psycopg2.Error as exc:
                raise translate(exc, "creating a temporary replication slot", "source") from exc
            row: Any = cur.fetchone()
        _, consistent_point, snapshot_name, _ = row
        yield Snapshot(str(snapshot_name), lsn_of(str(consistent_point)))
    finally:
        conn.close()


@dataclass(frozen=True, slots=True)
class Visibility:
    """Which transactions the snapshot sees (pg_current_snapshot(): 64-bit transaction ids)."""

    xmin: int  # below: ended before the snapshot (seen if committed)
    xmax: int  # at or above: not yet begun when it was taken
    running: frozenset[int]  # between the two: in progress then, so not seen

    @classmethod
    def parse(cls, text: str) -> Visibility:
        xmin, xmax, running = text.split(":")
        return cls(int(xmin), int(xmax), frozenset(int(x) for x in running.split(",") if x))

    @property
    def text(self) -> str:
        """As pg_snapshot prints it (what parse reads)."""
        return f"{self.xmin}:{self.xmax}:{','.join(map(str, sorted(self.running)))}"

    def sees(self, txid: int) -> bool:
        """Whether a transaction that committed is in the snapshot."""
        return txid < self.xmin or (txid < self.xmax and txid not in self.running)


_NO_REPLICATION = "must be superuser or replication role"


def _needs_replication() -> ConfigError:
    return ConfigError(
        "cdc backfill needs a consistent snapshot of the source, taken through a temporary replication slot, "
        "and the source role may not create one.",
        "give the role REPLICATION (ALTER ROLE ... REPLICATION), as Debezium's role has",
    )


def read_in(conn: psycopg2.extensions.connection, snapshot: Snapshot) -> Visibility:
    """Begin a read-only transaction of `conn` (autocommit, so the transaction is the one begun
    here) in the snapshot; which transactions it sees."""
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        cur.execute("SET TRANSACTION SNAPSHOT %s", (snapshot.name,))
        cur.execute("SELECT pg_current_snapshot()::text")
        row: Any = cur.fetchone()
    return Visibility.parse(str(row[0]))
