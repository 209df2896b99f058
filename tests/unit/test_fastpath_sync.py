"""`cdc sync`'s decode -> buffer -> staging text with the compiled fast path on, against the Python
path alone, byte for byte: every recorded Debezium message, and generated streams (random ops and
keys, replays, unchanged-TOAST placeholders, primary-key changes with their headers, tombstones,
hostile strings, extreme numerics and timestamps, malformed messages), read in polls of random
sizes. What the warehouse would be sent (each batch's events, its staging rows, truncates, dead
letters with their reasons) must be identical."""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.events import key_schema, message_prefix, value_schema
from cdc.buffer import Buffer
from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage
from cdc.decode.fast import FastDecoder
from cdc.events import ChangeEvent, Origin, Version, new_tuple
from cdc.fastpath import Extension, load
from cdc.sync.consume import Record
from cdc.warehouse.binary_copy import binary_codes
from cdc.warehouse.copy import StagingWriter, staging_text

FIXTURES = Path(__file__).parent.parent / "fixtures"
DDL_TOPIC = "cdc.cdc.schema_ddl"


def _through(
    records: list[Record], polls: list[int], fast: Extension | None, flush_every: int | None = 3
) -> tuple[Any, FastDecoder | None]:
    """What sync's _take makes of the records (read in polls of these sizes): every batch the
    buffer would hand the warehouse, described in full, and the dead letters. The buffer is
    flushed after the first poll (which teaches the decoder the shapes, so later batches start
    with the extension's rows) and after every flush_every-th poll after it (None: only at the end)."""
    decoder = EnvelopeDecoder()
    fast_decoder = FastDecoder(decoder, fast, frozenset({DDL_TOPIC}), min_run=1) if fast is not None else None
    buffer = Buffer()
    flushed: list[Any] = []
    dead: list[tuple[Origin, str]] = []
    start = 0
    sizes = iter(polls)
    for number in itertools.count():
        if start >= len(records):
            break
        poll = records[start : start + max(1, next(sizes, 16))]
        start += len(poll)
        if fast_decoder is not None:
            refused = fast_decoder.into(poll, buffer)
            dead.extend((new_tuple(Origin, record[:3]), str(exc)) for record, exc in refused)
        else:
            for record in poll:
                try:
                    event = decoder.decode(new_tuple(Origin, record[:3]), *record[3:])
                except PoisonMessage as exc:
                    dead.append((new_tuple(Origin, record[:3]), str(exc)))
                    continue
                if event is not None:
                    buffer.add(event)
        if flush_every is not None and number % flush_every == 0:
            flushed.append(_flushed(buffer))
            buffer = Buffer()
    flushed.append(_flushed(buffer))
    return (flushed, dead), fast_decoder


def _flushed(buffer: Buffer) -> Any:
    return [_describe(batch) for batch in buffer.batches()], sorted(buffer.open_moves), buffer.events, buffer.bytes


def extension() -> Extension:
    loaded = load()
    assert loaded is not None  # a batch keeps rows only when the extension made them
    return loaded


def _describe(batch: Any) -> dict[str, Any]:
    kept = batch.fast.staging_text() if batch.fast is not None else None
    sent = batch.fast.staging_bytes() if batch.fast is not None else None  # as the flush sends it
    codes = binary_codes(batch.schema.columns)
    binary = batch.fast.staging_binary(codes) if batch.fast is not None and codes is not None else None
    newest = batch.newest()
    events: list[ChangeEvent] = batch.events()  # the kept rows made events, as a stage needing them would
    text, refused = staging_text(events, batch.schema.columns)
    if kept is not None:
        assert kept == text  # the extension's COPY text of its kept rows is the events' own
        assert sent == text.encode()
        if codes is not None:  # the binary COPY of the kept rows is that of the events' text
            assert binary == extension().copy_binary(codes, text)
    assert newest == batch.newest()
    return {
        "table": batch.schema.table,
        "truncated": (batch.truncated_at, batch.truncated_ts_ms, batch.truncate_origin),
        "ops": batch.ops,
        "events": [_identity(e) for e in events],
        "staging": text,
        "refused": [(e.origin, reason) for e, reason in refused],
    }


