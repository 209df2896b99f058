"""`cdc demo seed`: create the demo shop schema and fill it with deterministic pseudo-random data.

Rows are generated in Python from one `random.Random` with a fixed seed and loaded with COPY, so
the same arguments always give the same database, and thousands of rows load in about a second.
"""

from __future__ import annotations

import csv
import io
import json
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql

from cdc import demo
from cdc.demo import SCHEMA, TABLES, qualified
from cdc.errors import ConfigError
from cdc.resources import sql_file

SEED = 20240917
# A fixed "now" keeps the data identical from run to run; the workload writes real timestamps.
EPOCH = datetime(2025, 1, 1, 12, tzinfo=UTC)
# Key of the advisory lock that serializes seeds.
_LOCK_KEY = 0x0CDC_DE30
_NULL = r"\N"
_CATEGORIES = ("Electronics", "Audio", "Home", "Kitchen", "Garden", "Outdoors", "Camping", "Books")
_PARENTS = {"Audio": 1, "Kitchen": 3, "Garden": 3, "Camping": 6}  # child -> parent category_id
_PAYMENT_STATUS = {"pending": "authorized", "cancelled": "voided", "refunded": "refunded"}
# (currency, rate to EUR): the rates differ in scale on purpose, for the unconstrained numeric.
_CURRENCIES = (("EUR", Decimal(1)), ("GBP", Decimal("1.1693")), ("USD", Decimal("0.92437")))

Row = dict[str, Any]


def seed(
    source_url: str,
    *,
    customers: int = 1000,
    products: int = 200,
    orders: int = 2000,
    schema_only: bool = False,
    say: Callable[[str], None] = print,
) -> dict[str, int]:
    """Create schema `shop` (sql/demo_shop.sql) and fill it (unless schema_only), unless its tables
    already hold rows. Returns the row count of every table."""
    if customers < 1 or products < 1 or orders < 0:
        raise ConfigError(
            f"cannot seed {customers} customers, {products} products and {orders} orders.",
            "give at least 1 customer and 1 product, and 0 or more orders",
        )
    conn = demo.connect(source_url)
    try:
        # One transaction: a failed seed leaves nothing half-loaded behind.
        with conn.cursor() as cur:
            # Else two concurrent seeds could both find the tables empty; even their CREATE TABLE IF
            # NOT EXISTS can collide.
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            say(f"creating schema {SCHEMA} (sql/demo_shop.sql)")
            try:
                cur.execute(sql_file("demo_shop.sql"))
            except psycopg2.errors.InsufficientPrivilege as exc:
                raise ConfigError(
                    f"the source database refused to create the demo schema: {demo.db_message(exc)}",
                    "seed as a role that may create schemas in that database (its owner, say)",
                ) from exc
            if schema_only or _has_rows(cur):
                conn.commit()
                if not schema_only:
                    say(f"schema {SCHEMA} already holds data; seeding nothing")
                return demo.table_counts(conn)
            say(f"seeding {customers} customers, {products} products and {orders} orders")
            started = time.monotonic()
            rng = random.Random(SEED)  # noqa: S311 - reproducible fake data, not secrets
            for table, rows in _generate(rng, customers, products, orders):
                _copy(cur, table, rows)
            _restart_identities(cur)
        conn.commit()
        counts = demo.table_counts(conn)
        say(f"seeded {sum(counts.values())} rows in {time.monotonic() - started:.1f}s")
        return counts
    finally:
        conn.close()


def _has_rows(cur: psycopg2.extensions.cursor) -> bool:
    exists = sql.SQL(" OR ").join(sql.SQL("EXISTS (SELECT 1 FROM {})").format(qualified(t)) for t in TABLES)
    cur.execute(sql.SQL("SELECT {}").format(exists))
    row = cur.fetchone()
    return bool(row and row[0])


