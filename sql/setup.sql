--
-- setup: the extension's objects, and helpers the other suites share.
--
-- zt.try(sql) runs a statement and reports its SQLSTATE, message and hint
-- instead of failing, so the error suites can show all three.  zt.shape(t)
-- describes a table (columns, constraints, triggers), zt.describe(t) with
-- comments, indexes and more, so a suite can show that a failed or
-- rolled-back step changed nothing.
--
LOAD 'zdm';
CREATE SCHEMA zt;

CREATE FUNCTION zt.try(stmt text) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    st text;
    msg text;
    hint text;
BEGIN
    EXECUTE stmt;
    RETURN 'ok';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ': ' || msg || E'\n  HINT: ' || coalesce(nullif(hint, ''), '(none)');
END
$$;

CREATE FUNCTION zt.shape(rel regclass) RETURNS text LANGUAGE sql AS $$
SELECT concat_ws(E'\n',
    (SELECT string_agg(format('%I %s%s%s', attname, format_type(atttypid, atttypmod),
                              CASE WHEN attnotnull THEN ' not null' END,
                              ' default ' || pg_get_expr(d.adbin, d.adrelid)), ', ' ORDER BY attnum)
       FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
      WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped),
    (SELECT string_agg(format('constraint %s: %s', conname, pg_get_constraintdef(oid)), E'\n' ORDER BY conname)
       FROM pg_constraint WHERE conrelid = rel),
    (SELECT string_agg(format('trigger %s', tgname), E'\n' ORDER BY tgname)
       FROM pg_trigger WHERE tgrelid = rel AND NOT tgisinternal))
$$;

-- zt.describe(t): zt.shape() and what else a migration could leave behind or
-- take away: column comments, indexes, the foreign keys of other tables
-- that reference t, the sequences it owns.
CREATE FUNCTION zt.describe(rel regclass) RETURNS text LANGUAGE sql AS $$
SELECT concat_ws(E'\n', zt.shape(rel),
    (SELECT string_agg(format('comment on %I: %s', attname, col_description(rel, attnum)), E'\n' ORDER BY attnum)
       FROM pg_attribute
      WHERE attrelid = rel AND attnum > 0 AND NOT attisdropped AND col_description(rel, attnum) IS NOT NULL),
    (SELECT string_agg(pg_get_indexdef(indexrelid), E'\n' ORDER BY indexrelid::regclass::text)
       FROM pg_index WHERE indrelid = rel),
    (SELECT string_agg(format('referenced by %s of %s: %s', conname, conrelid::regclass, pg_get_constraintdef(oid)),
                       E'\n' ORDER BY conname)
       FROM pg_constraint WHERE confrelid = rel AND conrelid <> rel),
    (SELECT string_agg(format('owns %s through %I', d.objid::regclass, a.attname), E'\n' ORDER BY 1)
       FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
      WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = rel AND d.classid = 'pg_class'::regclass
        AND d.deptype = 'a' AND d.refobjsubid > 0))
$$;

-- CALL zt.settle(m): wait until the background worker owes migration m no
-- step (its deferred, contract or rollback steps: CREATE INDEX
-- CONCURRENTLY, ...) and its backfill's rows are done; its phase then, or
-- 'failed: <error>'.  A procedure that commits between looks: a
-- transaction that stayed open would hold up CREATE INDEX CONCURRENTLY,
-- which waits for every older snapshot.  Gives up after two minutes
-- ('still waiting: ...'), which only a broken worker takes.
CREATE PROCEDURE zt.settle(m text, INOUT phase text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    s record;
BEGIN
    FOR i IN 1 .. 1200 LOOP
        SELECT z.phase, z.deferred, z.deferred_step, z.last_error INTO s FROM zdm.status z WHERE z.name = m;
        IF NOT FOUND THEN
            phase := 'unknown';
            RETURN;
        ELSIF s.phase = 'failed' THEN
            phase := 'failed: ' || coalesce(s.last_error, '?');
            RETURN;
        ELSIF s.deferred IS NULL AND s.phase <> 'backfilling' THEN
            phase := s.phase;
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.1);
        COMMIT;
    END LOOP;
    phase := format('still waiting: phase %s, %s steps, at %s (%s)', s.phase, s.deferred, s.deferred_step, s.last_error);
END
$$;

-- CALL zt.wait_steps(m): wait until the background worker owes migration
-- m no step, or the migration failed or recorded an error; its phase then
-- (committing between looks, as zt.settle).
CREATE PROCEDURE zt.wait_steps(m text, INOUT phase text DEFAULT NULL) LANGUAGE plpgsql AS $$
DECLARE
    d text;
    e text;
BEGIN
    FOR i IN 1..1200 LOOP
        SELECT s.phase, s.deferred, s.last_error INTO phase, d, e FROM zdm.status s WHERE s.name = m;
        IF d IS NULL OR phase = 'failed' OR e IS NOT NULL THEN
            RETURN;
        END IF;
        COMMIT;
        PERFORM pg_sleep(0.05);
        COMMIT;
    END LOOP;
    phase := format('%s, still owed %s steps', phase, d);
END
$$;
-- The suites' migration roles call them.
GRANT USAGE ON SCHEMA zt TO PUBLIC;

-- What CREATE EXTENSION made.
SELECT pg_describe_object(classid, objid, objsubid) AS object
  FROM pg_depend
 WHERE refclassid = 'pg_extension'::regclass
   AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'zdm')
 ORDER BY 1;

-- The state tables are dumped with the database.
SELECT unnest(extconfig)::regclass AS dumped FROM pg_extension WHERE extname = 'zdm' ORDER BY 1;

-- GUCs, with their defaults and units.
SELECT name, setting, unit, context FROM pg_settings WHERE name LIKE 'zdm.%' ORDER BY name;

-- The "zdm." prefix is reserved: a typo is refused.
SET zdm.lock_timeot = '100ms';

-- zdm.lock_timeout may not exceed 500 ms.
SET zdm.lock_timeout = '2s';

-- The journal is append-only.
INSERT INTO zdm.migration_log (migration, event) VALUES ('x', 'test');
SELECT zt.try($$UPDATE zdm.migration_log SET event = 'changed'$$);
SELECT zt.try($$DELETE FROM zdm.migration_log$$);
SELECT count(*) FROM zdm.migration_log;
TRUNCATE zdm.migration_log;