def _identity(e: ChangeEvent) -> tuple[Any, ...]:
    return (
        *(e.op, e.key, e.version, e.commit_ts_ms, e.origin, e.size),
        *(e.raw_key, e.raw_value, e.old_key, e.moves_away, e.order),
        # The extension makes these objects itself: the same types, not merely equal tuples.
        *(type(e.version), type(e.origin), type(e.key), [type(k) for k in e.key or ()], type(e.moves_away)),
    )


def _buffered(records: list[Record], fast: Extension) -> tuple[FastDecoder, list[ChangeEvent]]:
    """The events a buffer holds after the fast path read the records (its kept rows made events)."""
    decoder = FastDecoder(EnvelopeDecoder(), fast, min_run=1)
    buffer = Buffer()
    decoder.into(records, buffer)
    return decoder, [e for batch in buffer.batches() for e in batch.events()]


def _same(records: list[Record], polls: list[int], fast: Extension, flush_every: int | None = 3) -> FastDecoder:
    expected, _ = _through(records, polls, None, flush_every)
    got, decoder = _through(records, polls, fast, flush_every)
    assert got == expected
    assert decoder is not None
    return decoder


# -- recorded messages --------------------------------------------------------------------------------


def _recorded() -> Iterator[tuple[str, list[Record]]]:
    for path in sorted(FIXTURES.glob("debezium*/*.jsonl")):
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            m = json.loads(line)
            key = None if m["key"] is None else m["key"].encode()
            value = None if m["value"] is None else m["value"].encode()
            headers = [(h[0], None if h[1] is None else h[1].encode()) for h in m.get("headers") or []]
            records.append(new_tuple(Record, (m["topic"], m["partition"], m["offset"], key, value, headers)))
        yield f"{path.parent.name}/{path.name}", records


def test_every_recorded_message_makes_the_same_batches(fast: Extension) -> None:
    decoded = 0
    for _, records in _recorded():
        for polls in ([1], [4], [len(records)], [1, 5, 2, 9, 3]):
            # Twice over: the second pass reads every topic with its shape known (the fast path's case).
            decoder = _same(records + records, polls * 50, fast)
            decoded += decoder.decoded
    assert decoded >= 50, decoded  # the fast path did take part (52 when written)


# -- generated streams ----------------------------------------------------------------------------------

TOPIC = "cdc.public.orders"
KEY_PREFIX = message_prefix(key_schema("cdc", "public", "orders"))
VALUE_PREFIX = message_prefix(value_schema("cdc", "public", "orders", ref_not_null=False))
UNAVAILABLE = "__debezium_unavailable_value"

hostile = st.text(
    alphabet=st.sampled_from(["a", "é", "\t", "\n", "\r", "\\", '"', "\u2028", "\x85", "\x1c", "\x00", "😀", " "]),
    max_size=12,
)
row_values = st.fixed_dictionaries(
    {
        "customer_id": st.integers(-(2**31), 2**31 - 1),
        "amount": st.one_of(st.integers(-(10**14), 10**14), st.integers(-(2**140), 2**140)),
        "status": hostile,
        "created_at": st.sampled_from(
            ["2026-01-05T08:00:00Z", "0001-01-01T00:00:00Z", "-0044-03-15T12:00:00.5Z", "+275760-09-13T00:00:00Z", "x"]
        ),
        "updated_at": st.one_of(st.integers(-(2**62), 2**62), st.just(9223372036825200000)),
        "note": st.one_of(st.none(), hostile, st.just(UNAVAILABLE)),
        "flag": st.booleans(),
        "attrs": st.one_of(st.none(), st.just('{"a": [1, "\\t"]}')),
        "ref": st.one_of(st.none(), st.uuids().map(str)),
    }
)
step = st.tuples(
    st.sampled_from(
        ["c", "u", "u", "d", "r", "replay", "move", "move_reversed", "tombstone", "t", "junk", "odd_key", "float_seq"]
    ),
    st.integers(1, 6),
    row_values,
)


