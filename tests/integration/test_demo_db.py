"""The demo shop against a real PostgreSQL: seeding, and the integrity the workload leaves behind.

Each test works in a scratch database of its own on the source server (created with the role of
`source_url`, which needs CREATEDB), so the stack's own source database is never touched.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import psycopg2
import psycopg2.extensions
import pytest
from psycopg2 import sql

from cdc.demo import TABLES, table_counts
from cdc.demo.seed import seed
from cdc.demo.workload import TARGET_MIX, run_workload
from cdc.errors import ConfigError

pytestmark = pytest.mark.stack

SMALL = {"customers": 40, "products": 15, "orders": 80}


def _quiet(_: str) -> None:
    pass


@pytest.fixture
def scratch_db(source_url: str) -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty databases on the source server; all dropped afterwards."""
    admin = psycopg2.connect(source_url, connect_timeout=10)
    admin.autocommit = True
    created: list[str] = []

    def create() -> str:
        name = f"demo_test_{uuid.uuid4().hex[:12]}"
        with admin.cursor() as cur:
            cur.execute("SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user")
            if cur.fetchone() != (True,):
                pytest.fail(
                    "the role of source_url may not CREATE DATABASE, which these tests need for scratch "
                    "databases: ALTER ROLE <role> CREATEDB",
                    pytrace=False,
                )
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        return psycopg2.extensions.make_dsn(source_url, dbname=name)

    yield create
    with admin.cursor() as cur:
        for name in created:
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
    admin.close()


def _query(url: str, query: str | sql.Composable) -> list[tuple[object, ...]]:
    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute(query)
            return cur.fetchall()
    finally:
        conn.close()


def _counts(url: str) -> dict[str, int]:
    conn = psycopg2.connect(url)
    try:
        return table_counts(conn)
    finally:
        conn.close()


