"""The one place where PostgreSQL driver errors become cdc's errors."""

from __future__ import annotations

import psycopg2

from cdc.errors import TerminalError, TransientError

# SQLSTATE classes: 08 connection, 40 rollback (serialization failure, deadlock), 53 insufficient
# resources, 57 operator intervention (admin shutdown, cannot connect now), 58 system error.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
# A value or row the target cannot store: 21 cardinality, 22 data exception, 23 integrity
# constraint, 54 program limit (e.g. row too large for an index).
_ROW_CLASSES = ("21", "22", "23", "54")


def sqlstate(exc: BaseException) -> str:
    return getattr(exc, "pgcode", None) or ""


def is_row_level(exc: BaseException) -> bool:
    return isinstance(exc, psycopg2.Error) and sqlstate(exc)[:2] in _ROW_CLASSES


def describe(exc: BaseException) -> str:
    code = sqlstate(exc)
    text = (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()
    return f"{code + ': ' if code else ''}{text[0] if text else exc.__class__.__name__}"


def translate(exc: BaseException, what: str) -> Exception:
    """A driver error raised while doing `what`, as a TransientError or TerminalError."""
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) or sqlstate(exc)[:2] in _TRANSIENT_CLASSES:
        return TransientError(
            f"the warehouse failed while {what} ({describe(exc)}); will retry",
            "if it persists, check that the warehouse PostgreSQL is up and reachable (CDC_WAREHOUSE_URL)",
        )
    return TerminalError(
        f"the warehouse refused {what}: {describe(exc)}",
        "this is not retried; see the error above (and report it if it looks like a cdc bug)",
    )
