"""Runs of Kafka messages -> ChangeEvents through the compiled fast path (cdc/fastpath.py).

Per topic, the messages of a poll that share the shape the Python decoder last saw on it (value and
key schema prefix, table) go to the extension in one call, with the GIL released. Each message it
decodes becomes a ChangeEvent carrying its staging columns as COPY text (`staged`) instead of row
images. Whatever it leaves (a new shape, a placeholder, a tombstone, a truncate, anything unusual
or malformed) is decoded by the Python decoder in its place, in message order: the Python path
stays the one that decides what is poison and why, and the one schema drift sees first.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from operator import itemgetter
from typing import TYPE_CHECKING, cast

from cdc.decode.envelope import NEW_KEY_HEADER, EnvelopeDecoder, Headers, PoisonMessage, read_header
from cdc.events import ChangeEvent, Op, Origin, TableSchema, Version, new_tuple
from cdc.fastpath import Extension, Kinds, kinds_of

if TYPE_CHECKING:
    from cdc.sync.consume import Record

_OPS = {op.value: op for op in Op}
DELETE = Op.DELETE
_Handled = tuple[str, int, int, bytes, bytes, Headers]
_KEY, _VALUE = itemgetter(3), itemgetter(4)  # a Record's key and value, without NamedTuple's properties
# Below this many messages of one topic in a poll, the call's fixed cost outweighs its gain.
MIN_RUN = 4
LEARN = 8  # messages of a new topic the Python decoder reads, at most, to learn its shape


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

    def decode(self, records: Sequence[Record]) -> list[ChangeEvent | None]:
        """An event per record the extension decoded, None for each left to the Python decoder."""
        ready: list[ChangeEvent | None] = [None] * len(records)
        runs: dict[str, list[int]] = {}
        for i, record in enumerate(records):
            runs.setdefault(record.topic, []).append(i)
        route = self._decoder.route
        for topic, run_indexes in runs.items():
            if len(run_indexes) < self._min_run or topic in self._skip:
                continue
            indexes = run_indexes
            shape = route(topic)
            if shape is None:
                # A topic not seen yet: the Python decoder reads its first messages (in order, as
                # the loop would) until it knows the shape; the extension takes the rest.
                indexes = run_indexes[self._learn(topic, records, run_indexes, ready) :]
                shape = route(topic)
                if shape is None or len(indexes) < self._min_run:
                    continue
            kinds = self._kinds_of(shape.table)
            if kinds is None:
                continue
            run = [records[i] for i in indexes]
            self._decode_run(shape.prefix, shape.key_prefix, shape.table, kinds, run, indexes, ready)
        return ready

    def _learn(self, topic: str, records: Sequence[Record], indexes: list[int], ready: list[ChangeEvent | None]) -> int:
        """Decode the run's first messages in Python until the topic's shape is known (at most
        LEARN of them); returns how many were decoded. Poison is left for the loop to decode again
        and dead-letter (decoding is pure: the same reason comes out)."""
        for taken, i in enumerate(indexes[:LEARN], start=1):
            record = records[i]
            with suppress(PoisonMessage):
                ready[i] = self._decoder.decode(new_tuple(Origin, record[:3]), record.key, record.value, record.headers)
            if self._decoder.route(topic) is not None:
                return taken
        return min(len(indexes), LEARN)

    def _kinds_of(self, table: TableSchema) -> Kinds | None:
        columns = table.columns
        known = self._kinds.get(id(columns))
        if known is None or known[0] is not columns:
            known = self._kinds[id(columns)] = (columns, kinds_of(columns))  # the columns kept alive with it
        return known[1]

    def _decode_run(  # noqa: PLR0917 - one run's parts
        self,
        prefix: bytes,
        key_prefix: bytes,
        table: TableSchema,
        kinds: Kinds,
        records: list[Record],
        indexes: list[int],
        ready: list[ChangeEvent | None],
    ) -> None:
        keys = list(map(_KEY, records))
        values = list(map(_VALUE, records))
        results = self._extension.decode_run(
            prefix, key_prefix, kinds, list(table.key), table.table.schema, table.table.name, keys, values
        )
        cut = len(prefix)
        table_id = table.table
        decoded = 0
        for i, record, got in zip(indexes, records, results, strict=True):
            if got is None:
                continue
            # The extension leaves keyless messages and tombstones: key and value are bytes here.
            topic, partition, offset, key_bytes, value, headers = cast(_Handled, record)
            staged, op_letter, commit_lsn, lsn, ts_ms, order, key = got
            op = _OPS[op_letter]
            ready[i] = ChangeEvent(
                op,
                table_id,
                table,
                key,
                None,
                None,
                new_tuple(Version, (commit_lsn, lsn)),
                ts_ms,
                new_tuple(Origin, (topic, partition, offset)),
                len(value) + len(key_bytes),
                key_bytes,
                value[cut:-1],
                prefix,
                None,
                op is DELETE and headers is not None and read_header(headers, NEW_KEY_HEADER) is not None,
                None,
                order,
                staged,
            )
            decoded += 1
        self.decoded += decoded
        self.left += len(records) - decoded
