"""A paced, mixed workload on a test's own source tables, run in a background thread.

`create_tables` makes four tables in a lane's source schema: `accounts` (bigint key), `pairs`
(composite key), `docs` (a body stored out of line, so updates that leave it alone reach Debezium
as unchanged-TOAST placeholders) and `ledger` (no primary key, with rows that are exact duplicates
of each other). `Workload` then runs small transactions against them at a steady rate: inserts,
updates, deletes and primary-key changes, one to three per transaction, the table sizes held near a
cap so that the comparison at the end stays fast.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import psycopg2
import psycopg2.extensions
from psycopg2.extras import Json

from tests.db import execute

TABLES = ("accounts", "pairs", "docs", "ledger")
KEYLESS = ("ledger",)


def create_tables(source_url: str, schema: str) -> None:
    """The workload's tables, each seeded with a few rows, in a new schema."""
    s = f'"{schema}"'
    execute(
        source_url,
        f"""
        CREATE SCHEMA {s};
        CREATE TABLE {s}.accounts (id bigint PRIMARY KEY, owner text NOT NULL, balance numeric(14,2) NOT NULL,
                                   tags text[], updated_at timestamptz NOT NULL DEFAULT now());
        CREATE TABLE {s}.pairs (a integer, b integer, qty integer NOT NULL, label text, PRIMARY KEY (a, b));
        CREATE TABLE {s}.docs (id bigint PRIMARY KEY, rev integer NOT NULL, title text, body text NOT NULL);
        ALTER TABLE {s}.docs ALTER COLUMN body SET STORAGE EXTERNAL;
        CREATE TABLE {s}.ledger (account bigint, kind text NOT NULL, amount numeric(12,2), note jsonb);
        """,
    )


