-- Warehouse-side bookkeeping of cdc, created by `cdc stack up` and by `cdc sync` on start.
-- Idempotent. Replicated tables live in their own schema(s); this schema is cdc's own.

CREATE SCHEMA IF NOT EXISTS cdc;

-- Kafka offsets, written in the same transaction as the rows they cover: the consumer seeks here
-- on start and on every partition assignment (exactly once in effect).
CREATE TABLE IF NOT EXISTS cdc.kafka_offsets (
    consumer_group text    NOT NULL,
    topic          text    NOT NULL,
    kafka_partition integer NOT NULL,
    next_offset    bigint  NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, topic, kafka_partition)
);

-- Messages that cannot be applied, kept whole with the reason; nothing is dropped silently.
CREATE TABLE IF NOT EXISTS cdc.dead_letter (
    id              bigserial PRIMARY KEY,
    consumer_group  text        NOT NULL,
    topic           text        NOT NULL,
    kafka_partition integer     NOT NULL,
    kafka_offset    bigint      NOT NULL,
    message_key     bytea,
    message_value   bytea,
    reason          text        NOT NULL,
    failed_at       timestamptz NOT NULL DEFAULT now(),
    replayed_at     timestamptz,
    UNIQUE (consumer_group, topic, kafka_partition, kafka_offset)
);

-- Which warehouse table each source table is replicated into, per warehouse schema. New entries
-- follow CDC_TABLE_NAME_FORMAT (a pure function of the source name); entries already here are
-- honoured, so a warehouse named by an earlier rule keeps its tables. Shared by every sync process.
CREATE TABLE IF NOT EXISTS cdc.table_map (
    source_schema text NOT NULL,
    source_table  text NOT NULL,
    target_schema text NOT NULL,
    target_table  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_schema, source_table, target_schema),
    UNIQUE (target_schema, target_table)
);

-- A warehouse made when a source table had one entry whatever the warehouse schema: widen the key,
-- so that two warehouse schemas of one database each name their own tables.
DO $$
BEGIN
    IF (SELECT array_length(conkey, 1) FROM pg_constraint
        WHERE conrelid = 'cdc.table_map'::regclass AND contype = 'p') = 2 THEN
        ALTER TABLE cdc.table_map DROP CONSTRAINT table_map_pkey,
            ADD PRIMARY KEY (source_schema, source_table, target_schema);
    END IF;
END $$;

-- Tables without a primary key: per warehouse table and Kafka partition, the source position of
-- the newest change applied: commit LSN, change LSN, and the change's order in its transaction
-- for the table (Debezium's transaction.data_collection_order: the rows of one COPY batch share
-- an LSN), or for snapshot reads, which share their snapshot's LSN, the Kafka offset. Written in
-- the flush's transaction; a change at or below it was applied already (Connect restart,
-- redelivery, another group, offsets reset) and is skipped.
CREATE TABLE IF NOT EXISTS cdc.keyless_position (
    target_schema   text    NOT NULL,
    target_table    text    NOT NULL,
    topic           text    NOT NULL,
    kafka_partition integer NOT NULL,
    commit_lsn      bigint  NOT NULL,
    lsn             bigint  NOT NULL,
    change_order    bigint  NOT NULL,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table, topic, kafka_partition)
);

-- Schema drift. Per warehouse table, the source table's shape last applied (columns as cdc maps
-- them, the primary key) and whether the table is held (policy halt) until `cdc schema accept`.
-- Compared with each new event schema, so a restart does not detect (or alert) a change again.
CREATE TABLE IF NOT EXISTS cdc.schema_state (
    target_schema text        NOT NULL,
    target_table  text        NOT NULL,
    source_schema text        NOT NULL,
    source_table  text        NOT NULL,
    columns       jsonb       NOT NULL,  -- [{"name", "type", "optional", "default"}] in source order
    key           jsonb       NOT NULL,  -- primary-key column names
    fingerprint   text        NOT NULL,  -- of columns + key: which shape this is
    layout        jsonb       NOT NULL,  -- the warehouse table's columns: {"name": "type"}
    stored_as     jsonb       NOT NULL DEFAULT '{}',  -- source column -> warehouse column, where they differ
    since_commit_lsn bigint   NOT NULL,  -- the source position from which this shape holds
    since_lsn     bigint      NOT NULL,
    held_for      text,                  -- the fingerprint of a change waiting for cdc schema accept
    accepted      text,                  -- the fingerprint cdc schema accept let through
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table)
);

