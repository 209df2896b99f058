"""`cdc doctor` on the real stack (issue 10): all checks pass on the stack as set up, and each
broken setup fails its check with the fix named, exit 1. Serial: one case pauses the shared
connector."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, TopicPartition

from cdc.connect_api import ConnectClient
from cdc.settings import Settings
from cdc.stack import postgres, tools
from tests.db import execute
from tests.processes import apply_connector
from tests.syncing import Lane, run_cdc, run_sync, wait_for_events

pytestmark = [pytest.mark.stack, pytest.mark.serial]


def _doctor(stack: Settings, lane: Lane) -> tuple[int, dict[str, dict[str, str]]]:
    done = run_cdc(stack, lane, "doctor", "--json", timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    checks = json.loads(done.stdout)["checks"]
    return done.returncode, {c["name"]: c for c in checks}


def test_the_stack_as_set_up_passes_every_check(stack: Settings, lane: Lane) -> None:
    status, checks = _doctor(stack, lane)
    assert status == 0, checks
    assert {"wal_level", "replication privilege", "replication slot", "publication", "heartbeat table"} <= set(checks)
    assert {c["verdict"] for c in checks.values()} <= {"PASS", "WARN"}, checks
    assert checks["wal_level"]["detail"] == "logical"
    assert checks[stack.connector_name]["verdict"] == "PASS"


@pytest.fixture
def keyless(stack: Settings, lane: Lane) -> Iterator[str]:
    table = f"{lane.source_schema}.bare"
    execute(stack.require_source_url(), f"CREATE SCHEMA {lane.source_schema}; CREATE TABLE {table} (n integer)")
    apply_connector(stack)  # captured, REPLICA IDENTITY FULL
    yield table
    execute(stack.require_source_url(), f"DROP SCHEMA {lane.source_schema} CASCADE")
    apply_connector(stack)


def test_each_broken_setup_fails_its_check_with_the_fix(stack: Settings, lane: Lane, keyless: str) -> None:
    src = stack.require_source_url()
    # A keyless table whose replica identity went back to DEFAULT.
    execute(src, f"ALTER TABLE {keyless} REPLICA IDENTITY DEFAULT")
    status, checks = _doctor(stack, lane)
    found = checks["tables without a primary key"]
    assert status == 1 and found["verdict"] == "FAIL", found
    assert keyless in found["detail"] and "cdc connector apply" in found["fix"]
    execute(src, f"ALTER TABLE {keyless} REPLICA IDENTITY FULL")

    # A captured table taken out of the publication.
    execute(src, f"ALTER PUBLICATION {stack.publication_name} DROP TABLE {keyless}")
    status, checks = _doctor(stack, lane)
    found = checks["publication"]
    assert status == 1 and found["verdict"] == "FAIL", found
    assert f"captured but not published (their changes are not sent): {keyless}" in found["detail"]
    assert found["fix"] == "cdc connector apply"
    execute(src, f"ALTER PUBLICATION {stack.publication_name} ADD TABLE {keyless}")

    # The connector paused.
    client = ConnectClient(stack.require_connect_url())
    try:
        client._request("PUT", f"/connectors/{stack.connector_name}/pause")
        deadline = time.monotonic() + 60
        while client.status(stack.connector_name).state != "PAUSED":
            assert time.monotonic() < deadline, "the connector did not pause"
            time.sleep(0.2)
        status, checks = _doctor(stack, lane)
        found = checks[stack.connector_name]
        assert status == 1 and found["verdict"] == "FAIL", found
        assert "is PAUSED" in found["detail"] and "/resume" in found["fix"]
    finally:
        client._request("PUT", f"/connectors/{stack.connector_name}/resume")
        client.wait_running(stack.connector_name)
        client.close()
    status, checks = _doctor(stack, lane)
    assert status == 0, {n: c for n, c in checks.items() if c["verdict"] == "FAIL"}


def test_an_unreachable_warehouse_or_kafka_fails_its_check_with_the_fix(stack: Settings, lane: Lane) -> None:
    status, checks = _doctor_with(stack, lane, CDC_WAREHOUSE_URL="postgresql://cdc:secret-pw@127.0.0.1:1/cdc")
    found = checks["reach the warehouse"]
    assert status == 1 and found["verdict"] == "FAIL", found
    assert found["detail"].startswith("the warehouse failed while connecting (")
    assert "port 1 failed: Connection refused" in found["detail"] and "CDC_WAREHOUSE_URL" in found["fix"], found
    assert "secret-pw" not in json.dumps(checks)
    assert checks["wal_level"]["verdict"] == "PASS"  # the other parts are still checked

    status, checks = _doctor_with(stack, lane, CDC_KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1")
    found = checks["reach Kafka"]
    assert status == 1 and found["verdict"] == "FAIL", found
    assert "cannot reach Kafka at 127.0.0.1:1" in found["detail"] and "CDC_KAFKA_BOOTSTRAP_SERVERS" in found["fix"]


def _doctor_with(stack: Settings, lane: Lane, **settings: str) -> tuple[int, dict[str, dict[str, str]]]:
    done = run_cdc(stack, lane, "doctor", "--json", timeout=120, **settings)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, {c["name"]: c for c in json.loads(done.stdout)["checks"]}


def test_stored_offsets_below_the_topics_log_start_fail_with_the_repair(stack: Settings, lane: Lane) -> None:
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {lane.source_schema}; CREATE TABLE {lane.source_schema}.items (id int PRIMARY KEY)")
    apply_connector(stack)
    execute(src, f"INSERT INTO {lane.source_schema}.items SELECT generate_series(1, 10)")
    wait_for_events(stack, lane.source_schema, "items", 10)
    assert run_sync(stack, lane).returncode == 0
    status, checks = _doctor(stack, lane)
    assert checks["stored offsets"]["verdict"] == "PASS", checks["stored offsets"]

    # Ten more changes, deleted from Kafka (as retention would) before cdc sync applied them.
    execute(src, f"INSERT INTO {lane.source_schema}.items SELECT generate_series(11, 20)")
    wait_for_events(stack, lane.source_schema, "items", 20)
    topic = f"{stack.topic_prefix}.{lane.source_schema}.items"
    admin = KafkaAdminClient(bootstrap_servers=stack.require_kafka())
    try:
        admin.delete_records({TopicPartition(topic, 0): 20})
    finally:
        admin.close()
    status, checks = _doctor(stack, lane)
    found = checks["stored offsets"]
    assert status == 1 and found["verdict"] == "FAIL", found
    assert found["detail"] == f"changes deleted from Kafka before cdc sync applied them: {topic}[0] offsets 10..19"
    assert "cdc backfill" in found["fix"] and "cdc verify --fix" in found["fix"], found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_source_without_logical_wal_fails_the_wal_level_check(stack: Settings, lane: Lane) -> None:
    # A second, throwaway cluster as initdb makes it (wal_level = replica), beside the stack's.
    root = Path(tempfile.mkdtemp(prefix="cdc-doctor-", dir="/var/tmp"))
    root.chmod(0o755)  # the postgres OS user runs it when the tests run as root
    cluster = postgres.Cluster("plain", root, _free_port(), tools.postgres_bin(stack.stack_pg_bin), logical=False)
    try:
        postgres.init(cluster)
        postgres.start(cluster)
        postgres.wait_ready(cluster)
        postgres.ensure_database(cluster, db="shop", user="shop", password="pw-123", replication=True)
        status, checks = _doctor_with(
            stack, lane, CDC_SOURCE_URL=f"postgresql://shop:pw-123@127.0.0.1:{cluster.port}/shop"
        )
        found = checks["wal_level"]
        assert status == 1 and found["verdict"] == "FAIL", found
        assert found["detail"].startswith("wal_level is replica: ")
        assert found["fix"] == "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL"
        assert checks["replication privilege"]["verdict"] == "PASS"
    finally:
        postgres.stop(cluster)
        shutil.rmtree(root, ignore_errors=True)


def test_a_failed_task_fails_its_check_with_the_first_line_of_its_trace(stack: Settings, lane: Lane) -> None:
    # A second connector like the stack's, whose task fails as it starts: its publication does
    # not exist and it may not create one.
    name, slot = f"doctor-{lane.group}", f"doctor_{lane.group}".lower()
    client = ConnectClient(stack.require_connect_url())
    config = dict(client.config(stack.connector_name) or {})
    config |= {
        "name": name,
        "slot.name": slot,
        "publication.name": f"missing_{lane.group}",
        "publication.autocreate.mode": "disabled",
        "topic.prefix": f"doctor_{lane.group}",
    }
    try:
        client.put_config(name, config)
        deadline = time.monotonic() + 90
        while not client.status(name).tasks or client.status(name).tasks[0][1] != "FAILED":
            assert time.monotonic() < deadline, client.status(name)
            time.sleep(0.5)
        status, checks = _doctor_with(stack, lane, CDC_CONNECTOR_NAME=name)
        found = checks[f"{name} task 0"]
        assert status == 1 and found["verdict"] == "FAIL", found
        assert found["detail"].startswith("task 0 is FAILED: "), found
        assert "cdc connector apply" in found["fix"]
    finally:
        client.delete(name)
        client.close()
        execute(
            stack.require_source_url(),
            f"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '{slot}' "
            "AND NOT active",
        )
