"""Runs of Kafka messages -> ChangeEvents through the compiled fast path (cdc/fastpath.py).

Per topic, the messages of a poll that share the shape the Python decoder last saw on it (value and
key schema prefix, table) go to the extension in one call, which decodes them with the GIL
released. The messages it decodes stay in the extension, in a FastRun (their staging columns as
COPY text, versions, ops, keys; no Python object each), which the poll's list holds in each one's
place; the buffer takes them from there (Buffer.add_run) and makes them ChangeEvents only if a
stage needs events. Whatever it leaves (a new shape, a
placeholder, a tombstone, a truncate, anything unusual or malformed) is decoded by the Python
decoder in its place, in message order: the Python path stays the one that decides what is poison
and why, and the one schema drift sees first.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from cdc.decode.envelope import NEW_KEY_HEADER, EnvelopeDecoder, PoisonMessage, Route, read_header
from cdc.events import DDL_TABLE, ChangeEvent, Op, Origin, TableSchema, Version, new_tuple
from cdc.fastpath import Extension, FastRun, Kinds, kinds_of

if TYPE_CHECKING:
    from cdc.buffer import Buffer
    from cdc.sync.consume import Record

Decoded = ChangeEvent | FastRun | None  # per record: an event, kept in a run, or the Python decoder's

_OPS = {op.value: op for op in Op}
# Below this many messages of one topic in a poll, the call's fixed cost outweighs its gain.
MIN_RUN = 4


class FastDecoder:
    def __init__(
        self,
        decoder: EnvelopeDecoder,
        extension: Extension,
        skip_topics: frozenset[str] = frozenset(),
        min_run: int = MIN_RUN,
    ):
        self._decoder = decoder
        self._min_run = min_run
        self._extension = extension
        self._skip = skip_topics  # topics whose events a later stage reads as row images (the DDL log)
        self._kinds: dict[int, tuple[tuple[object, ...], Kinds | None]] = {}  # by id(columns)
        self.decoded = 0  # messages the extension decoded
        self.left = 0  # messages it left to the Python decoder
        # Of the last poll: per topic with a run, the shape it was decoded with and its records.
        self.pending: dict[str, tuple[Route | None, list[int]]] = {}
        self.runs: list[FastRun] = []  # of the last poll, in the order they were made

    def decode(self, records: Sequence[Record]) -> list[Decoded]:
        """Per record: the run that keeps it or the event the extension made, None for each left
        to the Python decoder.
        Each topic with a run of records waits in `pending` with the shape it was decoded with
        (None: not known yet), until the loop's Python decoder reads one of its messages (see
        learned)."""
        ready: list[Decoded] = [None] * len(records)
        runs: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            runs.setdefault(record.topic, []).append(i)
        self.pending = {}
        self.runs = []
        for topic, indexes in runs.items():
            if len(indexes) < self._min_run or topic in self._skip:
                continue
            shape = self._decoder.route(topic)
            self.pending[topic] = (shape, indexes)
            if shape is not None:
                self._decode_run(shape, records, indexes, ready)
        return ready

    def learned(self, topic: str, records: Sequence[Record], after: int, ready: list[Decoded]) -> None:
        """The loop's Python decoder read records[after]: if that taught the decoder a shape for
        the topic other than the one its run was decoded with (a new topic, a new schema text),
        the extension takes the topic's later records it has not decoded. Decoding stays in
        message order, so the decoder's state (which tables have a key) evolves as on the Python
        path."""
        shape = self._decoder.route(topic)
        used, indexes = self.pending[topic]
        if shape is None or shape is used:
            return
        later = [i for i in indexes if i > after and ready[i] is None]
        self.pending[topic] = (shape, later)
        if len(later) >= self._min_run:
            self._decode_run(shape, records, later, ready)

    def take(self, taken: list[int], buffer: Buffer) -> None:
        """Give the buffer the kept messages among these records of the poll (indexes, ascending):
        before any event decoded after them, so that the buffer sees a table's changes in order."""
        for run in self.runs:
            picked = run.pick(taken)
            if picked:
                buffer.add_run(run, picked)

    def into(self, records: Sequence[Record], buffer: Buffer) -> list[tuple[Record, PoisonMessage]]:
        """What cdc sync's loop does with a poll, without its position checks and filters (for
        tests and benchmarks): every record's change into the buffer, in order; returns the
        records the Python decoder refused, with why."""
        return self.feed(records, self.decode(records), buffer)

    def feed(
        self, records: Sequence[Record], ready: list[Decoded], buffer: Buffer
    ) -> list[tuple[Record, PoisonMessage]]:
        """into's second half: the records of a poll, decoded (decode), into the buffer."""
        pending = self.pending
        refused: list[tuple[Record, PoisonMessage]] = []
        taken: list[int] = []
        for i, record in enumerate(records):
            event = ready[i]
            if event is not None and event.__class__ is not ChangeEvent:
                taken.append(i)  # kept in its run
                continue
            if event is None:
                if record.value is None:
                    continue  # a tombstone: the decoder would say None (as cdc sync's loop skips it)
                try:
                    event = self._decoder.decode(
                        new_tuple(Origin, record[:3]), record.key, record.value, record.headers
                    )
                except PoisonMessage as exc:
                    refused.append((record, exc))
                    continue
                if record.topic in pending:
                    self.learned(record.topic, records, i, ready)
                if event is None:
                    continue
            if taken:
                self.take(taken, buffer)
                taken = []
            buffer.add(event)
        if taken:
            self.take(taken, buffer)
        return refused

    def _kinds_of(self, table: TableSchema) -> Kinds | None:
        columns = table.columns
        known = self._kinds.get(id(columns))
        if known is None or known[0] is not columns:
            known = self._kinds[id(columns)] = (columns, kinds_of(columns))  # the columns kept alive with it
        return known[1]

    def _decode_run(
        self, shape: Route, all_records: Sequence[Record], indexes: list[int], ready: list[Decoded]
    ) -> None:
        table = shape.table
        if table.table == DDL_TABLE:
            return  # its events are read as row images (schema drift), whatever topic they come on
        kinds = self._kinds_of(table)
        if kinds is None:
            return
        records = all_records if isinstance(all_records, list) else list(all_records)
        make = (ChangeEvent, Version, Origin, _OPS, table.table, table, read_header, NEW_KEY_HEADER)
        try:
            decoded, run = self._extension.decode_events(
                shape.prefix,
                shape.key_prefix,
                kinds,
                list(table.key),
                table.table.schema,
                table.table.name,
                records,
                indexes,
                ready,
                make,
            )
        except ValueError:
            # A column list the extension refuses (kind_of should not have offered it): this
            # table stays on the Python path.
            self._kinds[id(table.columns)] = (table.columns, None)
            return
        if run is not None:
            self.runs.append(run)
        self.decoded += decoded
        self.left += len(indexes) - decoded
