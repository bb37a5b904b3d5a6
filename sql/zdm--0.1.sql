/* zdm--0.1.sql: zero-downtime schema migrations, inside PostgreSQL */

\echo Use "CREATE EXTENSION zdm" to load this file. \quit

/*
 * State of every migration zdm knows.  One row per migration name; the
 * "plan" is what expand worked out from the definition (tables, columns,
 * compiled up/down expressions, the statements contract and rollback will
 * run), so later steps never re-derive it from a schema that has moved on.
 */
CREATE TABLE zdm.migrations (
    name            text PRIMARY KEY
                    CONSTRAINT migrations_name_not_empty CHECK (name <> ''),
    definition      jsonb NOT NULL,
    plan            jsonb NOT NULL,
    phase           text NOT NULL
                    CONSTRAINT migrations_phase_known CHECK (phase IN
                    ('expanded', 'backfilling', 'backfilled', 'contracted',
                     'rolled_back', 'failed')),
    expand_xid      xid8,
    backfill_key    text[],            -- last key converted (the checkpoint)
    backfill_table  integer NOT NULL DEFAULT 0, -- index into plan->tables
    rows_backfilled bigint NOT NULL DEFAULT 0,
    batches         bigint NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    expanded_at     timestamptz,
    backfill_started_at timestamptz,
    backfilled_at   timestamptz,
    contracted_at   timestamptz,
    rolled_back_at  timestamptz,
    last_error      text
);

COMMENT ON TABLE zdm.migrations IS 'zdm: one row per migration, its definition, plan and phase';

/*
 * Append-only journal: every phase change and every DDL statement zdm ran,
 * with how long it waited for its lock and how long it took.
 */
CREATE TABLE zdm.migration_log (
    id           bigserial PRIMARY KEY,
    migration    text NOT NULL,
    logged_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    event        text NOT NULL,
    phase        text,
    statement    text,
    lock_wait_ms double precision,
    duration_ms  double precision,
    attempts     integer,
    detail       text,
    actor        name NOT NULL DEFAULT current_user
);

CREATE INDEX migration_log_migration_idx ON zdm.migration_log (migration, id);

COMMENT ON TABLE zdm.migration_log IS 'zdm: append-only journal of phase changes and DDL';

/* The journal only grows: refuse edits, even from the table's owner. */
CREATE FUNCTION zdm.migration_log_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'zdm.migration_log is append-only'
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'The journal keeps every event; it cannot be updated or deleted from.';
END
$$;

CREATE TRIGGER migration_log_append_only
    BEFORE UPDATE OR DELETE ON zdm.migration_log
    FOR EACH STATEMENT EXECUTE FUNCTION zdm.migration_log_append_only();

/* pg_dump keeps the state of migrations with the database. */
SELECT pg_catalog.pg_extension_config_dump('zdm.migrations', '');
SELECT pg_catalog.pg_extension_config_dump('zdm.migration_log', '');
SELECT pg_catalog.pg_extension_config_dump('zdm.migration_log_id_seq', '');

CREATE FUNCTION zdm.expand(name text, migration jsonb)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_expand'
LANGUAGE C;

COMMENT ON FUNCTION zdm.expand(text, jsonb) IS
    'apply the additive part of a migration and start dual-writing';

CREATE FUNCTION zdm.backfill(name text, batch integer DEFAULT 1000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'zdm_backfill'
LANGUAGE C;

COMMENT ON FUNCTION zdm.backfill(text, integer) IS
    'convert one batch of rows of one migration; 0 when done';

CREATE FUNCTION zdm.backfill(batch integer DEFAULT 1000)
RETURNS bigint
AS 'MODULE_PATHNAME', 'zdm_backfill_all'
LANGUAGE C;

COMMENT ON FUNCTION zdm.backfill(integer) IS
    'convert one batch of rows of every migration being backfilled; 0 when all are done';

CREATE FUNCTION zdm.verify(name text)
RETURNS bigint
AS 'MODULE_PATHNAME', 'zdm_verify'
LANGUAGE C;

COMMENT ON FUNCTION zdm.verify(text) IS
    'count rows whose old and new columns disagree under up/down';

CREATE FUNCTION zdm.contract(name text DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_contract'
LANGUAGE C;

COMMENT ON FUNCTION zdm.contract(text) IS
    'drop what a backfilled migration replaced and enforce its constraints';

CREATE FUNCTION zdm.rollback(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_rollback'
LANGUAGE C;

COMMENT ON FUNCTION zdm.rollback(text) IS
    'undo an expanded migration, keeping every write in the old columns';

/* The dual-write trigger: arguments are written by zdm.expand, not by hand. */
CREATE FUNCTION zdm.dual_write()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zdm_dual_write'
LANGUAGE C;

CREATE VIEW zdm.status AS
SELECT m.name,
       m.phase,
       (SELECT array_agg(t->>'table' ORDER BY ord)
          FROM jsonb_array_elements(m.plan->'tables') WITH ORDINALITY AS x(t, ord)) AS tables,
       m.rows_backfilled AS rows_done,
       est.rows_total,
       CASE
           WHEN m.phase IN ('backfilled', 'contracted') THEN 100.0
           WHEN est.rows_total > 0
               THEN round(least(100.0, 100.0 * m.rows_backfilled / est.rows_total), 1)
       END AS percent,
       m.batches,
       CASE
           -- over the backfill so far; unknown until it has run 10 ms
           WHEN m.backfill_started_at IS NOT NULL AND m.rows_backfilled > 0
                AND coalesce(m.backfilled_at, m.updated_at) - m.backfill_started_at >= interval '10 ms'
               THEN round((m.rows_backfilled
                      / extract(epoch FROM coalesce(m.backfilled_at, m.updated_at)
                                           - m.backfill_started_at))::numeric, 1)
       END AS rows_per_sec,
       m.expanded_at,
       m.backfilled_at,
       m.contracted_at,
       m.rolled_back_at,
       m.updated_at,
       m.last_error
  FROM zdm.migrations m
  LEFT JOIN LATERAL (
        -- reltuples is -1 until the table is first vacuumed or analysed
        SELECT CASE WHEN bool_or(c.reltuples >= 0)
                    THEN greatest(sum(greatest(c.reltuples, 0))::bigint, m.rows_backfilled)
               END AS rows_total
          FROM jsonb_array_elements(m.plan->'tables') AS t
          JOIN pg_catalog.pg_class c
            ON c.oid = pg_catalog.to_regclass(t->>'relation')
         WHERE (t->>'backfill')::boolean) est ON true;

COMMENT ON VIEW zdm.status IS 'zdm: one row per migration with its phase and progress';
