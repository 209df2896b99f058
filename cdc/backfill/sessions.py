"""Connections of `cdc backfill` and `cdc verify`: both ends print and parse values alike."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from cdc import pgerrors

# Both ends print and parse values the same way, whatever the servers' or roles' defaults.
SESSION = (
    "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'; "
    "SET lc_monetary = 'C'; SET extra_float_digits = 3; SET bytea_output = 'hex'"
)


@contextlib.contextmanager
def connected(url: str, database: pgerrors.Database, command: str, *, autocommit: bool = False) -> Iterator[Any]:
    conn = pgerrors.connect(url, database, command)
    try:
        conn.autocommit = autocommit
        with conn.cursor() as cur:
            cur.execute(SESSION)
        if not autocommit:
            conn.commit()
        yield conn
    finally:
        conn.close()
