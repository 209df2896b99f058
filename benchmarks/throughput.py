"""Throughput: drain one topic of N real-shaped Debezium change events into the warehouse with
`cdc sync`, the Debezium JDBC sink connector and a naive row-by-row consumer, one after the other
in the same run, and compare.

    python -m benchmarks.throughput --events 1000000
    python -m benchmarks.throughput --events 200000 --consumers cdc,jdbc,naive
    python -m benchmarks.throughput --events 100000 --consumers cdc --profile

See benchmarks/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import common as c
from benchmarks.events import COLUMNS, OrdersStream, check_sql, column_digests, expected_after
from cdc.resources import cdc_command

# cdc and cdc-confluent run the compiled fast path (when built); cdc-python is cdc sync on the
# Python path alone (CDC_FASTPATH=off, kafka-python), the reference implementation.
CONSUMERS = ("cdc", "cdc-confluent", "cdc-python", "jdbc", "naive")
DEFAULT_CONSUMERS = "cdc-confluent,cdc,cdc-python,jdbc,naive"
# What Debezium 3.4 puts on every message with cdc's connector config: no header at all, since it
# sets extended.headers.enabled=false (before that, four __debezium.context.* headers, which every
# consumer parsed and none read).
DEBEZIUM_HEADERS: list[tuple[str, bytes]] = []


@dataclass
class Outcome:
    name: str
    label: str
    table: str | None = None  # schema.table holding its result
    elapsed_s: float | None = None
    events: int | None = None  # change events applied in the measured time
    messages: int | None = None
    peak_rss_mb: float | None = None
    complete: bool = True  # False: ran on a prefix only (events/s extrapolated)
    extrapolated_total_s: float | None = None
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    disturbed: bool = False

    @property
    def events_per_s(self) -> float | None:
        if not self.elapsed_s or not self.events:
            return None
        return self.events / self.elapsed_s


# -- produce --------------------------------------------------------------------------------------------
def produce(stack: c.Stack, topic: str, stream: OrdersStream) -> dict[str, Any]:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic
    from kafka.record.util import crc32c_c

    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)], timeout_ms=30_000)
    finally:
        admin.close()
    producer = KafkaProducer(
        bootstrap_servers=stack.bootstrap,
        acks="all",  # as Kafka Connect's source producers
        compression_type="lz4",  # as connectors/postgres-source.json sets for Connect's producer
        linger_ms=20,
        batch_size=900_000,  # one record batch must stay under the broker's message.max.bytes (1 MiB)
        buffer_memory=256 * 1024 * 1024,
        max_request_size=4 * 1024 * 1024,
        max_in_flight_requests_per_connection=5,
    )
    failures: list[BaseException] = []
    started = time.monotonic()
    for key, value in stream.messages():
        producer.send(topic, key=key, value=value, partition=0, headers=DEBEZIUM_HEADERS).add_errback(failures.append)
    producer.flush()
    elapsed = time.monotonic() - started
    producer.close()
    if failures:
        raise SystemExit(f"{len(failures)} messages were not acknowledged, first: {failures[0]!r}")
    end = c.end_offset(stack.bootstrap, topic)
    if end != stream.counts.messages:
        raise SystemExit(f"topic {topic} holds {end} messages, {stream.counts.messages} were produced")
    counts = stream.counts
    return {
        "topic": topic,
        "events": counts.events,
        "messages": counts.messages,
        "inserts": counts.inserts,
        "updates": counts.updates,
        "deletes": counts.deletes,
        "tombstones": counts.deletes,
        "transactions": counts.transactions,
        "bytes": counts.bytes,
        "avg_message_bytes": round(counts.bytes / counts.messages),
        "elapsed_s": round(elapsed, 2),
        "messages_per_s": round(counts.messages / elapsed),
        "producer_crc32c": "C extension" if crc32c_c is not None else "pure Python (slow)",
    }


# -- consumer a: cdc sync -------------------------------------------------------------------------------
def run_cdc(  # noqa: PLR0915
    stack: c.Stack,
    run: str,
    topic: str,
    *,
    end: int,
    events: int,
    args: argparse.Namespace,
    attempt: int = 1,
    client: str = "kafka-python",
    fastpath: bool = True,
) -> Outcome:
    name = "cdc-python" if not fastpath else "cdc" if client == "kafka-python" else "cdc-confluent"
    label = (name if attempt == 1 else f"{name}{attempt}").replace("-", "_")
    schema = f"bench_{run}_{label}"
    group = f"bench_{run}_{label}"
    out = Outcome(name, f"cdc sync ({client}{', Python path' if not fastpath else ''})")
    extra_env = {"CDC_WAREHOUSE_SCHEMA": schema, "CDC_CONSUMER_GROUP": group, "CDC_KAFKA_CLIENT": client}
    extra_env["CDC_FASTPATH"] = "on" if fastpath else "off"
    out.extra["cdc_commit"] = c.git_state()
    # cdc.table_map keeps one warehouse table per source table for all sync processes: a retry
    # must not write into the table of the attempt before.
    cleanup_conn = c.warehouse_conn(stack)
    cleanup_conn.cursor().execute("DELETE FROM cdc.table_map WHERE source_schema = %s", (f"bench_{run}",))
    cleanup_conn.close()
    command = [*cdc_command(), "sync", "--table", f"bench_{run}.orders", "--until-idle", str(args.until_idle)]
    command += ["--progress-every", "5"]
    profile_path = None
    if args.profile:
        profile_path = c.WORK / f"cdc-sync-{run}-{label}.prof"
        command = [sys.executable, "-m", "cProfile", "-o", str(profile_path), *command]
        out.notes.append(f"run under cProfile ({profile_path}): times are inflated")
    log_path = c.WORK / f"cdc-sync-{run}-{label}.log"
    out.extra["log"] = str(log_path)
    out.extra["command"] = " ".join(command[command.index("sync") :])
    offsets = c.OffsetWatch(stack, group, topic)
    offset = 0
    with log_path.open("wb") as log:
        cpu_before = c.cpu_by_part(stack)
        started = time.monotonic()
        proc = subprocess.Popen(
            command, env=stack.sync_env(**extra_env), cwd=c.REPO, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            peak = None
            while True:
                offset = offsets.read()
                if offset >= end:
                    out.elapsed_s = time.monotonic() - started
                    out.extra["cpu_us_per_event"] = c.cpu_per_event(cpu_before, c.cpu_by_part(stack, proc.pid), events)
                    break
                if proc.poll() is not None:
                    out.error = f"cdc sync exited with {proc.returncode} at offset {offset} of {end} (see {log_path})"
                    break
                if time.monotonic() - started > args.timeout:
                    out.error = f"timed out after {args.timeout}s at offset {offset} of {end}"
                    break
                peak = c.peak_rss_mb(proc.pid) or peak
                time.sleep(0.2)
            out.peak_rss_mb = c.peak_rss_mb(proc.pid) or peak
        finally:
            stopping = time.monotonic()
            out.extra["exit_code"] = c.stop(proc, timeout=120)
            out.extra["stop_s"] = round(time.monotonic() - stopping, 2)
    if offsets.lost:
        out.notes.append(f"the warehouse went away {offsets.lost} time(s) during the run (restarted by someone else)")
    out.table = offsets.target(f"bench_{run}") or f'"{schema}"."orders"'
    offsets.close()
    out.extra.update(schema=schema, group=group)
    out.events, out.messages = (events, end) if out.error is None else (None, offset)
    paths = [line for line in log_path.read_text(errors="replace").splitlines() if "decoding on the" in line]
    out.extra["path"] = paths[0].split("decoding on the ", 1)[1] if paths else "unknown"
    out.extra["progress"] = [
        line.split(": ", 1)[-1] for line in log_path.read_text(errors="replace").splitlines() if "events/s" in line
    ][-3:]
    retries = [line for line in log_path.read_text(errors="replace").splitlines() if "failed (attempt" in line]
    if retries:
        out.notes.append(f"{len(retries)} retried failure(s) in its log, e.g. {retries[0][:160]!r}: time includes them")
    if profile_path is not None and profile_path.exists():
        out.extra["profile"] = str(profile_path)
        out.extra["profile_stages_s"] = {label.strip(): round(secs, 2) for label, secs in profile_phases(profile_path)}
        out.extra["profile_own_time_by_area"] = {a: round(sh, 3) for a, _s, sh in profile_areas(profile_path)}
    return out


# -- consumer b: the Debezium JDBC sink connector -----------------------------------------------------------
def run_jdbc(  # noqa: PLR0915
    stack: c.Stack, run: str, topic: str, *, end: int, events: int, args: argparse.Namespace, attempt: int = 1
) -> Outcome:
    import httpx
    from kafka import KafkaAdminClient

    out = Outcome("jdbc", "Debezium JDBC sink")
    name = f"bench-jdbc-{run}" + ("" if attempt == 1 else f"-{attempt}")
    group = f"connect-{name}"
    schema = f"bench_{run}_jdbc" + ("" if attempt == 1 else str(attempt))
    url, user, password = c.jdbc_url(stack)
    conn = c.warehouse_conn(stack)
    conn.cursor().execute(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
    conn.close()
    # The worker resolves the password from a 0600 file (FileConfigProvider), so it never travels
    # through Connect's REST API nor lands in its config topic or log (as cdc does for the source).
    secret = c.WORK / "jdbc-secret.properties"
    secret.touch(mode=0o600)
    secret.chmod(0o600)
    secret.write_text(f"warehouse_password={password}\n")
    config = {
        "connector.class": "io.debezium.connector.jdbc.JdbcSinkConnector",
        "tasks.max": "1",
        "topics": topic,
        "connection.url": url,
        "connection.username": user,
        "connection.password": f"${{file:{secret}:warehouse_password}}",
        "insert.mode": "upsert",
        "delete.enabled": "true",
        "primary.key.mode": "record_key",
        "schema.evolution": "basic",
        "collection.name.format": f"{schema}.orders",
        "batch.size": str(args.jdbc_batch_size),
        "use.time.zone": "UTC",
        # ride through a warehouse restart as cdc sync does (others' tests restart the shared one)
        "flush.max.retries": "60",
        "flush.retry.delay.ms": "1000",
        "connection.restart.on.errors": "true",
        # batch.size only helps if a poll hands the sink that many records (Debezium's docs):
        "consumer.override.max.poll.records": str(args.jdbc_batch_size),
        # larger fetches than cdc's own (4 MiB / 1 MiB, cdc/sync/consume.py): the sink is never starved
        "consumer.override.fetch.max.bytes": str(32 * 1024 * 1024),
        "consumer.override.max.partition.fetch.bytes": str(8 * 1024 * 1024),
        "consumer.override.auto.offset.reset": "earliest",
    }
    out.extra["config"] = {k: v for k, v in config.items() if k != "connection.password"}
    out.notes.append("its connection.password is a FileConfigProvider reference, resolved by the worker")
    worker = c.connect_worker_pid(stack)
    rss_before = c.rss_mb(worker) if worker else None
    rss_max = rss_before
    client = httpx.Client(base_url=stack.connect_url, timeout=30)
    admin = KafkaAdminClient(bootstrap_servers=stack.bootstrap)
    cpu_before = c.cpu_by_part(stack)
    started = time.monotonic()
    offset = 0
    try:
        response = client.put(f"/connectors/{name}/config", json=config)
        if response.status_code >= 400:
            out.error = f"Connect refused the config: {response.status_code} {response.text[:500]}"
            return out
        last_status = 0.0
        while True:
            offsets = admin.list_consumer_group_offsets(group)
            offset = max((int(m.offset) for tp, m in offsets.items() if tp.topic == topic), default=0)
            now = time.monotonic()
            if offset >= end:
                out.elapsed_s = now - started
                out.extra["cpu_us_per_event"] = c.cpu_per_event(cpu_before, c.cpu_by_part(stack), events)
                break
            if worker:
                rss_max = max(rss_max or 0, c.rss_mb(worker) or 0)
            if now - last_status > 3:
                last_status = now
                status = client.get(f"/connectors/{name}/status").json()
                failed = [t for t in status.get("tasks", []) if t.get("state") == "FAILED"]
                if failed or status.get("connector", {}).get("state") == "FAILED":
                    trace = (failed[0] if failed else status["connector"]).get("trace", "")
                    out.error = f"the JDBC sink failed at offset {offset}: {trace[:1500]}"
                    break
            if now - started > args.timeout:
                out.error = f"timed out after {args.timeout}s at offset {offset} of {end}"
                break
            time.sleep(0.25)
    finally:
        client.delete(f"/connectors/{name}")
        client.close()
        admin.close()
        secret.unlink(missing_ok=True)
    out.table = f'"{schema}"."orders"'
    out.events, out.messages = (events, end) if out.error is None else (None, offset)
    out.extra.update(connector=name, group=group, worker_rss_before_mb=rss_before, worker_rss_max_mb=rss_max)
    out.notes.append(
        "runs inside the shared Kafka Connect JVM: its own memory is not separable "
        f"(worker RSS {c.fmt_mb(rss_before)} MB before, max {c.fmt_mb(rss_max)} MB during the run)"
    )
    out.notes.append("offsets are committed by the worker every offset.flush.interval.ms (1 s here)")
    return out


# -- consumer c: naive row by row ------------------------------------------------------------------------
def run_naive(stack: c.Stack, run: str, topic: str, *, end: int, args: argparse.Namespace, attempt: int = 1) -> Outcome:
    import json

    out = Outcome("naive", "naive row-by-row")
    schema = f"bench_{run}_naive" + ("" if attempt == 1 else str(attempt))
    group = f"bench_{run}_naive" + ("" if attempt == 1 else str(attempt))
    command = [sys.executable, "-m", "benchmarks.naive", "--bootstrap", stack.bootstrap]
    command += ["--warehouse-url", stack.warehouse_url, "--topic", topic, "--group", group, "--schema", schema]
    command += ["--end", str(end), "--max-seconds", str(args.naive_max_seconds)]
    started = time.monotonic()
    done = subprocess.run(command, cwd=c.REPO, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - started
    out.table = f'"{schema}"."orders"'
    out.extra["group"] = group
    if done.returncode != 0:
        out.error = f"exited with {done.returncode}: {done.stderr[-1500:]}"
        return out
    report = json.loads(done.stdout.strip().splitlines()[-1])
    out.elapsed_s = elapsed
    out.events = report["events"]
    out.messages = report["next_offset"]
    out.peak_rss_mb = report["peak_rss_mb"]
    out.complete = report["complete"]
    if report.get("reconnects"):
        out.notes.append(f"lost the warehouse {report['reconnects']} time(s) and resumed from its last commit")
    if not out.complete and out.events:
        out.extrapolated_total_s = elapsed * args.events / out.events
        out.notes.append(
            f"stopped after {args.naive_max_seconds:.0f} s: ran on the first {out.messages:,} messages "
            f"({out.events:,} events); events/s measured on that prefix, full run extrapolated to "
            f"~{out.extrapolated_total_s:,.0f} s"
        )
    return out


# -- correctness ----------------------------------------------------------------------------------------------
def check_tables(
    stack: c.Stack, outcomes: list[Outcome], full: OrdersStream, args: argparse.Namespace, run: str
) -> dict[str, Any]:
    expected_full = {"rows": len(full.rows), "digests": column_digests(full.rows.values())}
    conn = c.warehouse_conn(stack)
    cur = conn.cursor()
    report: dict[str, Any] = {"expected_rows": expected_full["rows"], "tables": {}}
    for o in outcomes:
        if o.table is None:
            continue
        try:
            cur.execute(check_sql(o.table))
        except Exception as exc:  # a consumer that failed early may have no table
            report["tables"][o.name] = {"error": str(exc).strip()}
            continue
        got = cur.fetchone()
        count, digests = got[0], dict(zip(COLUMNS, got[1:], strict=True))
        if o.complete:
            want = expected_full
            against = "final state"
        else:
            prefix = expected_after(args.events, stack.topic_prefix, f"bench_{run}", args.seed, messages=o.messages)
            want = {"rows": len(prefix.rows), "digests": column_digests(prefix.rows.values())}
            against = f"state after its {o.messages:,} messages"
        differing = [col for col in COLUMNS if digests[col] != want["digests"][col]]
        entry: dict[str, Any] = {
            "rows": count,
            "expected_rows": want["rows"],
            "compared_with": against,
            "ids_match": digests["id"] == want["digests"]["id"],
            "columns_differing": differing,
            "ok": count == want["rows"] and not differing,
        }
        if differing:
            entry["examples"] = _examples(cur, o.table, differing, full if o.complete else prefix)
        report["tables"][o.name] = entry
    complete = [o for o in outcomes if o.complete and o.name in report["tables"] and "rows" in report["tables"][o.name]]
    id_digests = {}
    for o in complete:
        cur.execute(f"SELECT md5(coalesce(string_agg(id::text, ',' ORDER BY id), '')) FROM {o.table}")
        id_digests[o.name] = cur.fetchone()[0]
    report["same_ids_across_complete_consumers"] = len(set(id_digests.values())) <= 1
    conn.close()
    return report


def _examples(cur: Any, table: str, columns: list[str], expected: OrdersStream, limit: int = 3) -> dict[str, Any]:
    """A few rows where a column differs from the expected state (to say how it differs)."""
    from benchmarks.events import CHECK_EXPRESSIONS

    found: dict[str, Any] = {}
    for column in columns:
        if column == "id":
            cur.execute(f"SELECT id FROM {table}")
            have = {r[0] for r in cur.fetchall()}
            want = set(expected.rows)
            found["id"] = {"missing": sorted(want - have)[:10], "unexpected": sorted(have - want)[:10]}
            continue
        cur.execute(f"SELECT id, {CHECK_EXPRESSIONS[column]} FROM {table} ORDER BY id")
        samples = []
        for ident, text in cur:
            row = expected.rows.get(ident)
            want = row.column_texts()[column] if row else "<no such row>"
            if text != want:
                samples.append({"id": ident, "warehouse": text, "expected": want})
                if len(samples) >= limit:
                    break
        found[column] = samples
    return found


def drop_outcome(stack: c.Stack, o: Outcome) -> None:
    """Remove what a discarded attempt created in the warehouse."""
    if o.table:
        conn = c.warehouse_conn(stack)
        conn.cursor().execute(f"DROP SCHEMA IF EXISTS {o.table.split('.')[0]} CASCADE")
        conn.close()


# -- cleanup --------------------------------------------------------------------------------------------------
def cleanup(stack: c.Stack, run: str, topic: str, outcomes: list[Outcome]) -> None:
    conn = c.warehouse_conn(stack)
    cur = conn.cursor()
    for o in outcomes:
        if o.table:
            cur.execute(f"DROP SCHEMA IF EXISTS {o.table.split('.')[0]} CASCADE")
    cur.execute("DELETE FROM cdc.table_map WHERE source_schema = %s", (f"bench_{run}",))
    cur.execute("DELETE FROM cdc.kafka_offsets WHERE consumer_group LIKE %s", (f"bench_{run}_%",))
    cur.execute(f"SELECT nspname FROM pg_namespace WHERE nspname LIKE 'bench_{run}_%'")
    for (schema,) in cur.fetchall():
        cur.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    conn.close()
    groups = [o.extra["group"] for o in outcomes if "group" in o.extra]
    c.delete_groups(stack.bootstrap, groups)
    c.delete_topic(stack.bootstrap, topic)


# -- report ---------------------------------------------------------------------------------------------------
def print_report(result: dict[str, Any], outcomes: list[Outcome]) -> None:
    p = result["produce"]
    print()
    print(
        f"produced {p['events']:,} change events ({p['inserts']:,} c / {p['updates']:,} u / {p['deletes']:,} d) "
        f"+ {p['tombstones']:,} tombstones = {p['messages']:,} messages, {p['bytes'] / 1e9:.2f} GB "
        f"(avg {p['avg_message_bytes']:,} B) in {p['elapsed_s']:.1f} s ({p['messages_per_s']:,} msg/s; "
        "not part of the comparison)"
    )
    rows = []
    for o in outcomes:
        check = result["correctness"]["tables"].get(o.name, {})
        verdict = "ok" if check.get("ok") else ("error" if o.error else "DIFFERS")
        verdict += " (disturbed)" if o.disturbed else ""
        rows.append(
            [
                o.label,
                c.fmt_rate(o.events_per_s) + (" *" if not o.complete else ""),
                "-" if o.elapsed_s is None else f"{o.elapsed_s:,.1f}",
                "-" if o.events is None else f"{o.events:,}",
                c.fmt_mb(o.peak_rss_mb),
                "-" if "rows" not in check else f"{check['rows']:,}",
                verdict,
            ]
        )
    print(c.table_text(["consumer", "events/s", "elapsed s", "events", "peak RSS MB", "rows", "final state"], rows))
    for o in outcomes:
        for note in o.notes:
            print(f"  {o.label}: {note}")
        if o.error:
            print(f"  {o.label}: ERROR {o.error}")
    if any(not o.complete for o in outcomes):
        print("  * measured on a prefix of the topic (see the note above)")
    for name, ratio in result["ratios"].items():
        print(f"  ratio {name}: {ratio}")
    for o in outcomes:
        cpu = o.extra.get("cpu_us_per_event")
        if cpu:
            shown = ", ".join(f"{part} {us:.1f}" for part, us in cpu.items())
            print(f"  {o.label}: CPU µs per event: {shown}")
    corr = result["correctness"]
    print(
        f"  expected final rows: {corr['expected_rows']:,}; same ids in every complete table: "
        f"{corr['same_ids_across_complete_consumers']}"
    )
    for name, t in corr["tables"].items():
        if not t.get("ok"):
            print(f"  {name}: {t}")


def main(argv: list[str] | None = None) -> int:  # noqa: PLR0912, PLR0915 - one linear procedure
    parser = argparse.ArgumentParser(description="cdc sync throughput vs the Debezium JDBC sink and a naive consumer")
    parser.add_argument("--events", type=int, default=1_000_000, help="change events to produce (default 1,000,000)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--consumers", default=DEFAULT_CONSUMERS, help=f"comma-separated, in order, of {CONSUMERS}")
    parser.add_argument("--naive-max-seconds", type=float, default=180, help="bound the naive consumer's time")
    parser.add_argument("--jdbc-batch-size", type=int, default=5000)
    parser.add_argument("--until-idle", type=float, default=2.0, help="cdc sync --until-idle (a safety exit)")
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="give up on one consumer after this long")
    parser.add_argument(
        "--attempts", type=int, default=3, help="re-measure a consumer whose run a warehouse restart disturbed"
    )
    parser.add_argument("--profile", action="store_true", help="run cdc sync under cProfile and print the top")
    parser.add_argument("--keep", action="store_true", help="keep the topic, warehouse schemas and groups")
    parser.add_argument(
        "--nullable-ref",
        action="store_true",
        help='make ref a nullable uuid (default NOT NULL, for which Debezium sends ref "" in delete images)',
    )
    args = parser.parse_args(argv)
    chosen = [x.strip() for x in args.consumers.split(",") if x.strip()]
    unknown = set(chosen) - set(CONSUMERS)
    if unknown:
        parser.error(f"unknown consumers {sorted(unknown)}; choose from {CONSUMERS}")

    c.WORK.mkdir(parents=True, exist_ok=True)
    stack = c.Stack.load()
    run = time.strftime("%m%d%H%M", time.gmtime()) + uuid.uuid4().hex[:4]
    topic = f"{stack.topic_prefix}.bench_{run}.orders"
    result: dict[str, Any] = {
        "benchmark": "throughput",
        "run": run,
        "started_utc": c.now_stamp(),
        "args": vars(args),
        "machine": c.machine_facts(stack),
    }
    print(f"run {run}: {args.events:,} events into {topic}; consumers: {', '.join(chosen)}")
    stream = OrdersStream(
        args.events, stack.topic_prefix, f"bench_{run}", seed=args.seed, ref_not_null=not args.nullable_ref
    )
    print("producing ...", flush=True)
    result["produce"] = produce(stack, topic, stream)
    end = result["produce"]["messages"]
    others = c.other_topic_messages(stack.bootstrap, stack.topic_prefix, topic, (f"bench_{run}.orders",))
    result["other_change_topic_messages"] = others
    outcomes: list[Outcome] = []
    try:
        for name in chosen:
            earlier: list[str] = []
            for attempt in range(1, args.attempts + 1):
                print(f"draining with {name} (attempt {attempt}) ...", flush=True)
                before = c.warehouse_started(stack)
                if name in ("cdc", "cdc-confluent", "cdc-python"):
                    client = "confluent" if name == "cdc-confluent" else "kafka-python"
                    o = run_cdc(
                        stack,
                        run,
                        topic,
                        end=end,
                        events=args.events,
                        args=args,
                        attempt=attempt,
                        client=client,
                        fastpath=name != "cdc-python",
                    )
                    if others:
                        o.notes.append(
                            f"its fresh group also reads the {others:,} messages of other change topics that "
                            "its subscription matches"
                        )
                elif name == "jdbc":
                    o = run_jdbc(stack, run, topic, end=end, events=args.events, args=args, attempt=attempt)
                else:
                    o = run_naive(stack, run, topic, end=end, args=args, attempt=attempt)
                disturbed = c.warehouse_started(stack) != before
                rate = c.fmt_rate(o.events_per_s)
                print(f"  {o.label}: {rate} events/s" + (f"  ERROR {o.error[:300]}" if o.error else ""), flush=True)
                if not disturbed:
                    break
                o.disturbed = True
                o.notes.append("the warehouse PostgreSQL was restarted (by someone else) during this measurement")
                print("  the warehouse was restarted during this measurement", flush=True)
                if attempt < args.attempts:
                    earlier.append(f"attempt {attempt}: {rate} events/s, disturbed by a warehouse restart")
                    drop_outcome(stack, o)
            o.notes[:0] = earlier
            outcomes.append(o)
        result["correctness"] = check_tables(stack, outcomes, stream, args, run)
    finally:
        if not args.keep:
            cleanup(stack, run, topic, outcomes)
    by = {o.name: o for o in outcomes}
    ratios: dict[str, str] = {}
    pairs = (
        ("cdc-confluent", "jdbc"),
        ("cdc-confluent", "cdc-python"),
        ("cdc", "jdbc"),
        ("cdc", "cdc-python"),
        ("cdc-python", "jdbc"),
        ("cdc", "naive"),
        ("jdbc", "naive"),
    )
    for a, b in pairs:
        ra = by[a].events_per_s if a in by else None
        rb = by[b].events_per_s if b in by else None
        if ra and rb:
            ratios[f"{a} / {b}"] = f"{ra / rb:.2f}x"
    result["ratios"] = ratios
    result["consumers"] = {
        o.name: {
            "label": o.label,
            "events_per_s": o.events_per_s,
            "elapsed_s": o.elapsed_s,
            "events": o.events,
            "messages": o.messages,
            "peak_rss_mb": o.peak_rss_mb,
            "complete": o.complete,
            "extrapolated_total_s": o.extrapolated_total_s,
            "table": o.table,
            "notes": o.notes,
            "error": o.error,
            "disturbed": o.disturbed,
            **o.extra,
        }
        for o in outcomes
    }
    path = c.save_result("throughput", result, result["started_utc"])
    print_report(result, outcomes)
    print(f"\nresults: {path}")
    for o in outcomes:
        if "profile" in o.extra:
            print_profile(Path(o.extra["profile"]))
    return (
        0
        if all(o.error is None for o in outcomes) and all(t.get("ok") for t in result["correctness"]["tables"].values())
        else 1
    )


def profile_areas(path: Path) -> list[tuple[str, float, float]]:
    """Own (tottime) seconds of the profile summed by area: kafka-python, each cdc module, the
    database driver's C calls (these include waiting for PostgreSQL), ... -> (area, s, share)."""
    import pstats
    from collections import Counter

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    areas: Counter[str] = Counter()
    for (file, _line, fn), (_cc, _nc, tottime, _ct, _callers) in stats.items():
        if "/kafka/" in file:
            area = "kafka-python (fetch, record parsing)"
        elif "/cdc/" in file:
            area = "cdc/" + file.split("/cdc/")[-1]
        elif "orjson" in fn:
            area = "orjson"
        elif "psycopg2" in fn or "copy_expert" in fn or "'execute' of" in fn:
            area = "psycopg2 calls (incl. waiting for PostgreSQL)"
        elif "socket" in fn or "epoll" in fn or "select" in fn:
            area = "socket recv / epoll (Kafka)"
        elif file == "~":
            area = "builtins (dict.get, hash, append, ...)"
        else:
            area = "other Python (start-up, stdlib)"
        areas[area] += tottime
    total = sum(areas.values()) or 1.0
    return [(area, secs, secs / total) for area, secs in areas.most_common()]