-- Every schema change detected, once: what changed, before and after, where in the source, what
-- the table's policy did. Written in the transaction that applies it.
CREATE TABLE IF NOT EXISTS cdc.schema_change (
    id            bigserial   PRIMARY KEY,
    target_schema text        NOT NULL,
    target_table  text        NOT NULL,
    source_table  text        NOT NULL,
    change        text        NOT NULL,  -- the kind: column_added, column_renamed, type_widened...
    column_name   text,
    before        jsonb,
    after         jsonb,
    destructive   boolean     NOT NULL,
    statement     text,                  -- the DDL, when the source's DDL capture saw it
    commit_lsn    bigint,
    lsn           bigint,
    policy        text        NOT NULL,  -- evolve, alert, halt
    action        text        NOT NULL,  -- what cdc did, in words
    detected_at   timestamptz NOT NULL DEFAULT now(),
    dedupe        text        NOT NULL UNIQUE  -- one row per change, however often it is seen
);
-- A change the source's DDL log showed, recorded (and alerted) as it arrived: true until the first
-- row of the new shape says what was applied (the action is then rewritten).
ALTER TABLE cdc.schema_change ADD COLUMN IF NOT EXISTS awaiting boolean NOT NULL DEFAULT false;

-- Alerts waiting for the webhook (CDC_ALERT_WEBHOOK_URL), written in the same transaction as the
-- change they announce; a background sender delivers and marks them, retrying with backoff, so a
-- webhook that is down or slow delays nothing and loses nothing.
CREATE TABLE IF NOT EXISTS cdc.alert_outbox (
    id              bigserial   PRIMARY KEY,
    payload         jsonb       NOT NULL,  -- the request body, as it is posted
    scope           text        NOT NULL DEFAULT '',  -- the warehouse schema whose sync posts it
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    delivered_at    timestamptz
);
CREATE INDEX IF NOT EXISTS alert_outbox_pending ON cdc.alert_outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- The source's DDL as its event trigger recorded it (cdc.schema_ddl, sql/schema_capture.sql),
-- as it arrives through Kafka: exact renames (a column keeps its attnum), defaults, statements.
-- Drift reads it when an event schema shows a change.
CREATE TABLE IF NOT EXISTS cdc.source_ddl (
    id              bigint      PRIMARY KEY,  -- cdc.schema_ddl.id in the source
    commit_lsn      bigint      NOT NULL,
    lsn             bigint      NOT NULL,
    command_tag     text,
    object_identity text,
    table_oid       bigint,                   -- the source table's oid: a column is (oid, attnum)
    schema_before   text,
    table_before    text,
    schema_name     text,
    table_name      text,
    statement       text,
    columns_before  jsonb,
    columns_after   jsonb,
    key_before      jsonb,
    key_after       jsonb,
    received_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS source_ddl_table ON cdc.source_ddl (schema_name, table_name);
-- Which DDL log rows each warehouse schema has recorded its changes for (once each, as Debezium
-- may send a row again, and two warehouse schemas may replicate the same source table).
CREATE TABLE IF NOT EXISTS cdc.source_ddl_seen (
    target_schema text   NOT NULL,
    id            bigint NOT NULL,  -- cdc.source_ddl.id
    PRIMARY KEY (target_schema, id)
);

-- cdc backfill. One row per run of `cdc backfill` of a table into a warehouse schema: running
-- until every range is written (`--resume` continues the newest running one), then done.
CREATE TABLE IF NOT EXISTS cdc.backfill_run (
    id            bigserial   PRIMARY KEY,
    target_schema text        NOT NULL,
    target_table  text        NOT NULL,
    source_schema text        NOT NULL,
    source_table  text        NOT NULL,
    mode          text        NOT NULL,  -- direct, debezium
    filter        text,                  -- --where, as given
    key_columns   jsonb       NOT NULL,  -- the warehouse columns the ranges split, [] for ctid ranges
    state         text        NOT NULL DEFAULT 'running',  -- running, done
    rows          bigint      NOT NULL DEFAULT 0,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz
);
CREATE UNIQUE INDEX IF NOT EXISTS backfill_run_one_running
    ON cdc.backfill_run (target_schema, source_schema, source_table) WHERE state = 'running';
-- Its ranges, planned once: [lower, upper) of the key (each bound one text per key column, NULL
-- for open), done when their rows are written, under the snapshot whose position they carry.
CREATE TABLE IF NOT EXISTS cdc.backfill_range (
    run_id        bigint      NOT NULL REFERENCES cdc.backfill_run (id) ON DELETE CASCADE,
    number        integer     NOT NULL,
    lower_bound   text[],
    upper_bound   text[],
    rows          bigint,
    snapshot_lsn  bigint,
    done_at       timestamptz,
    PRIMARY KEY (run_id, number)
);
-- Every snapshot a backfill read a table under: the source position of its rows (P: the rows are
-- at version (P, 0)) and which transactions it saw (pg_current_snapshot()). `cdc sync` raises a
-- streamed change that sorts before P but whose transaction the snapshot did not see.
CREATE TABLE IF NOT EXISTS cdc.backfill_snapshot (
    target_schema text        NOT NULL,
    source_schema text        NOT NULL,
    source_table  text        NOT NULL,
    snapshot_lsn  bigint      NOT NULL,
    snapshot      text        NOT NULL,
    run_id        bigint      NOT NULL,
    taken_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, source_schema, source_table, snapshot_lsn)
);
-- While a backfill runs: the keys streamed deletes found no row for (the backfill may not have
-- written it yet), with the delete's version; the backfill does not write a key deleted after
-- its snapshot. Emptied when the run is done.
CREATE TABLE IF NOT EXISTS cdc.backfill_deleted (
    target_schema text   NOT NULL,
    target_table  text   NOT NULL,
    key           text   NOT NULL,  -- ROW(key columns)::text, as the warehouse types print it
    commit_lsn    bigint NOT NULL,
    lsn           bigint NOT NULL,
    PRIMARY KEY (target_schema, target_table, key)
);

