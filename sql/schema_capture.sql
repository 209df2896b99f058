-- Schema drift, signal (b): DDL captured at the source by an event trigger.
--
-- Installed into the SOURCE database by a superuser (PostgreSQL lets only superusers create event
-- triggers): `cdc` does it through cdc.schema.install, or a DBA runs
--     psql -d <source database> -f sql/schema_capture.sql
-- Idempotent: safe to run again (it also re-seeds cdc.schema_snapshot from the catalog).
--
-- After every CREATE TABLE / ALTER TABLE / ALTER SCHEMA / ALTER TYPE and every drop, one row per
-- user table whose name, columns or primary key changed goes to cdc.schema_ddl, with the shape
-- before (from cdc.schema_snapshot) and after (from the catalog). A command that changes none of
-- these (ADD CONSTRAINT CHECK, REPLICA IDENTITY, OWNER, ...) writes nothing.
--
-- Trust: the event-trigger function is SECURITY DEFINER, so any role's DDL can write the audit,
-- but it is defined by cdc_schema_capture, a NOLOGIN role that owns nothing else and may only
-- write these two tables; not by the superuser who installs it. The tables belong to the owner of
-- schema cdc (the connector's role: it must own cdc.schema_ddl to put it in its publication),
-- and a table's owner can make code run whenever the table is written (a trigger, a default).
-- Run as the superuser, that code would make the connector's role a superuser; run as
-- cdc_schema_capture, it can do no more than the role itself.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'cdc_schema_capture') THEN
        CREATE ROLE cdc_schema_capture NOLOGIN;
    END IF;
END
$$;

CREATE SCHEMA IF NOT EXISTS cdc;
GRANT USAGE ON SCHEMA cdc TO cdc_schema_capture;

CREATE TABLE IF NOT EXISTS cdc.schema_snapshot (
    table_oid   oid PRIMARY KEY,
    schema_name text  NOT NULL,
    table_name  text  NOT NULL,
    columns     jsonb NOT NULL,
    key         jsonb NOT NULL
);

CREATE TABLE IF NOT EXISTS cdc.schema_ddl (
    id              bigserial PRIMARY KEY,
    occurred_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    txid            bigint NOT NULL DEFAULT txid_current(),
    command_tag     text NOT NULL,
    object_type     text NOT NULL,
    object_identity text NOT NULL,
    table_oid       oid,
    schema_before   text,
    table_before    text,
    schema_name     text,
    table_name      text,
    statement       text,
    columns_before  jsonb,
    columns_after   jsonb,
    key_before      jsonb,
    key_after       jsonb
);

COMMENT ON TABLE cdc.schema_ddl IS
    'One row per (DDL command, user table whose name, columns or primary key it changed); written by the event triggers of sql/schema_capture.sql.';
COMMENT ON TABLE cdc.schema_snapshot IS
    'The last shape of each user table seen by the event triggers of sql/schema_capture.sql: the "before" of the next change.';

-- Owned by the owner of schema cdc, written by the trigger's role only through these grants.
DO $$
DECLARE
    owner text := (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'cdc');
BEGIN
    EXECUTE format('ALTER TABLE cdc.schema_snapshot OWNER TO %I', owner);
    EXECUTE format('ALTER TABLE cdc.schema_ddl OWNER TO %I', owner);
END
$$;
GRANT SELECT, INSERT, UPDATE, DELETE ON cdc.schema_snapshot TO cdc_schema_capture;
GRANT SELECT, INSERT ON cdc.schema_ddl TO cdc_schema_capture;
GRANT USAGE ON SEQUENCE cdc.schema_ddl_id_seq TO cdc_schema_capture;

CREATE OR REPLACE FUNCTION cdc.schema_capture_skipped(nsp text) RETURNS boolean
LANGUAGE sql IMMUTABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT nsp IN ('cdc', 'pg_catalog', 'information_schema', 'pg_toast')
        OR nsp LIKE 'pg\_temp\_%' OR nsp LIKE 'pg\_toast\_temp\_%'
