"""Kafka message bytes -> ChangeEvent. Pure: no I/O, no Kafka, no SQL.

Debezium's JSON converter writes `{"schema":{...},"payload":{...}}`, and the schema half (often
three quarters of the bytes) repeats verbatim from message to message of a table. So the schema is
parsed and interpreted once per distinct schema text; later messages are only compared against
that prefix (a memcmp) and just their payload is parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from cdc.decode.toast import maybe_unavailable
from cdc.decode.types import field_type
from cdc.errors import CdcError
from cdc.events import ZERO, ChangeEvent, Column, Op, Origin, TableId, TableSchema, Version, new_tuple

_SCHEMA_START = b'{"schema":'
_PAYLOAD_MARK = b',"payload":'
_OPS = {op.value: op for op in Op}


class PoisonMessage(Exception):
    """A message that can never be applied; it goes to the dead-letter table with this reason."""


@dataclass(frozen=True, slots=True)
class _ValueSchema:
    """What one distinct value-schema text means; shared by every message carrying it."""

    prefix: bytes  # the message bytes up to and including ',"payload":'
    envelope: bool  # a change event envelope (vs. heartbeat, transaction metadata...)
    columns: tuple[Column, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """What the fast path needs of a topic's table shape: messages starting with these prefixes,
    of this table, decode to events of this schema."""

    prefix: bytes
    key_prefix: bytes
    table: TableSchema


@dataclass(frozen=True, slots=True)
class _KeySchema:
    prefix: bytes
    fields: tuple[str, ...]


class EnvelopeDecoder:
    """Decodes the messages of one consumer. Keeps the schemas it has seen (a few per table)."""

    def __init__(self) -> None:
        self._values: dict[bytes, _ValueSchema] = {}
        self._keys: dict[bytes, _KeySchema] = {}
        self._last_value: dict[str, _ValueSchema] = {}  # by topic: the usual hit
        self._last_key: dict[str, _KeySchema] = {}
        # (schema name, table name, key fields, value schema) -> TableSchema: identical columns
        # under one table share one TableSchema; the value schema is keyed by identity (cached).
        self._tables: dict[tuple[str, str, tuple[str, ...], int], TableSchema] = {}
        self._schemas: dict[tuple[TableId, tuple[Column, ...], tuple[str, ...]], TableSchema] = {}
        self._keyed: set[TableId] = set()  # tables seen with a primary key
        self._routes: dict[str, Route] = {}  # by topic: the shape its last change event had

    def decode(
        self, origin: Origin, key: bytes | None, value: bytes | None, headers: Headers = None
    ) -> ChangeEvent | None:
        """The change event, or None for a message that carries no row change (a tombstone, a
        heartbeat, transaction metadata). Raises PoisonMessage for anything undecodable.

        headers: the message's headers, or a function returning them. Only Debezium's
        `__debezium.oldkey`/`__debezium.newkey` matter (the two halves of a primary-key change),
        so they are read only for deletes and for creates holding an unchanged-TOAST placeholder."""
        if value is None:
            return None  # tombstone: only for Kafka's log compaction; the delete came before it
        schema, payload, raw_payload = self._split_value(origin.topic, value)
        if not schema.envelope:
            return None
        if type(payload) is not dict:
            raise PoisonMessage("the value's payload is not a JSON object")
        op = _OPS.get(payload.get("op"))  # type: ignore[arg-type]
        if op is None:
            raise PoisonMessage(f"unknown op {payload.get('op')!r} (expected one of c, u, d, r, t)")
        source = payload.get("source")
        if type(source) is not dict or not source.get("table"):
            raise PoisonMessage("the payload has no source block naming the table")
        key_fields, key_values = self._split_key(origin.topic, key)
        table_schema = self._table_schema(source, schema, key_fields)
        table = table_schema.table
        if key_values is not None:
            self._keyed.add(table)
            self._note_route(origin.topic, schema, table_schema)
        elif op is not Op.TRUNCATE and table in self._keyed:
            raise PoisonMessage(f"missing key: {table} has a primary key, this {op.value} event has none")
        before, after = payload.get("before"), payload.get("after")
        old_key = None
        moves_away = False
        if op is Op.DELETE:
            if type(before) is not dict:
                raise PoisonMessage("op d without a 'before' row image")
            moves_away = headers is not None and read_header(headers, NEW_KEY_HEADER) is not None
        elif op is not Op.TRUNCATE:
            if type(after) is not dict:
                raise PoisonMessage(f"op {op.value} without an 'after' row image")
            if op is Op.CREATE and headers is not None and maybe_unavailable(raw_payload):
                header = read_header(headers, OLD_KEY_HEADER)
                old_key = None if header is None else _moved_key(header, key_fields)
        # Positional: this runs for every message, and keyword passing costs measurably more.
        return ChangeEvent(
            op,
            table,
            table_schema,
            key_values,
            before,
            after,
            version_of(source),
            source.get("ts_ms"),
            origin,
            len(value) + (len(key) if key else 0),
            key,
            raw_payload,
            schema.prefix if raw_payload is not value else b"",
            old_key,
            moves_away,
            None,
            _order(payload),
        )

    def route(self, topic: str) -> Route | None:
        """The shape of the topic's last keyed change event, when both its value and its key came
        in the converter's compact form: what the compiled fast path decodes."""
        return self._routes.get(topic)

    def _note_route(self, topic: str, schema: _ValueSchema, table: TableSchema) -> None:
        key = self._last_key.get(topic)
        known = self._routes.get(topic)
        same_key = key is None or (known is not None and known.key_prefix is key.prefix)
        if known is not None and known.table is table and known.prefix is schema.prefix and same_key:
            return
        if schema.prefix and key is not None and key.fields == table.key and self._last_value.get(topic) is schema:
            self._routes[topic] = Route(schema.prefix, key.prefix, table)

    def _split_value(self, topic: str, value: bytes) -> tuple[_ValueSchema, Any, bytes]:
        """(schema, parsed payload, the payload's bytes: the value without the schema's prefix and
        the closing brace, or the whole value when it has no known prefix)."""
        known = self._last_value.get(topic)
        if known is not None and value.startswith(known.prefix) and value.endswith(b"}"):
            raw = value[len(known.prefix) : -1]
            return known, _loads(raw, "value payload"), raw
        whole = _loads(value, "value")
        if not isinstance(whole, dict) or "schema" not in whole or "payload" not in whole:
            raise PoisonMessage(
                "the value is not a Debezium JSON message with schema and payload "
                "(the converter must be JsonConverter with schemas.enable=true)"
            )
        prefix = _prefix_of(value, whole["schema"])
        # Not in the converter's compact form (another producer): understood, just not fast.
        cache_key = prefix or orjson.dumps(whole["schema"], option=orjson.OPT_SORT_KEYS)
        known = self._values.get(cache_key)
        if known is None:
            known = self._values[cache_key] = _interpret(prefix or b"", whole["schema"])
        if prefix:
            self._last_value[topic] = known
            return known, whole["payload"], value[len(prefix) : -1]
        return known, whole["payload"], value

    def _split_key(self, topic: str, key: bytes | None) -> tuple[tuple[str, ...], tuple[Any, ...] | None]:
        if key is None:
            return (), None
        known = self._last_key.get(topic)
        if known is not None and key.startswith(known.prefix) and key.endswith(b"}"):
            payload = _loads(key[len(known.prefix) : -1], "key payload")
        else:
            whole = _loads(key, "key")
            if not isinstance(whole, dict) or "schema" not in whole or "payload" not in whole:
                raise PoisonMessage("the key is not a Debezium JSON key with schema and payload")
            prefix = _prefix_of(key, whole["schema"])
            fields = tuple(str(f["field"]) for f in (whole["schema"] or {}).get("fields", ()))
            known = _KeySchema(prefix or b"", fields)
            if prefix:
                known = self._keys.setdefault(prefix, known)
                self._last_key[topic] = known
            payload = whole["payload"]
        if payload is None:
            return known.fields, None
        if not isinstance(payload, dict):
            raise PoisonMessage("the key's payload is not a JSON object")
        try:
            fields = known.fields
            if len(fields) == 1:
                return fields, (payload[fields[0]],)
            return fields, tuple([payload[name] for name in fields])
        except KeyError as exc:
            raise PoisonMessage(f"the key lacks its field {exc.args[0]!r}") from None

    def _table_schema(self, source: dict[str, Any], schema: _ValueSchema, key: tuple[str, ...]) -> TableSchema:
        names = (source.get("schema"), source["table"])
        fast_key = (*names, key, id(schema))  # schema objects live as long as the decoder
        found = self._tables.get(fast_key)  # type: ignore[arg-type]
        if found is None:
            table = TableId(str(names[0] or ""), str(names[1]))
            slow_key = (table, schema.columns, key)
            found = self._schemas.get(slow_key)
            if found is None:
                found = self._schemas[slow_key] = TableSchema(table, schema.columns, key)
            self._tables[fast_key] = found  # type: ignore[index]
        return found


