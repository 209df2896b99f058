"""diff: two shapes of a table -> the typed changes between them; Change.destructive and describe;
Shape's fingerprint and JSON; the renames the source's DDL log tells. Pure, no I/O. The last part
replays the event schemas Debezium sent (and the DDL log rows written) for each DDL step of
tests/fixtures/record_drift.py, through the real decoder."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import pytest

from cdc.decode.envelope import _row_columns
from cdc.events import Column, TableId, TableSchema
from cdc.schema.changes import Change, ColumnDef, Kind
from cdc.schema.classify import Shape, ddl_column_changes, ddl_renames, diff

C = ColumnDef
ID = C("id", "integer", optional=False)
NAME = C("name", "varchar(20)")
QTY = C("qty", "integer")
PRICE = C("price", "numeric(8,2)")


def shape(*columns: ColumnDef, key: tuple[str, ...] = ("id",)) -> Shape:
    return Shape(columns, key)


BASE = shape(ID, NAME, QTY, PRICE)


# --- diff, one kind at a time ---------------------------------------------------------------------


def test_no_change_is_no_changes() -> None:
    assert diff(BASE, shape(ID, NAME, QTY, PRICE)) == []


def test_column_added() -> None:
    status = C("status", "text")
    assert diff(BASE, shape(ID, NAME, QTY, PRICE, status)) == [Change(Kind.COLUMN_ADDED, "status", after=status)]


def test_column_added_with_a_known_default() -> None:
    status = C("status", "text", optional=False, default="'new'::text")
    assert diff(BASE, shape(ID, NAME, QTY, PRICE, status)) == [Change(Kind.COLUMN_ADDED, "status", after=status)]


def test_column_dropped() -> None:
    assert diff(BASE, shape(ID, NAME, PRICE)) == [Change(Kind.COLUMN_DROPPED, "qty", before=QTY)]


def test_a_rename_the_ddl_capture_saw_is_one_change_that_keeps_the_data() -> None:
    quantity = C("quantity", "integer")
    changes = diff(BASE, shape(ID, NAME, quantity, PRICE), renames={"qty": "quantity"})
    assert changes == [Change(Kind.COLUMN_RENAMED, "quantity", before=QTY, after=quantity)]
    assert [c.destructive for c in changes] == [False]


def test_a_rename_seen_only_in_event_schemas_is_a_drop_and_an_add() -> None:
    quantity = C("quantity", "integer")
    assert diff(BASE, shape(ID, NAME, quantity, PRICE)) == [
        Change(Kind.COLUMN_DROPPED, "qty", before=QTY),
        Change(Kind.COLUMN_ADDED, "quantity", after=quantity),
    ]


def test_a_renamed_and_widened_column_is_a_rename_and_a_type_change() -> None:
    quantity = C("quantity", "bigint")
    assert diff(BASE, shape(ID, NAME, quantity, PRICE), renames={"qty": "quantity"}) == [
        Change(Kind.COLUMN_RENAMED, "quantity", before=QTY, after=quantity),
        Change(Kind.TYPE_WIDENED, "quantity", before=QTY, after=quantity),
    ]


def test_renames_of_columns_that_are_not_there_change_nothing() -> None:
    assert diff(BASE, shape(ID, NAME, QTY, PRICE), renames={"gone": "also_gone"}) == []


def test_two_columns_swapping_names() -> None:
    a, b = C("a", "integer"), C("b", "text")
    swapped_a, swapped_b = C("b", "integer"), C("a", "text")
    assert diff(shape(ID, a, b), shape(ID, swapped_a, swapped_b), renames={"a": "b", "b": "a"}) == [
        Change(Kind.COLUMN_RENAMED, "b", before=a, after=swapped_a),
        Change(Kind.COLUMN_RENAMED, "a", before=b, after=swapped_b),
    ]


def test_a_rename_onto_the_name_of_a_dropped_column_drops_that_column() -> None:
    a, b = C("a", "integer"), C("b", "text")
    renamed = C("b", "integer")
    expected = [Change(Kind.COLUMN_DROPPED, "b", before=b), Change(Kind.COLUMN_RENAMED, "b", before=a, after=renamed)]
    assert diff(shape(ID, a, b), shape(ID, renamed), renames={"a": "b"}) == expected
    assert diff(shape(ID, b, a), shape(ID, renamed), renames={"a": "b"}) == expected  # the drop first either way


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        ("integer", "bigint", Kind.TYPE_WIDENED),
        ("integer", "smallint", Kind.TYPE_NARROWED),
        ("integer", "text", Kind.TYPE_INCOMPATIBLE),
    ],
)
def test_type_changed(old: str, new: str, kind: Kind) -> None:
    before, after = C("qty", old), C("qty", new)
    assert diff(shape(ID, before), shape(ID, after)) == [Change(kind, "qty", before=before, after=after)]


@pytest.mark.parametrize("optional", [True, False])
def test_nullability_changed_either_way(optional: bool) -> None:
    before, after = C("qty", "integer", optional=optional), C("qty", "integer", optional=not optional)
    assert diff(shape(ID, before), shape(ID, after)) == [
        Change(Kind.NULLABILITY_CHANGED, "qty", before=before, after=after)
    ]


def test_default_changed_when_both_defaults_are_known() -> None:
    before, after = C("qty", "integer", default="1"), C("qty", "integer", default="2")
    assert diff(shape(ID, before), shape(ID, after)) == [
        Change(Kind.DEFAULT_CHANGED, "qty", before=before, after=after)
    ]


def test_a_dropped_default_is_known_as_the_empty_string() -> None:
    before, after = C("qty", "integer", default="1"), C("qty", "integer", default="")
    assert diff(shape(ID, before), shape(ID, after)) == [
        Change(Kind.DEFAULT_CHANGED, "qty", before=before, after=after)
    ]


@pytest.mark.parametrize(("old", "new"), [(None, "1"), ("1", None), (None, None), ("1", "1")])
def test_no_default_change_when_either_default_is_unknown_or_both_are_equal(old: str | None, new: str | None) -> None:
    assert diff(shape(ID, C("qty", "integer", default=old)), shape(ID, C("qty", "integer", default=new))) == []


@pytest.mark.parametrize(
    ("old", "new", "detail"),
    [
        ((), ("id",), "primary key (none) -> (id)"),
        (("id",), (), "primary key (id) -> (none)"),
        (("id",), ("id", "name"), "primary key (id) -> (id, name)"),
        (("id", "name"), ("name", "id"), "primary key (id, name) -> (name, id)"),
    ],
)
def test_key_changed(old: tuple[str, ...], new: tuple[str, ...], detail: str) -> None:
    assert diff(shape(ID, NAME, key=old), shape(ID, NAME, key=new)) == [Change(Kind.KEY_CHANGED, detail=detail)]


def test_a_shape_without_columns_reports_its_drops_but_no_key_change() -> None:
    assert diff(shape(ID, NAME), shape(key=())) == [
        Change(Kind.COLUMN_DROPPED, "id", before=ID),
        Change(Kind.COLUMN_DROPPED, "name", before=NAME),
    ]


def test_several_changes_in_source_column_order_then_adds_then_the_key() -> None:
    before = shape(ID, NAME, QTY, PRICE, C("note", "text", default="'x'"))
    name = C("label", "varchar(50)", optional=False)
    note = C("note", "text", default="")
    added_1, added_2 = C("zeta", "integer"), C("alpha", "text")
    after = shape(ID, added_1, note, name, added_2, key=("id", "label"))  # qty and price dropped
    assert diff(before, after, renames={"name": "label"}) == [
        Change(Kind.COLUMN_RENAMED, "label", before=NAME, after=name),
        Change(Kind.TYPE_WIDENED, "label", before=NAME, after=name),
        Change(Kind.NULLABILITY_CHANGED, "label", before=NAME, after=name),
        Change(Kind.COLUMN_DROPPED, "qty", before=QTY),
        Change(Kind.COLUMN_DROPPED, "price", before=PRICE),
        Change(Kind.DEFAULT_CHANGED, "note", before=C("note", "text", default="'x'"), after=note),
        Change(Kind.COLUMN_ADDED, "zeta", after=added_1),
        Change(Kind.COLUMN_ADDED, "alpha", after=added_2),
        Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, label)"),
    ]


# --- Change ---------------------------------------------------------------------------------------

DESTRUCTIVE = {
    Kind.COLUMN_DROPPED,
    Kind.TYPE_NARROWED,
    Kind.TYPE_INCOMPATIBLE,
    Kind.KEY_CHANGED,
    Kind.TABLE_DROPPED,
    Kind.TABLE_TRUNCATED,
}


@pytest.mark.parametrize("kind", list(Kind))
def test_destructive(kind: Kind) -> None:
    assert Change(kind).destructive is (kind in DESTRUCTIVE)


def test_the_vocabulary() -> None:
    assert [k.value for k in Kind] == [
        "column_added",
        "column_dropped",
        "column_renamed",
        "type_widened",
        "type_narrowed",
        "type_incompatible",
        "nullability_changed",
        "default_changed",
        "key_changed",
        "table_created",
        "table_dropped",
        "table_renamed",
        "table_truncated",
        "unknown",
    ]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            Change(Kind.COLUMN_ADDED, "status", after=C("status", "text", optional=False, default="'new'::text")),
            "column added: status text NOT NULL DEFAULT 'new'::text",
        ),
        (Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer")), "column added: discount integer"),
        (Change(Kind.COLUMN_DROPPED, "qty", before=QTY), "column dropped: qty integer"),
        (
            Change(Kind.COLUMN_RENAMED, "quantity", before=QTY, after=C("quantity", "integer")),
            "column renamed: qty -> quantity",
        ),
        (
            Change(Kind.TYPE_WIDENED, "qty", before=QTY, after=C("qty", "bigint")),
            "type widened: qty integer -> bigint",
        ),
        (
            Change(Kind.TYPE_NARROWED, "price", before=C("price", "numeric(12,2)"), after=PRICE),
            "type narrowed: price numeric(12,2) -> numeric(8,2)",
        ),
        (
            Change(Kind.TYPE_INCOMPATIBLE, "name", before=NAME, after=C("name", "integer")),
            "type incompatible: name varchar(20) -> integer",
        ),
        (
            Change(Kind.NULLABILITY_CHANGED, "qty", before=QTY, after=C("qty", "integer", optional=False)),
            "nullability changed: qty is now NOT NULL",
        ),
        (
            Change(Kind.NULLABILITY_CHANGED, "id", before=ID, after=C("id", "integer")),
            "nullability changed: id is now NULL",
        ),
        (
            Change(
                Kind.DEFAULT_CHANGED,
                "qty",
                before=C("qty", "integer", default=""),
                after=C("qty", "integer", default="1"),
            ),
            "default changed: qty none -> 1",
        ),
        (
            Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, name)"),
            "key changed: primary key (id) -> (id, name)",
        ),
        (Change(Kind.TABLE_CREATED, detail="shop.orders"), "table created: shop.orders"),
        (Change(Kind.TABLE_DROPPED), "table dropped"),
        (
            Change(Kind.TABLE_RENAMED, detail="shop.orders -> shop.orders_v2"),
            "table renamed: shop.orders -> shop.orders_v2",
        ),
        (Change(Kind.TABLE_TRUNCATED), "table truncated"),
        (Change(Kind.UNKNOWN, detail="ALTER TABLE t SET UNLOGGED"), "unknown: ALTER TABLE t SET UNLOGGED"),
    ],
)
def test_describe(change: Change, line: str) -> None:
    assert change.describe() == line


# --- Shape ----------------------------------------------------------------------------------------


def test_shape_of_a_table_schema_takes_names_types_optionality_and_key() -> None:
    schema = TableSchema(
        TableId("shop", "orders"),
        (Column("id", "integer", False, False), Column("name", "varchar(20)", True, True, stored_as="name__text")),
        ("id",),
    )
    assert Shape.of(schema) == Shape((ID, NAME), ("id",))


def test_equal_shapes_have_one_fingerprint() -> None:
    assert shape(ID, NAME, QTY).fingerprint == shape(ID, NAME, QTY).fingerprint
    assert len(BASE.fingerprint) == 32


@pytest.mark.parametrize(
    "other",
    [
        pytest.param(shape(ID, NAME, C("qty", "bigint")), id="type"),
        pytest.param(shape(ID, NAME, C("qty", "integer", optional=False)), id="optional"),
        pytest.param(shape(ID, NAME, C("quantity", "integer")), id="name"),
        pytest.param(shape(ID, QTY, NAME), id="order"),
        pytest.param(shape(ID, NAME, QTY, key=("id", "name")), id="key"),
        pytest.param(shape(ID, NAME, QTY, key=()), id="no key"),
        pytest.param(shape(ID, NAME), id="a column fewer"),
    ],
)
def test_fingerprint_differs_when_the_shape_does(other: Shape) -> None:
    assert other.fingerprint != shape(ID, NAME, QTY).fingerprint


def test_fingerprint_leaves_defaults_out() -> None:
    with_default = shape(ID, NAME, C("qty", "integer", default="1"))
    assert with_default.fingerprint == shape(ID, NAME, QTY).fingerprint
    assert with_default != shape(ID, NAME, QTY)


def test_shape_json_round_trip() -> None:
    original = shape(
        ID, C("note", "text", default="'x'::text"), C("tags", "text[]", optional=False), key=("id", "note")
    )
    data = json.loads(json.dumps(original.as_json()))
    assert data == {
        "columns": [
            {"name": "id", "type": "integer", "optional": False, "default": None},
            {"name": "note", "type": "text", "optional": True, "default": "'x'::text"},
            {"name": "tags", "type": "text[]", "optional": False, "default": None},
        ],
        "key": ["id", "note"],
    }
    again = Shape.from_json(data["columns"], data["key"])
    assert again == original
    assert again.fingerprint == original.fingerprint


def test_column_json_without_optional_or_default_is_nullable_without_a_known_default() -> None:
    assert ColumnDef.from_json({"name": "qty", "type": "integer"}) == C("qty", "integer", True, None)


# --- recorded Debezium event schemas, step by step ------------------------------------------------

FIXTURE = Path(__file__).parent.parent / "fixtures" / "drift" / "event_schemas.jsonl"
TABLE = TableId("drift_fx", "orders")

# The primary key each step leaves (a value schema does not carry it; the key schema does).
KEYS = {"primary_key_changed": ("id", "name"), "rename_table": ("id", "name")}


@functools.cache
def recorded() -> list[tuple[str, Shape | None]]:
    steps = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        step = json.loads(line)
        schema = step["schema"]
        if schema is None:
            steps.append((step["step"], None))
            continue
        table = TableSchema(TABLE, _row_columns(schema), KEYS.get(step["step"], ("id",)))
        steps.append((step["step"], Shape.of(table)))
    return steps


def _w(name: str, old: str, new: str, kind: Kind = Kind.TYPE_WIDENED) -> list[Change]:
    return [Change(kind, name, before=C(name, old), after=C(name, new))]


TS6, TSTZ6 = "timestamp(6) without time zone", "timestamp(6) with time zone"
INITIAL_COLUMNS = (ID, NAME, QTY, PRICE, C("note", "text"), C("created", TS6))

# step -> the changes between the previous step's event schema and its own
EXPECTED: dict[str, list[Change] | None] = {
    "initial": None,
    "add_column_default": [Change(Kind.COLUMN_ADDED, "status", after=C("status", "text"))],
    "add_column": [Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer"))],
    "drop_column": [Change(Kind.COLUMN_DROPPED, "discount", before=C("discount", "integer"))],
    "rename_column": [
        Change(Kind.COLUMN_DROPPED, "qty", before=QTY),
        Change(Kind.COLUMN_ADDED, "quantity", after=C("quantity", "integer")),
    ],
    "widen_int_bigint": _w("quantity", "integer", "bigint"),
    "widen_varchar": _w("name", "varchar(20)", "varchar(50)"),
    "varchar_to_text": _w("name", "varchar(50)", "text"),
    "widen_numeric": _w("price", "numeric(8,2)", "numeric(12,2)"),
    "timestamp_to_timestamptz": _w("created", TS6, TSTZ6),
    "narrow_bigint_int": _w("quantity", "bigint", "integer", Kind.TYPE_NARROWED),
    "retype_text_int": _w("name", "text", "integer", Kind.TYPE_INCOMPATIBLE),
    "set_not_null": [
        Change(Kind.NULLABILITY_CHANGED, "status", before=C("status", "text"), after=C("status", "text", False))
    ],
    "drop_not_null": [
        Change(Kind.NULLABILITY_CHANGED, "status", before=C("status", "text", False), after=C("status", "text"))
    ],
    "set_default": [],  # an event schema's Shape knows no defaults
    "drop_default": [],
    "primary_key_changed": [
        Change(Kind.NULLABILITY_CHANGED, "name", before=C("name", "integer"), after=C("name", "integer", False)),
        Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, name)"),
    ],
    "rename_table": [],  # the same shape under another name: the event schema alone cannot tell
    "drop_table": None,  # no table, no event
    "create_table": None,  # a new table: compared with the first one below
}


def test_the_recorded_steps_are_the_expected_ones() -> None:
    assert [name for name, _ in recorded()] == list(EXPECTED)


def test_the_first_recorded_schema_decodes_to_the_created_table() -> None:
    steps = dict(recorded())
    assert steps["initial"] == Shape(INITIAL_COLUMNS, ("id",))
    assert steps["create_table"] == steps["initial"]
    assert steps["drop_table"] is None


@pytest.mark.parametrize("step", [name for name, changes in EXPECTED.items() if changes is not None])
def test_recorded_step_classifies_as_expected(step: str) -> None:
    steps = recorded()
    names = [name for name, _ in steps]
    before, after = steps[names.index(step) - 1][1], steps[names.index(step)][1]
    assert before is not None
    assert after is not None
    assert diff(before, after) == EXPECTED[step]


DDL_FIXTURE = FIXTURE.with_name("ddl.jsonl")


def test_the_ddl_log_turns_the_recorded_rename_into_one_rename() -> None:
    rows = [json.loads(line) for line in DDL_FIXTURE.read_text(encoding="utf-8").splitlines()]
    assert [row["step"] for row in rows] == list(EXPECTED)
    (rename,) = [row for row in rows if row["step"] == "rename_column"]
    assert ddl_renames([rename]) == {"qty": "quantity"}
    # The whole log ends with the table dropped and made again: no column of it was renamed.
    assert ddl_renames(rows) == {}
    until_dropped = rows[: [row["step"] for row in rows].index("drop_table")]
    assert ddl_renames(until_dropped) == {"qty": "quantity"}
    steps = dict(recorded())
    before, after = steps["drop_column"], steps["rename_column"]
    assert before is not None
    assert after is not None
    assert diff(before, after, ddl_renames([rename])) == [
        Change(Kind.COLUMN_RENAMED, "quantity", before=QTY, after=C("quantity", "integer"))
    ]


# --- ddl_renames ----------------------------------------------------------------------------------


def ddl(before: list[str], after: list[str | None]) -> dict[str, Any]:
    """A DDL log row: the table's columns (attnum = position + 1) before and after; None: dropped."""
    return {
        "columns_before": [{"name": n, "attnum": i} for i, n in enumerate(before, 1)],
        "columns_after": [{"name": n, "attnum": i} for i, n in enumerate(after, 1) if n is not None],
    }


