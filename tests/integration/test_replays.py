"""The warehouse is a function of the source alone, on the real stack: a keyless table's changes
are applied once however they come again (a second consumer group, offsets reset, a dead-letter
replay, Debezium sending them again after Kafka Connect is killed), and same-named tables of two
schemas get the same warehouse names whichever is captured first."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
from kafka import KafkaConsumer, TopicPartition

from cdc.errors import EXIT_CONFIG
from cdc.settings import Settings
from cdc.stack import control
from tests.compare import assert_same_rows
from tests.db import execute, query
from tests.kafka_reader import read_topic, settled
from tests.processes import apply_connector, assert_converges, log_of, stop_and_wait
from tests.syncing import (
    Lane,
    number_before,
    run_cdc,
    run_sync,
    start_sync,
    stopped_counts,
    target_of,
    wait_for_events,
)

pytestmark = pytest.mark.stack

OTHER = {"kafka-python": "confluent", "confluent": "kafka-python"}


@pytest.fixture
def second_group(lane: Lane, stack: Settings) -> Iterator[Lane]:
    """The lane's tables and warehouse schema, read by another consumer group with the other backend."""
    other = dataclasses.replace(lane, group=lane.group + "_b", kafka_client=OTHER[lane.kafka_client])
    yield other
    execute(stack.require_warehouse_url(), f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{other.group}'")
    execute(stack.require_warehouse_url(), f"DELETE FROM cdc.dead_letter WHERE consumer_group = '{other.group}'")


@pytest.mark.both_clients
def test_a_keyless_table_is_applied_once_however_its_changes_come_again(
    stack: Settings, lane: Lane, second_group: Lane, tmp_path: Path
) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.hits (page text, n integer)")
    apply_connector(stack)  # sets REPLICA IDENTITY FULL: the table has no key
    # COPY writes up to 1,000 rows per WAL record: their changes share an LSN. Read while
    # Debezium writes them, with a flush per poll, flushes end inside such batches.
    running = start_sync(stack, lane, log=tmp_path / "first.log", CDC_FLUSH_ROWS="2")
    try:
        _copy(src, f"{s}.hits", "a\t1\na\t1\na\t1\nb\t2\n" + "".join(f"z\t{i % 50}\n" for i in range(20000)))
        assert_converges(stack, lane, 120, running=[running], tables=["hits"])
    finally:
        stop_and_wait(running, signal.SIGTERM, tmp_path / "first.log")
    assert stopped_counts(log_of(tmp_path / "first.log")) == {"events": 20004, "rows": 20004, "skipped": 0, "dead": 0}
    target = target_of(stack, lane, "hits")
    assert target == (lane.warehouse_schema, f"{s}__hits")

    # A row the warehouse refuses (a rule the source does not have) becomes a dead letter.
    execute(wh, f'ALTER TABLE "{target[0]}"."{target[1]}" ADD CONSTRAINT small CHECK (n < 100)')
    execute(
        src,
        f"""INSERT INTO {s}.hits VALUES ('c', 500), ('d', 3);
        DELETE FROM {s}.hits WHERE ctid = (SELECT ctid FROM {s}.hits WHERE page = 'a' LIMIT 1);
        UPDATE {s}.hits SET n = 4 WHERE page = 'b';""",
    )
    wait_for_events(stack, s, "hits", 20009)  # a delete is followed by a tombstone
    second = run_sync(stack, lane)
    assert second.returncode == 0, second.stdout + second.stderr
    assert stopped_counts(second.stdout) == {"events": 5, "rows": 3, "skipped": 0, "dead": 1}
    # of three identical rows, the delete removed exactly one
    assert query(wh, f'SELECT page, n FROM "{target[0]}"."{target[1]}" WHERE page <> %s ORDER BY page, n', ("z",)) == [
        ("a", 1),
        ("a", 1),
        ("b", 4),
        ("d", 3),
    ]

    execute(wh, f'ALTER TABLE "{target[0]}"."{target[1]}" DROP CONSTRAINT small')
    replayed = run_cdc(stack, lane, "dlq", "replay", "--group", lane.group)
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert (number_before(replayed.stdout, "dead letter(s);"), number_before(replayed.stdout, "still failing")) == (
        1,
        0,
    )
    again = run_cdc(stack, lane, "dlq", "replay", "--group", lane.group)
    assert again.returncode == 0, again.stdout + again.stderr
    assert number_before(again.stdout, "dead letter(s);") == 0
    assert assert_same_rows(src, (s, "hits"), wh, target) == 20005

    # Another consumer group (the other backend) reads the whole topic into the same warehouse.
    other = run_sync(stack, second_group)
    assert other.returncode == 0, other.stdout + other.stderr
    assert stopped_counts(other.stdout) == {"events": 20009, "rows": 0, "skipped": 20008, "dead": 0}
    assert assert_same_rows(src, (s, "hits"), wh, target) == 20005

    # The first group's offsets reset: it reads everything again.
    execute(wh, f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{lane.group}'")
    reset = run_sync(stack, lane)
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert stopped_counts(reset.stdout) == {"events": 20009, "rows": 0, "skipped": 20008, "dead": 0}
    assert assert_same_rows(src, (s, "hits"), wh, target) == 20005


def _copy(url: str, table: str, text: str) -> None:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.copy_expert(f"COPY {table} FROM STDIN", io.StringIO(text))
        conn.commit()
    finally:
        conn.close()


@pytest.fixture
def two_schemas(stack: Settings, lane: Lane) -> Iterator[tuple[str, str]]:
    """Two more source schemas, each with a table `inventory` (and `stock` in the first)."""
    first, second = f"{lane.source_schema}_x", f"{lane.source_schema}_y"
    src = stack.require_source_url()
    for schema in (first, second):
        execute(src, f"CREATE SCHEMA {schema}; CREATE TABLE {schema}.inventory (id integer PRIMARY KEY, qty integer)")
        execute(src, f"INSERT INTO {schema}.inventory VALUES (1, {len(schema)}), (2, 7)")
    yield first, second
    for schema in (first, second):
        execute(src, f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        execute(stack.require_warehouse_url(), f"DELETE FROM cdc.table_map WHERE source_schema = '{schema}'")


def test_same_named_tables_of_two_schemas_get_the_same_names_in_either_order(
    stack: Settings, lane: Lane, two_schemas: tuple[str, str]
) -> None:
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    x, y = two_schemas
    apply_connector(stack)
    for schema in two_schemas:
        wait_for_events(stack, schema, "inventory", 2)

    names = {}
    for order in ((x, y), (y, x)):
        # A warehouse schema and group of its own: as if the warehouse were rebuilt from scratch.
        tag = order[0][-1]
        run = dataclasses.replace(lane, warehouse_schema=f"{lane.warehouse_schema}_{tag}", group=f"{lane.group}_{tag}")
        try:
            for schema in order:
                done = run_sync(stack, run, "--table", f"{schema}.*")
                assert done.returncode == 0, done.stdout + done.stderr
            names[order] = query(
                wh,
                "SELECT source_schema, target_table FROM cdc.table_map WHERE target_schema = %s ORDER BY 1",
                (run.warehouse_schema,),
            )
            for schema, table in names[order]:
                assert assert_same_rows(src, (schema, "inventory"), wh, (run.warehouse_schema, table)) == 2
        finally:
            execute(wh, f'DROP SCHEMA IF EXISTS "{run.warehouse_schema}" CASCADE')
            execute(wh, f"DELETE FROM cdc.table_map WHERE target_schema = '{run.warehouse_schema}'")
            execute(wh, f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{run.group}'")
    assert names[(x, y)] == names[(y, x)] == [(x, f"{x}__inventory"), (y, f"{y}__inventory")]

    # Under a format without the schema the two would share a table: sync refuses before reading...
    clash = run_sync(stack, lane, "--table", f"{x}.*", "--table", f"{y}.*", CDC_TABLE_NAME_FORMAT="{table}")
    assert clash.returncode == EXIT_CONFIG, clash.stdout + clash.stderr
    expected = (
        f"error: {x}.inventory and {y}.inventory would both be replicated into {lane.warehouse_schema}.inventory."
    )
    assert expected in clash.stderr.splitlines(), clash.stderr
    assert "fix: set CDC_TABLE_NAME_FORMAT (now '{table}') to a format that tells them apart" in clash.stderr
    assert query(wh, "SELECT count(*) FROM cdc.table_map WHERE target_schema = %s", (lane.warehouse_schema,)) == [(0,)]
    # ... and so does connector apply, before it changes the connector.
    applied = run_cdc(
        stack, lane, "connector", "apply", CDC_TABLE_NAME_FORMAT="{table}", CDC_INCLUDE_SCHEMAS=f"{x},{y}"
    )
    assert applied.returncode == EXIT_CONFIG, applied.stdout + applied.stderr
    assert expected in applied.stderr.splitlines(), applied.stderr


def _connect_pid(stack: Settings) -> int:
    rows, _ = control.status(stack)
    (worker,) = [r for r in rows if r.name == "kafka connect"]
    assert worker.running and worker.pid is not None
    return worker.pid


PGBENCH_TABLES = ("pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history")


# pgbench's TPC-B-like script, over 1,000 accounts instead of 100,000: the same load, without
# streaming 100,000 rows of setup first.
TPCB_LIKE = """\\set aid random(1, 1000)
\\set bid 1
\\set tid random(1, 10)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM pgbench_accounts WHERE aid = :aid;
UPDATE pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
"""


@pytest.mark.serial  # kills the shared Connect worker
def test_pgbench_while_kafka_connect_is_killed_three_times(stack: Settings, lane: Lane, tmp_path: Path) -> None:
    """TPC-B-like load (pgbench_history has no key) while the Connect worker is SIGKILLed three
    times and started again: Debezium sends the changes since its last committed offset again.
    Two groups, one per backend, replicate into two warehouse schemas; all four tables end equal
    to the source, as multisets."""
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(src, f"CREATE SCHEMA {s}")
    _pgbench(stack, s, 60, "-i", "-I", "dtp", "-s", "1")  # pgbench's tables and keys, empty
    apply_connector(stack)
    execute(
        src,
        f"""INSERT INTO {s}.pgbench_branches VALUES (1, 0, '');
        INSERT INTO {s}.pgbench_tellers SELECT t, 1, 0, '' FROM generate_series(1, 10) t;
        INSERT INTO {s}.pgbench_accounts SELECT a, 1, 0, '' FROM generate_series(1, 1000) a;""",
    )
    script = tmp_path / "tpcb-like.sql"
    script.write_text(TPCB_LIKE)

    lanes = [
        dataclasses.replace(lane, kafka_client="kafka-python"),
        dataclasses.replace(
            lane, warehouse_schema=lane.warehouse_schema + "_c", group=lane.group + "_c", kafka_client="confluent"
        ),
    ]
    logs = [tmp_path / f"sync-{each.kafka_client}.log" for each in lanes]
    syncs = [start_sync(stack, each, log=log) for each, log in zip(lanes, logs, strict=True)]
    topic = f"{stack.topic_prefix}.{s}.pgbench_history"
    try:
        bench = subprocess.Popen(
            ["pgbench", "-n", "-f", str(script), "-c", "4", "-j", "2", "-T", "45", src],
            env=_pgbench_env(s),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(3):
            _wait_streaming(stack, topic)  # killed while it sends pgbench_history's changes
            os.kill(_connect_pid(stack), signal.SIGKILL)
            control.up(stack, lambda _line: None)
        out = bench.communicate(timeout=120)[0].decode()
        assert bench.returncode == 0, out
        ((history,),) = query(src, f"SELECT count(*) FROM {s}.pgbench_history")
        for each in lanes:
            assert_converges(stack, each, 240, running=syncs, tables=PGBENCH_TABLES)
        inserts, again = _sent(stack, topic, history)
        # Debezium did send changes again: else this test would prove nothing
        assert again > 0, f"no change of pgbench_history was sent twice ({inserts} inserts, {history} rows)"
        print(f"pgbench_history: {history} rows; {inserts} inserts in Kafka, {again} of them sent again")
    finally:
        for proc, log in zip(syncs, logs, strict=True):
            if proc.poll() is None:
                stop_and_wait(proc, signal.SIGTERM, log)
        execute(wh, f'DROP SCHEMA IF EXISTS "{lanes[1].warehouse_schema}" CASCADE')
        execute(wh, f"DELETE FROM cdc.kafka_offsets WHERE consumer_group = '{lanes[1].group}'")


def _wait_streaming(stack: Settings, topic: str, timeout: float = 60) -> None:
    """Until Debezium has sent the topic more messages for a second, uninterrupted."""
    consumer = KafkaConsumer(bootstrap_servers=stack.require_kafka())
    try:
        partition = TopicPartition(topic, 0)
        deadline = time.monotonic() + timeout
        last, growing_since = None, None
        while True:
            assert time.monotonic() < deadline, f"{topic} did not grow for {timeout:.0f}s"
            end = consumer.end_offsets([partition]).get(partition)
            if last is not None and end is not None and end > last:
                growing_since = growing_since or time.monotonic()
                if time.monotonic() - growing_since >= 1.0:
                    return
            else:
                growing_since = None
            last = end
            time.sleep(0.2)
    finally:
        consumer.close()


def _sent(stack: Settings, topic: str, rows: int) -> tuple[int, int]:
    """Insert messages of the topic, and how many of them repeat an earlier one's source position."""
    messages = read_topic(stack.require_kafka(), topic, done=settled(2, minimum=rows))
    positions = [
        json.loads(m.value)["payload"]["source"]["sequence"]
        for m in messages
        if m.value is not None and json.loads(m.value)["payload"]["op"] == "c"
    ]
    return len(positions), len(positions) - len(set(positions))


def _pgbench_env(schema: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PGOPTIONS": f"-c search_path={schema}"}


def _pgbench(stack: Settings, schema: str, timeout: float, *args: str) -> None:
    done = subprocess.run(
        ["pgbench", *args, stack.require_source_url()],
        env=_pgbench_env(schema),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
