/* zdm--0.4--0.5.sql: the background batch's rows spread over its time */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.5'" to load this file. \quit

/*
 * The background worker's batch UPDATE calls it for every row it reads,
 * and it sleeps while the batch is ahead of its rate (a migration's
 * max_rows_per_sec, or the pace set by the clients' commit time), so
 * that the batch's WAL and CPU come evenly instead of in a burst.  In any
 * other session it returns true at once; the migration's role runs the
 * UPDATE, so it keeps the default EXECUTE for PUBLIC.
 */
CREATE FUNCTION zdm.delay_point()
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_delay_point'
LANGUAGE C VOLATILE PARALLEL RESTRICTED;

COMMENT ON FUNCTION zdm.delay_point() IS
    'zdm: paces the background worker''s batch UPDATE row by row (returns true; sleeps only in the worker)';
