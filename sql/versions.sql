--
-- versions: API versions side by side, each through its schema of views.
--
CREATE TABLE vs_orders (id int PRIMARY KEY, customer text NOT NULL, legacy_status text NOT NULL DEFAULT 'pending');
INSERT INTO vs_orders VALUES (1, 'a', 'paid'), (2, 'b', 'shipped');

-- The seed's migration, declaring the versions it retires and introduces.
SELECT zdm.expand('vs_1', '{"versions": {"old": "v3", "new": "v4"}, "operations": [{"alter_column": {"table": "vs_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');
SELECT version, schema_name, introduced_by, retired_by FROM zdm.api_versions ORDER BY version;
SELECT name, retires, introduces FROM zdm.status WHERE name = 'vs_1';
SELECT n.nspname || '.' || c.relname AS view, pg_get_viewdef(c.oid) AS definition, c.reloptions
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname IN ('v3', 'v4') ORDER BY 1;

-- Each version declares itself once per connection.
SHOW search_path;
SELECT zdm.use_version('v4');
SHOW zdm.api_version;
SELECT * FROM vs_orders ORDER BY id;
INSERT INTO vs_orders (id, customer, status) VALUES (3, 'c', 'DELIVERED');
-- A v4 update of a row the backfill has not reached converts it.
UPDATE vs_orders SET customer = 'a, via v4' WHERE id = 1;
SELECT * FROM vs_orders WHERE id = 1;
-- Declared v4, the trigger takes even a write of both columns as v4's.
UPDATE public.vs_orders SET legacy_status = 'x', status = 'CANCELLED' WHERE id = 2;
SELECT zdm.use_version('v3');
SELECT * FROM vs_orders ORDER BY id;
INSERT INTO vs_orders (id, customer) VALUES (4, 'd');
-- Declared v3: a write of both is v3's.
UPDATE public.vs_orders SET legacy_status = 'refunded', status = 'IGNORED' WHERE id = 1;
RESET zdm.api_version;
RESET search_path;
SELECT id, legacy_status, status FROM vs_orders ORDER BY id;

-- Unknown versions, and bad calls.
SELECT zt.try($$SELECT zdm.use_version('v9')$$);
SELECT zt.try($$SELECT zdm.use_version(NULL)$$);
SELECT zt.try($$SELECT zdm.use_version('v4', NULL)$$);

-- Declared for one transaction (is_local), as a client behind a pooler in
-- transaction mode does: the version and its search_path end with the
-- transaction, committed or rolled back, and what the session had is back.
BEGIN;
SELECT zdm.use_version('v3', true);
SHOW zdm.api_version;
SELECT * FROM vs_orders WHERE id = 2;
-- the trigger believes it: a write of both columns is v3's
UPDATE public.vs_orders SET legacy_status = 'returned', status = 'IGNORED' WHERE id = 2;
COMMIT;
SHOW zdm.api_version;
SHOW search_path;
SELECT id, legacy_status, status FROM vs_orders WHERE id = 2;
SELECT zdm.use_version('v4');
BEGIN;
SELECT zdm.use_version('v3', is_local => true);
SELECT * FROM vs_orders WHERE id = 2;
ROLLBACK;
SHOW zdm.api_version;
SHOW search_path;
-- a transaction that fails ends it too
BEGIN;
SELECT zdm.use_version('v3', true);
SELECT 1 / 0;
ROLLBACK;
SHOW zdm.api_version;
RESET zdm.api_version;
RESET search_path;
-- two declarations in one transaction: the last one holds, and both end with it
BEGIN;
SELECT zdm.use_version('v3', true);
SELECT zdm.use_version('v4', true);
SHOW zdm.api_version;
COMMIT;
SHOW zdm.api_version;
SHOW search_path;
-- Outside a transaction block the declaration ends with its statement.
SELECT zdm.use_version('v4', true);
SHOW zdm.api_version;
-- Several statements of one query string are one transaction.
SELECT zdm.use_version('v4', true) IS NOT NULL AS declared \; SHOW zdm.api_version;
SHOW zdm.api_version;

