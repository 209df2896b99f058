"""The replication slot dropped and recreated under a running pipeline (issue 10): cdc sync stops
with the error and one alert naming the repair, refuses to start over the gap, and after the repair
(cdc connector resnapshot, then cdc verify --fix) runs again with source and warehouse equal. Serial: it recreates the
shared stack's slot."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import psycopg2
import pytest

from cdc.connect_api import ConnectClient
from cdc.settings import Settings
from tests.db import execute, query
from tests.processes import apply_connector, wait_until
from tests.syncing import Lane, run_cdc, run_sync, start_sync, target_of
from tests.webhook import Endpoint

pytestmark = [pytest.mark.stack, pytest.mark.serial]


def _count(url: str, table: str) -> int:
    return int(query(url, f"SELECT count(*) FROM {table}")[0][0])


def _set_state(client: ConnectClient, name: str, verb: str, state: str) -> None:
    client._request("PUT", f"/connectors/{name}/{verb}").raise_for_status()
    wait_until(lambda: client.status(name).state == state, 60, f"connector {name} {state}")


def _released(src: str, slot: str) -> None:
    """A stopped task's replication connection ends a moment after Connect says STOPPED."""
    active = "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s AND active"
    wait_until(lambda: query(src, active, (slot,))[0][0] == 0, 30, f"slot {slot} released")


def _slot_alerts(hook: Endpoint) -> list[dict[str, str]]:
    """The slot's alerts (the webhook also gets the schema changes, a new table among them)."""
    alerts = [json.loads(r.body) for r in hook.requests]
    return [a for a in alerts if str(a.get("kind", "")).startswith("slot_")]


