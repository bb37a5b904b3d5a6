--
-- create_constraint: check, foreign_key, unique and primary_key constraints
-- on one or more columns, as a migration role.  A check or a foreign key is
-- added NOT VALID at expand (every write is checked from then on) and
-- validated by a deferred step; a unique or primary key constraint is an
-- index built CONCURRENTLY by a deferred step, attached at contract.
-- Rollback removes all of it.  On a table the migration creates, the
-- constraint goes into its CREATE TABLE.  Every error a migration can
-- cause: its SQLSTATE and message, and nothing changed.
--
CREATE ROLE regress_cc_migrator;
GRANT zdm_migrator TO regress_cc_migrator;
GRANT USAGE ON SCHEMA zt TO regress_cc_migrator;
GRANT CREATE ON SCHEMA public TO regress_cc_migrator;
CREATE ROLE regress_cc_app;
CREATE ROLE regress_cc_other;
GRANT USAGE ON SCHEMA zt TO regress_cc_app;
-- a table the migration role may not reference
CREATE TABLE cc_private (id int PRIMARY KEY);
ALTER TABLE cc_private OWNER TO regress_cc_other;
SET ROLE regress_cc_migrator;

CREATE TABLE cc_sellers (name varchar(255), zip integer, PRIMARY KEY (name, zip));
INSERT INTO cc_sellers VALUES ('alice', 1000), ('bob', 2000);
CREATE TABLE cc_tickets (ticket_id serial PRIMARY KEY, sellers_name varchar(255), sellers_zip integer,
                         ticket_type varchar(255) DEFAULT 'paper');
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('alice', 1000), ('bob', 2000), (NULL, 3000);
GRANT SELECT, INSERT, UPDATE, DELETE ON cc_tickets, cc_sellers TO regress_cc_app;
GRANT USAGE ON SEQUENCE cc_tickets_ticket_id_seq TO regress_cc_app;
SELECT zt.describe('cc_tickets') AS tickets_before \gset
SELECT zt.describe('cc_sellers') AS sellers_before \gset

-- The deferred steps run in the background worker once the expand has
-- committed: CALL cc_wait() waits for them (or for a failure), then says
-- the phase.  A procedure, which commits between its looks: CREATE INDEX
-- CONCURRENTLY waits for every transaction older than its own to end.
CREATE PROCEDURE cc_wait(m text, INOUT phase text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    FOR i IN 1..12000 LOOP
        SELECT z.phase, z.deferred_section, z.last_error INTO r FROM zdm.migrations z WHERE z.name = m;
        COMMIT;
        IF r.deferred_section IS NULL OR r.phase = 'failed' OR r.last_error IS NOT NULL THEN
            phase := r.phase;
            RETURN;
        END IF;
        PERFORM pg_sleep(0.01);
    END LOOP;
    phase := format('still %s, owing %s steps', r.phase, r.deferred_section);
END
$$;

--
-- 1. check, two columns (pgroll's example 45 without its converting "up"):
--    NOT VALID at expand, so that every write is checked from then on;
--    VALIDATE by the worker, in a transaction of its own; contract has
--    nothing left to do.
--
\set check '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "cc_check_zip_name", "columns": ["sellers_name", "sellers_zip"], "check": "sellers_name = ''alice'' OR sellers_zip > 0", "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}'
BEGIN;
SELECT zdm.expand('cc_1', :'check');
SELECT zt.shape('cc_tickets');
SELECT jsonb_pretty(plan->'deferred') AS deferred, jsonb_pretty(plan->'contract') AS contract,
       jsonb_pretty(plan->'rollback') AS rollback
  FROM zdm.migrations WHERE name = 'cc_1';
COMMIT;
-- Old and new clients: every write is checked from now on.
SET ROLE regress_cc_app;
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('carol', 4000);
SELECT zt.try($$INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('carol', -1)$$);
SELECT zt.try($$UPDATE cc_tickets SET sellers_zip = 0 WHERE sellers_name = 'bob'$$);
SET ROLE regress_cc_migrator;
CALL cc_wait('cc_1');
SELECT zt.shape('cc_tickets');
SELECT phase, statement, detail FROM zdm.migration_log WHERE migration = 'cc_1' AND event = 'ddl' ORDER BY id;
SELECT zdm.contract('cc_1');
SELECT zt.shape('cc_tickets');
-- as it was
RESET ROLE;
ALTER TABLE cc_tickets DROP CONSTRAINT cc_check_zip_name;
DELETE FROM cc_tickets WHERE sellers_name = 'carol';
SET ROLE regress_cc_migrator;

-- Rows that break it: the worker's VALIDATE fails, the migration with it
-- (its error kept); contract is refused; rollback drops the constraint.
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('dan', -5);
SELECT zdm.expand('cc_1f', :'check');
CALL cc_wait('cc_1f');
SELECT phase, last_error, deferred, deferred_done, deferred_total FROM zdm.status WHERE name = 'cc_1f';
SELECT zt.try($$SELECT zdm.contract('cc_1f')$$);
SELECT zdm.rollback('cc_1f');
DELETE FROM cc_tickets WHERE sellers_name = 'dan';
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored;

-- A NO INHERIT check; the columns of the expression are its columns
-- (they need not be listed).  Rolled back once validated.
SELECT zdm.expand('cc_1b', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "cc_type_known", "check": "ticket_type IN (''paper'', ''digital'')", "no_inherit": true, "up": {}, "down": {}}}]}');
CALL cc_wait('cc_1b');
SELECT zt.shape('cc_tickets');
SELECT zdm.rollback('cc_1b');
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored;

