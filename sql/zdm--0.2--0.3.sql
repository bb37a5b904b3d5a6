/* zdm--0.2--0.3.sql: API versions, client-version telemetry, the contract gate */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.3'" to load this file. \quit

/* The API versions a migration introduces and retires. */
ALTER TABLE zdm.migrations
    ADD COLUMN version_old text,
    ADD COLUMN version_new text;

/*
 * Every API version zdm knows.  A version is live from the expand that
 * introduces it until the contract that retires it; its schema of views
 * (if it has one) shows the tables as that version expects them.
 */
CREATE TABLE zdm.api_versions (
    version      text PRIMARY KEY
                 CONSTRAINT api_versions_not_empty CHECK (version <> ''),
    schema_name  name,
    introduced_by text,
    retired_by   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

COMMENT ON TABLE zdm.api_versions IS 'zdm: API versions, live or retired, and their schemas of views';

/*
 * Requests per API version per minute.  source 'postgres': statements
 * counted inside PostgreSQL (shared_preload_libraries); 'external':
 * counts given to zdm.record_traffic().  version '' is traffic that
 * declared no version.
 */
CREATE TABLE zdm.api_traffic (
    bucket   timestamptz NOT NULL,
    version  text NOT NULL,
    source   text NOT NULL
             CONSTRAINT api_traffic_source_known CHECK (source IN ('postgres', 'external')),
    requests bigint NOT NULL
             CONSTRAINT api_traffic_requests_positive CHECK (requests >= 0),
    PRIMARY KEY (bucket, version, source)
);

COMMENT ON TABLE zdm.api_traffic IS 'zdm: requests per API version per minute';

SELECT pg_catalog.pg_extension_config_dump('zdm.api_versions', '');
SELECT pg_catalog.pg_extension_config_dump('zdm.api_traffic', '');

/* Counts in shared memory not yet flushed to zdm.api_traffic (C). */
CREATE FUNCTION zdm.pending_traffic(OUT version text, OUT requests bigint)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zdm_pending_traffic'
LANGUAGE C STRICT;

CREATE FUNCTION zdm.record_traffic(version text, requests bigint,
                                   observed_at timestamptz DEFAULT now())
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_record_traffic'
LANGUAGE C;

COMMENT ON FUNCTION zdm.record_traffic(text, bigint, timestamptz) IS
    'add requests of an API version counted outside PostgreSQL (load balancer, Prometheus)';

/* The start of the gate window: now() - zdm.gate_window. */
CREATE FUNCTION zdm.gate_since()
RETURNS timestamptz
AS 'MODULE_PATHNAME', 'zdm_gate_since'
LANGUAGE C STABLE;

/*
 * Requests per version over the gate window (zdm.gate_window), flushed and
 * not yet flushed alike.
 */
CREATE VIEW zdm.api_version_distribution AS
WITH win AS (
    SELECT zdm.gate_since() AS since
), counts AS (
    SELECT t.version, t.requests, t.bucket, t.bucket + interval '1 minute' AS seen_until, t.source
      FROM zdm.api_traffic t, win
     WHERE t.bucket >= date_trunc('minute', win.since)
    UNION ALL
    SELECT p.version, p.requests, date_trunc('minute', now()), now(), 'postgres'
      FROM zdm.pending_traffic() p
     WHERE p.requests > 0
), per_version AS (
    SELECT version, sum(requests)::bigint AS requests, min(bucket) AS first_seen,
           least(max(seen_until), now()) AS last_seen,
           array_agg(DISTINCT source ORDER BY source) AS sources
      FROM counts GROUP BY version
)
SELECT coalesce(nullif(version, ''), '(undeclared)') AS version,
       requests,
       round(requests::numeric / nullif(sum(requests) OVER (), 0), 6) AS share,
       first_seen, last_seen, sources
  FROM per_version
 ORDER BY requests DESC, version;

COMMENT ON VIEW zdm.api_version_distribution IS
    'zdm: requests per API version over zdm.gate_window, with unflushed counts';

/* contract gains force, for an override that is journaled. */
DROP FUNCTION zdm.contract(text);
CREATE FUNCTION zdm.contract(name text DEFAULT NULL, force boolean DEFAULT false)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_contract'
LANGUAGE C;

COMMENT ON FUNCTION zdm.contract(text, boolean) IS
    'drop what a backfilled migration replaced once old clients are gone; force overrides the traffic gate';

CREATE FUNCTION zdm.use_version(version text)
RETURNS text
AS 'MODULE_PATHNAME', 'zdm_use_version'
LANGUAGE C;

COMMENT ON FUNCTION zdm.use_version(text) IS
    'declare the API version of this session: sets zdm.api_version and search_path';

CREATE FUNCTION zdm.routing_map(old_upstream text DEFAULT 'blue_upstream',
                                new_upstream text DEFAULT 'green_upstream',
                                header text DEFAULT 'api_version')
RETURNS text
AS 'MODULE_PATHNAME', 'zdm_routing_map'
LANGUAGE C;

COMMENT ON FUNCTION zdm.routing_map(text, text, text) IS
    'the nginx map block that routes each live API version to its upstream';

CREATE FUNCTION zdm.metrics()
RETURNS text
AS 'MODULE_PATHNAME', 'zdm_metrics'
LANGUAGE C;

COMMENT ON FUNCTION zdm.metrics() IS
    'Prometheus text exposition: requests per API version, migration phases, backfill progress';

/* Raised by the views of a retired version. */
CREATE FUNCTION zdm.version_retired()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zdm_version_retired'
LANGUAGE C;

CREATE FUNCTION zdm.version_retired_check(version text, migration text)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_version_retired_check'
LANGUAGE C VOLATILE;

DROP VIEW zdm.status;

CREATE VIEW zdm.status AS
SELECT m.name,
       m.phase,
       m.version_old AS retires,
       m.version_new AS introduces,
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
