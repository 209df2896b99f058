"""The demo source database: an online shop (`sql/demo_shop.sql`), its seed data and a live workload.

`seed.seed` creates and fills schema `shop`; `workload.run_workload` then changes it at a steady
rate, so cdc has a realistic stream of inserts, updates and deletes to capture. This module holds
what both share: the table list, the connection, and the vocabulary the fake rows are made of.
"""

from __future__ import annotations

import random
import uuid
from decimal import ROUND_HALF_UP, Decimal

import psycopg2
import psycopg2.extensions
from psycopg2 import sql

from cdc import pgerrors

SCHEMA = "shop"

# In foreign-key order: every table comes after the tables it references.
TABLES = (
    "product_categories",
    "products",
    "inventory",
    "customers",
    "addresses",
    "orders",
    "order_items",
    "payments",
    "shipments",
    "reviews",
    "page_views",
)

CENT = Decimal("0.01")
FIRST_NAMES = ("Ada", "Alan", "Amara", "Ben", "Chen", "Clara", "Dmitri", "Elena", "Farah", "Hugo")
LAST_NAMES = ("Almeida", "Brown", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Jensen")
# (city, country, postal code pattern)
CITIES = (("Berlin", "DE", "10{:03d}"), ("Lyon", "FR", "69{:03d}"), ("Porto", "PT", "4{:03d}-100"))
STREETS = ("Linden", "Harbour", "Mill", "Station", "Orchard", "Castle", "River", "Market")
ADJECTIVES = ("compact", "rugged", "wireless", "classic", "modular", "foldable", "quiet", "slim")
MATERIALS = ("bamboo", "steel", "walnut", "aluminium", "wool", "cotton", "ceramic", "leather")
NOUNS = ("lamp", "backpack", "kettle", "speaker", "chair", "tent", "jacket", "keyboard")
COLORS = ("black", "white", "forest green", "navy", "sand", "red", "graphite")
CARRIERS = ("DHL", "UPS", "PostNL", "La Poste", "GLS")
PAYMENT_METHODS = ("card", "card", "card", "paypal", "bank_transfer", "gift_card")
PATHS = ("/", "/cart", "/checkout", "/search?q=tent", "/account", "/products")
USER_AGENTS = (
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/126.0",
)
_PHRASES = (
    "Built to last through years of daily use",
    "Every seam is checked by hand before it leaves the workshop",
    "Ships in recyclable packaging",
    "Designed with feedback from thousands of customers",
    "Easy to clean and to repair, with spare parts sold separately",
    "Tested in heat, cold and rain",
    "Pairs well with the rest of the collection",
)


def connect(source_url: str) -> psycopg2.extensions.connection:
    """A connection to the source database, or the CdcError that says why not (never repeating
    the URL, which holds the password; libpq's message names only host, port, user, database)."""
    return pgerrors.connect(source_url, "source", application_name="cdc-demo")


def db_message(exc: psycopg2.Error) -> str:
    """The server's one-line message, without the LINE/caret context of the statement."""
    return (exc.diag.message_primary or str(exc)).strip()


def qualified(table: str) -> sql.Composed:
    return sql.SQL(".").join([sql.Identifier(SCHEMA), sql.Identifier(table)])


def missing_tables(conn: psycopg2.extensions.connection) -> list[str]:
    with conn.cursor() as cur:
        # pg_class, not information_schema: that one hides the tables this role has no rights on.
        cur.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s AND c.relkind IN ('r', 'p')",
            (SCHEMA,),
        )
        present = {name for (name,) in cur.fetchall()}
    return [t for t in TABLES if t not in present]


def table_counts(conn: psycopg2.extensions.connection) -> dict[str, int]:
    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for table in TABLES:
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(qualified(table)))
            row = cur.fetchone()
            counts[table] = int(row[0]) if row else 0
    return counts


def new_uuid(rng: random.Random) -> uuid.UUID:
    """A v4 UUID drawn from rng, so seeded data is reproducible (uuid.uuid4 is not)."""
    return uuid.UUID(int=rng.getrandbits(128), version=4)


def money(cents: int) -> Decimal:
    return (Decimal(cents) / 100).quantize(CENT)


def line_total(quantity: int, unit_price: Decimal, discount_pct: Decimal) -> Decimal:
    return (quantity * unit_price * (100 - discount_pct) / 100).quantize(CENT, ROUND_HALF_UP)


def person_name(rng: random.Random) -> tuple[str, str]:
    return rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)


def product_name(rng: random.Random) -> str:
    return f"{rng.choice(ADJECTIVES).title()} {rng.choice(MATERIALS)} {rng.choice(NOUNS)}"


def description(rng: random.Random, name: str, chars: int) -> str:
    """Marketing copy of at least `chars` characters. The reference numbers keep every product's
    text distinct although the phrases repeat."""
    paragraphs: list[str] = []
    size = 0
    while size < chars:
        sentences = [f"The {name} is {rng.choice(ADJECTIVES)} and {rng.choice(ADJECTIVES)}."]
        sentences += [f"{p} (ref. {rng.randrange(10**6):06d})." for p in rng.sample(_PHRASES, 4)]
        sentences.append(f"Made of {rng.choice(MATERIALS)}; available in {rng.choice(COLORS)}.")
        paragraphs.append(" ".join(sentences))
        size += len(paragraphs[-1]) + 2
    return "\n\n".join(paragraphs)
