"""`cdc sync`: consume -> decode -> buffer -> flush, until stopped (or idle, with --until-idle).

Offsets live in the warehouse, written in the same transaction as the rows they cover. On every
partition assignment the consumer seeks to them, so a crash, restart or rebalance replays at most
what was not stored, and the version guard makes the replay harmless.

Flushes are pipelined: one flush at a time runs on a worker thread (psycopg2 releases the GIL while
PostgreSQL works) while the loop reads and decodes the next batch. Flushes still commit strictly
one after the other, each waits for the one before, and once one fails for good nothing after it
is flushed, so stored offsets never pass data that was not stored.
"""

from __future__ import annotations

import fnmatch
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_delay,
    stop_never,
    stop_when_event_set,
    wait_exponential_jitter,
)

from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage
from cdc.errors import TransientError
from cdc.events import Origin, TableId, new_tuple
from cdc.sync.consume import Partition, Record, topic_safe
from cdc.warehouse import DeadLetter, Flush, Warehouse

log = logging.getLogger("cdc.sync")

_KEY_CHANGE_GRACE = 2.0  # seconds a flush may wait for the second half of a primary-key change


class Source(Protocol):
    def poll(self, timeout_ms: int) -> list[Record]: ...
    def seek(self, partition: Partition, offset: int) -> None: ...
    def seek_to_beginning(self, partitions: list[Partition]) -> None: ...
    def assignment(self) -> list[Partition]: ...
    def lag(self, positions: dict[Partition, int]) -> int | None: ...
    def close(self) -> None: ...


SourceFactory = Callable[[Callable[[list[Partition]], None], Callable[[list[Partition]], None]], Source]


@dataclass(frozen=True)
class SyncOptions:
    group: str
    flush_rows: int = 20_000
    flush_bytes: int = 64 * 1024 * 1024
    flush_interval: float = 0.5
    tables: tuple[str, ...] = ()  # schema.table glob patterns; empty = every captured table
    until_idle: float | None = None
    progress_every: float = 10.0
    retry_max_seconds: float = 0  # 0 = retry transient failures until stopped


@dataclass
class SyncStats:
    events: int = 0
    rows: int = 0
    dead: int = 0
    flushes: int = 0
    started: float = field(default_factory=time.monotonic)


