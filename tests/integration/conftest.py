"""Fixtures of the integration tests: the lane's bookkeeping rows removed afterwards (its schema
drift's too, with drift_cleanup), and every `cdc sync` process a test starts killed at its end."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator

import pytest

from cdc.settings import Settings
from tests.db import execute
from tests.syncing import Lane


@pytest.fixture
def lane(lane: Lane, stack: Settings) -> Iterator[Lane]:
    """The shared lane fixture, and the lane's bookkeeping rows in the warehouse removed afterwards."""
    yield lane
    wh = stack.require_warehouse_url()
    execute(wh, f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{lane.group}'")
    execute(wh, f"DELETE FROM cdc.dead_letter WHERE consumer_group = '{lane.group}'")
    execute(wh, f"DELETE FROM cdc.table_map WHERE source_schema = '{lane.source_schema}'")
    execute(wh, f"DELETE FROM cdc.keyless_position WHERE target_schema LIKE '{lane.warehouse_schema}%'")


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Every `cdc sync` a test starts; whichever still runs at the end is killed (by its own pid)."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def drift_cleanup(stack: Settings, lane: Lane) -> Iterator[None]:
    """The lane's schema history, drift state and alerts removed afterwards."""
    yield
    wh = stack.require_warehouse_url()
    execute(wh, f"DELETE FROM cdc.schema_change WHERE target_schema = '{lane.warehouse_schema}'")
    execute(wh, f"DELETE FROM cdc.schema_state WHERE target_schema = '{lane.warehouse_schema}'")
    execute(wh, f"DELETE FROM cdc.alert_outbox WHERE scope = '{lane.warehouse_schema}'")
    execute(wh, f"DELETE FROM cdc.source_ddl_seen WHERE target_schema = '{lane.warehouse_schema}'")
