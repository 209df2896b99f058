"""The demo shop against a real PostgreSQL: seeding, and the integrity the workload leaves behind.

Each test works in a scratch database of its own on the source server (created with the role of
`source_url`, which needs CREATEDB), so the stack's own source database is never touched.
"""

from __future__ import annotations

import re
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
from cdc.demo.workload import TARGET_MIX, WorkloadStats, run_workload
from cdc.errors import ConfigError
from tests.db import drop_database

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
    admin.close()
    for name in created:
        drop_database(source_url, name)


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


# "<seconds>s, <n> transactions, <rates>; rows: <i> inserted, <u> updated, <d> deleted": the
# workload's progress reports and, after "workload done: ", its summary.
_REPORT = re.compile(r"(\d+) transactions, [^;]*; rows: (\d+) inserted, (\d+) updated, (\d+) deleted$")


def _reported(line: str) -> tuple[int, int, int, int] | None:
    """(transactions, inserted, updated, deleted) of a progress report or summary line."""
    found = _REPORT.search(line)
    return None if found is None else (int(found[1]), int(found[2]), int(found[3]), int(found[4]))


def _as_reported(stats: WorkloadStats) -> tuple[int, int, int, int]:
    return stats.transactions, stats.inserts, stats.updates, stats.deletes


def _row_changes_counted_by_postgres(url: str, expected: dict[str, int]) -> dict[str, int]:
    """The rows PostgreSQL counted as inserted, updated and deleted in schema shop. A session sends
    its counts when it ends, a moment after the client closed it: wait (up to 30 s) for them."""
    deadline = time.monotonic() + 30
    while True:
        (row,) = _query(
            url,
            "SELECT sum(n_tup_ins)::int, sum(n_tup_upd)::int, sum(n_tup_del)::int"
            " FROM pg_stat_user_tables WHERE schemaname = 'shop'",
        )
        counted = {key: int(str(value)) for key, value in zip(("inserted", "updated", "deleted"), row, strict=True)}
        if counted == expected or time.monotonic() > deadline:
            return counted
        time.sleep(0.2)


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
    stop = threading.Event()

    def say(line: str) -> None:
        """Keeps the lines, and asks the workload to stop once a report counts 500 transactions:
        a fixed amount of work however fast this machine is today."""
        lines.append(line)
        if not line.startswith("workload done") and (report := _reported(line)) and report[0] >= 500:
            stop.set()

    # The duration only keeps a workload that ignores stop from running forever.
    stats = run_workload(url, rate=400, duration=120, stop=stop, seed=7, say=say, report_every=0.2)

    reports = [r for line in lines[:-1] if (r := _reported(line))]
    assert reports and reports[-1][0] >= 500 and all(r[0] < 500 for r in reports[:-1])
    # Stopped when asked: at most the one transaction already due ran after the report that asked.
    assert reports[-1][0] <= stats.transactions <= reports[-1][0] + 1
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)
    # The summary says what the stats say.
    assert lines[-1].startswith("workload done: ") and _reported(lines[-1]) == _as_reported(stats)
    rows = stats.inserts + stats.updates + stats.deletes
    shares = {"insert": stats.inserts / rows, "update": stats.updates / rows, "delete": stats.deletes / rows}
    for kind, target in TARGET_MIX.items():
        assert shares[kind] == pytest.approx(target, abs=0.03), shares
    # Every row change it counts is one PostgreSQL counted (the seed's COPY being the only other
    # inserts), and the rows it inserted and did not delete again are there.
    expected = {"inserted": sum(before.values()) + stats.inserts, "updated": stats.updates, "deleted": stats.deletes}
    assert _row_changes_counted_by_postgres(url, expected) == expected
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


def test_workload_runs_its_duration_never_ahead_of_its_rate_and_stops_when_told(
    scratch_db: Callable[[], str],
) -> None:
    url = scratch_db()
    before = seed(url, **SMALL, say=_quiet)
    timed = run_workload(url, rate=40, duration=3, seed=1, say=_quiet, report_every=0)
    # It ran its whole duration, and never ahead of its rate: transaction n is due n / 40 s after
    # the start, so 3 s hold at most 121. (How close it comes to 120 is a benchmark's business.)
    assert timed.seconds >= 3
    assert 0 < timed.transactions <= 3 * 40 + 1

    # Told to stop from another thread, as a program embedding the workload would, once it has
    # committed something.
    middle = sum(_counts(url).values())
    stop = threading.Event()
    result: list[WorkloadStats] = []
    worker = threading.Thread(
        target=lambda: result.append(run_workload(url, rate=40, duration=None, stop=stop, seed=2, say=_quiet)),
        daemon=True,
    )
    worker.start()
    give_up = time.monotonic() + 120
    while sum(_counts(url).values()) == middle and worker.is_alive() and time.monotonic() < give_up:
        time.sleep(0.05)
    stop.set()
    worker.join(timeout=120)  # not a speed limit: without the stop it would never return
    assert not worker.is_alive(), "the workload did not stop when told to"
    (stopped,) = result
    assert stopped.transactions > 0
    # What both runs say they committed is in the database, nothing more and nothing less.
    after = _counts(url)
    assert sum(after.values()) - sum(before.values()) == (
        timed.inserts + stopped.inserts - timed.deletes - stopped.deletes
    )


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
