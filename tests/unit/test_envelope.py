"""Decoding recorded Debezium messages into change events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cdc.decode.envelope import EnvelopeDecoder, PoisonMessage, version_of
from cdc.events import Op, Origin, TableId, Version

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
PRECISE_FIXTURES = FIXTURES.parent / "debezium_precise"  # recorded with decimal.handling.mode=precise


def recorded(name: str, directory: Path = FIXTURES) -> list[tuple[Origin, bytes | None, bytes | None]]:
    out = []
    for line in (directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        key = None if m["key"] is None else m["key"].encode()
        value = None if m["value"] is None else m["value"].encode()
        out.append((Origin(m["topic"], m["partition"], m["offset"]), key, value))
    return out


def test_every_recorded_change_decodes() -> None:
    decoder = EnvelopeDecoder()
    events = [decoder.decode(*m) for m in recorded("fx.every_type")]
    changes = [e for e in events if e is not None]
    assert [(e.op, e.key) for e in changes] == [
        (Op.CREATE, (1,)),
        (Op.CREATE, (2,)),
        (Op.CREATE, (3,)),
        (Op.CREATE, (4,)),
        (Op.CREATE, (5,)),
        (Op.CREATE, (7,)),
        (Op.CREATE, (6,)),
        (Op.UPDATE, (1,)),
        (Op.DELETE, (3,)),
    ]
    assert events[-1] is None  # the tombstone after the delete
    first = changes[0]
    assert first.table == TableId("fx", "every_type")
    assert first.schema.key == ("id",)
    assert len(first.schema.columns) == 41
    assert first.schema.column("c_numeric_10_2") is not None
    assert [e.version for e in changes] == sorted(e.version for e in changes)
    numeric = {c.name: c for c in first.schema.columns if c.name in ("c_numeric", "c_numeric_10_2", "c_numeric_array")}
    assert {n: c.pg_type for n, c in numeric.items()} == {
        "c_numeric": "numeric",
        "c_numeric_10_2": "numeric(10,2)",
        "c_numeric_array": "numeric[]",
    }
    specials = {e.key: e.after and numeric["c_numeric"].encode(e.after["c_numeric"]) for e in changes[3:6]}
    assert specials == {(4,): "NaN", (5,): "Infinity", (7,): "-Infinity"}


def test_messages_recorded_in_precise_mode_still_decode() -> None:
    """Topics written before the connector moved to decimal.handling.mode=string hold such messages,
    and a restart replays them."""
    decoder = EnvelopeDecoder()
    changes = [e for m in recorded("fx.every_type", PRECISE_FIXTURES) if (e := decoder.decode(*m)) is not None]
    assert [(e.op, e.key) for e in changes] == [
        *((Op.CREATE, (i,)) for i in range(1, 7)),
        (Op.UPDATE, (1,)),
        (Op.DELETE, (3,)),
    ]
    columns = {c.name: c for c in changes[0].schema.columns}
    assert len(columns) == 40
    first, second = (e.after or {} for e in changes[:2])
    assert [columns[n].encode(first[n]) for n in ("c_numeric", "c_numeric_10_2", "c_money")] == [
        "3.14159265358979323846",
        "12345.67",
        "12.34",
    ]
    assert (
        columns["c_numeric"].encode(second["c_numeric"])
        == "123456789012345678901234567890.12345678901234567890123456789"
    )
    assert [(e.after or {})["c_numeric"] for e in changes[3:5]] == [None, None]  # NaN, Infinity: precise has no way


def test_the_schema_is_interpreted_once_per_distinct_text() -> None:
    decoder = EnvelopeDecoder()
    for message in recorded("fx.every_type"):
        decoder.decode(*message)
    assert len(decoder._values) == 1
    assert len(decoder._keys) == 1
    for message in recorded("fx.every_type", PRECISE_FIXTURES):  # one topic, its schema changed
        decoder.decode(*message)
    assert len(decoder._values) == 2
    assert len(decoder._keys) == 1


def test_truncate_snapshot_read_and_keyless_tables() -> None:
    decoder = EnvelopeDecoder()
    no_pk = [e for m in recorded("fx.no_pk") if (e := decoder.decode(*m)) is not None]
    assert [e.op for e in no_pk] == [Op.CREATE, Op.CREATE, Op.CREATE, Op.UPDATE, Op.DELETE, Op.DELETE, Op.TRUNCATE]
    assert all(e.key is None and e.schema.key == () for e in no_pk)
    reads = [e for m in recorded("fx.pk_change") if (e := decoder.decode(*m)) is not None and e.op is Op.READ]
    assert reads and all(e.version > Version(0, 0) for e in reads)


def test_each_change_carries_its_order_among_its_transactions_changes_of_the_table() -> None:
    """What tells apart the rows of one COPY batch, which share an LSN; reads have no transaction."""
    decoder = EnvelopeDecoder()
    no_pk = [e for m in recorded("fx.no_pk") if (e := decoder.decode(*m)) is not None]
    assert [e.order for e in no_pk] == [1, 2, 3, 4, 5, 6, 1]  # the truncate is a transaction of its own
    moved = [e for m in recorded("fx.pk_change") if (e := decoder.decode(*m)) is not None]
    assert [(e.op, e.order) for e in moved] == [
        (Op.DELETE, 1),
        (Op.CREATE, 2),
        (Op.CREATE, 3),
        (Op.READ, None),
        (Op.READ, None),
        (Op.READ, None),
    ]


def test_quoted_names_come_through() -> None:
    (event,) = [e for m in recorded("fx.Mixed_Case__Quoted___") if (e := EnvelopeDecoder().decode(*m))]
    assert event.table == TableId("fx", 'Mixed Case "Quoted" ü')
    assert [c.name for c in event.schema.columns] == ["Id", "select", "two words"]
    assert event.key == (1,)


def test_heartbeats_and_transaction_metadata_carry_no_change() -> None:
    decoder = EnvelopeDecoder()
    assert all(decoder.decode(*m) is None for m in recorded("heartbeat") + recorded("transaction"))


def test_version_follows_the_sequence_not_the_lsn() -> None:
    # Written earlier (lsn 100) but committed after the transaction whose commit was at 120.
    late = version_of({"sequence": '["120","100"]', "lsn": 100})
    early = version_of({"sequence": '["90","110"]', "lsn": 110})
    assert late > early
    assert version_of({"sequence": '[null,"7"]'}) == Version(0, 7)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (None, b"\xff\xfe", "not valid JSON"),
        (None, b'{"payload": {}}', "not a Debezium JSON message"),
        (None, b'{"schema": 1, "payload": {}}', "schema is not a JSON object"),
    ],
)
def test_poison_messages_say_why(key: bytes | None, value: bytes, reason: str) -> None:
    with pytest.raises(PoisonMessage, match=reason):
        EnvelopeDecoder().decode(Origin("t", 0, 0), key, value)


def test_unknown_op_and_missing_key_are_poison() -> None:
    origin, key, value = recorded("fx.every_type")[0]
    assert value is not None
    decoder = EnvelopeDecoder()
    decoder.decode(origin, key, value)
    with pytest.raises(PoisonMessage, match="unknown op 'x'"):
        decoder.decode(origin, key, value.replace(b'"op":"c"', b'"op":"x"'))
    with pytest.raises(PoisonMessage, match="missing key"):
        decoder.decode(origin, None, value)


def test_change_topics_pattern() -> None:
    import re

    from cdc.sync.consume import change_topics

    every = re.compile(change_topics("cdc"))
    assert every.match("cdc.shop.orders") and every.match("cdc.fx.Mixed_Case__Quoted___")
    assert not any(
        every.match(t) for t in ("cdc.transaction", "cdc.cdc.debezium_signal", "cdc.cdc.debezium_heartbeat", "cdcx.a.b")
    )
    some = re.compile(change_topics("cdc", ("shop.*", 'fx.Mixed Case "Quoted" ü')))
    assert some.match("cdc.shop.orders") and some.match("cdc.fx.Mixed_Case__Quoted___")
    assert not some.match("cdc.fx.every_type") and not some.match("cdc.shopx.a")


def test_a_key_change_names_the_old_key_from_debeziums_headers() -> None:
    """Header values as Debezium 3.4 writes them on the stack (SimpleHeaderConverter: the key
    payload as JSON); offsets 0 and 2 of the recording are the delete and create of id 1 -> 2.
    The create's TOASTed value is made a placeholder here (the recorded one was small)."""
    decoder = EnvelopeDecoder()
    messages = recorded("fx.pk_change")
    origin, key, value = messages[2]
    assert value is not None
    toasted = value.replace(b'"existed before capture"', b'"__debezium_unavailable_value"')
    delete = decoder.decode(*messages[0], [("__debezium.newkey", b'{"id":2}'), ("other", b"x")])
    create = decoder.decode(origin, key, toasted, lambda: [("__debezium.oldkey", b'{"id":1}')])  # confluent's form
    assert delete is not None and delete.op is Op.DELETE and delete.moves_away and delete.old_key is None
    assert create is not None and create.op is Op.CREATE and create.key == (2,) and create.old_key == (1,)
    assert not create.moves_away


