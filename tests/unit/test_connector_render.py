"""Rendering the Debezium source config: placeholders, secrets, and the table include list."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from cdc.capture import SourceTable, include_list, java_regex_literal
from cdc.connector import DEFAULT_CONFIG, render, template_vars
from cdc.errors import ConfigError
from cdc.resources import repo_file
from cdc.settings import Settings
from cdc.sync.consume import change_topics

HEX_ESCAPE = re.compile(r"\\x\{([0-9A-F]+)\}")
TABLES = [
    SourceTable("cdc", "debezium_heartbeat"),
    SourceTable("cdc", "debezium_signal"),
    SourceTable("public", "orders"),
]


@pytest.fixture(autouse=True)
def hermetic_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No CDC_* variable or cdc.toml of the machine running the tests may leak in."""
    for key in [k for k in os.environ if k.startswith("CDC_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("CDC_CONFIG", str(tmp_path / "absent.toml"))


def settings(**values: object) -> Settings:
    base: dict[str, object] = {
        "source_url": SecretStr("postgresql://cdc:s3cret@127.0.0.1:54321/cdc_source"),
        "connector_name": "cdc-source",
        "topic_prefix": "cdc",
    }
    return Settings(**(base | values))


def from_java_hex(text: str) -> str:
    """Undo java_regex_literal's `\\x{HEX}` escapes (Python's re has no such syntax)."""
    return HEX_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), text)


def as_python_regex(java: str) -> str:
    """The same regex in Python's syntax: `\\x{HEX}` becomes `\\UXXXXXXXX`."""
    return HEX_ESCAPE.sub(lambda m: f"\\U{int(m.group(1), 16):08X}", java)


def default_config() -> Path:
    return repo_file(*DEFAULT_CONFIG)


def test_committed_config_renders_every_placeholder() -> None:
    variables = template_vars(settings(), TABLES)
    name, config = render(default_config(), variables)

    assert name == "cdc-source"
    assert config["name"] == "cdc-source"
    leftovers = {k: v for k, v in config.items() if "${" in v}
    assert leftovers == {}
    assert config["database.hostname"] == "127.0.0.1"
    assert config["database.port"] == "54321"
    assert config["database.user"] == "cdc"
    assert config["database.password"] == "s3cret"
    assert config["database.dbname"] == "cdc_source"
    assert config["topic.prefix"] == "cdc"
    assert config["slot.name"] == "cdc_slot"
    assert config["publication.name"] == "cdc_publication"
    assert config["table.include.list"] == include_list(TABLES)
    assert config["topic.creation.default.partitions"] == "1"


def test_committed_config_has_the_capture_semantics_cdc_relies_on() -> None:
    _, config = render(default_config(), template_vars(settings(), TABLES))

    assert config["connector.class"] == "io.debezium.connector.postgresql.PostgresConnector"
    assert config["plugin.name"] == "pgoutput"
    assert config["publication.autocreate.mode"] == "filtered"
    assert config["decimal.handling.mode"] == "string"  # numeric NaN and ±Infinity arrive (precise: null)
    assert config["skipped.operations"] == "none"
    json_converter = "org.apache.kafka.connect.json.JsonConverter"
    assert config["key.converter"] == json_converter
    assert config["value.converter"] == json_converter
    assert config["key.converter.schemas.enable"] == "true"
    assert config["value.converter.schemas.enable"] == "true"
    # KIP-581: else a NULL written into a column with a default is sent as the default
    assert config["key.converter.replace.null.with.default"] == "false"
    assert config["value.converter.replace.null.with.default"] == "false"
    # the DDL log keeps one partition (its order is the DDL's), whatever the tables' topics have
    assert config["topic.creation.groups"] == "ddl_log"
    assert config["topic.creation.ddl_log.include"] == r"cdc\x{2E}cdc\x{2E}schema_ddl"
    assert config["topic.creation.ddl_log.partitions"] == "1"
    assert config["signal.data.collection"] == "cdc.debezium_signal"
    assert "source" in config["signal.enabled.channels"].split(",")
    # cdc backfill --mode debezium follows its snapshot through these; cdc sync never reads them
    assert config["notification.enabled.channels"] == "sink"
    assert config["notification.sink.topic.name"] == "cdc.notifications"
    assert not re.match(change_topics("cdc"), config["notification.sink.topic.name"])
    assert not re.match(change_topics("cdc", ("cdc.*",)), config["notification.sink.topic.name"])
    assert int(config["heartbeat.interval.ms"]) > 0
    assert "cdc.debezium_heartbeat" in config["heartbeat.action.query"]


