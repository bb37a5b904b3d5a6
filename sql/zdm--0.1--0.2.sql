/* zdm--0.1--0.2.sql: the background worker, adaptive and throttled backfill */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.2'" to load this file. \quit

/*
 * What the background worker needs per migration: whether it is asked to
 * run, its live settings (NULL: the zdm.* GUC applies), and what it
 * reports back (current batch size, recent rate, throttle reason, the key
 * of a row that failed).
 */
ALTER TABLE zdm.migrations
    ADD COLUMN worker_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN worker_role      oid,        -- batches run as this role
    ADD COLUMN paused           boolean NOT NULL DEFAULT false,
    ADD COLUMN batch_size       integer
               CONSTRAINT migrations_batch_size_positive CHECK (batch_size > 0),
    ADD COLUMN batch_time_ms    integer
               CONSTRAINT migrations_batch_time_positive CHECK (batch_time_ms > 0),
    ADD COLUMN max_rows_per_sec integer
               CONSTRAINT migrations_max_rate_positive CHECK (max_rows_per_sec > 0),
    ADD COLUMN sleep_ratio      real
               CONSTRAINT migrations_sleep_ratio_range CHECK (sleep_ratio >= 0 AND sleep_ratio <= 100),
    ADD COLUMN worker_pid       integer,
    ADD COLUMN last_batch_ms    double precision,
    ADD COLUMN recent_rows_per_sec double precision,
    ADD COLUMN throttle_reason  text,
    ADD COLUMN failed_key       text;

CREATE FUNCTION zdm.start_backfill(name text,
                                   batch_size integer DEFAULT NULL,
                                   batch_time interval DEFAULT NULL,
                                   max_rows_per_sec integer DEFAULT NULL,
                                   sleep_ratio real DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_start_backfill'
LANGUAGE C;

COMMENT ON FUNCTION zdm.start_backfill(text, integer, interval, integer, real) IS
    'hand a migration''s backfill to the background worker once the caller commits';

CREATE FUNCTION zdm.pause(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_pause'
LANGUAGE C;

COMMENT ON FUNCTION zdm.pause(text) IS 'pause the background backfill of a migration';

CREATE FUNCTION zdm.resume(name text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_resume'
LANGUAGE C;

COMMENT ON FUNCTION zdm.resume(text) IS 'resume the background backfill of a migration';

CREATE FUNCTION zdm.tune(name text,
                         batch_size integer DEFAULT NULL,
                         batch_time interval DEFAULT NULL,
                         max_rows_per_sec integer DEFAULT NULL,
                         sleep_ratio real DEFAULT NULL)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_tune'
LANGUAGE C;

COMMENT ON FUNCTION zdm.tune(text, integer, interval, integer, real) IS
    'retune a running backfill: batch size, target batch time, rate limit, sleep ratio';

DROP VIEW zdm.status;

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
       m.updated_at
  FROM zdm.migrations m
  LEFT JOIN LATERAL (
        -- reltuples is -1 until the table is first vacuumed or analysed
        SELECT CASE WHEN bool_or(c.reltuples >= 0)
                    THEN greatest(sum(greatest(c.reltuples, 0))::bigint, m.rows_backfilled)
               END AS rows_total
          FROM jsonb_array_elements(m.plan->'tables') AS t
          JOIN pg_catalog.pg_class c
            ON c.oid = pg_catalog.to_regclass(t->>'relation')
         WHERE (t->>'backfill')::boolean) est ON true
  LEFT JOIN pg_catalog.pg_stat_activity w
    ON w.pid = m.worker_pid AND w.backend_type = 'zdm backfill';

COMMENT ON VIEW zdm.status IS 'zdm: one row per migration with its phase and progress';
