"""Which source tables the include/exclude settings capture, why the others are not, which patterns
match nothing, and the lines `cdc connector apply` prints about it (capture.classify, describe)."""

from __future__ import annotations

from typing import Any

import pytest

from cdc.capture import Skip as S
from cdc.capture import SourceTable, classify, describe, display_name
from cdc.settings import Settings

CDC_OWN = [SourceTable("cdc", "debezium_heartbeat"), SourceTable("cdc", "debezium_signal")]
SHOP = [SourceTable("shop", "customers"), SourceTable("shop", "orders"), SourceTable("shop", "order_items")]
SALES = [SourceTable("sales_eu", "invoices"), SourceTable("sales_us", "invoices")]
STRAY = SourceTable("cdc", "pgbench_accounts")  # created through a search path that put cdc first
TABLES = [*SALES, STRAY, *SHOP, *CDC_OWN, SourceTable("public", "audit_log")]


def names(tables: list[SourceTable]) -> list[str]:
    return [t.qualified for t in tables]


def chosen(**settings: Any) -> tuple[list[str], dict[S, list[str]], list[tuple[str, str]]]:
    selection = classify(TABLES, Settings(**settings))
    skipped = {why: names(tables) for why, tables in selection.skipped.items()}
    return names(selection.captured), skipped, selection.unmatched


def test_by_default_every_user_table_is_captured_but_the_internal_schemas_own() -> None:
    captured, skipped, unmatched = chosen()
    assert captured == [
        "cdc.debezium_heartbeat",
        "cdc.debezium_signal",
        "public.audit_log",
        "sales_eu.invoices",
        "sales_us.invoices",
        "shop.customers",
        "shop.order_items",
        "shop.orders",
    ]
    assert skipped == {S.INTERNAL: ["cdc.pgbench_accounts"]}
    assert unmatched == []


@pytest.mark.parametrize(
    ("settings", "captured", "skipped"),
    [
        (
            {"include_schemas": "sales*"},
            ["sales_eu.invoices", "sales_us.invoices"],
            {S.SCHEMA_NOT_INCLUDED: ["public.audit_log", "shop.customers", "shop.order_items", "shop.orders"]},
        ),
        (
            {"exclude_schemas": "sales*, public"},
            ["shop.customers", "shop.order_items", "shop.orders"],
            {S.SCHEMA_EXCLUDED: ["public.audit_log", "sales_eu.invoices", "sales_us.invoices"]},
        ),
        (
            {"include_tables": "shop.order*"},
            ["shop.order_items", "shop.orders"],
            {
                S.TABLE_NOT_INCLUDED: [
                    "public.audit_log",
                    "sales_eu.invoices",
                    "sales_us.invoices",
                    "shop.customers",
                ]
            },
        ),
        (
            {"exclude_tables": "*.invoices,shop.orders"},
            ["public.audit_log", "shop.customers", "shop.order_items"],
            {S.TABLE_EXCLUDED: ["sales_eu.invoices", "sales_us.invoices", "shop.orders"]},
        ),
        (
            # Patterns are case-sensitive, as PostgreSQL names are.
            {"include_schemas": "SHOP"},
            [],
            {S.SCHEMA_NOT_INCLUDED: names(sorted([*SALES, *SHOP, SourceTable("public", "audit_log")]))},
        ),
    ],
)
def test_each_setting_names_its_own_reason(
    settings: dict[str, str], captured: list[str], skipped: dict[S, list[str]]
) -> None:
    got_captured, got_skipped, _ = chosen(**settings)
    assert got_captured == ["cdc.debezium_heartbeat", "cdc.debezium_signal", *captured]
    assert got_skipped == {S.INTERNAL: ["cdc.pgbench_accounts"], **skipped}


def test_the_first_filter_that_leaves_a_table_out_is_its_reason() -> None:
    captured, skipped, unmatched = chosen(
        include_schemas="shop,sales_*",
        exclude_schemas="sales_us",
        include_tables="shop.*,sales_*.*",
        exclude_tables="shop.order_items,sales_us.invoices",
    )
    assert captured == [*names(CDC_OWN), "sales_eu.invoices", "shop.customers", "shop.orders"]
    assert skipped == {
        S.INTERNAL: ["cdc.pgbench_accounts"],
        S.SCHEMA_NOT_INCLUDED: ["public.audit_log"],
        S.SCHEMA_EXCLUDED: ["sales_us.invoices"],  # also in CDC_EXCLUDE_TABLES; the schema decided first
        S.TABLE_EXCLUDED: ["shop.order_items"],
    }
    assert unmatched == []


def test_cdcs_own_tables_stay_captured_whatever_the_settings() -> None:
    captured, skipped, _ = chosen(include_schemas="shop", exclude_tables="cdc.*")
    assert captured == [*names(CDC_OWN), "shop.customers", "shop.order_items", "shop.orders"]
    assert skipped[S.INTERNAL] == ["cdc.pgbench_accounts"]


