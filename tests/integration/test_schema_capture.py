"""DDL at the source is captured by sql/schema_capture.sql's event triggers (real PostgreSQL 15): one
cdc.schema_ddl row per command and changed table, with the exact shape before and after; renames
recoverable (a column keeps its attnum, a table its oid); nothing that is not a user table's shape
recorded; a failing trigger never fails the user's DDL; install needs a superuser and says so.

DDL runs as the stack's ordinary role, like an application's migration: the trigger function's own
role writes the audit. Installing needs the stack's superuser (over its unix socket)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql
from sqlalchemy.engine import make_url

from cdc.errors import ConfigError
from cdc.schema import install
from cdc.settings import Settings
from tests.db import drop_database, execute, query
from tests.fixtures.record_drift import superuser_source_url

pytestmark = pytest.mark.stack

AUDIT = (
    "command_tag, object_type, object_identity, table_oid, schema_before, table_before, schema_name, "
    "table_name, statement, columns_before, columns_after, key_before, key_after"
)
ORDERS = "(id int PRIMARY KEY, name varchar(20), qty int NOT NULL, note text DEFAULT 'x')"


def col(attnum: int, name: str, type_: str, *, not_null: bool = False, default: str | None = None) -> dict[str, Any]:
    return {"attnum": attnum, "name": name, "type": type_, "not_null": not_null, "default": default}


ORDERS_COLUMNS = [
    col(1, "id", "integer", not_null=True),
    col(2, "name", "character varying(20)"),
    col(3, "qty", "integer", not_null=True),
    col(4, "note", "text", default="'x'::text"),
]


@dataclass
class Source:
    """One autocommit connection to the source, as the stack's ordinary role, and a scratch schema."""

    conn: psycopg2.extensions.connection
    schema: str

    def run(self, statement: str) -> list[dict[str, Any]]:
        """Run one DDL statement; the audit rows it wrote about tables of the scratch schema."""
        with self.conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(id), 0) FROM cdc.schema_ddl")
            (before,) = cur.fetchone() or (0,)
            cur.execute(statement)
            cur.execute(
                f"SELECT {AUDIT} FROM cdc.schema_ddl WHERE id > %s AND (schema_name LIKE %s OR schema_before LIKE %s) "
                "ORDER BY id",
                (before, f"{self.schema}%", f"{self.schema}%"),
            )
            names = [d.name for d in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def one(self, statement: str) -> dict[str, Any]:
        rows = self.run(statement)
        assert len(rows) == 1, rows
        return rows[0]

    def orders(self, name: str) -> int:
        """A fresh table of the scratch schema shaped like ORDERS; its oid."""
        self.one(f"CREATE TABLE {self.schema}.{name} {ORDERS}")
        with self.conn.cursor() as cur:
            cur.execute("SELECT %s::regclass::oid", (f"{self.schema}.{name}",))
            (oid,) = cur.fetchone() or (None,)
        return int(oid)

    def altered(self, table: str, oid: int, statement: str, columns_after: list[dict[str, Any]]) -> dict[str, Any]:
        """The row of an ALTER TABLE on an ORDERS table that keeps its name and key (asserted)."""
        row = self.one(statement)
        assert row == {
            "command_tag": "ALTER TABLE",
            "object_type": "table",
            "object_identity": f"{self.schema}.{table}",
            "table_oid": oid,
            "schema_before": self.schema,
            "table_before": table,
            "schema_name": self.schema,
            "table_name": table,
            "statement": statement,
            "columns_before": ORDERS_COLUMNS,
            "columns_after": columns_after,
            "key_before": ["id"],
            "key_after": ["id"],
        }
        return row


@pytest.fixture(scope="module")
def superuser_url(stack: Settings) -> str:
    return superuser_source_url(stack)


@pytest.fixture(scope="module")
def source(stack: Settings, superuser_url: str) -> Iterator[Source]:
    install.install(superuser_url)  # idempotent: the stack's source keeps it for everyone
    conn = psycopg2.connect(stack.require_source_url())
    conn.autocommit = True
    schema = f"ddl_{uuid.uuid4().hex[:8]}"
    with conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
    yield Source(conn, schema)
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cur.execute(f"DROP SCHEMA IF EXISTS {schema}_moved CASCADE")
    conn.close()


def test_create_table(source: Source) -> None:
    statement = f"CREATE TABLE {source.schema}.created {ORDERS}"
    row = source.one(statement)
    assert row.pop("table_oid") > 0
    assert row == {
        "command_tag": "CREATE TABLE",
        "object_type": "table",
        "object_identity": f"{source.schema}.created",
        "schema_before": None,
        "table_before": None,
        "schema_name": source.schema,
        "table_name": "created",
        "statement": statement,
        "columns_before": None,
        "columns_after": ORDERS_COLUMNS,
        "key_before": None,
        "key_after": ["id"],
    }


def test_create_table_as(source: Source) -> None:
    row = source.one(f"CREATE TABLE {source.schema}.copied AS SELECT 1::bigint AS n")
    assert (row["command_tag"], row["columns_after"], row["key_after"]) == (
        "CREATE TABLE AS",
        [col(1, "n", "bigint")],
        [],
    )


def test_add_column_with_and_without_default(source: Source) -> None:
    oid = source.orders("added")
    source.altered(
        "added",
        oid,
        f"ALTER TABLE {source.schema}.added ADD COLUMN status text NOT NULL DEFAULT 'new'",
        [*ORDERS_COLUMNS, col(5, "status", "text", not_null=True, default="'new'::text")],
    )
    row = source.one(f"ALTER TABLE {source.schema}.added ADD COLUMN extra numeric(8,2)")
    assert row["columns_after"][-1] == col(6, "extra", "numeric(8,2)")
    assert row["columns_before"] == row["columns_after"][:-1]


def test_drop_column(source: Source) -> None:
    oid = source.orders("dropped_col")
    source.altered(
        "dropped_col",
        oid,
        f"ALTER TABLE {source.schema}.dropped_col DROP COLUMN name",
        [ORDERS_COLUMNS[0], *ORDERS_COLUMNS[2:]],
    )


def test_rename_column_keeps_the_attnum(source: Source) -> None:
    oid = source.orders("renamed_col")
    statement = f"ALTER TABLE {source.schema}.renamed_col RENAME COLUMN qty TO quantity"
    row = source.one(statement)
    # PostgreSQL reports the column, under its new name, not the table.
    assert (row["object_type"], row["object_identity"]) == ("table column", f"{source.schema}.renamed_col.quantity")
    renamed = col(3, "quantity", "integer", not_null=True)
    assert row["columns_after"] == [*ORDERS_COLUMNS[:2], renamed, ORDERS_COLUMNS[3]]
    before = {c["attnum"]: c["name"] for c in row["columns_before"]}
    after = {c["attnum"]: c["name"] for c in row["columns_after"]}
    assert (before[3], after[3]) == ("qty", "quantity")
    assert (row["table_oid"], row["table_before"], row["table_name"]) == (oid, "renamed_col", "renamed_col")


def test_alter_column_type(source: Source) -> None:
    oid = source.orders("retyped")
    source.altered(
        "retyped",
        oid,
        f"ALTER TABLE {source.schema}.retyped ALTER COLUMN qty TYPE bigint",
        [*ORDERS_COLUMNS[:2], col(3, "qty", "bigint", not_null=True), ORDERS_COLUMNS[3]],
    )
    row = source.one(f"ALTER TABLE {source.schema}.retyped ALTER COLUMN name TYPE integer USING length(name)")
    assert (row["columns_before"][1]["type"], row["columns_after"][1]["type"]) == ("character varying(20)", "integer")


def test_set_and_drop_not_null(source: Source) -> None:
    oid = source.orders("nullness")
    source.altered(
        "nullness",
        oid,
        f"ALTER TABLE {source.schema}.nullness ALTER COLUMN name SET NOT NULL",
        [ORDERS_COLUMNS[0], col(2, "name", "character varying(20)", not_null=True), *ORDERS_COLUMNS[2:]],
    )
    row = source.one(f"ALTER TABLE {source.schema}.nullness ALTER COLUMN name DROP NOT NULL")
    assert row["columns_after"] == ORDERS_COLUMNS


def test_set_and_drop_default(source: Source) -> None:
    oid = source.orders("defaults")
    source.altered(
        "defaults",
        oid,
        f"ALTER TABLE {source.schema}.defaults ALTER COLUMN qty SET DEFAULT 1",
        [*ORDERS_COLUMNS[:2], col(3, "qty", "integer", not_null=True, default="1"), ORDERS_COLUMNS[3]],
    )
    row = source.one(f"ALTER TABLE {source.schema}.defaults ALTER COLUMN note DROP DEFAULT")
    assert row["columns_after"][3] == col(4, "note", "text")


def test_primary_key_dropped_added_and_changed(source: Source) -> None:
    source.orders("keyed")
    table = f"{source.schema}.keyed"
    dropped = source.one(f"ALTER TABLE {table} DROP CONSTRAINT keyed_pkey")
    # The key's NOT NULL stays: only the key changes.
    assert (dropped["key_before"], dropped["key_after"]) == (["id"], [])
    assert dropped["columns_after"] == dropped["columns_before"]
    added = source.one(f"ALTER TABLE {table} ADD CONSTRAINT keyed_pkey PRIMARY KEY (qty, id)")
    assert (added["key_before"], added["key_after"]) == ([], ["qty", "id"])  # in key order, not attnum order
    changed = source.one(f"ALTER TABLE {table} DROP CONSTRAINT keyed_pkey, ADD PRIMARY KEY (id, name)")
    assert (changed["key_before"], changed["key_after"]) == (["qty", "id"], ["id", "name"])
    assert changed["columns_after"][1] == col(2, "name", "character varying(20)", not_null=True)


def test_rename_table_keeps_the_oid(source: Source) -> None:
    oid = source.orders("old_name")
    statement = f"ALTER TABLE {source.schema}.old_name RENAME TO new_name"
    row = source.one(statement)
    assert row == {
        "command_tag": "ALTER TABLE",
        "object_type": "table",
        "object_identity": f"{source.schema}.new_name",
        "table_oid": oid,
        "schema_before": source.schema,
        "table_before": "old_name",
        "schema_name": source.schema,
        "table_name": "new_name",
        "statement": statement,
        "columns_before": ORDERS_COLUMNS,
        "columns_after": ORDERS_COLUMNS,
        "key_before": ["id"],
        "key_after": ["id"],
    }


def test_set_schema(source: Source) -> None:
    oid = source.orders("moving")
    source.run(f"CREATE SCHEMA {source.schema}_moved")
    row = source.one(f"ALTER TABLE {source.schema}.moving SET SCHEMA {source.schema}_moved")
    assert (row["command_tag"], row["object_type"], row["object_identity"]) == (
        "ALTER TABLE",
        "table",
        f"{source.schema}_moved.moving",
    )
    moved = (row["table_oid"], row["schema_before"], row["schema_name"])
    assert moved == (oid, source.schema, f"{source.schema}_moved")
    assert row["columns_after"] == row["columns_before"] == ORDERS_COLUMNS


def test_drop_table(source: Source) -> None:
    oid = source.orders("doomed")
    statement = f"DROP TABLE {source.schema}.doomed"
    assert source.one(statement) == {
        "command_tag": "DROP TABLE",
        "object_type": "table",
        "object_identity": f"{source.schema}.doomed",
        "table_oid": oid,
        "schema_before": source.schema,
        "table_before": "doomed",
        "schema_name": source.schema,
        "table_name": "doomed",
        "statement": statement,
        "columns_before": ORDERS_COLUMNS,
        "columns_after": None,
        "key_before": ["id"],
        "key_after": None,
    }


def test_several_subcommands_make_one_row(source: Source) -> None:
    oid = source.orders("multi")
    source.altered(
        "multi",
        oid,
        f"ALTER TABLE {source.schema}.multi ADD COLUMN extra int, DROP COLUMN note, ALTER COLUMN qty DROP NOT NULL",
        [*ORDERS_COLUMNS[:2], col(3, "qty", "integer"), col(5, "extra", "integer")],
    )


def test_a_partition_changed_through_its_parent_is_recorded(source: Source) -> None:
    source.one(f"CREATE TABLE {source.schema}.parted (id int, k int) PARTITION BY RANGE (k)")
    source.one(f"CREATE TABLE {source.schema}.parted_1 PARTITION OF {source.schema}.parted FOR VALUES FROM (0) TO (9)")
    rows = source.run(f"ALTER TABLE {source.schema}.parted ADD COLUMN z int")
    assert [(r["table_name"], r["object_identity"], r["columns_after"][-1]) for r in rows] == [
        ("parted", f"{source.schema}.parted", col(3, "z", "integer")),
        ("parted_1", f"{source.schema}.parted_1", col(3, "z", "integer")),
    ]


def test_what_changes_no_table_shape_is_not_recorded(source: Source) -> None:
    source.orders("quiet")
    table = f"{source.schema}.quiet"
    for statement in (
        f"CREATE INDEX ON {table} (name)",
        f"CREATE VIEW {source.schema}.quiet_view AS SELECT id FROM {table}",
        f"ALTER VIEW {source.schema}.quiet_view RENAME TO quiet_view2",
        f"CREATE SEQUENCE {source.schema}.quiet_seq",
        f"ALTER TABLE {table} ADD CONSTRAINT positive CHECK (qty > 0)",
        f"ALTER TABLE {table} REPLICA IDENTITY FULL",
        f"COMMENT ON TABLE {table} IS 'quiet'",
        "CREATE TEMP TABLE quiet_temp (a int)",
        "ALTER TABLE quiet_temp ADD COLUMN b int",
        "DROP TABLE quiet_temp",
    ):
        assert source.run(statement) == [], statement


@pytest.fixture
def scratch_db(stack: Settings, superuser_url: str) -> Iterator[tuple[str, str]]:
    """A database of its own (the superuser's URL, the stack role's URL), for what would disturb others."""
    name = f"cdc_ddl_{uuid.uuid4().hex[:8]}"
    owner = make_url(stack.require_source_url()).username
    execute(superuser_url, f"CREATE DATABASE {name} OWNER {owner}")
    su = make_url(superuser_url).set(database=name).render_as_string(hide_password=False)
    mine = make_url(stack.require_source_url()).set(database=name).render_as_string(hide_password=False)
    execute(mine, "CREATE SCHEMA cdc")  # as `cdc connector apply` makes it: the connector role's
    yield su, mine
    drop_database(superuser_url, name)


def test_a_failing_trigger_does_not_fail_the_ddl(scratch_db: tuple[str, str]) -> None:
    su, mine = scratch_db
    install.install(su)
    # Make the trigger's write of this one table's snapshot fail.
    execute(su, "ALTER TABLE cdc.schema_snapshot ADD CONSTRAINT no_victim CHECK (table_name <> 'victim')")
    conn = psycopg2.connect(mine)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE public.victim (id int PRIMARY KEY)")
    finally:
        conn.close()
    assert any("WARNING:  cdc schema capture:" in n and "no_victim" in n for n in conn.notices), conn.notices
    assert query(mine, "SELECT to_regclass('public.victim') IS NOT NULL") == [(True,)]
    # The failed capture wrote nothing at all, not half of it.
    assert query(mine, "SELECT count(*) FROM cdc.schema_ddl") == [(0,)]


def test_install_uninstall_installed(scratch_db: tuple[str, str]) -> None:
    su, mine = scratch_db
    execute(mine, "CREATE TABLE public.existing (id int PRIMARY KEY, v text)")
    assert not install.installed(su)
    install.install(su)
    install.install(su)  # again: idempotent
    assert install.installed(su)
    ((columns, key),) = query(mine, "SELECT columns, key FROM cdc.schema_snapshot")  # seeded
    assert (columns, key) == ([col(1, "id", "integer", not_null=True), col(2, "v", "text")], ["id"])
    install.uninstall(su)
    assert not install.installed(mine)
    execute(mine, "ALTER TABLE public.existing ADD COLUMN w int")
    assert query(mine, "SELECT count(*) FROM cdc.schema_ddl") == [(0,)]
    install.install(su)  # re-seeds: the next change's "before" is the table as it is now
    execute(mine, "ALTER TABLE public.existing DROP COLUMN v")
    ((before,),) = query(mine, "SELECT columns_before FROM cdc.schema_ddl")
    assert [c["name"] for c in before] == ["id", "v", "w"]


def test_install_without_a_superuser_says_how(stack: Settings) -> None:
    with pytest.raises(ConfigError) as caught:
        install.install(stack.require_source_url())
    problem, fix = caught.value.problem, caught.value.fix or ""
    assert "superuser" in problem and "event triggers" in problem
    assert "psql -d <source database> -f sql/schema_capture.sql" in fix
    assert "superuser" in fix


def test_installed_accepts_a_connection(stack: Settings, source: Source) -> None:
    assert install.installed(source.conn)
    conn = psycopg2.connect(stack.require_source_url())
    try:
        assert install.installed(conn)
        assert conn.info.transaction_status == psycopg2.extensions.TRANSACTION_STATUS_IDLE
    finally:
        conn.close()


def test_identifiers_are_recorded_unquoted(source: Source) -> None:
    schema = sql.Identifier(source.schema).as_string(source.conn)
    row = source.one(f'CREATE TABLE {schema}."Mixed Case" ("Odd ""col""" int)')
    assert (row["table_name"], row["columns_after"][0]["name"]) == ("Mixed Case", 'Odd "col"')
    assert row["object_identity"] == f'{source.schema}."Mixed Case"'
