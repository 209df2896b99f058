"""The replication slot, watched from `cdc sync`: a slot lost, invalidated or recreated under the
pipeline stops it loudly, and WAL piling up on the source raises an alert once per crossing.

Why a recreated slot is visible: Debezium confirms a position to the slot (its
confirmed_flush_lsn) only after Kafka Connect has committed that position to the connector's
offsets. So the slot's confirmed_flush_lsn is never ahead of the connector's committed offset, as
long as it is the slot Debezium has been reading. A slot made afresh starts at the source's current
WAL position: ahead of the offset, until Debezium streams from it and commits again. Everything
written between the old slot's end and the new slot's start never reached Kafka: a gap. The guard
reads the slot first and the offsets second (the offsets only move forward, so a slot read earlier
can never be ahead of offsets read later, unless it is another slot), every CHECK_EVERY seconds.
A slot that disappears, or whose wal_status is `lost`, is a gap too.

A gap is recorded in the warehouse (cdc.slot_watch.gap_at, with what was found) and alerted once,
through the alert outbox; `cdc sync` stops, and refuses to start again, until `cdc verify` over
every replicated table finds source and warehouse equal, which clears it: the gap is repaired only
when that is proven. Debezium itself stops its task when its slot no longer holds its position
("... no longer available on the server"); `cdc connector resnapshot` gets it streaming again,
with a new snapshot, and `cdc verify --fix` (or `cdc backfill`) repairs what no snapshot carries:
rows deleted during the gap.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg2
from psycopg2.extras import Json

from cdc import pgerrors
from cdc.errors import CdcError
from cdc.ops.text import human_bytes
from cdc.slot import SlotReading, lsn_text, read_slot

if TYPE_CHECKING:
    from cdc.connect_api import ConnectClient

log = logging.getLogger("cdc.sync.slot")

CHECK_EVERY = 2.0
_NAME = "cdc sync slot guard"  # its sessions' application_name
REPAIR = (
    "cdc connector resnapshot (Debezium refuses its old position and streams again from the slot as it is), "
    "then cdc verify --fix (or cdc backfill the tables); once cdc verify finds every table equal, cdc sync runs again"
)


class SlotGapError(CdcError):
    """Changes never reached Kafka: the slot was lost, invalidated or recreated."""


def connector_lsn(offsets: dict[str, Any]) -> int | None:
    """The newest source position in the connector's committed offsets (GET /connectors/x/offsets)."""
    found = []
    for entry in offsets.get("offsets", []):
        offset = entry.get("offset") or {}
        found += [v for k, v in offset.items() if k in ("lsn", "lsn_proc", "lsn_commit") and isinstance(v, int)]
    return max(found, default=None)


def recorded_gap(cur: Any, slot: str, scope: str) -> str | None:
    """The gap recorded for this slot and warehouse schema and not repaired yet, in words."""
    cur.execute(
        "SELECT gap_detail FROM cdc.slot_watch WHERE slot_name = %s AND scope = %s AND gap_at IS NOT NULL",
        (slot, scope),
    )
    row = cur.fetchone()
    return None if row is None else str(row[0])


def clear_gap(cur: Any, scope: str) -> int:
    """`cdc verify` found every replicated table of the schema equal: the gaps are repaired."""
    cur.execute(
        "UPDATE cdc.slot_watch SET gap_at = NULL, gap_detail = NULL, repaired_at = now() "
        "WHERE scope = %s AND gap_at IS NOT NULL",
        (scope,),
    )
    return int(cur.rowcount)