def test_connect_source_url_is_what_connect_uses() -> None:
    s = settings(
        connect_source_url=SecretStr("postgresql://cdc:other@source-postgres:5432/cdc_source"),
    )
    variables = template_vars(s, TABLES)
    assert variables["source_host"] == "source-postgres"
    assert variables["source_port"] == "5432"
    assert variables["source_password"] == "other"


def test_password_with_special_characters_renders_verbatim() -> None:
    password = "a\"b'c\\d$e}f${source_host}g{h} i%@:/"
    url = f"postgresql://cdc:{quote(password, safe='')}@127.0.0.1:54321/cdc_source"
    variables = template_vars(settings(source_url=SecretStr(url)), TABLES)
    assert variables["source_password"] == password

    _, config = render(default_config(), variables)

    assert config["database.password"] == password
    assert config["database.hostname"] == "127.0.0.1"
    assert json.loads(json.dumps(config)) == config


def test_unknown_placeholder_is_a_config_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"name": "x", "config": {"database.hostname": "${no_such_var}"}}))
    variables = template_vars(settings(), TABLES)

    with pytest.raises(ConfigError) as caught:
        render(path, variables)

    assert "${no_such_var}" in caught.value.problem
    assert "database.hostname" in caught.value.problem
    assert caught.value.fix is not None
    assert "source_host" in caught.value.fix


def test_bare_config_map_renders(tmp_path: Path) -> None:
    path = tmp_path / "bare.json"
    path.write_text(
        json.dumps(
            {
                "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
                "database.hostname": "${source_host}",
                "tasks.max": 1,
            }
        )
    )

    name, config = render(path, template_vars(settings(connector_name="bare-one"), TABLES))

    assert name == "bare-one"
    assert config == {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.hostname": "127.0.0.1",
        "tasks.max": "1",
        "name": "bare-one",
    }


def test_doubled_dollar_is_a_literal_dollar(tmp_path: Path) -> None:
    path = tmp_path / "dollar.json"
    path.write_text(json.dumps({"transforms.route.replacement": "$$1"}))
    _, config = render(path, template_vars(settings(), TABLES))
    assert config["transforms.route.replacement"] == "$1"


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"broken\.json"):
        render(path, template_vars(settings(), TABLES))


@pytest.mark.parametrize(
    "text",
    ['Ünïcode "tbl", x.y', "plain_name_1", "a.b,c d'e\\f", "smile 😀", "tab\there", ""],
)
def test_java_regex_literal_escapes_everything_but_word_characters(text: str) -> None:
    escaped = java_regex_literal(text)

    assert from_java_hex(escaped) == text
    assert re.fullmatch(r"(?:[A-Za-z0-9_]|\\x\{[0-9A-F]+\})*", escaped)
    outside_escapes = HEX_ESCAPE.sub("", escaped)
    for raw in ",.\"' ":
        assert raw not in outside_escapes
    assert re.fullmatch(as_python_regex(escaped), text)


def test_java_regex_literal_example() -> None:
    assert java_regex_literal('Ünïcode "tbl", x.y') == (
        "\\x{DC}n\\x{EF}code\\x{20}\\x{22}tbl\\x{22}\\x{2C}\\x{20}x\\x{2E}y"
    )


def test_include_list_matches_exactly_the_tables() -> None:
    tables = [SourceTable("public", "orders"), SourceTable("Sales Ünit", 'line,items "v2".x')]
    rendered = include_list(tables)

    entries = rendered.split(",")
    assert len(entries) == len(tables)
    for entry, table in zip(entries, tables, strict=True):
        pattern = as_python_regex(entry)
        assert re.fullmatch(pattern, table.qualified)
        # The schema/table separator is a literal dot, not "any character".
        assert not re.fullmatch(pattern, table.qualified.replace(".", "_", 1))
    assert not re.fullmatch(as_python_regex(entries[0]), "public.orders_archive")


def test_password_reference_replaces_the_password() -> None:
    ref = "${env:CDC_SOURCE_PASSWORD}"
    _, config = render(default_config(), template_vars(settings(connect_password_ref=ref), TABLES))
    assert config["database.password"] == ref
    assert "s3cret" not in json.dumps(config)


def test_a_bare_dollar_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "router.json"
    path.write_text(json.dumps({"connector.class": "x", "transforms.r.replacement": "$1", "regex": "a$"}))
    _, config = render(path, template_vars(settings(), TABLES))
    assert config["transforms.r.replacement"] == "$1" and config["regex"] == "a$"