def _generate(rng: random.Random, n_customers: int, n_products: int, n_orders: int) -> Iterator[tuple[str, list[Row]]]:
    """(table, rows) in foreign-key order; ids are assigned here, 1..n, so rows can refer to them."""
    yield (
        "product_categories",
        [
            {"category_id": i, "parent_id": _PARENTS.get(n), "name": n, "slug": n.lower()}
            for i, n in enumerate(_CATEGORIES, start=1)
        ],
    )

    products: list[Row] = []
    for pid in range(1, n_products + 1):
        name = demo.product_name(rng)
        category = rng.randint(1, len(_CATEGORIES))
        price = demo.money(rng.randint(299, 49_999))
        launched = EPOCH - timedelta(days=rng.randint(30, 900))
        products.append(
            {
                "product_id": pid,
                "sku": f"SKU-{pid:05d}",
                "category_id": category,
                "name": name,
                # Over the ~2 kB TOAST threshold, so the column is stored out of line.
                "description": demo.description(rng, name, rng.randint(2500, 8000)),
                "attributes": {
                    "color": rng.choice(demo.COLORS),
                    "dimensions_cm": [rng.randint(5, 120) for _ in range(3)],
                    "warranty_years": rng.choice((1, 2, 3, 5)),
                    "eco": {"recycled_pct": rng.randint(0, 100), "certified": rng.random() < 0.3},
                },
                "price": price,
                "unit_cost": (price * Decimal(rng.uniform(0.35, 0.7))).quantize(Decimal("0.0001")),
                "weight_kg": Decimal(rng.randint(50, 25_000)) / 1000,
                "tax_rate": Decimal("0.0550") if _CATEGORIES[category - 1] == "Books" else Decimal("0.2"),
                "tags": rng.sample(("new", "bestseller", "eco", "gift"), rng.randint(0, 2)),
                "active": rng.random() > 0.05,
                "launched_on": launched.date(),
                "created_at": launched,
                "updated_at": launched,
            }
        )
    yield "products", products
    yield (
        "inventory",
        [
            {
                "product_id": p["product_id"],
                "quantity_on_hand": rng.randint(0, 500),
                "reorder_level": rng.choice((10, 20, 50)),
                "last_restocked_at": p["created_at"],
                "updated_at": p["created_at"],
            }
            for p in products
        ],
    )

    customers: list[Row] = []
    addresses: list[Row] = []
    shipping_address: list[int] = []  # address_id by customer_id - 1
    for cid in range(1, n_customers + 1):
        first, last = demo.person_name(rng)
        joined = EPOCH - timedelta(minutes=rng.randint(60 * 24 * 30, 60 * 24 * 730))
        customers.append(
            {
                "customer_id": cid,
                "external_id": demo.new_uuid(rng),
                "email": f"{first}.{last}.{cid}@example.com".lower(),
                "full_name": f"{first} {last}",
                "phone": f"+49 30 {rng.randrange(10**7):07d}" if rng.random() < 0.7 else None,
                "birth_date": date(1950, 1, 1) + timedelta(days=rng.randint(0, 20_000)) if rng.random() < 0.6 else None,
                "marketing_opt_in": rng.random() < 0.4,
                "loyalty_points": rng.randint(0, 5000),
                "tags": rng.sample(("vip", "newsletter", "b2b"), rng.randint(0, 2)),
                "created_at": joined,
                "updated_at": joined,
            }
        )
        for kind in ("shipping", "billing") if rng.random() < 0.3 else ("shipping",):
            city, country, postal = rng.choice(demo.CITIES)
            addresses.append(
                {
                    "address_id": len(addresses) + 1,
                    "customer_id": cid,
                    "kind": kind,
                    "line1": f"{rng.randint(1, 200)} {rng.choice(demo.STREETS)} Street",
                    "line2": f"Apt {rng.randint(1, 40)}" if rng.random() < 0.25 else None,
                    "city": city,
                    "postal_code": postal.format(rng.randint(1, 99)),
                    "country_code": country,
                    "is_default": True,
                    "created_at": joined,
                }
            )
            if kind == "shipping":
                shipping_address.append(len(addresses))
    yield "customers", customers
    yield "addresses", addresses
    yield from _orders(rng, n_orders, products, shipping_address)
    yield (
        "page_views",
        [
            {
                "viewed_at": EPOCH - timedelta(seconds=rng.randint(0, 86_400 * 30)),
                "session_id": demo.new_uuid(rng),
                "customer_id": rng.randint(1, n_customers) if rng.random() < 0.6 else None,
                "path": rng.choice((*demo.PATHS, f"/products/SKU-{rng.randint(1, n_products):05d}")),
                "referrer": rng.choice((None, "https://www.google.com/", "https://news.example.org/")),
                "user_agent": rng.choice(demo.USER_AGENTS),
                "duration_ms": rng.randint(200, 120_000),
            }
            for _ in range(n_customers * 3)
        ],
    )


