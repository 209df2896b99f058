"""Install, check and remove the source-side DDL capture (sql/schema_capture.sql): event triggers that
write one cdc.schema_ddl row per DDL command and changed user table, with the table's shape before and
after. PostgreSQL lets only superusers create event triggers, so this needs a superuser's URL; without
one, a DBA runs the same file with psql."""

from __future__ import annotations

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from cdc import pgerrors
from cdc.errors import CdcError, ConfigError
from cdc.resources import sql_file

SCRIPT = "schema_capture.sql"
TRIGGERS = ("cdc_schema_capture_ddl", "cdc_schema_capture_drop")
# SQLSTATE insufficient_privilege: what a non-superuser meets at CREATE EVENT TRIGGER.
_INSUFFICIENT_PRIVILEGE = "42501"
_FIX = (
    f"Run it with a superuser's connection URL, or ask the DBA to run `psql -d <source database> -f sql/{SCRIPT}` "
    "as a superuser (it is idempotent)."
)

Connection = psycopg2.extensions.connection


def install(source_url: str, *, schema_owner: str | None = None) -> None:
    """Create (or refresh) the capture objects and the event triggers, and seed cdc.schema_snapshot.
    schema_owner: the connector's role, to own schema cdc if it does not exist yet (its tables
    belong to the schema's owner, who must own cdc.schema_ddl to publish it)."""
    conn = pgerrors.connect(source_url, "source")
    try:
        _require_superuser(conn)
        if schema_owner is not None:
            try:
                with conn.cursor() as cur:
                    cur.execute(
                        sql.SQL("CREATE SCHEMA IF NOT EXISTS cdc AUTHORIZATION {}").format(sql.Identifier(schema_owner))
                    )
            except psycopg2.Error as exc:
                conn.rollback()
                raise _translate(exc, "creating schema cdc") from exc
        _run_script(conn)
    finally:
        conn.close()


def installed(conn_or_url: Connection | str) -> bool:
    """Whether both event triggers exist and fire (enabled in any mode but disabled)."""
    if isinstance(conn_or_url, str):
        conn = pgerrors.connect(conn_or_url, "source")
        try:
            return _triggers_enabled(conn)
        finally:
            conn.close()
    return _triggers_enabled(conn_or_url)


def uninstall(source_url: str) -> None:
    """Drop the event triggers. The audit and snapshot tables, and the functions, stay: the audit is
    history, and a later install re-seeds the snapshot."""
    conn = pgerrors.connect(source_url, "source")
    try:
        _require_superuser(conn)
        with conn.cursor() as cur:
            for name in TRIGGERS:
                cur.execute(sql.SQL("DROP EVENT TRIGGER IF EXISTS {}").format(sql.Identifier(name)))
        conn.commit()
    except psycopg2.Error as exc:
        raise _translate(exc, "dropping the schema capture's event triggers") from exc
    finally:
        conn.close()


def _require_superuser(conn: Connection) -> None:
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_user, rolsuper FROM pg_roles WHERE rolname = current_user")
            row = cur.fetchone()
    except psycopg2.Error as exc:
        raise pgerrors.translate(exc, "checking the source role's privileges", "source") from exc
    if row is None or not row[1]:
        user = row[0] if row else "this role"
        raise ConfigError(
            f"Installing schema capture into the source needs a superuser: PostgreSQL lets only superusers "
            f"create event triggers, and {user} is not one.",
            _FIX,
        )


def _run_script(conn: Connection) -> None:
    script = sql_file(SCRIPT)
    try:
        with conn.cursor() as cur:
            cur.execute(script)  # no parameters: psycopg2 leaves the script's % signs alone
        conn.commit()
    except psycopg2.Error as exc:
        conn.rollback()
        raise _translate(exc, f"running sql/{SCRIPT}") from exc


def _translate(exc: psycopg2.Error, what: str) -> CdcError:
    if pgerrors.sqlstate(exc) == _INSUFFICIENT_PRIVILEGE or "must be superuser" in str(exc):
        return ConfigError(
            f"The source refused {what}: {pgerrors.describe(exc)}. Event triggers need a superuser.",
            _FIX,
        )
    return pgerrors.translate(exc, what, "source")


def _triggers_enabled(conn: Connection) -> bool:
    idle = conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    opens_transaction = idle and not conn.autocommit
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_event_trigger WHERE evtname = ANY(%s) AND evtenabled <> 'D'",
                (list(TRIGGERS),),
            )
            row = cur.fetchone()
    except psycopg2.Error as exc:
        raise pgerrors.translate(exc, "looking for the schema capture's event triggers", "source") from exc
    finally:
        if opens_transaction:
            conn.rollback()  # the caller's connection is left as it came: idle, not inside our SELECT
    return row is not None and row[0] == len(TRIGGERS)
