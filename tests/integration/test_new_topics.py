"""Topics that appear while `cdc sync` runs, rebalances while records are in flight, and the stall
detector, on the real stack with both consumer backends (issue 7).

The failure these guard against was silent: kafka-python abandoned a rebalance it had started
(partitions revoked, no assignment ever applied), the member went on fetching its old partitions,
and the loop dropped every record of them while lag stayed up. So beside convergence, each test
asserts that the loop never needed its safety net ("arrived before its position was known") and
never stalled.
"""

from __future__ import annotations

import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
from kafka import KafkaConsumer

from cdc.settings import Settings
from tests.db import drop_database, execute, query
from tests.processes import (
    apply_connector,
    assert_all_same,
    assert_converges,
    assert_stopped_cleanly,
    assignments,
    captured_lane,
    log_of,
    wait_for_log,
    wait_until,
)
from tests.syncing import REPO, Lane, run_sync, start_sync, sync_env
from tests.workloads import TABLES, Workload

pytestmark = [pytest.mark.stack, pytest.mark.serial]

NEW_TABLES = 10
PICKED_UP_WITHIN = 20.0  # seconds from a new topic's first record to its rows stored in the warehouse
SAFETY_NET = "arrived before its position was known"
LAG = re.compile(r"events/s, lag (\d+),")


def caught_up(log: Path) -> bool:
    """The member's last progress line shows it within a moment's traffic of the end."""
    lags = LAG.findall(log_of(log))
    return bool(lags) and int(lags[-1]) < 200


