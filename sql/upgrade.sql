--
-- upgrade: every version installs, and each upgrades to the next.
--
DROP EXTENSION zdm;
CREATE EXTENSION zdm VERSION '0.1';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT count(*) AS functions_in_0_1 FROM pg_proc WHERE pronamespace = 'zdm'::regnamespace;

-- State written under 0.1 survives the upgrades.  (The library always
-- matches the newest scripts, so the row is written by hand here, as 0.1
-- wrote it.)
INSERT INTO zdm.migrations (name, definition, plan, phase)
VALUES ('up_1', '{"operations": []}',
        '{"search_path": "public", "tables": [], "contract": [], "rollback": []}', 'expanded');
INSERT INTO zdm.migration_log (migration, event, phase) VALUES ('up_1', 'phase', 'expanded');
ALTER EXTENSION zdm UPDATE TO '0.2';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT name, phase, worker, paused, batch_size FROM zdm.status;
ALTER EXTENSION zdm UPDATE TO '0.3';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT name, phase, worker, retires, introduces FROM zdm.status;
ALTER EXTENSION zdm UPDATE TO '0.4';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT zdm.differs(1, 2);
ALTER EXTENSION zdm UPDATE TO '0.5';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT zdm.delay_point();
-- A version schema of 0.5, and the grants 0.5's README asked DBAs for.
CREATE TABLE up_t (id int PRIMARY KEY);
CREATE SCHEMA up_v1;
CREATE VIEW up_v1.up_t WITH (security_invoker = true) AS SELECT * FROM up_t;
INSERT INTO zdm.api_versions (version, schema_name, introduced_by) VALUES ('up_v1', 'up_v1', 'up_1');
CREATE ROLE regress_up_migrator;
GRANT USAGE ON SCHEMA zdm TO regress_up_migrator;
GRANT SELECT, INSERT, UPDATE ON zdm.migrations TO regress_up_migrator;
GRANT SELECT, INSERT ON zdm.migration_log TO regress_up_migrator;
-- Undeclared traffic as 0.5 stored it: version ''.
INSERT INTO zdm.api_traffic VALUES (date_trunc('minute', now()), '', 'postgres', 7);
-- 0.6: the author comes from the journal; zdm's state is zdm's alone.
ALTER EXTENSION zdm UPDATE TO '0.6';
SELECT has_table_privilege('regress_up_migrator', 'zdm.migrations', 'UPDATE') AS may_update,
       has_table_privilege('regress_up_migrator', 'zdm.migration_log', 'INSERT') AS may_append,
       has_table_privilege('regress_up_migrator', 'zdm.migrations', 'SELECT') AS may_read,
       has_schema_privilege('public', 'up_v1', 'USAGE') AS version_schema_usable,
       has_table_privilege('public', 'up_v1.up_t', 'SELECT') AS version_view_granted;
DELETE FROM zdm.api_versions WHERE version = 'up_v1';
-- 0.6 names it "(undeclared)", as the distribution always did.
SELECT version, requests FROM zdm.api_traffic;
DELETE FROM zdm.api_traffic;
DROP SCHEMA up_v1 CASCADE;
DROP TABLE up_t;
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
SELECT name, author = current_user AS author_from_journal FROM zdm.migrations;
SELECT pg_has_role('zdm_migrator', 'USAGE') AS superuser_is_member,
       has_table_privilege('public', 'zdm.migrations', 'INSERT') AS public_may_insert;
SELECT zdm.backfill('up_1');
SELECT zdm.rollback('up_1');
SELECT name, phase FROM zdm.status;
-- 0.7: the operation engine.
ALTER EXTENSION zdm UPDATE TO '0.7';
SELECT extversion FROM pg_extension WHERE extname = 'zdm';

-- A fresh install of the default version has the same objects as the upgrade.
CREATE TEMP TABLE upgraded AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'zdm');
DROP EXTENSION zdm;
CREATE EXTENSION zdm;
SELECT extversion FROM pg_extension WHERE extname = 'zdm';
CREATE TEMP TABLE fresh AS
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'zdm');
(SELECT 'only upgraded' AS side, object FROM upgraded EXCEPT SELECT 'only upgraded', object FROM fresh)
UNION ALL
(SELECT 'only fresh', object FROM fresh EXCEPT SELECT 'only fresh', object FROM upgraded);
SELECT count(*) AS objects FROM fresh;
-- The columns of the state table match too.
SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
 WHERE attrelid = 'zdm.migrations'::regclass AND attnum > 0 AND NOT attisdropped;
REVOKE ALL ON SCHEMA zdm FROM regress_up_migrator;
DROP ROLE regress_up_migrator;
