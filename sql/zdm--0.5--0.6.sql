/* zdm--0.5--0.6.sql: a role model that holds by construction */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.6'" to load this file. \quit

/*
 * Who did what, by name: a migration's SQL (up/down, checks, defaults, the
 * steps of its plan) runs as the role that expanded it, whoever calls
 * contract, verify, rollback or the background worker.  A name survives
 * pg_dump and a restore into another cluster, where an OID would name
 * whichever role has it there.  Migrations expanded before 0.6 take the
 * role the journal says expanded them (or, failing that, the role that
 * started their background backfill).
 */
ALTER TABLE zdm.migrations ADD COLUMN author name;

UPDATE zdm.migrations m
   SET author = coalesce(
         (SELECT l.actor FROM zdm.migration_log l
           WHERE l.migration = m.name AND l.event = 'phase' AND l.phase = 'expanded'
           ORDER BY l.id DESC LIMIT 1),
         (SELECT r.rolname FROM pg_catalog.pg_roles r WHERE r.oid = m.worker_role));

/* The worker runs every batch as the author now; no role is stored by OID. */
ALTER TABLE zdm.migrations DROP COLUMN worker_role;

/*
 * Traffic counts have no unique key: two writers of the same minute (a
 * flush and the COPY of a pg_restore, say) add rows instead of colliding,
 * and every reader sums them.
 */
ALTER TABLE zdm.api_traffic DROP CONSTRAINT api_traffic_pkey;
CREATE INDEX api_traffic_bucket_idx ON zdm.api_traffic (bucket, version, source);

/* Sums of counts saturate instead of overflowing bigint. */
DROP VIEW zdm.api_version_distribution;
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
    SELECT version, least(sum(requests), 9223372036854775807)::bigint AS requests,
           min(bucket) AS first_seen,
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

/*
 * The role a DBA grants to migration roles: the one grant they need, with
 * ownership of the tables they migrate.  Roles belong to the cluster, not
 * to the database or the extension: it is created once, and stays when
 * the extension is dropped.
 */
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'zdm_migrator') THEN
        CREATE ROLE zdm_migrator NOLOGIN;
        COMMENT ON ROLE zdm_migrator IS
            'zdm: may expand, backfill, verify, contract and roll back migrations (GRANT it to migration roles)';
    END IF;
END
$$;

/*
 * zdm's state is written by zdm only: its functions write it as its owner
 * (the superuser that created the extension).  Earlier versions told DBAs
 * to grant INSERT and UPDATE on it to migration roles; those grants go.
 */
DO $$
DECLARE
    g record;
BEGIN
    FOR g IN
        SELECT c.oid::pg_catalog.regclass AS rel, a.privilege_type,
               CASE WHEN a.grantee = 0 THEN 'PUBLIC'
                    ELSE pg_catalog.quote_ident(pg_catalog.pg_get_userbyid(a.grantee)) END AS grantee
          FROM pg_catalog.pg_class c, pg_catalog.aclexplode(c.relacl) a
         WHERE c.relnamespace = 'zdm'::pg_catalog.regnamespace
           AND a.grantee <> c.relowner
           AND a.privilege_type <> 'SELECT'
    LOOP
        EXECUTE pg_catalog.format('REVOKE %s ON %s FROM %s', g.privilege_type, g.rel, g.grantee);
    END LOOP;
END
$$;

REVOKE ALL ON ALL TABLES IN SCHEMA zdm FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA zdm FROM PUBLIC;
REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA zdm FROM PUBLIC;
GRANT USAGE ON SCHEMA zdm TO PUBLIC;

/*
 * What every role uses, and needs nothing for: a client declares its
 * version; the planner puts zdm.differs() into client UPDATEs and the
 * backfill's UPDATE calls zdm.delay_point(); the triggers and the retired
 * versions' guards fire for whoever writes or reads.  None of them reads
 * or writes zdm's state with the caller's rights.
 */
GRANT EXECUTE ON FUNCTION zdm.use_version(text) TO PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.differs(anyelement, anyelement) TO PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.delay_point() TO PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.dual_write() TO PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.version_retired() TO PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.version_retired_check(text, text) TO PUBLIC;

/* Migration roles: the lifecycle, the traffic fed from outside, and reading the state. */
GRANT EXECUTE ON FUNCTION
    zdm.expand(text, jsonb),
    zdm.backfill(text, integer),
    zdm.backfill(integer),
    zdm.verify(text),
    zdm.contract(text, boolean),
    zdm.rollback(text),
    zdm.start_backfill(text, integer, interval, integer, real),
    zdm.pause(text),
    zdm.resume(text),
    zdm.tune(text, integer, interval, integer, real),
    zdm.record_traffic(text, bigint, timestamptz),
    zdm.routing_map(text, text, text),
    zdm.metrics(),
    zdm.pending_traffic(),
    zdm.gate_since()
    TO zdm_migrator;
GRANT SELECT ON zdm.migrations, zdm.migration_log, zdm.api_versions, zdm.api_traffic,
                zdm.status, zdm.api_version_distribution
    TO zdm_migrator;

/*
 * The schemas of views that earlier versions made get the privileges new
 * ones get (expand.c): a version's views are security_invoker, so granting
 * them to PUBLIC leaves every check to the table's own privileges; a
 * retired version's guards raise for whoever reads or writes them.
 */
DO $$
DECLARE
    v record;
BEGIN
    FOR v IN
        SELECT n.nspname
          FROM zdm.api_versions a JOIN pg_catalog.pg_namespace n ON n.nspname = a.schema_name
    LOOP
        EXECUTE pg_catalog.format('GRANT USAGE ON SCHEMA %I TO PUBLIC', v.nspname);
        EXECUTE pg_catalog.format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO PUBLIC',
                                  v.nspname);
    END LOOP;
END
$$;

/* Monitoring: what pg_monitor's members read. */
GRANT EXECUTE ON FUNCTION zdm.metrics(), zdm.pending_traffic(), zdm.gate_since(),
                          zdm.routing_map(text, text, text)
    TO pg_monitor;
GRANT SELECT ON zdm.status, zdm.api_version_distribution TO pg_monitor;

/*
 * Runners and schedulers (issue 14): a deployer whose zdm.expand() returned
 * false because another session held the migration's lock learns how that
 * session's expand ended.  Migration roles only, like expand itself.
 */
CREATE FUNCTION zdm.wait_expanded(name text, timeout interval DEFAULT '60s')
RETURNS text
AS 'MODULE_PATHNAME', 'zdm_wait_expanded'
LANGUAGE C VOLATILE;

COMMENT ON FUNCTION zdm.wait_expanded(text, interval) IS
    'zdm: wait until no other session is expanding the migration; its phase, or an error when that expand rolled back';

REVOKE EXECUTE ON FUNCTION zdm.wait_expanded(text, interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.wait_expanded(text, interval) TO zdm_migrator;
