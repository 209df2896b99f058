"""Per-table compaction: newest version wins per key, TOAST placeholders survive, truncates cut."""

from __future__ import annotations

from typing import Any

import orjson

from cdc.buffer import UNAVAILABLE, Buffer
from cdc.events import ChangeEvent, Column, Op, Origin, TableId, TableSchema, Version

TABLE = TableId("public", "t")
KEYED = TableSchema(
    TABLE,
    (Column("id", "integer", False, False), Column("big", "text", True, True), Column("n", "integer", True, False)),
    ("id",),
)
UNKEYED = TableSchema(TableId("public", "log"), KEYED.columns, ())


def event(
    op: Op, key: int | None, v: int, after: dict[str, Any] | None = None, schema: TableSchema = KEYED
) -> ChangeEvent:
    image = after if after is not None else ({"id": key, "big": f"b{v}", "n": v} if op is not Op.DELETE else None)
    return ChangeEvent(
        op=op,
        table=schema.table,
        schema=schema,
        key=None if key is None else (key,),
        before={"id": key} if op is Op.DELETE else None,
        after=image,
        version=Version(v, v),
        commit_ts_ms=v,
        origin=Origin("topic", 0, v),
        size=100,
    )


def survivors(buffer: Buffer, table: TableId = TABLE) -> list[tuple[str, Any, int]]:
    batch = buffer.tables[table]
    return [(e.op.value, e.key, e.version.lsn) for e in batch.events()]


def test_newest_event_per_key_wins() -> None:
    buffer = Buffer()
    for e in [event(Op.CREATE, 1, 1), event(Op.UPDATE, 1, 2), event(Op.CREATE, 2, 3), event(Op.DELETE, 1, 4)]:
        buffer.add(e)
    assert survivors(buffer) == [("d", (1,), 4), ("c", (2,), 3)]
    assert len(buffer) == 4 and buffer.bytes == 400


def test_an_older_replayed_event_never_replaces_a_newer_one() -> None:
    buffer = Buffer()
    buffer.add(event(Op.UPDATE, 1, 5))
    buffer.add(event(Op.UPDATE, 1, 3))  # Debezium replay after a connector restart
    assert survivors(buffer) == [("u", (1,), 5)]


def test_unchanged_toast_placeholder_is_filled_from_the_replaced_image() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1, {"id": 1, "big": "the big value", "n": 1}))
    buffer.add(event(Op.UPDATE, 1, 2, {"id": 1, "big": UNAVAILABLE, "n": 2}))
    buffer.add(event(Op.UPDATE, 1, 3, {"id": 1, "big": UNAVAILABLE, "n": 3}))
    (kept,) = buffer.tables[TABLE].events()
    assert kept.after == {"id": 1, "big": "the big value", "n": 3}


def test_placeholder_without_an_earlier_image_in_the_batch_stays_for_the_merge() -> None:
    buffer = Buffer()
    buffer.add(event(Op.UPDATE, 1, 2, {"id": 1, "big": UNAVAILABLE, "n": 2}))
    (kept,) = buffer.tables[TABLE].events()
    assert kept.after is not None and kept.after["big"] == UNAVAILABLE


def test_a_delete_in_between_does_not_leak_its_image_into_a_reinsert() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1, {"id": 1, "big": "old", "n": 1}))
    buffer.add(event(Op.DELETE, 1, 2))
    buffer.add(event(Op.CREATE, 1, 3, {"id": 1, "big": "new", "n": 3}))
    (kept,) = buffer.tables[TABLE].events()
    assert kept.op is Op.CREATE and kept.after == {"id": 1, "big": "new", "n": 3}


def test_truncate_drops_older_rows_and_keeps_newer_ones() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1))
    buffer.add(event(Op.CREATE, 2, 5))
    truncate = event(Op.TRUNCATE, None, 3, after={})
    truncate.after = None
    buffer.add(truncate)
    buffer.add(event(Op.CREATE, 3, 4))
    batch = buffer.tables[TABLE]
    assert batch.truncated_at == Version(3, 3)
    assert sorted(e.key for e in batch.events() if e.key) == [(2,), (3,)]


def test_table_without_key_keeps_every_event_in_order() -> None:
    buffer = Buffer()
    events = [event(Op.CREATE, None, 1, schema=UNKEYED), event(Op.CREATE, None, 2, schema=UNKEYED)]
    events.append(event(Op.DELETE, None, 3, schema=UNKEYED))
    for e in events:
        buffer.add(e)
    assert [e.version.lsn for e in buffer.tables[UNKEYED.table].events()] == [1, 2, 3]


def test_clear_forgets_everything() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1))
    buffer.clear()
    assert not buffer.tables and len(buffer) == 0 and buffer.bytes == 0


def key_change(old: int, new: int, v: int, body: str) -> tuple[ChangeEvent, ChangeEvent]:
    """Debezium's two halves of `UPDATE ... SET id = new WHERE id = old`."""
    delete = event(Op.DELETE, old, v)
    delete.moves_away = True
    create = event(Op.CREATE, new, v + 1, {"id": new, "big": body, "n": v + 1})
    create.old_key = (old,)
    return delete, create


def test_a_key_change_keeps_the_unchanged_toasted_value_of_the_old_key() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1, {"id": 1, "big": "the big value", "n": 1}))
    buffer.add(event(Op.UPDATE, 1, 2, {"id": 1, "big": UNAVAILABLE, "n": 2}))  # filled: still the big value
    delete, create = key_change(1, 9, 3, UNAVAILABLE)
    buffer.add(delete)
    assert buffer.open_moves == {(TABLE, (1,))}  # half a key change: the flush should wait for the rest
    buffer.add(create)
    assert buffer.open_moves == set()
    rows = buffer.tables[TABLE].rows
    assert rows[(9,)].after == {"id": 9, "big": "the big value", "n": 4}
    assert rows[(1,)].op is Op.DELETE


def test_a_key_change_of_a_row_not_in_the_batch_leaves_the_placeholder_for_the_warehouse() -> None:
    buffer = Buffer()
    delete, create = key_change(1, 9, 3, UNAVAILABLE)
    buffer.add(delete)
    buffer.add(create)
    assert buffer.tables[TABLE].rows[(9,)].after == {"id": 9, "big": UNAVAILABLE, "n": 4}
    assert buffer.tables[TABLE].rows[(9,)].old_key == (1,)


def test_a_key_change_with_a_changed_toasted_value_keeps_the_new_value() -> None:
    buffer = Buffer()
    buffer.add(event(Op.CREATE, 1, 1, {"id": 1, "big": "old", "n": 1}))
    delete, create = key_change(1, 9, 3, "new")
    buffer.add(delete)
    buffer.add(create)
    assert buffer.tables[TABLE].rows[(9,)].after == {"id": 9, "big": "new", "n": 4}


def test_every_placeholder_form_is_found_in_the_message_text() -> None:
    from cdc.decode.toast import _CODES, _STRINGS, UNAVAILABLE, maybe_unavailable

    forms = [*_STRINGS, _CODES, [UNAVAILABLE], {UNAVAILABLE: UNAVAILABLE}]
    for form in forms:
        text = orjson.dumps({"after": {"id": 1, "v": form}})
        assert maybe_unavailable(text), form
    assert not maybe_unavailable(orjson.dumps({"after": {"id": 1, "v": "__debezium_unavailable"}}))