OLD_KEY_HEADER = "__debezium.oldkey"
NEW_KEY_HEADER = "__debezium.newkey"
# Headers as a Kafka client gives them: (name, value) pairs, or a function returning them (read lazily).
Headers = Iterable[tuple[str, bytes | None]] | Callable[[], Iterable[tuple[str, bytes | None]] | None] | None


def read_header(headers: Headers, name: str) -> bytes | None:
    pairs = headers() if callable(headers) else headers
    for key, value in pairs or ():
        if key == name:
            return value
    return None


def _moved_key(header: bytes, fields: tuple[str, ...]) -> tuple[Any, ...] | None:
    """The old key named by a header, in key-field order. The header only helps keep unchanged
    TOASTed values across a key change; one that cannot be read is ignored, not poison."""
    try:
        payload = orjson.loads(header)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(payload, dict) or not fields or any(f not in payload for f in fields):
        return None
    return tuple(payload[f] for f in fields)


def materialize(event: ChangeEvent) -> None:
    """Give an event the fast path decoded its row images, as the Python path would have them,
    and drop its staged columns (a stage that needs the images may change them)."""
    if event.staged is None:
        return
    payload = orjson.loads(event.raw_payload or b"{}")
    event.before, event.after = payload.get("before"), payload.get("after")
    event.staged = None