--
-- 2. foreign_key, two columns, ON DELETE SET NULL of one of
--    them, deferrable: NOT VALID at expand (SHARE ROW EXCLUSIVE on the
--    referenced table); its rollback step names the referenced table, whose
--    lock the drop takes too.
--
\set fk '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "cc_fk_sellers", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "match_type": "simple", "on_delete": "SET NULL", "on_delete_set_columns": ["sellers_zip"], "on_update": "cascade"}, "deferrable": true, "initially_deferred": true, "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}'
BEGIN;
SELECT zdm.expand('cc_2', :'fk');
SELECT zt.shape('cc_tickets');
SELECT jsonb_pretty(plan->'deferred') AS deferred, jsonb_pretty(plan->'rollback') AS rollback
  FROM zdm.migrations WHERE name = 'cc_2';
COMMIT;
SET ROLE regress_cc_app;
-- deferred: checked at commit
BEGIN;
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('zed', 1);
COMMIT;
BEGIN;
SET CONSTRAINTS cc_fk_sellers IMMEDIATE;
SELECT zt.try($$INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('zed', 1)$$);
ROLLBACK;
SET ROLE regress_cc_migrator;
CALL cc_wait('cc_2');
SELECT zt.shape('cc_tickets');
SELECT zdm.rollback('cc_2');
SELECT phase, statement FROM zdm.migration_log WHERE migration = 'cc_2' AND event = 'ddl' ORDER BY id;
-- the same migration expands again: nothing was left behind
SELECT zdm.expand('cc_2', :'fk');
CALL cc_wait('cc_2');
SELECT zdm.contract('cc_2');
SELECT zt.shape('cc_tickets');
-- the foreign key at work: a seller's zip changes (cascade), another goes (set null)
INSERT INTO cc_sellers VALUES ('carl', 3000);
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('carl', 3000);
UPDATE cc_sellers SET zip = 1001 WHERE name = 'alice';
DELETE FROM cc_sellers WHERE name = 'carl';
SELECT sellers_name, sellers_zip FROM cc_tickets ORDER BY ticket_id;
RESET ROLE;
ALTER TABLE cc_tickets DROP CONSTRAINT cc_fk_sellers;
DELETE FROM cc_tickets WHERE sellers_name = 'carl';
UPDATE cc_sellers SET zip = 1000 WHERE name = 'alice';
UPDATE cc_tickets SET sellers_zip = 1000 WHERE sellers_name = 'alice';
SET ROLE regress_cc_migrator;
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored,
       zt.describe('cc_sellers') = :'sellers_before' AS sellers_restored;

-- MATCH FULL, and a row it refuses (a NULL name with a zip): VALIDATE
-- fails (23503), the migration with it.
SELECT zdm.expand('cc_2f', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "cc_fk_sellers", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "match_type": "FULL"}}}]}');
CALL cc_wait('cc_2f');
SELECT phase, last_error FROM zdm.status WHERE name = 'cc_2f';
SELECT zdm.rollback('cc_2f');
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored,
       zt.describe('cc_sellers') = :'sellers_before' AS sellers_restored;

