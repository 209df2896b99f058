"""`cdc demo workload`: small, realistic shop transactions against schema `shop` at a steady rate.

Signups, orders and page views insert; payments, shipping, stock and price changes update; purging
cancelled orders and old page views deletes. About 60% of the changed rows are inserts, 30% updates
and 10% deletes: the kind of stream cdc has to replicate.
"""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any, TypeVar

import psycopg2
import psycopg2.errors
import psycopg2.extensions
from psycopg2 import sql
from psycopg2.extras import execute_values

from cdc import demo
from cdc.errors import ConfigError, TransientError

Cursor = psycopg2.extensions.cursor
K = TypeVar("K", bound=Hashable)

# How long to wait for the source to come back after losing the connection (a restart mid-demo).
RECONNECT_FOR = 60.0
# Lost a race with another workload or with a seed's DDL: skip this transaction rather than stop.
_CONTENDED = (
    psycopg2.errors.SerializationFailure,
    psycopg2.errors.DeadlockDetected,
    psycopg2.errors.LockNotAvailable,
)


class Kind(StrEnum):
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"


TARGET_MIX = {Kind.INSERT: 0.6, Kind.UPDATE: 0.3, Kind.DELETE: 0.1}


@dataclass(frozen=True)
class Operation:
    name: str
    kind: Kind  # the change it mostly makes; the mix counts what it really made
    weight: float  # relative frequency among the operations of its kind


# Weights tuned so the order pipeline keeps pace with new orders (each needs about three status
# steps) while browsing, as in any shop, supplies most of the inserts.
OPERATIONS = (
    Operation("signup", Kind.INSERT, 1),
    Operation("new_order", Kind.INSERT, 2),
    Operation("page_views", Kind.INSERT, 6),
    Operation("order_status", Kind.UPDATE, 8),
    Operation("inventory", Kind.UPDATE, 1),
    Operation("price_change", Kind.UPDATE, 1),
    Operation("description_rewrite", Kind.UPDATE, 0.5),
    Operation("purge_cancelled", Kind.DELETE, 1),
    Operation("prune_page_views", Kind.DELETE, 2),
)


@dataclass
class Changes:
    inserts: int = 0
    updates: int = 0
    deletes: int = 0

    @property
    def total(self) -> int:
        return self.inserts + self.updates + self.deletes

    def of(self, kind: Kind) -> int:
        return {Kind.INSERT: self.inserts, Kind.UPDATE: self.updates, Kind.DELETE: self.deletes}[kind]

    def add(self, other: Changes) -> None:
        self.inserts += other.inserts
        self.updates += other.updates
        self.deletes += other.deletes


@dataclass(frozen=True)
class WorkloadStats:
    transactions: int
    inserts: int
    updates: int
    deletes: int
    seconds: float


def weighted_shuffle(rng: random.Random, weights: Mapping[K, float]) -> list[K]:
    """The keys in random order, heavier ones likelier first (Efraimidis-Spirakis: by u ** (1 / w))."""
    return sorted(weights, key=lambda k: rng.random() ** (1 / weights[k]), reverse=True)


class OperationMix:
    """Chooses what each transaction does, keeping the changed rows near the target shares.

    Operations change different numbers of rows (an order is about five inserts, a price change one
    update), so fixed weights per operation would miss the intended row mix. Instead the kind of change
    furthest below its target share goes next, and the weights choose among that kind's operations.
    """

    def __init__(self, operations: Sequence[Operation] = OPERATIONS, target: Mapping[Kind, float] = TARGET_MIX) -> None:
        self.operations = tuple(operations)
        self.target = target
        self.done = Changes()

    def record(self, changes: Changes) -> None:
        self.done.add(changes)

    def shares(self) -> dict[Kind, float]:
        total = self.done.total or 1
        return {kind: self.done.of(kind) / total for kind in Kind}

    def _progress_toward_target(self, kind: Kind) -> float:
        # Relative, not absolute: with one kind starved (nothing left to delete) the others still
        # keep their target proportion between themselves.
        target = self.target[kind]
        return self.done.of(kind) / target if target > 0 else math.inf

    def plan(self, rng: random.Random) -> list[Operation]:
        """Operations to try in turn until one changes something: the neediest kind's first, then the
        other kinds' (for when there is nothing left to delete, say)."""
        kinds = sorted(self.target, key=self._progress_toward_target)
        return [
            op
            for kind in kinds
            for op in weighted_shuffle(rng, {op: op.weight for op in self.operations if op.kind is kind})
        ]


