"""The PostgreSQL warehouse: one transaction per flush (COPY into staging, one MERGE per table,
dead letters, Kafka offsets), so rows and offsets are stored together or not at all."""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg2
import psycopg2.extensions
from psycopg2 import sql
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from cdc.backfill import handover
from cdc.buffer import TableBatch
from cdc.decode.toast import is_unavailable
from cdc.errors import ConfigError, TerminalError
from cdc.events import DDL_TABLE, ChangeEvent, Column, Op, TableId, TableSchema, Version, new_tuple
from cdc.fastpath import FastRows, load
from cdc.schema.policy import Policies
from cdc.warehouse import (
    DeadLetter,
    Flush,
    FlushResult,
    Hold,
    Progress,
    StoredLetter,
    TopicPartition,
    bootstrap,
    drift,
    keyless,
    ledger,
    naming,
)
from cdc.warehouse import statements as stmt
from cdc.warehouse.binary_copy import binary_codes
from cdc.warehouse.copy import staging_text
from cdc.warehouse.drift import HELD, Drift, Held, announce
from cdc.warehouse.errors import describe, is_row_level, translate

log = logging.getLogger(__name__)
COPY_CHUNK = 1 << 20  # bytes psycopg2 hands to libpq per call while it COPYs a staging table

_T = TypeVar("_T")
_TABLE_MAP_LOCK = 7_241_001  # advisory lock serialising target-name choices across sync processes