def _decimal(unscaled: int) -> str:
    return base64.b64encode(unscaled.to_bytes((unscaled.bit_length() + 8) // 8, "big", signed=True)).decode()


def _stream(steps: list[tuple[str, int, dict[str, Any]]]) -> list[Record]:
    records: list[Record] = []
    lsn = 1000

    def emit(key: bytes | None, value: bytes | None, headers: list[tuple[str, bytes | None]] | None = None) -> None:
        records.append(new_tuple(Record, (TOPIC, 0, len(records), key, value, headers or [])))

    def message(op: str, ident: int, row: dict[str, Any] | None, sequence: Any = None) -> bytes:
        nonlocal lsn
        lsn += 8
        image = None if row is None else {"id": ident, **row, "amount": _decimal(row["amount"])}
        payload = {
            "before": image if op == "d" else None,
            "after": None if op in ("d", "t") else image,
            "source": {
                "version": "3.4.3.Final",
                "ts_ms": 1767600000000 + lsn,
                "schema": "public",
                "table": "orders",
                "sequence": sequence if sequence is not None else f'["{lsn - lsn % 64}","{lsn}"]',
                "lsn": lsn,
            },
            "transaction": {"id": f"1:{lsn}", "total_order": 1, "data_collection_order": lsn % 5},
            "op": op,
        }
        return VALUE_PREFIX + orjson.dumps(payload) + b"}"

    def key(ident: int) -> bytes:
        return KEY_PREFIX + b'{"id":%d}}' % ident

    for kind, ident, row in steps:
        if kind in ("c", "u", "r", "d"):
            emit(key(ident), message(kind, ident, row))
        elif kind == "replay" and records:
            emit(*records[(ident * 7919) % len(records)][3:6])
        elif kind in ("move", "move_reversed"):
            # A primary-key change: delete(old) + create(new), their headers naming each other. On
            # a topic of several partitions the create may be read first.
            new = ident + 10
            delete = (key(ident), message("d", ident, row), [("__debezium.newkey", b'{"id":%d}' % new)])
            create = (
                key(new),
                message("c", new, {**row, "note": UNAVAILABLE}),
                [("__debezium.oldkey", b'{"id":%d}' % ident)],
            )
            for part in (delete, create) if kind == "move" else (create, delete):
                emit(*part)
        elif kind == "tombstone":
            emit(key(ident), None)
        elif kind == "t":
            emit(None, message("t", 0, None))
        elif kind == "junk":
            emit(key(ident), VALUE_PREFIX + b'{"op":"c","after":{"id":1},"source":7}}')
        elif kind == "odd_key":
            emit(KEY_PREFIX + b'{"id":"%d"}}' % ident, message("u", ident, row))
        elif kind == "float_seq":
            emit(key(ident), message("u", ident, row, sequence='["00012", 77]'))
    return records


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(step, min_size=1, max_size=60),
    polls=st.lists(st.integers(1, 20), min_size=1, max_size=8),
    flush_every=st.integers(1, 4),
)
def test_generated_streams_make_the_same_batches(
    fast: Extension, steps: list[Any], polls: list[int], flush_every: int
) -> None:
    records = _stream(steps)
    _same(records + records, polls, fast, flush_every)


# Streams of plain changes, as most of a busy table's are: the batches hold the extension's rows
# (FastRows), compacted in Rust across runs and polls, until a flush or an odd event.
plain_values = row_values.map(lambda row: row | {"note": "n" if row["note"] == UNAVAILABLE else row["note"]})
plain_ops = st.sampled_from(["c", "u", "u", "d", "r", "replay", "tombstone"])
plain_step = st.tuples(plain_ops, st.integers(1, 8), plain_values)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(plain_step, min_size=1, max_size=80),
    polls=st.lists(st.integers(1, 25), min_size=1, max_size=8),
    flush_every=st.integers(1, 4),
)
def test_generated_plain_streams_kept_in_the_extension_make_the_same_batches(
    fast: Extension, steps: list[Any], polls: list[int], flush_every: int
) -> None:
    records = _stream(steps)
    _same(records + records, polls, fast, flush_every)


