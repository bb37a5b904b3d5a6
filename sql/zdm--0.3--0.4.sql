/* zdm--0.3--0.4.sql: the dual-write conversion planned into UPDATE statements */

\echo Use "ALTER EXTENSION zdm UPDATE TO '0.4'" to load this file. \quit

/*
 * Do two values differ in their bytes?  zdm plans it into UPDATEs of a
 * table under a dual-write trigger (zdm.inline_updates), to recompute the
 * new column only when a column its up expression reads was changed, as
 * the trigger would.  Executed by every client role that updates such a
 * table, so it keeps the default EXECUTE for PUBLIC.
 */
CREATE FUNCTION zdm.differs(anyelement, anyelement)
RETURNS boolean
AS 'MODULE_PATHNAME', 'zdm_differs'
LANGUAGE C IMMUTABLE PARALLEL SAFE;

COMMENT ON FUNCTION zdm.differs(anyelement, anyelement) IS
    'zdm: whether two values differ in their stored bytes (planned into UPDATEs under a dual-write trigger)';
