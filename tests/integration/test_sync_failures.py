"""`cdc sync` under failures, on the real stack, while a workload keeps changing the source: kill -9
at random moments, a warehouse restart, two members of one group (one killed), SIGINT/SIGTERM.
After each, the warehouse must hold exactly the source's rows: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import functools
import random
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import pytest
from psycopg2 import sql

from cdc import capture, connector
from cdc.connect_api import ConnectClient
from cdc.resources import cdc_command
from cdc.settings import Settings
from cdc.stack.control import restart_postgres
from tests.compare import assert_same_rows
from tests.db import execute, query
from tests.processes import (
    apply_connector,
    assert_all_same,
    assert_converges,
    assert_stopped_cleanly,
    assignments,
    captured_lane,
    group_state,
    last_assigned_at,
    log_of,
    member_shares,
    wait_for_log,
    wait_for_quiet_topics,
    wait_until,
)
from tests.syncing import REPO, Lane, run_sync, start_sync, sync_env, target_of, wait_for_events
from tests.workloads import Workload

pytestmark = [pytest.mark.stack, pytest.mark.serial]


# -- fixtures and helpers ---------------------------------------------------------------------


def start_captured_sync(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], log: Path
) -> subprocess.Popen[bytes]:
    """Capture the lane's tables and start one `cdc sync` on them (killed at teardown if alive)."""
    captured_lane(stack, lane)
    proc = start_sync(stack, lane, log=log)
    processes.append(proc)
    return proc


def wait_replicating(log: Path, proc: subprocess.Popen[bytes]) -> None:
    """Until sync has created its first table, and a little beyond, so it is mid-stream."""
    wait_for_log(log, proc, lambda text: "replicating" in text, timeout=30)
    time.sleep(2)


def stored_offsets(stack: Settings, lane: Lane) -> int:
    """The sum of the next offsets the warehouse holds for the lane's topics."""
    rows = query(
        stack.require_warehouse_url(),
        "SELECT coalesce(sum(next_offset), 0) FROM cdc.kafka_offsets WHERE consumer_group = %s AND topic LIKE %s",
        (lane.group, f"{stack.topic_prefix}.{lane.source_schema}.%"),
    )
    return int(rows[0][0])


def in_transaction(stack: Settings, application: str) -> bool:
    """Whether the sync process connected as `application` has a warehouse transaction open (a flush)."""
    rows = query(
        stack.require_warehouse_url(),
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND xact_start IS NOT NULL",
        (application,),
    )
    return bool(rows[0][0])


# -- 1. kill -9 at random moments -------------------------------------------------------------
# 20 on the default backend (issue 3's bar); 8 on confluent-kafka, whose recovery takes the same
# path in the loop (positions from the warehouse on assignment).
KILLS = {"kafka-python": 20, "confluent": 8}
SESSION_MS = "6000"  # the broker's least: how long the last killed member stays in the group