PLAIN_ROW = {
    "customer_id": 5,
    "amount": 1234,
    "status": "paid",
    "created_at": "2026-01-05T08:00:00Z",
    "updated_at": 1767600000000000,
    "note": "a\tb",
    "flag": True,
    "attrs": None,
    "ref": None,
}


def test_a_plain_stream_is_decoded_by_the_fast_path(fast: Extension) -> None:
    records = _stream([(op, i % 7 + 1, PLAIN_ROW) for i, op in enumerate(["c", "u", "u", "d"] * 50)])
    decoder = _same(records, [100], fast)
    # The first message teaches the decoder the shape (in Python); every message after it is the extension's.
    assert (decoder.decoded, decoder.left) == (199, 0)


def test_the_events_of_a_run_share_their_schema_prefix(fast: Extension) -> None:
    """A message is mostly schema: the buffer keeps one prefix object per shape, not one per event."""
    records = _stream([("c", i, PLAIN_ROW) for i in range(1, 50)])
    decoder, events = _buffered(records, fast)
    assert decoder.decoded == 48, decoder.decoded  # all but the first, which teaches the shape
    assert len({id(e.raw_prefix) for e in events[1:]}) == 1
    assert all(e.staged is not None and e.before is None and e.after is None for e in events[1:])


def test_placeholders_are_filled_from_images_the_fast_path_decoded(fast: Extension) -> None:
    """The buffer fills a placeholder from the image it replaces: an update's from the row before
    it, a key change's create from the delete's old image. Those images came through the fast path
    (no row dict): they must be read back exactly."""
    row = {
        "customer_id": 5,
        "amount": -1,
        "status": "paid",
        "created_at": "2026-01-05T08:00:00Z",
        "updated_at": 1,
        "note": "keep me",
        "flag": True,
        "attrs": None,
        "ref": None,
    }
    placeholder = {**row, "note": UNAVAILABLE}
    steps = [("c", 1, row), ("u", 1, row), ("u", 1, placeholder), ("c", 2, row), ("u", 2, row), ("move", 2, row)]
    steps += [("c", 3, row), ("move_reversed", 3, row)]
    records = _stream(steps)
    decoder = _same(records, [1] * len(records), fast)
    # The first message teaches the decoder the shape; the placeholders' messages are Python's.
    assert (decoder.decoded, decoder.left) == (6, 3)
    (flushed, _), _ = _through(records, [1] * len(records), fast, None)
    lines = flushed[0][0][0]["staging"].split("\n")[:-1]
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "12", "3", "13"]
    assert [line.split("\t")[6] for line in lines] == ["keep me", "\\N", "keep me", "\\N", "keep me"]


# -- what a review found the two paths doing differently (each fixed) ---------------------------------


def _small_table(fields: list[dict[str, Any]], table: str) -> tuple[bytes, bytes]:
    """Value and key prefixes of a table with these row fields (key: id int64)."""
    schema = value_schema("cdc", "public", table)
    for field in schema["fields"]:
        if field["field"] in ("before", "after"):
            field["fields"] = fields
    return message_prefix(schema), message_prefix(key_schema("cdc", "public", table))


def _message(prefix: bytes, op: str, ident: int, row: dict[str, Any] | None, lsn: int, *, extra: str = "") -> bytes:
    image = None if row is None else {"id": ident, **row}
    payload = {
        "before": image if op == "d" else None,
        "after": None if op == "d" else image,
        "source": {"ts_ms": 1000 + lsn, "schema": "public", "table": "t", "sequence": f'["{lsn}","{lsn}"]'},
        "transaction": {"id": "1", "total_order": 1, "data_collection_order": 1},
        "op": op,
    }
    text = orjson.dumps(payload)
    return prefix + (text[:-1] + extra.encode() + b"}" if extra else text) + b"}"


INT64 = {"type": "int64", "optional": False, "field": "id"}


