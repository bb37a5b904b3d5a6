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
/*
 * Without a key it needs a replica identity of its own, or the UPDATEs
 * below fail in a database with a publication FOR ALL TABLES; the block
 * on logical replication at the end of this file gives it its own.
 */
ALTER TABLE zdm.api_traffic REPLICA IDENTITY FULL;
CREATE INDEX api_traffic_bucket_idx ON zdm.api_traffic (bucket, version, source);

/*
 * Sums of counts saturate instead of overflowing bigint; undeclared
 * traffic is "(undeclared)" (see the monitoring block below for '').
 */
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
    SELECT CASE WHEN version = '' THEN '(undeclared)' ELSE version END AS version,
           least(sum(requests), 9223372036854775807)::bigint AS requests,
           min(bucket) AS first_seen,
           least(max(seen_until), now()) AS last_seen,
           array_agg(DISTINCT source ORDER BY source) AS sources
      FROM counts GROUP BY 1
)
SELECT version,
       requests,
       round(requests::numeric / nullif(sum(requests) OVER (), 0), 6) AS share,
       first_seen, last_seen, sources
  FROM per_version
 ORDER BY requests DESC, version;

COMMENT ON VIEW zdm.api_version_distribution IS
    'zdm: requests per API version over zdm.gate_window, with unflushed counts';

/*
 * zdm.status reads the plan's tables only where they have the shape expand
 * writes: one damaged row (edited by a superuser) must not take the view,
 * and zdm.metrics(), away for every migration.
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
       m.updated_at
  FROM zdm.migrations m
  CROSS JOIN LATERAL (
        SELECT CASE WHEN jsonb_typeof(m.plan->'tables') = 'array'
                    THEN m.plan->'tables' ELSE '[]'::jsonb END AS list) tables
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

/* ---- Connection poolers: a version declared for one transaction ---- */

/*
 * Behind a pooler in transaction mode (pgbouncer's pool_mode =
 * transaction), one server connection serves many clients in turn: a
 * version declared for the session stays on the connection for whichever
 * client runs next.  With is_local, the declaration (zdm.api_version and
 * the search_path it sets) lasts for the current transaction only, as
 * set_config(..., true) does.  The one-argument form is replaced:
 * zdm.use_version('v4') still declares for the session.  Application
 * roles call it, so PUBLIC keeps EXECUTE.
 */
DROP FUNCTION zdm.use_version(text);
CREATE FUNCTION zdm.use_version(version text, is_local boolean DEFAULT false)
RETURNS text
AS 'MODULE_PATHNAME', 'zdm_use_version'
LANGUAGE C;

COMMENT ON FUNCTION zdm.use_version(text, boolean) IS
    'declare the API version of this session, or with is_local of the current transaction: sets zdm.api_version and search_path';

GRANT EXECUTE ON FUNCTION zdm.use_version(text, boolean) TO PUBLIC;

/*
 * Monitoring and schema-only dumps (issue 14): one name for undeclared
 * traffic, the contract gate as monitoring sees it, and the dual-write
 * triggers with whether they dual-write.
 */

/*
 * Traffic that declared no API version is "(undeclared)" everywhere: in
 * zdm.api_traffic, zdm.pending_traffic(), the distribution and the
 * metrics (it was '' in the first two).  The view (above) still reads '' as
 * "(undeclared)", for rows restored from a dump of an earlier version.
 */
UPDATE zdm.api_traffic SET version = '(undeclared)' WHERE version = '';

/*
 * What the contract gate would say now, for each migration that retires
 * an API version and is not yet contracted or rolled back: the share is
 * NULL without telemetry in zdm.gate_window; passes is share < threshold.
 */
CREATE FUNCTION zdm.contract_gate(OUT migration text, OUT phase text, OUT retires text,
                                  OUT requests bigint, OUT total bigint,
                                  OUT share double precision, OUT threshold double precision,
                                  OUT passes boolean)
RETURNS SETOF record
AS 'MODULE_PATHNAME', 'zdm_contract_gate'
LANGUAGE C;

