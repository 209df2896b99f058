"""`cdc sync`'s decode -> buffer -> staging text with the compiled fast path on, against the Python
path alone, byte for byte: every recorded Debezium message, and generated streams (random ops and
keys, replays, unchanged-TOAST placeholders, primary-key changes with their headers, tombstones,
hostile strings, extreme numerics and timestamps, malformed messages), read in polls of random
sizes. What the warehouse would be sent (each batch's events, its staging rows, truncates, dead
letters with their reasons) must be identical."""

from __future__ import annotations

import base64
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
from cdc.events import ChangeEvent, Origin, new_tuple
from cdc.fastpath import Extension
from cdc.sync.consume import Record
from cdc.warehouse.copy import staging_text

FIXTURES = Path(__file__).parent.parent / "fixtures"
DDL_TOPIC = "cdc.cdc.schema_ddl"


def _through(records: list[Record], polls: list[int], fast: Extension | None) -> tuple[Any, FastDecoder | None]:
    """What sync's _take makes of the records (read in polls of these sizes): every batch the
    buffer would hand the warehouse, described in full, and the dead letters."""
    decoder = EnvelopeDecoder()
    fast_decoder = FastDecoder(decoder, fast, frozenset({DDL_TOPIC}), min_run=1) if fast is not None else None
    buffer = Buffer()
    dead: list[tuple[Origin, str]] = []
    start = 0
    sizes = iter(polls)
    while start < len(records):
        poll = records[start : start + max(1, next(sizes, 16))]
        start += len(poll)
        ready = fast_decoder.decode(poll) if fast_decoder is not None else None
        for i, record in enumerate(poll):
            event = ready[i] if ready is not None else None
            if event is None:
                origin = new_tuple(Origin, record[:3])
                try:
                    event = decoder.decode(origin, record.key, record.value, record.headers)
                except PoisonMessage as exc:
                    dead.append((origin, str(exc)))
                    continue
            if event is not None:
                buffer.add(event)
    return ([_describe(batch) for batch in buffer.batches()], sorted(buffer.open_moves), dead), fast_decoder


def _describe(batch: Any) -> dict[str, Any]:
    events: list[ChangeEvent] = batch.events()
    text, refused = staging_text(events, batch.schema.columns)
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
    )


def _same(records: list[Record], polls: list[int], fast: Extension) -> FastDecoder:
    expected, _ = _through(records, polls, None)
    got, decoder = _through(records, polls, fast)
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
@given(steps=st.lists(step, min_size=1, max_size=60), polls=st.lists(st.integers(1, 20), min_size=1, max_size=8))
def test_generated_streams_make_the_same_batches(fast: Extension, steps: list[Any], polls: list[int]) -> None:
    records = _stream(steps)
    _same(records + records, polls, fast)


def test_a_plain_stream_is_decoded_by_the_fast_path(fast: Extension) -> None:
    row = {
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
    records = _stream([(op, i % 7 + 1, row) for i, op in enumerate(["c", "u", "u", "d"] * 50)])
    decoder = _same(records, [100], fast)
    # The first message teaches the decoder the shape (in Python); every message after it is the extension's.
    assert (decoder.decoded, decoder.left) == (199, 0)


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
    described, _ = _through(records, [1] * len(records), fast)
    lines = described[0][0]["staging"].split("\n")[:-1]
    assert [line.split("\t")[0] for line in lines] == ["1", "2", "12", "3", "13"]
    assert [line.split("\t")[6] for line in lines] == ["keep me", "\\N", "keep me", "\\N", "keep me"]
