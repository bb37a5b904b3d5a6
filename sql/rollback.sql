--
-- rollback: any time before contract; the table returns to what it was,
-- keeping every write; a rolled-back name can be expanded again.
--
CREATE TABLE rb_users (id int PRIMARY KEY, email text NOT NULL, nick text);
INSERT INTO rb_users SELECT g, 'u' || g || '@example.com', NULL FROM generate_series(1, 20) g;
SELECT zt.shape('rb_users') AS before \gset

\set mig '{"operations": [{"alter_column": {"table": "rb_users", "column": "email", "name": "email_lower", "nullable": false, "up": "lower(email)", "down": "email_lower"}}, {"add_column": {"table": "rb_users", "up": "split_part(email, ''@'', 1)", "column": {"name": "handle", "type": "text", "nullable": true}}}, {"create_table": {"name": "rb_audit", "columns": [{"name": "id", "type": "bigserial", "pk": true}, {"name": "what", "type": "text"}]}}]}'
SELECT zdm.expand('rb_1', :'mig');

-- Writes through both versions, a partial backfill.
INSERT INTO rb_users (id, email) VALUES (100, 'Old@Example.com');
INSERT INTO rb_users (id, email_lower) VALUES (101, 'new@example.com');
UPDATE rb_users SET email_lower = 'changed@example.com' WHERE id = 1;
SELECT zdm.backfill('rb_1', 5);
INSERT INTO rb_audit (what) VALUES ('x');

-- Rolling back in the middle of the backfill.
SELECT zdm.rollback('rb_1');
SELECT zt.shape('rb_users') = :'before' AS restored;
SELECT to_regclass('rb_audit') AS audit_table;
SELECT id, email FROM rb_users WHERE id IN (1, 100, 101) ORDER BY id;
SELECT name, phase FROM zdm.status WHERE name = 'rb_1';

-- Twice: a notice, false.
SELECT zdm.rollback('rb_1');

-- The same name can be expanded again after a rollback (corrected, here).
SELECT zdm.expand('rb_1', '{"operations": [{"add_column": {"table": "rb_users", "column": {"name": "handle", "type": "text", "nullable": true}, "up": "split_part(email, ''@'', 1)"}}]}');
SELECT name, phase, rows_backfilled, backfill_key FROM zdm.migrations WHERE name = 'rb_1';
SELECT zdm.rollback('rb_1');
SELECT zt.shape('rb_users') = :'before' AS restored;

-- Rollback inside the expand's transaction is allowed: it is an undo.
BEGIN;
SELECT zdm.expand('rb_2', '{"operations": [{"add_column": {"table": "rb_users", "column": {"name": "age", "type": "int", "nullable": true}}}]}');
SELECT zdm.rollback('rb_2');
COMMIT;
SELECT zt.shape('rb_users') = :'before' AS restored;
SELECT event, phase, statement FROM zdm.migration_log WHERE migration = 'rb_2' ORDER BY id;
DROP TABLE rb_users;