# -- new tables, one by one, each with a trickle of changes -------------------------------------
class NewTables:
    """Tables created one by one at random intervals while sync runs, each captured by `cdc
    connector apply`, with inserts, updates and deletes on every table created so far."""

    def __init__(self, stack: Settings, lane: Lane, group: str, warehouse_url: str) -> None:
        self.stack, self.lane, self.group, self.warehouse_url = stack, lane, group, warehouse_url
        self.names: list[str] = []
        self.first_insert: dict[str, float] = {}
        self._rng = random.Random()  # noqa: S311 - test data
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self.appeared: dict[str, float] = {}
        self.stored: dict[str, float] = {}
        self.error: BaseException | None = None

    def __enter__(self) -> NewTables:
        self._thread.start()
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        self._watcher.join(30)
        if self.error is not None:
            raise AssertionError("the new tables' workload failed") from self.error

    def create_all(self) -> None:
        for i in range(1, NEW_TABLES + 1):
            time.sleep(self._rng.uniform(0.2, 1.5))
            name = f"t{i:02d}"
            src = self.stack.require_source_url()
            execute(src, f'CREATE TABLE "{self.lane.source_schema}".{name} (id integer PRIMARY KEY, n integer, v text)')
            apply_connector(self.stack)
            execute(
                src, f"INSERT INTO \"{self.lane.source_schema}\".{name} SELECT g, g, 'v' FROM generate_series(1, 20) g"
            )
            with self._lock:
                self.first_insert[name] = time.time()
                self.names.append(name)

    def wait_stored(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while len(self.stored) < NEW_TABLES and time.monotonic() < deadline and self.error is None:
            time.sleep(0.2)

    def _watch(self) -> None:
        """Until stopped: when (wall clock) each table's topic appeared in Kafka's metadata
        (Debezium created it with the table's first event), and when the warehouse first stored
        the table's first 20 events (a member was assigned the topic, positioned it, read and
        flushed it)."""
        try:
            consumer = KafkaConsumer(bootstrap_servers=self.stack.require_kafka())
            try:
                while not self._stop.wait(0.2):
                    with self._lock:
                        topics = {self.topic(n): n for n in self.names}
                    listed = consumer.topics()  # a metadata request of its own each time
                    now = time.time()
                    for topic in set(topics) & listed:
                        self.appeared.setdefault(topics[topic], now)
                    try:
                        rows = query(
                            self.warehouse_url,
                            "SELECT topic FROM cdc.kafka_offsets"
                            " WHERE consumer_group = %s AND next_offset >= 20 AND topic = ANY(%s)",
                            (self.group, list(topics)),
                        )
                    except psycopg2.errors.UndefinedTable:
                        continue  # a warehouse of its own: sync has not made its bookkeeping yet
                    now = time.time()
                    for (topic,) in rows:
                        self.appeared.setdefault(topics[topic], now)
                        self.stored.setdefault(topics[topic], now)
            finally:
                consumer.close()
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def topic(self, name: str) -> str:
        return f"{self.stack.topic_prefix}.{self.lane.source_schema}.{name}"

    def _trickle(self) -> None:
        """About 40 changes a second spread over the tables created so far."""
        try:
            conn = psycopg2.connect(self.stack.require_source_url())
            conn.autocommit = True
            next_id = 1000
            with conn, conn.cursor() as cur:
                while not self._stop.wait(0.025):
                    with self._lock:
                        if not self.names:
                            continue
                        table = f'"{self.lane.source_schema}".{self._rng.choice(self.names)}'
                    kind = self._rng.random()
                    if kind < 0.5:
                        next_id += 1
                        cur.execute(f"INSERT INTO {table} VALUES (%s, 0, 'new')", (next_id,))
                    elif kind < 0.85:
                        cur.execute(f"UPDATE {table} SET n = n + 1 WHERE id = (SELECT min(id) FROM {table})")
                    else:
                        cur.execute(f"DELETE FROM {table} WHERE id = (SELECT max(id) FROM {table})")
        except BaseException as exc:  # reported by stop()
            self.error = exc


@pytest.fixture
def own_warehouse(stack: Settings, lane: Lane) -> Iterator[str]:
    """A warehouse database of the test's own: a sync of every captured table (no --table) maps
    other schemas' tables too, and must not touch the other tests' warehouse tables. It reads every
    change topic of the stack from the beginning: on a stack long in use, that takes a while."""
    admin = stack.require_warehouse_url()
    name = lane.warehouse_schema
    execute(admin, f'CREATE DATABASE "{name}"')
    yield admin.rsplit("/", 1)[0] + "/" + name
    drop_database(admin, name)


def assert_no_safety_net_or_stall(*logs: Path) -> None:
    for path in logs:
        text = log_of(path)
        assert SAFETY_NET not in text, text[-3000:]
        assert "stalled: nothing read" not in text, text[-3000:]
        assert "Traceback" not in text, text[-3000:]


def grow_while_syncing(
    stack: Settings,
    lane: Lane,
    members: list[subprocess.Popen[bytes]],
    logs: list[Path],
    warehouse_url: str,
) -> dict[str, float]:
    """The workload on the lane's tables, ten new tables meanwhile; converge; pick-up times."""
    with (
        Workload(stack.require_source_url(), lane.source_schema, rate=100) as workload,
        NewTables(stack, lane, lane.group, warehouse_url) as new,
    ):
        # Steady state first: every member caught up (a sync of every table reads the whole
        # stack's topics from their beginning).
        wait_until(lambda: all(caught_up(log) for log in logs), 180, "every member to catch up")
        new.create_all()
        new.wait_stored(PICKED_UP_WITHIN + 15)
        workload.stop()
        new.stop()
    appeared, stored = new.appeared, new.stored
    assert_converges(stack, lane, 90, running=members, tables=(*TABLES, *new.names), warehouse_url=warehouse_url)
    missing = sorted(set(new.names) - set(stored))
    assert not missing, f"new tables never picked up: {missing}"
    pick_up = {name: stored[name] - appeared[name] for name in new.names}
    end_to_end = {name: stored[name] - new.first_insert[name] for name in new.names}
    print(f"new topic in Kafka -> its rows stored (s): {sorted(round(t, 1) for t in pick_up.values())}")
    print(f"first insert -> its rows stored (s): {sorted(round(t, 1) for t in end_to_end.values())}")
    late = {name: round(t, 1) for name, t in pick_up.items() if t > PICKED_UP_WITHIN}
    assert not late, f"topics picked up later than {PICKED_UP_WITHIN:.0f}s after they appeared: {late}"
    return pick_up


# -- (a) one member, with a table pattern and without ---------------------------------------------
@pytest.mark.parametrize(
    ("kafka_client", "subscription"),
    # Each backend and each subscription once (a pattern subscription is the one a new topic must
    # match; the whole-prefix one is the default): ~30 s a run.
    [("confluent", "pattern"), ("kafka-python", "every-table")],
    ids=["confluent-pattern", "kafka-python-every-table"],
)
def test_tables_created_while_sync_runs_converge(  # noqa: PLR0917 - pytest fixtures
    stack: Settings,
    lane: Lane,
    processes: list[subprocess.Popen[bytes]],
    tmp_path: Path,
    subscription: str,
    request: pytest.FixtureRequest,
) -> None:
    # Both backends match the topic list against the same regex (cdc.sync.consume.change_topics),
    # with or without table patterns; every-table reads the whole stack's topics, so once is enough.
    every = subscription == "every-table"
    warehouse_url = request.getfixturevalue("own_warehouse") if every else stack.require_warehouse_url()
    captured_lane(stack, lane)
    log = tmp_path / "sync.log"
    proc = start_sync(stack, lane, log=log, all_tables=every, CDC_WAREHOUSE_URL=warehouse_url)
    processes.append(proc)
    grow_while_syncing(stack, lane, [proc], [log], warehouse_url)
    assert_no_safety_net_or_stall(log)
    assert_stopped_cleanly(proc, signal.SIGTERM, log)


# -- (b) two members of one group --------------------------------------------------------------------
@pytest.mark.both_clients
def test_two_members_pick_up_every_new_topic_within_seconds(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    captured_lane(stack, lane)
    logs = [tmp_path / "sync-a.log", tmp_path / "sync-b.log"]
    members = [start_sync(stack, lane, log=log) for log in logs]
    processes.extend(members)
    grow_while_syncing(stack, lane, members, logs, stack.require_warehouse_url())
    assert_no_safety_net_or_stall(*logs)
    for member, log in zip(members, logs, strict=True):
        assert_stopped_cleanly(member, signal.SIGTERM, log)


# -- (c) rebalances while records are in flight ------------------------------------------------------
@pytest.mark.both_clients
def test_a_member_joining_and_leaving_three_times_mid_stream_converges(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    captured_lane(stack, lane)
    log = tmp_path / "sync-a.log"
    first = start_sync(stack, lane, log=log)
    processes.append(first)
    with Workload(stack.require_source_url(), lane.source_schema, rate=300) as workload:
        wait_for_log(log, first, lambda text: "replicating" in text, timeout=60)
        for round_ in range(3):
            second_log = tmp_path / f"sync-b{round_}.log"
            before = len(assignments(log_of(log)))
            second = start_sync(stack, lane, log=second_log)
            processes.append(second)
            wait_for_log(second_log, second, lambda text: bool(assignments(text)), timeout=60)
            # The first member gave partitions up and was handed its share while events kept coming.
            wait_for_log(log, first, lambda text, n=before: len(assignments(text)) > n, timeout=60)
            workload.wait_for(workload.transactions + 300)
            assert_stopped_cleanly(second, signal.SIGTERM, second_log)
            assert_no_safety_net_or_stall(second_log)
            # ... and took every partition back once the second left.
            wait_for_log(log, first, lambda text, n=before: len(assignments(text)) > n + 1, timeout=60)
        workload.wait_for(workload.transactions + 300)
        workload.stop()
    assert_converges(stack, lane, 90, running=[first])
    text = log_of(log)
    assert len(assignments(text)) >= 7, f"the first member saw {len(assignments(text))} assignments:\n{text[-3000:]}"
    assert_no_safety_net_or_stall(log)
    assert_stopped_cleanly(first, signal.SIGTERM, log)


# -- (d) the stall detector -----------------------------------------------------------------------------
STALL_SECONDS = 6
STALLED_LINE = re.compile(
    rf"error: nothing was read for {STALL_SECONDS}s from 1 partition\(s\) with unread messages: "
    r"(?P<topic>\S+)\[0\] at offset (?P<at>\d+), end (?P<end>\d+), warehouse holds (?P<stored>\d+)\."
)
PAUSED_LINE = re.compile(r"stall-injector: paused \S+ at (?P<at>[\d.]+)")


@pytest.mark.parametrize(
    ("kafka_client", "mode"),
    [("kafka-python", "running"), ("kafka-python", "until-idle"), ("confluent", "until-idle")],
    ids=["kafka-python-running", "kafka-python-until-idle", "confluent-until-idle"],
)
def test_the_stall_detector_stops_sync_with_an_error_naming_the_partition(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path, mode: str
) -> None:
    """A partition the consumer stops fetching (paused behind the loop's back, by
    tests/stall_injector.py) while its topic keeps growing: `cdc sync` names it and exits 1
    within the limit (plus one check interval), and the next run picks up where it stood."""
    captured_lane(stack, lane)
    topic = f"{stack.topic_prefix}.{lane.source_schema}.accounts"
    until_idle = ["--until-idle", "3"] if mode == "until-idle" else []
    args = ["sync", "--table", f"{lane.source_schema}.*", "--progress-every", "2"]
    command = [sys.executable, "-m", "tests.stall_injector", *args, "--stall-seconds", str(STALL_SECONDS), *until_idle]
    err_path = tmp_path / "sync.err"
    with Workload(stack.require_source_url(), lane.source_schema, rate=100) as workload, err_path.open("w") as err_file:
        proc = subprocess.Popen(
            command, env=sync_env(stack, lane, CDC_TEST_STALL_TOPIC=topic), cwd=REPO, stdout=err_file, stderr=err_file
        )
        processes.append(proc)
        wait_for_log(err_path, proc, lambda text: PAUSED_LINE.search(text) is not None, timeout=60)
        workload.wait_for(workload.transactions + 100)  # the paused topic grows
        if mode == "until-idle":
            workload.stop()  # idle, but not caught up: --until-idle must not wait forever
        code = proc.wait(STALL_SECONDS * 6)
        ended = time.time()
    err = log_of(err_path)
    assert code == 1, f"exit {code}:\n{err[-3000:]}"
    assert "Traceback" not in err, err[-3000:]
    paused = PAUSED_LINE.search(err)
    assert paused, err[-3000:]
    stalled = STALLED_LINE.search(err)
    assert stalled, err[-3000:]
    assert stalled["topic"] == topic
    assert int(stalled["end"]) > int(stalled["at"]) == int(stalled["stored"])  # behind; everything read is stored
    assert "fix: cdc sync stopped so that it can be restarted; it resumes from the offsets" in err
    took = ended - float(paused["at"])
    limit = STALL_SECONDS + STALL_SECONDS / 4 + 5  # the limit, one check interval, and slack to stop
    assert STALL_SECONDS <= took <= limit, f"stopped {took:.1f}s after the pause (limit {limit:.1f}s)"
    print(f"{mode}: stall detected, cdc sync exited 1 {took:.1f}s after the partition stopped being fetched")

    after = run_sync(stack, lane)  # the restart a supervisor would do: resumes, loses nothing
    assert after.returncode == 0, after.stdout + after.stderr[-3000:]
    assert all(assert_all_same(stack, lane).values())