class SlotGuard:
    """A daemon thread of `cdc sync`; the loop calls check() and stops on what it raises."""

    def __init__(
        self,
        *,
        source_url: str,
        warehouse_url: str,
        connect_url: str | None,
        connector: str,
        slot: str,
        scope: str,
        retained_limit: int,
        queue_alerts: bool,
        every: float = CHECK_EVERY,
    ) -> None:
        self._source_url, self._warehouse_url = source_url, warehouse_url
        self._connect_url, self._connector = connect_url, connector
        self._slot, self._scope = slot, scope
        self._limit, self._queue_alerts, self._every = retained_limit, queue_alerts, every
        self._gap: SlotGapError | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seen = False  # the slot existed at some reading: its disappearance is a loss
        self._last_failure: str | None = None
        # One HTTP client for the thread's life: making one builds a TLS context (~50 ms of CPU),
        # which every round paid before.
        self._connect: ConnectClient | None = None
        self.on_alert: Callable[[], None] = lambda: None  # an alert was queued: wake the webhook sender
        self.on_reading: Callable[[SlotReading], None] = lambda _: None  # each look (the metrics take it)

    def start(self) -> None:
        """Refuse to start over a gap recorded before; then watch."""
        with self._warehouse() as cur:
            gap = recorded_gap(cur, self._slot, self._scope)
            if gap is not None:
                raise SlotGapError(f"a gap in the changes is recorded and not repaired: {gap}", REPAIR)
            cur.execute("SELECT 1 FROM cdc.slot_watch WHERE slot_name = %s AND scope = %s", (self._slot, self._scope))
            self._seen = cur.fetchone() is not None
        self._thread = threading.Thread(target=self._run, name="cdc-slot-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._connect is not None:
            self._connect.close()
            self._connect = None

    def check(self) -> None:
        if self._gap is not None:
            raise self._gap

    # -- the thread --------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set() and self._gap is None:
            try:
                self._round()
            except Exception as exc:
                # Not a reason to stop the pipeline (Connect restarting, the source down a moment):
                # the next round looks again.
                if isinstance(exc, psycopg2.Error):
                    text = pgerrors.describe(exc)
                else:
                    text = exc.problem if isinstance(exc, CdcError) else f"{exc.__class__.__name__}: {exc}"
                if text != self._last_failure:  # once per kind of failure, not every round
                    log.warning("could not check the replication slot %s: %s", self._slot, text)
                self._last_failure = text
            else:
                self._last_failure = None
            self._stop.wait(self._every)

    def _round(self) -> None:
        conn = pgerrors.connect(self._source_url, "source", _NAME)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                slot = read_slot(cur, self._slot)
        finally:
            conn.close()
        self.on_reading(slot)
        committed = self._committed_lsn() if slot.exists else None  # after the slot: see the module doc
        problem = self._gap_in(slot, committed)
        if problem is not None:
            self._record_gap(problem)
            return
        if slot.exists:
            self._seen = True
            self._note(slot)

    def _gap_in(self, slot: SlotReading, committed: int | None) -> str | None:
        if not slot.exists:
            if not self._seen:
                return None  # not created yet: Debezium makes it when the connector first starts
            return f"the replication slot {self._slot} is gone: changes made since were never captured"
        if slot.wal_status == "lost":
            return f"the replication slot {self._slot} is lost (wal_status lost): WAL it needed was removed"
        if committed is not None and slot.confirmed_flush_lsn is not None and slot.confirmed_flush_lsn > committed:
            return (
                f"the replication slot {self._slot} was recreated: it starts at {lsn_text(slot.confirmed_flush_lsn)}, "
                f"but Debezium had read only up to {lsn_text(committed)}; the changes between never reached Kafka"
            )
        return None

    def _committed_lsn(self) -> int | None:
        if self._connect_url is None:
            return None
        if self._connect is None:
            from cdc.connect_api import ConnectClient

            self._connect = ConnectClient(self._connect_url, timeout=10)
        offsets = self._connect.offsets(self._connector)
        return None if offsets is None else connector_lsn(offsets)

    @contextmanager
    def _warehouse(self) -> Iterator[Any]:
        """A cursor in a transaction of its own connection, committed on leaving without error."""
        conn = pgerrors.connect(self._warehouse_url, "warehouse", _NAME)
        try:
            with conn.cursor() as cur:
                yield cur
            conn.commit()
        finally:
            conn.close()

    def _record_gap(self, problem: str) -> None:
        with self._warehouse() as cur:
            cur.execute(
                "INSERT INTO cdc.slot_watch (slot_name, scope, gap_at, gap_detail) VALUES (%s, %s, now(), %s) "
                "ON CONFLICT (slot_name, scope) DO UPDATE SET gap_at = now(), gap_detail = EXCLUDED.gap_detail "
                "WHERE cdc.slot_watch.gap_at IS NULL RETURNING 1",
                (self._slot, self._scope, problem),
            )
            if cur.fetchone() is not None:  # recorded now, not by another member before: alert once
                self._alert(cur, "slot_gap", problem, REPAIR)
        log.error("%s; stopping. Repair: %s", problem, REPAIR)
        self._gap = SlotGapError(problem + ".", REPAIR)
        self.on_alert()

    def _note(self, slot: SlotReading) -> None:
        above = slot.retained_bytes > self._limit > 0
        with self._warehouse() as cur:
            cur.execute(
                "INSERT INTO cdc.slot_watch (slot_name, scope, confirmed_flush_lsn, retained_bytes) "
                "VALUES (%s, %s, %s, %s) ON CONFLICT (slot_name, scope) DO UPDATE SET "
                "confirmed_flush_lsn = EXCLUDED.confirmed_flush_lsn, retained_bytes = EXCLUDED.retained_bytes, "
                "seen_at = now()",
                (self._slot, self._scope, slot.confirmed_flush_lsn, slot.retained_bytes),
            )
            # A crossing is the row's flag flipping: of several members looking at once, one flips it.
            cur.execute(
                "UPDATE cdc.slot_watch SET retained_above = %s WHERE slot_name = %s AND scope = %s "
                "AND retained_above <> %s RETURNING 1",
                (above, self._slot, self._scope, above),
            )
            crossed_up = above and cur.fetchone() is not None
            if crossed_up:
                problem = (
                    f"the replication slot {self._slot} retains {human_bytes(slot.retained_bytes)} of WAL on the "
                    f"source, above the limit of {human_bytes(self._limit)} (CDC_SLOT_RETAINED_WARN_BYTES)"
                )
                log.warning("%s", problem)
                self._alert(cur, "slot_retained_wal", problem, "get Debezium streaming again (cdc doctor)")
        if crossed_up:
            self.on_alert()

    def _alert(self, cur: Any, kind: str, problem: str, fix: str) -> None:
        if not self._queue_alerts:
            return
        payload = {
            "text": f"cdc: {problem}. Fix: {fix}",
            "kind": kind,
            "slot": self._slot,
            "scope": self._scope,
            "problem": problem,
            "fix": fix,
        }
        cur.execute("INSERT INTO cdc.alert_outbox (payload, scope) VALUES (%s, %s)", (Json(payload), self._scope))