def test_seed_creates_the_schema_and_reports_true_counts(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    counts = seed(url, **SMALL, say=_quiet)
    assert counts == _counts(url)
    assert set(counts) == set(TABLES)
    assert counts["customers"] == 40
    assert counts["products"] == counts["inventory"] == 15
    assert counts["orders"] == counts["payments"] == 80
    assert all(n > 0 for n in counts.values()), counts

    # the variety the schema promises
    (enum_labels,) = _query(url, "SELECT enum_range(NULL::shop.order_status)::text")[0]
    assert enum_labels == "{pending,paid,shipped,delivered,cancelled,refunded}"
    primary_keys = {
        table
        for (table,) in _query(
            url,
            "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'shop' AND i.indisprimary",
        )
    }
    assert primary_keys == set(TABLES) - {"page_views"}
    (key_columns,) = _query(
        url,
        "SELECT array_agg(a.attname::text ORDER BY array_position(i.indkey::int2[], a.attnum))"
        " FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)"
        " WHERE i.indrelid = 'shop.order_items'::regclass AND i.indisprimary",
    )[0]
    assert key_columns == ["order_id", "line_no"]
    # descriptions really live out of line, in the TOAST table
    ((toasted,),) = _query(
        url, "SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'shop.products'::regclass"
    )
    assert toasted
    # identities were moved past the seeded ids, so the workload's INSERTs cannot collide with them
    ((category_id,),) = _query(
        url, "INSERT INTO shop.product_categories (name, slug) VALUES ('Test', 'test') RETURNING category_id"
    )
    assert category_id == counts["product_categories"] + 1


def test_seed_twice_adds_nothing_and_the_data_is_deterministic(scratch_db: Callable[[], str]) -> None:
    first, second = scratch_db(), scratch_db()
    counts = seed(first, **SMALL, say=_quiet)
    lines: list[str] = []
    assert seed(first, **SMALL, say=lines.append) == counts
    assert any("seeding nothing" in line for line in lines)
    assert _counts(first) == counts

    seed(second, **SMALL, say=_quiet)
    for table in TABLES:
        # every column of every row
        fingerprint = sql.SQL("SELECT md5(string_agg(t::text, '|' ORDER BY t::text)) FROM {} t").format(
            sql.Identifier("shop", table)
        )
        assert _query(first, fingerprint) == _query(second, fingerprint), table


def test_schema_only_creates_empty_tables_and_a_later_seed_fills_them(scratch_db: Callable[[], str]) -> None:
    """`make demo` captures the shop before filling it, so that every seed row reaches Kafka as a
    change (page_views has no primary key: an incremental snapshot could not read it)."""
    url = scratch_db()
    assert seed(url, **SMALL, schema_only=True, say=_quiet) == dict.fromkeys(TABLES, 0)
    assert _counts(url) == dict.fromkeys(TABLES, 0)
    counts = seed(url, **SMALL, say=_quiet)
    assert counts["customers"] == SMALL["customers"] and counts["page_views"] > 0
    assert _counts(url) == counts


def test_workload_keeps_the_shop_consistent(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    before = seed(url, **SMALL, say=_quiet)
    lines: list[str] = []
    stats = run_workload(url, rate=400, duration=4, seed=7, say=lines.append, report_every=1)

    assert stats.transactions > 400
    assert 3.9 < stats.seconds < 6
    assert sum(1 for line in lines if "transactions" in line) >= 3  # progress reports and the summary
    rows = stats.inserts + stats.updates + stats.deletes
    shares = {"insert": stats.inserts / rows, "update": stats.updates / rows, "delete": stats.deletes / rows}
    for kind, target in TARGET_MIX.items():
        assert shares[kind] == pytest.approx(target, abs=0.03), shares
    # every committed insert and delete was counted, exactly
    after = _counts(url)
    assert sum(after.values()) - sum(before.values()) == stats.inserts - stats.deletes

    # foreign keys are enforced by PostgreSQL; these are the invariants it cannot check
    checks = {
        "orders without items": "SELECT count(*) FROM shop.orders o"
        " WHERE NOT EXISTS (SELECT 1 FROM shop.order_items i WHERE i.order_id = o.order_id)",
        "payments out of step with their order": "SELECT count(*) FROM shop.orders o"
        " JOIN shop.payments p USING (order_id) WHERE p.status <> CASE o.status"
        " WHEN 'pending' THEN 'authorized' WHEN 'cancelled' THEN 'voided' WHEN 'refunded' THEN 'refunded'"
        " ELSE 'captured' END",
        "shipped orders without a shipment": "SELECT count(*) FROM shop.orders o"
        " WHERE o.status IN ('shipped', 'delivered', 'refunded')"
        " AND NOT EXISTS (SELECT 1 FROM shop.shipments s WHERE s.order_id = o.order_id)",
        "delivered orders still in transit": "SELECT count(*) FROM shop.orders o"
        " JOIN shop.shipments s USING (order_id) WHERE o.status = 'delivered' AND s.delivered_at IS NULL",
        "orders whose total does not add up": "SELECT count(*) FROM shop.orders"
        " WHERE total <> subtotal + tax + shipping_fee",
        "negative stock": "SELECT count(*) FROM shop.inventory WHERE quantity_on_hand < 0",
    }
    for problem, query in checks.items():
        assert _query(url, query) == [(0,)], problem
    # the workload moved orders along and purged cancelled ones
    ((new_orders, moved),) = _query(
        url,
        "SELECT count(*) FILTER (WHERE placed_at > now() - interval '1 hour'),"
        " count(*) FILTER (WHERE placed_at > now() - interval '1 hour' AND status <> 'pending')"
        " FROM shop.orders",
    )
    assert isinstance(new_orders, int) and isinstance(moved, int)
    assert new_orders > 0 and moved > 0
    assert after["page_views"] != before["page_views"]


def test_workload_holds_its_rate_and_stops_on_request(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    seed(url, **SMALL, say=_quiet)
    stats = run_workload(url, rate=40, duration=3, seed=1, say=_quiet, report_every=0)
    assert 0.85 * 120 <= stats.transactions <= 121

    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    started = time.monotonic()
    stats = run_workload(url, rate=40, duration=None, stop=stop, say=_quiet)
    assert time.monotonic() - started < 2.5
    assert stats.transactions > 0


def test_workload_without_the_schema_says_to_seed_first(scratch_db: Callable[[], str]) -> None:
    url = scratch_db()
    with pytest.raises(ConfigError) as caught:
        run_workload(url, duration=1, say=_quiet)
    assert caught.value.fix is not None and "cdc demo seed" in caught.value.fix


def test_page_view_deletes_in_a_publication_need_replica_identity(scratch_db: Callable[[], str]) -> None:
    """The key-less table is what `cdc connector apply` must fix; without that the workload says so."""
    url = scratch_db()
    seed(url, **SMALL, say=_quiet)
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("CREATE PUBLICATION demo_test_pub FOR TABLE shop.page_views")
        with pytest.raises(ConfigError) as caught:
            run_workload(url, rate=500, duration=3, seed=3, say=_quiet)
        assert "REPLICA IDENTITY" in str(caught.value)

        with conn.cursor() as cur:
            cur.execute("ALTER TABLE shop.page_views REPLICA IDENTITY FULL")
        stats = run_workload(url, rate=500, duration=2, seed=3, say=_quiet)
        assert stats.deletes > 0
    finally:
        conn.close()
