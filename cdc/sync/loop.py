"""`cdc sync`: consume -> decode -> buffer -> flush, until stopped (or idle, with --until-idle).

Offsets live in the warehouse, written in the same transaction as the rows they cover. On every
partition assignment the consumer seeks to them, so a crash, restart or rebalance replays at most
what was not stored, and the version guard makes the replay harmless.

Flushes are pipelined: one flush at a time runs on a worker thread (psycopg2 releases the GIL while
PostgreSQL works) while the loop reads and decodes the next batch. Flushes still commit strictly
one after the other, each waits for the one before, and once one fails for good nothing after it
is flushed, so stored offsets never pass data that was not stored.

Where each partition stands lives in one Positions object, shared by the rebalance callbacks and
the loop; a record of a partition whose position is not known is never dropped while the
consumer moves on (see cdc/sync/positions.py). A stall detector (cdc/sync/stall.py) stops the
loop with an error when lag stays above zero and nothing is read.
"""

from __future__ import annotations

import fnmatch
import gc
import logging
import math
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential_jitter,
)

from cdc import fastpath
from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage
from cdc.decode.fast import Decoded, FastDecoder
from cdc.errors import CdcError, TransientError
from cdc.events import DDL_TABLE, ChangeEvent, Op, Origin, TableId, new_tuple
from cdc.sync.consume import BATCH, Partition, Record, change_topics, topic_safe
from cdc.sync.positions import Positions
from cdc.sync.slot_guard import SlotGapError
from cdc.sync.stall import StallDetector, StallError
from cdc.warehouse import DeadLetter, Flush, FlushResult, Hold, Warehouse, naming

if TYPE_CHECKING:
    from cdc.sync.metrics import Metrics
    from cdc.sync.slot_guard import SlotGuard

log = logging.getLogger("cdc.sync")

_KEY_CHANGE_GRACE = 2.0  # seconds a flush may wait for the second half of a primary-key change
# A rebalance waits for every member to rejoin, up to their max.poll.interval (300 s by default):
# one that lasts longer than this never ends.
_REBALANCE_LIMIT = 330.0
_DDL_GRACE = 5.0  # seconds a flush may wait for the DDL log to be read as far as it went
_DDL_LOOK_EVERY = 0.25  # seconds between looks at how far another member has stored the DDL log
_GC_YOUNG = 100_000  # allocations between young-generation collections (Python's default: 700)
_RELEASE_EVERY = 1.0  # seconds between looks for a `cdc schema accept` while a table is held (one small query)


class Source(Protocol):
    def poll(self, timeout_ms: int) -> list[Record]: ...
    def seek(self, partition: Partition, offset: int) -> None: ...
    def seek_to_beginning(self, partitions: list[Partition]) -> None: ...
    def assignment(self) -> list[Partition]: ...
    def pause(self, partitions: list[Partition]) -> None: ...
    def resume(self, partitions: list[Partition]) -> None: ...
    def end_offsets(self, partitions: list[Partition]) -> dict[Partition, int] | None: ...
    def partitions_of(self, topic: str) -> list[Partition]: ...
    def has_topics(self) -> bool: ...
    def topics(self) -> list[str]: ...
    def close(self) -> None: ...


SourceFactory = Callable[[Callable[[list[Partition]], None], Callable[[list[Partition]], None]], Source]


@dataclass(frozen=True)
class SyncOptions:
    group: str
    flush_rows: int = 20_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_interval: float = 0.5
    tables: tuple[str, ...] = ()  # schema.table glob patterns; empty = every captured table
    topic_prefix: str = "cdc"
    until_idle: float | None = None
    progress_every: float = 10.0
    retry_max_seconds: float = 0  # 0 = retry transient failures until stopped
    stall_seconds: float = 60.0  # lag above zero and nothing read for this long: stop with an error