@dataclass
class Pacer:
    """Transaction n is due at start + n / rate on a monotonic clock, so the ones after a slow one run
    sooner and the average rate holds. A backlog over max_lag seconds is dropped instead (and `lagging`
    set): a database that cannot keep up gets transactions back to back, not a debt of thousands it
    would be hit with in one burst once it recovers."""

    rate: float
    start: float
    max_lag: float = 2.0
    sent: int = 0
    lagging: bool = False

    def delay(self, now: float) -> float:
        """Seconds to wait before the next transaction (0: run it now)."""
        if math.isinf(self.rate):
            return 0.0
        behind = now - (self.start + self.sent / self.rate)
        if behind > self.max_lag:
            self.start += behind - self.max_lag
            self.lagging = True
        return max(0.0, self.start + self.sent / self.rate - now)


def run_workload(
    source_url: str,
    *,
    rate: float = 50.0,
    duration: float | None = 60.0,
    seed: int | None = None,
    stop: threading.Event | None = None,
    say: Callable[[str], None] = print,
    report_every: float = 5.0,
) -> WorkloadStats:
    """Run transactions at `rate` per second (math.inf: as fast as possible) for `duration` seconds, or
    with None until `stop` is set or Ctrl-C. Counts only transactions known to have committed."""
    _check_arguments(rate, duration)
    stop = stop or threading.Event()
    rng = random.Random(seed)  # noqa: S311 - a reproducible choice of fake changes, not secrets
    conn = _open(source_url)
    mix = OperationMix()
    started = reported_at = time.monotonic()
    pacer = Pacer(rate, started)
    deadline = math.inf if duration is None else started + duration
    next_report = started + report_every if report_every > 0 else math.inf
    transactions = reported = 0
    warned = False
    say(f"workload: {rate:g} tx/s, " + ("until stopped" if duration is None else f"for {duration:g}s"))
    try:
        while not stop.is_set() and (now := time.monotonic()) < deadline:
            if now >= next_report:
                current = (transactions - reported) / (now - reported_at)
                say(_progress(now - started, transactions, current, mix.done))
                reported, reported_at, next_report = transactions, now, now + report_every
            wait = pacer.delay(now)
            if pacer.lagging and not warned:
                say(f"the database cannot keep up with {rate:g} tx/s; running as fast as it can")
                warned = True
            if wait > 0:
                stop.wait(min(wait, deadline - now, next_report - now))
                continue
            pacer.sent += 1
            try:
                changes = _transaction(conn, mix.plan(rng), rng)
            except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                say(f"lost the source connection ({str(exc).strip().splitlines()[0]}); reconnecting")
                conn.close()
                if (reconnected := _reconnect(source_url, stop)) is None:
                    break
                conn = reconnected
                say("reconnected")
                pacer = Pacer(rate, time.monotonic())  # the outage is no backlog to catch up on
                continue
            if changes.total:
                transactions += 1
                mix.record(changes)
    except KeyboardInterrupt:
        say("interrupted; stopping the workload")
    finally:
        conn.close()
    seconds = time.monotonic() - started
    say("workload done: " + _progress(seconds, transactions, None, mix.done))
    return WorkloadStats(transactions, mix.done.inserts, mix.done.updates, mix.done.deletes, seconds)


def _check_arguments(rate: float, duration: float | None) -> None:
    # `not x > 0` rather than `x <= 0`: NaN must fail too.
    if not rate > 0:
        raise ConfigError(f"the workload rate must be above 0 transactions/s (got {rate}).", "e.g. 50")
    if duration is not None and not duration >= 0:
        raise ConfigError(f"the workload duration must be 0 s or more (got {duration}).", "e.g. 60")


def _progress(seconds: float, transactions: int, current: float | None, done: Changes) -> str:
    average = f"{transactions / seconds:.1f} tx/s" if seconds > 0 else "-"
    rates = average if current is None else f"{current:.1f} tx/s (average {average})"
    return (
        f"{seconds:.1f}s, {transactions} transactions, {rates}; rows: {done.inserts} inserted, "
        f"{done.updates} updated, {done.deletes} deleted"
    )


def _open(source_url: str) -> psycopg2.extensions.connection:
    conn = demo.connect(source_url)
    try:
        seeded = _seeded(conn)
    except psycopg2.errors.InsufficientPrivilege as exc:
        conn.close()
        raise ConfigError(
            f"the source database refused the demo workload: {demo.db_message(exc)}",
            f"run the workload as the role that ran `cdc demo seed` (it owns schema {demo.SCHEMA})",
        ) from exc
    except BaseException:
        conn.close()
        raise
    if not seeded:
        conn.close()
        raise ConfigError(
            f"the source database has no demo shop to run a workload on (schema {demo.SCHEMA}, with "
            "customers and products).",
            "run `cdc demo seed` first",
        )
    return conn


