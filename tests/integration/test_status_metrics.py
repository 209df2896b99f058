"""`cdc status` and `cdc sync --metrics-port` on the real stack (issue 10): lag that grows while
sync is stopped and falls to zero when it runs, and metrics whose counters match the rows applied
and whose lag matches status. Serial: it measures lag in seconds."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from cdc.resources import cdc_command
from cdc.settings import Settings
from tests.db import execute, query
from tests.processes import apply_connector, stop_and_wait, wait_for_log, wait_until
from tests.syncing import Lane, run_cdc, run_sync, start_sync, sync_env, wait_for_events

pytestmark = [pytest.mark.stack, pytest.mark.serial]


def _status(stack: Settings, lane: Lane) -> dict[str, Any]:
    done = run_cdc(stack, lane, "status", "--json", "--table", f"{lane.source_schema}.*", timeout=60)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def _table(status: dict[str, Any], name: str) -> dict[str, Any]:
    (row,) = [t for t in status["tables"] if t["source_table"] == name]
    return row


@pytest.fixture
def items(stack: Settings, lane: Lane) -> str:
    execute(
        stack.require_source_url(),
        f"CREATE SCHEMA {lane.source_schema}; CREATE TABLE {lane.source_schema}.items (id int PRIMARY KEY, v text)",
    )
    apply_connector(stack)
    return f"{lane.source_schema}.items"


def _insert(stack: Settings, table: str, first: int, count: int) -> None:
    execute(
        stack.require_source_url(),
        f"INSERT INTO {table} SELECT g, 'v' || g FROM generate_series({first}, {first + count - 1}) g",
    )


def test_lag_grows_while_sync_is_stopped_and_falls_to_zero_when_it_runs(
    stack: Settings, lane: Lane, items: str, tmp_path: Path
) -> None:
    _insert(stack, items, 1, 100)
    wait_for_events(stack, lane.source_schema, "items", 100)
    applied = run_sync(stack, lane)
    assert applied.returncode == 0, applied.stderr[-3000:]
    row = _table(_status(stack, lane), items)
    assert (row["lag_messages"], row["lag_seconds"], row["events_applied"]) == (0, 0.0, 100), row
    assert row["target_table"] and row["last_commit_lsn"] and row["last_source_ts"], row
    assert 0 <= row["last_apply_lag_seconds"] < 120, row

    # cdc sync stopped: the changes wait in Kafka, and the oldest of them ages.
    _insert(stack, items, 101, 50)
    wait_for_events(stack, lane.source_schema, "items", 150)
    first = _table(_status(stack, lane), items)
    time.sleep(3)
    second = _table(_status(stack, lane), items)
    assert first["lag_messages"] == second["lag_messages"] == 50, (first, second)
    assert first["lag_seconds"] > 0, first
    assert second["lag_seconds"] >= first["lag_seconds"] + 2.5, (first, second)
    assert second["events_applied"] == 100

    # cdc sync running: lag falls back to zero.
    log = tmp_path / "sync.log"
    proc = start_sync(stack, lane, log=log)
    try:
        seen = []
        deadline = time.monotonic() + 90
        while True:
            row = _table(_status(stack, lane), items)
            seen.append((row["lag_messages"], row["lag_seconds"]))
            if row["lag_messages"] == 0:
                break
            assert time.monotonic() < deadline, f"lag never fell to zero: {seen}"
            time.sleep(0.5)
        assert row["lag_seconds"] == 0.0 and row["events_applied"] == 150, row
    finally:
        stop_and_wait(proc, signal.SIGTERM, log)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")


def _scrape(port: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the endpoint: (name, its labels) -> value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    samples = {}
    for line in text.splitlines():
        found = _SAMPLE.match(line)
        if found and not line.startswith("#"):
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', found["labels"] or ""))
            samples[found["name"], labels] = float(found["value"])
    return samples


def _value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return samples[name, frozenset(labels.items())]


def test_metrics_count_the_rows_applied_and_their_lag_matches_status(
    stack: Settings, lane: Lane, items: str, tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    proc = start_sync(stack, lane, "--metrics-port", "0", log=log)
    try:
        text = wait_for_log(log, proc, lambda t: "serving Prometheus metrics" in t, timeout=60)
        port = int(re.search(r"serving Prometheus metrics on http://[^:]+:(\d+)/metrics", text).group(1))  # type: ignore[union-attr]
        # A workload, scraped while it runs.
        for batch in range(6):
            _insert(stack, items, batch * 50 + 1, 50)
            if batch == 2:
                assert _value(_scrape(port), "process_resident_memory_bytes") > 0
        execute(stack.require_source_url(), f"UPDATE {items} SET v = 'u' || id WHERE id <= 100")
        execute(stack.require_source_url(), f"DELETE FROM {items} WHERE id > 250")
        wait_for_events(stack, lane.source_schema, "items", 300 + 100 + 50 + 50)  # deletes have tombstones
        deadline = time.monotonic() + 90
        while (row := _table(_status(stack, lane), items))["lag_messages"] or row["events_applied"] < 450:
            assert time.monotonic() < deadline, row
            time.sleep(0.5)
        (target,) = query(
            stack.require_warehouse_url(),
            "SELECT target_schema || '.' || target_table FROM cdc.table_map WHERE source_schema = %s",
            (lane.source_schema,),
        )
        table = target[0]
        time.sleep(6)  # the consumer lag gauge is sampled every few seconds
        metrics = _scrape(port)
        applied = {
            op: metrics.get(("cdc_events_applied_total", frozenset({("table", table), ("op", op)})), 0.0)
            for op in "cud"
        }
        assert applied == {"c": 300.0, "u": 100.0, "d": 50.0}, applied
        assert sum(applied.values()) == row["events_applied"] == 450
        assert (
            _value(metrics, "cdc_consumer_lag_messages", topic=row["topic"], partition="0") == 0 == row["lag_messages"]
        )
        gauge = _value(metrics, "cdc_end_to_end_lag_seconds", table=table)
        assert abs(gauge - row["last_apply_lag_seconds"]) < 1.0, (gauge, row)
        assert _value(metrics, "cdc_flushes_total") >= 1
        assert _value(metrics, "cdc_slot_retained_wal_bytes") > 0
        assert query(
            stack.require_warehouse_url(), f'SELECT count(*) FROM "{lane.warehouse_schema}"."{table.split(".", 1)[1]}"'
        ) == [(250,)]
    finally:
        stop_and_wait(proc, signal.SIGTERM, log)


def test_status_names_each_part_it_could_not_read_and_exits_1(stack: Settings, lane: Lane) -> None:
    done = run_cdc(
        stack,
        lane,
        "status",
        "--json",
        timeout=120,
        CDC_WAREHOUSE_URL="postgresql://cdc:secret-pw@127.0.0.1:1/cdc",
        CDC_CONNECT_URL="http://127.0.0.1:1",
    )
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    status = json.loads(done.stdout)
    assert [p.split(":", 1)[0] for p in status["problems"]] == ["Kafka Connect", "the warehouse"], status
    assert "secret-pw" not in done.stdout
    assert status["slot"]["exists"] is True  # the parts that answer are still reported


def test_watch_prints_a_reading_every_interval_until_ctrl_c(stack: Settings, lane: Lane, tmp_path: Path) -> None:
    out = tmp_path / "watch.out"
    with out.open("wb") as sink:
        proc = subprocess.Popen(
            [*cdc_command(), "status", "--watch", "--every", "0.5", "--table", f"{lane.source_schema}.*"],
            env=sync_env(stack, lane),
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        wait_until(lambda: out.read_text().count("cdc status at") >= 3, 60, "three readings")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
    assert "Traceback" not in out.read_text()
