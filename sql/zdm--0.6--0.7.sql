/* zdm--0.6--0.7.sql: the operation engine (deferred steps, index and constraint operations) */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.7'" to load this file. \quit

/* ---- The deferred-step engine: steps the background worker runs after a phase commits ---- */

/*
 * A plan's "deferred" section (CREATE INDEX CONCURRENTLY, ...) runs in the
 * background worker once the expand has committed and the backfill's rows
 * are done; the steps of "contract" and "rollback" that do not run in the
 * caller's transaction run there once contract or rollback has committed
 * (src/deferred.c).  What the worker owes a migration:
 *   deferred_section  the plan section whose worker steps are pending
 *                     ('deferred', 'contract', 'rollback'), NULL: none;
 *   deferred_done     how many of them are done;
 *   deferred_step     the statement of the step in progress, NULL: none.
 */
ALTER TABLE zdm.migrations
    ADD COLUMN deferred_section text
        CONSTRAINT migrations_deferred_section_known
        CHECK (deferred_section IN ('deferred', 'contract', 'rollback')),
    ADD COLUMN deferred_done    integer NOT NULL DEFAULT 0
        CONSTRAINT migrations_deferred_done_not_negative CHECK (deferred_done >= 0),
    ADD COLUMN deferred_step    text;

/*
 * zdm.status, as 0.6 made it, with what the worker owes each migration at
 * the end: deferred (the section pending), deferred_done, deferred_total
 * (its steps that run in the worker) and deferred_step (the statement in
 * progress).  The plan is read only where it has the shape expand writes.
 */
CREATE OR REPLACE VIEW zdm.status AS
SELECT m.name,
       m.phase,
       m.version_old AS retires,
       m.version_new AS introduces,
       (SELECT array_agg(t->>'table' ORDER BY ord)
          FROM jsonb_array_elements(tables.list) WITH ORDINALITY AS x(t, ord)
         WHERE jsonb_typeof(t) = 'object') AS tables,
       m.rows_backfilled AS rows_done,
       est.rows_total,
       CASE
           WHEN m.phase IN ('backfilled', 'contracted') THEN 100.0
           WHEN est.rows_total > 0
               THEN round(least(100.0, 100.0 * m.rows_backfilled / est.rows_total), 1)
       END AS percent,
       m.batches,
       round(m.recent_rows_per_sec::numeric, 1) AS rows_per_sec,
       CASE
           WHEN m.phase IN ('expanded', 'backfilling') AND m.recent_rows_per_sec > 0
                AND est.rows_total IS NOT NULL
               THEN make_interval(secs => round(greatest(est.rows_total - m.rows_backfilled, 0)
                                                / m.recent_rows_per_sec))
       END AS eta,
       m.batch_size,
       m.worker_requested AS worker,
       m.paused,
       CASE WHEN w.pid IS NOT NULL THEN m.worker_pid END AS worker_pid,
       m.throttle_reason,
       m.last_error,
       m.failed_key,
       m.expanded_at,
       m.backfilled_at,
       m.contracted_at,
       m.rolled_back_at,
       m.updated_at,
       m.deferred_section AS deferred,
       m.deferred_done,
       steps.total AS deferred_total,
       m.deferred_step
  FROM zdm.migrations m
  CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(m.plan->'tables') = 'array'
                    THEN m.plan->'tables' ELSE '[]'::jsonb END AS list) tables
  LEFT JOIN LATERAL (
        -- the steps of the pending section that the worker runs
        SELECT count(*)::integer AS total
          FROM jsonb_array_elements(CASE WHEN jsonb_typeof(m.plan->m.deferred_section) = 'array'
                                         THEN m.plan->m.deferred_section ELSE '[]'::jsonb END) AS s
         WHERE jsonb_typeof(s) = 'object'
           AND coalesce(s->>'runs', 'caller') <> 'caller') steps ON m.deferred_section IS NOT NULL
  LEFT JOIN LATERAL (
        -- reltuples is -1 until the table is first vacuumed or analysed
        SELECT CASE WHEN bool_or(c.reltuples >= 0)
                    THEN greatest(sum(greatest(c.reltuples, 0))::bigint, m.rows_backfilled)
               END AS rows_total
          FROM jsonb_array_elements(tables.list) AS t
          JOIN pg_catalog.pg_class c
            ON c.oid = pg_catalog.to_regclass(t->>'relation')
         WHERE jsonb_typeof(t) = 'object' AND jsonb_typeof(t->'relation') = 'string'
           AND (t->>'backfill')::boolean) est ON true
  LEFT JOIN pg_catalog.pg_stat_activity w
    ON w.pid = m.worker_pid AND w.backend_type = 'zdm backfill';
