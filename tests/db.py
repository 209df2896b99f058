"""Run SQL against a test database."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
import psycopg2.errors
from psycopg2 import sql


def execute(url: str, statement: str | sql.Composable) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def query(url: str, statement: str | sql.Composable, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """All rows of one query (or of a statement's RETURNING, committed), on a connection of its own."""
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall()
    finally:
        conn.close()


def drop_database(url: str, name: str) -> None:
    """DROP DATABASE ... WITH (FORCE), as the role of `url`. An autovacuum worker that has just
    started in the new database has no role of ours, so FORCE may not end it: PostgreSQL refuses
    the drop until the worker is gone, which is a moment later."""
    statement = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    for attempt in range(20):
        try:
            execute(url, statement)
        except psycopg2.errors.InsufficientPrivilege:
            if attempt == 19:
                raise
            time.sleep(0.5)
        else:
            return
