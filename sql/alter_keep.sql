--
-- alter_keep: the new column of an alter_column keeps what the old one had
-- (NOT NULL, default, CHECK, foreign keys, comment) through contract; what
-- it cannot keep (indexes, UNIQUE, objects that use the column) is refused
-- at expand, changing nothing; rollback restores the table exactly; an
-- in-place "check" goes on the new column; up and down may read other rows
-- (sub-selects), through the trigger, the backfill, verify and contract.
--
CREATE ROLE regress_alk_migrator;
GRANT zdm_migrator TO regress_alk_migrator;
SELECT format('GRANT CREATE ON DATABASE %I TO regress_alk_migrator', current_database()) \gexec
CREATE ROLE regress_alk_app;
GRANT USAGE ON SCHEMA zt TO regress_alk_migrator, regress_alk_app;

--
-- 1. NOT NULL, a default, two CHECKs, a foreign key and a comment, none of
--    them restated by the migration: the renamed, retyped column has them
--    all after contract, under their own names.
--
CREATE TABLE alk_users (id int PRIMARY KEY, name text NOT NULL);
CREATE TABLE alk_accounts (
    id int PRIMARY KEY,
    owner int NOT NULL DEFAULT 1
          CONSTRAINT alk_owner_positive CHECK (owner > 0)
          CONSTRAINT alk_owner_fk REFERENCES alk_users (id) ON DELETE CASCADE,
    plan text,
    CONSTRAINT alk_owner_plan CHECK (owner < 100 OR plan IS NOT NULL));
COMMENT ON COLUMN alk_accounts.owner IS 'who pays';
INSERT INTO alk_users SELECT g, 'u' || g FROM generate_series(1, 3) g;
INSERT INTO alk_accounts SELECT g, 1 + g % 3, 'basic' FROM generate_series(1, 6) g;
ALTER TABLE alk_users OWNER TO regress_alk_migrator;
ALTER TABLE alk_accounts OWNER TO regress_alk_migrator;
GRANT SELECT, INSERT, UPDATE, DELETE ON alk_users, alk_accounts TO regress_alk_app;
SELECT zt.describe('alk_accounts');

SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_1', '{"operations": [{"alter_column": {"table": "alk_accounts", "column": "owner", "name": "owner_id", "type": "bigint"}}]}');
-- The copies are NOT VALID (no scan under the expand's lock) and the new
-- column has no default while both columns are live; the comment is there.
SELECT zt.describe('alk_accounts');
SELECT statement FROM zdm.migration_log WHERE migration = 'alk_1' AND event = 'ddl' ORDER BY id;
RESET ROLE;

-- Old and new clients write; the trigger keeps the columns in step.
SET ROLE regress_alk_app;
INSERT INTO alk_accounts (id, owner, plan) VALUES (10, 2, 'pro');
INSERT INTO alk_accounts (id, owner_id, plan) VALUES (11, 3, 'pro');
INSERT INTO alk_accounts (id, plan) VALUES (12, 'free');
RESET ROLE;

SET ROLE regress_alk_migrator;
SELECT zdm.backfill('alk_1', 100);
SELECT zdm.backfill('alk_1', 100);
SELECT zdm.verify('alk_1');
-- Contract validates the copies (SHARE UPDATE EXCLUSIVE), then under
-- ACCESS EXCLUSIVE sets NOT NULL and the default, drops the old column
-- (and its foreign key, a step locking alk_users too) and gives the copies
-- the old names.
SELECT s->>'relation' AS relation, s->>'lock' AS lock, s->>'sql' AS sql
  FROM zdm.migrations, jsonb_array_elements(plan->'contract') s WHERE name = 'alk_1';
SELECT zdm.contract('alk_1');
SELECT zt.describe('alk_accounts');
SELECT zt.describe('alk_users');
RESET ROLE;

-- Every one of them works on the new column.
SET ROLE regress_alk_app;
INSERT INTO alk_accounts (id, plan) VALUES (20, 'default owner');
SELECT owner_id FROM alk_accounts WHERE id = 20;
SELECT zt.try($$INSERT INTO alk_accounts (id, owner_id) VALUES (21, -1)$$);
SELECT zt.try($$INSERT INTO alk_accounts (id, owner_id) VALUES (21, 99)$$);
SELECT zt.try($$INSERT INTO alk_accounts (id, owner_id) VALUES (21, NULL)$$);
SELECT zt.try($$INSERT INTO alk_accounts (id, owner_id, plan) VALUES (21, 200, NULL)$$);
DELETE FROM alk_users WHERE id = 3;
SELECT count(*) AS accounts_of_user_3 FROM alk_accounts WHERE owner_id = 3;
RESET ROLE;

-- A serial column: its sequence passes to the new column before the old
-- one goes (which would take it along), and keeps counting.
CREATE TABLE alk_tickets (id int PRIMARY KEY, seq serial);
INSERT INTO alk_tickets (id) VALUES (1), (2);
ALTER TABLE alk_tickets OWNER TO regress_alk_migrator;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_1s', '{"operations": [{"alter_column": {"table": "alk_tickets", "column": "seq", "name": "ticket_no", "type": "bigint"}}]}');
INSERT INTO alk_tickets (id) VALUES (3);
SELECT zdm.backfill('alk_1s', 100);
SELECT zdm.backfill('alk_1s', 100);
SELECT zdm.contract('alk_1s');
SELECT zt.describe('alk_tickets');
INSERT INTO alk_tickets (id) VALUES (4);
SELECT * FROM alk_tickets ORDER BY id;
RESET ROLE;

-- A partitioned table: the partitions' copies of the table's check are
-- the table's business (carried with it), a partition's own comment is
-- copied; a check a partition has of its own is refused.
CREATE TABLE alk_events (id int, region text, kind text NOT NULL CONSTRAINT alk_kind_set CHECK (kind <> ''),
                         PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE alk_events_eu PARTITION OF alk_events FOR VALUES IN ('eu');
CREATE TABLE alk_events_us PARTITION OF alk_events FOR VALUES IN ('us');
COMMENT ON COLUMN alk_events_eu.kind IS 'kind, eu';
INSERT INTO alk_events VALUES (1, 'eu', 'a'), (2, 'us', 'b');
ALTER TABLE alk_events OWNER TO regress_alk_migrator;
ALTER TABLE alk_events_eu OWNER TO regress_alk_migrator;
ALTER TABLE alk_events_us OWNER TO regress_alk_migrator;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_1p', '{"operations": [{"alter_column": {"table": "alk_events", "column": "kind", "name": "event_kind", "type": "varchar(20)"}}]}');
SELECT zdm.backfill('alk_1p', 100);
SELECT zdm.backfill('alk_1p', 100);
SELECT zdm.backfill('alk_1p', 100);
SELECT zdm.contract('alk_1p');
SELECT zt.describe('alk_events_eu');
ALTER TABLE alk_events_us ADD CONSTRAINT alk_us_only CHECK (event_kind <> 'eu');
SELECT zt.try($$SELECT zdm.expand('alk_1q', '{"operations": [{"alter_column": {"table": "alk_events", "column": "event_kind", "name": "kind"}}]}')$$);
RESET ROLE;

--
-- 2. In place, with API versions: the migration restates a check under
--    the name of the old column's (it replaces it) and the comment; the
--    retired version's guard view, which names every column, is dropped and
--    created again around the swap by the next migration of the table.
--
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_2', '{"versions": {"old": "alk_v1", "new": "alk_v2"}, "operations": [{"alter_column": {"table": "alk_accounts", "column": "plan", "type": "varchar(20)", "comment": "the plan, short", "check": {"name": "alk_owner_plan", "constraint": "owner_id < 1000 OR plan IS NOT NULL"}, "up": "left(plan, 20)", "down": "plan"}}]}');
SELECT zt.describe('alk_accounts');
SELECT zdm.backfill('alk_2', 100);
SELECT zdm.backfill('alk_2', 100);
SELECT zdm.contract('alk_2', force => true);
SELECT zt.describe('alk_accounts');
SELECT pg_get_viewdef('alk_v1.alk_accounts');
SELECT zdm.expand('alk_3', '{"versions": {"new": "alk_v3"}, "operations": [{"alter_column": {"table": "alk_accounts", "column": "owner_id", "type": "integer", "up": "owner_id::integer", "down": "owner_id"}}]}');
SELECT zdm.backfill('alk_3', 100);
SELECT zdm.backfill('alk_3', 100);
SELECT zdm.contract('alk_3', force => true);
SELECT zt.describe('alk_accounts');
SELECT pg_get_viewdef('alk_v1.alk_accounts');
SELECT zt.try($$SELECT * FROM alk_v1.alk_accounts$$);
SELECT zt.try($$INSERT INTO alk_v1.alk_accounts (id) VALUES (30)$$);
RESET ROLE;

--
-- 3. Rollback restores the table exactly, whatever the migration added on
--    the way (copies of constraints, its own checks, one of them naming
--    another column only, and foreign key, a comment, the NOT NULL helper),
--    and the same migration expands again.
--
CREATE TABLE alk_items (
    id int PRIMARY KEY,
    qty int NOT NULL DEFAULT 0 CONSTRAINT alk_qty_range CHECK (qty BETWEEN 0 AND 1000),
    maker int REFERENCES alk_users (id),
    note text);
COMMENT ON COLUMN alk_items.qty IS 'units in stock';
INSERT INTO alk_items SELECT g, g, 1 + g % 2, NULL FROM generate_series(1, 8) g;
ALTER TABLE alk_items OWNER TO regress_alk_migrator;
GRANT SELECT, INSERT, UPDATE ON alk_items TO regress_alk_app;
SELECT zt.describe('alk_items') AS items_before \gset
SELECT zt.describe('alk_users') AS users_before \gset
\set mig4 '{"operations": [{"alter_column": {"table": "alk_items", "column": "qty", "name": "quantity", "type": "bigint", "check": {"name": "alk_quantity_even", "constraint": "quantity % 2 = 0 OR maker IS NOT NULL"}, "up": "CASE WHEN qty % 2 = 1 THEN qty + 1 ELSE qty END", "down": "quantity"}}, {"alter_column": {"table": "alk_items", "column": "note", "name": "remark", "references": {"name": "alk_remark_fk", "table": "alk_users", "column": "id"}, "check": {"name": "alk_maker_known", "constraint": "maker > 0"}, "type": "integer", "up": "NULL", "down": "NULL"}}]}'
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_4', :'mig4');
SELECT zt.describe('alk_items');
RESET ROLE;
SET ROLE regress_alk_app;
INSERT INTO alk_items (id, qty, maker) VALUES (20, 3, 1);
UPDATE alk_items SET quantity = 6 WHERE id = 1;
RESET ROLE;
SET ROLE regress_alk_migrator;
SELECT zdm.backfill('alk_4', 3);
SELECT zdm.rollback('alk_4');
SELECT zt.describe('alk_items') = :'items_before' AS items_restored,
       zt.describe('alk_users') = :'users_before' AS users_restored;
SELECT id, qty FROM alk_items WHERE id IN (1, 20) ORDER BY id;
-- nothing of it was left behind to collide with
SELECT zdm.expand('alk_4', :'mig4');
SELECT zdm.rollback('alk_4');
SELECT zt.describe('alk_items') = :'items_before' AS items_restored,
       zt.describe('alk_users') = :'users_before' AS users_restored;
-- Rolled back in place too, with its version schema.
SELECT zdm.expand('alk_5', '{"versions": {"new": "alk_v5"}, "operations": [{"alter_column": {"table": "alk_items", "column": "qty", "type": "numeric(10,2)", "check": {"name": "alk_qty_range", "constraint": "qty >= 0"}, "up": "qty", "down": "qty::integer"}}]}');
SELECT zt.describe('alk_items');
SELECT zdm.rollback('alk_5');
SELECT zt.describe('alk_items') = :'items_before' AS items_restored;
RESET ROLE;

--
-- 4. What the new column cannot keep is refused at expand, naming it, and
--    nothing changes.
--
CREATE TABLE alk_refuse (
    id int PRIMARY KEY,
    code text CONSTRAINT alk_code_unique UNIQUE,
    tag text, email text, flag boolean, price numeric, nick text, score int,
    kind text CONSTRAINT alk_kind_check CHECK (length(kind) < 10),
    since date DEFAULT current_date,
    maker int REFERENCES alk_users (id),
    lo int, hi int, CONSTRAINT alk_lo_hi CHECK (lo <= hi),
    serial_no int GENERATED ALWAYS AS IDENTITY,
    total numeric GENERATED ALWAYS AS (price * 2) STORED,
    state text, phase text, a1 text, a2 text,
    during int4range, CONSTRAINT alk_no_overlap EXCLUDE USING gist (during WITH &&),
    dcode text CONSTRAINT alk_dcode_unique UNIQUE DEFERRABLE);
CREATE INDEX alk_tag_idx ON alk_refuse (tag text_pattern_ops);
CREATE INDEX alk_email_lower_idx ON alk_refuse (lower(email));
CREATE INDEX alk_flagged_idx ON alk_refuse (id) WHERE flag;
CREATE TABLE alk_refs (id int PRIMARY KEY, code text REFERENCES alk_refuse (code));
CREATE TABLE alk_refs_others (id int PRIMARY KEY, code text REFERENCES alk_refuse (code));
CREATE VIEW alk_nicks AS SELECT id, nick FROM alk_refuse;
CREATE STATISTICS alk_score_stats ON score, id FROM alk_refuse;
CREATE POLICY alk_state_policy ON alk_refuse USING (state <> 'hidden');
CREATE FUNCTION alk_noop() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER alk_phase_when BEFORE UPDATE ON alk_refuse FOR EACH ROW WHEN (OLD.phase IS DISTINCT FROM NEW.phase) EXECUTE FUNCTION alk_noop();
CREATE TRIGGER alk_score_of BEFORE UPDATE OF score ON alk_refuse FOR EACH ROW EXECUTE FUNCTION alk_noop();
CREATE RULE alk_state_rule AS ON UPDATE TO alk_refuse WHERE NEW.state = 'void' DO INSTEAD NOTHING;
ALTER TABLE alk_refuse OWNER TO regress_alk_migrator;
ALTER TABLE alk_refs OWNER TO regress_alk_migrator;
SELECT zt.describe('alk_refuse') AS refuse_before \gset

CREATE TEMP TABLE alk_attempts (label text, stmt text);
INSERT INTO alk_attempts VALUES
 ('referenced by a table not its', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "code", "name": "code2"}}]}')$$),
 ('opclass, new type',  $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "tag", "name": "tag2", "type": "integer", "up": "NULL", "down": "NULL"}}]}')$$),
 ('index expr, new type', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "email", "name": "email2", "type": "integer", "up": "NULL", "down": "NULL"}}]}')$$),
 ('exclusion constraint', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "during", "name": "during2"}}]}')$$),
 ('deferrable unique',  $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "dcode", "name": "dcode2"}}]}')$$),
 ('unique, name taken', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "a1", "name": "b1", "unique": {"name": "alk_lo_hi"}}}]}')$$),
 ('unique, relation taken', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "a1", "name": "b1", "unique": {"name": "alk_tag_idx"}}}]}')$$),
 ('unique, bad key',    $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "a1", "name": "b1", "unique": {"name": "u", "deferrable": true}}}]}')$$),
 ('generated column',   $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "price", "name": "price2"}}]}')$$),
 ('view',               $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "nick", "name": "nick2"}}]}')$$),
 ('statistics, trigger', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "score", "name": "score2"}}]}')$$),
 ('policy, rule',       $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "state", "name": "state2"}}]}')$$),
 ('trigger WHEN',       $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "phase", "name": "phase2"}}]}')$$),
 ('identity column',    $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "serial_no", "name": "serial2"}}]}')$$),
 ('a generated one',    $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "total", "name": "total2"}}]}')$$),
 ('check, new type',    $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "kind", "name": "kind2", "type": "integer", "up": "NULL", "down": "NULL"}}]}')$$),
 ('default, new type',  $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "since", "name": "since2", "type": "integer", "up": "NULL", "down": "NULL"}}]}')$$),
 ('foreign key, type',  $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "maker", "name": "maker2", "type": "text", "up": "maker::text", "down": "maker2::integer"}}]}')$$),
 ('check name taken',   $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "kind", "name": "kind2", "check": {"name": "alk_lo_hi", "constraint": "kind2 <> ''''"}}}]}')$$),
 ('check names a replaced column', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "a1", "name": "b1", "check": {"name": "c", "constraint": "b1 <> a2"}}}, {"alter_column": {"table": "alk_refuse", "column": "a2", "name": "b2", "type": "varchar(10)"}}]}')$$),
 ('both columns of a check', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "lo", "name": "lo2"}}, {"alter_column": {"table": "alk_refuse", "column": "hi", "name": "hi2"}}]}')$$),
 ('references nothing unique', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "a1", "name": "b1", "references": {"name": "f", "table": "alk_users", "column": "name"}}}]}')$$),
 ('references, bad action', $$SELECT zdm.expand('alk_x', '{"operations": [{"alter_column": {"table": "alk_refuse", "column": "lo", "name": "lo2", "references": {"name": "f", "table": "alk_users", "column": "id", "on_delete": "EXPLODE"}}}]}')$$);