class PostgresWarehouse:
    def __init__(
        self,
        url: str,
        *,
        schema: str,
        group: str,
        soft_delete: bool = False,
        table_name_format: str = naming.DEFAULT_FORMAT,
        policies: Policies | None = None,
        queue_alerts: bool = False,
    ) -> None:
        # NullPool: cdc holds one connection for its whole life and replaces it after a failure.
        # connect_timeout: a host that drops packets must fail (and be retried), not hang a flush.
        self._engine = create_engine(
            make_url(url).set(drivername="postgresql+psycopg2"),
            poolclass=NullPool,
            connect_args={"connect_timeout": 10},
        )
        self._schema = schema
        self._group = group
        self._soft = soft_delete
        self._format = table_name_format
        self._conn: Any = None
        self._raw: Any = None
        self._targets: dict[TableId, stmt.Target] = {}
        self._ensured: set[stmt.Target] = set()  # tables known to exist in the warehouse
        self._drift = Drift(policies or Policies(), queue_alerts=queue_alerts)
        self._staging: set[str] = set()

    # -- connection --------------------------------------------------------------------------
    def _connection(self) -> Any:
        if self._conn is None or self._conn.closed:
            self._forget()
            what = "connecting"
            try:
                # Keep SQLAlchemy's wrapper referenced: when it is collected, it closes the connection.
                self._raw = self._engine.raw_connection()
                self._conn = self._raw.dbapi_connection
                what = f"creating cdc's tables and schema {self._schema!r}"
                self._bootstrap()
            except psycopg2.Error as exc:
                self._forget()
                raise translate(exc, what) from exc
        return self._conn

    def prepare(self) -> None:
        """Connect and create what cdc needs in the warehouse, so that a wrong password or a
        missing privilege stops a command before it starts, not at its first flush."""
        self._connection()

    def _bootstrap(self) -> None:
        with self._conn.cursor() as cur:
            cur.execute("SHOW server_version_num")
            (version,) = cur.fetchone()
            if int(version) < 150000:
                raise ConfigError(
                    f"the warehouse runs PostgreSQL {int(version) // 10000}; cdc needs 15 or newer (MERGE).",
                    "point CDC_WAREHOUSE_URL at PostgreSQL 15+",
                )
            # money's text form follows lc_monetary; the encoders write the C locale's.
            cur.execute("SET lc_monetary = 'C'")
            # A flush's MERGE joins a few thousand staged rows to the target. The planner prefers a
            # hash join, which reads the whole target every flush: a cost that grows with the table
            # (measured: 27k -> 19k events/s while a table grew to 500k rows). An index nested loop
            # costs per staged row, whatever the target's size.
            cur.execute("SET enable_hashjoin = off")
            cur.execute("SET enable_mergejoin = off")
            bootstrap.ensure(cur)
            cur.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", (self._schema,))
            if cur.fetchone() is None:
                # Two processes creating it at once: PostgreSQL's IF NOT EXISTS is no lock, and the
                # second failed on pg_namespace's unique index (23505). One at a time, then.
                cur.execute("SELECT pg_advisory_xact_lock(%s)", (bootstrap.LOCK,))
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self._schema)))
        self._conn.commit()

    def _forget(self) -> None:
        """Drop the connection and everything cached about what it created (after a rollback the
        cache could describe tables that were never committed)."""
        # A broken connection may fail to roll back or close; it is gone either way.
        if self._conn is not None and not self._conn.closed:
            with contextlib.suppress(psycopg2.Error):
                self._conn.rollback()
        if self._raw is not None:
            with contextlib.suppress(Exception):
                self._raw.invalidate()
        self._raw = None
        self._conn = None
        self._targets.clear()
        self._ensured.clear()
        self._drift.forget()
        self._staging.clear()

    def close(self) -> None:
        self._forget()
        self._engine.dispose()

    # -- offsets and dead letters (cdc/warehouse/ledger.py) -----------------------------------
    def stored_offsets(self, group: str, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        stored = self._read(lambda cur: ledger.stored_offsets(cur, group), "reading stored offsets")
        return {tp: stored[tp] for tp in partitions if tp in stored}

    def dead_letters(
        self, group: str, *, include_replayed: bool = False, ids: list[int] | None = None
    ) -> list[StoredLetter]:
        return self._read(
            lambda cur: ledger.dead_letters(cur, group, include_replayed=include_replayed, ids=ids),
            "reading the dead-letter table",
        )

    def _read(self, query: Callable[[Any], _T], what: str) -> _T:
        """A read of cdc's tables, in a transaction of its own."""
        conn = self._connection()
        try:
            with conn.cursor() as cur:
                found = query(cur)
            conn.commit()
        except psycopg2.Error as exc:
            self._forget()
            raise translate(exc, what) from exc
        return found

    # -- flush -------------------------------------------------------------------------------
    def apply(self, flush: Flush) -> FlushResult:
        conn = self._connection()
        work = _Work(list(flush.dead))
        try:
            with conn.cursor() as cur:
                # Before anything is written: a backfill registering a snapshot waits for this.
                work.handovers = handover.load(
                    cur, self._schema, [b.schema.table for b in flush.tables if b.schema.table != DDL_TABLE]
                )
                if flush.replaying:
                    ledger.lock_letters(cur, list(flush.replaying.values()))
                # The source's DDL first: drift reads it when a table's schema changed in this flush.
                for batch in sorted(flush.tables, key=lambda b: b.schema.table != DDL_TABLE):
                    self._apply_table(cur, batch, work, replaying=bool(flush.replaying))
                ledger.write_dead(cur, self._group, work.dead)
                ledger.write_progress(cur, work.progress)
                ledger.write_offsets(cur, self._group, _held_back(flush.offsets, work.held))
                if flush.replaying:
                    failed = {d.origin for d in work.dead}
                    ledger.mark_replayed(cur, [i for origin, i in flush.replaying.items() if origin not in failed])
            conn.commit()
        except psycopg2.Error as exc:
            self._forget()
            raise translate(exc, "applying a flush") from exc
        except BaseException:
            self._forget()
            raise
        finally:
            announcements = list(self._drift.announcements)
            self._drift.announcements.clear()
        announce(announcements)  # committed: now, and only now, they happened
        return FlushResult(
            rows=work.rows,
            dead=len(work.dead),
            tables=len(flush.tables),
            dead_origins=tuple(d.origin for d in work.dead),
            skipped=work.skipped,
            held=work.held,
            schema_changes=len(announcements),
            progress={str(t): p for t, p in work.progress.items()},
        )

    def _apply_table(self, cur: Any, batch: TableBatch, work: _Work, *, replaying: bool) -> None:
        if batch.schema.table == DDL_TABLE:
            self._drift.record_ddl(cur, batch.events(), self, self._schema)
            return
        oldest = batch.fast.oldest() if batch.fast is not None else None
        if oldest is not None and _kept_applies(oldest, work.handovers.get(batch.schema.table)):
            self._apply_kept(cur, batch, oldest, work)
            return
        backfilled, events = _met_backfill(cur, batch, work)
        target, created = self._target(cur, batch.schema)
        if batch.schema.table in work.held_tables:
            work.hold(batch, events)  # a later batch of a table held earlier in this flush
            return
        # A truncate alone carries no key (and so no shape to compare): only whether the table is held.
        schema: TableSchema | Held = batch.schema
        if events:
            schema = self._drift.resolve(cur, target, batch.schema, min(e.version for e in events), created)
        elif self._drift.is_held(cur, target):
            schema = HELD
        if isinstance(schema, Held):
            work.hold(batch, events)
            return
        work.progressed(target, batch)
        if batch.truncated_at is not None:
            version = batch.truncated_at
            params: tuple[int, ...] = (version.commit_lsn, version.lsn)
            if self._soft:
                params = (batch.truncated_ts_ms or 0, *params)
            cur.execute(stmt.truncate(target, self._soft), params)
            self._drift.truncated(cur, target, batch.schema.table, version, soft=self._soft)
        if not events:
            return
        if batch.keyed:
            self._merge(cur, target, schema, events, work)
            if backfilled is not None and backfilled.running:
                self._keep_deleted_keys(cur, target, schema)
            return
        if not replaying:
            # A dead letter is replayed on purpose, below the high-water mark its own flush set.
            fresh = keyless.unapplied(cur, target, events)
            work.skipped += len(events) - len(fresh)
            events = fresh
        self._apply_unkeyed(cur, target, schema, events, work)

    def _apply_kept(self, cur: Any, batch: TableBatch, oldest: tuple[int, int], work: _Work) -> None:
        """A keyed batch of the fast path's events kept in the extension (cdc/buffer.py), no
        truncate among them and no backfill of the table: _apply_table's steps, with the rows'
        COPY text written by the extension and no event made, unless a stage needs them (a held
        table, columns changed by drift, a row the warehouse refuses)."""
        target, created = self._target(cur, batch.schema)
        if batch.schema.table in work.held_tables:
            work.hold(batch, batch.events())
            return
        schema = self._drift.resolve(cur, target, batch.schema, new_tuple(Version, oldest), created)
        if isinstance(schema, Held):
            work.hold(batch, batch.events())
            return
        work.progressed(target, batch)
        if schema.columns is batch.schema.columns:
            self._merge(cur, target, schema, [], work, kept=batch)
        else:  # staged for other columns than the warehouse's now: encoded from the images
            self._merge(cur, target, schema, batch.events(), work)

    def _merge(  # noqa: PLR0917
        self,
        cur: Any,
        target: stmt.Target,
        schema: TableSchema,
        events: list[ChangeEvent],
        work: _Work,
        kept: TableBatch | None = None,
    ) -> None:
        """MERGE the events into the target (or, with `kept`, the rows its FastRows keeps)."""
        staging = self._staging_for(cur, target, schema.columns)
        cur.execute("SAVEPOINT cdc_rows")
        rejected: list[DeadLetter] = []  # kept only if the set is applied (a split finds them again)
        try:
            if kept is not None and kept.fast is not None:
                copied = len(kept.fast)
                self._copy_kept(cur, staging, schema.columns, kept.fast)
            else:
                copied = self._copy(cur, staging, schema.columns, events, rejected)
            for event in events:
                if event.old_key is not None:
                    self._fill_from_old_key(cur, target, staging, schema, event)
            cur.execute(stmt.merge(target, staging, schema.columns, schema.key, self._soft))
            changed = max(cur.rowcount, 0)
        except psycopg2.Error as exc:
            if not is_row_level(exc):
                raise
            cur.execute("ROLLBACK TO SAVEPOINT cdc_rows")
            self._split(cur, target, schema, kept.events() if kept is not None else events, work=work, exc=exc)
            return
        cur.execute("RELEASE SAVEPOINT cdc_rows")
        work.dead.extend(rejected)
        # A staged image that changed nothing: the warehouse held that version or a newer one.
        work.rows += changed
        work.skipped += copied - changed

    def _keep_deleted_keys(self, cur: Any, target: stmt.Target, schema: TableSchema) -> None:
        """A backfill of the table runs: keep the keys this flush deleted (cdc.backfill_deleted),
        so that it does not write them again from a snapshot older than the delete."""
        staging = self._staging_for(cur, target, schema.columns)
        cur.execute(stmt.keep_deleted_keys(target, staging, schema.key))

    def _fill_from_old_key(
        self, cur: Any, target: stmt.Target, staging: str, schema: TableSchema, event: ChangeEvent
    ) -> None:
        """A key change whose create still has unchanged-TOAST placeholders (the old key's row was
        not in the buffer): copy those values from the old key's stored row, before the MERGE
        deletes it."""
        after = event.after or {}
        unchanged = [c for c in schema.columns if c.varlena and is_unavailable(after.get(c.name))]
        if not unchanged or event.key is None or event.old_key is None:
            return
        key = [c for c in map(schema.column, schema.key) if c is not None]
        params = [c.encode(v) for c, v in zip(key, event.key, strict=True)]
        params += [c.encode(v) for c, v in zip(key, event.old_key, strict=True)]
        cur.execute(stmt.fill_from_old_key(target, staging, key, unchanged), params)
        if cur.rowcount == 0:
            log.warning(
                "%s: the key change %s -> %s left %s unchanged, and the old key's row is not in %s.%s to copy "
                "them from; they are stored as NULL. Fix: update those columns of the row in the source "
                "(or re-snapshot the table) so that Debezium sends their values",
                event.table,
                event.old_key,
                event.key,
                ", ".join(c.name for c in unchanged),
                target.schema,
                target.table,
            )

    def _split(
        self,
        cur: Any,
        target: stmt.Target,
        schema: TableSchema,
        events: list[ChangeEvent],
        *,
        work: _Work,
        exc: psycopg2.Error,
    ) -> None:
        """A row the warehouse cannot store failed the whole set: find it by halving, dead-letter
        it, apply the rest."""
        if len(events) == 1:
            work.dead.append(_refused(events[0], target, exc))
            return
        middle = len(events) // 2
        self._merge(cur, target, schema, events[:middle], work)
        self._merge(cur, target, schema, events[middle:], work)

    def _copy(
        self, cur: Any, staging: str, columns: tuple[Column, ...], events: list[ChangeEvent], dead: list[DeadLetter]
    ) -> int:
        """COPY the events into staging; an event with a value that cannot be encoded is dead-lettered.
        Returns how many rows were copied."""
        text, rejected = staging_text(events, columns)
        for event, reason in rejected:
            dead.append(DeadLetter(event.origin, event.raw_key, event.raw_value, reason))
        self._copy_text(cur, staging, columns, text)
        return len(events) - len(rejected)

    def _copy_kept(self, cur: Any, staging: str, columns: tuple[Column, ...], rows: FastRows) -> None:
        codes = binary_codes(columns)
        data = rows.staging_binary(codes) if codes is not None else None
        if data is not None:
            self._copy_data(cur, staging, columns, data, binary=True)
        else:
            self._copy_data(cur, staging, columns, rows.staging_bytes(), binary=False)

    def _copy_text(self, cur: Any, staging: str, columns: tuple[Column, ...], text: str) -> None:
        extension = load()
        codes = binary_codes(columns) if extension is not None else None
        data = extension.copy_binary(codes, text) if extension is not None and codes is not None else None
        if data is not None:
            self._copy_data(cur, staging, columns, data, binary=True)
        else:
            self._copy_data(cur, staging, columns, text.encode(), binary=False)

    def _copy_data(self, cur: Any, staging: str, columns: tuple[Column, ...], data: bytes, *, binary: bool) -> None:
        """COPY the staging rows (cdc/warehouse/binary_copy.py says when in binary)."""
        # psycopg2 reads the file in `size` chunks, taking the GIL back for each: its default of
        # 8 KiB meant hundreds of hand-overs with the loop's thread per flush.
        command = stmt.copy_into(staging, stmt.staging_columns(columns), binary=binary).as_string(cur)
        cur.copy_expert(command, io.BytesIO(data), size=COPY_CHUNK)

    def _apply_unkeyed(
        self,
        cur: Any,
        target: stmt.Target,
        schema: TableSchema,
        events: list[ChangeEvent],
        work: _Work,
    ) -> None:
        """Events of a table without a primary key, in order: inserts in bulk, each update or
        delete on one row equal to its old image (which REPLICA IDENTITY FULL provides). A row the
        warehouse refuses fails the set: then each event is applied alone, and the refused ones
        are dead-lettered (order matters here, so no halving)."""
        if not events:
            return
        # Made before the savepoint: a rollback to it must not take the staging table along.
        staging = self._staging_for(cur, target, schema.columns)
        cur.execute("SAVEPOINT cdc_rows")
        attempt = _Work([])
        try:
            self._apply_unkeyed_in_order(cur, target, staging, schema, events, attempt)
        except psycopg2.Error as exc:
            if not is_row_level(exc):
                raise
            cur.execute("ROLLBACK TO SAVEPOINT cdc_rows")
            for event in events:
                cur.execute("SAVEPOINT cdc_row")
                one = _Work([])
                try:
                    self._apply_unkeyed_in_order(cur, target, staging, schema, [event], one)
                except psycopg2.Error as refusal:
                    if not is_row_level(refusal):
                        raise
                    cur.execute("ROLLBACK TO SAVEPOINT cdc_row")
                    work.dead.append(_refused(event, target, refusal))
                    continue
                cur.execute("RELEASE SAVEPOINT cdc_row")
                work.add(one)
            return
        cur.execute("RELEASE SAVEPOINT cdc_rows")
        work.add(attempt)

    def _apply_unkeyed_in_order(  # noqa: PLR0917
        self,
        cur: Any,
        target: stmt.Target,
        staging: str,
        schema: TableSchema,
        events: list[ChangeEvent],
        work: _Work,
    ) -> None:
        inserts: list[ChangeEvent] = []

        def flush_inserts() -> None:
            if inserts:
                work.rows += self._copy(cur, staging, schema.columns, inserts, work.dead)
                cur.execute(stmt.insert_from_staging(target, staging, schema.columns))
                cur.execute(sql.SQL("TRUNCATE {}").format(sql.Identifier(staging)))
                inserts.clear()

        for event in events:
            if event.op in (Op.CREATE, Op.READ):
                inserts.append(event)
                continue
            flush_inserts()
            if event.before is None:
                work.dead.append(
                    DeadLetter(
                        event.origin,
                        event.raw_key,
                        event.raw_value,
                        f"{event.table} has no primary key and its {event.op.value} event carries no old row "
                        f"image, so the row to change cannot be found. Fix: ALTER TABLE {event.table} "
                        "REPLICA IDENTITY FULL in the source (cdc connector apply does this for captured "
                        "tables without a primary key), then replay the dead letters",
                    )
                )
                continue
            image = _params(schema.columns, event.before)
            if event.op is Op.UPDATE:
                cur.execute(stmt.delete_one(target, schema.columns, live_only=self._soft), image)
                inserts.append(event)
            elif self._soft:
                version = event.version
                marked = [event.commit_ts_ms, version.commit_lsn, version.lsn, *image]
                cur.execute(stmt.mark_one_deleted(target, schema.columns), marked)
                work.rows += cur.rowcount
            else:
                cur.execute(stmt.delete_one(target, schema.columns), image)
                work.rows += cur.rowcount
        flush_inserts()

    # -- tables ------------------------------------------------------------------------------
    def _target(self, cur: Any, schema: TableSchema) -> tuple[stmt.Target, bool]:
        """The table's warehouse table, and whether it was made just now (from this schema).
        Its columns are schema drift's business (cdc/warehouse/drift.py)."""
        target = self._targets.get(schema.table)
        if target is None:
            target = self._map_table(cur, schema.table)
            self._targets[schema.table] = target
        created = False
        if target not in self._ensured:
            created = self._ensure_table(cur, target, schema)
            self._ensured.add(target)
        for column in schema.columns:
            _check_name(schema.table, column)
        return target, created

    def _map_table(self, cur: Any, table: TableId) -> stmt.Target:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_TABLE_MAP_LOCK,))
        mapped = ledger.table_map(cur, self._schema)
        target = mapped.get(table)
        if target is not None:
            return target
        target = naming.plan([table], self._schema, self._format, mapped)[table]  # raises on a clash
        cur.execute(
            "INSERT INTO cdc.table_map (source_schema, source_table, target_schema, target_table) "
            "VALUES (%s, %s, %s, %s)",
            (table.schema, table.name, target.schema, target.table),
        )
        log.info("replicating %s into %s", table, target)
        return target

    def target_for(self, cur: Any, table: TableId) -> stmt.Target:
        """The warehouse table of a source table: the one it has, else the one it would get."""
        known = self._targets.get(table) or ledger.table_map(cur, self._schema).get(table)
        return known or naming.target_of(table, self._schema, self._format)

    def follow_rename(self, cur: Any, old: TableId, new: TableId) -> str:
        """A source table renamed: its warehouse table takes the name the new one would get, with
        its rows, mapping, drift state and history, so replication goes on into it. Returns what was done."""
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (_TABLE_MAP_LOCK,))
        mapped = ledger.table_map(cur, self._schema)
        before = mapped.pop(old, None)
        if before is None:
            return f"recorded: {old} was not replicated into {self._schema}"
        if new in mapped:
            return f"recorded: {new} is replicated into {mapped[new]} already; {before} keeps the rows of {old}"
        try:
            after = naming.plan([new], self._schema, self._format, mapped)[new]
        except ConfigError as exc:
            return f"kept {before}: {exc.problem}"
        if after != before:
            cur.execute(sql.SQL("ALTER TABLE {} RENAME TO {}").format(before.ident, sql.Identifier(after.table)))
        cur.execute(
            "UPDATE cdc.table_map SET source_schema = %s, source_table = %s, target_table = %s "
            "WHERE source_schema = %s AND source_table = %s AND target_schema = %s",
            (new.schema, new.name, after.table, old.schema, old.name, self._schema),
        )
        cur.execute(
            "UPDATE cdc.schema_state SET target_table = %s, source_schema = %s, source_table = %s "
            "WHERE target_schema = %s AND target_table = %s",
            (after.table, new.schema, new.name, before.schema, before.table),
        )
        cur.execute(
            "UPDATE cdc.keyless_position SET target_table = %s WHERE target_schema = %s AND target_table = %s",
            (after.table, before.schema, before.table),
        )
        # Its history too: changes detected from the DDL log await the table's next row under its new name.
        cur.execute(
            "UPDATE cdc.schema_change SET target_table = %s WHERE target_schema = %s AND target_table = %s",
            (after.table, before.schema, before.table),
        )
        self._targets.pop(old, None)
        self._ensured.discard(before)
        self._drift.forget_target(before)
        return (
            f"renamed warehouse table {before} to {after}, rows kept; run cdc connector apply so that Debezium "
            f"captures {new} under its new name"
        )

    def check_names(self, tables: list[TableId]) -> None:
        """Before anything is read: two of these tables that would share a warehouse table are an
        error, and tables that keep a name given before (cdc.table_map) under another rule are named."""
        mapped = self._read(lambda cur: ledger.table_map(cur, self._schema), "reading cdc.table_map")
        naming.plan(tables, self._schema, self._format, mapped)
        kept = {
            source: target
            for source, target in mapped.items()
            if target != naming.target_of(source, self._schema, self._format)
        }
        if kept:
            shown = ", ".join(f"{s} -> {t}" for s, t in sorted(kept.items())[:10])
            log.info(
                "%d table(s) keep the warehouse name cdc.table_map gave them before, not the one "
                "CDC_TABLE_NAME_FORMAT=%r gives: %s%s (the README's 'Warehouse table names' says how to move them)",
                len(kept),
                self._format,
                shown,
                f" and {len(kept) - 10} more" if len(kept) > 10 else "",
            )

    def held_tables(self, tables: list[TableId]) -> set[TableId]:
        """Which of these tables their schema policy holds (until `cdc schema accept`)."""
        held = self._read(lambda cur: drift.held_tables(cur, self._schema), "reading cdc.schema_state")
        return held & set(tables)

    def _ensure_table(self, cur: Any, target: stmt.Target, schema: TableSchema) -> bool:
        """Make the table if it is missing (True: made now)."""
        cur.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (target.schema, target.table),
        )
        existing = {r[0] for r in cur.fetchall()}
        if existing and "_cdc_commit_lsn" not in existing:
            raise ConfigError(
                f"{schema.table} would be replicated into {target}, but that table exists and was not made by cdc "
                "(it has no _cdc_commit_lsn column).",
                "rename or drop that table, or choose another CDC_WAREHOUSE_SCHEMA or CDC_TABLE_NAME_FORMAT",
            )
        if existing:
            return False
        for column in schema.columns:
            _check_name(schema.table, column)
        cur.execute(stmt.create_table(target, schema.columns, schema.key))
        return True

    def _staging_for(self, cur: Any, target: stmt.Target, columns: tuple[Column, ...]) -> str:
        shape = repr((target, [(c.name, c.pg_type) for c in columns])).encode()
        name = "_cdc_stage_" + hashlib.sha256(shape).hexdigest()[:16]
        if name not in self._staging:
            cur.execute(stmt.create_staging(name, columns))
            self._staging.add(name)
        return name


