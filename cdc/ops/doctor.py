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
from cdc.schema.install import TRIGGERS
from cdc.settings import Settings


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
    checks += _guarded("source", "connect to the source", lambda: list(_source_checks(settings)))
    checks += _guarded("connector", "read Kafka Connect's status", lambda: list(_connector_checks(settings)))
    return checks


def _guarded(area: str, what: str, checks: Callable[[], list[Check]]) -> list[Check]:
    try:
        return checks()
    except CdcError as exc:
        return [Check(area, what, Verdict.FAIL, exc.problem, exc.fix or "")]
    except psycopg2.Error as exc:
        return [Check(area, what, Verdict.FAIL, pgerrors.describe(exc), "")]


# -- the source -----------------------------------------------------------------------------------
def _source_checks(settings: Settings) -> Iterator[Check]:
    conn = capture.connect(settings.require_source_url())
    try:
        with conn.cursor() as cur:
            yield _wal_level(cur)
            yield _replication_role(cur)
            yield from _slot(cur, settings.slot_name)
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


def _slot(cur: Any, slot: str) -> Iterator[Check]:
    cur.execute(
        "SELECT active, wal_status, pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint, safe_wal_size "
        "FROM pg_replication_slots WHERE slot_name = %s",
        (slot,),
    )
    row = cur.fetchone()
    if row is None:
        yield Check(
            "source",
            "replication slot",
            Verdict.FAIL,
            f"slot {slot} does not exist: Debezium has not started, or the slot was dropped (changes made since "
            "are not in Kafka)",
            "cdc connector apply (Debezium creates the slot); if it existed before, backfill the tables and run "
            "cdc verify --fix",
        )
        return
    active, wal_status, retained, safe = row
    retained_text = f"{_bytes(retained)} of WAL retained" + (f", {_bytes(safe)} more before loss" if safe else "")
    if wal_status == "lost":
        yield Check(
            "source",
            "replication slot",
            Verdict.FAIL,
            f"slot {slot} is lost (wal_status lost): WAL it needed was removed, changes are missing",
            "recreate the connector's slot (cdc connector apply after dropping it), then cdc backfill the tables "
            "and cdc verify --fix",
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
    if not active:
        yield Check(
            "source",
            "slot in use",
            Verdict.WARN,
            f"nobody streams from slot {slot}: WAL piles up on the source until Debezium reads it again",
            "check cdc connector status (a stopped or failed task)",
        )


def _bytes(value: int | None) -> str:
    size = float(value or 0)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


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
            yield Check(
                "connector",
                f"{name} task {number}",
                Verdict.FAIL,
                f"task {number} is {task_state}{why}",
                "fix the cause in the trace (cdc connector status), then cdc connector apply to restart it",
            )