def test_headers_are_read_only_where_a_key_change_could_matter() -> None:
    def untouchable() -> list[tuple[str, bytes | None]]:
        raise AssertionError("headers read for a create without placeholders")

    decoder = EnvelopeDecoder()
    create = decoder.decode(*recorded("fx.pk_change")[2], untouchable)
    assert create is not None and create.old_key is None and not create.moves_away


@pytest.mark.parametrize("header", [b"not json", b"[1]", b'{"other":1}'])
def test_an_unreadable_old_key_header_is_ignored_not_poison(header: bytes) -> None:
    origin, key, value = recorded("fx.pk_change")[2]
    assert value is not None
    toasted = value.replace(b'"existed before capture"', b'"__debezium_unavailable_value"')
    create = EnvelopeDecoder().decode(origin, key, toasted, [("__debezium.oldkey", header)])
    assert create is not None and create.old_key is None


def test_the_original_message_is_kept_byte_for_byte_for_dead_letters() -> None:
    decoder = EnvelopeDecoder()
    for origin, key, value in recorded("fx.every_type") + recorded("fx.toasted"):
        event = decoder.decode(origin, key, value)
        if event is not None:
            assert event.raw_key == key and event.raw_value == value
            assert event.raw_payload is not None and len(event.raw_payload) < len(value or b"")  # the schema is shared
    spaced = b'{ "schema": {"type": "struct", "name": "x.Envelope", "fields": [{"field": "after", "type": "struct", '
    spaced += b'"fields": [{"field": "id", "type": "int32"}]}]}, "payload": {"op": "c", "after": {"id": 1}, '
    spaced += b'"source": {"schema": "s", "table": "t"}}}'
    event = decoder.decode(Origin("t", 0, 0), None, spaced)  # not the converter's compact form
    assert event is not None and event.raw_value == spaced