-- Per warehouse table: the change events applied (counted before compaction, so a row updated ten
-- times between two flushes counts ten) and the newest applied change's source position and commit
-- time. Written in the flush's transaction; `cdc status` reads it, whether or not cdc sync runs.
CREATE TABLE IF NOT EXISTS cdc.table_progress (
    target_schema text        NOT NULL,
    target_table  text        NOT NULL,
    events        bigint      NOT NULL DEFAULT 0,
    commit_lsn    bigint      NOT NULL,
    lsn           bigint      NOT NULL,
    source_ts     timestamptz,            -- the newest applied change's commit time in the source
    applied_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target_schema, target_table)
);

-- The replication slot as cdc sync's guard last saw it, per warehouse schema (cdc/sync/slot_guard.py):
-- whether its retained WAL is above the alert limit (an alert per crossing, not per look), and a
-- gap in the changes (the slot lost or recreated) that stops cdc sync until `cdc verify` proves
-- every replicated table equal again.
CREATE TABLE IF NOT EXISTS cdc.slot_watch (
    slot_name           text        NOT NULL,
    scope               text        NOT NULL,  -- the warehouse schema
    confirmed_flush_lsn bigint,
    retained_bytes      bigint,
    retained_above      boolean     NOT NULL DEFAULT false,
    seen_at             timestamptz NOT NULL DEFAULT now(),
    gap_at              timestamptz,
    gap_detail          text,
    repaired_at         timestamptz,
    PRIMARY KEY (slot_name, scope)
);