def test_a_slot_recreated_under_a_running_sync_stops_it_with_one_alert_until_repaired(
    stack: Settings, lane: Lane, tmp_path: Path
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    items = f"{lane.source_schema}.items"
    execute(src, f"CREATE SCHEMA {lane.source_schema}; CREATE TABLE {items} (id int PRIMARY KEY, v text)")
    apply_connector(stack)
    execute(src, f"INSERT INTO {items} SELECT g, 'before' FROM generate_series(1, 10) g")
    hook = Endpoint()
    log = tmp_path / "sync.log"
    settings = {"CDC_ALERT_WEBHOOK_URL": hook.url, "CDC_SLOT_CHECK_SECONDS": "0.5"}
    proc = start_sync(stack, lane, log=log, **settings)
    client = ConnectClient(stack.require_connect_url())
    try:
        wait_until(
            lambda: (
                query(wh, "SELECT count(*) FROM cdc.table_map WHERE source_schema = %s", (lane.source_schema,))[0][0]
                == 1
            ),
            60,
            "the table",
        )
        target = ".".join(f'"{p}"' for p in target_of(stack, lane, "items"))
        wait_until(lambda: _count(wh, target) == 10, 60, "the first rows")

        # Debezium stopped; the slot dropped, changes made, a new slot made after them: those
        # changes never reach Kafka. Then Debezium streams again, from the new slot.
        _set_state(client, stack.connector_name, "stop", "STOPPED")
        _released(src, stack.slot_name)
        execute(src, f"INSERT INTO {items} SELECT g, 'lost' FROM generate_series(11, 15) g")
        with psycopg2.connect(src) as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT pg_drop_replication_slot(%s)", (stack.slot_name,))
                cur.execute("SELECT pg_create_logical_replication_slot(%s, 'pgoutput')", (stack.slot_name,))
        _set_state(client, stack.connector_name, "resume", "RUNNING")
        execute(src, f"INSERT INTO {items} SELECT g, 'after' FROM generate_series(16, 20) g")

        status = proc.wait(timeout=90)
        output = log.read_text()
        assert status == 1, output[-3000:]
        # Recreated, as a rule; gone, when a look of the guard fell between the drop and the create.
        recreated = f"error: the replication slot {stack.slot_name} was recreated: it starts at " in output
        gone = (
            f"error: the replication slot {stack.slot_name} is gone: changes made since were never captured" in output
        )
        assert recreated or gone, output[-3000:]
        assert "fix: cdc connector resnapshot (Debezium refuses its old position" in output
        assert "then cdc verify --fix (or cdc backfill the tables)" in output
        assert "Traceback" not in output
        wait_until(lambda: len(_slot_alerts(hook)) >= 1, 30, "the alert")
        time.sleep(2)
        alerts = _slot_alerts(hook)
        assert [a["kind"] for a in alerts] == ["slot_gap"], alerts
        assert ("was recreated" if recreated else "is gone") in alerts[0]["problem"] and "cdc verify" in alerts[0][
            "fix"
        ]

        # Over the gap, cdc sync does not start.
        again = run_sync(stack, lane, **settings)
        assert again.returncode == 1, again.stderr[-2000:]
        assert "a gap in the changes is recorded and not repaired" in again.stderr, again.stderr[-2000:]

        # Debezium refuses its old position on the new slot: its task failed, and doctor says so.
        wait_until(lambda: client.status(stack.connector_name).tasks[:1] == ((0, "FAILED"),), 60, "the task")
        doctor = json.loads(run_cdc(stack, lane, "doctor", "--json").stdout)["checks"]
        (task,) = [c for c in doctor if c["name"] == f"{stack.connector_name} task 0"]
        assert "no longer available on the server" in task["detail"], task
        assert task["fix"] == "the slot lost the connector's position: cdc connector resnapshot, then cdc verify --fix"

        # The repair named: a new snapshot, then verify --fix, which clears the gap once every table is equal.
        resnapshot = run_cdc(stack, lane, "connector", "resnapshot")
        assert resnapshot.returncode == 0, resnapshot.stdout[-2000:] + resnapshot.stderr[-2000:]
        fixed = run_cdc(stack, lane, "verify", "--fix")
        assert fixed.returncode == 0, fixed.stdout[-2000:] + fixed.stderr[-2000:]
        assert "the recorded gap in the changes is repaired" in fixed.stdout
        assert _count(wh, target) == 20

        resumed = run_sync(stack, lane, **settings)
        assert resumed.returncode == 0, resumed.stderr[-3000:]
        assert run_cdc(stack, lane, "verify").returncode == 0
        assert len(_slot_alerts(hook)) == 1  # one alert, however often the gap was looked at
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        if not client.status(stack.connector_name).running:
            run_cdc(stack, lane, "connector", "resnapshot")  # whatever failed, the stack streams again
        client.close()
        hook.close()


def _retained(src: str, slot: str) -> int:
    return int(
        query(
            src,
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint FROM pg_replication_slots "
            "WHERE slot_name = %s",
            (slot,),
        )[0][0]
    )


def test_retained_wal_above_the_limit_warns_and_alerts_once_per_crossing(
    stack: Settings, lane: Lane, tmp_path: Path
) -> None:
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {lane.source_schema}; CREATE TABLE {lane.source_schema}.pad (id int, v text)")
    apply_connector(stack)
    client = ConnectClient(stack.require_connect_url())
    limit = _retained(src, stack.slot_name) + 4 * 1024 * 1024
    hook = Endpoint()
    log = tmp_path / "sync.log"
    settings = {
        "CDC_ALERT_WEBHOOK_URL": hook.url,
        "CDC_SLOT_CHECK_SECONDS": "0.5",
        "CDC_SLOT_RETAINED_WARN_BYTES": str(limit),
    }
    proc = start_sync(stack, lane, log=log, **settings)

    def grow_past_the_limit() -> None:
        # Debezium stopped: the slot holds every byte of WAL written meanwhile.
        _set_state(client, stack.connector_name, "stop", "STOPPED")
        while _retained(src, stack.slot_name) <= limit:
            execute(
                src, f"INSERT INTO {lane.source_schema}.pad SELECT g, repeat('x', 500) FROM generate_series(1, 5000) g"
            )

    try:
        grow_past_the_limit()
        wait_until(lambda: len(_slot_alerts(hook)) == 1, 30, "the alert")
        checks = json.loads(run_cdc(stack, lane, "doctor", "--json", CDC_SLOT_RETAINED_WARN_BYTES=str(limit)).stdout)
        (warn,) = [c for c in checks["checks"] if c["name"] == "retained WAL"]
        assert warn["verdict"] == "WARN" and "above the limit of" in warn["detail"], warn
        status = json.loads(run_cdc(stack, lane, "status", "--json", CDC_SLOT_RETAINED_WARN_BYTES=str(limit)).stdout)
        assert status["slot"]["retained_above_limit"] is True
        time.sleep(3)  # six more looks above the limit: no second alert
        assert len(_slot_alerts(hook)) == 1

        # Streaming again: below the limit; above it once more: one more alert.
        _set_state(client, stack.connector_name, "resume", "RUNNING")
        wait_until(lambda: _retained(src, stack.slot_name) < limit, 90, "the slot to catch up")
        time.sleep(2)
        assert len(_slot_alerts(hook)) == 1
        grow_past_the_limit()
        wait_until(lambda: len(_slot_alerts(hook)) == 2, 30, "the second alert")
        alerts = _slot_alerts(hook)
        assert [a["kind"] for a in alerts] == ["slot_retained_wal"] * 2, alerts
        assert "above the limit of" in alerts[0]["problem"]
        assert proc.poll() is None, log.read_text()[-3000:]  # a warning, not a reason to stop
    finally:
        if client.status(stack.connector_name).state != "RUNNING":
            _set_state(client, stack.connector_name, "resume", "RUNNING")
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        hook.close()