--
-- 3. unique, two columns, with index parameters: nothing on the table at
--    expand; the worker builds the index CONCURRENTLY under a name of
--    zdm's, and it enforces uniqueness from then on; contract attaches it
--    (USING INDEX), which gives it the constraint's name.
--
\set unique '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "cc_unique_zip_name", "columns": ["sellers_name", "sellers_zip"], "nulls_not_distinct": true, "index_parameters": {"include_columns": ["ticket_type"], "storage_parameters": "fillfactor=70, deduplicate_items = off", "tablespace": "pg_default"}, "up": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}'
BEGIN;
SELECT zdm.expand('cc_3', :'unique');
SELECT zt.describe('cc_tickets') = :'tickets_before' AS unchanged_at_expand;
SELECT jsonb_pretty(plan->'deferred') AS deferred, jsonb_pretty(plan->'contract') AS contract,
       jsonb_pretty(plan->'rollback') AS rollback
  FROM zdm.migrations WHERE name = 'cc_3';
SELECT zt.try($$SELECT zdm.contract('cc_3')$$);
COMMIT;
CALL cc_wait('cc_3');
SELECT indexrelid::regclass AS index, indisvalid, indisunique FROM pg_index WHERE indrelid = 'cc_tickets'::regclass ORDER BY 1;
SET ROLE regress_cc_app;
SELECT zt.try($$INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('alice', 1000)$$);
SET ROLE regress_cc_migrator;
SELECT zdm.contract('cc_3');
SELECT zt.describe('cc_tickets');
SELECT phase, statement, detail FROM zdm.migration_log WHERE migration = 'cc_3' AND event = 'ddl' ORDER BY id;
RESET ROLE;
ALTER TABLE cc_tickets DROP CONSTRAINT cc_unique_zip_name;
SET ROLE regress_cc_migrator;

-- Rolled back once built: the worker drops the index (DROP INDEX
-- CONCURRENTLY) after the rollback commits.
SELECT zdm.expand('cc_3r', :'unique');
CALL cc_wait('cc_3r');
SELECT zdm.rollback('cc_3r');
CALL cc_wait('cc_3r');
SELECT phase, statement, detail FROM zdm.migration_log WHERE migration = 'cc_3r' AND event = 'ddl' ORDER BY id;
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored;

-- Duplicates: the build fails (23505); zdm drops the INVALID index it left
-- (which would go on refusing duplicates), and the migration fails.
INSERT INTO cc_tickets (sellers_name, sellers_zip) VALUES ('bob', 2000);
SELECT zdm.expand('cc_3f', :'unique');
CALL cc_wait('cc_3f');
SELECT phase, last_error FROM zdm.status WHERE name = 'cc_3f';
SELECT count(*) AS indexes_left FROM pg_index WHERE indrelid = 'cc_tickets'::regclass AND NOT indisvalid;
SELECT zt.try($$SELECT zdm.contract('cc_3f')$$);
SELECT zdm.rollback('cc_3f');
CALL cc_wait('cc_3f');
DELETE FROM cc_tickets WHERE ticket_id = (SELECT max(ticket_id) FROM cc_tickets);
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored;

-- deferrable unique: the attach says so, and the constraint is deferrable
SELECT zdm.expand('cc_3b', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "cc_unique_type", "columns": ["ticket_id", "ticket_type"], "deferrable": true, "initially_deferred": true, "up": {"ticket_type": "ticket_type"}, "down": {"ticket_type": "ticket_type"}}}]}');
CALL cc_wait('cc_3b');
SELECT zdm.contract('cc_3b');
SELECT conname, pg_get_constraintdef(oid), condeferrable, condeferred FROM pg_constraint WHERE conname = 'cc_unique_type';
RESET ROLE;
ALTER TABLE cc_tickets DROP CONSTRAINT cc_unique_type;
SET ROLE regress_cc_migrator;

