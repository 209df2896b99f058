"""The recorded Debezium messages (tests/fixtures/debezium, made by tests/fixtures/record.py on the
real stack) cover what the decoder must handle: every op, tombstones, truncates, snapshot reads,
unchanged-TOAST placeholders, a table without a primary key, and every common column type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"
PRECISE_FIXTURES = FIXTURES.parent / "debezium_precise"  # recorded with decimal.handling.mode=precise


def messages(name: str, directory: Path = FIXTURES) -> list[dict[str, Any]]:
    lines = (directory / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


def after_fields(message: dict[str, Any]) -> dict[str, dict[str, Any]]:
    value = json.loads(message["value"])
    after = next(f for f in value["schema"]["fields"] if f["field"] == "after")
    return {f["field"]: f for f in after["fields"]}


def payloads(name: str) -> list[dict[str, Any] | None]:
    return [None if m["value"] is None else json.loads(m["value"])["payload"] for m in messages(name)]


def test_every_op_and_tombstones_are_recorded() -> None:
    ops = {
        p["op"] if p else "tombstone" for name in ("fx.every_type", "fx.no_pk", "fx.pk_change") for p in payloads(name)
    }
    assert ops == {"c", "u", "d", "r", "t", "tombstone"}


def test_primary_key_change_is_a_delete_then_a_create() -> None:
    streamed = [p for p in payloads("fx.pk_change") if p and p["op"] in ("c", "d")]
    assert [(p["op"], (p["after"] or p["before"])["id"]) for p in streamed][:2] == [("d", 1), ("c", 2)]


def test_snapshot_reads_carry_no_lsn() -> None:
    reads = [p for p in payloads("fx.pk_change") if p and p["op"] == "r"]
    assert reads and all(p["source"]["snapshot"] == "incremental" for p in reads)
    assert all(p["source"]["lsn"] is None for p in reads)


def test_unchanged_toast_value_is_a_placeholder() -> None:
    updates = [p for p in payloads("fx.toasted") if p and p["op"] == "u"]
    assert updates and all(p["after"]["big"] == "__debezium_unavailable_value" for p in updates)
    created = next(p for p in payloads("fx.toasted") if p and p["op"] == "c")
    assert len(created["after"]["big"]) == 640 * 32


def test_table_without_primary_key_has_full_before_images_and_no_key() -> None:
    recorded = messages("fx.no_pk")
    changes = [json.loads(m["value"])["payload"] for m in recorded if m["value"]]
    update = next(p for p in changes if p["op"] == "u")
    assert update["before"] == {"a": 1, "b": "one"}  # REPLICA IDENTITY FULL
    assert all(m["key"] is None for m in recorded)


def test_every_common_column_type_is_recorded() -> None:
    fields = after_fields(messages("fx.every_type")[0])
    names = {name: f.get("name") or f["type"] for name, f in fields.items()}
    assert {
        "io.debezium.time.Date",
        "io.debezium.time.Time",
        "io.debezium.time.MicroTime",
        "io.debezium.time.ZonedTime",
        "io.debezium.time.Timestamp",
        "io.debezium.time.MicroTimestamp",
        "io.debezium.time.ZonedTimestamp",
        "io.debezium.time.Interval",
        "io.debezium.data.Uuid",
        "io.debezium.data.Json",
        "io.debezium.data.Xml",
        "io.debezium.data.Enum",
        "io.debezium.data.Bits",
        "io.debezium.data.geometry.Point",
        "array",
        "bytes",
    } <= set(names.values())
    source_types = {name: f["parameters"]["__debezium.source.column.type"] for name, f in fields.items()}
    assert source_types["c_money"] == "MONEY" and source_types["c_enum"] == "MOOD"


NUMERIC_COLUMNS = ("c_numeric", "c_numeric_10_2", "c_money", "c_numeric_array")


def test_numeric_and_money_are_recorded_as_strings() -> None:
    """decimal.handling.mode=string: plain strings, told apart by their source type, length and scale."""
    fields = after_fields(messages("fx.every_type")[0])
    shapes = {
        name: (fields[name]["type"], fields[name].get("name"), fields[name].get("items"), fields[name]["parameters"])
        for name in NUMERIC_COLUMNS
    }
    source = "__debezium.source.column."
    assert {name: (kind, logical, items) for name, (kind, logical, items, _) in shapes.items()} == {
        "c_numeric": ("string", None, None),
        "c_numeric_10_2": ("string", None, None),
        "c_money": ("string", None, None),
        "c_numeric_array": ("array", None, {"type": "string", "optional": True}),
    }
    assert {name: tuple(p[source + k] for k in ("type", "length", "scale")) for name, (*_, p) in shapes.items()} == {
        "c_numeric": ("NUMERIC", "131089", "0"),
        "c_numeric_10_2": ("NUMERIC", "10", "2"),
        "c_money": ("MONEY", "2147483647", "0"),
        "c_numeric_array": ("_NUMERIC", "131089", "0"),
    }


def test_numeric_special_values_are_recorded_by_debeziums_enum_names() -> None:
    rows = {p["after"]["id"]: p["after"] for p in payloads("fx.every_type") if p and p["op"] == "c"}
    assert {i: (rows[i]["c_numeric"], rows[i]["c_numeric_10_2"], rows[i]["c_numeric_38_10"]) for i in (4, 5, 7)} == {
        4: ("NAN", "NAN", None),
        5: ("POSITIVE_INFINITY", None, None),
        7: ("NEGATIVE_INFINITY", None, "NAN"),
    }
    # an array holding NaN or ±Infinity cannot be read by Debezium (its JDBC array parser): null
    assert [rows[i]["c_numeric_array"] for i in (4, 7)] == [None, None]
    assert rows[5]["c_numeric_array"] == ["1.50", None, "0.00", "0.000001000", "100000000000000000000"]


def test_the_precise_mode_recording_is_kept() -> None:
    """Messages of the old connector setting (decimal.handling.mode=precise), which topics may still hold."""
    fields = after_fields(messages("fx.every_type", PRECISE_FIXTURES)[0])
    assert {name: fields[name].get("name") for name in NUMERIC_COLUMNS[:3]} == {
        "c_numeric": "io.debezium.data.VariableScaleDecimal",
        "c_numeric_10_2": "org.apache.kafka.connect.data.Decimal",
        "c_money": "org.apache.kafka.connect.data.Decimal",
    }
    rows = [json.loads(m["value"])["payload"]["after"] for m in messages("fx.every_type", PRECISE_FIXTURES)[3:5]]
    assert [(r["id"], r["c_numeric"]) for r in rows] == [(4, None), (5, None)]  # NaN, Infinity: precise cannot


def test_transaction_metadata_and_heartbeats_are_recorded() -> None:
    statuses = {json.loads(m["value"])["payload"]["status"] for m in messages("transaction")}
    assert statuses == {"BEGIN", "END"}
    beat = json.loads(messages("heartbeat")[0]["value"])
    assert beat["schema"]["name"] == "io.debezium.connector.common.Heartbeat"


def test_quoted_mixed_case_unicode_names_are_recorded() -> None:
    (created,) = payloads("fx.Mixed_Case__Quoted___")
    assert created is not None
    assert created["source"]["table"] == 'Mixed Case "Quoted" ü'
    assert created["after"] == {"Id": 1, "select": "reserved word column", "two words": "spaces"}