def _records(messages: list[tuple[bytes, bytes | None]]) -> list[Record]:
    return [new_tuple(Record, ("cdc.public.t", 0, i, key, value, [])) for i, (key, value) in enumerate(messages)]


def test_what_orjson_refuses_anywhere_in_a_message_is_the_python_decoders(fast: Extension) -> None:
    """serde skips fields it does not read checking only their syntax; orjson refuses a whole
    message for a number beyond a double or a lone surrogate anywhere in it (a dead letter). Then
    a delete of the same key must not find an image that cannot be read back."""
    fields = [INT64, {"type": "string", "optional": True, "field": "v"}]
    prefix, key_prefix = _small_table(fields, "t")
    key = key_prefix + b'{"id":1}}'
    plain = [(key, _message(prefix, "c", 1, {"v": "a"}, 8 * n)) for n in range(1, 5)]
    odd = [
        (key, _message(prefix, "u", 1, {"v": "b"}, 100, extra=',"x":1e400')),
        (key, _message(prefix, "u", 1, {"v": "c"}, 108, extra=',"y":"\\ud800"')),
        (key, _message(prefix, "u", 1, {"v": "d"}, 116, extra=',"z":' + "9" * 400)),
        (key_prefix + b'{"id":1,"w":1E999}}', _message(prefix, "u", 1, {"v": "e"}, 124)),
        (key, _message(prefix, "d", 1, {"v": None}, 132)),
    ]
    records = _records(plain + odd)
    decoder = _same(records, [4, 10], fast)
    (_, dead), _ = _through(records, [4, 10], fast)
    assert [origin.offset for origin, _ in dead] == [4, 5, 6, 7]  # the four dead letters
    # The first message teaches the shape; the three after it and the delete are the extension's.
    assert decoder.decoded == 4


def test_float_zero_placeholders_and_values_without_their_closing_brace_match(fast: Extension) -> None:
    fields = [
        INT64,
        {"type": "double", "optional": True, "field": "f"},
        {"type": "string", "optional": True, "name": "io.debezium.data.Uuid", "field": "u"},
    ]
    prefix, key_prefix = _small_table(fields, "t")
    key = key_prefix + b'{"id":1}}'
    escaped = _message(prefix, "u", 1, {"f": 1.5, "u": "PLACEHOLDER"}, 40).replace(
        b'"PLACEHOLDER"', b'"\\u005f_debezium_unavailable_value"'
    )
    messages = [
        (key, _message(prefix, "c", 1, {"f": 2.5, "u": "b68a35a7-17ad-35b3-af2a-ae46edb4545b"}, 8)),
        (key, _message(prefix, "u", 1, {"f": 1.0, "u": "b68a35a7-17ad-35b3-af2a-ae46edb4545b"}, 16)),
        (key, _message(prefix, "u", 1, {"f": 3.0, "u": "b68a35a7-17ad-35b3-af2a-ae46edb4545b"}, 24)),
        (key_prefix + b'{"id":2}}', _message(prefix, "c", 2, {"f": -0.0, "u": None}, 32).replace(b"-0.0", b"-0")),
        (key_prefix + b'{"id":3}}', _message(prefix, "c", 3, {"f": -0.0, "u": None}, 36)),
        (key, escaped),  # a placeholder in a uuid column, escaped: the buffer fills it
        (key_prefix + b'{"id":4}}', _message(prefix, "c", 4, {"f": 1.0, "u": None}, 48)[:-1] + b"X"),
    ]
    records = _records(messages)
    _same(records, [1, 6], fast)
    (flushed, dead), _ = _through(records, [1, 6], fast, None)
    staged = flushed[0][0][0]["staging"]
    assert "\t0\t" in staged.split("\n")[1] and "\t-0.0\t" in staged.split("\n")[2], staged
    assert "b68a35a7-17ad-35b3-af2a-ae46edb4545b" in staged.split("\n")[0]  # filled from the image it replaced
    assert [origin.offset for origin, _ in dead] == [6]  # no closing brace: not JSON