--
-- 4. primary_key on columns that may hold NULL: a NOT VALID check for
--    each at expand (validated by the worker), SET NOT NULL (no scan: the
--    check is valid), the key and the checks' drop at contract.
--
CREATE TABLE cc_tasks (id integer, code text NOT NULL, title text);
INSERT INTO cc_tasks VALUES (1, 'a', 'one'), (2, 'b', 'two');
GRANT SELECT, INSERT ON cc_tasks TO regress_cc_app;
SELECT zt.describe('cc_tasks') AS tasks_before \gset
\set pk '{"operations": [{"create_constraint": {"type": "primary_key", "table": "cc_tasks", "name": "cc_tasks_pkey", "columns": ["id", "code"], "up": {"id": "id", "code": "code"}, "down": {"id": "id", "code": "code"}}}]}'
BEGIN;
SELECT zdm.expand('cc_4', :'pk');
SELECT zt.shape('cc_tasks');
SELECT jsonb_pretty(plan->'deferred') AS deferred, jsonb_pretty(plan->'contract') AS contract,
       jsonb_pretty(plan->'rollback') AS rollback
  FROM zdm.migrations WHERE name = 'cc_4';
COMMIT;
SET ROLE regress_cc_app;
SELECT zt.try($$INSERT INTO cc_tasks VALUES (NULL, 'c', 'three')$$);
SET ROLE regress_cc_migrator;
CALL cc_wait('cc_4');
SELECT zdm.rollback('cc_4');
CALL cc_wait('cc_4');
SELECT zt.describe('cc_tasks') = :'tasks_before' AS tasks_restored;
SELECT zdm.expand('cc_4b', :'pk');
CALL cc_wait('cc_4b');
SELECT zdm.contract('cc_4b');
SELECT zt.describe('cc_tasks');
SELECT phase, statement FROM zdm.migration_log WHERE migration = 'cc_4b' AND event = 'ddl' ORDER BY id;

--
-- 5. On a table the migration creates (pgroll's example 55: create_table,
--    then its primary key), each kind goes into the CREATE TABLE: nobody
--    sees the table before the expand commits, so nothing is deferred, and
--    the migration contracts at once.
--
SELECT zdm.expand('cc_5', '{"operations": [{"create_table": {"name": "cc_tasks2", "columns": [{"name": "id", "type": "serial"}, {"name": "title", "type": "varchar(255)", "nullable": false}, {"name": "seller", "type": "varchar(255)", "nullable": true}, {"name": "zip", "type": "integer", "nullable": true}]}}, {"create_constraint": {"name": "cc_tasks2_pkey", "table": "cc_tasks2", "columns": ["id"], "type": "primary_key", "index_parameters": {"include_columns": ["title"]}, "up": {"id": "id"}, "down": {"id": "id"}}}, {"create_constraint": {"name": "cc_tasks2_title", "table": "cc_tasks2", "columns": ["title"], "type": "unique", "nulls_not_distinct": true, "deferrable": true}}, {"create_constraint": {"name": "cc_tasks2_title_len", "table": "cc_tasks2", "type": "check", "check": "length(title) > 2"}}, {"create_constraint": {"name": "cc_tasks2_seller", "table": "cc_tasks2", "type": "foreign_key", "columns": ["seller", "zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "on_delete": "CASCADE"}}}]}');
SELECT zt.describe('cc_tasks2');
SELECT plan->'deferred' AS deferred FROM zdm.migrations WHERE name = 'cc_5';
SELECT statement FROM zdm.migration_log WHERE migration = 'cc_5' AND event = 'ddl' ORDER BY id LIMIT 1;
SELECT zdm.backfill('cc_5');
SELECT zdm.contract('cc_5');
SELECT zt.describe('cc_tasks2');

--
-- 6. "up" and "down": zdm constrains the column itself, so an "up" must be
--    the column (pgroll's example 45 converts sellers_zip: refused, saying
--    why); a "down" that is not the column is checked, then not applied.
--
SELECT zt.try($$SELECT zdm.expand('cc_6', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "check_zip_name", "columns": ["sellers_name", "sellers_zip"], "check": "sellers_name = ''alice'' OR sellers_zip > 0", "up": {"sellers_name": "sellers_name", "sellers_zip": "SELECT CASE WHEN sellers_name != ''alice'' AND sellers_zip <= 0 THEN 123 WHEN sellers_name != ''alice'' THEN sellers_zip ELSE sellers_zip END"}, "down": {"sellers_name": "sellers_name", "sellers_zip": "sellers_zip"}}}]}')$$);
SELECT zdm.expand('cc_6', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "check_zip_name", "columns": ["sellers_name", "sellers_zip"], "check": "sellers_name = ''alice'' OR sellers_zip > 0", "up": {"sellers_name": "SELECT sellers_name", "sellers_zip": "\"sellers_zip\""}, "down": {"sellers_name": "sellers_name", "sellers_zip": "abs(sellers_zip)"}}}]}');
SELECT zdm.rollback('cc_6');
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_restored;