def _seeded(conn: psycopg2.extensions.connection) -> bool:
    with conn.cursor() as cur:
        # Rather skip a transaction than queue behind a long lock (a seed's DDL, a VACUUM FULL).
        cur.execute("SET lock_timeout = '5s'")
        if demo.missing_tables(conn):
            return False
        cur.execute("SELECT EXISTS (SELECT 1 FROM shop.customers), EXISTS (SELECT 1 FROM shop.products)")
        seeded = cur.fetchone() == (True, True)
    conn.commit()
    return seeded


def _reconnect(source_url: str, stop: threading.Event) -> psycopg2.extensions.connection | None:
    """A new connection once the source is back, trying for RECONNECT_FOR seconds (a restart of the
    source in the middle of a demo is routine); None if stopped meanwhile."""
    give_up = time.monotonic() + RECONNECT_FOR
    while not stop.wait(1.0):
        try:
            return _open(source_url)
        except TransientError:
            # Only a connection that failed is worth waiting out; a wrong password or a dropped
            # schema will not come back.
            if time.monotonic() > give_up:
                raise
    return None


def _transaction(conn: psycopg2.extensions.connection, plan: Sequence[Operation], rng: random.Random) -> Changes:
    """One transaction: the first operation of plan that finds something to change."""
    changes = Changes()
    try:
        with conn.cursor() as cur:
            for op in plan:
                changes = _RUNNERS[op.name](cur, rng)
                if changes.total:
                    break
        conn.commit()
    except _CONTENDED:
        conn.rollback()
        return Changes()
    except psycopg2.errors.ObjectNotInPrerequisiteState as exc:
        raise ConfigError(
            f"the source refused a change: {demo.db_message(exc)}",
            "shop.page_views has no primary key, so once in a publication it needs REPLICA IDENTITY FULL; "
            "`cdc connector apply` sets it on every captured table without a key",
        ) from exc
    return changes


def _one(cur: Cursor, query: str | sql.Composable, args: Sequence[Any] = ()) -> tuple[Any, ...] | None:
    cur.execute(query, args)
    return cur.fetchone()


def _pick(cur: Cursor, rng: random.Random, table: str, column: str, *, hot: bool = False) -> int | None:
    """A random existing id of a table whose rows are never deleted (so its ids are about dense). hot
    skews the choice to low ids: a few best sellers get most of the orders and price changes."""
    ident, target = sql.Identifier(column), demo.qualified(table)
    bounds = _one(cur, sql.SQL("SELECT min({0}), max({0}) FROM {1}").format(ident, target))
    if bounds is None or bounds[0] is None:
        return None
    low, high = bounds
    start = low + int((high - low) * (rng.random() ** 2 if hot else rng.random()))
    query = sql.SQL("SELECT {0} FROM {1} WHERE {0} >= %s ORDER BY {0} LIMIT 1").format(ident, target)
    row = _one(cur, query, (start,))
    return int(row[0]) if row else None


def _signup(cur: Cursor, rng: random.Random) -> Changes:
    first, last = demo.person_name(rng)
    # uuid4, not rng: a second run with the same seed must not collide with the first one's rows.
    external_id = uuid.uuid4()
    email = f"{first}.{last}.{external_id.hex[:12]}@example.com".lower()
    cur.execute(
        "INSERT INTO shop.customers (external_id, email, full_name, marketing_opt_in, tags)"
        " VALUES (%s, %s, %s, %s, %s) RETURNING customer_id",
        (str(external_id), email, f"{first} {last}", rng.random() < 0.4, ["new"]),
    )
    (customer_id,) = cur.fetchone() or (None,)
    addresses = []
    for kind in ("shipping", "billing") if rng.random() < 0.3 else ("shipping",):
        city, country, postal = rng.choice(demo.CITIES)
        street = f"{rng.randint(1, 200)} {rng.choice(demo.STREETS)} Street"
        addresses.append((customer_id, kind, street, city, postal.format(rng.randint(1, 99)), country))
    execute_values(
        cur,
        "INSERT INTO shop.addresses (customer_id, kind, line1, city, postal_code, country_code, is_default) VALUES %s",
        addresses,
        template="(%s, %s, %s, %s, %s, %s, true)",
    )
    return Changes(inserts=1 + len(addresses))


