"""Staging rows in COPY text format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cdc.decode.envelope import EnvelopeDecoder
from cdc.decode.toast import UNAVAILABLE
from cdc.events import ChangeEvent, Column, Op, Origin, TableId, TableSchema, Version
from cdc.warehouse.binary_copy import binary_codes, code_of
from cdc.warehouse.copy import escape, staging_line, staging_text, text_array

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SCHEMA = TableSchema(
    TableId("s", "t"),
    (Column("id", "integer", False, False), Column("ref", "uuid", False, False), Column("body", "text", True, True)),
    ("id",),
)


def change(op: Op, before: dict[str, Any] | None, after: dict[str, Any] | None) -> ChangeEvent:
    return ChangeEvent(op, SCHEMA.table, SCHEMA, (1,), before, after, Version(7, 9), 1000, Origin("t", 0, 0), 10)


def test_escape_handles_copy_specials_only() -> None:
    assert escape("plain ü 😀") == "plain ü 😀"
    assert escape("a\\b\tc\nd\re") == "a\\\\b\\tc\\nd\\re"


def test_insert_line_has_values_then_version_op_time() -> None:
    line = staging_line(
        change(Op.CREATE, None, {"id": 1, "ref": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "body": None}), SCHEMA.columns
    )
    assert line.split("\t") == ["1", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "\\N", "7", "9", "c", "1000", "\\N"]


def test_delete_writes_only_the_key() -> None:
    # With REPLICA IDENTITY DEFAULT, Debezium fills the old image's other columns with type defaults.
    line = staging_line(change(Op.DELETE, {"id": 1, "ref": "", "body": ""}, None), SCHEMA.columns)
    assert line.split("\t")[:3] == ["1", "\\N", "\\N"]


def test_unchanged_toast_value_is_listed_not_written() -> None:
    line = staging_line(change(Op.UPDATE, None, {"id": 1, "ref": "x", "body": UNAVAILABLE}), SCHEMA.columns)
    fields = line.split("\t")
    assert fields[2] == "\\N" and fields[-1] == '{"body"}'


def test_text_array_quotes_every_element() -> None:
    assert text_array(['a"b', "c\\d", "e f"]) == '{"a\\"b","c\\\\d","e f"}'


def test_a_value_its_encoder_cannot_read_rejects_only_its_row() -> None:
    def strict_int(value: object) -> str:
        if type(value) is not int:
            raise TypeError(f"expected an integer, got {type(value).__name__}")
        return str(value)

    schema = TableSchema(TableId("s", "t"), (Column("id", "integer", False, False, strict_int),), ("id",))

    def row(value: object) -> ChangeEvent:
        return ChangeEvent(
            Op.CREATE, schema.table, schema, (1,), None, {"id": value}, Version(1, 1), 1, Origin("t", 0, 0), 1
        )

    good, bad = row(1), row("x")
    text, rejected = staging_text([good, bad, row(2)], schema.columns)
    assert [line.split("\t")[0] for line in text.splitlines()] == ["1", "2"]
    assert rejected == [
        (
            bad,
            "column 'id' of s.t: the value 'x' is not a valid integer as Debezium encodes it "
            "(TypeError: expected an integer, got str)",
        )
    ]
    assert staging_text([good], schema.columns) == (text.splitlines(keepends=True)[0], [])


def _recorded_events(directory: str) -> list[ChangeEvent]:
    decoder = EnvelopeDecoder()
    events = []
    for line in (FIXTURES / directory / "fx.every_type.jsonl").read_text(encoding="utf-8").splitlines():
        m = json.loads(line)
        origin = Origin(m["topic"], m["partition"], m["offset"])
        event = decoder.decode(origin, _bytes(m["key"]), _bytes(m["value"]))
        if event is not None and event.op is Op.CREATE:
            events.append(event)
    return events


def _bytes(text: str | None) -> bytes | None:
    return None if text is None else text.encode()


def test_each_event_is_encoded_by_its_own_schema_when_a_batch_mixes_two() -> None:
    """A batch spanning the connector's switch from decimal.handling.mode=precise to string: the
    old events' base64 numerics must be read as base64, not as the new schema's decimal text (a
    base64 text of digits alone would pass for a number, and be stored wrong)."""
    old, new = _recorded_events("debezium_precise"), _recorded_events("debezium")
    assert old[0].schema.columns != new[0].schema.columns  # two schemas, one table
    alone, rejected = staging_text(old, old[0].schema.columns)
    assert rejected == []

    mixed, rejected = staging_text(old + new, new[0].schema.columns)

    assert rejected == []
    old_names = [c.name for c in old[0].schema.columns]
    new_names = [c.name for c in new[0].schema.columns]  # one more: a column added since
    for alone_line, mixed_line in zip(alone.splitlines(), mixed.splitlines()[: len(old)], strict=True):
        by_name = dict(zip(new_names, mixed_line.split("\t"), strict=False))
        assert dict(zip(old_names, alone_line.split("\t"), strict=False)) == {n: by_name[n] for n in old_names}
        assert by_name["c_numeric_array"] == "\\N"
    assert dict(zip(new_names, mixed.splitlines()[0].split("\t"), strict=False))["c_numeric"] == (
        "3.14159265358979323846"
    )


def test_each_column_type_has_a_binary_code_or_the_table_is_copied_as_text() -> None:
    columns = [Column(n, t, True, False) for n, t in (("a", "bigint"), ("b", "varchar(20)"), ("c", "numeric(12,2)"))]
    columns += [Column("d", "timestamp(3) with time zone", True, False), Column("e", "jsonb", True, True)]
    # then the staging metadata: version, op, commit time, the unchanged-TOAST list (NULL only)
    meta = ("int8", "int8", "text", "int8", "null")
    assert binary_codes(columns) == ("int8", "text", "numeric", "timestamptz", "jsonb", *meta)
    assert binary_codes([*columns, Column("p", "point", True, False)]) is None  # no code: text
    assert code_of("numeric(5,-2)") == "numeric"
    assert code_of("timestamp without time zone") == "timestamp"
    assert code_of("interval") is None
    assert code_of("varchar") is None  # no such type is mapped; what is not known goes as text
