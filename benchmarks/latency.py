"""Latency: how long after a source commit a row is visible in the warehouse, with `cdc sync`
running continuously and a load generator committing ~N transactions per second.

    python -m benchmarks.latency --tps 2000 --seconds 60

1. A fresh source schema gets the `orders` table of benchmarks/events.py; `cdc connector apply`
   (cdc.connector.apply) captures it; `cdc sync --table <schema>.orders` starts in the background
   with a fresh consumer group and warehouse schema; a warm-up row must reach the warehouse before
   measuring starts (a fresh group first reads every other change topic from its beginning).
2. Load: `--threads` psycopg2 connections in autocommit mode, each paced to tps/threads
   single-statement transactions (70% INSERT of a new row, 30% UPDATE of one of its earlier rows). Every
   transaction writes its own client timestamp into `updated_at`; the commit time is taken when
   the statement (its own transaction) returns.
3. Every `--sample-every`-th transaction is watched: a poller queries the warehouse every
   `--poll-ms` for the watched rows and marks each visible once the warehouse row's `updated_at`
   reaches the watched value. latency = (start of the poll that first saw it) - (commit time):
   an upper bound, at most one poll interval late.
4. The watched rows' Kafka messages are then read back to split each latency (ms precision):
   source commit -> Debezium's event (the envelope's ts_ms, when Debezium processed the change),
   -> the Kafka record timestamp (when Kafka Connect's producer handed it over), -> visible in
   the warehouse (cdc sync: fetch, decode, buffer until the flush, COPY + MERGE + commit).
5. Where the machine's CPU went during the load, by part (cores busy: CPU seconds per second):
   when the source side (the generator, source PostgreSQL, Kafka Connect with Debezium, the
   broker) fills the cores, the offered rate is not achieved and the latencies measure a
   saturated machine, not cdc sync.
6. Also reported: _cdc_applied_at - _cdc_source_ts over all rows written during the load (the
   metadata columns); it understates visibility latency, since _cdc_applied_at is now() = the
   start of the flush transaction, not its commit.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import orjson
import psycopg2

from benchmarks import common as c
from benchmarks.events import CHANNELS, STATUSES, WORDS, orders_ddl
from cdc.resources import cdc_command

EPOCH = datetime(1970, 1, 1)


@dataclass
class Sample:
    id: int
    updated_us: int  # the value written into updated_at
    committed: float  # time.time() when COMMIT returned
    insert: bool
    seen: float | None = None


@dataclass
class LoadStats:
    transactions: int = 0
    inserts: int = 0
    updates: int = 0
    behind_s: float = 0.0  # how far the slowest thread fell behind its schedule at the end
    errors: list[str] = field(default_factory=list)


def now_us() -> int:
    return time.time_ns() // 1000


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None, "mean": None}
    ordered = sorted(values)

    def q(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(p * len(ordered)) - 1))]

    return {
        "n": len(ordered),
        "p50": q(0.50),
        "p95": q(0.95),
        "p99": q(0.99),
        "max": ordered[-1],
        "mean": statistics.fmean(ordered),
    }


# -- load --------------------------------------------------------------------------------------------
def load_thread(  # noqa: PLR0917 - a thread target
    index: int,
    threads: int,
    source_url: str,
    table: str,
    rate: float,
    until: float,
    sample_every: int,
    samples: list[Sample],
    lock: threading.Lock,
    stats: LoadStats,
) -> None:
    rng = random.Random(index)  # noqa: S311 - test data
    conn = psycopg2.connect(source_url)
    # One round trip per transaction: the statement commits when it returns. Without autocommit
    # psycopg2 sends BEGIN, the statement and COMMIT apart, and the generator's own CPU takes
    # more of the two cores the source side shares.
    conn.autocommit = True
    cur = conn.cursor()
    mine: list[int] = []
    next_id = 1_000_000 * (index + 1)
    insert = (
        f"INSERT INTO {table} (id, customer_id, amount, status, created_at, updated_at, note, flag, attrs, ref) "
        "VALUES (%s, %s, %s, 'new', now(), %s, %s, %s, %s, %s)"
    )
    update = f"UPDATE {table} SET status = %s, amount = %s, updated_at = %s WHERE id = %s"
    interval = 1.0 / rate
    due = time.monotonic()
    count = inserts = 0
    try:
        while True:
            now = time.monotonic()
            if now >= until:
                break
            if due > now:
                time.sleep(due - now)
            due += interval
            stamp = now_us()
            is_insert = len(mine) < 5 or rng.random() < 0.7
            if is_insert:
                row_id = next_id
                next_id += 1
                cur.execute(
                    insert,
                    (
                        row_id,
                        rng.randint(1, 250_000),
                        f"{rng.randint(1, 2500)}.{rng.randint(0, 99):02d}",
                        EPOCH + timedelta(microseconds=stamp),
                        " ".join(rng.choices(WORDS, k=rng.randint(2, 10))),
                        rng.random() < 0.5,
                        f'{{"items": {rng.randint(1, 9)}, "source": "{rng.choice(CHANNELS)}"}}',
                        str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    ),
                )
                mine.append(row_id)
                inserts += 1
            else:
                row_id = mine[rng.randrange(len(mine))]
                cur.execute(
                    update,
                    (rng.choice(STATUSES), f"{rng.randint(1, 2500)}.00", EPOCH + timedelta(microseconds=stamp), row_id),
                )
            committed = time.time()
            count += 1
            if count % sample_every == index % sample_every:
                with lock:
                    samples.append(Sample(row_id, stamp, committed, is_insert))
    except Exception as exc:
        stats.errors.append(f"thread {index}: {exc!r}")
    finally:
        conn.close()
    with lock:
        stats.transactions += count
        stats.inserts += inserts
        stats.updates += count - inserts
        stats.behind_s = max(stats.behind_s, time.monotonic() - due)


# -- watching the warehouse --------------------------------------------------------------------------------
class Poller(threading.Thread):
    def __init__(self, stack: c.Stack, table: str, samples: list[Sample], lock: threading.Lock, poll_s: float):
        super().__init__(daemon=True)
        self.stack = stack
        self.conn = c.warehouse_conn(stack)
        self.reconnects = 0
        self.table = table
        self.samples = samples
        self.lock = lock
        self.poll_s = poll_s
        self.stopping = threading.Event()
        self.taken = 0  # samples[:taken] are tracked in self.pending or already seen
        self.pending: dict[int, list[Sample]] = {}
        self.polls = 0
        self.poll_time = 0.0

    def run(self) -> None:
        cur = self.conn.cursor()
        while not self.stopping.is_set():
            started = time.time()
            with self.lock:
                fresh = self.samples[self.taken :]
                self.taken = len(self.samples)
            for sample in fresh:
                self.pending.setdefault(sample.id, []).append(sample)
            if self.pending:
                try:
                    cur.execute(
                        f"SELECT id, (extract(epoch FROM updated_at) * 1000000)::bigint FROM {self.table} "
                        "WHERE id = ANY(%s)",
                        (list(self.pending),),
                    )
                    rows = cur.fetchall()
                except psycopg2.OperationalError:  # the warehouse restarted (someone else's test)
                    self.reconnects += 1
                    self.conn = c.warehouse_conn(self.stack, wait=300)
                    cur = self.conn.cursor()
                    continue
                for row_id, updated_us in rows:
                    waiting = self.pending.get(row_id, [])
                    for sample in [s for s in waiting if updated_us >= s.updated_us]:
                        sample.seen = started
                        waiting.remove(sample)
                    if not waiting:
                        self.pending.pop(row_id, None)
                self.polls += 1
                self.poll_time += time.time() - started
            time.sleep(max(0.0, self.poll_s - (time.time() - started)))
        self.conn.close()

    def outstanding(self) -> int:
        with self.lock:
            return sum(len(v) for v in self.pending.values()) + len(self.samples) - self.taken


def wait_visible(stack: c.Stack, source_schema: str, row_id: int, timeout: float) -> tuple[float, str]:
    """Seconds until the row is in the warehouse table cdc made for <source_schema>.orders (its
    name is cdc's choice: read from cdc.table_map), and that table."""
    conn = c.warehouse_conn(stack)
    cur = conn.cursor()
    started = time.monotonic()
    table = f'"{source_schema}"."orders"'
    try:
        while time.monotonic() - started < timeout:
            try:
                cur.execute(
                    "SELECT target_schema, target_table FROM cdc.table_map "
                    "WHERE source_schema = %s AND source_table = 'orders'",
                    (source_schema,),
                )
                found = cur.fetchone()
                if found is None:
                    time.sleep(0.2)
                    continue
                table = f'"{found[0]}"."{found[1]}"'
                cur.execute(f"SELECT 1 FROM {table} WHERE id = %s", (row_id,))
                if cur.fetchone():
                    return time.monotonic() - started, table
            except psycopg2.errors.UndefinedTable:
                pass  # cdc creates the table with its first flush
            except psycopg2.errors.InvalidSchemaName:
                pass
            time.sleep(0.2)
    finally:
        conn.close()
    raise SystemExit(f"warm-up row {row_id} did not reach {table} within {timeout:.0f}s")


# -- Kafka timestamps of the watched rows ---------------------------------------------------------------
def kafka_times(
    stack: c.Stack, topic: str, wanted: dict[tuple[int, int], Sample]
) -> dict[tuple[int, int], tuple[float, float]]:
    """(id, updated_us) -> (Debezium's envelope ts_ms, the Kafka record timestamp), in s, for the
    watched changes."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        bootstrap_servers=stack.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=10_000,
        fetch_max_bytes=32 * 1024 * 1024,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        receive_message_max_bytes=40 * 1024 * 1024,
    )
    found: dict[tuple[int, int], tuple[float, float]] = {}
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        end = int(consumer.end_offsets([tp])[tp])
        position = 0
        deadline = time.monotonic() + 300
        marker = b'"payload":'
        while position < end and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for r in records:
                    position = r.offset + 1
                    if r.value is None:
                        continue
                    payload = orjson.loads(r.value[r.value.rindex(marker) + len(marker) : -1])
                    after = payload.get("after")
                    if after and (after["id"], after["updated_at"]) in wanted:
                        found[(after["id"], after["updated_at"])] = (payload["ts_ms"] / 1000, r.timestamp / 1000)
    finally:
        consumer.close()
    return found


# -- main -------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="source commit -> warehouse visibility latency of cdc sync")
    parser.add_argument("--tps", type=float, default=2000, help="source transactions per second to offer")
    parser.add_argument("--seconds", type=float, default=60, help="how long to run the load")
    parser.add_argument("--threads", type=int, default=6, help="load connections")
    parser.add_argument("--sample-every", type=int, default=10, help="watch every N-th transaction")
    parser.add_argument("--poll-ms", type=float, default=25, help="warehouse poll interval")
    parser.add_argument("--drain-timeout", type=float, default=300, help="wait this long for the last rows")
    parser.add_argument("--keep", action="store_true", help="keep the source/warehouse schemas and the topic")
    parser.add_argument(
        "--client", default="kafka-python", choices=("kafka-python", "confluent"), help="CDC_KAFKA_CLIENT"
    )
    parser.add_argument("--flush-interval-ms", type=int, default=None, help="CDC_FLUSH_INTERVAL_MS (default: cdc's)")
    parser.add_argument(
        "--attempts", type=int, default=3, help="measure again when a warehouse restart disturbed the run"
    )
    args = parser.parse_args(argv)
    c.WORK.mkdir(parents=True, exist_ok=True)
    stack = c.Stack.load()
    earlier: list[dict[str, Any]] = []
    for attempt in range(1, args.attempts + 1):
        before = c.warehouse_started(stack)
        result = measure(stack, args)
        result["disturbed"] = c.warehouse_started(stack) != before
        if not result["disturbed"] or attempt == args.attempts:
            break
        print("  the warehouse was restarted (by someone else) during the measurement: measuring again", flush=True)
        earlier.append({k: result.get(k) for k in ("run", "load", "latency_s", "samples")})
    result["earlier_disturbed_attempts"] = earlier
    path = c.save_result("latency", result, result["started_utc"])
    print_report(result)
    print(f"\nresults: {path}")
    return 0 if result["samples"]["not_seen_after_drain"] == 0 and not result["disturbed"] else 1


def measure(stack: c.Stack, args: argparse.Namespace) -> dict[str, Any]:  # noqa: PLR0915 - one linear procedure
    from cdc import connector

    run = time.strftime("%m%d%H%M", time.gmtime()) + uuid.uuid4().hex[:4]
    schema = f"bench_lat_{run}"
    topic = f"{stack.topic_prefix}.{schema}.orders"
    group = f"bench_lat_{run}"
    warehouse_table = f'"{schema}"."orders"'
    result: dict[str, Any] = {
        "benchmark": "latency",
        "run": run,
        "started_utc": c.now_stamp(),
        "args": vars(args),
        "machine": c.machine_facts(stack),
    }
    print(f"run {run}: {args.tps:,.0f} tps offered for {args.seconds:.0f} s into {schema}.orders", flush=True)
    src = psycopg2.connect(stack.source_url)
    src.autocommit = True
    proc: subprocess.Popen[bytes] | None = None
    log_path = c.WORK / f"cdc-sync-latency-{run}.log"
    try:
        with src.cursor() as cur:
            cur.execute(f"CREATE SCHEMA {schema}")
            cur.execute(orders_ddl(schema))
        applied = time.monotonic()
        connector.apply(stack.settings, None, lambda line: print(f"  connector: {line}"))
        result["connector_apply_s"] = round(time.monotonic() - applied, 1)

        settings = {"CDC_WAREHOUSE_SCHEMA": schema, "CDC_CONSUMER_GROUP": group, "CDC_KAFKA_CLIENT": args.client}
        if args.flush_interval_ms is not None:
            settings["CDC_FLUSH_INTERVAL_MS"] = str(args.flush_interval_ms)
        env = stack.sync_env(**settings)
        command = [*cdc_command(), "sync", "--table", f"{schema}.orders", "--progress-every", "5"]
        with log_path.open("wb") as log:
            proc = subprocess.Popen(command, env=env, cwd=c.REPO, stdout=log, stderr=subprocess.STDOUT)
        result["sync_command"] = " ".join(command[1:])
        result["other_change_topic_messages"] = c.other_topic_messages(
            stack.bootstrap, stack.topic_prefix, topic, (f"{schema}.orders",)
        )

        # Warm-up: the topic appears with the first event; cdc finds it within metadata_max_age.
        with src.cursor() as cur:
            cur.execute(
                f"INSERT INTO {schema}.orders VALUES (1, 1, 1.00, 'new', now(), now(), 'warm-up', true, NULL, "
                "gen_random_uuid())"
            )
        warm, warehouse_table = wait_visible(stack, schema, 1, timeout=180)
        result["warm_up_visible_s"] = round(warm, 2)
        print(f"  warm-up row visible after {warm:.1f} s; loading ...", flush=True)

        samples: list[Sample] = []
        lock = threading.Lock()
        stats = LoadStats()
        poller = Poller(stack, warehouse_table, samples, lock, args.poll_ms / 1000)
        poller.start()
        rss_samples: list[float] = []
        cpu_before = c.cpu_by_part(stack, proc.pid)
        own_before = time.process_time()
        started = time.monotonic()
        started_wall = time.time()
        until = started + args.seconds
        workers = [
            threading.Thread(
                target=load_thread,
                args=(
                    i,
                    args.threads,
                    stack.source_url,
                    f"{schema}.orders",
                    args.tps / args.threads,
                    until,
                    args.sample_every,
                    samples,
                    lock,
                    stats,
                ),
                daemon=True,
            )
            for i in range(args.threads)
        ]
        for w in workers:
            w.start()
        while any(w.is_alive() for w in workers):
            time.sleep(1)
            rss = c.rss_mb(proc.pid)
            if rss:
                rss_samples.append(rss)
        load_s = time.monotonic() - started
        ended_wall = time.time()
        cpu_after = c.cpu_by_part(stack, proc.pid)
        cores = {part: round((used - cpu_before.get(part, 0.0)) / load_s, 2) for part, used in cpu_after.items()}
        cores["load generator + poller"] = round((time.process_time() - own_before) / load_s, 2)
        print(f"  load done: {stats.transactions:,} transactions in {load_s:.1f} s; draining ...", flush=True)
        drain_started = time.monotonic()
        while poller.outstanding() and time.monotonic() - drain_started < args.drain_timeout:
            time.sleep(0.1)
        drain_s = time.monotonic() - drain_started
        poller.stopping.set()
        poller.join(10)
        peak = c.peak_rss_mb(proc.pid)

        seen = [s for s in samples if s.seen is not None]
        latencies = [s.seen - s.committed for s in seen]
        by_key = {(s.id, s.updated_us): s for s in seen}
        print("  reading the watched rows' Kafka timestamps ...", flush=True)
        kafka_ts = kafka_times(stack, topic, by_key)
        matched = [(s, *kafka_ts[k]) for k, s in by_key.items() if k in kafka_ts and s.seen is not None]
        to_debezium = [debezium - s.committed for s, debezium, _ in matched]
        debezium_to_kafka = [kafka - debezium for _, debezium, kafka in matched]
        from_kafka = [s.seen - kafka for s, _, kafka in matched]  # type: ignore[operator]

        wh = c.warehouse_conn(stack)
        with wh.cursor() as cur:
            cur.execute(
                "SELECT count(*), "
                "percentile_cont(ARRAY[0.5, 0.95, 0.99]) WITHIN GROUP "
                "(ORDER BY extract(epoch FROM _cdc_applied_at - _cdc_source_ts)), "
                f"max(extract(epoch FROM _cdc_applied_at - _cdc_source_ts)) FROM {warehouse_table} "
                "WHERE _cdc_source_ts BETWEEN to_timestamp(%s) AND to_timestamp(%s)",
                (started_wall, ended_wall),
            )
            n, (m50, m95, m99), mmax = cur.fetchone()
        wh.close()

        result["load"] = {
            "offered_tps": args.tps,
            "achieved_tps": round(stats.transactions / load_s, 1),
            "transactions": stats.transactions,
            "inserts": stats.inserts,
            "updates": stats.updates,
            "threads": args.threads,
            "seconds": round(load_s, 1),
            "generator_behind_schedule_s": round(stats.behind_s, 2),
            "errors": stats.errors[:5],
        }
        result["latency_s"] = {
            "commit_to_visible": percentiles(latencies),
            "commit_to_debezium_event (envelope ts_ms)": percentiles(to_debezium),
            "debezium_event_to_kafka (record timestamp)": percentiles(debezium_to_kafka),
            "kafka_to_visible (cdc sync)": percentiles(from_kafka),
            "applied_at_minus_source_ts (metadata, understates)": {
                "n": n,
                "p50": m50,
                "p95": m95,
                "p99": m99,
                "max": float(mmax) if mmax is not None else None,
            },
        }
        result["samples"] = {
            "watched": len(samples),
            "seen": len(seen),
            "not_seen_after_drain": len(samples) - len(seen),
            "kafka_timestamps_found": len(kafka_ts),
            "poll_interval_ms": args.poll_ms,
            "mean_poll_query_ms": round(1000 * poller.poll_time / max(poller.polls, 1), 1),
            "poller_reconnects": poller.reconnects,
        }
        result["cores_busy_during_load"] = cores
        result["drain_after_load_s"] = round(drain_s, 2)
        result["cdc_sync"] = {
            "peak_rss_mb": peak,
            "max_rss_during_load_mb": max(rss_samples) if rss_samples else None,
            "log": str(log_path),
            "progress": [
                line.split(": ", 1)[-1]
                for line in log_path.read_text(errors="replace").splitlines()
                if "events/s" in line
            ][-4:],
            "cdc": c.git_state(),
        }
    finally:
        if proc is not None:
            c.stop(proc)
        if not args.keep:
            with src.cursor() as cur:
                cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
            wh = c.warehouse_conn(stack)
            with wh.cursor() as cur:
                cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
                cur.execute("DELETE FROM cdc.table_map WHERE source_schema = %s", (schema,))
                cur.execute("DELETE FROM cdc.kafka_offsets WHERE consumer_group = %s", (group,))
            wh.close()
            c.delete_topic(stack.bootstrap, topic)
            c.delete_groups(stack.bootstrap, [group])
        src.close()

    return result


def print_report(result: dict[str, Any]) -> None:
    load = result["load"]
    print()
    print(
        f"load: {load['transactions']:,} transactions in {load['seconds']} s = {load['achieved_tps']:,} tps achieved "
        f"({load['offered_tps']:,.0f} offered; {load['inserts']:,} inserts, {load['updates']:,} updates, "
        f"{load['threads']} connections)"
    )
    rows = []
    for name, p in result["latency_s"].items():
        rows.append(
            [
                name,
                f"{p['n']:,}",
                *("-" if p[k] is None else f"{1000 * p[k]:,.0f}" for k in ("p50", "p95", "p99", "max")),
            ]
        )
    print(c.table_text(["latency (ms)", "n", "p50", "p95", "p99", "max"], rows))
    s = result["samples"]
    print(
        f"  watched {s['watched']:,} transactions (1 in {result['args']['sample_every']}), seen {s['seen']:,}; "
        f"warehouse polled every {s['poll_interval_ms']:.0f} ms (query {s['mean_poll_query_ms']} ms): "
        "visibility times are upper bounds, at most one interval late"
    )
    print(f"  drain after the load stopped: {result['drain_after_load_s']} s")
    cores = result["cores_busy_during_load"]
    machine = cores.get("machine (all cores)", 0.0)
    parts = ", ".join(f"{part} {used:.2f}" for part, used in cores.items() if part != "machine (all cores)")
    print(f"  cores busy during the load: {machine:.2f} of {result['machine'].get('nproc', '?')} ({parts})")
    if result.get("disturbed"):
        print("  DISTURBED: the warehouse PostgreSQL was restarted (by someone else) during the measurement")
    for e in result.get("earlier_disturbed_attempts", []):
        print(f"  an earlier attempt (run {e['run']}) was discarded: a warehouse restart disturbed it")
    sync = result["cdc_sync"]
    print(f"  cdc sync peak RSS {c.fmt_mb(sync['peak_rss_mb'])} MB; last progress: {sync['progress'][-1:]}")


if __name__ == "__main__":
    raise SystemExit(main())
