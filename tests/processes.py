"""Helpers for tests that run `cdc sync` processes against the real stack: waiting on their logs,
stopping them, reading the consumer group's state, capturing new tables."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import psycopg2.errors
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from cdc import connector
from cdc.settings import Settings
from tests.compare import assert_same_rows
from tests.syncing import Lane, target_of
from tests.workloads import TABLES, create_tables

ASSIGNED = re.compile(r"assigned (\d+) partitions")


def wait_for_quiet_topics(stack: Settings, lane: Lane, quiet: float = 3, timeout: float = 90) -> None:
    """Block until Debezium has written everything: the lane's topics grew no more for `quiet` s."""
    consumer = KafkaConsumer(bootstrap_servers=stack.require_kafka())
    own = f"{stack.topic_prefix}.{lane.source_schema}."
    try:
        deadline = time.monotonic() + timeout
        last: dict[TopicPartition, int] = {}
        since = time.monotonic()
        while time.monotonic() - since < quiet:
            assert time.monotonic() < deadline, f"the lane's topics still grow after {timeout:.0f}s"
            partitions = [
                TopicPartition(topic, p)
                for topic in consumer.topics()
                if topic.startswith(own)
                for p in consumer.partitions_for_topic(topic) or ()
            ]
            ends = consumer.end_offsets(partitions)
            if ends != last:
                last, since = ends, time.monotonic()
            time.sleep(0.5)
    finally:
        consumer.close()


def apply_connector(stack: Settings) -> None:
    """`cdc connector apply`, tried again when another test dropped a table it had just listed
    (see test_connector_apply_survives_a_table_dropped_meanwhile)."""
    for attempt in range(3):
        try:
            connector.apply(stack, None, lambda _: None)
        except (psycopg2.errors.UndefinedTable, psycopg2.errors.InvalidSchemaName):
            if attempt == 2:
                raise
        else:
            return


def log_of(path: Path) -> str:
    return path.read_text(errors="replace")


def wait_for_log(path: Path, proc: subprocess.Popen[bytes], predicate: Callable[[str], bool], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        text = log_of(path)
        if predicate(text):
            return text
        assert proc.poll() is None, f"cdc sync exited with {proc.returncode}; its log:\n{text[-3000:]}"
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s in vain; the log:\n{text[-3000:]}"
        time.sleep(0.05)


def assignments(text: str) -> list[int]:
    return [int(n) for n in ASSIGNED.findall(text)]


def stop_and_wait(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path, timeout: float = 30) -> int:
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"cdc sync did not exit within {timeout:.0f}s of {sig.name}; its log:\n{log_of(log)[-3000:]}"
        ) from None


def group_state(stack: Settings, group: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=stack.require_kafka())
    try:
        (info,) = admin.describe_consumer_groups([group])
    finally:
        admin.close()
    return str(info.state)


def member_shares(stack: Settings, group: str) -> list[int] | None:
    """Partitions held by each member of a group, once it is stable (None while it rebalances)."""
    admin = KafkaAdminClient(bootstrap_servers=stack.require_kafka())
    try:
        (info,) = admin.describe_consumer_groups([group])
    finally:
        admin.close()
    if info.state != "Stable":
        return None
    return sorted(
        sum(len(parts) for _, parts in getattr(m.member_assignment, "assignment", None) or ()) for m in info.members
    )


def wait_until(condition: Callable[[], bool], timeout: float, what: str, every: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:.0f}s in vain for {what}"
        time.sleep(every)


def assert_stopped_cleanly(proc: subprocess.Popen[bytes], sig: signal.Signals, log: Path) -> None:
    """Signal the process: it must exit 0 within 30 s, its last lines saying it stopped."""
    code = stop_and_wait(proc, sig, log)
    text = log_of(log)
    assert code == 0, text[-3000:]
    # After the signal, the flush it finishes may log (a table made, schema changes recorded), as
    # may a Kafka client about the rebalance its leaving starts: the last line says it stopped.
    lines = text.strip().splitlines()
    received = [
        i for i, line in enumerate(lines) if f"received {sig.name}: finishing the current flush and stopping" in line
    ]
    assert received, lines[-10:]
    assert lines[-1].startswith("sync stopped: "), lines[-10:]
    assert "Traceback" not in text, text[-3000:]


def last_assigned_at(text: str) -> str:
    """The timestamp of the last 'assigned N partitions' line ('' if none)."""
    lines = [line for line in text.splitlines() if ASSIGNED.search(line)]
    return lines[-1][:23] if lines else ""


def captured_lane(stack: Settings, lane: Lane) -> None:
    """The workload's tables in the lane's source schema, captured by the connector."""
    create_tables(stack.require_source_url(), lane.source_schema)
    apply_connector(stack)


def assert_all_same(
    stack: Settings, lane: Lane, tables: Sequence[str] = TABLES, warehouse_url: str | None = None
) -> dict[str, int]:
    """Each of the lane's tables equals its warehouse copy, row for row; the row counts."""
    src, wh = stack.require_source_url(), warehouse_url or stack.require_warehouse_url()
    return {
        table: assert_same_rows(src, (lane.source_schema, table), wh, target_of(stack, lane, table, wh))
        for table in tables
    }


def assert_converges(
    stack: Settings,
    lane: Lane,
    timeout: float,
    *,
    running: list[subprocess.Popen[bytes]],
    tables: Sequence[str] = TABLES,
    warehouse_url: str | None = None,
) -> None:
    """Poll until the warehouse equals the source (the processes in `running` must keep running)."""
    deadline = time.monotonic() + timeout
    while True:
        for proc in running:
            assert proc.poll() is None, f"cdc sync exited with {proc.returncode} before the warehouse converged"
        try:
            assert_all_same(stack, lane, tables, warehouse_url)
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)
        else:
            return
