"""plan: changes + the warehouse table's layout -> what each policy does (operations as data) and
the layout after; project: an event schema as the warehouse table stores it; type_tag."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pytest

from cdc.decode.envelope import _row_columns
from cdc.events import Column, TableId, TableSchema
from cdc.schema.changes import Change, ColumnDef, Kind
from cdc.schema.classify import Shape, diff, type_change
from cdc.schema.plan import AddColumn, AlterType, Layout, Rekey, RenameColumn, Step, plan, project, type_tag
from cdc.schema.policy import Policy
from cdc.warehouse.naming import MAX_IDENT

C = ColumnDef
KEY = ("id",)


def base() -> Layout:
    return Layout({"id": "integer", "name": "varchar(20)", "qty": "integer", "price": "numeric(8,2)"})


def evolve(changes: list[Change], layout: Layout, key: tuple[str, ...] = KEY) -> tuple[list[Step], Layout]:
    return plan(changes, layout, Policy.EVOLVE, key)


def ops(steps: list[Step]) -> list[tuple[object, ...]]:
    return [step.operations for step in steps]


def retype(name: str, old: str, new: str) -> Change:
    kind = type_change(old, new)
    assert kind is not None
    return Change(kind, name, before=C(name, old), after=C(name, new))


# --- evolve, kind by kind -------------------------------------------------------------------------


def test_added_column_is_added() -> None:
    change = Change(Kind.COLUMN_ADDED, "status", after=C("status", "text"))
    steps, after = evolve([change], base())
    assert steps == [Step(change, "added warehouse column status text", (AddColumn("status", "text"),))]
    assert after == Layout({**base().columns, "status": "text"})


@pytest.mark.parametrize(
    ("default", "fill", "action"),
    [
        (
            "'new'::text",
            "new",
            "added warehouse column status text; rows already there take the source's default 'new'::text",
        ),
        (
            "'it''s'::text",
            "it's",
            "added warehouse column status text; rows already there take the source's default 'it''s'::text",
        ),
        (
            "now()",
            None,
            "added warehouse column status text; rows already there hold NULL: the source's default now()"
            " is computed per row",
        ),
        ("", None, "added warehouse column status text"),  # the DDL log knows there is none
    ],
)
def test_added_column_with_a_default_fills_the_rows_there_when_it_is_a_constant(
    default: str, fill: str | None, action: str
) -> None:
    change = Change(Kind.COLUMN_ADDED, "status", after=C("status", "text", default=default))
    steps, after = evolve([change], base())
    assert steps == [Step(change, action, (AddColumn("status", "text", fill),))]
    assert after == Layout({**base().columns, "status": "text"})


def test_added_column_with_a_constant_default_fills_its_retyped_column_too() -> None:
    layout = Layout({**base().columns, "discount": "text"})
    change = Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer", default="0"))
    steps, _ = evolve([change], layout)
    assert ops(steps) == [(AddColumn("discount__integer", "integer", "0"),)]


def test_added_column_reuses_a_kept_column_whose_type_holds_its_values() -> None:
    layout = Layout({**base().columns, "discount": "bigint"})  # dropped before, kept
    change = Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer"))
    steps, after = evolve([change], layout)
    assert steps == [Step(change, "reused warehouse column discount bigint, which was kept from before")]
    assert after == layout


def test_added_column_of_the_kept_columns_own_type_reuses_it() -> None:
    layout = Layout({**base().columns, "discount": "integer"})
    change = Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer"))
    steps, after = evolve([change], layout)
    assert ops(steps) == [()]
    assert after == layout


def test_added_column_whose_kept_namesake_cannot_hold_it_goes_to_a_column_of_its_type() -> None:
    layout = Layout({**base().columns, "discount": "text"})
    change = Change(Kind.COLUMN_ADDED, "discount", after=C("discount", "integer"))
    steps, after = evolve([change], layout)
    assert steps == [
        Step(
            change,
            "kept warehouse column discount with the old values; new values go to new column discount__integer",
            (AddColumn("discount__integer", "integer"),),
        )
    ]
    assert after == Layout({**layout.columns, "discount__integer": "integer"}, {"discount": "discount__integer"})


def test_dropped_column_is_kept_with_its_values() -> None:
    change = Change(Kind.COLUMN_DROPPED, "qty", before=C("qty", "integer"))
    steps, after = evolve([change], base())
    assert steps == [Step(change, "kept warehouse column qty with its values; new rows hold NULL there")]
    assert after == base()


def test_dropping_a_retyped_column_forgets_where_it_was_stored() -> None:
    layout = Layout({**base().columns, "name__integer": "integer"}, {"name": "name__integer"})
    change = Change(Kind.COLUMN_DROPPED, "name", before=C("name", "integer"))
    steps, after = evolve([change], layout)
    assert steps == [Step(change, "kept warehouse column name__integer with its values; new rows hold NULL there")]
    assert after == Layout(layout.columns, {})


def test_renamed_column_is_renamed_with_its_values() -> None:
    change = Change(Kind.COLUMN_RENAMED, "quantity", before=C("qty", "integer"), after=C("quantity", "integer"))
    steps, after = evolve([change], base())
    assert steps == [
        Step(change, "renamed warehouse column qty to quantity, values kept", (RenameColumn("qty", "quantity"),))
    ]
    assert after == Layout({"id": "integer", "name": "varchar(20)", "quantity": "integer", "price": "numeric(8,2)"})


def test_renaming_a_retyped_column_renames_the_column_that_holds_its_new_values() -> None:
    layout = Layout({**base().columns, "name__integer": "integer"}, {"name": "name__integer"})
    change = Change(Kind.COLUMN_RENAMED, "label", before=C("name", "integer"), after=C("label", "integer"))
    steps, after = evolve([change], layout)
    assert ops(steps) == [(RenameColumn("name__integer", "label"),)]
    assert after == Layout({**base().columns, "label": "integer"}, {})


def test_renamed_onto_a_name_the_warehouse_has_keeps_the_values_where_they_are() -> None:
    layout = Layout({**base().columns, "quantity": "bigint"})  # an older column, dropped and kept
    change = Change(Kind.COLUMN_RENAMED, "quantity", before=C("qty", "integer"), after=C("quantity", "integer"))
    steps, after = evolve([change], layout)
    assert steps == [Step(change, "kept values in warehouse column qty: quantity exists in the warehouse already")]
    assert after == Layout(layout.columns, {"quantity": "qty"})


def test_widened_column_takes_the_wider_type() -> None:
    change = retype("qty", "integer", "bigint")
    steps, after = evolve([change], base())
    assert steps == [Step(change, "widened warehouse column qty to bigint", (AlterType("qty", "bigint"),))]
    assert after == Layout({**base().columns, "qty": "bigint"})


def test_widening_a_retyped_column_alters_the_column_its_values_go_to() -> None:
    layout = Layout({**base().columns, "name__integer": "integer"}, {"name": "name__integer"})
    steps, after = evolve([retype("name", "integer", "bigint")], layout)
    assert ops(steps) == [(AlterType("name__integer", "bigint"),)]
    assert after == Layout({**base().columns, "name__integer": "bigint"}, {"name": "name__integer"})


def test_narrowed_column_keeps_its_wider_type() -> None:
    change = retype("price", "numeric(8,2)", "numeric(6,2)")
    steps, after = evolve([change], base())
    assert steps == [
        Step(change, "kept warehouse column price as numeric(8,2), which holds every new value"),
    ]
    assert after == base()


def test_incompatible_type_lands_in_a_column_of_its_own() -> None:
    change = retype("name", "varchar(20)", "integer")
    steps, after = evolve([change], base())
    assert steps == [
        Step(
            change,
            "kept warehouse column name with the old values; new values go to new column name__integer",
            (AddColumn("name__integer", "integer"),),
        )
    ]
    assert after == Layout({**base().columns, "name__integer": "integer"}, {"name": "name__integer"})


def test_incompatible_types_back_and_forth() -> None:
    """text -> integer -> text -> integer. Each new type gets its own column, as the rule says; going
    back to a type whose `<name>__<type>` column exists reuses that column, but going back to the
    original type does not reuse the original column: the old text values (epoch 0) and the later
    ones (epoch 2) end up apart, while both integer epochs share name__integer."""
    layout = Layout({"id": "integer", "name": "text"})
    steps_1, layout = evolve([retype("name", "text", "integer")], layout)
    steps_2, layout = evolve([retype("name", "integer", "text")], layout)
    assert ops(steps_1 + steps_2) == [(AddColumn("name__integer", "integer"),), (AddColumn("name__text", "text"),)]
    assert layout == Layout(
        {"id": "integer", "name": "text", "name__integer": "integer", "name__text": "text"}, {"name": "name__text"}
    )
    steps_3, layout = evolve([retype("name", "text", "integer")], layout)
    assert steps_3[0].action == (
        "kept warehouse column name__text with the old values; new values go to name__integer (kept from before)"
    )
    assert ops(steps_3) == [()]
    assert layout.stored_as == {"name": "name__integer"}


def test_key_changed_rekeys_on_the_columns_the_key_is_stored_in() -> None:
    layout = Layout({**base().columns, "name__integer": "integer"}, {"name": "name__integer"})
    change = Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, name)")
    steps, after = evolve([change], layout, key=("id", "name"))
    assert steps == [
        Step(change, "re-keyed the warehouse table on (id, name__integer)", (Rekey(("id", "name__integer")),))
    ]
    assert after == layout


def test_key_dropped_drops_the_warehouse_key() -> None:
    change = Change(Kind.KEY_CHANGED, detail="primary key (id) -> (none)")
    steps, after = evolve([change], base(), key=())
    assert steps == [Step(change, "dropped the warehouse table's key", (Rekey(()),))]
    assert after == base()


@pytest.mark.parametrize(
    ("change", "action"),
    [
        (
            Change(Kind.NULLABILITY_CHANGED, "qty", before=C("qty", "integer"), after=C("qty", "integer", False)),
            "nothing to do: warehouse columns are nullable",
        ),
        (
            Change(
                Kind.DEFAULT_CHANGED,
                "qty",
                before=C("qty", "integer", default="1"),
                after=C("qty", "integer", default="2"),
            ),
            "nothing to do: the warehouse stores the values rows arrive with",
        ),
        (Change(Kind.TABLE_RENAMED, detail="shop.orders -> shop.orders_v2"), "recorded"),
        (Change(Kind.TABLE_TRUNCATED), "recorded"),
        (Change(Kind.UNKNOWN, detail="ALTER TABLE t SET UNLOGGED"), "recorded"),
    ],
)
def test_changes_with_nothing_to_do(change: Change, action: str) -> None:
    steps, after = evolve([change], base())
    assert steps == [Step(change, action)]
    assert after == base()


def test_evolve_leaves_the_layout_it_was_given_alone() -> None:
    layout = base()
    evolve(
        [
            retype("name", "varchar(20)", "integer"),
            Change(Kind.COLUMN_RENAMED, "quantity", before=C("qty", "integer"), after=C("quantity", "integer")),
            Change(Kind.COLUMN_ADDED, "status", after=C("status", "text")),
        ],
        layout,
    )
    assert layout == base()


def test_halt_once_accepted_does_what_evolve_does() -> None:
    changes = [
        retype("name", "varchar(20)", "integer"),
        Change(Kind.COLUMN_DROPPED, "qty", before=C("qty", "integer")),
        Change(Kind.COLUMN_ADDED, "status", after=C("status", "text")),
        Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, name)"),
    ]
    assert plan(changes, base(), Policy.HALT, ("id", "name")) == evolve(changes, base(), ("id", "name"))


# --- alert ----------------------------------------------------------------------------------------

ALERTED = [
    (
        Change(Kind.COLUMN_ADDED, "status", after=C("status", "text")),
        "alerted only: the warehouse has no such column, its values are not stored",
    ),
    (
        Change(Kind.COLUMN_DROPPED, "qty", before=C("qty", "integer")),
        "alerted only: the column stays; new rows hold NULL in it",
    ),
    (
        Change(Kind.COLUMN_RENAMED, "quantity", before=C("qty", "integer"), after=C("quantity", "integer")),
        "alerted only: values of the new name are not stored; the old column keeps its values",
    ),
    (retype("qty", "integer", "bigint"), "alerted only: values the warehouse type cannot hold are not stored"),
    (retype("qty", "integer", "smallint"), "alerted only"),
    (retype("name", "varchar(20)", "integer"), "alerted only: new values are not stored (their meaning changed)"),
    (
        Change(Kind.NULLABILITY_CHANGED, "qty", before=C("qty", "integer"), after=C("qty", "integer", False)),
        "alerted only",
    ),
    (
        Change(
            Kind.DEFAULT_CHANGED, "qty", before=C("qty", "integer", default="1"), after=C("qty", "integer", default="2")
        ),
        "alerted only",
    ),
    (
        Change(Kind.KEY_CHANGED, detail="primary key (id) -> (id, name)"),
        "alerted only: the warehouse table keeps its key",
    ),
    (Change(Kind.TABLE_TRUNCATED), "alerted only"),
]


def test_alert_changes_no_shape_and_says_what_it_did_not_do() -> None:
    layout = base()
    steps, after = plan([change for change, _ in ALERTED], layout, Policy.ALERT, ("id", "name"))
    assert steps == [Step(change, action) for change, action in ALERTED]
    assert after is layout
    assert after == base()


# --- bugs -----------------------------------------------------------------------------------------


def test_widening_after_a_narrowing_does_not_narrow_the_warehouse_column() -> None:
    layout = Layout({"id": "integer", "name": "varchar(50)"})
    _, layout = evolve([retype("name", "varchar(50)", "varchar(20)")], layout)
    change = retype("name", "varchar(20)", "varchar(30)")
    steps, after = evolve([change], layout)
    assert ops(steps) == [()]
    assert after == Layout({"id": "integer", "name": "varchar(50)"})


def test_a_widening_never_alters_a_column_to_a_type_that_cannot_hold_what_it_holds() -> None:
    layout = Layout({"id": "integer", "qty": "bigint"})
    _, layout = evolve([retype("qty", "bigint", "integer")], layout)
    steps, _ = evolve([retype("qty", "integer", "numeric(12,2)")], layout)
    altered = [(op.name, op.type) for step in steps for op in step.operations if isinstance(op, AlterType)]
    assert [(name, type_change("bigint", type_)) for name, type_ in altered] in ([], [("qty", Kind.TYPE_WIDENED)])


def test_an_added_column_never_reuses_a_column_another_source_column_is_stored_in() -> None:
    a, b = C("a", "integer"), C("b", "integer")
    layout = Layout({"id": "integer", "a": "integer", "b": "integer"})
    _, layout = evolve([Change(Kind.COLUMN_DROPPED, "b", before=b)], layout)
    _, layout = evolve([Change(Kind.COLUMN_RENAMED, "b", before=a, after=b)], layout)
    _, layout = evolve([Change(Kind.COLUMN_ADDED, "a", after=a)], layout)
    schema = TableSchema(
        TableId("shop", "t"),
        (
            Column("id", "integer", False, False),
            Column("b", "integer", True, False),
            Column("a", "integer", True, False),
        ),
        KEY,
    )
    stored = [c.stored for c in project(schema, layout).columns]
    assert stored[:2] == ["id", "a"]
    assert len(set(stored)) == len(stored)


def test_a_retyped_column_never_adds_a_column_the_warehouse_has() -> None:
    layout = Layout({"id": "integer", "x": "text", "x__integer": "text"})  # x__integer: a source column
    steps, after = evolve([retype("x", "text", "integer")], layout)
    added = [op.name for step in steps for op in step.operations if isinstance(op, AddColumn)]
    assert [name for name in added if name in layout.columns] == []
    assert after.columns["x__integer"] == "text"


def test_type_tag_tells_a_negative_scale_apart() -> None:
    assert type_tag("numeric(5,-2)") != type_tag("numeric(5,2)")


# --- the recorded DDL steps, one after the other, under evolve ------------------------------------

FIXTURE = Path(__file__).parent.parent / "fixtures" / "drift" / "event_schemas.jsonl"


def test_the_recorded_steps_evolve_the_warehouse_table() -> None:
    keys = {"primary_key_changed": ("id", "name"), "rename_table": ("id", "name")}
    shapes = []
    for line in FIXTURE.read_text(encoding="utf-8").splitlines():
        step = json.loads(line)
        if step["schema"] is not None and step["step"] != "create_table":
            columns = _row_columns(step["schema"])
            shapes.append(Shape.of(TableSchema(TableId("drift_fx", "orders"), columns, keys.get(step["step"], KEY))))
    layout = Layout({c.name: c.type for c in shapes[0].columns})
    operations = []
    for before, after in itertools.pairwise(shapes):
        steps, layout = evolve(diff(before, after), layout, after.key)
        operations += [op for step in steps for op in step.operations]
    assert operations == [
        AddColumn("status", "text"),
        AddColumn("discount", "integer"),
        AddColumn("quantity", "integer"),  # the rename, as event schemas show it: qty is kept
        AlterType("quantity", "bigint"),
        AlterType("name", "varchar(50)"),
        AlterType("name", "text"),
        AlterType("price", "numeric(12,2)"),
        AlterType("created", "timestamp(6) with time zone"),
        AddColumn("name__integer", "integer"),
        Rekey(("id", "name__integer")),
    ]
    assert layout == Layout(
        {
            "id": "integer",
            "name": "text",
            "qty": "integer",
            "price": "numeric(12,2)",
            "note": "text",
            "created": "timestamp(6) with time zone",
            "status": "text",
            "discount": "integer",
            "quantity": "bigint",
            "name__integer": "integer",
        },
        {"name": "name__integer"},
    )


# --- project --------------------------------------------------------------------------------------

TABLE = TableId("shop", "orders")


def schema(*columns: Column, key: tuple[str, ...] = KEY) -> TableSchema:
    return TableSchema(TABLE, columns, key)


def col(name: str, type_: str) -> Column:
    return Column(name, type_, name != "id", False)


def test_project_returns_the_schema_itself_when_the_layout_stores_it_as_it_is() -> None:
    event = schema(col("id", "integer"), col("qty", "integer"), col("name", "varchar(20)"))
    assert project(event, Layout({"id": "integer", "qty": "bigint", "name": "text", "kept": "text"})) is event


def test_project_leaves_out_columns_the_layout_lacks_or_cannot_hold() -> None:
    event = schema(col("id", "integer"), col("qty", "bigint"), col("name", "varchar(20)"), col("status", "text"))
    projected = project(event, Layout({"id": "integer", "qty": "integer", "name": "varchar(50)"}))
    assert projected == schema(col("id", "integer"), col("name", "varchar(20)"))


def test_project_keeps_key_columns_whatever_the_layout_says() -> None:
    event = schema(col("id", "bigint"), col("code", "text"), col("qty", "integer"), key=("id", "code"))
    projected = project(event, Layout({"id": "integer", "qty": "integer"}))
    assert projected is event


def test_project_stores_columns_where_the_layout_says() -> None:
    event = schema(col("id", "integer"), col("name", "integer"), col("qty", "integer"))
    layout = Layout({"id": "integer", "name": "text", "name__integer": "integer", "qty": "integer"})
    layout.stored_as["name"] = "name__integer"
    projected = project(event, layout)
    assert projected == schema(
        col("id", "integer"), Column("name", "integer", True, False, stored_as="name__integer"), col("qty", "integer")
    )
    assert [c.stored for c in projected.columns] == ["id", "name__integer", "qty"]


def test_project_checks_the_type_of_the_column_a_value_is_stored_in() -> None:
    event = schema(col("id", "integer"), col("name", "text"))
    layout = Layout({"id": "integer", "name": "text", "name__integer": "integer"}, {"name": "name__integer"})
    assert project(event, layout) == schema(col("id", "integer"))


# --- type_tag and the names it makes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "tag"),
    [
        ("integer", "integer"),
        ("numeric(12,2)", "numeric_12_2"),
        ("double precision", "double_precision"),
        ("integer[]", "integer_array"),
        ("varchar(20)[]", "varchar_20_array"),
        ("timestamp(3) with time zone", "timestamp_3_with_time_zone"),
        ("timestamp without time zone", "timestamp_without_time_zone"),
        ('"char"', "char"),
        ("bit(1)", "bit_1"),
        ("Integer", "integer"),
    ],
)
def test_type_tag(type_: str, tag: str) -> None:
    assert type_tag(type_) == tag


@pytest.mark.parametrize("name", ["x" * 60, "x" + "é" * 30, "c" * 63])
def test_a_long_column_name_and_its_tag_fit_an_identifier(name: str) -> None:
    change = retype(name, "text", "timestamp(3) with time zone")
    steps, after = evolve([change], Layout({"id": "integer", name: "text"}))
    (operation,) = steps[0].operations
    assert isinstance(operation, AddColumn)
    whole = f"{name}__timestamp_3_with_time_zone".encode()
    digest = hashlib.sha256(whole).hexdigest()[:8]
    assert operation.name == whole[: MAX_IDENT - 9].decode(errors="ignore") + "_" + digest
    assert len(operation.name.encode()) <= MAX_IDENT
    assert after.stored_as == {name: operation.name}


def test_two_long_retypes_of_one_column_get_two_names() -> None:
    name = "x" * 60
    _, after = evolve([retype(name, "text", "integer")], Layout({name: "text"}))
    _, after = evolve([retype(name, "integer", "boolean")], after)

    def fitted(tag: str) -> str:
        whole = f"{name}__{tag}".encode()
        return whole[: MAX_IDENT - 9].decode() + "_" + hashlib.sha256(whole).hexdigest()[:8]

    assert after == Layout(
        {name: "text", fitted("integer"): "integer", fitted("boolean"): "boolean"}, {name: fitted("boolean")}
    )
    assert fitted("integer") != fitted("boolean")


@pytest.mark.parametrize("order", ["a before b", "b before a"])
def test_drop_b_rename_a_to_b_add_a_in_one_window_keeps_three_meanings_in_three_columns(order: str) -> None:
    """The changes as diff gives them, whatever the columns' order: b's old values stay in b, the
    renamed a's (old and new) in a, the new a's in a column of their own."""
    a, b = C("a", "integer"), C("b", "text")
    key = C("id", "integer", False)
    before = Shape((key, a, b) if order == "a before b" else (key, b, a), KEY)
    after = Shape((key, C("b", "integer"), C("a", "integer")), KEY)
    layout = Layout({"id": "integer", "a": "integer", "b": "text"})
    steps, layout = evolve(diff(before, after, {"a": "b"}), layout)
    assert [s.change.kind for s in steps] == [Kind.COLUMN_DROPPED, Kind.COLUMN_RENAMED, Kind.COLUMN_ADDED]
    assert layout.stored_as == {"b": "a", "a": "a__integer"}
    assert layout.columns == {"id": "integer", "a": "integer", "b": "text", "a__integer": "integer"}
