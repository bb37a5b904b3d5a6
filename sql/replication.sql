--
-- replication: what logical replication needs of zdm on one server.  Two
-- clusters, a publisher and a subscriber, are in test/t/025_logical_replication.pl;
-- here, what one database shows: the dual-write trigger fires in replica
-- mode, zdm's state tables are guarded and have an identity of their own,
-- and a publication that publishes them changes what zdm allows.
--
CREATE ROLE regress_repl_migrator;
GRANT zdm_migrator TO regress_repl_migrator;
CREATE ROLE regress_repl_app;
CREATE ROLE regress_repl_monitor;
GRANT pg_monitor TO regress_repl_monitor;
GRANT USAGE ON SCHEMA zt TO regress_repl_migrator, regress_repl_app;
CREATE TYPE rp_status AS ENUM ('pending', 'paid', 'shipped');
CREATE TABLE rp_orders (id bigint PRIMARY KEY, customer text, legacy_status text NOT NULL);
INSERT INTO rp_orders SELECT g, 'c' || g, 'pending' FROM generate_series(1, 4) g;
ALTER TABLE rp_orders OWNER TO regress_repl_migrator;
ALTER TYPE rp_status OWNER TO regress_repl_migrator;
GRANT SELECT, INSERT, UPDATE ON rp_orders TO regress_repl_app;
\set m '{"operations": [{"alter_column": {"table": "rp_orders", "column": "legacy_status", "name": "status_enum", "type": "rp_status", "nullable": false, "up": "legacy_status::rp_status", "down": "status_enum::text"}}]}'

SET ROLE regress_repl_migrator;
SELECT zdm.expand('rp_1', :'m');
RESET ROLE;

-- The dual-write trigger is enabled ALWAYS: it fires for a subscription's
-- apply worker, which writes under session_replication_role = replica.
SELECT tgname LIKE 'zdm\_rp\_1\_%' AS dual_write, tgenabled
  FROM pg_trigger WHERE tgrelid = 'rp_orders'::regclass AND NOT tgisinternal;
SELECT relation, migration, enabled, dual_writing FROM zdm.dual_write_triggers;
SET session_replication_role = replica;
INSERT INTO rp_orders (id, customer, legacy_status) VALUES (10, 'replicated v3', 'paid');
UPDATE rp_orders SET legacy_status = 'shipped' WHERE id = 1;
INSERT INTO rp_orders (id, customer, status_enum) VALUES (11, 'replicated v4', 'shipped');
RESET session_replication_role;
SELECT id, legacy_status, status_enum FROM rp_orders WHERE id IN (1, 10, 11) ORDER BY id;
-- An application's UPDATE is still planned with the conversion (inline).
SET ROLE regress_repl_app;
EXPLAIN (VERBOSE, COSTS OFF) UPDATE rp_orders SET legacy_status = 'paid' WHERE id = 2;
UPDATE rp_orders SET legacy_status = 'paid' WHERE id = 2;
RESET ROLE;
SELECT id, legacy_status, status_enum FROM rp_orders WHERE id = 2;

-- zdm's state tables: a random per-row replica identity, a guard enabled
-- REPLICA (dropping what a subscription's workers write there) and one
-- for TRUNCATE.
SELECT c.relname, c.relreplident, i.indexrelid::regclass AS identity_index,
       (SELECT string_agg(t.tgname || ':' || t.tgenabled::text, ', ' ORDER BY t.tgname)
          FROM pg_trigger t WHERE t.tgrelid = c.oid AND t.tgname LIKE 'zdm\_state\_guard%') AS guards
  FROM pg_class c
  LEFT JOIN pg_index i ON i.indrelid = c.oid AND i.indisreplident
 WHERE c.relnamespace = 'zdm'::regnamespace AND c.relkind = 'r'
 ORDER BY c.relname;
SELECT count(DISTINCT replica_id) = count(*) AS distinct_ids FROM zdm.migration_log;

-- In replica mode a session (not a subscription's worker) still writes
-- zdm's state, through zdm and directly.
SET session_replication_role = replica;
SET ROLE regress_repl_migrator;
SELECT zdm.backfill('rp_1', 100);
SELECT zdm.backfill('rp_1', 100);
RESET ROLE;
INSERT INTO zdm.api_traffic (bucket, version, source, requests)
VALUES (date_trunc('minute', now()), 'rp_v', 'external', 1);
RESET session_replication_role;
SELECT phase FROM zdm.status WHERE name = 'rp_1';
SELECT version, requests FROM zdm.api_traffic WHERE version = 'rp_v';
SELECT zt.try($$SELECT zdm.state_guard()$$);

-- A publication of every table publishes zdm's too.  (wal_level is not
-- logical here: the publication only has to exist.)
SET client_min_messages = error;
CREATE PUBLICATION rp_all FOR ALL TABLES;
RESET client_min_messages;
-- zdm.api_traffic has no key but its replica identity: counts added to a
-- minute's row (an UPDATE) work while it is published.
SELECT zdm.record_traffic('rp_v', 5);
SELECT zdm.record_traffic('rp_v', 5);
SELECT version, sum(requests) FROM zdm.api_traffic WHERE version = 'rp_v' GROUP BY version;
DELETE FROM zdm.api_traffic WHERE version = 'rp_v';
-- TRUNCATE would wipe every subscriber's own state: refused.
SELECT zt.try($$TRUNCATE zdm.api_traffic$$);
SELECT zt.try($$TRUNCATE zdm.migration_log$$);
-- Which publications publish a live migration's table: for migration and
-- monitoring roles.
SELECT migration, phase, relation, publications, subscriptions FROM zdm.replicated_tables;
SET ROLE regress_repl_monitor;
SELECT migration, publications FROM zdm.replicated_tables;
SET ROLE regress_repl_app;
SELECT zt.try($$SELECT count(*) FROM zdm.replicated_tables$$);
RESET ROLE;
-- Published, but this database streams to no slot: no one to wait for.
SET ROLE regress_repl_migrator;
SELECT zdm.expand('rp_2', '{"operations": [{"add_column": {"table": "rp_orders", "column": {"name": "note", "type": "text", "nullable": true}}}]}');
-- zdm.subscribers_expanded is a list of slot names.
SET zdm.subscribers_expanded = '"unterminated';
SELECT zt.try($$SELECT zdm.expand('rp_3', '{"operations": [{"add_column": {"table": "rp_orders", "column": {"name": "note2", "type": "text", "nullable": true}}}]}')$$);
RESET zdm.subscribers_expanded;
-- The throttle on slots and the replication check are a superuser's to change.
SELECT zt.try($$SET zdm.throttle_slot_lag = -1$$);
SELECT zt.try($$SET zdm.replication_check = off$$);
SET zdm.subscribers_expanded = 'shop_replica, reports';
SHOW zdm.subscribers_expanded;
RESET zdm.subscribers_expanded;
SELECT zdm.contract('rp_1');
SELECT zdm.rollback('rp_2');
RESET ROLE;
SELECT name, phase FROM zdm.status WHERE name LIKE 'rp\_%' ORDER BY name;
SELECT count(*) AS live FROM zdm.replicated_tables;

DROP PUBLICATION rp_all;
DROP TABLE rp_orders;
DROP TYPE rp_status;
REVOKE USAGE ON SCHEMA zt FROM regress_repl_migrator, regress_repl_app;
DROP ROLE regress_repl_migrator, regress_repl_app, regress_repl_monitor;