class Sync:
    def __init__(self, options: SyncOptions, warehouse: Warehouse, source_factory: SourceFactory) -> None:
        self.options = options
        self.warehouse = warehouse
        self.stats = SyncStats()
        self._decoder = EnvelopeDecoder()
        self._buffer = Buffer()
        self._dead: list[DeadLetter] = []
        self._positions: dict[Partition, int] = {}  # next offset to read, per assigned partition
        self._stored: dict[Partition, int] = {}  # what the warehouse holds
        self._unseeded: list[Partition] = []  # assigned, but not yet positioned from the warehouse
        self._stop = threading.Event()
        self._first_buffered: float | None = None
        self._flusher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdc-flush")
        self._in_flight: tuple[Future[Any], dict[Partition, int]] | None = None
        self._broken: BaseException | None = None  # a flush that failed for good: none may follow it
        self._wanted: dict[TableId, bool] = {}
        self._source = source_factory(self._on_revoked, self._on_assigned)

    # -- lifecycle ---------------------------------------------------------------------------
    def stop(self) -> None:
        self._stop.set()

    def run(self) -> SyncStats:
        last_record = time.monotonic()
        last_progress = time.monotonic()
        last_events = 0
        try:
            while not self._stop.is_set():
                self._seed_unseeded()
                records = self._source.poll(timeout_ms=100)
                now = time.monotonic()
                if records:
                    last_record = now
                    self._take(records)
                if self._due(now):
                    try:
                        self._flush(wait=False)
                    except TransientError:
                        if not self._stop.is_set():
                            raise
                        break  # stopping while the warehouse fails: _final_flush says what was not stored
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
        finally:
            self._source.close()
            self._flusher.shutdown(wait=True)
        return self.stats

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
        unseeded = set(self._unseeded)
        for record in records:
            partition = (record.topic, record.partition)
            if partition in unseeded or partition not in self._positions:
                continue  # fetched before the warehouse positioned it: it will be read again
            self._positions[partition] = record.offset + 1
            self.stats.events += 1
            origin = new_tuple(Origin, record[:3])  # (topic, partition, offset), without NamedTuple's __new__
            try:
                event = self._decoder.decode(origin, record.key, record.value, record.headers)
            except PoisonMessage as exc:
                if self._topic_wanted(record.topic):
                    self._dead.append(DeadLetter(origin, record.key, record.value, str(exc)))
                self._mark_buffered()
                continue
            if event is None or not self._table_wanted(event.table):
                self._mark_buffered()
                continue
            self._buffer.add(event)
            self._mark_buffered()

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

    def _topic_wanted(self, topic: str) -> bool:
        """For a message that cannot be decoded (so names no table): is its topic one of the tables
        asked for? Topic names replace odd characters with '_', so this errs towards yes."""
        patterns = self.options.tables
        if not patterns:
            return True
        name = topic.split(".", 1)[1] if "." in topic else topic
        return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(name, topic_safe(p)) for p in patterns)

    def _due(self, now: float) -> bool:
        if self._first_buffered is None:
            return False
        age = now - self._first_buffered
        if self._buffer.open_moves and age < self.options.flush_interval + _KEY_CHANGE_GRACE:
            # Half a primary-key change is buffered: its create follows within milliseconds, and
            # applied together the old key's row is still there to fill unchanged TOAST values from.
            return False
        return (
            len(self._buffer) >= self.options.flush_rows
            or self._buffer.bytes >= self.options.flush_bytes
            or age >= self.options.flush_interval
        )

    # -- flushing ----------------------------------------------------------------------------
    def _flush(self, *, give_up_after: float | None = None, wait: bool = True) -> None:
        """Hand the buffer to the flush worker (after the flush before it has committed), and
        with wait, until it has committed too."""
        self._await_flush()
        if self._broken is not None:
            raise self._broken
        moved = {p: o for p, o in self._positions.items() if self._stored.get(p) != o}
        if not self._buffer.tables and not self._dead and not moved:
            self._first_buffered = None
            return
        flush = Flush(list(self._buffer.tables.values()), moved, self._dead)
        self._buffer = Buffer()
        self._dead = []
        self._first_buffered = None
        future = self._flusher.submit(self._retrying, lambda: self.warehouse.apply(flush), "flush", give_up_after)
        self._in_flight = (future, moved)
        if wait:
            self._await_flush()

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
        self._stored.update(moved)
        self.stats.rows += result.rows
        self.stats.dead += result.dead
        self.stats.flushes += 1

    def _retrying(self, action: Callable[[], Any], what: str, give_up_after: float | None = None) -> Any:
        limit = give_up_after if give_up_after is not None else self.options.retry_max_seconds
        stop = stop_after_delay(limit) if limit else stop_never
        for attempt in Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_exponential_jitter(initial=0.5, max=30, jitter=1),
            stop=stop | stop_when_event_set(self._stop),
            before_sleep=_log_retry(what),
            reraise=True,
        ):
            with attempt:
                return action()
        raise AssertionError("unreachable")  # Retrying either returns, or re-raises the last error

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
        for partition in partitions:
            self._positions.pop(partition, None)
            self._stored.pop(partition, None)

    def _on_assigned(self, partitions: list[Partition]) -> None:
        self._unseeded = sorted(set(self._unseeded) | set(partitions))
        try:
            self._seed_unseeded()
        except Exception as exc:  # kafka-python swallows listener errors: seed again from run()
            log.warning("could not read stored offsets on assignment (%s); will retry", exc)

    def _seed_unseeded(self) -> None:
        if not self._unseeded:
            return
        self._await_flush()  # one warehouse connection: the flush in flight owns it until it commits
        partitions = [p for p in self._unseeded if p in set(self._source.assignment())]
        stored = self._retrying(
            lambda: self.warehouse.stored_offsets(self.options.group, partitions), "reading stored offsets"
        )
        fresh = [p for p in partitions if p not in stored]
        for partition, offset in stored.items():
            self._source.seek(partition, offset)
        self._source.seek_to_beginning(fresh)
        self._stored.update(stored)
        for partition in partitions:
            self._positions[partition] = stored.get(partition, 0)
        self._unseeded = []
        if partitions:
            log.info("assigned %d partitions (%d resume from stored offsets)", len(partitions), len(stored))

    def _caught_up(self) -> bool:
        return not self._unseeded and self._source.lag(self._positions) == 0

    def _progress(self, seconds: float, events: int) -> None:
        lag = self._source.lag(self._positions)
        log.info(
            "%.0f events/s, lag %s, %d events, %d rows written, %d dead letters, %d flushes",
            events / seconds if seconds else 0.0,
            "unknown" if lag is None else lag,
            self.stats.events,
            self.stats.rows,
            self.stats.dead,
            self.stats.flushes,
            extra={"events_per_s": events / seconds if seconds else 0.0, "lag": lag},
        )


def _log_retry(what: str) -> Callable[[RetryCallState], None]:
    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        delay = state.next_action.sleep if state.next_action else 0
        log.warning("%s failed (attempt %d): %s; retrying in %.1fs", what, state.attempt_number, error, delay)

    return before_sleep


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