@dataclass(slots=True)
class _Work:
    """What one flush did so far."""

    dead: list[DeadLetter]  # given with the flush, and found while applying it
    rows: int = 0  # rows the warehouse changed
    skipped: int = 0  # events it already held
    held: dict[TopicPartition, Hold] = field(default_factory=dict)  # partition -> first offset not applied
    held_tables: set[TableId] = field(default_factory=set)
    handovers: dict[TableId, handover.Handover] = field(default_factory=dict)  # tables backfilled
    progress: dict[stmt.Target, Progress] = field(default_factory=dict)  # per table applied

    def progressed(self, target: stmt.Target, batch: TableBatch) -> None:
        newest = batch.newest()
        if newest is not None:
            self.progress.setdefault(target, Progress()).add(batch.ops, *newest)

    def hold(self, batch: TableBatch, events: list[ChangeEvent]) -> None:
        """Nothing of this batch is applied, and the offsets of its partitions stop before it."""
        self.held_tables.add(batch.schema.table)
        origins = [e.origin for e in events]
        if batch.truncate_origin is not None:
            origins.append(batch.truncate_origin)
        table = batch.schema.table
        for topic, number, offset in origins:
            known = self.held.get((topic, number))
            if known is None or offset < known.offset:
                self.held[topic, number] = Hold(offset, table)

    def add(self, other: _Work) -> None:
        self.dead.extend(other.dead)
        self.rows += other.rows
        self.skipped += other.skipped


