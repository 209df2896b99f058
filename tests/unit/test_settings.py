"""Settings: CDC_* environment variables, then cdc.toml, then defaults; passwords never shown."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import SecretStr

from cdc.errors import ConfigError
from cdc.settings import Settings, load_settings, redact_url, split_list
from cdc.stack import state
from cdc.stack.state import load_local_settings

PASSWORD = "hunter2-Zq9"
SOURCE_URL = f"postgresql://cdc:{PASSWORD}@db.example:5432/shop"


@pytest.fixture(autouse=True)
def hermetic(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No CDC_* variable, cdc.toml or stack of the machine running the tests may leak in."""
    for key in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # the default cdc.toml is looked up in the working directory
    monkeypatch.setenv("CDC_STACK_DIR", str(tmp_path / "no-stack"))
    return tmp_path


def write_toml(monkeypatch: pytest.MonkeyPatch, path: Path, text: str) -> None:
    path.write_text(text)
    monkeypatch.setenv("CDC_CONFIG", str(path))


def test_reads_cdc_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_SOURCE_URL", SOURCE_URL)
    monkeypatch.setenv("CDC_KAFKA_BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("CDC_TOPIC_PARTITIONS", "6")
    monkeypatch.setenv("CDC_STACK_PG_BIN", "/opt/pg/bin")
    monkeypatch.setenv("CDC_LOG_FORMAT", "json")

    s = load_settings()

    assert s.source_url is not None
    assert s.source_url.get_secret_value() == SOURCE_URL
    assert s.require_source_url() == SOURCE_URL
    assert s.require_kafka() == "broker:9092"
    assert s.topic_partitions == 6
    assert s.stack_pg_bin == Path("/opt/pg/bin")
    assert s.log_format == "json"


def test_reads_the_toml_file_named_by_cdc_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(
        monkeypatch,
        tmp_path / "custom.toml",
        f'source_url = "{SOURCE_URL}"\n'
        'connect_url = "http://connect.example:8083"\n'
        'include_schemas = "public, sales"\n'
        "stack_kafka_port = 29092\n",
    )

    s = load_settings()

    assert s.require_source_url() == SOURCE_URL
    assert s.require_connect_url() == "http://connect.example:8083"
    assert split_list(s.include_schemas) == ["public", "sales"]
    assert s.stack_kafka_port == 29092


def test_environment_beats_toml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    write_toml(
        monkeypatch,
        tmp_path / "cdc.toml",
        'topic_prefix = "from_toml"\nslot_name = "toml_slot"\n',
    )
    monkeypatch.setenv("CDC_TOPIC_PREFIX", "from_env")

    s = load_settings()

    assert s.topic_prefix == "from_env"
    assert s.slot_name == "toml_slot"  # not overridden by env: the file still counts


def test_defaults_without_env_or_toml() -> None:
    s = load_settings()
    assert s.source_url is None
    assert s.topic_prefix == "cdc"
    assert s.stack_source_port == 54321
    assert s.stack_connect_port == 18083


def test_redact_url_hides_the_password() -> None:
    shown = redact_url(SOURCE_URL)
    assert PASSWORD not in shown
    assert "***" in shown
    assert "db.example" in shown
    assert "cdc" in shown


def test_redact_url_shows_nothing_of_an_unparsable_url() -> None:
    shown = redact_url(f"not a url {PASSWORD}")
    assert PASSWORD not in shown


def test_require_source_url_without_settings_names_the_variable_and_the_fix() -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings().require_source_url()

    message = str(caught.value)
    assert "CDC_SOURCE_URL" in message
    assert "cdc stack up" in message
    assert caught.value.fix is not None
    assert "cdc stack up" in caught.value.fix


@pytest.mark.parametrize(
    ("method", "variable"),
    [
        ("require_warehouse_url", "CDC_WAREHOUSE_URL"),
        ("require_kafka", "CDC_KAFKA_BOOTSTRAP_SERVERS"),
        ("require_connect_url", "CDC_CONNECT_URL"),
    ],
)
def test_every_required_endpoint_names_its_variable(method: str, variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        getattr(load_settings(), method)()


def test_repr_and_str_do_not_show_passwords() -> None:
    warehouse_password = "w4rehouse-Pw"
    s = Settings(
        source_url=SecretStr(SOURCE_URL),
        warehouse_url=SecretStr(f"postgresql://cdc:{warehouse_password}@wh:5432/dw"),
        connect_source_url=SecretStr(SOURCE_URL),
    )
    for text in (repr(s), str(s), f"{s}", repr(s.model_dump())):
        assert PASSWORD not in text
        assert warehouse_password not in text


def test_env_settings_are_not_shown_either(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_SOURCE_URL", SOURCE_URL)
    s = load_settings()
    assert PASSWORD not in repr(s)
    assert PASSWORD not in str(s)


def test_load_settings_fills_unset_endpoints_from_the_local_stack(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    stack_dir = tmp_path / "stack"
    monkeypatch.setenv("CDC_STACK_DIR", str(stack_dir))
    st = state.StackState.new(stack_dir / "postgres")
    state.save_state(state.Layout(stack_dir.resolve()), st)
    monkeypatch.setenv("CDC_KAFKA_BOOTSTRAP_SERVERS", "elsewhere:9092")

    s = load_local_settings()

    assert s.require_source_url() == f"postgresql://cdc:{st.source_password}@127.0.0.1:54321/cdc_source"
    assert s.require_warehouse_url().endswith("@127.0.0.1:54322/cdc_warehouse")
    assert s.require_connect_url() == "http://127.0.0.1:18083"
    assert s.require_kafka() == "elsewhere:9092"  # what the environment set is kept
    assert s.connect_password_ref == f"${{file:{stack_dir.resolve()}/connect/secrets.properties:source_password}}"

    # The stack's own source, as `eval "$(cdc stack env)"` exports it: the reference is kept.
    monkeypatch.setenv("CDC_SOURCE_URL", s.require_source_url())
    assert load_local_settings().connect_password_ref == s.connect_password_ref

    # Another source than the stack's: the stack's password reference would name the wrong password.
    monkeypatch.setenv("CDC_SOURCE_URL", "postgresql://u:p@db.example:5432/app")
    other = load_local_settings()
    assert other.connect_password_ref is None
    assert other.require_source_url() == "postgresql://u:p@db.example:5432/app"


def test_load_settings_without_a_stack_leaves_endpoints_unset() -> None:
    s = load_local_settings()
    assert s.source_url is None
    assert s.connect_url is None