def _new_order(cur: Cursor, rng: random.Random) -> Changes:
    """An order of 1-5 lines and its authorized payment (stock leaves the shelf in `_inventory`)."""
    customer = _pick(cur, rng, "customers", "customer_id")
    wanted = {_pick(cur, rng, "products", "product_id", hot=True) for _ in range(rng.randint(1, 5))}
    cur.execute(
        "SELECT product_id, price, tax_rate FROM shop.products"
        " WHERE product_id = ANY(%s) AND active ORDER BY product_id",
        (sorted(p for p in wanted if p is not None),),
    )
    products = cur.fetchall()
    if customer is None or not products:
        return Changes()
    address = _one(
        cur,
        "SELECT address_id FROM shop.addresses WHERE customer_id = %s AND kind = 'shipping'"
        " ORDER BY is_default DESC, address_id LIMIT 1",
        (customer,),
    )
    lines = []
    subtotal = tax = Decimal(0)
    for line_no, (product_id, price, tax_rate) in enumerate(products, start=1):
        quantity = rng.choices((1, 2, 3), (80, 15, 5))[0]
        discount = rng.choice((Decimal(0), Decimal(0), Decimal(0), Decimal("12.50")))
        amount = demo.line_total(quantity, price, discount)
        subtotal += amount
        tax += (amount * tax_rate).quantize(demo.CENT, ROUND_HALF_UP)
        lines.append((line_no, product_id, quantity, price, discount))
    total = subtotal + tax + (fee := Decimal(0) if subtotal >= 50 else Decimal("4.99"))
    cur.execute(
        "INSERT INTO shop.orders (order_uuid, customer_id, shipping_address_id, subtotal, tax, shipping_fee,"
        " total) VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING order_id",
        (str(uuid.uuid4()), customer, address[0] if address else None, subtotal, tax, fee, total),
    )
    (order_id,) = cur.fetchone() or (None,)
    execute_values(
        cur,
        "INSERT INTO shop.order_items (order_id, line_no, product_id, quantity, unit_price, discount_pct) VALUES %s",
        [(order_id, *line) for line in lines],
    )
    cur.execute(
        "INSERT INTO shop.payments (order_id, provider_ref, method, status, amount, currency, raw_response)"
        " VALUES (%s, %s, %s, 'authorized', %s, 'EUR', jsonb_build_object('auth_code', %s))",
        (order_id, str(uuid.uuid4()), rng.choice(demo.PAYMENT_METHODS), total, f"{rng.randrange(16**6):06X}"),
    )
    return Changes(inserts=2 + len(lines))


def _page_views(cur: Cursor, rng: random.Random) -> Changes:
    """A short browsing session: a few pages under one session id."""
    session, agent = str(uuid.uuid4()), rng.choice(demo.USER_AGENTS)
    customer = _pick(cur, rng, "customers", "customer_id") if rng.random() < 0.6 else None
    views = [
        (session, customer, rng.choice(demo.PATHS), agent, rng.randint(200, 120_000)) for _ in range(rng.randint(1, 4))
    ]
    execute_values(
        cur,
        "INSERT INTO shop.page_views (session_id, customer_id, path, user_agent, duration_ms) VALUES %s",
        views,
    )
    return Changes(inserts=len(views))


# The life of an order: (from, to) -> weight. The payment follows some of the steps.
_TRANSITIONS = {
    ("pending", "paid"): 4.0,
    ("pending", "cancelled"): 0.5,
    ("paid", "shipped"): 3.0,
    ("shipped", "delivered"): 3.0,
    ("delivered", "refunded"): 0.1,
}
_PAYMENT_STEP = {
    "paid": ("authorized", "captured"),
    "cancelled": ("authorized", "voided"),
    "refunded": ("captured", "refunded"),
}