def _met_backfill(cur: Any, batch: TableBatch, work: _Work) -> tuple[handover.Handover | None, list[ChangeEvent]]:
    """The batch's events, ordered against the table's backfills (cdc/backfill/handover.py); while
    one runs, its ranges wait for this flush to end (and this flush for the range being written)."""
    events = batch.events()
    backfilled = work.handovers.get(batch.schema.table)
    if backfilled is not None:
        if backfilled.running:
            cur.execute(handover.WRITE_EXCLUSIVE, (handover.write_lock_key(batch.schema.table),))
        backfilled.raise_versions(events)
    return backfilled, events


def _kept_applies(oldest: tuple[int, int] | None, backfilled: handover.Handover | None) -> bool:
    """Whether a batch the extension keeps may be written as it is: its table has no backfill,
    or none running and every change sorts after the newest snapshot (raise_versions would change
    no version). Otherwise its rows are made events and go the way every batch goes."""
    if backfilled is None:
        return True
    if backfilled.running:
        return False
    return not backfilled.snapshots or (oldest is not None and oldest[0] >= backfilled.snapshots[0].lsn)


def _held_back(offsets: dict[TopicPartition, int], held: dict[TopicPartition, Hold]) -> dict[TopicPartition, int]:
    """The offsets to store: a held table's partitions stop at its first event not applied."""
    if not held:
        return offsets
    return {p: min(o, held[p].offset) if p in held else o for p, o in offsets.items()}


def _refused(event: ChangeEvent, target: stmt.Target, exc: psycopg2.Error) -> DeadLetter:
    return DeadLetter(
        event.origin,
        event.raw_key,
        event.raw_value,
        f"the warehouse cannot store this row of {event.table} in {target.schema}.{target.table}: {describe(exc)}",
    )


def _params(columns: tuple[Column, ...], image: dict[str, Any]) -> list[str | None]:
    values: list[str | None] = []
    for column in columns:
        value = image.get(column.name)
        values.append(None if value is None else column.encode(value))
    return values


def _check_name(table: TableId, column: Column) -> None:
    if column.name.startswith(stmt.META_PREFIX):
        raise TerminalError(
            f"column {column.name!r} of {table} uses the prefix {stmt.META_PREFIX!r}, which cdc reserves "
            "for its metadata columns.",
            "rename the column in the source, or exclude the table (CDC_EXCLUDE_TABLES)",
        )
