"""docker-compose.yml mirrors the native stack: the same pinned versions (cdc/stack/pom.xml), the same
host ports (cdc/settings.py defaults), and no committed secret."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from cdc.settings import Settings
from cdc.stack import kafka as kafka_stack
from cdc.stack.tools import versions

COMPOSE_FILE = Path(__file__).resolve().parents[2] / "docker-compose.yml"

# The Kafka version each Debezium release line is built against (debezium-parent's version.kafka).
DEBEZIUM_KAFKA = {"3.4": "4.1.1", "3.5": "4.1.2", "3.6": "4.3.0", "3.3": "4.1.0", "3.2": "3.9.1"}

REQUIRED_VAR = re.compile(r"^\$\{(?P<var>[A-Z][A-Z0-9_]*):\?[^}]+\}$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    services = compose["services"]
    assert name in services, f"docker-compose.yml has no service {name!r}"
    svc = services[name]
    assert isinstance(svc, dict)
    return svc


def environment(svc: dict[str, Any]) -> dict[str, str]:
    """A service's environment, from either the mapping or the list form, values as strings."""
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def published(svc: dict[str, Any]) -> dict[int, int]:
    """{container port: host port} from short ("[ip:]host:container") or long-form port entries."""
    mapping: dict[int, int] = {}
    for entry in svc.get("ports", []):
        if isinstance(entry, dict):
            mapping[int(entry["target"])] = int(entry["published"])
        else:
            *_, host, container = str(entry).split(":")
            mapping[int(container)] = int(host)
    return mapping


def default(field: str) -> Any:
    return Settings.model_fields[field].default


def test_postgres_images_use_the_pinned_major(compose: dict[str, Any]) -> None:
    major = versions().postgres_major
    for name in ("source-postgres", "warehouse-postgres"):
        assert service(compose, name)["image"] == f"postgres:{major}"


def test_kafka_image_uses_the_pinned_version(compose: dict[str, Any]) -> None:
    assert service(compose, "kafka")["image"] == f"apache/kafka:{versions().kafka}"


def test_connect_image_uses_the_pinned_debezium(compose: dict[str, Any]) -> None:
    assert service(compose, "connect")["image"] == f"quay.io/debezium/connect:{versions().debezium}"


def test_pinned_kafka_is_the_one_debezium_is_built_against() -> None:
    v = versions()
    major_minor = ".".join(v.debezium.split(".")[:2])
    assert major_minor in DEBEZIUM_KAFKA, f"add Debezium {major_minor}'s Kafka version to the table"
    assert v.kafka == DEBEZIUM_KAFKA[major_minor]


@pytest.mark.parametrize(
    ("name", "container_port", "field"),
    [
        ("source-postgres", 5432, "stack_source_port"),
        ("warehouse-postgres", 5432, "stack_warehouse_port"),
        ("kafka", 19092, "stack_kafka_port"),
        ("connect", 8083, "stack_connect_port"),
    ],
)
def test_host_ports_equal_the_native_stack_defaults(
    compose: dict[str, Any], name: str, container_port: int, field: str
) -> None:
    assert published(service(compose, name)).get(container_port) == default(field)


def test_kafka_advertises_the_published_host_port_and_the_container_listener(
    compose: dict[str, Any],
) -> None:
    kafka = service(compose, "kafka")
    env = environment(kafka)
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"HOST://127.0.0.1:{default('stack_kafka_port')}" in advertised
    assert "PLAINTEXT://kafka:9092" in advertised
    assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{env['KAFKA_NODE_ID']}@kafka:9093"
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
    ):
        assert env[key] == "1", key
    assert env["KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS"] == "0"
    # ACLs enforced as on the native stack, where tests deny a group to see cdc stop on it.
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"] == kafka_stack.AUTHORIZER
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "true"
    assert environment(service(compose, "connect"))["BOOTSTRAP_SERVERS"] == "kafka:9092"


def test_source_postgres_has_logical_decoding(compose: dict[str, Any]) -> None:
    command = service(compose, "source-postgres")["command"]
    text = " ".join(command) if isinstance(command, list) else str(command)
    for setting in ("wal_level=logical", "max_replication_slots=10", "max_slot_wal_keep_size=4GB"):
        assert setting in text


def test_connect_flushes_offsets_every_second_with_json_schemas(compose: dict[str, Any]) -> None:
    env = environment(service(compose, "connect"))
    assert env["OFFSET_FLUSH_INTERVAL_MS"] == "1000"
    assert env["CONNECT_KEY_CONVERTER_SCHEMAS_ENABLE"] == "true"
    assert env["CONNECT_VALUE_CONVERTER_SCHEMAS_ENABLE"] == "true"
    depends = service(compose, "connect")["depends_on"]
    assert depends["kafka"]["condition"] == "service_healthy"
    assert depends["source-postgres"]["condition"] == "service_healthy"


def test_no_password_is_committed(compose: dict[str, Any]) -> None:
    seen = []
    for name, svc in compose["services"].items():
        for key, value in environment(svc).items():
            if "PASSWORD" in key:
                match = REQUIRED_VAR.match(value)
                assert match, f"{name}.{key} must be a required ${{VAR:?message}} reference, not a literal"
                seen.append(match.group("var"))
    # The source password twice: the database's own, and the one Connect's env provider resolves.
    assert sorted(seen) == ["CDC_SOURCE_PASSWORD", "CDC_SOURCE_PASSWORD", "CDC_WAREHOUSE_PASSWORD"]
    # Nor a credential in a URL outside the comments (which only show `$VAR` references).
    uncommented = yaml.safe_dump(compose)
    assert not re.search(r"://[^/\s:@]+:[^/\s@$]+@", uncommented)


def test_connect_resolves_the_source_password_itself(compose: dict[str, Any]) -> None:
    env = environment(compose["services"]["connect"])
    assert env["CONNECT_CONFIG_PROVIDERS"] == "env"
    assert env["CONNECT_CONFIG_PROVIDERS_ENV_CLASS"].endswith("EnvVarConfigProvider")