PHASES = (
    ("cdc/sync/loop.py", "run", "the sync loop, all of it"),
    ("cdc/sync/consume.py", "poll", "  Kafka: KafkaSource.poll (kafka-python fetch + record parsing)"),
    ("cdc/decode/envelope.py", "decode", "  decode: EnvelopeDecoder.decode"),
    ("cdc/buffer.py", "add", "  buffer: Buffer.add (compaction by key)"),
    ("cdc/warehouse/postgres.py", "apply", "  flush: PostgresWarehouse.apply"),
    ("cdc/warehouse/copy.py", "staging_text", "    COPY text built in Python (staging_text)"),
    ("~", "<method 'copy_expert' of 'psycopg2.extensions.cursor' objects>", "    COPY into staging (PostgreSQL)"),
    ("~", "<method 'execute' of 'psycopg2.extensions.cursor' objects>", "    MERGE and other SQL (PostgreSQL)"),
)


def profile_phases(path: Path) -> list[tuple[str, float]]:
    """Cumulative seconds of the pipeline's stages in a cProfile of `cdc sync`."""
    import pstats

    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    out = []
    for suffix, name, label in PHASES:
        total = sum(
            v[3] for (file, _line, fn), v in stats.items() if fn == name and (file == suffix or file.endswith(suffix))
        )
        out.append((label, total))
    return out


def print_profile(path: Path, top: int = 25) -> None:
    import pstats

    for key in ("cumulative", "tottime"):
        print(f"\n== {path.name}: top {top} by {key} ==")
        pstats.Stats(str(path)).strip_dirs().sort_stats(key).print_stats(top)
    print(f"\n== {path.name}: the stages, cumulative ==")
    for label, secs in profile_phases(path):
        print(f"{secs:8.2f} s  {label}")
    print(f"\n== {path.name}: own time by area ==")
    for area, secs, share in profile_areas(path):
        if share >= 0.005:
            print(f"{secs:8.2f} s {100 * share:5.1f}%  {area}")


if __name__ == "__main__":
    raise SystemExit(main())
