"""`cdc doctor` on the real stack (issue 10): all checks pass on the stack as set up, and each
broken setup fails its check with the fix named, exit 1. Serial: one case pauses the shared
connector."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from cdc.connect_api import ConnectClient
from cdc.settings import Settings
from tests.db import execute
from tests.processes import apply_connector
from tests.syncing import Lane, run_cdc

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