def test_ddl_renames_compose_a_chain_and_a_round_trip() -> None:
    rows = [ddl(["id", "a"], ["id", "b"]), ddl(["id", "b"], ["id", "c"]), ddl(["id", "c", "x"], ["id", "c", "y"])]
    assert ddl_renames(rows) == {"a": "c", "x": "y"}
    assert ddl_renames([ddl(["id", "a"], ["id", "b"]), ddl(["id", "b"], ["id", "a"])]) == {}


def test_ddl_renames_of_a_swap_through_a_third_name() -> None:
    rows = [ddl(["a", "b"], ["tmp", "b"]), ddl(["tmp", "b"], ["tmp", "a"]), ddl(["tmp", "a"], ["b", "a"])]
    assert ddl_renames(rows) == {"a": "b", "b": "a"}


def test_ddl_renames_of_a_drop_then_a_rename_onto_the_dropped_name() -> None:
    assert ddl_renames([ddl(["id", "a", "b"], ["id", "a", None]), ddl(["id", "a"], ["id", "b"])]) == {"a": "b"}


def test_ddl_renames_of_a_name_reused_by_an_added_column() -> None:
    rows = [
        ddl(["id", "a"], ["id", "b"]),
        ddl(["id", "b"], ["id", "b", "a"]),
        ddl(["id", "b", "a"], ["id", "b", "c"]),
    ]
    assert ddl_renames(rows) == {"a": "b"}


