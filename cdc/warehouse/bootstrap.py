"""cdc's own tables in the warehouse (sql/warehouse_bootstrap.sql), created or brought up to date
once per version of that script, not at every start.

The script is idempotent, but its DDL takes table locks even when there is nothing to do: `ALTER
TABLE ... ADD COLUMN IF NOT EXISTS` an ACCESS EXCLUSIVE lock, `CREATE INDEX IF NOT EXISTS` a SHARE
lock. A process starting while others flush took those locks one table after another against
flushes that write the same tables in another order: a deadlock (seen as 40P01 with two processes
starting beside running ones). So the schema `cdc` carries the script's digest as its comment, and
the script runs only when that differs, one process at a time (an advisory lock; the digest read
again once it is held).
"""

from __future__ import annotations

import hashlib
from typing import Any

from psycopg2 import sql

from cdc.resources import sql_file

SCRIPT = "warehouse_bootstrap.sql"
LOCK = 7_241_002  # advisory lock serialising the creation of cdc's tables


def marker() -> str:
    return "cdc bootstrap " + hashlib.sha256(sql_file(SCRIPT).encode()).hexdigest()[:16]


def ensure(cur: Any) -> bool:
    """Bring cdc's tables up to date in the caller's transaction; whether the script ran."""
    wanted = marker()
    if _current(cur) == wanted:
        return False
    cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK,))
    if _current(cur) == wanted:
        return False
    cur.execute(sql_file(SCRIPT))
    cur.execute(sql.SQL("COMMENT ON SCHEMA cdc IS {}").format(sql.Literal(wanted)))
    return True


def _current(cur: Any) -> str | None:
    cur.execute("SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = 'cdc'")
    row = cur.fetchone()
    return None if row is None else row[0]