def test_patterns_that_match_no_table_are_named_with_their_setting() -> None:
    _, _, unmatched = chosen(
        include_schemas="shop,shoop",
        exclude_schemas="archive*",
        include_tables="shop.ordrs,shop.orders",
        exclude_tables="public.audit_log,*.tmp_*",
    )
    assert unmatched == [
        ("CDC_INCLUDE_SCHEMAS", "shoop"),
        ("CDC_EXCLUDE_SCHEMAS", "archive*"),
        ("CDC_INCLUDE_TABLES", "shop.ordrs"),
        ("CDC_EXCLUDE_TABLES", "*.tmp_*"),
    ]


def test_a_pattern_matching_a_table_another_filter_left_out_is_no_typo() -> None:
    # public.audit_log is outside CDC_INCLUDE_SCHEMAS, but the exclude pattern does name a table.
    _, _, unmatched = chosen(include_schemas="shop", exclude_tables="public.audit_log")
    assert unmatched == []


def test_apply_says_nothing_when_everything_is_captured() -> None:
    assert describe(classify([*CDC_OWN, *SHOP], Settings())) == []


def test_apply_lists_what_is_not_captured_in_one_line_grouped_by_reason() -> None:
    lines = describe(classify(TABLES, Settings(include_schemas="shop,sales_*", exclude_tables="*.invoices")))
    assert lines == [
        "not captured (4 tables): cdc.pgbench_accounts (in cdc's internal schema); "
        "public.audit_log (schema matched by no CDC_INCLUDE_SCHEMAS pattern); "
        "sales_eu.invoices, sales_us.invoices (excluded by CDC_EXCLUDE_TABLES)"
    ]


def test_apply_warns_of_a_pattern_matching_nothing_and_says_what_is_captured() -> None:
    lines = describe(classify([*CDC_OWN, *SHOP], Settings(include_tables="shop.orders,shop.ordrs")))
    assert lines == [
        "CDC_INCLUDE_TABLES pattern 'shop.ordrs' matches no table; captured: shop.orders",
        "not captured (2 tables): shop.customers, shop.order_items (matched by no CDC_INCLUDE_TABLES pattern)",
    ]
    nothing = describe(classify([*CDC_OWN, *SHOP], Settings(include_schemas="shoop")))
    assert nothing[0] == "CDC_INCLUDE_SCHEMAS pattern 'shoop' matches no table; captured: none"


def test_long_lists_are_cut_at_about_twenty_names() -> None:
    many = [SourceTable("big", f"t{i:03d}") for i in range(250)]
    (line,) = describe(classify([*CDC_OWN, *many], Settings(exclude_schemas="big")))
    shown = ", ".join(f"big.t{i:03d}" for i in range(20))
    assert line == f"not captured (250 tables): {shown}, and 230 more (schema excluded by CDC_EXCLUDE_SCHEMAS)"

    two_reasons = [*many[:30], *[SourceTable("old", f"t{i:03d}") for i in range(30)]]
    (line,) = describe(classify([*CDC_OWN, *two_reasons], Settings(exclude_schemas="big", exclude_tables="old.*")))
    assert line == (
        "not captured (60 tables): "
        + ", ".join(f"big.t{i:03d}" for i in range(10))
        + ", and 20 more (schema excluded by CDC_EXCLUDE_SCHEMAS); "
        + ", ".join(f"old.t{i:03d}" for i in range(10))
        + ", and 20 more (excluded by CDC_EXCLUDE_TABLES)"
    )

    captured = describe(classify([*CDC_OWN, *many], Settings(exclude_tables="big.tmp_*")))[0]
    assert captured.endswith("captured: " + ", ".join(f"big.t{i:03d}" for i in range(20)) + ", and 230 more")


@pytest.mark.parametrize(
    ("schema", "name", "shown"),
    [
        ("shop", "orders", "shop.orders"),
        ("shop", "Orders", 'shop."Orders"'),
        ("odd schema", "a.b, c", '"odd schema"."a.b, c"'),
        ("shop", 'say "hi"', 'shop."say ""hi"""'),
        ("shop", "Äpfel 🍎", 'shop."Äpfel 🍎"'),
        ("shop", "two\nlines\x1b[31m", 'shop."two\\u000alines\\u001b[31m"'),
    ],
)
def test_names_are_shown_unambiguously_and_on_one_line(schema: str, name: str, shown: str) -> None:
    assert display_name(SourceTable(schema, name)) == shown


def test_the_ddl_capture_publishes_its_log_and_keeps_its_memory_quiet() -> None:
    ddl_log, snapshot = SourceTable("cdc", "schema_ddl"), SourceTable("cdc", "schema_snapshot")
    selection = classify([*CDC_OWN, ddl_log, snapshot, *SHOP], Settings(include_schemas="shop"))
    assert names(selection.captured) == [*names(CDC_OWN), "cdc.schema_ddl", *sorted(names(SHOP))]
    assert selection.skipped == {}
    assert describe(selection) == []