@dataclass
class SyncStats:
    events: int = 0
    rows: int = 0
    skipped: int = 0  # events the warehouse already held (replays), so written as no row
    dead: int = 0
    schema_changes: int = 0
    flushes: int = 0
    started: float = field(default_factory=time.monotonic)
    stored_partitions: int = 0  # partitions whose read position the warehouse holds at the end
    unstored_partitions: int = 0  # partitions read further than the warehouse holds (read again next time)


class Sync:
    def __init__(self, options: SyncOptions, warehouse: Warehouse, source_factory: SourceFactory) -> None:
        self.options = options
        self.warehouse = warehouse
        self.stats = SyncStats()
        self._decoder = EnvelopeDecoder()
        self._buffer = Buffer()
        self._dead: list[DeadLetter] = []
        self._positions = Positions()
        self._announce = False  # an assignment arrived: say so once its partitions are positioned
        self._stall = StallDetector(options.stall_seconds)
        self._rebalance_began: float | None = None  # partitions revoked, the next assignment not seen yet
        self._stop = threading.Event()
        self._first_buffered: float | None = None
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-flush")
        self._in_flight: tuple[Future[Any], dict[Partition, int]] | None = None
        self._broken: BaseException | None = None  # a flush that failed for good: none may follow it
        self._wanted: dict[TableId, bool] = {}
        # Partitions of tables their schema policy holds: paused, positioned at the first change not applied.
        self._held: dict[Partition, TableId] = {}
        self.on_schema_change: Callable[[], None] = lambda: None  # a flush recorded schema changes
        self.metrics: Metrics | None = None  # --metrics-port
        self.guard: SlotGuard | None = None  # the replication slot's, when the source is known
        # Schema drift reads the source's DDL log to tell a rename from a drop and an add: a batch
        # with a new schema waits (briefly) until this member has read that log as far as it goes.
        self._schemas: dict[TableId, Any] = {}  # each table's newest event schema
        self._ddl_due = False  # a new schema was read: note where the DDL log ends
        self._ddl_until: dict[Partition, int] = {}  # read the DDL log up to here before flushing
        self._ddl_since = 0.0
        self._ddl_looked = 0.0  # when the warehouse was last asked how far another member stored the DDL log
        self._ddl_known: list[Partition] = []  # the DDL log's partitions
        self._ddl_asked = -math.inf
        self._ddl_topic = f"{options.topic_prefix}.{DDL_TABLE}"
        self._source_factory = source_factory
        self._source: Source  # connected by run(), retried like any other transient failure
        extension, self._path = fastpath.chosen()
        self._fast = (
            FastDecoder(self._decoder, extension, frozenset({self._ddl_topic})) if extension is not None else None
        )

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> SyncStats:
        log.info("%s", self._path)
        try:
            self._connect()
        except TransientError as exc:
            if not self._stop.is_set():
                raise
            log.info("stopped while connecting (%s); nothing was read", exc.problem)
            self._flusher.shutdown(wait=True)
            return self.stats
        try:
            with collect_rarely():
                self._loop()
        except (StallError, SlotGapError):
            self._final_flush()  # what was read is good: store it before stopping
            raise
        finally:
            # A flush in flight ends first, and what is stored is counted before the consumer
            # closes: confluent-kafka's close revokes the assignment, which forgets the positions.
            self._flusher.shutdown(wait=True)
            self.stats.stored_partitions = len(self._positions.stored)
            self.stats.unstored_partitions = len(self._positions.moved())
            self._source.close()
            if self._fast is not None:
                log.info(
                    "the compiled fast path decoded %d messages; the Python decoder the others",
                    self._fast.decoded,
                )
        return self.stats

    def _connect(self) -> None:
        """The warehouse first (a wrong password ends the command before it joins the group), then
        Kafka; both retried while their failures are transient."""
        self._retrying(self.warehouse.prepare, "connecting to the warehouse")
        if self.guard is not None:
            # After the warehouse's bootstrap made cdc.slot_watch; a gap recorded before ends it here.
            self._retrying(self.guard.start, "reading the replication slot's record")
        self._source = self._retrying(
            lambda: self._source_factory(self._on_revoked, self._on_assigned), "connecting to Kafka"
        )
        topics = self._source.topics()
        if self.options.tables:
            self._warn_unmatched(topics)
        self._check_names(topics)
        ddl_log = self._ddl_topic
        if ddl_log not in topics:
            log.warning(
                "the source's DDL capture is not installed (no topic %s): schema changes are detected from "
                "event schemas alone, so a renamed column shows as dropped and added, and table-level changes "
                "and defaults go unseen. Fix: cdc schema install (as a superuser), then cdc connector apply",
                ddl_log,
            )

    def _check_names(self, topics: list[str]) -> None:
        """Two tables to be replicated into one warehouse table stop sync before it reads anything.
        Checked here from the topics, and again from each table's first event (its exact name)."""
        tables = [
            table
            for table in (naming.table_of_topic(t, self.options.topic_prefix) for t in topics)
            if table is not None and self._table_wanted(table)
        ]
        self._retrying(lambda: self.warehouse.check_names(tables), "checking warehouse table names")

    def _warn_unmatched(self, topics: list[str]) -> None:
        """A --table pattern that matches no change topic is most likely a typo: say so, and list
        what is captured. Sync goes on: a table created later may still match."""
        prefix = self.options.topic_prefix
        topics = [t for t in topics if t != self._ddl_topic]  # read whatever the patterns: no match
        every = re.compile(change_topics(prefix))
        captured = sorted(t.removeprefix(prefix + ".") for t in topics if every.match(t))
        for pattern in self.options.tables:
            regex = re.compile(change_topics(prefix, (pattern,)))
            if not any(regex.match(topic) for topic in topics):
                shown = ", ".join(captured[:20]) + (f" and {len(captured) - 20} more" if len(captured) > 20 else "")
                log.warning(
                    "--table %r matches no captured table: no topic %s.<schema>.<table> that cdc may read matches "
                    "it (Kafka hides the topics an ACL denies); captured: %s",
                    pattern,
                    prefix,
                    shown or f"nothing yet under prefix {prefix!r} (run cdc connector apply; check CDC_TOPIC_PREFIX)",
                )

    def _loop(self) -> None:
        last_record = last_progress = last_check = last_release = time.monotonic()
        last_events = 0
        check_every = min(5.0, self.options.stall_seconds / 4)
        while not self._stop.is_set():
            self._position_waiting()
            records = self._source.poll(timeout_ms=100)
            now = time.monotonic()
            self._stall.tick(now, busy=len(records) >= BATCH)
            if records:
                last_record = now
                self._take(records)
            try:
                if self._in_flight is not None and self._in_flight[0].done():
                    self._await_flush()  # a failure surfaces now, not when the next flush is due
                if self._due(now, idle=not records):
                    self._flush(wait=False)
            except TransientError:
                if not self._stop.is_set():
                    raise
                break  # stopping while the warehouse fails: _final_flush says what was not stored
            if now - last_check >= check_every:
                last_check = now
                self._checks()
            if self._held and now - last_release >= _RELEASE_EVERY:
                last_release = now
                self._release_accepted()
            if now - last_progress >= self.options.progress_every:
                self._progress(now - last_progress, self.stats.events - last_events)
                last_progress, last_events = now, self.stats.events
            if self.options.until_idle is not None and now - last_record >= self.options.until_idle:
                self._flush()
                if self._caught_up():
                    log.info("idle for %.1fs and caught up: exiting", self.options.until_idle)
                    break
                last_record = now  # not caught up yet: wait another idle period
        self._final_flush()

    def _final_flush(self) -> None:
        try:
            self._flush()
        except TransientError as exc:
            if not self._stop.is_set():
                raise
            log.warning(
                "stopped before %d buffered events were stored (%s); they are read again on the next start",
                len(self._buffer),
                exc.problem,
            )

    # -- consuming ---------------------------------------------------------------------------
    def _take(self, records: list[Record]) -> None:
        take = self._positions.take
        # Decoded by the compiled fast path where it can; None: the Python decoder's.
        fast = self._fast
        ready = fast.decode(records) if fast is not None else None
        # Per record, so the attribute lookups are taken once per poll.
        ddl_topic, wanted, schemas, add = self._ddl_topic, self._wanted, self._schemas, self._buffer.add
        counted = taken = 0
        kept: list[int] = []  # records taken whose messages the extension keeps, not given to the buffer yet
        for i, record in enumerate(records):
            topic = record.topic
            if not take((topic, record.partition), record.offset):
                continue  # read again after a seek, or fetched before its position was known
            taken += 1
            if topic != ddl_topic:  # the DDL log is bookkeeping, not the tables' events
                counted += 1
            event = ready[i] if ready is not None else None
            if event is not None and event.__class__ is not ChangeEvent:
                kept.append(i)  # in its FastRun: the buffer takes the run's messages at once
                continue
            if event is None:
                if record.value is None:
                    continue  # a tombstone, for log compaction only: the decoder would say None too
                event = self._decode(records, i, ready)
                if event is None:
                    continue
            if kept:
                self._take_kept(kept)  # the buffer sees each table's changes in order
                kept = []
            table = event.table
            if not (wanted.get(table) or self._table_wanted(table) or self._ddl_wanted(event)):
                continue
            if (
                event.schema is not schemas.get(table)
                and table != DDL_TABLE
                and event.op is not Op.TRUNCATE  # a truncate has no key, so a schema of its own
            ):
                schemas[table] = event.schema
                self._ddl_due = True
            add(event)
        if kept:
            self._take_kept(kept)
        self.stats.events += counted
        if taken:
            self._mark_buffered()  # dead letters and skipped messages count: their offsets are stored too
        self._report_positions()

    def _decode(self, records: list[Record], i: int, ready: list[Decoded] | None) -> ChangeEvent | None:
        """The Python decoder's event for records[i] (None: no row change, or a dead letter)."""
        record = records[i]
        origin = new_tuple(Origin, record[:3])  # (topic, partition, offset), without NamedTuple's __new__
        try:
            event = self._decoder.decode(origin, record.key, record.value, record.headers)
        except PoisonMessage as exc:
            if self._topic_wanted(record.topic):
                self._dead.append(DeadLetter(origin, record.key, record.value, str(exc)))
            return None
        fast = self._fast
        if fast is not None and ready is not None and record.topic in fast.pending:
            fast.learned(record.topic, records, i, ready)  # it may have taught the decoder a new shape
        return event

    def _take_kept(self, kept: list[int]) -> None:
        """The buffer takes the messages the extension keeps among these records (the loop's
        filters and schema check, per run: a run is one table and one schema)."""
        fast = self._fast
        if fast is None:
            return
        schemas = self._schemas
        for run in fast.runs:
            picked = run.pick(kept)
            if not picked:
                continue
            table = run.table
            if not (self._wanted.get(table) or self._table_wanted(table)):
                continue
            if run.schema is not schemas.get(table):
                schemas[table] = run.schema
                self._ddl_due = True
            self._buffer.add_run(run, picked)

    def _report_positions(self) -> None:
        """Say what the poll found out about positions: a partition gone back, records of a
        partition not positioned yet (positioned now)."""
        if self._positions.rewound:
            for (topic, number), (offset, expected) in sorted(self._positions.rewound.items()):
                log.warning(
                    "%s[%d] went back to offset %d, behind %d already read: was the topic deleted and "
                    "made again, or its log cut back? Offsets below %d are not read again",
                    topic,
                    number,
                    offset,
                    expected,
                    expected,
                )
            self._positions.rewound.clear()
        if self._positions.strays:
            for topic, number in sorted(self._positions.strays):
                log.warning(
                    "records of %s[%d] arrived before its position was known: positioning it from the "
                    "warehouse and reading them again",
                    topic,
                    number,
                )
            self._position_waiting()

    def _mark_buffered(self) -> None:
        if self._first_buffered is None:
            self._first_buffered = time.monotonic()

    def _table_wanted(self, table: TableId) -> bool:
        wanted = self._wanted.get(table)
        if wanted is None:
            patterns = self.options.tables
            wanted = not patterns or any(fnmatch.fnmatchcase(str(table), p) for p in patterns)
            self._wanted[table] = wanted
        return wanted

    def _ddl_wanted(self, event: ChangeEvent) -> bool:
        """A row of the source's DDL log about a table this sync replicates (under its name
        before or after the command)."""
        if event.table != DDL_TABLE:
            return False
        row = event.after or {}
        names = ((row.get("schema_name"), row.get("table_name")), (row.get("schema_before"), row.get("table_before")))
        return any(self._table_wanted(TableId(str(s), str(t))) for s, t in names if s and t)

    def _topic_wanted(self, topic: str) -> bool:
        """For a message that cannot be decoded (so names no table): is its topic one of the tables
        asked for? Topic names replace odd characters with '_', so this errs towards yes."""
        patterns = self.options.tables
        if not patterns:
            return True
        name = topic.split(".", 1)[1] if "." in topic else topic
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, topic_safe(p)) for p in patterns)

    def _due(self, now: float, *, idle: bool = False) -> bool:
        if self._first_buffered is None:
            return False
        if self._awaiting_ddl(now):
            return False
        age = now - self._first_buffered
        if self._buffer.open_moves and age < self.options.flush_interval + _KEY_CHANGE_GRACE:
            # Half a primary-key change is buffered: its create follows within milliseconds, and
            # applied together the old key's row is still there to fill unchanged TOAST values from.
            return False
        return (
            # A poll that found nothing: waiting out the interval would batch nothing more, only
            # delay what is buffered (unless a flush is still in flight: then the next one waits).
            (idle and self._in_flight is None)
            or len(self._buffer) >= self.options.flush_rows
            or self._buffer.bytes >= self.options.flush_bytes
            or age >= self.options.flush_interval
        )

    def _awaiting_ddl(self, now: float) -> bool:
        """Whether the DDL log is still to be read up to where it ended when a new schema was read:
        by this member (its partitions assigned here), or stored in the warehouse by the member
        that reads it. Bounded: Debezium writes a DDL before the rows after it, so it is there at
        once or not at all (DDL capture not installed, the member that reads it stopped)."""
        if self._ddl_due:
            self._ddl_due = False
            partitions = self._ddl_partitions(now)
            ends = self._source.end_offsets(partitions) if partitions else None
            until = {p: end for p, end in (ends or {}).items() if end > 0}
            if not self._ddl_until:  # a wait under way keeps its start: new schemas never make it longer
                self._ddl_since = now
                self._ddl_looked = 0.0
            self._ddl_until = until
        if not self._ddl_until:
            return False
        if now - self._ddl_since > _DDL_GRACE:
            self._ddl_until = {}
            return False
        mine = set(self._source.assignment())
        nexts = self._positions.next
        behind = {p: end for p, end in self._ddl_until.items() if p not in mine or nexts.get(p, 0) < end}
        others = [p for p in behind if p not in mine]
        if others and now - self._ddl_looked >= _DDL_LOOK_EVERY:
            self._ddl_looked = now
            self._await_flush()  # one warehouse connection: the flush in flight owns it until it commits
            stored = self._retrying(
                lambda: self.warehouse.stored_offsets(self.options.group, others), "reading stored offsets"
            )
            behind = {p: end for p, end in behind.items() if p in mine or stored.get(p, 0) < end}
        self._ddl_until = behind
        return bool(behind)

    def _ddl_partitions(self, now: float) -> list[Partition]:
        """The DDL log's partitions, asked of Kafka once (again at most every 30 s while it has none)."""
        if not self._ddl_known and now - self._ddl_asked >= 30.0:
            self._ddl_asked = now
            self._ddl_known = self._source.partitions_of(self._ddl_topic)
        return self._ddl_known

    # -- flushing ----------------------------------------------------------------------------
    def _flush(self, *, give_up_after: float | None = None, wait: bool = True) -> None:
        """Hand the buffer to the flush worker (after the flush before it has committed), and
        with wait, until it has committed too."""
        self._await_flush()
        if self._broken is not None:
            raise self._broken
        moved = self._positions.moved()
        if not self._buffer.tables and not self._buffer.sealed and not self._dead and not moved:
            self._first_buffered = None
            return
        flush = Flush(self._buffer.batches(), moved, self._dead)
        events = len(self._buffer)
        self._buffer = Buffer()
        self._dead = []
        self._first_buffered = None
        future = self._flusher.submit(self._retrying, lambda: self._apply(flush, events), "flush", give_up_after)
        self._in_flight = (future, moved)
        if wait:
            self._await_flush()

    def _apply(self, flush: Flush, events: int) -> FlushResult:
        started = time.monotonic()
        result = self.warehouse.apply(flush)
        if self.metrics is not None:
            self.metrics.flushed(result, time.monotonic() - started, events)
        return result

    def _await_flush(self) -> None:
        """Wait for the flush in flight; its failure is raised here (and the flushed buffer is
        gone: nothing later may be flushed, the stored offsets say where to read again)."""
        if self._in_flight is None:
            return
        future, moved = self._in_flight
        self._in_flight = None
        try:
            result = future.result()
        except BaseException as exc:
            self._broken = exc
            raise
        self._positions.committed(moved)
        if result.held:
            self._hold(result.held)
        if result.schema_changes:
            self.stats.schema_changes += result.schema_changes
            self.on_schema_change()
        self.stats.rows += result.rows
        self.stats.skipped += result.skipped
        self.stats.dead += result.dead
        self.stats.flushes += 1

    def _retrying(self, action: Callable[[], Any], what: str, give_up_after: float | None = None) -> Any:
        limit = give_up_after if give_up_after is not None else self.options.retry_max_seconds
        stop = stop_after_delay(limit) if limit else stop_never
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential_jitter(initial=0.5, max=30, jitter=1),
            stop=stop | stop_when_event_set(self._stop),
            sleep=self._wait,  # a stop asked for during a wait ends it at once
            before_sleep=_log_retry(what, self.metrics),
            reraise=True,
        ):
            with attempt:
                return action()
        raise AssertionError("unreachable")  # Retrying either returns, or re-raises the last error

    def _wait(self, seconds: float) -> None:
        self._stop.wait(seconds)

    # -- tables held by their schema policy ---------------------------------------------------
    def _hold(self, held: dict[Partition, Hold]) -> None:
        """Stop reading the partitions of held tables, from their first change not applied; what
        of them was read meanwhile is forgotten (it is read again once the change is accepted)."""
        tables = {hold.table for hold in held.values()}
        starts = {p: (hold.offset, hold.table) for p, hold in held.items()}
        for partition, (offset, table) in self._buffer.drop_tables(tables).items():
            if partition not in starts or offset < starts[partition][0]:
                starts[partition] = (offset, table)
        assigned = set(self._source.assignment())
        for partition, (offset, table) in sorted(starts.items()):
            if partition not in assigned:
                continue  # another member has it now, and finds the table held
            self._source.seek(partition, offset)
            # The warehouse stored exactly this offset for a partition the flush held.
            self._positions.positioned(partition, offset, stored=partition in held)
            self._held[partition] = table
        self._source.pause(sorted(p for p in self._held if p in assigned))
        for table in sorted(tables):
            log.warning(
                "%s is held by its schema policy (halt): its changes wait in Kafka, the other tables go on; "
                "cdc schema accept %s applies the change and resumes it",
                table,
                table,
            )

    def _release_accepted(self) -> None:
        """Resume the partitions of held tables whose change `cdc schema accept` let through."""
        if not self._held:
            return
        self._await_flush()  # one warehouse connection: the flush in flight owns it until it commits
        tables = sorted(set(self._held.values()))
        still = self._retrying(lambda: self.warehouse.held_tables(tables), "reading held tables")
        released = sorted(p for p, t in self._held.items() if t not in still)
        if not released:
            return
        for table in sorted({self._held[p] for p in released}):
            log.info("%s: its schema change was accepted; applying it and resuming", table)
        for partition in released:
            del self._held[partition]
        self._source.resume(released)

    # -- rebalancing -------------------------------------------------------------------------
    def _on_revoked(self, partitions: list[Partition]) -> None:
        """Store what was read from the partitions before another member takes them over."""
        try:
            self._flush(give_up_after=30)
        except Exception as exc:  # the new owner replays from the stored offsets: nothing is lost
            log.warning("could not flush before a rebalance (%s); discarding the buffer", exc)
            self._buffer = Buffer()
            self._dead = []
            self._first_buffered = None
            # Eager rebalancing: every partition this member gets next is positioned afresh from
            # the warehouse, so reading may go on.
            self._broken = None
        self._positions.revoked(partitions)
        for partition in partitions:
            self._held.pop(partition, None)
        self._stall.forget()
        if self._rebalance_began is None:
            self._rebalance_began = time.monotonic()

    def _on_assigned(self, partitions: list[Partition]) -> None:
        self._rebalance_began = None
        self._positions.assigned(partitions)
        self._announce = True
        try:
            self._position_waiting()
        except Exception as exc:  # kafka-python swallows listener errors: position again from run()
            log.warning("could not read stored offsets on assignment (%s); will retry", exc)

    def _position_waiting(self) -> None:
        """Seek every partition waiting to be positioned: to its own next offset if it has one,
        else to the offset the warehouse stores, else to the beginning."""
        positions = self._positions
        if not positions.waiting:
            return
        self._await_flush()  # one warehouse connection: the flush in flight owns it until it commits
        assigned = set(self._source.assignment())
        waiting = sorted(positions.waiting & assigned)
        positions.forget_waiting(positions.waiting - assigned)
        unknown = [p for p in waiting if p not in positions.next]
        stored = (
            self._retrying(lambda: self.warehouse.stored_offsets(self.options.group, unknown), "reading stored offsets")
            if unknown
            else {}
        )
        fresh = [p for p in unknown if p not in stored]
        for partition in waiting:
            if partition in stored:
                self._source.seek(partition, stored[partition])
                positions.positioned(partition, stored[partition], stored=True)
            elif partition not in fresh:
                self._source.seek(partition, positions.next[partition])
                positions.positioned(partition, positions.next[partition], stored=False)
        self._source.seek_to_beginning(fresh)
        for partition in fresh:
            positions.positioned(partition, 0, stored=False)
        if self._announce and not positions.waiting:
            self._announce = False
            log.info("assigned %d partitions (%d resume from stored offsets)", len(assigned), len(stored))
            if any(topic == self._ddl_topic for topic, _ in assigned):
                # The other members wait for it to store the DDL log before they apply a new shape.
                log.info("this member reads the source's DDL log (%s)", self._ddl_topic)

    def _caught_up(self) -> bool:
        return not self._positions.waiting and self._lag() == 0

    def _lag(self) -> int | None:
        """Messages behind the end of the assigned partitions (None: unknown, Kafka did not answer
        or the group has not handed this member its partitions yet)."""
        assigned = self._source.assignment()
        if not assigned:
            return None if self._source.has_topics() else 0
        ends = self._source.end_offsets(assigned)
        if ends is None:
            return None
        nexts = self._positions.next
        return sum(max(0, end - nexts.get(p, 0)) for p, end in ends.items() if p not in self._held)

    def _checks(self) -> None:
        if self.guard is not None:
            self.guard.check()  # a gap in the changes: stop (what was read is flushed first)
        self._check_stall()
        if self.metrics is not None:
            self._sample_lag(self.metrics)

    def _sample_lag(self, metrics: Metrics) -> None:
        assigned = self._source.assignment()
        ends = self._source.end_offsets(assigned) if assigned else None
        if ends:
            nexts = self._positions.next
            metrics.consumer_lags({p: max(0, end - nexts.get(p, end)) for p, end in ends.items()})

    def _check_stall(self) -> None:
        limit = self.options.stall_seconds
        if self._rebalance_began is not None:
            # Positions are unknown until the assignment: not a stall, unless it never comes.
            began = time.monotonic() - self._rebalance_began
            if began >= max(limit, _REBALANCE_LIMIT):
                raise StallError(
                    f"a rebalance began {began:.0f}s ago (partitions revoked) and no assignment followed.",
                    "cdc sync stopped so that it can be restarted and join the group afresh; it resumes "
                    "from the offsets the warehouse stores",
                )
            return
        assigned = self._source.assignment()
        if not assigned:
            # An idle member of a group with more members than partitions is fine when running
            # for good; --until-idle must not wait forever for partitions that never come.
            waiting = self.options.until_idle is not None and self._source.has_topics()
            if waiting and self._stall.unassigned_for() >= limit:
                raise StallError(
                    f"no partition was assigned to this member for {limit:.0f}s, though topics match.",
                    "another member of the group holds them all, or the group cannot finish a "
                    "rebalance; restart cdc sync",
                )
            return
        reading = [p for p in assigned if p not in self._held]  # held ones are paused on purpose
        if not reading:
            return
        ends = self._source.end_offsets(reading)
        if ends is None:
            return  # Kafka did not answer: its client retries; not this member's stall
        stalled = self._stall.check(ends, self._positions.next, self._positions.stored)
        if stalled:
            detail = "; ".join(s.describe() for s in stalled)
            log.error("stalled: nothing read for %.0fs from partitions with unread messages: %s", limit, detail)
            raise StallError(
                f"nothing was read for {limit:.0f}s from {len(stalled)} partition(s) with unread messages: {detail}.",
                "cdc sync stopped so that it can be restarted; it resumes from the offsets the warehouse "
                "stores, nothing is lost (CDC_STALL_SECONDS sets the limit)",
            )

    def _progress(self, seconds: float, events: int) -> None:
        lag = self._lag()
        log.info(
            "%.0f events/s, lag %s, %d events, %d rows written, %d already applied, %d dead letters, %d flushes%s",
            events / seconds if seconds else 0.0,
            "unknown" if lag is None else lag,
            self.stats.events,
            self.stats.rows,
            self.stats.skipped,
            self.stats.dead,
            self.stats.flushes,
            f", {len(set(self._held.values()))} table(s) held by schema policy" if self._held else "",
            extra={"events_per_s": events / seconds if seconds else 0.0, "lag": lag},
        )


def _log_retry(what: str, metrics: Metrics | None) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        if metrics is not None:
            metrics.retried(what)
        error = state.outcome.exception() if state.outcome else None
        cause = error.problem if isinstance(error, CdcError) else error
        delay = state.next_action.sleep if state.next_action else 0
        log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, state.attempt_number, cause, delay)

    return before_sleep


@contextmanager
def collect_rarely() -> Iterator[None]:
    """Every message makes a few objects that live until its flush: at Python's default thresholds
    the cyclic collector ran every few hundred messages and walked the whole buffer again and
    again (measured: the fast path's decoding took twice as long). The loop makes no cycles worth
    collecting often; what start-up made is frozen (never walked again)."""
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(_GC_YOUNG, *thresholds[1:])
    try:
        yield
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()


@contextmanager
def stop_on_signals(sync: Sync) -> Iterator[None]:
    """SIGINT/SIGTERM ask the loop to stop; the flush under way commits or rolls back whole."""
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum: int, _frame: object) -> None:
        log.info("received %s: finishing the current flush and stopping", signal.Signals(signum).name)
        sync.stop()

    for sig in previous:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
