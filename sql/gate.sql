--
-- gate: contract waits until the API version it retires has (almost) no
-- traffic left, measured over zdm.gate_window.
--
CREATE TABLE gt_orders (id int PRIMARY KEY, legacy_status text NOT NULL);
INSERT INTO gt_orders VALUES (1, 'paid');
SELECT zdm.expand('gt_1', '{"versions": {"old": "g3", "new": "g4"}, "operations": [{"alter_column": {"table": "gt_orders", "column": "legacy_status", "name": "status", "up": "upper(legacy_status)", "down": "lower(status)"}}]}');
SELECT zdm.backfill('gt_1');
SELECT zdm.backfill('gt_1');

-- No telemetry at all: refused, silence is not consent.
SELECT zt.try($$SELECT zdm.contract('gt_1')$$);
-- What the gate would say now, as monitoring reads it: no share, shut.
SELECT * FROM zdm.contract_gate();

-- Counts from outside (the load balancer's logs).
SELECT zdm.record_traffic('g3', 100, now() - interval '10 minutes');
SELECT zdm.record_traffic('g4', 9800, now() - interval '10 minutes');
SELECT zdm.record_traffic('g4', 100);
SELECT version, requests, share, sources FROM zdm.api_version_distribution;
-- 100 of 10000 = 1.00%: at the threshold, refused.
SELECT zt.try($$SELECT zdm.contract('gt_1')$$);
SELECT * FROM zdm.contract_gate();
SELECT zt.shape('gt_orders');
-- Traffic older than the window does not count.
SELECT zdm.record_traffic('g4', 1000000, now() - interval '3 days');
SELECT zt.try($$SELECT zdm.contract('gt_1')$$);
-- 100 of 10101 = 0.99%: below the threshold.
SELECT zdm.record_traffic('g4', 101);
SELECT version, requests, share FROM zdm.api_version_distribution;
SELECT * FROM zdm.contract_gate();
SELECT zdm.contract('gt_1');
SELECT name, phase FROM zdm.status WHERE name = 'gt_1';
-- Contracted: the gate is behind it.
SELECT count(*) FROM zdm.contract_gate();

-- The threshold and the window are settings.
CREATE TABLE gt_items (id int PRIMARY KEY, qty int NOT NULL);
INSERT INTO gt_items VALUES (1, 1);
SELECT zdm.expand('gt_2', '{"versions": {"new": "g5"}, "operations": [{"alter_column": {"table": "gt_items", "column": "qty", "name": "quantity"}}]}');
SELECT retires, introduces FROM zdm.status WHERE name = 'gt_2';
SELECT zdm.backfill('gt_2');
SELECT zdm.backfill('gt_2');
SELECT zdm.record_traffic('g4', 50);
SELECT zdm.record_traffic('g5', 950);
SET zdm.contract_threshold = 0.1;
SET zdm.gate_window = '5min';
SELECT version, requests, share FROM zdm.api_version_distribution;
SELECT zt.try($$SELECT zdm.contract('gt_2')$$);
SET zdm.contract_threshold = 0.01;
-- Force overrides the gate, and the journal says who and why.
SELECT zdm.contract('gt_2', force => true);
SELECT event, detail LIKE 'forced by ' || current_user || ': API version "g4" carries 20.90% of requests (251 of 1201) in the last 5 min%' AS journaled
  FROM zdm.migration_log WHERE migration = 'gt_2' AND event = 'gate_override';
RESET zdm.gate_window;
RESET zdm.contract_threshold;

-- A migration that declares no versions retires none: not gated, and said so.
CREATE TABLE gt_notes (id int PRIMARY KEY, body text);
SELECT zdm.expand('gt_3', '{"operations": [{"add_column": {"table": "gt_notes", "column": {"name": "title", "type": "text", "nullable": true}}}]}');
SELECT zdm.backfill('gt_3');
SELECT zdm.contract('gt_3');

-- Traffic that declared no version has one name, "(undeclared)": fed from
-- outside under that name, or restored from a dump of zdm 0.5 (version
-- ''), it is one row of the distribution, and the gate counts it as
-- zdm.gate_undeclared says.
CREATE TABLE gt_tags (id int PRIMARY KEY, label text NOT NULL);
INSERT INTO gt_tags VALUES (1, 'x');
SELECT zdm.expand('gt_4', '{"versions": {"old": "g6", "new": "g7"}, "operations": [{"alter_column": {"table": "gt_tags", "column": "label", "name": "tag", "up": "upper(label)", "down": "lower(tag)"}}]}');
SELECT zdm.backfill('gt_4');
SELECT zdm.backfill('gt_4');
SELECT zdm.record_traffic('g6', 5), zdm.record_traffic('g7', 1000), zdm.record_traffic('(undeclared)', 40);
INSERT INTO zdm.api_traffic VALUES (date_trunc('minute', now()), '', 'postgres', 60);
SET zdm.gate_window = '5min';
SELECT version, requests, share, sources FROM zdm.api_version_distribution;
-- ignore: 5 of 2206 (undeclared left out)
SELECT * FROM zdm.contract_gate();
SET zdm.gate_undeclared = old;
-- old: 105 of 2306
SELECT * FROM zdm.contract_gate();
SELECT zt.try($$SELECT zdm.contract('gt_4')$$);
RESET zdm.gate_undeclared;
RESET zdm.gate_window;

-- record_traffic refuses bad input.
SELECT zt.try($$SELECT zdm.record_traffic('g5', -1)$$);
SELECT zt.try($$SELECT zdm.record_traffic(NULL, 1)$$);
SELECT zt.try($$SELECT zdm.record_traffic('', 1)$$);
SELECT zt.try($$SELECT zdm.record_traffic('g5', NULL)$$);
SELECT zt.try($$SELECT zdm.record_traffic('g5', 1, '2999-01-01 00:00+00')$$);
SELECT zt.try($$SELECT zdm.record_traffic('g5', 1, 'infinity')$$);
SELECT zt.try($$SELECT zdm.record_traffic('g5', 1, NULL)$$);
SELECT zt.try($$SELECT zdm.record_traffic('g5', 9223372036854775807)$$);
-- Counts saturate instead of failing every reader once they pass bigint.
SELECT zdm.record_traffic('g_big', 1000000000000, now() - interval '2 hours') FROM generate_series(1, 3);
UPDATE zdm.api_traffic SET requests = 9223372036854775000 WHERE version = 'g_big';
SELECT zdm.record_traffic('g_big', 1000000000000, now() - interval '2 hours');
SELECT requests FROM zdm.api_traffic WHERE version = 'g_big';
-- (a second row for the same minute, as a restore can leave: both count)
INSERT INTO zdm.api_traffic VALUES (date_trunc('minute', now() - interval '2 hours'), 'g_big', 'external', 5);
SELECT version, requests FROM zdm.api_version_distribution WHERE version = 'g_big';
SELECT count(*) > 0 AS metrics_work FROM regexp_split_to_table(zdm.metrics(), E'\n');
DELETE FROM zdm.api_traffic WHERE version = 'g_big';

-- Prometheus' text format (promtool-compatible: HELP and TYPE per family).
-- (rates vary from run to run: left out here)
SELECT line FROM regexp_split_to_table(zdm.metrics(), E'\n') AS line
 WHERE line NOT LIKE 'zdm_backfill_rows_per_second{%';
SELECT zdm.rollback('gt_4');
DROP TABLE gt_orders, gt_items, gt_notes, gt_tags CASCADE;