GRANT SELECT ON alk_attempts TO regress_alk_migrator;
SET ROLE regress_alk_migrator;
SELECT label, zt.try(stmt) AS result FROM alk_attempts;
RESET ROLE;
SELECT zt.describe('alk_refuse') = :'refuse_before' AS unchanged;
SELECT count(*) AS migrations FROM zdm.migrations WHERE name = 'alk_x';

--
-- 4b. Indexes: every index naming the column (several columns, INCLUDE,
--     an expression, a predicate, an operator class, a collation, another
--     access method, storage parameters) and its UNIQUE constraint are
--     built again on the new column by the background worker, CONCURRENTLY,
--     once the backfill is done; other tables' foreign keys that rely on
--     the constraint (and the table's own, from another column) follow,
--     NOT VALID and validated by the worker.  Contract gives each its old
--     name, comment, CLUSTER and REPLICA IDENTITY.
--
CREATE TABLE alk_ix (
    id int PRIMARY KEY,
    code text NOT NULL CONSTRAINT alk_ix_code_key UNIQUE,
    tag text,
    parent_code text CONSTRAINT alk_ix_parent_fkey REFERENCES alk_ix (code),
    flag boolean);
CREATE INDEX alk_ix_tag_code ON alk_ix (tag, code DESC NULLS FIRST) INCLUDE (id);
CREATE INDEX alk_ix_lower_code ON alk_ix (lower(code)) WHERE flag AND code <> '';
CREATE INDEX alk_ix_code_pattern ON alk_ix (code text_pattern_ops) WITH (fillfactor = 70);
CREATE INDEX alk_ix_code_c ON alk_ix (code COLLATE "C");
CREATE INDEX alk_ix_code_hash ON alk_ix USING hash (code);
COMMENT ON INDEX alk_ix_tag_code IS 'tag lookups';
COMMENT ON CONSTRAINT alk_ix_code_key ON alk_ix IS 'one code each';
ALTER TABLE alk_ix CLUSTER ON alk_ix_code_key;
ALTER TABLE alk_ix REPLICA IDENTITY USING INDEX alk_ix_code_key;
CREATE TABLE alk_ix_refs (id int PRIMARY KEY, code text CONSTRAINT alk_ix_refs_code_fkey REFERENCES alk_ix (code) ON UPDATE CASCADE);
INSERT INTO alk_ix SELECT g, 'c' || g, 't' || g % 3, CASE WHEN g > 1 THEN 'c1' END, g % 2 = 0 FROM generate_series(1, 20) g;
INSERT INTO alk_ix_refs SELECT g, 'c' || g FROM generate_series(1, 5) g;
ALTER TABLE alk_ix OWNER TO regress_alk_migrator;
ALTER TABLE alk_ix_refs OWNER TO regress_alk_migrator;
GRANT SELECT, INSERT, UPDATE, DELETE ON alk_ix, alk_ix_refs TO regress_alk_app;
SELECT zt.describe('alk_ix') AS ix_before \gset
SELECT zt.describe('alk_ix_refs') AS ix_refs_before \gset
SELECT string_agg(relname, ', ' ORDER BY relname) AS ix_indexes FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
 WHERE i.indrelid = 'alk_ix'::regclass \gset
SELECT string_agg(conname || ' ' || contype::text, ', ' ORDER BY conname) AS ix_constraints FROM pg_constraint
 WHERE conrelid IN ('alk_ix'::regclass, 'alk_ix_refs'::regclass) \gset
-- CREATE INDEX takes CREATE on the schema, which the worker's builds need: said at expand
SET ROLE regress_alk_migrator;
SELECT zt.try($$SELECT zdm.expand('alk_i1', '{"versions": {"new": "alk_i1"}, "operations": [{"alter_column": {"table": "alk_ix", "column": "code", "type": "varchar(40)", "up": "code", "down": "code"}}]}')$$);
RESET ROLE;
GRANT CREATE ON SCHEMA public TO regress_alk_migrator;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_i1', '{"versions": {"new": "alk_i1"}, "operations": [{"alter_column": {"table": "alk_ix", "column": "code", "type": "varchar(40)", "up": "code", "down": "code"}}]}');
-- the deferred steps: each index, then the foreign keys relying on the new unique one
SELECT s->>'runs' AS runs, s->>'sql' AS deferred FROM zdm.migrations, jsonb_array_elements(plan->'deferred') s
 WHERE name = 'alk_i1';
-- nothing is built in the expand's transaction
SELECT count(*) AS built FROM pg_class WHERE relname LIKE 'zdm_dup_%';
RESET ROLE;
SET ROLE regress_alk_app;
INSERT INTO alk_ix VALUES (21, 'c21', 't0', 'c2', true);
SELECT zdm.use_version('alk_i1');
INSERT INTO alk_ix VALUES (22, 'c22', 't1', 'c21', false);
SELECT zt.try($$INSERT INTO alk_ix VALUES (23, 'c22', 't1', NULL, false)$$);
RESET zdm.api_version;
RESET search_path;
RESET ROLE;
SET ROLE regress_alk_migrator;
SELECT zdm.backfill('alk_i1', 100);
SELECT zdm.backfill('alk_i1', 100);
CALL zt.settle('alk_i1');
SELECT zt.describe('alk_ix');
SELECT zt.describe('alk_ix_refs');
SELECT zdm.verify('alk_i1');
SELECT zdm.contract('alk_i1', force => true);
CALL zt.settle('alk_i1');
SELECT zt.describe('alk_ix');
SELECT zt.describe('alk_ix_refs');
-- the same indexes and constraints, under the same names
SELECT (SELECT string_agg(relname, ', ' ORDER BY relname) FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid
         WHERE i.indrelid = 'alk_ix'::regclass) = :'ix_indexes' AS indexes_kept,
       (SELECT string_agg(conname || ' ' || contype::text, ', ' ORDER BY conname) FROM pg_constraint
         WHERE conrelid IN ('alk_ix'::regclass, 'alk_ix_refs'::regclass)) = :'ix_constraints' AS constraints_kept,
       zt.describe('alk_ix_refs') = :'ix_refs_before' AS refs_kept;
SELECT conname, obj_description(oid, 'pg_constraint') AS comment, convalidated FROM pg_constraint
 WHERE conrelid IN ('alk_ix'::regclass, 'alk_ix_refs'::regclass) ORDER BY conname;
SELECT relname, obj_description(c.oid, 'pg_class') AS comment, i.indisclustered, i.indisreplident, c.reloptions
  FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid WHERE i.indrelid = 'alk_ix'::regclass ORDER BY relname;
RESET ROLE;
SET ROLE regress_alk_app;
SELECT zt.try($$INSERT INTO alk_ix VALUES (30, 'c1', 't1', NULL, false)$$);
SELECT zt.try($$INSERT INTO alk_ix_refs VALUES (30, 'nope')$$);
UPDATE alk_ix SET code = 'c5b' WHERE id = 5;
SELECT code FROM alk_ix_refs WHERE id = 5;
RESET ROLE;

-- Rolled back after the worker built everything: the tables are as they were.
SELECT zt.describe('alk_ix') AS ix_before \gset
SELECT zt.describe('alk_ix_refs') AS ix_refs_before \gset
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_i2', '{"versions": {"new": "alk_i2"}, "operations": [{"alter_column": {"table": "alk_ix", "column": "code", "type": "text", "up": "code", "down": "code"}}]}');
SELECT zdm.backfill('alk_i2', 100);
SELECT zdm.backfill('alk_i2', 100);
CALL zt.settle('alk_i2');
SELECT count(*) AS built FROM pg_class WHERE relname LIKE 'zdm_dup_%';
SELECT zdm.rollback('alk_i2');
CALL zt.settle('alk_i2');
SELECT zt.describe('alk_ix') = :'ix_before' AS ix_restored, zt.describe('alk_ix_refs') = :'ix_refs_before' AS refs_restored;

-- An up that changes the values other tables reference: the new foreign
-- key cannot be validated, and the migration fails with the reason; it
-- rolls back cleanly.
SELECT zdm.expand('alk_i3', '{"versions": {"new": "alk_i3"}, "operations": [{"alter_column": {"table": "alk_ix", "column": "code", "up": "upper(code)", "down": "lower(code)"}}]}');
SELECT zdm.backfill('alk_i3', 100);
SELECT zdm.backfill('alk_i3', 100);
CALL zt.settle('alk_i3');
SELECT zdm.rollback('alk_i3');
CALL zt.settle('alk_i3');
SELECT zt.describe('alk_ix') = :'ix_before' AS ix_restored, zt.describe('alk_ix_refs') = :'ix_refs_before' AS refs_restored;
RESET ROLE;

-- A primary key column, integer to bigint, with another table's foreign
-- key: the backfill walks the old key, which stays until contract; the
-- new column is NOT NULL before ADD PRIMARY KEY USING INDEX (no scan).
CREATE TABLE alk_pk (id int PRIMARY KEY, note text);
CREATE TABLE alk_pk_refs (id int PRIMARY KEY, pk_id int CONSTRAINT alk_pk_refs_fk REFERENCES alk_pk (id) ON DELETE CASCADE);
INSERT INTO alk_pk SELECT g, 'n' || g FROM generate_series(1, 10) g;
INSERT INTO alk_pk_refs SELECT g, g FROM generate_series(1, 10) g;
ALTER TABLE alk_pk OWNER TO regress_alk_migrator;
ALTER TABLE alk_pk_refs OWNER TO regress_alk_migrator;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_i4', '{"versions": {"new": "alk_i4"}, "operations": [{"alter_column": {"table": "alk_pk", "column": "id", "type": "bigint", "up": "id", "down": "CAST(id AS integer)"}}]}');
INSERT INTO alk_pk VALUES (11, 'n11');
SELECT zdm.backfill('alk_i4', 100);
SELECT zdm.backfill('alk_i4', 100);
CALL zt.settle('alk_i4');
SELECT zdm.verify('alk_i4');
SELECT zdm.contract('alk_i4', force => true);
CALL zt.settle('alk_i4');
SELECT zt.describe('alk_pk');
SELECT zt.describe('alk_pk_refs');
SELECT conname, convalidated FROM pg_constraint WHERE conrelid = 'alk_pk_refs'::regclass ORDER BY conname;
DELETE FROM alk_pk WHERE id = 1;
SELECT count(*) AS refs_left FROM alk_pk_refs;
-- a primary key's column cannot become nullable
SELECT zt.try($$SELECT zdm.expand('alk_i5', '{"versions": {"new": "alk_i5"}, "operations": [{"alter_column": {"table": "alk_pk", "column": "id", "name": "id2", "nullable": true}}]}')$$);
RESET ROLE;

--
-- 5. An in-place "check" (pgroll's example 22): on the new column only,
--    NOT VALID at expand, validated at contract.  Old clients' values that
--    up fixes are accepted, and so is the backfill of old rows.
--
CREATE TABLE alk_posts (id int PRIMARY KEY, title varchar(255) NOT NULL);
INSERT INTO alk_posts VALUES (1, 'ab'), (2, 'a longer title');
ALTER TABLE alk_posts OWNER TO regress_alk_migrator;
GRANT SELECT, INSERT, UPDATE ON alk_posts TO regress_alk_app;
SELECT zt.describe('alk_posts') AS posts_before \gset
\set mig22 '{"versions": {"new": "alk_p2"}, "operations": [{"alter_column": {"table": "alk_posts", "column": "title", "check": {"name": "title_length", "constraint": "length(title) > 3"}, "up": "SELECT CASE WHEN length(title) <= 3 THEN LPAD(title, 4, ''-'') ELSE title END", "down": "title"}}]}'
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_22', :'mig22');
SELECT zt.describe('alk_posts');
-- rolled back, the table is as it was, and expanding again finds no leftover
SELECT zdm.rollback('alk_22');
SELECT zt.describe('alk_posts') = :'posts_before' AS posts_restored;
SELECT zdm.expand('alk_22', :'mig22');
RESET ROLE;
SET ROLE regress_alk_app;
INSERT INTO alk_posts VALUES (3, 'xy');
SELECT zdm.use_version('alk_p2');
SELECT zt.try($$INSERT INTO alk_posts VALUES (4, 'xy')$$);
INSERT INTO alk_posts VALUES (4, 'wxyz');
RESET zdm.api_version;
RESET search_path;
RESET ROLE;
SET ROLE regress_alk_migrator;
SELECT zdm.backfill('alk_22', 10);
SELECT zdm.backfill('alk_22', 10);
SELECT zdm.verify('alk_22');
SELECT zdm.contract('alk_22', force => true);
SELECT zt.describe('alk_posts');
SELECT * FROM alk_posts ORDER BY id;
RESET ROLE;

--
-- 6. Sub-selects in up and down (pgroll's example 21, with its foreign
--    key): the trigger runs them as queries over the row, the backfill and
--    verify as part of their SQL.  A second statement is still refused
--    (suite errors).
--
CREATE TABLE alk_authors (id int PRIMARY KEY, name text);
CREATE TABLE alk_books (id int PRIMARY KEY, title text, author_id int);
INSERT INTO alk_authors VALUES (1, 'ann'), (2, 'bob');
INSERT INTO alk_books VALUES (1, 'a', 1), (2, 'b', 2), (3, 'c', 7), (4, 'd', NULL);
ALTER TABLE alk_authors OWNER TO regress_alk_migrator;
ALTER TABLE alk_books OWNER TO regress_alk_migrator;
GRANT SELECT ON alk_authors TO regress_alk_app;
GRANT SELECT, INSERT, UPDATE ON alk_books TO regress_alk_app;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_21', '{"versions": {"new": "alk_b2"}, "operations": [{"alter_column": {"table": "alk_books", "column": "author_id", "references": {"name": "fk_authors_id", "table": "alk_authors", "column": "id", "on_delete": "CASCADE"}, "up": "SELECT CASE WHEN EXISTS (SELECT 1 FROM alk_authors WHERE alk_authors.id = author_id) THEN author_id ELSE NULL END", "down": "(SELECT a.id FROM alk_authors a WHERE a.id = author_id)"}}]}');
RESET ROLE;
SET ROLE regress_alk_app;
-- old clients: up keeps a known author and drops an unknown one
INSERT INTO alk_books (id, title, author_id) VALUES (10, 'x', 2), (11, 'y', 9);
UPDATE alk_books SET author_id = 8 WHERE id = 1;
-- new clients (the new version's view): down reads the new column by its name
SELECT zdm.use_version('alk_b2');
INSERT INTO alk_books (id, title, author_id) VALUES (12, 'z', 2);
SELECT zt.try($$INSERT INTO alk_books (id, title, author_id) VALUES (13, 'w', 9)$$);
RESET zdm.api_version;
RESET search_path;
RESET ROLE;
-- the sub-select's plan follows changes to the table it reads
ALTER TABLE alk_authors ADD COLUMN born int;
SET ROLE regress_alk_app;
INSERT INTO alk_books (id, title, author_id) VALUES (14, 'v', 1);
RESET ROLE;
SET ROLE regress_alk_migrator;
SELECT b.id, b.author_id AS old, p.author_id AS new
  FROM alk_books b JOIN alk_b2.alk_books p USING (id) ORDER BY id;
SELECT zdm.backfill('alk_21', 100);
SELECT zdm.backfill('alk_21', 100);
SELECT zdm.verify('alk_21');
SELECT zdm.contract('alk_21', force => true);
SELECT zt.describe('alk_books');
SELECT * FROM alk_books ORDER BY id;
RESET ROLE;

-- Without versions an UPDATE is usually planned with the conversion
-- instead of the trigger (zdm.inline_updates, suite inline); an up with a
-- sub-select is always the trigger's, which reads the value the statement
-- writes: loan 1 moves to bob.
CREATE TABLE alk_loans (id int PRIMARY KEY, author_id int);
INSERT INTO alk_loans VALUES (1, 1), (2, 2);
ALTER TABLE alk_loans OWNER TO regress_alk_migrator;
GRANT SELECT, INSERT, UPDATE ON alk_loans TO regress_alk_app;
SET ROLE regress_alk_migrator;
SELECT zdm.expand('alk_21b', '{"operations": [{"alter_column": {"table": "alk_loans", "column": "author_id", "name": "author", "type": "text", "up": "(SELECT a.name FROM alk_authors a WHERE a.id = author_id)", "down": "(SELECT a.id FROM alk_authors a WHERE a.name = author)"}}]}');
RESET ROLE;
SET ROLE regress_alk_app;
UPDATE alk_loans SET author_id = 2 WHERE id = 1;
UPDATE alk_loans SET author = 'ann' WHERE id = 2;
SELECT * FROM alk_loans ORDER BY id;
RESET ROLE;
SET ROLE regress_alk_migrator;
SELECT zdm.rollback('alk_21b');
RESET ROLE;

DROP VIEW alk_nicks;
DROP TABLE alk_accounts, alk_tickets, alk_events, alk_items, alk_refs, alk_refs_others, alk_ix_refs, alk_ix, alk_pk_refs, alk_pk, alk_refuse, alk_posts, alk_books, alk_loans, alk_authors, alk_users CASCADE;
DROP FUNCTION alk_noop();
-- The versions of this suite are not the later suites' business.
DROP SCHEMA alk_v1, alk_v2, alk_v3, alk_p2, alk_b2, alk_i1, alk_i2, alk_i3, alk_i4 CASCADE;
DELETE FROM zdm.api_versions WHERE version LIKE 'alk\_%';
DELETE FROM zdm.migrations WHERE name LIKE 'alk\_%';
REVOKE USAGE ON SCHEMA zt FROM regress_alk_migrator, regress_alk_app;
REVOKE CREATE ON SCHEMA public FROM regress_alk_migrator;
SELECT format('REVOKE CREATE ON DATABASE %I FROM regress_alk_migrator', current_database()) \gexec
DROP ROLE regress_alk_app;
DROP ROLE regress_alk_migrator;
