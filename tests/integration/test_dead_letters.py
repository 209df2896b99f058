"""Poison messages land in the dead-letter table with their reasons, replication goes on, and
`cdc dlq replay` applies letters once their cause is fixed."""

from __future__ import annotations

import json
import subprocess

import psycopg2
import pytest
from kafka import KafkaProducer

from cdc import connector
from cdc.resources import cdc_command
from cdc.settings import Settings
from tests.compare import assert_same_rows
from tests.db import execute, query
from tests.kafka_reader import read_topic, settled
from tests.syncing import REPO, Lane, number_before, run_sync, sync_env, target_of, wait_for_events

pytestmark = pytest.mark.stack


def dead_letters(stack: Settings, group: str) -> list[tuple[int, str, bool]]:
    return query(
        stack.require_warehouse_url(),
        "SELECT kafka_offset, reason, replayed_at IS NOT NULL FROM cdc.dead_letter "
        "WHERE consumer_group = %s ORDER BY kafka_offset",
        (group,),
    )


@pytest.mark.both_clients
def test_poison_messages_are_dead_lettered_and_replication_goes_on(stack: Settings, lane: Lane) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.items (id integer PRIMARY KEY, name text, price numeric(8,2));")
    connector.apply(stack, None, lambda _: None)
    execute(src, f"INSERT INTO {s}.items VALUES (1, 'first', 1.00), (2, 'second', 2.00)")
    topic = f"{stack.topic_prefix}.{s}.items"
    bootstrap = stack.require_kafka()
    real = read_topic(bootstrap, topic, done=settled(2, minimum=2))
    key, value = real[0].key, real[0].value
    assert key is not None and value is not None
    envelope = json.loads(value)

    def variant(**changes: object) -> bytes:
        copy = json.loads(value)
        copy["payload"].update(changes)
        return json.dumps(copy).encode()

    nul_row = dict(envelope["payload"]["after"], id=3, name="nul \u0000 byte")
    bad_price = dict(envelope["payload"]["after"], id=5, price="not base64!")
    poison = [
        (key, b"\xff\xfe not json at all", "is not valid JSON"),
        (key, json.dumps({"payload": envelope["payload"]}).encode(), "not a Debezium JSON message with schema"),
        (key, variant(op="x"), "unknown op 'x'"),
        (None, value, "missing key"),
        (key.replace(b'"id":1', b'"id":3'), variant(after=nul_row), "the warehouse cannot store this row"),
        (key.replace(b'"id":1', b'"id":5'), variant(after=bad_price), "column 'price' of"),
    ]
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for k, v, _ in poison:
        producer.send(topic, key=k, value=v)
    producer.flush()
    producer.close()
    execute(
        src,
        f"INSERT INTO {s}.items VALUES (4, 'after the poison', 4.00); UPDATE {s}.items SET name = 'one' WHERE id = 1",
    )
    wait_for_events(stack, s, "items", 10)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr
    letters = dead_letters(stack, lane.group)
    assert [offset for offset, _, _ in letters] == [2, 3, 4, 5, 6, 7]
    for (_, reason, _), (_, _, expected) in zip(letters, poison, strict=True):
        assert expected in reason
    assert "invalid byte sequence" in letters[4][1] or "0x00" in letters[4][1]
    assert (
        assert_same_rows(src, (s, "items"), wh, target_of(stack, lane, "items")) == 3
    )  # ids 1, 2, 4: replication went on

    listed = subprocess.run(
        [*cdc_command(), "dlq", "list", "--group", lane.group],
        env=sync_env(stack, lane),
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    assert number_before(listed.stdout, "dead letter(s)") == 6


def test_replay_applies_letters_once_the_cause_is_fixed(stack: Settings, lane: Lane) -> None:
    s = lane.source_schema
    src, wh = stack.require_source_url(), stack.require_warehouse_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.items (id integer PRIMARY KEY, price numeric(8,2))")
    connector.apply(stack, None, lambda _: None)
    execute(src, f"INSERT INTO {s}.items VALUES (1, 1.00)")
    wait_for_events(stack, s, "items", 1)
    first = run_sync(stack, lane)
    assert first.returncode == 0, first.stderr
    target = target_of(stack, lane, "items")
    conn = psycopg2.connect(wh)
    conn.autocommit = True
    with conn.cursor() as cur:
        # A warehouse-side rule the source does not have: rows breaking it cannot be stored.
        cur.execute(f'ALTER TABLE "{target[0]}"."{target[1]}" ADD CONSTRAINT cheap CHECK (price < 100)')
    execute(
        src,
        f"INSERT INTO {s}.items VALUES (2, 5.00), (3, 500.00), (4, 600.00); "
        f"UPDATE {s}.items SET price = 2 WHERE id = 1",
    )
    wait_for_events(stack, s, "items", 5)
    second = run_sync(stack, lane)
    assert second.returncode == 0, second.stderr
    letters = dead_letters(stack, lane.group)
    assert len(letters) == 2 and all("cheap" in reason for _, reason, _ in letters)

    replay_cmd = [*cdc_command(), "dlq", "replay", "--group", lane.group]
    failing = subprocess.run(
        replay_cmd, env=sync_env(stack, lane), cwd=REPO, capture_output=True, text=True, check=False
    )
    assert failing.returncode == 1, failing.stdout + failing.stderr
    assert (number_before(failing.stdout, "dead letter(s);"), number_before(failing.stdout, "still failing")) == (0, 2)

    with conn.cursor() as cur:
        cur.execute(f'ALTER TABLE "{target[0]}"."{target[1]}" DROP CONSTRAINT cheap')
    conn.close()
    fixed = subprocess.run(replay_cmd, env=sync_env(stack, lane), cwd=REPO, capture_output=True, text=True, check=False)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert "replayed 2 dead letter(s); 0 still failing" in fixed.stdout
    assert [replayed for _, _, replayed in dead_letters(stack, lane.group)] == [True, True]
    assert assert_same_rows(src, (s, "items"), wh, (target[0], target[1])) == 4
