"""The consistent snapshot a backfill reads under (issue 9): what it sees, where it stands in the
WAL, and that its slot goes away with it."""

from __future__ import annotations

import psycopg2
import pytest
from sqlalchemy.engine import make_url

from cdc.backfill.snapshot import exported_snapshot, lsn_of, read_in
from cdc.errors import ConfigError
from cdc.settings import Settings
from cdc.stack import control
from tests.db import execute, query
from tests.syncing import Lane

pytestmark = pytest.mark.stack


def _commit(url: str, statement: str) -> tuple[int, int]:
    """Run a statement in a transaction of its own: (its transaction id, the WAL position after its commit)."""
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            cur.execute("SELECT pg_current_xact_id()::text::bigint")
            row = cur.fetchone()
            assert row is not None
        conn.commit()
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn()::text")
            lsn = cur.fetchone()
            assert lsn is not None
        return int(row[0]), lsn_of(lsn[0])
    finally:
        conn.close()


def test_readers_of_an_exported_snapshot_see_what_committed_before_its_point_and_nothing_after(
    stack: Settings, lane: Lane
) -> None:
    src = stack.require_source_url()
    t = f'"{lane.source_schema}".t'
    execute(src, f'CREATE SCHEMA "{lane.source_schema}"; CREATE TABLE {t} (id integer PRIMARY KEY)')
    before, committed = _commit(src, f"INSERT INTO {t} VALUES (1), (2)")
    with exported_snapshot(src) as snapshot:
        after, _ = _commit(src, f"INSERT INTO {t} VALUES (3)")
        readers = [psycopg2.connect(src) for _ in range(2)]
        try:
            seen = [read_in(reader, snapshot) for reader in readers]
            rows = [query_in(reader, f"SELECT id FROM {t} ORDER BY id") for reader in readers]
        finally:
            for reader in readers:
                reader.close()
        slots = query(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'cdc\\_backfill\\_%%'")
    assert rows == [[1, 2], [1, 2]]  # both readers, one snapshot: row 3 committed after it
    assert seen[0] == seen[1]
    assert seen[0].sees(before) and not seen[0].sees(after)
    assert committed <= snapshot.lsn  # the WAL position just after row 1's commit is not past the point
    assert slots == [(1,)]
    # The temporary slot went with its connection: no WAL is held back for it.
    assert query(src, "SELECT count(*) FROM pg_replication_slots WHERE slot_name LIKE 'cdc\\_backfill\\_%%'") == [(0,)]


def query_in(conn: psycopg2.extensions.connection, statement: str) -> list[object]:
    with conn.cursor() as cur:
        cur.execute(statement)
        return [row[0] for row in cur.fetchall()]


def test_a_source_role_without_replication_is_told_what_to_grant(stack: Settings, lane: Lane) -> None:
    src, admin = stack.require_source_url(), control.source_superuser_url(stack)
    role = f"norep_{lane.group[-8:]}"
    execute(admin, f"CREATE ROLE {role} LOGIN PASSWORD 'pw' NOREPLICATION")
    try:
        url = make_url(src).set(username=role, password="pw").render_as_string(hide_password=False)
        with pytest.raises(ConfigError) as raised, exported_snapshot(url):
            pass
        assert raised.value.problem == (
            "cdc backfill needs a consistent snapshot of the source, taken through a temporary replication slot, "
            "and the source role may not create one."
        )
        assert raised.value.fix == "give the role REPLICATION (ALTER ROLE ... REPLICATION), as Debezium's role has"
    finally:
        execute(admin, f"DROP ROLE {role}")
