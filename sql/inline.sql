--
-- inline: UPDATEs of a table under a dual-write trigger get the conversion
-- planned into the statement (zdm.inline_updates) and skip the trigger,
-- with the same result as the trigger gives.
--
\pset null '∅'
SET track_functions = 'all';
CREATE TYPE il_status AS ENUM ('pending', 'paid', 'shipped', 'cancelled');

-- Two identical tables under the same migration; statements run on il_a
-- with zdm.inline_updates on, on il_b with it off (the trigger).
CREATE FUNCTION il_make(t text) RETURNS boolean LANGUAGE plpgsql AS $f$
BEGIN
    EXECUTE format('CREATE TABLE %I (id int PRIMARY KEY, note text, legacy_status text NOT NULL, amount numeric)', t);
    EXECUTE format($$INSERT INTO %I SELECT g, 'Note ' || g, (ARRAY['PENDING', 'PAID', 'SHIPPED'])[1 + g %% 3], g * 1.5
                       FROM generate_series(1, 14) g$$, t);
    RETURN zdm.expand(t, format($j${"operations": [
        {"alter_column": {"table": "%s", "column": "legacy_status", "name": "status_enum", "type": "il_status",
                          "up": "lower(legacy_status)::il_status", "down": "upper(status_enum::text)"}},
        {"alter_column": {"table": "%s", "column": "note", "name": "note_v2",
                          "up": "lower(note)", "down": "upper(note_v2)"}},
        {"add_column": {"table": "%s", "column": {"name": "amount_cents", "type": "bigint"},
                        "up": "(amount * 100)::bigint"}}]}$j$, t, t, t)::jsonb);
END $f$;
SELECT il_make('il_a'), il_make('il_b');

-- Run one statement (%I: the table) and say how often the trigger fired.
CREATE FUNCTION il_run(t text, inline boolean, stmt text) RETURNS bigint LANGUAGE plpgsql AS $f$
DECLARE
    before bigint;
    after bigint;
BEGIN
    PERFORM set_config('zdm.inline_updates', inline::text, true);
    SELECT coalesce(sum(calls), 0) INTO before FROM pg_stat_xact_user_functions WHERE funcname = 'dual_write';
    EXECUTE format(stmt, t);
    SELECT coalesce(sum(calls), 0) INTO after FROM pg_stat_xact_user_functions WHERE funcname = 'dual_write';
    RETURN after - before;
END $f$;

CREATE TABLE il_stmts (n int PRIMARY KEY, stmt text);
INSERT INTO il_stmts VALUES
  -- rows from before expand: any update converts them
  (1, $$UPDATE %I SET amount = amount WHERE id <= 2$$),
  -- an old client writes the old columns
  (2, $$UPDATE %I SET legacy_status = 'PAID' WHERE id BETWEEN 3 AND 5$$),
  (3, $$UPDATE %I SET amount = amount + 1, note = 'Second ' || id WHERE id %% 2 = 0$$),
  -- a new client writes a new column: the trigger
  (4, $$UPDATE %I SET note_v2 = 'MiXeD' WHERE id = 6$$),
  -- the old column written unchanged: the new one keeps what the new client wrote
  (5, $$UPDATE %I SET note = 'MIXED', legacy_status = 'CANCELLED' WHERE id = 6$$),
  -- a volatile SET expression would run twice: the trigger
  (6, $$UPDATE %I SET legacy_status = CASE WHEN random() < 2 THEN 'PENDING' END WHERE id = 7$$),
  -- a sub-select in SET: the trigger
  (7, $$UPDATE %I SET (legacy_status, note) = (SELECT 'PAID', 'Multi') WHERE id = 8$$),
  -- UPDATE ... FROM
  (8, $$UPDATE %I t SET legacy_status = s.v FROM (VALUES (9, 'SHIPPED'), (10, 'CANCELLED')) s(id, v) WHERE t.id = s.id$$),
  -- inside WITH: planned as a sub-query, the trigger
  (9, $$WITH u AS (UPDATE %I SET legacy_status = 'PAID' WHERE id = 11 RETURNING id) SELECT count(*) FROM u$$),
  -- two statements on one row
  (10, $$UPDATE %I SET amount = amount * 2 WHERE id = 12$$),
  (11, $$UPDATE %I SET note = note WHERE id = 12$$),
  -- a row lock taken before (EvalPlanQual re-reads the row); and no-op updates
  (12, $$UPDATE %I SET legacy_status = legacy_status WHERE id >= 13$$);

-- Trigger calls per statement: inline (il_a) and trigger (il_b).
SELECT n, il_run('il_a', true, stmt) AS inline_calls, il_run('il_b', false, stmt) AS trigger_calls
  FROM il_stmts ORDER BY n;

-- The same rows either way.
SELECT * FROM il_a ORDER BY id;
SELECT 'only inline' AS side, * FROM (TABLE il_a EXCEPT TABLE il_b) x
UNION ALL
SELECT 'only trigger', * FROM (TABLE il_b EXCEPT TABLE il_a) y;

-- What the plan holds.
EXPLAIN (VERBOSE, COSTS OFF) UPDATE il_a SET legacy_status = 'PAID', amount = 2 WHERE id = 1;
-- RETURNING shows the converted row.
UPDATE il_a SET legacy_status = 'SHIPPED' WHERE id = 1 RETURNING id, legacy_status, status_enum;

