"""Run `cdc sync` as users do (a real process) against the test stack, isolated per test by a
fresh consumer group, warehouse schema and source schema."""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg2

from cdc.resources import cdc_command
from cdc.settings import Settings

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Lane:
    """One test's private names: source schema, warehouse schema, consumer group."""

    source_schema: str
    warehouse_schema: str
    group: str
    kafka_client: str = "kafka-python"  # CDC_KAFKA_CLIENT of the lane's cdc sync processes

    @classmethod
    def new(cls, tag: str, kafka_client: str = "kafka-python") -> Lane:
        suffix = uuid.uuid4().hex[:8]
        return cls(f"{tag}_{suffix}", f"wh_{tag}_{suffix}", f"g_{tag}_{suffix}", kafka_client)


def sync_env(stack: Settings, lane: Lane, **extra: str) -> dict[str, str]:
    # The stack's own settings (its ports, under pytest-xdist's second worker) pass through.
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDC_") or k.startswith("CDC_STACK_")}
    env |= {
        # The exact endpoints the tests use, whatever ports the stack was started on.
        "CDC_SOURCE_URL": stack.require_source_url(),
        "CDC_WAREHOUSE_URL": stack.require_warehouse_url(),
        "CDC_KAFKA_BOOTSTRAP_SERVERS": stack.require_kafka(),
        "CDC_CONNECT_URL": stack.require_connect_url(),
        "CDC_STACK_DIR": str(stack.stack_dir.resolve()),
        "CDC_WAREHOUSE_SCHEMA": lane.warehouse_schema,
        "CDC_CONSUMER_GROUP": lane.group,
        "CDC_TOPIC_PREFIX": stack.topic_prefix,
        "CDC_KAFKA_CLIENT": lane.kafka_client,
    }
    return env | extra


def sync_command(lane: Lane, *args: str, all_tables: bool = False) -> list[str]:
    """`cdc sync` of the lane's tables (of every captured table, with all_tables)."""
    tables = [] if all_tables else ["--table", f"{lane.source_schema}.*"]
    return [*cdc_command(), "sync", *tables, *args]


def run_sync(
    stack: Settings, lane: Lane, *args: str, timeout: float = 300, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`cdc sync --until-idle` to completion."""
    return run_cdc(
        stack, lane, *sync_command(lane, "--until-idle", "3", *args)[len(cdc_command()) :], timeout=timeout, **extra
    )


def start_sync(
    stack: Settings, lane: Lane, *args: str, log: Path, all_tables: bool = False, **extra: str
) -> subprocess.Popen[bytes]:
    """`cdc sync` running in the background (stop it with a signal)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            sync_command(lane, "--progress-every", "2", *args, all_tables=all_tables),
            env=sync_env(stack, lane, **extra),
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def run_cdc(
    stack: Settings, lane: Lane, *args: str, timeout: float = 300, **extra: str
) -> subprocess.CompletedProcess[str]:
    """`cdc ARGS` as users run it, in the lane's environment (`extra`: more settings), to its end."""
    return subprocess.run(
        [*cdc_command(), *args],
        env=sync_env(stack, lane, **extra),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_for_events(stack: Settings, schema: str, table: str, minimum: int) -> None:
    """Block until Debezium has written at least `minimum` messages for the table into Kafka, so
    that a `--until-idle` run cannot finish before the changes reach Kafka."""
    from tests.kafka_reader import read_topic, settled

    read_topic(stack.require_kafka(), f"{stack.topic_prefix}.{schema}.{table}", done=settled(1, minimum=minimum))


def target_of(stack: Settings, lane: Lane, table: str, warehouse_url: str | None = None) -> tuple[str, str]:
    conn = psycopg2.connect(warehouse_url or stack.require_warehouse_url())
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT target_schema, target_table FROM cdc.table_map WHERE source_schema = %s AND source_table = %s",
                (lane.source_schema, table),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    assert row is not None, f"{lane.source_schema}.{table} was never replicated"
    return row[0], row[1]


STOPPED = re.compile(
    r"^sync stopped: (?P<events>\d+) events read, (?P<rows>\d+) rows written, (?P<skipped>\d+) already applied, "
    r"(?P<dead>\d+) dead letters; ",
    re.MULTILINE,
)


def stopped_counts(output: str) -> dict[str, int]:
    """The numbers of `cdc sync`'s last line: events read, rows written, already applied, dead letters."""
    found = STOPPED.findall(output)
    assert len(found) == 1, f"expected one 'sync stopped:' line in:\n{output[-3000:]}"
    return dict(zip(("events", "rows", "skipped", "dead"), map(int, found[0]), strict=True))


def number_before(text: str, words: str) -> int:
    """The number printed right before `words` (e.g. '6 dead letter(s)' -> 6), found exactly once."""
    found = re.findall(rf"(?<![\d.])(\d+) {re.escape(words)}", text)
    assert len(found) == 1, f"expected one '<number> {words}' in:\n{text[-3000:]}"
    return int(found[0])