def test_a_decimal_scale_the_extension_refuses_keeps_the_table_on_the_python_path(fast: Extension) -> None:
    decimal = {
        "type": "bytes",
        "optional": True,
        "name": "org.apache.kafka.connect.data.Decimal",
        "parameters": {"scale": "2046"},
        "field": "n",
    }
    prefix, key_prefix = _small_table([INT64, decimal], "t")
    records = _records(
        [(key_prefix + b'{"id":%d}}' % i, _message(prefix, "c", i, {"n": "AQ=="}, 8 * i)) for i in range(1, 9)]
    )
    decoder = _same(records, [2, 6], fast)
    assert decoder.decoded == 0


def test_a_new_schema_text_of_the_same_columns_is_taken_by_the_fast_path_again(fast: Extension) -> None:
    """A Debezium upgrade adds a field to the source block: the value schema's text changes, the
    columns do not (one TableSchema). The fast path must follow the new prefix."""
    fields = [INT64, {"type": "string", "optional": True, "field": "v"}]
    prefix, key_prefix = _small_table(fields, "t")
    xmin = b'{"type":"int64","optional":true,"field":"xmin"}'
    newer = prefix.replace(xmin, xmin + b',{"type":"string","optional":true,"field":"extra"}')
    assert newer != prefix
    messages = [
        (key_prefix + b'{"id":%d}}' % i, _message(prefix if i <= 10 else newer, "c", i, {"v": "x"}, 8 * i))
        for i in range(1, 41)
    ]
    records = _records(messages)
    decoder = _same(records, [10, 10, 10, 10], fast)
    assert decoder.decoded >= 36, decoder.decoded  # all but the first message of each shape


# -- the extension's JSON scanner: text the converter rarely or never writes ----------------------------
# The extension reads each payload in one validating pass of its own. Whatever it accepts it must
# read as orjson does (exponents, surrogate pairs, duplicate names: the last counts, whitespace,
# escaped names), and whatever orjson refuses must stay the Python decoder's (a dead letter there).

NUMBERS = [
    *("0", "-0", "1.25", "-7", "123456789012345678901", "9" * 299, "9" * 300, "-0.0"),
    *("1.0E16", "-1.7976931348623157E308", "1E+2", "1.5e-3", "0e5", "-0E0", "4.9E-324", "2.2250738585072014E-308"),
    *("2e308", "1e400", "1e-310", "1e", "1e+", "1E1000", "01", "1.", ".5", "-", "--1", "+1", "NaN", "Infinity"),
]
STRINGS = [
    *('"plain"', '"\\ud83d\\ude00"', '"\\uD83D\\uDE00 ok"', '"\\uDBFF\\uDFFF"', '"\\u00e9\\/\\b\\f\\n"', '"\\u0000"'),
    *('"\\ud83d"', '"\\ude00"', '"\\ud83d\\u0041"', '"\\ud83dx"', '"\\ude00\\ud83d"', '"\\ud83d\\\\ude00"'),
    *('"\\x"', '"a\tb"', '"\\u12"', '"\\u12G4"', '"unterminated', "null", "17", "true"),
]
EXTRAS = [
    *("", ',"op":"c"', ',"op":"t"', ',"op":null', ',"o\\u0070":"d"', ',"after":null', ',"before":{"id":1}'),
    *(',"source":{"schema":"public","table":"other"}', ',"source":7', ',"transaction":7', ',"transaction":{}'),
    *(',"after":{"id":1,"f":0.5,"v":"later","v":"last"}', ',"obj":{"a":{"b":[1,{"c":null}],"d":[]}}', ",}", ",,"),
    *(',"x":' + "[" * 127 + "]" * 127, ',"x":' + "[" * 128 + "]" * 128, ',"x":' + "[" * 300 + "]" * 300),
    *(',"x" 1', ',"x":1 2', ',"x":[1,]', ',"x":{"a":1,}', ',"x":tru', ',"x":nul', ',"x":fals'),
]
IMAGE_EXTRAS = ["", ',"v":"dup"', ',"\\u0076":"escaped name"', ',"zz":[1,2]', ',"f":2.5', ',"f":"2.5"']
KEYS = ['{"id":%d}', '{"id":%d,"id":1}', '{ "id" : %d }', '{"\\u0069d":%d}', '{"id":%d,"x":1e400}', '{"id":%d.0}']