def _order_status(cur: Cursor, rng: random.Random) -> Changes:
    """Move one order a step on. An empty step changes nothing (the next operation runs instead)
    rather than trying the other steps: that would refund every delivered order once the rest of
    the pipeline ran dry."""
    before, after = rng.choices(list(_TRANSITIONS), weights=list(_TRANSITIONS.values()))[0]
    # Roughly first come, first served; SKIP LOCKED leaves orders another workload is moving alone.
    query = (
        "SELECT order_id, customer_id, total FROM shop.orders WHERE status = %s"
        " ORDER BY order_id LIMIT 1 OFFSET %s FOR UPDATE SKIP LOCKED"
    )
    found = _one(cur, query, (before, rng.randrange(10))) or _one(cur, query, (before, 0))
    if found is None:
        return Changes()
    order_id, customer_id, total = found
    cur.execute("UPDATE shop.orders SET status = %s, updated_at = now() WHERE order_id = %s", (after, order_id))
    changes = Changes(updates=1)
    if after in _PAYMENT_STEP:
        paid_before, paid_after = _PAYMENT_STEP[after]
        cur.execute(
            "UPDATE shop.payments SET status = %s, updated_at = now() WHERE order_id = %s AND status = %s",
            (paid_after, order_id, paid_before),
        )
        changes.updates += cur.rowcount
    elif after == "shipped":
        cur.execute(
            "INSERT INTO shop.shipments (order_id, carrier, tracking_number, weight_kg, estimated_delivery)"
            " SELECT %s, %s, %s, sum(i.quantity * p.weight_kg), current_date + 3"
            " FROM shop.order_items i JOIN shop.products p USING (product_id) WHERE i.order_id = %s",
            (order_id, rng.choice(demo.CARRIERS), f"TRK{rng.randrange(10**12):012d}", order_id),
        )
        changes.inserts += cur.rowcount
    elif after == "delivered":
        cur.execute(
            "UPDATE shop.shipments SET delivered_at = now() WHERE order_id = %s AND delivered_at IS NULL",
            (order_id,),
        )
        changes.updates += cur.rowcount
        cur.execute(
            "UPDATE shop.customers SET loyalty_points = loyalty_points + %s, updated_at = now() WHERE customer_id = %s",
            (int(total), customer_id),
        )
        changes.updates += cur.rowcount
    return changes


def _inventory(cur: Cursor, rng: random.Random) -> Changes:
    """Stock leaves the shelf (picking, breakage); a product down to its reorder level is restocked."""
    cur.execute(
        "UPDATE shop.inventory SET updated_at = now(),"
        " last_restocked_at = CASE WHEN quantity_on_hand <= reorder_level"
        "   THEN now() ELSE last_restocked_at END,"
        " quantity_on_hand = CASE WHEN quantity_on_hand <= reorder_level"
        "   THEN quantity_on_hand + %s ELSE quantity_on_hand - %s END"
        " WHERE product_id = %s",
        (rng.randint(100, 300), rng.randint(1, 3), _pick(cur, rng, "products", "product_id", hot=True)),
    )
    return Changes(updates=cur.rowcount)


def _price_change(cur: Cursor, rng: random.Random) -> Changes:
    # Leaves the TOASTed description as it is: an update whose WAL record does not carry it.
    cur.execute(
        "UPDATE shop.products SET price = greatest(round(price * %s, 2), 0.99), updated_at = now()"
        " WHERE product_id = %s",
        (Decimal(rng.randint(90, 110)) / 100, _pick(cur, rng, "products", "product_id", hot=True)),
    )
    return Changes(updates=cur.rowcount)


def _description_rewrite(cur: Cursor, rng: random.Random) -> Changes:
    product = _pick(cur, rng, "products", "product_id")
    name = _one(cur, "SELECT name FROM shop.products WHERE product_id = %s", (product,))
    if name is None:
        return Changes()
    cur.execute(
        "UPDATE shop.products SET description = %s, updated_at = now() WHERE product_id = %s",
        (demo.description(rng, name[0], rng.randint(3000, 12_000)), product),
    )
    return Changes(updates=cur.rowcount)


def _purge_cancelled(cur: Cursor, rng: random.Random) -> Changes:
    """Delete the oldest cancelled order and the rows that refer to it, children first."""
    found = _one(
        cur,
        "SELECT order_id FROM shop.orders WHERE status = 'cancelled' ORDER BY order_id LIMIT 1 FOR UPDATE SKIP LOCKED",
    )
    if found is None:
        return Changes()
    deleted = 0
    for table in ("order_items", "payments", "shipments", "orders"):
        cur.execute(sql.SQL("DELETE FROM {} WHERE order_id = %s").format(demo.qualified(table)), found)
        deleted += cur.rowcount
    return Changes(deletes=deleted)


def _prune_page_views(cur: Cursor, rng: random.Random) -> Changes:
    # No key to name the rows by, so ctid; locked, so a concurrent prune cannot take the same rows.
    cur.execute(
        "DELETE FROM shop.page_views WHERE ctid = ANY (ARRAY("
        "SELECT ctid FROM shop.page_views ORDER BY viewed_at LIMIT %s FOR UPDATE SKIP LOCKED))",
        (rng.randint(1, 5),),
    )
    return Changes(deletes=cur.rowcount)


_RUNNERS: dict[str, Callable[[Cursor, random.Random], Changes]] = {
    "signup": _signup,
    "new_order": _new_order,
    "page_views": _page_views,
    "order_status": _order_status,
    "inventory": _inventory,
    "price_change": _price_change,
    "description_rewrite": _description_rewrite,
    "purge_cancelled": _purge_cancelled,
    "prune_page_views": _prune_page_views,
}