--
-- 7. Bad input: each error with its SQLSTATE, message and hint; nothing
--    changes.
--
CREATE TABLE cc_parted (id int, region text, v int) PARTITION BY LIST (region);
CREATE TABLE cc_parted_eu PARTITION OF cc_parted FOR VALUES IN ('eu');
CREATE TABLE cc_nokey (id int, code text);
CREATE INDEX cc_idx_taken ON cc_tickets (ticket_type);
SELECT zt.describe('cc_tickets') AS tickets_before \gset
SELECT zt.describe('cc_sellers') AS sellers_before \gset
CREATE TABLE cc_attempts (label text, migration jsonb);
INSERT INTO cc_attempts VALUES
 ('unknown type', '{"operations": [{"create_constraint": {"type": "uniq", "table": "cc_tickets", "name": "x", "columns": ["sellers_name"]}}]}'),
 ('exclude type', '{"operations": [{"create_constraint": {"type": "exclude", "table": "cc_tickets", "name": "x", "columns": ["sellers_name"]}}]}'),
 ('no name', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "check": "true"}}]}'),
 ('unknown key', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true", "not_valid": true}}]}'),
 ('unknown table', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_nope", "name": "x", "check": "true"}}]}'),
 ('no columns', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x"}}]}'),
 ('empty columns', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": []}}]}'),
 ('unknown column', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["nope"]}}]}'),
 ('column twice', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip", "sellers_zip"]}}]}'),
 ('column not a string', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": [1]}}]}'),
 ('name exists', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "cc_tickets_pkey", "check": "true"}}]}'),
 ('name too long', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "cc_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "check": "true"}}]}'),
 ('index name taken', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "cc_idx_taken", "columns": ["ticket_type"]}}]}'),
 ('named twice', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true"}}, {"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true"}}]}'),
 ('check missing', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x"}}]}'),
 ('check not boolean', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "sellers_zip + 1"}}]}'),
 ('check two statements', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true); DROP TABLE cc_sellers; --"}}]}'),
 ('check subquery', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "sellers_zip IN (SELECT zip FROM cc_sellers)"}}]}'),
 ('check unknown column', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "nope > 0"}}]}'),
 ('check with references', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true", "references": {"table": "cc_sellers", "columns": ["zip"]}}}]}'),
 ('check deferrable', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "true", "deferrable": true}}]}'),
 ('no inherit, partitioned', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_parted", "name": "x", "check": "v > 0", "no_inherit": true}}]}'),
 ('unique with check', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "check": "true"}}]}'),
 ('unique, partitioned', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_parted", "name": "x", "columns": ["id", "region"]}}]}'),
 ('pk exists', '{"operations": [{"create_constraint": {"type": "primary_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"]}}]}'),
 ('two pks', '{"operations": [{"create_constraint": {"type": "primary_key", "table": "cc_nokey", "name": "x", "columns": ["id"]}}, {"create_constraint": {"type": "primary_key", "table": "cc_nokey", "name": "y", "columns": ["code"]}}]}'),
 ('pk nulls not distinct', '{"operations": [{"create_constraint": {"type": "primary_key", "table": "cc_nokey", "name": "x", "columns": ["id"], "nulls_not_distinct": true}}]}'),
 ('deferred, not deferrable', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "deferrable": false, "initially_deferred": true}}]}'),
 ('unknown index parameter', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"fillfactor": 70}}}]}'),
 ('include twice', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"include_columns": ["id"]}}}]}'),
 ('storage injection', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"storage_parameters": "fillfactor=70) WHERE (id > 0"}}}]}'),
 ('storage statements', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"storage_parameters": "fillfactor=70); DROP TABLE cc_sellers; --"}}}]}'),
 ('storage invalid', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"storage_parameters": "fillfactor=5"}}}]}'),
 ('storage unknown', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"storage_parameters": "autovacuum_enabled=off"}}}]}'),
 ('tablespace unknown', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"tablespace": "nope"}}}]}'),
 ('tablespace global', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_nokey", "name": "x", "columns": ["id"], "index_parameters": {"tablespace": "pg_global"}}}]}'),
 ('references missing', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"]}}]}'),
 ('references unknown key', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_sellers", "columns": ["zip"], "column": "zip"}}}]}'),
 ('references unknown table', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_nope", "columns": ["zip"]}}}]}'),
 ('references new table', '{"operations": [{"create_table": {"name": "cc_new", "columns": [{"name": "id", "type": "int", "pk": true}]}}, {"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_new", "columns": ["id"]}}}]}'),
 ('references a view', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "pg_tables", "columns": ["tablename"]}}}]}'),
 ('references unknown column', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_sellers", "columns": ["nope"]}}}]}'),
 ('references count', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"]}}}]}'),
 ('references no unique', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "references": {"table": "cc_sellers", "columns": ["zip"]}}}]}'),
 ('references type', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip", "sellers_name"], "references": {"table": "cc_sellers", "columns": ["name", "zip"]}}}]}'),
 ('references no privilege', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["ticket_id"], "references": {"table": "cc_private", "columns": ["id"]}}}]}'),
 ('match partial', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "match_type": "PARTIAL"}}}]}'),
 ('match unknown', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "match_type": "loose"}}}]}'),
 ('action unknown', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "on_delete": "DROP TABLE"}}}]}'),
 ('set columns, no set', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "on_delete_set_columns": ["sellers_zip"]}}}]}'),
 ('set columns, other', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_tickets", "name": "x", "columns": ["sellers_name", "sellers_zip"], "references": {"table": "cc_sellers", "columns": ["name", "zip"], "on_delete": "SET NULL", "on_delete_set_columns": ["ticket_type"]}}}]}'),
 ('fk, partitioned', '{"operations": [{"create_constraint": {"type": "foreign_key", "table": "cc_parted", "name": "x", "columns": ["id"], "references": {"table": "cc_tasks2", "columns": ["id"]}}}]}'),
 ('up of another column', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "up": {"ticket_type": "ticket_type"}}}]}'),
 ('up not a string', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "up": {"sellers_zip": 1}}}]}'),
 ('up not an object', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "up": "sellers_zip"}}]}'),
 ('up converts', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "up": {"sellers_zip": "sellers_zip + 1"}}}]}'),
 ('down invalid', '{"operations": [{"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"], "down": {"sellers_zip": "nope"}}}]}'),
 ('on a replaced column', '{"operations": [{"alter_column": {"table": "cc_tickets", "column": "sellers_zip", "name": "zip"}}, {"create_constraint": {"type": "unique", "table": "cc_tickets", "name": "x", "columns": ["sellers_zip"]}}]}'),
 ('on a column dropped after', '{"operations": [{"create_constraint": {"type": "check", "table": "cc_tickets", "name": "x", "check": "ticket_type <> ''''"}}, {"drop_column": {"table": "cc_tickets", "column": "ticket_type"}}]}');
SELECT label, zt.try(format('SELECT zdm.expand(%L, %L)', 'cc_bad_' || row_number() OVER (), migration)) AS result
  FROM cc_attempts;
SELECT zt.describe('cc_tickets') = :'tickets_before' AS tickets_unchanged,
       zt.describe('cc_sellers') = :'sellers_before' AS sellers_unchanged;
SELECT count(*) AS recorded FROM zdm.migrations WHERE name LIKE 'cc\_bad\_%';

RESET ROLE;
DROP TABLE cc_attempts, cc_tasks2, cc_tasks, cc_tickets, cc_sellers, cc_parted, cc_private, cc_nokey;
DROP PROCEDURE cc_wait(text, text);
DELETE FROM zdm.migrations WHERE name LIKE 'cc\_%';
REVOKE CREATE ON SCHEMA public FROM regress_cc_migrator;
REVOKE USAGE ON SCHEMA zt FROM regress_cc_migrator, regress_cc_app;
DROP ROLE regress_cc_migrator, regress_cc_app, regress_cc_other;