COMMENT ON FUNCTION zdm.contract_gate() IS
    'zdm: per migration retiring an API version, its share of requests against zdm.contract_threshold';

REVOKE EXECUTE ON FUNCTION zdm.contract_gate() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION zdm.contract_gate() TO zdm_migrator, pg_monitor;

/*
 * Every dual-write trigger, the migration it works for, and whether it
 * dual-writes: a trigger whose migration zdm does not know as live (a
 * schema-only restore leaves zdm.migrations out) refuses writes instead,
 * and a disabled one lets them through as they are.  Partitions' clones
 * are left out: they follow their parent's.
 */
CREATE VIEW zdm.dual_write_triggers AS
SELECT t.tgrelid::regclass AS relation,
       t.tgname AS trigger,
       a.migration,
       m.phase,
       t.tgenabled <> 'D' AS enabled,
       coalesce(m.phase NOT IN ('contracted', 'rolled_back'), false) AND t.tgenabled <> 'D' AS dual_writing
  FROM pg_catalog.pg_trigger t
 CROSS JOIN LATERAL (
       SELECT CASE WHEN t.tgnargs > 0
                   THEN pg_catalog.convert_from(substring(t.tgargs FROM 1 FOR position('\x00'::bytea IN t.tgargs) - 1),
                                                pg_catalog.current_setting('server_encoding'))
              END AS migration) a
  LEFT JOIN zdm.migrations m ON m.name = a.migration
 WHERE t.tgfoid = 'zdm.dual_write()'::regprocedure
   AND t.tgparentid = 0;

COMMENT ON VIEW zdm.dual_write_triggers IS
    'zdm: every dual-write trigger, its migration, and whether it dual-writes';

GRANT SELECT ON zdm.dual_write_triggers TO zdm_migrator, pg_monitor;

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

/*
 * Logical replication (issue 15): migrations through publishers and
 * subscribers alike, and zdm's own state local to each cluster.
 *
 * A publication FOR ALL TABLES publishes zdm's tables too (PostgreSQL 15
 * cannot leave tables out of it), and a subscriber must never apply
 * another cluster's migrations, journal, backfill requests or traffic
 * counts as its own.  Each table of zdm's state gets:
 *
 *  - zdm.state_guard(), BEFORE INSERT OR UPDATE OR DELETE FOR EACH ROW,
 *    enabled REPLICA: it fires only under session_replication_role =
 *    replica, as in a subscription's apply and table-sync workers, and
 *    drops the rows they write (zdm's own statements pass);
 *  - a random per-row identity, replica_id, as its replica identity: the
 *    apply worker finds the row to update or delete by it (before any
 *    trigger fires, and locking it), so it never finds one of the
 *    subscriber's own rows; and the publisher can update and delete rows
 *    of zdm.api_traffic, which has no other key, while it is published;
 *  - zdm.state_guard() again, BEFORE TRUNCATE (enabled as usual): a
 *    TRUNCATE cannot be left out by a subscriber, so it is refused while
 *    a publication publishes the table.
 *
 * A table zdm adds to its state later needs the same three.
 */
CREATE FUNCTION zdm.state_guard()
RETURNS trigger
AS 'MODULE_PATHNAME', 'zdm_state_guard'
LANGUAGE C;

COMMENT ON FUNCTION zdm.state_guard() IS
    'zdm: keeps a subscription from applying another cluster''s zdm state; refuses TRUNCATE of published state';

/* It fires for whoever writes, as the dual-write trigger does. */
GRANT EXECUTE ON FUNCTION zdm.state_guard() TO PUBLIC;

DO $$
DECLARE
    t record;
