"""`cdc schema policy` through the real command line: the policy in force and where it comes from.
No server needed. (history, diff, accept and install run against the real stack in
tests/integration/test_schema_drift.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from cdc import cli
from cdc.errors import EXIT_CONFIG


def policy_of(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    status = cli.run(["schema", "policy", *argv])
    captured = capsys.readouterr()
    return status, captured.out.strip().splitlines(), captured.err


def test_the_default_policy_comes_from_the_default(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert policy_of(["shop.orders"], capsys) == (0, ["shop.orders: evolve (from default)"], "")


def test_a_table_policy_names_the_setting_and_pattern_it_comes_from(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDC_SCHEMA_POLICY", "alert")
    monkeypatch.setenv("CDC_SCHEMA_POLICIES", "shop.orders=halt,shop.*=evolve")
    assert policy_of(["shop.orders"], capsys)[1] == ["shop.orders: halt (from CDC_SCHEMA_POLICIES 'shop.orders')"]
    assert policy_of(["shop.items"], capsys)[1] == ["shop.items: evolve (from CDC_SCHEMA_POLICIES 'shop.*')"]
    assert policy_of(["audit.log"], capsys)[1] == ["audit.log: alert (from CDC_SCHEMA_POLICY)"]
    assert policy_of([], capsys)[1] == [
        "default: alert (from CDC_SCHEMA_POLICY)",
        "shop.orders: halt (from CDC_SCHEMA_POLICIES)",
        "shop.*: evolve (from CDC_SCHEMA_POLICIES)",
    ]


def test_policies_from_cdc_toml(clean_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clean_env / "cdc.toml").write_text('schema_policy = "halt"\n[schema_policies]\n"shop.*" = "alert"\n')
    assert policy_of(["shop.orders"], capsys)[1] == ["shop.orders: alert (from [schema_policies] in cdc.toml 'shop.*')"]
    assert policy_of(["other.t"], capsys)[1] == ["other.t: halt (from schema_policy in cdc.toml)"]


def test_an_unknown_policy_is_a_configuration_error(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CDC_SCHEMA_POLICIES", "shop.orders=freeze")
    status, out, err = policy_of(["shop.orders"], capsys)
    assert status == EXIT_CONFIG
    assert out == []
    assert err.splitlines()[0] == (
        "error: setting CDC_SCHEMA_POLICIES='shop.orders=freeze' should be 'evolve', 'alert' or 'halt'."
    )
    assert "Traceback" not in err
