"""Staging rows in COPY text format."""

from __future__ import annotations

from typing import Any

from cdc.decode.toast import UNAVAILABLE
from cdc.events import ChangeEvent, Column, Op, Origin, TableId, TableSchema, Version
from cdc.warehouse.copy import escape, staging_line, staging_text, text_array

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