-- A prepared UPDATE is planned again after contract drops the old column.
SELECT zdm.backfill('il_a'), zdm.backfill('il_a');
PREPARE il_upd(int) AS UPDATE il_a SET amount = amount + 1 WHERE id = $1;
EXECUTE il_upd(1);
SELECT zdm.contract('il_a');
EXECUTE il_upd(1);
SELECT id, amount, amount_cents FROM il_a WHERE id = 1;
DEALLOCATE il_upd;

-- Where the trigger stays: another BEFORE UPDATE trigger on the table ...
CREATE FUNCTION il_shout() RETURNS trigger LANGUAGE plpgsql AS $f$
BEGIN NEW.legacy_status := upper(NEW.legacy_status); RETURN NEW; END $f$;
CREATE TRIGGER il_shout BEFORE UPDATE ON il_b FOR EACH ROW EXECUTE FUNCTION il_shout();
SELECT il_run('il_b', true, $$UPDATE %I SET legacy_status = 'paid' WHERE id = 1$$) AS trigger_calls;
SELECT legacy_status, status_enum FROM il_b WHERE id = 1;
DROP TRIGGER il_shout ON il_b;
SELECT il_run('il_b', true, $$UPDATE %I SET legacy_status = 'PENDING' WHERE id = 1$$) AS trigger_calls;

-- ... a migration with API versions ...
CREATE TABLE il_v (id int PRIMARY KEY, legacy_status text);
INSERT INTO il_v VALUES (1, 'PAID');
SELECT zdm.expand('il_v', '{"versions": {"old": "il3", "new": "il4"}, "operations": [{"alter_column": {"table": "il_v", "column": "legacy_status", "name": "status", "up": "lower(legacy_status)", "down": "upper(status)"}}]}');
SELECT il_run('il_v', true, $$UPDATE %I SET legacy_status = 'SHIPPED'$$) AS trigger_calls;
SELECT * FROM il_v;

-- ... and a partitioned table.
CREATE TABLE il_p (id int, region text, legacy_status text, PRIMARY KEY (id, region)) PARTITION BY LIST (region);
CREATE TABLE il_p_eu PARTITION OF il_p FOR VALUES IN ('eu');
INSERT INTO il_p VALUES (1, 'eu', 'PAID');
SELECT zdm.expand('il_p', '{"operations": [{"alter_column": {"table": "il_p", "column": "legacy_status", "name": "status", "up": "lower(legacy_status)", "down": "upper(status)"}}]}');
SELECT il_run('il_p', true, $$UPDATE %I SET legacy_status = 'SHIPPED'$$) AS trigger_calls;
SELECT * FROM il_p;

-- zdm.differs: bytes, NULLs, detoasted values.
SELECT zdm.differs(1.0, 1.00) AS numeric_scale, zdm.differs('a'::text, 'a') AS same_text,
       zdm.differs(NULL::int, NULL) AS both_null, zdm.differs(NULL::int, 1) AS one_null,
       zdm.differs(repeat('x', 100000), repeat('x', 100000)) AS long_same;

SELECT zdm.rollback('il_b'), zdm.rollback('il_v'), zdm.rollback('il_p');

--
-- INSERT's fast path: the new column, the table's last and of fixed width,
-- is appended to the old client's tuple instead of forming a new one.
-- Every fixed-width layout (by value and by reference, each alignment),
-- after a dropped column and beside NULLs, reads back as up computes it,
-- and amcheck finds every tuple well formed.
--
CREATE EXTENSION amcheck;
CREATE TABLE il_fast (id int PRIMARY KEY, small int2, gone text, note text, legacy text);
ALTER TABLE il_fast DROP COLUMN gone;
CREATE FUNCTION il_fast_case(t text, up text) RETURNS TABLE (type text, rows bigint, wrong bigint, corrupt bigint)
LANGUAGE plpgsql AS $f$
BEGIN
    PERFORM zdm.expand('il_fast_' || t, jsonb_build_object('operations', jsonb_build_array(
        jsonb_build_object('add_column', jsonb_build_object('table', 'il_fast', 'up', up,
            'column', jsonb_build_object('name', 'v', 'type', t, 'nullable', true))))));
    INSERT INTO il_fast (id, small, note, legacy)
    SELECT g, CASE WHEN g % 3 = 0 THEN NULL ELSE g END, CASE WHEN g % 2 = 0 THEN repeat('n', g % 7) END,
           CASE WHEN g % 5 <> 0 THEN g::text END
      FROM generate_series(1, 40) g;
    COPY il_fast (id, legacy) FROM PROGRAM $$seq 41 45 | sed 's/.*/&,&/'$$ WITH (FORMAT csv);
    RETURN QUERY EXECUTE format(
        'SELECT %L, count(*), count(*) FILTER (WHERE zdm.differs(v, (%s))), '
        '(SELECT count(*) FROM verify_heapam(''il_fast'')) FROM il_fast', t, up);
    PERFORM zdm.rollback('il_fast_' || t);
    TRUNCATE il_fast;
END $f$;
SELECT c.* FROM (VALUES ('int2', 'legacy::int2'), ('int4', 'legacy::int4 * 7'), ('int8', 'legacy::int8 << 40'),
                        ('float8', 'legacy::float8 / 3'), ('bool', 'legacy::int % 2 = 0'), ('"char"', 'legacy::"char"'),
                        ('uuid', 'md5(legacy)::uuid'), ('name', 'legacy::name'), ('il_status', $$'paid'::il_status$$),
                        ('timestamptz', $$'2026-01-01'::timestamptz + legacy::int * interval '1 hour'$$),
                        ('point', 'point(legacy::float8, 1)'))
       AS cases(t, up), il_fast_case(cases.t, cases.up) c;
