"""The recorded Debezium messages (tests/fixtures/debezium, made by tests/fixtures/record.py on the
real stack) cover what the decoder must handle: every op, tombstones, truncates, snapshot reads,
unchanged-TOAST placeholders, a table without a primary key, and every common column type."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures" / "debezium"


def messages(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


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
    value = json.loads(messages("fx.every_type")[0]["value"])
    after = next(f for f in value["schema"]["fields"] if f["field"] == "after")
    names = {f["field"]: f.get("name") or f["type"] for f in after["fields"]}
    assert {
        "io.debezium.data.VariableScaleDecimal",
        "org.apache.kafka.connect.data.Decimal",
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
    source_types = {f["field"]: f["parameters"]["__debezium.source.column.type"] for f in after["fields"]}
    assert source_types["c_money"] == "MONEY" and source_types["c_enum"] == "MOOD"


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
