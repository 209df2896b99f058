"""Policies: one schema-drift policy per table (exact name, else the longest matching pattern, else
the default), with where it was set; and how the settings spell them."""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc.errors import ConfigError
from cdc.events import TableId
from cdc.schema.policy import Policies, Policy, policies_of
from cdc.settings import load_settings

ORDERS = TableId("shop", "orders")


@pytest.fixture(autouse=True)
def no_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)  # load_settings reads ./cdc.toml when there is one


def test_no_overrides_gives_the_default_and_where_it_came_from() -> None:
    assert Policies().for_table(ORDERS) == (Policy.EVOLVE, "default")
    assert Policies(Policy.HALT, "CDC_SCHEMA_POLICY").for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICY")


def test_an_exact_name_beats_any_pattern_whatever_the_order() -> None:
    overrides = {"shop.*": "alert", "shop.orders*": "alert", "shop.orders": "halt", "[s]hop.order[s]": "alert"}
    policies = Policies.of("evolve", overrides)
    assert policies.for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICIES 'shop.orders'")


def test_the_longest_matching_pattern_wins() -> None:
    policies = Policies.of("alert", {"*": "alert", "shop.*": "halt", "shop.ord*": "evolve"})
    assert policies.for_table(ORDERS) == (Policy.EVOLVE, "CDC_SCHEMA_POLICIES 'shop.ord*'")
    assert policies.for_table(TableId("shop", "items")) == (Policy.HALT, "CDC_SCHEMA_POLICIES 'shop.*'")
    assert policies.for_table(TableId("audit", "log")) == (Policy.ALERT, "CDC_SCHEMA_POLICIES '*'")


def test_patterns_of_one_length_the_first_written_wins() -> None:
    # "Longest" stands for "most specific"; two patterns of one length are told apart by their order only.
    first = Policies.of("evolve", {"*.orders": "halt", "shop.or*": "alert"})
    second = Policies.of("evolve", {"shop.or*": "alert", "*.orders": "halt"})
    assert first.for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICIES '*.orders'")
    assert second.for_table(ORDERS) == (Policy.ALERT, "CDC_SCHEMA_POLICIES 'shop.or*'")


def test_a_table_no_override_names_gets_the_default() -> None:
    policies = Policies.of("halt", {"shop.orders": "alert", "audit.*": "evolve"}, "CDC_SCHEMA_POLICY")
    assert policies.for_table(TableId("shop", "orders_v2")) == (Policy.HALT, "CDC_SCHEMA_POLICY")
    assert policies.for_table(TableId("shopx", "orders")) == (Policy.HALT, "CDC_SCHEMA_POLICY")


def test_names_and_patterns_match_case_sensitively() -> None:
    policies = Policies.of("evolve", {"Shop.Orders": "halt", "SHOP.*": "alert"})
    assert policies.for_table(ORDERS) == (Policy.EVOLVE, "default")
    assert policies.for_table(TableId("Shop", "Orders")) == (Policy.HALT, "CDC_SCHEMA_POLICIES 'Shop.Orders'")


def test_a_pattern_matches_across_the_dot() -> None:
    policies = Policies.of("evolve", {"shop*": "alert", "[st]*.o?ders": "halt"})
    assert policies.for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICIES '[st]*.o?ders'")
    assert policies.for_table(TableId("shop", "items")) == (Policy.ALERT, "CDC_SCHEMA_POLICIES 'shop*'")


def test_of_builds_policies_from_strings() -> None:
    assert Policies.of("alert", {"shop.orders": "halt"}, "CDC_SCHEMA_POLICY") == Policies(
        Policy.ALERT, "CDC_SCHEMA_POLICY", (("shop.orders", Policy.HALT),)
    )


def test_of_refuses_an_unknown_policy() -> None:
    with pytest.raises(ValueError) as caught:
        Policies.of("evolve", {"shop.orders": "stop"})
    assert str(caught.value) == "'stop' is not a valid Policy"


# --- from the settings ----------------------------------------------------------------------------


def test_unset_is_evolve_by_default() -> None:
    assert policies_of(load_settings({})) == Policies(Policy.EVOLVE, "default", ())