@pytest.mark.both_clients
def test_kill_9_at_random_moments_loses_and_duplicates_nothing(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path, kafka_client: str
) -> None:
    """20 (8 on confluent) `cdc sync` processes SIGKILLed at random moments of their work while the source keeps
    changing, then one run to completion: every table equals the source, the keyless one as a
    multiset (a replayed insert there has no key to merge on: only offsets stored in the same
    transaction as the rows keep it from being applied twice).

    Every process is the same static member (CDC_KAFKA_GROUP_INSTANCE_ID): the next one takes the
    killed one's place and partitions at once, with no wait for its session to expire (6 s here, the
    broker's least). Each random moment is still counted from the assignment.
    Every other kill lands at any moment 0.5-3 s after the assignment (often inside the first,
    catch-up flush); the others after the process stored its first flush: at any moment 0-1.5 s
    later, or (every fourth kill) at the first moment after that inside a flush transaction."""
    captured_lane(stack, lane)
    rng = random.Random()  # noqa: S311
    kinds: Counter[str] = Counter()
    with Workload(stack.require_source_url(), lane.source_schema, rate=300) as workload:
        workload.wait_for(100)
        kills = KILLS[kafka_client]
        for i in range(kills):
            log = tmp_path / f"sync-{i}.log"
            application = f"cdc-kill-{i}-{lane.group}"
            stored = stored_offsets(stack, lane)
            proc = start_sync(
                stack,
                lane,
                log=log,
                PGAPPNAME=application,
                CDC_KAFKA_SESSION_TIMEOUT_MS=SESSION_MS,
                CDC_KAFKA_GROUP_INSTANCE_ID=f"member-{lane.group}",
            )
            processes.append(proc)
            wait_for_log(log, proc, lambda text: bool(assignments(text)), timeout=40)
            if i % 2 == 0:
                time.sleep(rng.uniform(0.5, 3.0))
            else:
                # Resuming after a kill, it stores new work (reading what the last one left) ...
                wait_until(lambda old=stored: stored_offsets(stack, lane) > old, 40, f"sync #{i} to store a flush")
                time.sleep(rng.uniform(0, 1.5))
                if i % 4 == 3:  # ... and dies inside a later flush, or at any moment after.
                    flushing = functools.partial(in_transaction, stack, application)
                    wait_until(flushing, 10, f"sync #{i} to flush", every=0.005)
            assert proc.poll() is None, f"cdc sync #{i} exited with {proc.returncode}:\n{log_of(log)[-3000:]}"
            mid_flush = in_transaction(stack, application)
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(10) == -signal.SIGKILL
            kinds["mid-flush" if mid_flush else "between flushes"] += 1
        workload.stop()
    assert workload.transactions > 1000, workload.transactions
    assert kinds["mid-flush"] >= kills // 4, kinds

    wait_for_quiet_topics(stack, lane)  # else --until-idle could finish before Debezium's last events
    # The last killed member must leave the group first: until then a new member has no partitions,
    # and --until-idle takes that for "caught up" (test_until_idle_after_a_crash_waits_for_its_partitions).
    wait_until(lambda: group_state(stack, lane.group) in ("Empty", "Dead"), 30, "the group to empty", every=0.5)
    result = run_sync(stack, lane, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    counts = assert_all_same(stack, lane)
    assert all(counts.values()), counts
    assert " 0 dead letters" in result.stdout, result.stdout


# -- 2. the warehouse restarts under a running sync ---------------------------------------------
@pytest.mark.both_clients
def test_warehouse_restart_is_retried_and_recovered(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    proc = start_captured_sync(stack, lane, processes, log)
    with Workload(stack.require_source_url(), lane.source_schema, rate=300) as workload:
        wait_replicating(log, proc)
        restart_postgres(stack, "warehouse", down_seconds=5)
        workload.wait_for(workload.transactions + 1000)  # the source keeps changing while sync recovers
        workload.stop()

    assert_converges(stack, lane, 60, running=[proc])
    retries = [line for line in log_of(log).splitlines() if "retrying in" in line]
    assert retries, log_of(log)[-3000:]
    assert_stopped_cleanly(proc, signal.SIGTERM, log)
    assert_all_same(stack, lane)  # and nothing changed by the stop


# -- 3. two members of one group; one is killed --------------------------------------------------
@pytest.mark.both_clients
def test_two_members_share_the_work_and_the_survivor_takes_over(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    captured_lane(stack, lane)
    logs = [tmp_path / "sync-a.log", tmp_path / "sync-b.log"]
    members = [start_sync(stack, lane, log=log) for log in logs]
    processes.extend(members)
    with Workload(stack.require_source_url(), lane.source_schema, rate=300) as workload:
        shares: list[int] | None = None

        def both_joined() -> bool:
            nonlocal shares
            assert all(m.poll() is None for m in members), [log_of(log)[-2000:] for log in logs]
            shares = member_shares(stack, lane.group)
            return shares is not None and len(shares) == 2

        wait_until(both_joined, 40, "a stable group of two members", every=0.5)
        workload.wait_for(workload.transactions + 500)
        texts = [log_of(log) for log in logs]
        # Kill the member assigned last (in the group's current generation it holds partitions).
        victim = 0 if last_assigned_at(texts[0]) >= last_assigned_at(texts[1]) else 1
        survivor = 1 - victim
        assigned_before = len(assignments(texts[survivor]))
        members[victim].send_signal(signal.SIGKILL)
        assert members[victim].wait(10) == -signal.SIGKILL
        workload.wait_for(workload.transactions + 1000)
        workload.stop()

    assert_converges(stack, lane, 90, running=[members[survivor]])
    survivor_log = log_of(logs[survivor])
    assert len(assignments(survivor_log)) > assigned_before, "the survivor got no assignment after the kill"
    assert_stopped_cleanly(members[survivor], signal.SIGTERM, logs[survivor])
    # Last, so that the takeover above is checked either way: did both members get work to begin with?
    assert shares is not None
    assert all(shares), (
        f"partitions held by the two members of the group: {shares}; two cdc sync processes in one "
        "group must share the work (each change topic has one partition, and kafka-python's default "
        "range assignor gives every topic's partition 0 to the same member)"
    )
    assert all(assignments(text) for text in texts), "a member never logged 'assigned N partitions'"


# -- 4. SIGINT stops cleanly ----------------------------------------------------------------------
@pytest.mark.both_clients
def test_sigint_stops_cleanly_and_loses_nothing(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    log = tmp_path / "sync.log"
    proc = start_captured_sync(stack, lane, processes, log)
    with Workload(stack.require_source_url(), lane.source_schema, rate=300) as workload:
        wait_replicating(log, proc)
        assert_stopped_cleanly(proc, signal.SIGINT, log)
        workload.wait_for(workload.transactions + 300)  # changes after the stop are read by the next run
        workload.stop()

    wait_for_quiet_topics(stack, lane)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert all(assert_all_same(stack, lane).values())


# -- bugs found on the way: minimal reproductions ---------------------------------------------------
@pytest.mark.both_clients
def test_until_idle_after_a_crash_waits_for_its_partitions(
    stack: Settings, lane: Lane, processes: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    """After a member of the group died (kill -9), a new `--until-idle` run waits up to the session
    timeout for its partitions. With none assigned yet it has no lag to measure; it must not take
    that for "caught up" and exit 0 having read nothing."""
    s = lane.source_schema
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.items (id integer PRIMARY KEY, v text)")
    apply_connector(stack)
    execute(src, f"INSERT INTO {s}.items VALUES (1, 'first')")  # Debezium creates the topic
    wait_for_events(stack, s, "items", 1)
    log = tmp_path / "sync.log"
    proc = start_sync(stack, lane, log=log)
    processes.append(proc)
    wait_until(lambda: stored_offsets(stack, lane) == 1, 30, "the first row to be stored")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(10) == -signal.SIGKILL
    execute(src, f"INSERT INTO {s}.items SELECT g, 'v' FROM generate_series(2, 11) g")
    wait_for_events(stack, s, "items", 11)
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    wh = stack.require_warehouse_url()
    try:
        assert_same_rows(src, (s, "items"), wh, target_of(stack, lane, "items"))
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nthe --until-idle run said:\n{result.stdout}{result.stderr[-2000:]}") from None


@pytest.mark.both_clients
def test_primary_key_change_keeps_an_unchanged_toasted_value(stack: Settings, lane: Lane) -> None:
    """An UPDATE that changes the key but not a TOASTed column: pgoutput does not send the unchanged
    value, and Debezium sends delete(old key) + create(new key) with a placeholder for it. The value
    must survive both when the old key's row is in the same flush (key 1: inserted and moved before
    the sync starts) and when an earlier flush stored it (key 101, moved again after a first sync)."""
    s = lane.source_schema
    src = stack.require_source_url()
    wh = stack.require_warehouse_url()
    execute(
        src,
        f"CREATE SCHEMA {s}; CREATE TABLE {s}.docs (id integer PRIMARY KEY, rev integer, body text NOT NULL);"
        f"ALTER TABLE {s}.docs ALTER COLUMN body SET STORAGE EXTERNAL;",
    )
    apply_connector(stack)
    execute(src, f"INSERT INTO {s}.docs SELECT g, 0, repeat(md5(g::text), 200) FROM generate_series(1, 3) g")
    execute(src, f"UPDATE {s}.docs SET id = id + 100, rev = rev + 1 WHERE id = 1")
    wait_for_events(stack, s, "docs", 6)  # 3 creates; delete, tombstone and create for the key change
    first = run_sync(stack, lane)
    assert first.returncode == 0, first.stdout + first.stderr[-3000:]
    target = target_of(stack, lane, "docs")
    assert _body_lengths(wh, target) == {2: 6400, 3: 6400, 101: 6400}

    execute(src, f"UPDATE {s}.docs SET id = id + 100, rev = rev + 1 WHERE id IN (101, 3)")
    wait_for_events(stack, s, "docs", 12)
    second = run_sync(stack, lane)
    assert second.returncode == 0, second.stdout + second.stderr[-3000:]
    assert "are stored as NULL" not in second.stderr
    assert _body_lengths(wh, target) == {2: 6400, 103: 6400, 201: 6400}
    assert_same_rows(src, (s, "docs"), wh, target)


def _body_lengths(url: str, target: tuple[str, str]) -> dict[int, int | None]:
    return dict(query(url, sql.SQL("SELECT id, length(body) FROM {}.{}").format(*map(sql.Identifier, target))))


def test_a_fetch_over_one_megabyte_is_no_error(stack: Settings, lane: Lane) -> None:
    """A fresh group's first fetch of a topic holding megabytes is one network frame over
    kafka-python's default 1 MB receive limit: it must not drop the connection with an ERROR."""
    s = lane.source_schema
    src = stack.require_source_url()
    execute(
        src,
        f"CREATE SCHEMA {s}; CREATE TABLE {s}.docs (id integer PRIMARY KEY, body text NOT NULL);"
        f"ALTER TABLE {s}.docs ALTER COLUMN body SET STORAGE EXTERNAL;",
    )
    apply_connector(stack)
    # About 2 MB of change events in the lane's own topic alone.
    execute(src, f"INSERT INTO {s}.docs SELECT g, repeat(md5(g::text), 100) FROM generate_series(1, 500) g")
    wait_for_events(stack, s, "docs", 500)  # all of them in Kafka, so that the first fetch gets them all
    result = run_sync(stack, lane)
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert_same_rows(src, (s, "docs"), stack.require_warehouse_url(), target_of(stack, lane, "docs"))
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert not errors, "\n".join(errors)


def test_connector_apply_survives_a_table_dropped_meanwhile(
    stack: Settings, lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cdc connector apply` lists the tables, then names them in ALTER PUBLICATION ... SET TABLE:
    a table dropped in between (by anyone: tests running side by side hit this) must not make it
    fail with a raw driver error."""
    s = lane.source_schema
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.kept (id integer PRIMARY KEY);")
    execute(src, f"CREATE TABLE {s}.gone (id integer PRIMARY KEY)")
    listed = capture.discover

    def discover_then_drop(conn: psycopg2.extensions.connection, settings: Settings) -> list[capture.SourceTable]:
        tables = listed(conn, settings)
        execute(src, f"DROP TABLE IF EXISTS {s}.gone")  # another session, right after the listing
        return tables

    monkeypatch.setattr(capture, "discover", discover_then_drop)
    connector.apply(stack, None, lambda _: None)
    conn = psycopg2.connect(src)
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s",
                (stack.publication_name, s),
            )
            assert [r[0] for r in cur.fetchall()] == ["kept"]
    finally:
        conn.close()


def test_two_connector_applies_at_once_leave_out_neither_ones_table(
    stack: Settings, lane: Lane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each `cdc connector apply` lists the tables and sends the whole list. A second apply, for a
    table created after the first listed its tables, runs in the middle of the first: it must
    wait for it (an advisory lock on the source), else the first one's list, sent last, leaves
    the new table out of the connector and the publication."""
    s = lane.source_schema
    src = stack.require_source_url()
    execute(src, f"CREATE SCHEMA {s}; CREATE TABLE {s}.first (id integer PRIMARY KEY)")
    listed = capture.discover
    second: list[subprocess.Popen[str]] = []

    def discover_then_another_apply(conn: psycopg2.extensions.connection, settings: Settings) -> list[Any]:
        tables = listed(conn, settings)
        if not second:
            execute(src, f"CREATE TABLE {s}.second (id integer PRIMARY KEY)")
            second.append(
                subprocess.Popen(
                    [*cdc_command(), "connector", "apply"],
                    env=sync_env(stack, lane),
                    cwd=REPO,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            # It either finishes now (no lock: its list, with `second`, is then overwritten by
            # ours) or waits for our lock.
            waiting = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            wait_until(lambda: second[0].poll() is not None or query(src, waiting) != [(0,)], 60, "the second apply")
        return tables

    monkeypatch.setattr(capture, "discover", discover_then_another_apply)
    connector.apply(stack, None, lambda _: None)
    output, _ = second[0].communicate(timeout=180)
    assert second[0].returncode == 0, output
    assert "another cdc connector apply runs against this source: waiting for it to finish" in output
    published = query(
        src,
        "SELECT tablename FROM pg_publication_tables WHERE pubname = %s AND schemaname = %s ORDER BY 1",
        (stack.publication_name, s),
    )
    assert published == [("first",), ("second",)]
    config = ConnectClient(stack.require_connect_url()).config(stack.connector_name) or {}
    assert f"{s}\\.second" in config["table.include.list"].split(","), config["table.include.list"]
