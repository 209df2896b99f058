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

-- Which warehouse table each source table is replicated into. The first source table with a name
-- gets it; a same-named table of another source schema gets <schema>__<table>. Kept here so the
-- choice survives restarts and is shared by every sync process.
CREATE TABLE IF NOT EXISTS cdc.table_map (
    source_schema text NOT NULL,
    source_table  text NOT NULL,
    target_schema text NOT NULL,
    target_table  text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source_schema, source_table),
    UNIQUE (target_schema, target_table)
);
