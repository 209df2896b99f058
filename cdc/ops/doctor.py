"""`cdc doctor`: what is wrong with the setup, and the fix, before it costs data.

Each check reads only (catalogs, Connect's REST status) and ends PASS, WARN or FAIL with the fix
to apply. A check that cannot run (its server does not answer) FAILs with why, and the others go
on: one report says everything at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any

import psycopg2

from cdc import capture, pgerrors
from cdc.errors import CdcError
from cdc.ops.kafka_view import KafkaView
from cdc.ops.text import human_bytes
from cdc.schema.install import TRIGGERS
from cdc.settings import Settings
from cdc.slot import read_slot
from cdc.warehouse import ledger
from cdc.warehouse.naming import table_of_topic


class Verdict(StrEnum):
    PASS = "PASS"  # noqa: S105 (a verdict, not a password)
    WARN = "WARN"
    FAIL = "FAIL"


@dataclass(frozen=True, slots=True)
class Check:
    area: str
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def run(settings: Settings) -> list[Check]:
    checks: list[Check] = []
    checks += _guarded(
        "source",
        "connect to the source",
        lambda: list(_source_checks(settings)),
        "check CDC_SOURCE_URL and that the source is up",
    )
    checks += _guarded("connector", "read Kafka Connect's status", lambda: list(_connector_checks(settings)))
    checks += _guarded("kafka", "reach Kafka", lambda: list(_kafka_checks(settings)))
    warehouse_fix = "check CDC_WAREHOUSE_URL and that the warehouse is up"
    checks += _guarded("warehouse", "reach the warehouse", lambda: list(_warehouse_checks(settings)), warehouse_fix)
    if checks[-1].name != "reach the warehouse":
        checks += _guarded(
            "offsets", "compare stored offsets with Kafka", lambda: list(_offset_checks(settings)), warehouse_fix
        )
    return checks


def _guarded(area: str, what: str, checks: Callable[[], list[Check]], fix: str = "") -> list[Check]:
    try:
        return checks()
    except CdcError as exc:
        return [Check(area, what, Verdict.FAIL, exc.problem, exc.fix or fix)]
    except psycopg2.Error as exc:
        return [Check(area, what, Verdict.FAIL, pgerrors.describe(exc), fix)]


# -- the source -----------------------------------------------------------------------------------
def _source_checks(settings: Settings) -> Iterator[Check]:
    conn = capture.connect(settings.require_source_url())
    try:
        with conn.cursor() as cur:
            yield _wal_level(cur)
            yield _replication_role(cur)
            yield from _slot(cur, settings.slot_name, settings.slot_retained_warn_bytes)
            yield _wal_keep(cur)
        selection = capture.survey(conn, settings)
        with conn.cursor() as cur:
            yield _publication(cur, settings.publication_name, selection.captured)
            yield _replica_identities(selection.captured_user_tables)
            yield _heartbeat(cur)
            yield _ddl_capture(cur)
    finally:
        conn.close()


def _one(cur: Any, query: str, params: tuple[Any, ...] = ()) -> Any:
    cur.execute(query, params)
    row = cur.fetchone()
    return row[0] if row else None


def _wal_level(cur: Any) -> Check:
    level = _one(cur, "SHOW wal_level")
    if level == "logical":
        return Check("source", "wal_level", Verdict.PASS, "logical")
    return Check(
        "source",
        "wal_level",
        Verdict.FAIL,
        f"wal_level is {level}: the source writes no logical decoding data, so nothing can be captured",
        "ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL",
    )


def _replication_role(cur: Any) -> Check:
    cur.execute("SELECT rolname, rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user")
    name, allowed = cur.fetchone()
    if allowed:
        return Check("source", "replication privilege", Verdict.PASS, f"role {name} may replicate")
    return Check(
        "source",
        "replication privilege",
        Verdict.FAIL,
        f"role {name} has neither REPLICATION nor SUPERUSER: it cannot read the slot (Debezium) or export a "
        "snapshot (cdc backfill)",
        f'ALTER ROLE "{name}" REPLICATION',
    )


def _slot(cur: Any, slot: str, limit: int) -> Iterator[Check]:
    reading = read_slot(cur, slot)
    if not reading.exists:
        yield Check(
            "source",
            "replication slot",
            Verdict.FAIL,
            f"slot {slot} does not exist: Debezium has not started, or the slot was dropped (changes made since "
            "are not in Kafka)",
            "cdc connector apply (Debezium creates the slot); if it existed before: cdc connector resnapshot, "
            "then cdc verify --fix",
        )
        return
    active, wal_status, retained, safe = (
        reading.active,
        reading.wal_status,
        reading.retained_bytes,
        reading.safe_wal_size,
    )
    retained_text = f"{human_bytes(retained)} of WAL retained" + (
        f", {human_bytes(safe)} more before loss" if safe else ""
    )
    if wal_status == "lost":
        yield Check(
            "source",
            "replication slot",
            Verdict.FAIL,
            f"slot {slot} is lost (wal_status lost): WAL it needed was removed, changes are missing",
            "cdc connector resnapshot (Debezium makes a new slot and snapshot), then cdc verify --fix",
        )
    elif wal_status == "unreserved":
        yield Check(
            "source",
            "replication slot",
            Verdict.WARN,
            f"slot {slot} is past max_slot_wal_keep_size ({retained_text}): its WAL goes at the next checkpoint",
            "get Debezium streaming again now (cdc connector status); raise max_slot_wal_keep_size meanwhile",
        )
    else:
        yield Check("source", "replication slot", Verdict.PASS, f"slot {slot}: {wal_status}, {retained_text}")
    if retained is not None and retained > limit > 0:
        yield Check(
            "source",
            "retained WAL",
            Verdict.WARN,
            f"slot {slot} retains {human_bytes(retained)} of WAL, above the limit of {human_bytes(limit)}",
            "get Debezium streaming again (see the connector checks); the limit is CDC_SLOT_RETAINED_WARN_BYTES",
        )
    if not active:
        yield Check(
            "source",
            "slot in use",
            Verdict.WARN,
            f"nobody streams from slot {slot}: WAL piles up on the source until Debezium reads it again",
            "check cdc connector status (a stopped or failed task)",
        )


def _wal_keep(cur: Any) -> Check:
    keep = _one(cur, "SHOW max_slot_wal_keep_size")
    if keep in ("-1", "-1MB"):
        return Check(
            "source",
            "max_slot_wal_keep_size",
            Verdict.WARN,
            "unlimited: a slot nobody reads keeps WAL until the source's disk is full",
            "ALTER SYSTEM SET max_slot_wal_keep_size = '50GB' (what the disk allows); SELECT pg_reload_conf()",
        )
    return Check("source", "max_slot_wal_keep_size", Verdict.PASS, str(keep))


def _publication(cur: Any, publication: str, captured: list[capture.SourceTable]) -> Check:
    if not _one(cur, "SELECT count(*) FROM pg_publication WHERE pubname = %s", (publication,)):
        return Check(
            "source", "publication", Verdict.FAIL, f"publication {publication} does not exist", "cdc connector apply"
        )
    cur.execute("SELECT schemaname, tablename FROM pg_publication_tables WHERE pubname = %s", (publication,))
    published = {f"{s}.{t}" for s, t in cur.fetchall()}
    wanted = {t.qualified for t in captured}
    missing, extra = sorted(wanted - published), sorted(published - wanted)
    if not missing and not extra:
        return Check("source", "publication", Verdict.PASS, f"{publication} holds the {len(wanted)} captured tables")
    parts = []
    if missing:
        parts.append(f"captured but not published (their changes are not sent): {', '.join(missing[:5])}")
    if extra:
        parts.append(f"published but not captured: {', '.join(extra[:5])}")
    return Check("source", "publication", Verdict.FAIL, "; ".join(parts), "cdc connector apply")


def _replica_identities(tables: list[capture.SourceTable]) -> Check:
    wrong = [t.qualified for t in tables if not t.has_primary_key and t.replica_identity != "f"]
    if not wrong:
        keyless = sum(1 for t in tables if not t.has_primary_key)
        return Check(
            "source", "tables without a primary key", Verdict.PASS, f"{keyless} captured, each REPLICA IDENTITY FULL"
        )
    return Check(
        "source",
        "tables without a primary key",
        Verdict.FAIL,
        f"{', '.join(wrong[:5])} has no primary key and not REPLICA IDENTITY FULL: its updates and deletes do not "
        "say which row they change",
        "cdc connector apply (it sets REPLICA IDENTITY FULL), or add a primary key",
    )


def _heartbeat(cur: Any) -> Check:
    found = _one(cur, "SELECT to_regclass(%s) IS NOT NULL", (f"{capture.INTERNAL_SCHEMA}.{capture.HEARTBEAT_TABLE}",))
    if found:
        return Check("source", "heartbeat table", Verdict.PASS, f"{capture.INTERNAL_SCHEMA}.{capture.HEARTBEAT_TABLE}")
    return Check(
        "source",
        "heartbeat table",
        Verdict.FAIL,
        "cdc.debezium_heartbeat is missing: on a quiet database the slot would hold WAL forever",
        "cdc connector apply (it creates cdc's tables in the source)",
    )


def _ddl_capture(cur: Any) -> Check:
    enabled = _one(
        cur, "SELECT count(*) FROM pg_event_trigger WHERE evtname = ANY(%s) AND evtenabled <> 'D'", (list(TRIGGERS),)
    )
    if enabled == len(TRIGGERS):
        return Check("source", "schema change capture", Verdict.PASS, "event triggers installed")
    return Check(
        "source",
        "schema change capture",
        Verdict.WARN,
        "the DDL capture's event triggers are not installed: a renamed column shows as dropped and added",
        "cdc schema install (as a superuser), then cdc connector apply",
    )


# -- Kafka Connect --------------------------------------------------------------------------------
def _connector_checks(settings: Settings) -> Iterator[Check]:
    from cdc.connect_api import ConnectClient

    client = ConnectClient(settings.require_connect_url(), timeout=10)
    try:
        state = client.status(settings.connector_name)
    finally:
        client.close()
    name = settings.connector_name
    if state.state == "MISSING":
        yield Check("connector", name, Verdict.FAIL, f"Kafka Connect has no connector {name}", "cdc connector apply")
        return
    first_line = (state.trace or "").strip().splitlines()[:1]
    if state.state == "PAUSED":
        yield Check(
            "connector",
            name,
            Verdict.FAIL,
            f"connector {name} is PAUSED: nothing is captured, WAL piles up in the slot",
            f"curl -X PUT <connect>/connectors/{name}/resume (or cdc connector apply)",
        )
    elif state.state != "RUNNING":
        yield Check(
            "connector",
            name,
            Verdict.FAIL,
            f"connector {name} is {state.state}" + (f": {first_line[0]}" if first_line else ""),
            "see cdc connector status and the Connect worker's log; cdc connector apply restarts it",
        )
    else:
        yield Check("connector", name, Verdict.PASS, "RUNNING")
    if not state.tasks and state.state == "RUNNING":
        yield Check("connector", f"{name} tasks", Verdict.FAIL, "no task runs", "cdc connector apply")
    for number, task_state in state.tasks:
        if task_state == "RUNNING":
            yield Check("connector", f"{name} task {number}", Verdict.PASS, "RUNNING")
        else:
            why = f": {first_line[0]}" if task_state == "FAILED" and first_line else ""
            fix = "fix the cause in the trace (cdc connector status), then cdc connector apply to restart it"
            if "no longer available on the server" in why:
                fix = "the slot lost the connector's position: cdc connector resnapshot, then cdc verify --fix"
            yield Check("connector", f"{name} task {number}", Verdict.FAIL, f"task {number} is {task_state}{why}", fix)


# -- Kafka ----------------------------------------------------------------------------------------
def _kafka_checks(settings: Settings) -> Iterator[Check]:
    bootstrap = settings.require_kafka()
    with KafkaView(bootstrap) as kafka:
        topics = kafka.topics(f"{settings.topic_prefix}.")
    changes = [t for t in topics if table_of_topic(t, settings.topic_prefix) is not None]
    yield Check("kafka", "broker", Verdict.PASS, f"{bootstrap} answers; {len(changes)} change topics")
    if not changes:
        yield Check(
            "kafka",
            "change topics",
            Verdict.WARN,
            f"no topic {settings.topic_prefix}.<schema>.<table> yet: Debezium has sent no change",
            "cdc connector apply; a table's topic appears with its first change",
        )


# -- the warehouse --------------------------------------------------------------------------------
def _warehouse_checks(settings: Settings) -> Iterator[Check]:
    conn = pgerrors.connect(settings.require_warehouse_url(), "warehouse", "cdc doctor")
    try:
        with conn.cursor() as cur:
            read_only = _one(cur, "SELECT current_setting('transaction_read_only') = 'on' OR pg_is_in_recovery()")
            if read_only:
                yield Check(
                    "warehouse",
                    "writable",
                    Verdict.FAIL,
                    "the warehouse is read-only (a standby, or default_transaction_read_only)",
                    "point CDC_WAREHOUSE_URL at the primary",
                )
                return
            schema = settings.warehouse_schema
            cur.execute(
                "SELECT current_user, to_regnamespace(%s) IS NULL OR has_schema_privilege(%s, 'CREATE'), "
                "to_regclass('cdc.kafka_offsets') IS NOT NULL "
                "AND has_table_privilege('cdc.kafka_offsets', 'INSERT, UPDATE'), "
                "has_database_privilege(current_database(), 'CREATE')",
                (schema, schema),
            )
            user, schema_ok, ledger_ok, database_ok = cur.fetchall()[0]
    finally:
        conn.close()
    problems = []
    if not schema_ok:
        problems.append(f"role {user} may not create tables in schema {schema}")
    if not ledger_ok and not database_ok:
        problems.append(f"role {user} can neither write cdc.kafka_offsets nor create cdc's schema")
    if problems:
        yield Check(
            "warehouse",
            "writable",
            Verdict.FAIL,
            "; ".join(problems),
            f'GRANT CREATE ON SCHEMA "{schema}" TO "{user}"; GRANT CREATE ON DATABASE ... TO "{user}"',
        )
    else:
        yield Check("warehouse", "writable", Verdict.PASS, f"role {user} writes schema {schema} and cdc's ledger")


# -- stored offsets against what Kafka retains ----------------------------------------------------
def _offset_checks(settings: Settings) -> Iterator[Check]:
    group = settings.consumer_group
    conn = pgerrors.connect(settings.require_warehouse_url(), "warehouse", "cdc doctor")
    try:
        with conn.cursor() as cur:
            if not _one(cur, "SELECT to_regclass('cdc.kafka_offsets') IS NOT NULL"):
                stored = {}
            else:
                stored = ledger.stored_offsets(cur, group)
    finally:
        conn.close()
    if not stored:
        yield Check("offsets", "stored offsets", Verdict.PASS, f"consumer group {group} has stored none yet")
        return
    with KafkaView(settings.require_kafka()) as kafka:
        retained = kafka.retained(sorted({topic for topic, _ in stored}))
    lost, gone, ahead = [], [], []
    for (topic, partition), offset in sorted(stored.items()):
        found = retained.get((topic, partition))
        if found is None:
            gone.append(f"{topic}[{partition}]")
        elif offset < found.begin:
            lost.append(f"{topic}[{partition}] offsets {offset}..{found.begin - 1}")
        elif offset > found.end:
            ahead.append(f"{topic}[{partition}] stored {offset}, end {found.end}")
    if lost:
        yield Check(
            "offsets",
            "stored offsets",
            Verdict.FAIL,
            f"changes deleted from Kafka before cdc sync applied them: {'; '.join(lost[:5])}",
            "cdc backfill the tables of these topics (their rows come again from the source), then cdc verify "
            "--fix; lengthen the topics' retention.ms",
        )
    if ahead:
        yield Check(
            "offsets",
            "stored offsets",
            Verdict.FAIL,
            f"stored offsets past the topic's end (the topic was deleted and made again): {'; '.join(ahead[:5])}",
            "cdc backfill the tables of these topics, then cdc verify --fix",
        )
    if gone:
        yield Check(
            "offsets",
            "topics of stored offsets",
            Verdict.WARN,
            f"offsets are stored for topics Kafka no longer has: {', '.join(gone[:5])}",
            "if their tables are still captured, cdc backfill them; otherwise nothing to do",
        )
    if not lost and not ahead:
        yield Check(
            "offsets",
            "stored offsets",
            Verdict.PASS,
            f"{len(stored)} partitions of group {group}, each within what Kafka retains",
        )