def test_an_empty_variable_is_an_unset_one() -> None:
    assert policies_of(load_settings({"CDC_SCHEMA_POLICY": ""})) == Policies(Policy.EVOLVE, "default", ())


def test_cdc_schema_policy_sets_the_default() -> None:
    policies = policies_of(load_settings({"CDC_SCHEMA_POLICY": "halt"}))
    assert policies == Policies(Policy.HALT, "CDC_SCHEMA_POLICY", ())
    assert policies.for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICY")


def test_setting_the_default_to_evolve_says_so() -> None:
    assert policies_of(load_settings({"CDC_SCHEMA_POLICY": "evolve"})).for_table(ORDERS) == (
        Policy.EVOLVE,
        "CDC_SCHEMA_POLICY",
    )


def test_cdc_schema_policies_sets_per_table_policies() -> None:
    policies = policies_of(load_settings({"CDC_SCHEMA_POLICIES": " shop.orders=halt, shop.*=alert ,"}))
    assert policies == Policies(Policy.EVOLVE, "default", (("shop.orders", Policy.HALT), ("shop.*", Policy.ALERT)))
    assert policies.for_table(ORDERS) == (Policy.HALT, "CDC_SCHEMA_POLICIES 'shop.orders'")
    assert policies.for_table(TableId("shop", "items")) == (Policy.ALERT, "CDC_SCHEMA_POLICIES 'shop.*'")
    assert policies.for_table(TableId("audit", "log")) == (Policy.EVOLVE, "default")


def test_policies_from_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "cdc.toml").write_text('schema_policy = "alert"\n[schema_policies]\n"shop.*" = "halt"\n')
    policies = policies_of(load_settings({}))
    # Said to come from where it was read: the file, under its own names.
    assert policies == Policies(
        Policy.ALERT, "schema_policy in cdc.toml", (("shop.*", Policy.HALT),), "[schema_policies] in cdc.toml"
    )
    assert policies.for_table(ORDERS) == (Policy.HALT, "[schema_policies] in cdc.toml 'shop.*'")
    # The environment wins over the file, and says so.
    policies = policies_of(load_settings({"CDC_SCHEMA_POLICY": "evolve"}))
    assert (policies.default, policies.default_from) == (Policy.EVOLVE, "CDC_SCHEMA_POLICY")
    assert policies.overrides_from == "[schema_policies] in cdc.toml"


SEE = "set a valid value (the README's Configuration table lists every setting)"


@pytest.mark.parametrize(
    ("environ", "problem"),
    [
        (
            {"CDC_SCHEMA_POLICY": "stop"},
            "setting CDC_SCHEMA_POLICY='stop' should be 'evolve', 'alert' or 'halt'.",
        ),
        (
            {"CDC_SCHEMA_POLICY": "Halt"},
            "setting CDC_SCHEMA_POLICY='Halt' should be 'evolve', 'alert' or 'halt'.",
        ),
        (
            {"CDC_SCHEMA_POLICIES": "shop.orders=stop"},
            "setting CDC_SCHEMA_POLICIES='shop.orders=stop' should be 'evolve', 'alert' or 'halt'.",
        ),
        (
            {"CDC_SCHEMA_POLICIES": "shop.orders"},
            "setting CDC_SCHEMA_POLICIES='shop.orders' 'shop.orders' is not pattern=policy"
            " (e.g. shop.orders=halt,audit.*=alert).",
        ),
        (
            {"CDC_SCHEMA_POLICIES": "shop.orders=halt,=alert"},
            "setting CDC_SCHEMA_POLICIES='shop.orders=halt,=alert' '' is not pattern=policy"
            " (e.g. shop.orders=halt,audit.*=alert).",
        ),
        (
            {"CDC_SCHEMA_POLICIES": "shop.orders="},
            "setting CDC_SCHEMA_POLICIES='shop.orders=' 'shop.orders' is not pattern=policy"
            " (e.g. shop.orders=halt,audit.*=alert).",
        ),
    ],
)
def test_an_invalid_policy_setting_names_the_setting(environ: dict[str, str], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(environ)
    assert caught.value.problem == problem
    assert caught.value.fix == SEE
    assert str(caught.value) == f"{problem}\n  fix: {SEE}"
