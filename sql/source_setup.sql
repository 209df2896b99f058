-- Source-side objects cdc needs, created by `cdc connector apply` as the connector's user.
-- Idempotent: safe to run on every apply.

CREATE SCHEMA IF NOT EXISTS cdc;

-- Debezium's source signal channel: a row inserted here (e.g. type 'execute-snapshot') is read
-- from the WAL and acted on by the connector. The table must be in the publication.
CREATE TABLE IF NOT EXISTS cdc.debezium_signal (
    id   varchar(64) PRIMARY KEY,
    type varchar(32) NOT NULL,
    data varchar(2048)
);

-- Written by the connector's heartbeat.action.query, so the replication slot keeps advancing
-- while the captured tables are idle and other databases on the server churn WAL.
CREATE TABLE IF NOT EXISTS cdc.debezium_heartbeat (
    id      integer PRIMARY KEY,
    beat_at timestamptz NOT NULL
);