scanner_message = st.fixed_dictionaries(
    {
        "id": st.integers(1, 4),
        "op": st.sampled_from(["c", "u", "d", "r"]),
        "f": st.sampled_from(NUMBERS),
        "v": st.sampled_from(STRINGS),
        "extra": st.sampled_from(EXTRAS),
        "image_extra": st.sampled_from(IMAGE_EXTRAS),
        "extra_source": st.sampled_from(["", ',"xmin":1E2', ',"table":"t"', ',"ts_ms":1.5E3', ',"lsn":12,"lsn":13']),
        "key": st.sampled_from(KEYS),
        "spaced": st.booleans(),
    }
)
SCANNER_FIELDS = [
    INT64,
    {"type": "double", "optional": True, "field": "f"},
    {"type": "string", "optional": True, "field": "v"},
]


def _scanner_record(prefix: bytes, key_prefix: bytes, m: dict[str, Any], lsn: int) -> tuple[bytes, bytes]:
    sep, colon = (" , ", " : ") if m["spaced"] else (",", ":")
    image = f'{{"id"{colon}{m["id"]}{sep}"f"{colon}{m["f"]}{sep}"v"{colon}{m["v"]}{m["image_extra"]}}}'
    before, after = (image, "null") if m["op"] == "d" else ("null", image)
    source = (
        f'{{"ts_ms":{1000 + lsn},"schema":"public","table":"t","sequence":"[\\"{lsn}\\",\\"{lsn}\\"]",'
        f'"lsn":{lsn}{m["extra_source"]}}}'
    )
    payload = (
        f'{{"before"{colon}{before}{sep}"after"{colon}{after}{sep}"source"{colon}{source}{sep}'
        f'"transaction":{{"id":"1","total_order":1,"data_collection_order":{lsn % 3}}}{sep}'
        f'"op"{colon}"{m["op"]}"{m["extra"]}}}'
    )
    return key_prefix + (m["key"] % m["id"]).encode() + b"}", prefix + payload.encode() + b"}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    messages=st.lists(scanner_message, min_size=1, max_size=30),
    polls=st.lists(st.integers(1, 12), min_size=1, max_size=6),
)
def test_the_scanner_reads_what_orjson_reads_and_leaves_what_it_refuses(
    fast: Extension, messages: list[dict[str, Any]], polls: list[int]
) -> None:
    prefix, key_prefix = _small_table(SCANNER_FIELDS, "t")
    first = key_prefix + b'{"id":1}}', _message(prefix, "c", 1, {"f": 1.5, "v": "x"}, 4)  # teaches the shape
    records = _records([first, *(_scanner_record(prefix, key_prefix, m, 8 * (i + 1)) for i, m in enumerate(messages))])
    _same(records, polls, fast)


def test_exponents_surrogate_pairs_whitespace_and_duplicate_names_stay_on_the_fast_path(fast: Extension) -> None:
    prefix, key_prefix = _small_table(SCANNER_FIELDS, "t")
    plain = {"id": 1, "op": "u", "f": "1.25", "v": '"plain"', "extra": "", "image_extra": "", "extra_source": ""}
    variants = [
        {"f": "1.0E16"},
        {"f": "-2.2250738585072014E-308"},
        {"v": '"\\ud83d\\ude00 smile"'},
        {"spaced": True},
        {"extra": ',"op":"c"'},
        {"image_extra": ',"v":"the last one"'},
        {"extra": ',"after":{"id":1,"f":0.5,"v":"later"}'},
        {"extra_source": ',"xmin":1E2'},
        {"key": '{"id":%d,"id":1}'},
    ]
    messages = [{"spaced": False, "key": '{"id":%d}', **plain, **v} for v in variants]
    first = key_prefix + b'{"id":1}}', _message(prefix, "c", 1, {"f": 1.5, "v": "x"}, 4)
    records = _records([first, *(_scanner_record(prefix, key_prefix, m, 8 * (i + 1)) for i, m in enumerate(messages))])
    decoder = _same(records, [20], fast)
    assert decoder.decoded == len(variants), (decoder.decoded, decoder.left)