-- A migration without "versions" retires none; "old" defaults to the last
-- "new"; a version name clashing with a schema that is not zdm's is refused.
CREATE SCHEMA v5;
SELECT zt.try($$SELECT zdm.expand('vs_x', '{"versions": {"new": "v5"}, "operations": [{"add_column": {"table": "vs_orders", "column": {"name": "x", "type": "int", "nullable": true}}}]}')$$);
DROP SCHEMA v5;
SELECT zt.try($$SELECT zdm.expand('vs_x', '{"versions": {"old": "v4", "new": "v4"}, "operations": []}')$$);

-- In place: pgroll's example 18 (reviews.rating text -> integer).  v5 sees
-- an integer "rating", v4 still the text one, on the same rows.
CREATE TABLE vs_reviews (id int PRIMARY KEY, product text NOT NULL, rating text);
INSERT INTO vs_reviews VALUES (1, 'tea', '4'), (2, 'coffee', '5');
SELECT zdm.expand('vs_18', '{"versions": {"new": "v5"}, "operations": [{"alter_column": {"table": "vs_reviews", "column": "rating", "type": "integer", "up": "CAST(rating AS integer)", "down": "CAST(rating AS text)"}}]}');
SELECT name, retires, introduces FROM zdm.status WHERE name = 'vs_18';
SELECT zt.shape('vs_reviews');
SELECT pg_get_viewdef('v5.vs_reviews'::regclass);
SELECT zdm.use_version('v5');
INSERT INTO vs_reviews (id, product, rating) VALUES (3, 'cocoa', 3);
UPDATE vs_reviews SET rating = rating + 1 WHERE id = 2;
SELECT id, rating, pg_typeof(rating) FROM vs_reviews ORDER BY id;
SELECT zdm.use_version('v4');
UPDATE vs_reviews SET rating = '2' WHERE id = 1;
SELECT id, rating, pg_typeof(rating) FROM vs_reviews ORDER BY id;
RESET zdm.api_version;
RESET search_path;
SELECT zdm.backfill('vs_18');
SELECT zdm.backfill('vs_18');
SELECT zdm.verify('vs_18');

-- Contract (the gate is its own suite: force here).  The retired version's
-- views now raise, naming the migration; the new version's view follows
-- the column renamed into place.
SELECT zdm.backfill('vs_1');
SELECT zdm.backfill('vs_1');
SELECT zdm.contract('vs_1', force => true);
SELECT zdm.contract('vs_18', force => true);
SELECT zt.shape('vs_reviews');
SELECT pg_get_viewdef('v5.vs_reviews'::regclass);
SELECT version, retired_by FROM zdm.api_versions ORDER BY version;
SELECT zt.try($$SELECT * FROM v3.vs_orders$$);
SELECT zt.try($$INSERT INTO v3.vs_orders (id, customer) VALUES (9, 'z')$$);
SELECT zt.try($$SELECT * FROM v4.vs_reviews$$);
SELECT zt.try($$SELECT zdm.use_version('v3')$$);
SELECT zdm.use_version('v5');
SELECT id, rating FROM vs_reviews ORDER BY id;
RESET zdm.api_version;
RESET search_path;
SELECT zt.try($$SELECT zdm.expand('vs_y', '{"versions": {"old": "v3", "new": "v6"}, "operations": []}')$$);

-- The load balancer's map: live versions; the newest and the default to green.
SELECT zdm.routing_map();
SELECT zdm.routing_map('old_pool', 'new_pool', 'x_api_version');
SELECT zt.try($$SELECT zdm.routing_map('bad upstream; }')$$);

-- Rollback of a versioned migration removes its version and schema.
CREATE TABLE vs_items (id int PRIMARY KEY, qty int NOT NULL);
SELECT zdm.expand('vs_20', '{"versions": {"new": "v7"}, "operations": [{"alter_column": {"table": "vs_items", "column": "qty", "name": "quantity"}}]}');
SELECT version FROM zdm.api_versions WHERE retired_by IS NULL ORDER BY version;
SELECT zdm.rollback('vs_20');
SELECT version FROM zdm.api_versions WHERE retired_by IS NULL ORDER BY version;
SELECT to_regnamespace('v7') AS v7_schema;
DROP TABLE vs_orders, vs_reviews, vs_items CASCADE;