def _orders(
    rng: random.Random, n_orders: int, products: list[Row], shipping_address: list[int]
) -> Iterator[tuple[str, list[Row]]]:
    orders: list[Row] = []
    items: list[Row] = []
    payments: list[Row] = []
    shipments: list[Row] = []
    reviews: list[Row] = []
    for oid in range(1, n_orders + 1):
        customer = rng.randint(1, len(shipping_address))
        placed = EPOCH - timedelta(minutes=rng.randint(1, 60 * 24 * 365))
        # Old orders have run their course; only recent ones are still moving.
        if EPOCH - placed > timedelta(days=14):
            status = rng.choices(("delivered", "cancelled", "refunded"), (90, 7, 3))[0]
        else:
            status = rng.choices(("pending", "paid", "shipped", "cancelled"), (30, 30, 35, 5))[0]
        subtotal = tax = weight = Decimal(0)
        n_lines = min(len(products), rng.choices((1, 2, 3, 4, 5), (35, 30, 20, 10, 5))[0])
        lines = rng.sample(products, n_lines)
        for line_no, product in enumerate(lines, start=1):
            quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
            discount = rng.choice((Decimal(0), Decimal(0), Decimal(0), Decimal("12.50")))
            amount = demo.line_total(quantity, product["price"], discount)
            subtotal += amount
            tax += (amount * product["tax_rate"]).quantize(demo.CENT, ROUND_HALF_UP)
            weight += product["weight_kg"] * quantity
            items.append(
                {
                    "order_id": oid,
                    "line_no": line_no,
                    "product_id": product["product_id"],
                    "quantity": quantity,
                    "unit_price": product["price"],
                    "discount_pct": discount,
                }
            )
        fee = Decimal(0) if subtotal >= 50 else Decimal("4.99")
        currency, fx_rate = rng.choice(_CURRENCIES)
        orders.append(
            {
                "order_id": oid,
                "order_uuid": demo.new_uuid(rng),
                "customer_id": customer,
                "shipping_address_id": shipping_address[customer - 1],
                "status": status,
                "currency": currency,
                "subtotal": subtotal,
                "tax": tax,
                "shipping_fee": fee,
                "total": subtotal + tax + fee,
                "notes": "leave at the door" if rng.random() < 0.05 else None,
                "placed_at": placed,
                "updated_at": placed + timedelta(hours=1),
            }
        )
        payments.append(
            {
                "payment_id": oid,
                "order_id": oid,
                "provider_ref": demo.new_uuid(rng),
                "method": rng.choice(demo.PAYMENT_METHODS),
                "status": _PAYMENT_STATUS.get(status, "captured"),
                "amount": subtotal + tax + fee,
                "currency": currency,
                "fx_rate": fx_rate,
                "raw_response": {
                    "auth_code": f"{rng.randrange(16**6):06X}",
                    "three_ds": rng.random() < 0.8,
                },
                "created_at": placed,
                "updated_at": placed,
            }
        )
        if status in ("shipped", "delivered", "refunded"):
            shipped = placed + timedelta(hours=rng.randint(4, 72))
            shipments.append(
                {
                    "shipment_id": len(shipments) + 1,
                    "order_id": oid,
                    "carrier": rng.choice(demo.CARRIERS),
                    "tracking_number": f"TRK{rng.randrange(10**12):012d}",
                    "weight_kg": weight,
                    "estimated_delivery": (shipped + timedelta(days=3)).date(),
                    "shipped_at": shipped,
                    "delivered_at": None if status == "shipped" else shipped + timedelta(days=2),
                }
            )
        if status == "delivered" and rng.random() < 0.2:
            reviews.append(
                {
                    "review_id": len(reviews) + 1,
                    "product_id": lines[0]["product_id"],
                    "customer_id": customer,
                    "rating": rng.choices((1, 2, 3, 4, 5), (5, 5, 10, 30, 50))[0],
                    "title": rng.choice(("Love it", "As described", "Could be better", "Great value")),
                    "body": rng.choice((None, "Arrived quickly and works well.", "Smaller than I hoped.")),
                    "verified_purchase": True,
                    "helpful_votes": rng.randint(0, 40),
                    "created_at": placed + timedelta(days=10),
                }
            )
    yield "orders", orders
    yield "order_items", items
    yield "payments", payments
    yield "shipments", shipments
    yield "reviews", reviews


def _csv_value(value: object) -> object:
    """value in the text form COPY ... (FORMAT csv) reads."""
    if value is None:
        return _NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, list):
        quoted = ('"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"' for v in value)
        return "{" + ",".join(quoted) + "}"
    if isinstance(value, datetime | date):
        return value.isoformat()
    return value


def _copy(cur: psycopg2.extensions.cursor, table: str, rows: list[Row]) -> None:
    if not rows:
        return
    columns = list(rows[0])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerows([_csv_value(row[c]) for c in columns] for row in rows)
    buffer.seek(0)
    statement = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT csv, NULL {})").format(
        qualified(table), sql.SQL(", ").join(map(sql.Identifier, columns)), sql.Literal(_NULL)
    )
    cur.copy_expert(statement.as_string(cur), buffer)


def _restart_identities(cur: psycopg2.extensions.cursor) -> None:
    """COPY wrote explicit ids, which identity sequences do not notice: restart each past its max,
    or the workload's first INSERT would collide with a seeded row."""
    cur.execute(
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = %s AND is_identity = 'YES'",
        (SCHEMA,),
    )
    for table, column in cur.fetchall():
        cur.execute(sql.SQL("SELECT coalesce(max({}), 0) + 1 FROM {}").format(sql.Identifier(column), qualified(table)))
        row = cur.fetchone()
        cur.execute(
            sql.SQL("ALTER TABLE {} ALTER COLUMN {} RESTART WITH {}").format(
                qualified(table), sql.Identifier(column), sql.Literal(row[0] if row else 1)
            )
        )