$$;

CREATE OR REPLACE FUNCTION cdc.schema_capture_columns(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(jsonb_build_object(
               'attnum', a.attnum,
               'name', a.attname,
               'type', format_type(a.atttypid, a.atttypmod),
               'not_null', a.attnotnull,
               'default', pg_get_expr(d.adbin, d.adrelid)
           ) ORDER BY a.attnum), '[]'::jsonb)
    FROM pg_attribute a
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
    WHERE a.attrelid = rel AND a.attnum > 0 AND NOT a.attisdropped
$$;

CREATE OR REPLACE FUNCTION cdc.schema_capture_key(rel oid) RETURNS jsonb
LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp
AS $$
    SELECT coalesce(jsonb_agg(a.attname ORDER BY k.ord), '[]'::jsonb)
    FROM pg_index i
    CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
    JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
    WHERE i.indrelid = rel AND i.indisprimary
$$;

-- The shape of a table that still exists, compared with its snapshot: written to the audit when
-- the name, columns or key differ (or nothing was known), then kept as the next "before".
-- `creates`: a CREATE command, whose oid may be one a table dropped unseen had (its snapshot is stale).
CREATE OR REPLACE FUNCTION cdc.schema_capture_note(
    rel oid, tag text, reported_type text, reported_identity text, creates boolean
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before cdc.schema_snapshot;
    known boolean;
    nsp text;
    name text;
    cols jsonb;
    pkey jsonb;
BEGIN
    SELECT n.nspname, c.relname INTO nsp, name
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't';
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT * INTO before FROM cdc.schema_snapshot s WHERE s.table_oid = rel;
    known := FOUND AND NOT creates;
    cols := cdc.schema_capture_columns(rel);
    pkey := cdc.schema_capture_key(rel);
    IF known AND (before.schema_name, before.table_name, before.columns, before.key)
                 IS NOT DISTINCT FROM (nsp, name, cols, pkey) THEN
        RETURN;
    END IF;
    -- A table moved out of the user's schemas is recorded (it left); one that stays out is not.
    IF NOT (cdc.schema_capture_skipped(nsp) AND (NOT known OR cdc.schema_capture_skipped(before.schema_name))) THEN
        INSERT INTO cdc.schema_ddl (
            command_tag, object_type, object_identity, table_oid, schema_before, table_before,
            schema_name, table_name, statement, columns_before, columns_after, key_before, key_after)
        VALUES (
            tag, reported_type, reported_identity, rel,
            CASE WHEN known THEN before.schema_name END, CASE WHEN known THEN before.table_name END,
            nsp, name, left(current_query(), 20000),
            CASE WHEN known THEN before.columns END, cols, CASE WHEN known THEN before.key END, pkey);
    END IF;
    IF cdc.schema_capture_skipped(nsp) THEN
        DELETE FROM cdc.schema_snapshot WHERE table_oid = rel;
    ELSE
        INSERT INTO cdc.schema_snapshot (table_oid, schema_name, table_name, columns, key)
        VALUES (rel, nsp, name, cols, pkey)
        ON CONFLICT (table_oid) DO UPDATE
        SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
            columns = EXCLUDED.columns, key = EXCLUDED.key;
    END IF;
END
$$;

-- A dropped table: its catalog rows are gone, so its last shape is the snapshot's.
CREATE OR REPLACE FUNCTION cdc.schema_capture_dropped(
    rel oid, nsp text, name text, tag text, reported_identity text
) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    before cdc.schema_snapshot;
BEGIN
    SELECT * INTO before FROM cdc.schema_snapshot s WHERE s.table_oid = rel;
    IF FOUND OR NOT cdc.schema_capture_skipped(nsp) THEN
        INSERT INTO cdc.schema_ddl (
            command_tag, object_type, object_identity, table_oid, schema_before, table_before,
            schema_name, table_name, statement, columns_before, columns_after, key_before, key_after)
        VALUES (
            tag, 'table', reported_identity, rel, before.schema_name, before.table_name,
            nsp, name, left(current_query(), 20000), before.columns, NULL, before.key, NULL);
    END IF;
    DELETE FROM cdc.schema_snapshot WHERE table_oid = rel;
END
$$;

-- ddl_command_end: the tables the command reported, in the order it reported them. Which object
-- stands for a table: the table itself ('table'; also for RENAME TO and SET SCHEMA, under its new
-- name), one of its columns ('table column', RENAME COLUMN: objsubid is the attnum), its schema
-- (ALTER SCHEMA ... RENAME: every table in it) or a type its columns use (ALTER TYPE ... RENAME:
-- format_type changes). A change to a parent reaches its partitions and inheritors, which
-- PostgreSQL does not report: they are looked at too.
CREATE OR REPLACE FUNCTION cdc.schema_capture_commands() RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hit record;
BEGIN
    FOR hit IN
        WITH RECURSIVE commands AS (
            SELECT d.classid, d.objid, d.command_tag, d.object_type, d.object_identity, d.ord
            FROM pg_event_trigger_ddl_commands() WITH ORDINALITY
                AS d(classid, objid, objsubid, command_tag, object_type, schema_name, object_identity,
                     in_extension, command, ord)
        ), reported AS (
            SELECT c.objid AS rel, c.command_tag, c.object_type, c.object_identity, c.ord
            FROM commands c
            WHERE c.classid = 'pg_class'::regclass AND c.object_type IN ('table', 'table column')
            UNION ALL
            -- LATERAL: the catalog scans (no index fits) run only for such a command, not for every DDL.
            SELECT r.rel, c.command_tag, c.object_type, c.object_identity, c.ord
            FROM commands c
            CROSS JOIN LATERAL (SELECT k.oid AS rel FROM pg_class k WHERE k.relnamespace = c.objid) r
            WHERE c.classid = 'pg_namespace'::regclass AND c.command_tag = 'ALTER SCHEMA'
            UNION ALL
            SELECT r.rel, c.command_tag, c.object_type, c.object_identity, c.ord
            FROM commands c
            CROSS JOIN LATERAL (
                SELECT a.attrelid AS rel
                FROM pg_type t
                JOIN pg_attribute a ON a.atttypid IN (t.oid, t.typarray) AND a.attnum > 0 AND NOT a.attisdropped
                WHERE t.oid = c.objid
            ) r
            WHERE c.classid = 'pg_type'::regclass
        ), firsts AS (
            SELECT DISTINCT ON (r.rel) r.rel, r.command_tag, r.object_type, r.object_identity, r.ord
            FROM reported r
            ORDER BY r.rel, r.ord
        ), affected(rel, command_tag, object_type, object_identity, ord, depth) AS (
            SELECT f.rel, f.command_tag, f.object_type, f.object_identity, f.ord, 0
            FROM firsts f
            UNION
            SELECT i.inhrelid, a.command_tag, 'table', (pg_identify_object('pg_class'::regclass, i.inhrelid, 0)).identity,
                   a.ord, a.depth + 1
            FROM affected a JOIN pg_inherits i ON i.inhparent = a.rel
        )
        SELECT rel, command_tag, object_type, object_identity, depth
        FROM (SELECT DISTINCT ON (rel) * FROM affected ORDER BY rel, depth) first_seen
        ORDER BY ord, depth, rel
    LOOP
        PERFORM cdc.schema_capture_note(
            hit.rel, hit.command_tag, hit.object_type, hit.object_identity,
            hit.depth = 0 AND hit.command_tag IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO'));
    END LOOP;
END
$$;

-- sql_drop: dropped tables (DROP TABLE, DROP SCHEMA ... CASCADE, DROP OWNED), and the tables that
-- lost a column or a default to a drop other than ALTER TABLE's (DROP TYPE/DOMAIN/SEQUENCE ...
-- CASCADE; ALTER TABLE's own drops are seen at ddl_command_end with the rest of the command).
CREATE OR REPLACE FUNCTION cdc.schema_capture_drops(tag text) RETURNS void
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    hit record;
BEGIN
    FOR hit IN
        SELECT d.objid, d.schema_name, d.object_name, d.object_identity
        FROM pg_event_trigger_dropped_objects() d
        WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.object_type = 'table'
          AND NOT d.is_temporary
    LOOP
        PERFORM cdc.schema_capture_dropped(hit.objid, hit.schema_name, hit.object_name, tag, hit.object_identity);
    END LOOP;
    IF tag = 'ALTER TABLE' THEN
        RETURN;
    END IF;
    FOR hit IN
        SELECT DISTINCT ON (rel) rel, d.object_type, d.object_identity
        FROM pg_event_trigger_dropped_objects() d
        CROSS JOIN LATERAL (SELECT CASE
            WHEN d.object_type = 'table column' THEN d.objid
            WHEN d.object_type = 'default value' THEN (
                -- By name from the catalog: to_regclass would need USAGE on the table's schema.
                SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = d.address_names[1] AND c.relname = d.address_names[2])
        END AS rel) r
        WHERE rel IS NOT NULL
        ORDER BY rel
    LOOP
        PERFORM cdc.schema_capture_note(hit.rel, tag, hit.object_type, hit.object_identity, false);
    END LOOP;
END
$$;

-- The one function both event triggers run. Never lets the user's DDL fail.
CREATE OR REPLACE FUNCTION cdc.schema_capture_event() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    BEGIN
        IF TG_EVENT = 'sql_drop' THEN
            PERFORM cdc.schema_capture_drops(TG_TAG);
        ELSE
            PERFORM cdc.schema_capture_commands();
        END IF;
    EXCEPTION WHEN OTHERS THEN
        RAISE WARNING 'cdc schema capture: %', SQLERRM;
    END;
END
$$;

-- SECURITY DEFINER runs as the owner: the powerless role above (CREATE OR REPLACE keeps the owner).
ALTER FUNCTION cdc.schema_capture_skipped(text) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_columns(oid) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_key(oid) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_note(oid, text, text, text, boolean) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_dropped(oid, text, text, text, text) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_commands() OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_drops(text) OWNER TO cdc_schema_capture;
ALTER FUNCTION cdc.schema_capture_event() OWNER TO cdc_schema_capture;

DROP EVENT TRIGGER IF EXISTS cdc_schema_capture_ddl;
CREATE EVENT TRIGGER cdc_schema_capture_ddl ON ddl_command_end
    WHEN TAG IN ('CREATE TABLE', 'CREATE TABLE AS', 'SELECT INTO', 'CREATE SCHEMA', 'ALTER TABLE',
                 'ALTER SCHEMA', 'ALTER TYPE', 'ALTER DOMAIN')
    EXECUTE FUNCTION cdc.schema_capture_event();

DROP EVENT TRIGGER IF EXISTS cdc_schema_capture_drop;
CREATE EVENT TRIGGER cdc_schema_capture_drop ON sql_drop
    EXECUTE FUNCTION cdc.schema_capture_event();

-- The "before" of every table that exists now; snapshots of tables gone meanwhile are dropped.
-- As the trigger's role: the functions called live in a schema another role owns.
SET ROLE cdc_schema_capture;

INSERT INTO cdc.schema_snapshot (table_oid, schema_name, table_name, columns, key)
SELECT c.oid, n.nspname, c.relname, cdc.schema_capture_columns(c.oid), cdc.schema_capture_key(c.oid)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND c.relpersistence <> 't' AND NOT cdc.schema_capture_skipped(n.nspname)
ON CONFLICT (table_oid) DO UPDATE
SET schema_name = EXCLUDED.schema_name, table_name = EXCLUDED.table_name,
    columns = EXCLUDED.columns, key = EXCLUDED.key;

DELETE FROM cdc.schema_snapshot s
WHERE NOT EXISTS (
    SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = s.table_oid AND c.relkind IN ('r', 'p') AND c.relpersistence <> 't'
      AND NOT cdc.schema_capture_skipped(n.nspname)
);

RESET ROLE;
