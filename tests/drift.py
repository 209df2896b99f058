"""Helpers of the schema drift tests: a warehouse table's columns, and `cdc schema` as users run it."""

from __future__ import annotations

import subprocess

from cdc.resources import cdc_command
from cdc.settings import Settings
from tests.db import query
from tests.processes import wait_until
from tests.syncing import Lane, sync_env, target_of


def warehouse_columns(url: str, schema: str, table: str) -> dict[str, str]:
    """A warehouse table's columns and their types, but cdc's own (_cdc_*)."""
    rows = query(
        url,
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) FROM pg_attribute a "
        "JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND a.attnum > 0 AND NOT a.attisdropped "
        "AND a.attname NOT LIKE '\\_cdc\\_%%'",
        (schema, table),
    )
    return {name: type_ for name, type_ in rows}


def cdc_schema(stack: Settings, lane: Lane, *args: str) -> str:
    """`cdc schema ARGS` as users run it; it must succeed. Its output."""
    done = subprocess.run(
        [*cdc_command(), "schema", *args],
        env=sync_env(stack, lane),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def replicated(stack: Settings, lane: Lane, tables: tuple[str, ...], timeout: float = 90) -> dict[str, tuple[str, str]]:
    """Once `cdc sync` has mapped each of the lane's tables to a warehouse table: those tables."""

    def mapped(table: str) -> bool:
        rows = query(
            stack.require_warehouse_url(),
            "SELECT 1 FROM cdc.table_map WHERE source_schema = %s AND source_table = %s",
            (lane.source_schema, table),
        )
        return bool(rows)

    for table in tables:
        wait_until(lambda table=table: mapped(table), timeout, f"{table} in the warehouse")
    return {table: target_of(stack, lane, table) for table in tables}