# --- ddl_column_changes: the DDL log row tells, as it arrives, what the event schemas tell later ---

STEPS_OF_A_TABLE = [s for s, c in EXPECTED.items() if c is not None and s not in ("initial", "create_table")]


@pytest.mark.parametrize("step", STEPS_OF_A_TABLE)
def test_the_ddl_row_of_each_recorded_step_tells_the_changes_its_event_schemas_do(step: str) -> None:
    rows = {row["step"]: row for row in map(json.loads, DDL_FIXTURE.read_text(encoding="utf-8").splitlines())}
    steps = recorded()
    names = [name for name, _ in steps]
    before, after = steps[names.index(step) - 1][1], steps[names.index(step)][1]
    assert before is not None
    assert after is not None

    def told(changes: list[Change]) -> list[tuple[Kind, str | None, str | None, bool | None]]:
        return [
            (c.kind, c.column, c.after.type if c.after else None, c.after.optional if c.after else None)
            for c in changes
            if c.kind is not Kind.DEFAULT_CHANGED  # the DDL log's alone (ddl_changes)
        ]

    assert told(ddl_column_changes(rows[step])) == told(diff(before, after, ddl_renames([rows[step]])))


def test_ddl_column_changes_are_none_for_a_table_created_dropped_or_a_row_cdc_cannot_read() -> None:
    rows = {row["step"]: row for row in map(json.loads, DDL_FIXTURE.read_text(encoding="utf-8").splitlines())}
    assert ddl_column_changes(rows["initial"]) == []
    assert ddl_column_changes(rows["drop_table"]) == []
    assert ddl_column_changes({"columns_before": "not a column list", "columns_after": []}) == []
    assert ddl_column_changes({"columns_before": [{"name": "a"}], "columns_after": []}) == []  # no attnum


def test_ddl_column_changes_carry_the_statement_and_the_catalog_types_in_event_schema_names() -> None:
    row = {
        "statement": "ALTER TABLE t ALTER COLUMN c TYPE varchar(50), ADD COLUMN d character(3)",
        "columns_before": [{"name": "c", "attnum": 1, "type": "character varying(20)", "not_null": False}],
        "columns_after": [
            {"name": "c", "attnum": 1, "type": "character varying(50)", "not_null": False},
            {"name": "d", "attnum": 2, "type": "character(3)", "not_null": False, "default": "'abc'::bpchar"},
        ],
    }
    assert ddl_column_changes(row) == [
        Change(
            Kind.TYPE_WIDENED,
            "c",
            before=C("c", "varchar(20)", default=""),
            after=C("c", "varchar(50)", default=""),
            statement=row["statement"],
        ),
        Change(Kind.COLUMN_ADDED, "d", after=C("d", "char(3)", default="'abc'::bpchar"), statement=row["statement"]),
    ]