def test_a_staged_flush_is_joined_as_the_staging_writer_writes_it(fast: Extension) -> None:
    """staged_text joins a flush the fast path staged whole; it reads each version at flush time (a
    backfill handover may have raised it) and leaves what it cannot print as Python does."""
    records = _stream([("c", i, PLAIN_ROW) for i in range(1, 12)] + [("d", 3, PLAIN_ROW)])
    _, events = _buffered(records, fast)
    staged = [e for e in events if e.staged is not None]
    assert len(staged) == 10  # c2..c11, the delete of 3 in its create's place
    columns = staged[0].schema.columns
    writer = StagingWriter(columns)

    staged[2].version = new_tuple(Version, (staged[2].version.commit_lsn, 10**12))  # raised by a handover
    staged[3].commit_ts_ms = None
    assert fast.staged_text(staged, columns) == "".join(writer.line(e) + "\n" for e in staged)

    for odd in (10**40, True):  # beyond i128; a bool prints True in Python
        staged[4].version = new_tuple(Version, (odd, 1))
        assert fast.staged_text(staged, columns) is None
        assert staging_text(staged, columns) == ("".join(writer.line(e) + "\n" for e in staged), [])
    assert fast.staged_text([*staged, events[0]], columns) is None  # the first event: the Python decoder's


def test_bytea_intervals_and_micro_durations_are_the_extensions_where_python_reads_them_alike(
    fast: Extension,
) -> None:
    """binary.handling.mode=bytes, interval.handling.mode=string and numeric: the extension writes
    these kinds, and leaves what it is not sure of (non-canonical base64, another interval form,
    a duration beyond int64 or of another JSON type) to the Python decoder."""
    fields = [
        INT64,
        {"type": "bytes", "optional": True, "field": "b"},
        {"type": "string", "optional": True, "name": "io.debezium.time.Interval", "field": "i"},
        {"type": "int64", "optional": True, "name": "io.debezium.time.MicroDuration", "field": "d"},
    ]
    prefix, key_prefix = _small_table(fields, "t")
    plain = {"b": "AAH/", "i": "P1Y2M3DT4H5M6.789S", "d": 0}
    handled = [
        {"b": "", "i": "P0Y0M0DT0H0M0S", "d": -1},
        {"b": "3q2+7w==", "i": "P-1Y-2M-3DT-4H-5M-6.789S", "d": 2**63 - 1},
        {"b": None, "i": "P0Y0M0DT0H0M-0.5S", "d": -(2**63)},
        {"b": "/w==", "i": "P0Y0M0DT0H0M1.1234567891234S", "d": None},
    ]
    left = [
        {"b": "AB==", "i": "P1Y", "d": 1},  # non-canonical base64: the Python decoder reads it
        {"b": "AA==", "i": "P\u0661Y0M0DT0H0M0S", "d": 1},  # an Arabic-Indic digit, which \\d matches
        {"b": "AA==", "i": "1 year", "d": 1},  # not Debezium's form: refused by Python, a dead letter
        {"b": "AA==", "i": None, "d": "2**64"},  # written as the number below (orjson writes 64 bits)
        {"b": "AA==", "i": None, "d": 1.5},
        {"b": "AA==", "i": None, "d": True},
        {"b": "AA==", "i": None, "d": "5"},
    ]
    rows = [plain, *handled, *left]
    messages = [
        (key_prefix + b'{"id":%d}}' % n, _message(prefix, "c", n, row, 8 * n).replace(b'"2**64"', b"%d" % 2**64))
        for n, row in enumerate(rows, 1)
    ]
    decoder = _same(_records(messages), [3, 20], fast)
    assert (decoder.decoded, decoder.left) == (len(handled), len(left))