def body(rng: random.Random, size: int = 3000) -> str:
    """Incompressible text above the TOAST threshold (about 2 kB): stored out of line."""
    return rng.randbytes(size // 2).hex()


class _Ids:
    """The live keys of one table, for O(1) random picks and removals."""

    def __init__(self) -> None:
        self._list: list[tuple[int, ...]] = []
        self._index: dict[tuple[int, ...], int] = {}

    def __len__(self) -> int:
        return len(self._list)

    def add(self, key: tuple[int, ...]) -> None:
        self._index[key] = len(self._list)
        self._list.append(key)

    def remove(self, key: tuple[int, ...]) -> None:
        i = self._index.pop(key)
        last = self._list.pop()
        if i < len(self._list):
            self._list[i] = last
            self._index[last] = i

    def pick(self, rng: random.Random) -> tuple[int, ...] | None:
        return self._list[rng.randrange(len(self._list))] if self._list else None


@dataclass
class Workload:
    """Transactions at `rate` per second on the tables of `create_tables`, until `stop()`."""

    source_url: str
    schema: str
    rate: float = 300.0
    seed: int | None = None
    # Rows per table around which inserts and deletes balance. The docs hold a third of it, and the
    # keyless ledger a fifth: the warehouse applies each update or delete of a keyless row as its own
    # statement, scanning the table for an equal row, so a large one makes flushes slow.
    cap: int = 1500
    transactions: int = 0
    ops: Counter[str] = field(default_factory=Counter)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)  # noqa: S311 - fake data, not secrets
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"workload-{self.schema}", daemon=True)
        self._ids = {table: _Ids() for table in TABLES if table not in KEYLESS}
        self._ledger_rows = 0
        self._next = 1
        self._schema = '"' + self.schema.replace('"', '""') + '"'

    # -- control ----------------------------------------------------------------------------
    def start(self) -> Workload:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the transaction under way; re-raise what stopped the workload early, if anything."""
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the workload did not stop within 60 s"
        if self.error is not None:
            raise AssertionError(f"the workload failed after {self.transactions} transactions") from self.error

    def wait_for(self, transactions: int, timeout: float = 60) -> None:
        """Block until at least this many transactions have committed (in total)."""
        deadline = time.monotonic() + timeout
        while self.transactions < transactions:
            assert self.error is None, f"the workload failed: {self.error!r}"
            assert time.monotonic() < deadline, f"the workload ran only {self.transactions} transactions"
            time.sleep(0.05)

    def __enter__(self) -> Workload:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        if self._thread.is_alive() or self.error is not None:
            self.stop()

    # -- the loop ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            conn = psycopg2.connect(self.source_url, application_name="cdc-test-workload")
        except BaseException as exc:  # reported by stop()
            self.error = exc
            return
        try:
            started = time.monotonic()
            n = 0
            while not self._stop.is_set():
                due = started + n / self.rate
                wait = due - time.monotonic()
                if wait > 0:
                    self._stop.wait(wait)
                    continue
                if wait < -2:  # fell behind by more than 2 s: drop the backlog rather than burst
                    started += -wait - 2
                n += 1
                self._transaction(conn)
        except BaseException as exc:  # reported by stop()
            self.error = exc
        finally:
            conn.close()

    def _transaction(self, conn: psycopg2.extensions.connection) -> None:
        done: list[str] = []
        undo: list[tuple[str, tuple[int, ...], bool]] = []  # (table, key, added) to revert on rollback
        try:
            with conn.cursor() as cur:
                for _ in range(self._rng.choice((1, 1, 2, 3))):
                    table = self._rng.choice(TABLES)
                    done.append(self._operation(cur, table, undo))
            conn.commit()
        except BaseException:
            conn.rollback()
            for table, key, added in reversed(undo):  # the in-memory keys follow the database
                if added:
                    self._ids[table].remove(key)
                else:
                    self._ids[table].add(key)
            raise
        self.transactions += 1
        self.ops.update(done)

    def _new_id(self) -> int:
        self._next += 1
        return self._next

    def _kind(self, size: int, cap: int) -> str:
        r = self._rng.random()
        if size == 0:
            return "insert"
        insert = 0.45 if size < cap else 0.05  # above the cap, deletes (0.15) outweigh inserts
        if r < insert:
            return "insert"
        if r < 0.75:
            return "update"
        if r < 0.9:
            return "delete"
        return "pk_change"

    def _operation(
        self, cur: psycopg2.extensions.cursor, table: str, undo: list[tuple[str, tuple[int, ...], bool]]
    ) -> str:
        if table == "ledger":
            return self._ledger(cur)
        ids = self._ids[table]
        kind = self._kind(len(ids), self.cap // 3 if table == "docs" else self.cap)
        if kind == "insert":
            new = self._insert(cur, table)
            ids.add(new)
            undo.append((table, new, True))
            return f"{table}.insert"
        key = ids.pick(self._rng)
        assert key is not None
        if kind == "update":
            self._update(cur, table, key)
            return f"{table}.update"
        ids.remove(key)
        undo.append((table, key, False))
        if kind == "delete":
            where = "a = %s AND b = %s" if table == "pairs" else "id = %s"
            cur.execute(f"DELETE FROM {self._schema}.{table} WHERE {where}", key)
            return f"{table}.delete"
        new = self._change_key(cur, table, key)
        ids.add(new)
        undo.append((table, new, True))
        return f"{table}.pk_change"

    def _insert(self, cur: psycopg2.extensions.cursor, table: str) -> tuple[int, ...]:
        rng, s = self._rng, self._schema
        if table == "accounts":
            new = self._new_id()
            cur.execute(
                f"INSERT INTO {s}.accounts (id, owner, balance, tags) VALUES (%s, %s, %s, %s)",
                (new, f"owner {new} ✓", rng.randint(0, 10**6) / 100, ["a", None, f"t{rng.randint(1, 9)}"]),
            )
            return (new,)
        if table == "pairs":
            pair = (rng.randint(1, 50), self._new_id())
            cur.execute(
                f"INSERT INTO {s}.pairs (a, b, qty, label) VALUES (%s, %s, %s, %s)",
                (*pair, rng.randint(1, 100), rng.choice((None, "x", "tab\there", "line\nbreak"))),
            )
            return pair
        new = self._new_id()
        cur.execute(
            f"INSERT INTO {s}.docs (id, rev, title, body) VALUES (%s, 0, %s, %s)", (new, f"doc {new}", body(rng))
        )
        return (new,)

    def _update(self, cur: psycopg2.extensions.cursor, table: str, key: tuple[int, ...]) -> None:
        rng, s = self._rng, self._schema
        if table == "accounts":
            cur.execute(
                f"UPDATE {s}.accounts SET balance = balance + %s, updated_at = now() WHERE id = %s",
                (rng.randint(-5000, 5000) / 100, key[0]),
            )
        elif table == "pairs":
            cur.execute(f"UPDATE {s}.pairs SET qty = qty + 1 WHERE a = %s AND b = %s", key)
        elif rng.random() < 0.7:  # the body is left alone: an unchanged-TOAST placeholder in the event
            cur.execute(f"UPDATE {s}.docs SET rev = rev + 1, title = %s WHERE id = %s", (f"rev {key[0]}", key[0]))
        else:
            cur.execute(f"UPDATE {s}.docs SET rev = rev + 1, body = %s WHERE id = %s", (body(rng), key[0]))

    def _change_key(self, cur: psycopg2.extensions.cursor, table: str, key: tuple[int, ...]) -> tuple[int, ...]:
        """A primary-key change: Debezium sends a delete of the old key and a create of the new one."""
        s = self._schema
        if table == "accounts":
            new = self._new_id()
            cur.execute(f"UPDATE {s}.accounts SET id = %s, owner = owner || '*' WHERE id = %s", (new, key[0]))
            return (new,)
        if table == "pairs":
            b = self._new_id()
            cur.execute(f"UPDATE {s}.pairs SET b = %s WHERE a = %s AND b = %s", (b, *key))
            return (key[0], b)
        # The body is rewritten too: with an unchanged TOASTed body the create of the new key would
        # carry only a placeholder (see test_primary_key_change_keeps_an_unchanged_toasted_value).
        new = self._new_id()
        cur.execute(f"UPDATE {s}.docs SET id = %s, body = %s WHERE id = %s", (new, body(self._rng), key[0]))
        return (new,)

    def _ledger(self, cur: psycopg2.extensions.cursor) -> str:
        """The table without a key: duplicate rows, updates and deletes of one row among equals."""
        rng, s = self._rng, self._schema
        kind = self._kind(self._ledger_rows, self.cap // 5)
        if kind == "insert":
            account = rng.randint(1, 40)
            row = (account, rng.choice(("credit", "debit")), rng.randint(1, 20) * 5, Json({"n": rng.randint(1, 3)}))
            copies = rng.choice((1, 1, 2))  # exact duplicates: only a multiset comparison tells them apart
            for _ in range(copies):
                cur.execute(f"INSERT INTO {s}.ledger (account, kind, amount, note) VALUES (%s, %s, %s, %s)", row)
            self._ledger_rows += copies
            return "ledger.insert"
        account = rng.randint(1, 40)
        one = f"ctid = (SELECT ctid FROM {s}.ledger WHERE account = %s LIMIT 1)"
        if kind == "delete":
            cur.execute(f"DELETE FROM {s}.ledger WHERE {one}", (account,))
            self._ledger_rows -= cur.rowcount
            return "ledger.delete"
        cur.execute(f"UPDATE {s}.ledger SET amount = amount + 1, note = NULL WHERE {one}", (account,))
        return "ledger.update"
