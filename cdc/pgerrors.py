"""The one place where PostgreSQL driver errors become cdc's errors, for the source and the warehouse.

Terminal or transient is decided by the error itself. With a SQLSTATE, by its class. A failed
connection has none (libpq keeps the server's SQLSTATE to itself while connecting), so the
server's FATAL messages that no retry can change are recognised by their text: a wrong password,
an unknown role or database, a pg_hba.conf that lets nobody in, a host name that does not resolve.
Everything else about connecting (refused, reset, timed out, starting up, too many clients) is
transient.
"""

from __future__ import annotations

import re
from typing import Literal

import psycopg2

from cdc.errors import AccessError, CdcError, ConfigError, TerminalError, TransientError

Database = Literal["source", "warehouse"]

# SQLSTATE classes: 08 connection, 40 rollback (serialization failure, deadlock), 53 insufficient
# resources, 57 operator intervention (admin shutdown, cannot connect now), 58 system error.
_TRANSIENT_CLASSES = ("08", "40", "53", "57", "58")
# A value or row the target cannot store: 21 cardinality, 22 data exception, 23 integrity
# constraint, 54 program limit (e.g. row too large for an index).
_ROW_CLASSES = ("21", "22", "23", "54")

# (pattern in the connection error's text, SQLSTATE the server sent, what to change)
_REFUSED_CONNECTIONS: tuple[tuple[re.Pattern[str], str, str], ...] = tuple(
    (re.compile(pattern), code, fix)
    for pattern, code, fix in (
        (r"password authentication failed for user", "28P01", "correct the password in {setting}"),
        (r"no password supplied", "28P01", "put the password in {setting} (postgresql://user:password@...)"),
        (r'role "[^"]*" does not exist', "28000", "correct the user name in {setting}, or create that role"),
        (r"is not permitted to log in", "28000", "ALTER ROLE ... LOGIN, or use another role in {setting}"),
        (
            r"no pg_hba\.conf entry",
            "28000",
            "add a line for this host, user and database to the server's pg_hba.conf, or check {setting}",
        ),
        (
            r'database "[^"]*" does not exist',
            "3D000",
            "correct the database name in {setting}, or create it (CREATE DATABASE ...)",
        ),
        (
            r"permission denied for database",
            "42501",
            "GRANT CONNECT ON DATABASE ... TO the role of {setting}",
        ),
        (
            r"could not translate host name(?!.*Temporary failure)",
            "",
            "correct the host name in {setting}",
        ),
        (
            r"server does not support SSL",
            "08P01",
            "set sslmode in {setting} (?sslmode=require or disable) to what the server accepts",
        ),
    )
)
# SQLSTATE (or its class) of a statement's error -> (problem, fix): the role, not the data, is wrong.
_REFUSED_STATEMENTS = {
    "28": ("the {database} refused {what}: {error}", "check the user and password in {setting}"),
    "3D000": ("the {database} refused {what}: {error}", "check the database name in {setting}"),
    "42501": (
        "the {database}'s role may not do this, while {what}: {error}",
        "grant the privilege named above to the role of {setting} (README, When something is wrong)",
    ),
    "25006": ("the {database} is read-only, while {what}: {error}", "point {setting} at the primary, not a standby"),
}
_BAD_DSN = re.compile(r"^invalid (?:dsn|connection option|URI|integer value|port number|sslmode value)")


def sqlstate(exc: BaseException) -> str:
    return getattr(exc, "pgcode", None) or ""


def is_row_level(exc: BaseException) -> bool:
    return isinstance(exc, psycopg2.Error) and sqlstate(exc)[:2] in _ROW_CLASSES


def describe(exc: BaseException) -> str:
    """The error's first line, with its SQLSTATE when it has one."""
    code = sqlstate(exc)
    text = (getattr(exc, "pgerror", None) or str(exc)).strip().splitlines()
    return f"{code + ': ' if code else ''}{text[0] if text else exc.__class__.__name__}"


def _connection_message(exc: BaseException) -> str:
    """libpq's text, without its 'connection to server at "h", port p failed: FATAL:' lead."""
    text = " ".join(str(exc).split())
    return re.sub(r"^.*?failed: (?:FATAL: )?", "", text)


def translate(exc: BaseException, what: str, database: Database) -> CdcError:
    """A driver error raised while doing `what` against the source or the warehouse."""
    setting = f"CDC_{database.upper()}_URL"
    code = sqlstate(exc)
    if not code and _BAD_DSN.search(str(exc)):
        return ConfigError(f"{setting} is not a valid connection URL: {_connection_message(exc)}", f"correct {setting}")
    if not code and isinstance(exc, psycopg2.OperationalError):
        message = _connection_message(exc)
        for pattern, refused_code, fix in _REFUSED_CONNECTIONS:
            if pattern.search(message):
                where = f" ({refused_code})" if refused_code else ""
                cls = AccessError if refused_code[:2] in ("28", "3D", "42") else ConfigError
                return cls(f"cannot connect to the {database}{where}: {message}", fix.format(setting=setting))
    refusal = _REFUSED_STATEMENTS.get(code) or _REFUSED_STATEMENTS.get(code[:2])
    if refusal is not None:
        problem, fix = refusal
        return AccessError(
            problem.format(database=database, what=what, error=describe(exc)), fix.format(setting=setting)
        )
    if isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError) or code[:2] in _TRANSIENT_CLASSES:
        return TransientError(
            f"the {database} failed while {what} ({describe(exc)})",
            f"check that the {database} PostgreSQL is up and reachable at {setting}",
        )
    return TerminalError(
        f"the {database} refused {what}: {describe(exc)}",
        "this is not retried; see the error above (and report it if it looks like a cdc bug)",
    )


def connect(url: str, database: Database, application_name: str = "cdc") -> psycopg2.extensions.connection:
    """A psycopg2 connection, or the CdcError that says why there is none."""
    try:
        return psycopg2.connect(url, connect_timeout=10, application_name=application_name)
    except psycopg2.Error as exc:
        raise translate(exc, "connecting", database) from exc