BEGIN
    FOR t IN
        SELECT c.oid::pg_catalog.regclass AS rel, c.relname
          FROM pg_catalog.pg_class c
         WHERE c.relnamespace = 'zdm'::pg_catalog.regnamespace AND c.relkind = 'r'
         ORDER BY c.relname
    LOOP
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s ADD COLUMN replica_id uuid NOT NULL DEFAULT pg_catalog.gen_random_uuid()', t.rel);
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s ADD CONSTRAINT %I UNIQUE (replica_id)', t.rel, t.relname || '_replica_id_key');
        EXECUTE pg_catalog.format(
            'ALTER TABLE %s REPLICA IDENTITY USING INDEX %I', t.rel, t.relname || '_replica_id_key');
        EXECUTE pg_catalog.format(
            'COMMENT ON COLUMN %s.replica_id IS %L', t.rel,
            'zdm: this row''s identity for logical replication (random, so no other cluster''s row matches it)');
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zdm_state_guard BEFORE INSERT OR UPDATE OR DELETE ON %s'
            ' FOR EACH ROW EXECUTE FUNCTION zdm.state_guard()', t.rel);
        EXECUTE pg_catalog.format('ALTER TABLE %s ENABLE REPLICA TRIGGER zdm_state_guard', t.rel);
        EXECUTE pg_catalog.format(
            'CREATE TRIGGER zdm_state_guard_truncate BEFORE TRUNCATE ON %s'
            ' FOR EACH STATEMENT EXECUTE FUNCTION zdm.state_guard()', t.rel);
    END LOOP;
END
$$;

/*
 * The tables of live migrations and their place in logical replication:
 * the publications here that publish them, and the subscriptions here
 * that write them (README, "Replication", says what each means).
 */
CREATE VIEW zdm.replicated_tables AS
SELECT m.name AS migration,
       m.phase,
       c.oid::pg_catalog.regclass AS relation,
       (SELECT pg_catalog.array_agg(DISTINCT pt.pubname ORDER BY pt.pubname)
          FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_catalog.pg_partition_tree(c.oid)) pp
          JOIN pg_catalog.pg_class pc ON pc.oid = pp.relid
          JOIN pg_catalog.pg_namespace pn ON pn.oid = pc.relnamespace
          JOIN pg_catalog.pg_publication_tables pt
            ON pt.schemaname = pn.nspname AND pt.tablename = pc.relname) AS publications,
       (SELECT pg_catalog.array_agg(DISTINCT s.subname ORDER BY s.subname)
          FROM (SELECT c.oid AS relid UNION SELECT relid FROM pg_catalog.pg_partition_tree(c.oid)) pp
          JOIN pg_catalog.pg_subscription_rel sr ON sr.srrelid = pp.relid
          JOIN pg_catalog.pg_subscription s ON s.oid = sr.srsubid) AS subscriptions
  FROM zdm.migrations m
 CROSS JOIN LATERAL pg_catalog.jsonb_array_elements(
         CASE WHEN pg_catalog.jsonb_typeof(m.plan->'tables') = 'array'
              THEN m.plan->'tables' ELSE '[]'::jsonb END) AS t(entry)
  JOIN pg_catalog.pg_class c
    ON c.oid = pg_catalog.to_regclass(CASE WHEN pg_catalog.jsonb_typeof(t.entry) = 'object'
                                           THEN t.entry->>'relation' END)
 WHERE m.phase NOT IN ('contracted', 'rolled_back');

COMMENT ON VIEW zdm.replicated_tables IS
    'zdm: the tables of live migrations, the publications here that publish them, the subscriptions here that write them';

GRANT SELECT ON zdm.replicated_tables TO zdm_migrator, pg_monitor;

/*
 * zdm installed on a publisher whose publication FOR ALL TABLES already
 * exists: its subscribers receive zdm's tables too, and stop at the first
 * change of one they do not have.
 */
DO $$
DECLARE
    pubs text;
BEGIN
    SELECT pg_catalog.string_agg(pg_catalog.quote_ident(p.pubname), ', ' ORDER BY p.pubname)
      INTO pubs
      FROM pg_catalog.pg_publication p WHERE p.puballtables;
    IF pubs IS NOT NULL THEN
        RAISE WARNING 'publication % publishes all tables, zdm''s own among them', pubs
            USING DETAIL = 'A subscriber without zdm stops replicating at the first change of one of zdm''s tables.',
                  HINT = 'Install zdm (CREATE EXTENSION zdm) in each subscriber''s database too, before zdm writes anything here: '
                         'subscribers with zdm leave the publisher''s zdm state out.';
    END IF;
END
$$;
