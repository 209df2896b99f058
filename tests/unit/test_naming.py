"""Warehouse table names: a pure function of the source name and the settings."""

from __future__ import annotations

import pytest

from cdc.errors import EXIT_CONFIG
from cdc.events import TableId
from cdc.warehouse.naming import (
    DEFAULT_FORMAT,
    MAX_IDENT,
    NameClash,
    check_format,
    fit_identifier,
    plan,
    table_of_topic,
    target_of,
)
from cdc.warehouse.statements import Target

SHOP, PAGILA = TableId("shop", "inventory"), TableId("pagila", "inventory")


def test_the_default_format_keeps_the_source_schema_in_the_name() -> None:
    assert DEFAULT_FORMAT == "{schema}__{table}"
    assert target_of(SHOP, "replica") == Target("replica", "shop__inventory")
    assert target_of(TableId("Mixed Case", 'Odd "Name" é'), "wh") == Target("wh", 'Mixed Case__Odd "Name" é')


def test_names_do_not_depend_on_the_order_tables_come_in() -> None:
    forward = plan([SHOP, PAGILA], "replica", DEFAULT_FORMAT)
    backward = plan([PAGILA, SHOP], "replica", DEFAULT_FORMAT)
    assert (
        forward
        == backward
        == {SHOP: Target("replica", "shop__inventory"), PAGILA: Target("replica", "pagila__inventory")}
    )


def test_two_tables_for_one_name_are_an_error_naming_both_and_the_setting() -> None:
    for order in ([SHOP, PAGILA], [PAGILA, SHOP]):
        with pytest.raises(NameClash) as caught:
            plan(order, "replica", "{table}")
        assert (
            caught.value.problem
            == "pagila.inventory and shop.inventory would both be replicated into replica.inventory."
        )
        assert caught.value.fix.startswith(
            "set CDC_TABLE_NAME_FORMAT (now '{table}') to a format that tells them apart, such as '{schema}__{table}'"
        )
        assert "CDC_EXCLUDE_TABLES" in caught.value.fix
        assert caught.value.exit_code == EXIT_CONFIG


def test_the_separator_of_the_default_format_can_clash_and_that_is_an_error() -> None:
    with pytest.raises(NameClash) as caught:
        plan([TableId("a__b", "c"), TableId("a", "b__c")], "wh", DEFAULT_FORMAT)
    assert caught.value.problem == "a.b__c and a__b.c would both be replicated into wh.a__b__c."
    assert caught.value.fix.startswith(
        "set CDC_TABLE_NAME_FORMAT (now '{schema}__{table}') to a format that tells them apart (tables"
    )


def test_a_recorded_name_is_kept_and_guards_its_name() -> None:
    recorded = {SHOP: Target("replica", "inventory")}
    planned = plan([SHOP, PAGILA], "replica", DEFAULT_FORMAT, recorded)
    assert planned == {SHOP: Target("replica", "inventory"), PAGILA: Target("replica", "pagila__inventory")}
    with pytest.raises(NameClash) as caught:
        plan([PAGILA], "replica", "{table}", recorded)
    assert caught.value.problem == (
        "pagila.inventory would be replicated into replica.inventory, which cdc.table_map already gives to "
        "shop.inventory."
    )


def test_names_longer_than_63_bytes_are_cut_with_a_digest_that_keeps_them_apart() -> None:
    short = "x" * MAX_IDENT
    assert fit_identifier(short) == short
    one, two = "t" * 70 + "_one", "t" * 70 + "_two"
    a, b = fit_identifier(one), fit_identifier(two)
    assert len(a.encode()) == len(b.encode()) == MAX_IDENT
    assert a != b and a.startswith("t" * 54 + "_") and b.startswith("t" * 54 + "_")
    assert fit_identifier(one) == a  # the same name always gets the same cut
    assert target_of(TableId("s" * 40, "t" * 40), "wh").table == fit_identifier("s" * 40 + "__" + "t" * 40)


def test_a_cut_never_splits_a_multibyte_character() -> None:
    name = "é" * 40  # 80 bytes
    cut = fit_identifier(name)
    assert len(cut.encode()) <= MAX_IDENT
    assert cut.encode().decode() == cut
    assert cut.startswith("é" * 27) and cut[27] == "_"  # 54 bytes of é, then the digest


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("{schema}", "has no {table}: every source table would get the same warehouse table"),
        ("{tabel}", "names {tabel}; a table name format may use only {schema} and {table}"),
        ("{table!r}", "formats {table} with a conversion or spec; write {table} alone"),
        ("{table:>10}", "formats {table} with a conversion or spec; write {table} alone"),
        ("{table", "is not a format"),
        ("{0}_{table}", "names {0}; a table name format may use only {schema} and {table}"),
    ],
)
def test_a_bad_format_is_refused_with_why(fmt: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("{", r"\{").replace("}", r"\}")):
        check_format(fmt)


def test_good_formats_are_kept() -> None:
    for fmt in ("{table}", "{schema}__{table}", "src_{schema}_{table}", "{{literal}}_{table}"):
        assert check_format(fmt) == fmt
    assert target_of(SHOP, "wh", "{{x}}_{table}").table == "{x}_inventory"


def test_the_table_of_a_change_topic() -> None:
    assert table_of_topic("cdc.shop.orders", "cdc") == TableId("shop", "orders")
    assert table_of_topic("cdc.shop.order.items", "cdc") == TableId("shop", "order.items")
    assert table_of_topic("my.prefix.shop.orders", "my.prefix") == TableId("shop", "orders")
    for other in ("cdc.transaction", "cdc", "other.shop.orders", "cdc..x", "cdcx.shop.orders"):
        assert table_of_topic(other, "cdc") is None