def _order(payload: dict[str, Any]) -> int | None:
    transaction = payload.get("transaction")
    if type(transaction) is dict:
        order = transaction.get("data_collection_order")
        if type(order) is int:
            return order
    return None


def _interpret(prefix: bytes, schema: Any) -> _ValueSchema:
    if not isinstance(schema, dict):
        raise PoisonMessage("the value's schema is not a JSON object")
    envelope = str(schema.get("name", "")).endswith(".Envelope")
    return _ValueSchema(prefix, envelope, _row_columns(schema) if envelope else ())


def version_of(source: dict[str, Any]) -> Version:
    sequence = source.get("sequence")
    if isinstance(sequence, str):
        # Debezium's form, '["<digits>","<digits>"]', without a JSON parse; anything else parses.
        if sequence.startswith('["') and sequence.endswith('"]'):
            commit, sep, change = sequence[2:-2].partition('","')
            if sep and commit.isdecimal() and change.isdecimal():
                return new_tuple(Version, (int(commit), int(change)))
        try:
            last_commit, lsn = orjson.loads(sequence)
            return Version(int(last_commit or 0), int(lsn or 0))
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise PoisonMessage(f"source.sequence {sequence!r} is not [commit LSN, LSN]") from None
    lsn = source.get("lsn")
    return Version(int(lsn), int(lsn)) if isinstance(lsn, int) else ZERO


def _row_columns(envelope: dict[str, Any]) -> tuple[Column, ...]:
    fields = {f.get("field"): f for f in envelope.get("fields", ())}
    row = fields.get("after") or fields.get("before")
    if row is None:
        raise PoisonMessage("the envelope schema has neither an 'after' nor a 'before' field")
    columns = []
    for field in row.get("fields", ()):
        try:
            mapped = field_type(field)
        except CdcError as exc:
            raise PoisonMessage(str(exc)) from None
        columns.append(
            Column(
                name=str(field["field"]),
                pg_type=mapped.pg_type,
                optional=bool(field.get("optional", True)),
                varlena=mapped.varlena,
                encode=mapped.encode,
            )
        )
    return tuple(columns)


def _loads(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise PoisonMessage(f"the {what} is not valid JSON: {exc}") from None


def _prefix_of(message: bytes, schema: Any) -> bytes | None:
    """The bytes before the payload: '{"schema":' + the schema's own text + ',"payload":', or None
    when the message is not in the converter's compact form. A ',"payload":' may also occur inside
    the schema (a column named payload), so each candidate is checked by parsing what precedes it."""
    if not message.startswith(_SCHEMA_START) or not message.endswith(b"}"):
        return None
    start = message.find(_PAYLOAD_MARK)
    while start != -1:
        try:
            if orjson.loads(message[len(_SCHEMA_START) : start]) == schema:
                return message[: start + len(_PAYLOAD_MARK)]
        except orjson.JSONDecodeError:
            pass
        start = message.find(_PAYLOAD_MARK, start + 1)
    return None
