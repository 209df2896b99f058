"""Run SQL against a test database."""

from __future__ import annotations

from typing import Any

import psycopg2
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
