--
-- worker: handing a backfill to the background worker and steering it.
-- Every request here is rolled back, so the worker (which waits for the
-- requesting transaction) never acts: the suite checks the requests, the
-- state they write and every error, not the worker's timing (TAP does).
--
CREATE TABLE wk_orders (id int PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO wk_orders SELECT g, 'paid' FROM generate_series(1, 50) g;
SELECT zdm.expand('wk_1', '{"operations": [{"alter_column": {"table": "wk_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');

BEGIN;
SELECT zdm.start_backfill('wk_1', batch_size => 500, batch_time => '150 ms', max_rows_per_sec => 10000, sleep_ratio => 0.5);
SELECT worker, paused, batch_size, throttle_reason FROM zdm.status WHERE name = 'wk_1';
SELECT author = current_user AS runs_as_author, batch_time_ms, max_rows_per_sec, sleep_ratio
  FROM zdm.migrations WHERE name = 'wk_1';
-- Pause and resume; twice is a notice.
SELECT zdm.pause('wk_1');
SELECT zdm.pause('wk_1');
SELECT paused, throttle_reason FROM zdm.status WHERE name = 'wk_1';
SELECT zdm.resume('wk_1');
SELECT zdm.resume('wk_1');
-- Retune while it runs.
SELECT zdm.tune('wk_1', batch_size => 2000, sleep_ratio => 0);
SELECT batch_size, sleep_ratio FROM zdm.migrations WHERE name = 'wk_1';
SELECT event, detail FROM zdm.migration_log WHERE migration = 'wk_1' AND event <> 'ddl' ORDER BY id;
ROLLBACK;
SELECT worker, paused, batch_size FROM zdm.status WHERE name = 'wk_1';

-- Nonsense settings and wrong states.
CREATE TEMP TABLE attempts (label text, stmt text);
INSERT INTO attempts VALUES
 ('unknown migration',    $$SELECT zdm.start_backfill('no_such')$$),
 ('null name',            $$SELECT zdm.start_backfill(NULL)$$),
 ('empty name',           $$SELECT zdm.pause('')$$),
 ('batch_size 0',         $$SELECT zdm.start_backfill('wk_1', batch_size => 0)$$),
 ('batch_size negative',  $$SELECT zdm.tune('wk_1', batch_size => -10)$$),
 ('batch_time zero',      $$SELECT zdm.start_backfill('wk_1', batch_time => '0')$$),
 ('batch_time an hour',   $$SELECT zdm.tune('wk_1', batch_time => '1 hour')$$),
 ('rate zero',            $$SELECT zdm.tune('wk_1', max_rows_per_sec => 0)$$),
 ('sleep_ratio negative', $$SELECT zdm.tune('wk_1', sleep_ratio => -1)$$),
 ('sleep_ratio NaN',      $$SELECT zdm.tune('wk_1', sleep_ratio => 'NaN')$$),
 ('tune nothing',         $$SELECT zdm.tune('wk_1')$$),
 ('pause not started',    $$SELECT zdm.pause('wk_1')$$),
 ('resume unknown',       $$SELECT zdm.resume('no_such')$$);
SELECT label, zt.try(stmt) AS result FROM attempts;
SELECT zdm.resume('wk_1');

-- Backfilled, contracted, rolled back.
SELECT zdm.backfill('wk_1', 100);
SELECT zdm.backfill('wk_1', 100);
SELECT zdm.start_backfill('wk_1');
SELECT zdm.contract('wk_1');
SELECT zt.try($$SELECT zdm.start_backfill('wk_1')$$);
SELECT zt.try($$SELECT zdm.pause('wk_1')$$);
SELECT zt.try($$SELECT zdm.tune('wk_1', batch_size => 10)$$);
CREATE TABLE wk_items (id int PRIMARY KEY, qty int);
SELECT zdm.expand('wk_2', '{"operations": [{"add_column": {"table": "wk_items", "column": {"name": "q2", "type": "int", "nullable": true}, "up": "qty"}}]}');
SELECT zdm.rollback('wk_2');
SELECT zt.try($$SELECT zdm.start_backfill('wk_2')$$);
SELECT zt.try($$SELECT zdm.resume('wk_2')$$);

DROP TABLE wk_orders, wk_items;
