/*-------------------------------------------------------------------------
 *
 * deferred.c
 *	  The deferred-step engine: the steps of a plan that cannot run in the
 *	  caller's transaction, run by a background worker once it commits.
 *	  This file is the callers' side (what zdm.expand(), backfill,
 *	  contract and rollback record and start); the worker itself is
 *	  steps_worker.c.
 *
 * Some DDL has no place in the transaction of zdm.expand(), contract() or
 * rollback(): CREATE INDEX CONCURRENTLY and DROP INDEX CONCURRENTLY refuse
 * to run in a transaction block, and a long validation should hold its
 * lock in a transaction of its own.  The plan marks such steps (zdm.h,
 * ZdmPlanStep): "worker" steps run in a transaction of the worker, taking
 * their table lock with locks.c's retrying lock; "outside" steps run at top
 * level, in no transaction block, as a client's statement would.  They sit
 * in the plan's "deferred" section (run once the expand has committed and
 * the backfill's rows are done) and in its "contract" and "rollback"
 * sections (run once contract or rollback has committed).
 *
 * What the worker owes a migration is three columns of zdm.migrations:
 * deferred_section (the section whose worker steps are pending),
 * deferred_done (how many are done) and deferred_step (the statement in
 * progress).  zdm_deferred_owe() sets them in the caller's transaction and
 * starts the database's deferred-steps worker, which first waits for that
 * transaction to end: a rollback of it leaves nothing owed and the worker
 * finds nothing to do.  The caller never waits for the worker.
 *
 * One deferred-steps worker serves a database (a session advisory lock of
 * zdm's, sub-key ZDM_ADVISORY_STEPS), apart from the backfill worker, so
 * that an hour-long index build holds up no backfill.  For each step:
 *
 *	1. claim it: in a transaction, with the migration's row locked, check
 *	   that the section and the count are still what the worker read (a
 *	   rollback may have replaced them), and record the step as in
 *	   progress; the step was already in progress when the worker died or
 *	   the server crashed, if deferred_step holds it;
 *	2. for a step that builds an index (->index): an index of that name
 *	   left VALID by a build that had finished is the step done; one left
 *	   INVALID by an interrupted build is dropped (DROP INDEX CONCURRENTLY)
 *	   before the build runs again; one that exists although the step never
 *	   started is not this migration's, and the step fails;
 *	3. run it: "outside" steps through a portal at top level, as
 *	   PostgresMain runs a client's query (exec_toplevel below), as the
 *	   migration's author with its search_path, shown in pg_stat_activity;
 *	   "worker" steps in a transaction, under the author's rights and
 *	   SECURITY_RESTRICTED_OPERATION, their lock taken with locks.c;
 *	4. record it done (for a worker step, in the step's own transaction),
 *	   and journal it.
 *
 * A step that fails with an INVALID index behind it has that index dropped
 * at once: a UNIQUE index left INVALID would still refuse clients' writes
 * of duplicates.  Transient errors (lock timeout, deadlock, serialization
 * failure, cancel) are retried with backoff, from 1 s to 1 min; any other
 * error puts a "deferred" migration in phase "failed" (a contract or
 * rollback stays where it is, with the error in last_error), journaled.
 * A worker killed, or a server crashing, leaves the step in progress: the
 * next worker resumes there (step 2 makes that safe).  zdm.backfill(name)
 * and zdm.start_backfill(name) start that worker again, and retry a failed
 * "deferred" migration; zdm.contract(name) and zdm.rollback(name) called
 * again do the same for their steps; with shared_preload_libraries, the
 * launcher starts the worker every zdm.launcher_naptime.
 *
 * Why outside steps run with the author's rights but not under
 * SECURITY_RESTRICTED_OPERATION: CREATE INDEX CONCURRENTLY commits and
 * starts transactions of its own, and PostgreSQL holds that no transaction
 * starts in a security-restricted context.  It needs none from zdm: the
 * build evaluates the index's expressions and predicate as the table's
 * owner under SECURITY_RESTRICTED_OPERATION itself.  And nothing else runs
 * there: an outside step must be CREATE INDEX CONCURRENTLY or DROP INDEX
 * CONCURRENTLY, or it is refused as a malformed plan.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"

/* The worker steps of a plan section (those that do not run in the caller), checked. */
List *
zdm_worker_steps(const char *migration, Jsonb *plan, const char *section)
{
	List	   *steps = NIL;
	ListCell   *lc;

	foreach(lc, zdm_plan_steps(migration, plan, section))
	{
		ZdmPlanStep *step = lfirst(lc);

		if (strcmp(step->runs, ZDM_RUNS_CALLER) != 0)
			steps = lappend(steps, step);
	}
	return steps;
}

/*
 * Whether zdm's state has the columns of the deferred steps: a library of
 * 0.7 may meet a schema of 0.6 until ALTER EXTENSION zdm UPDATE runs, and
 * the migrations of 0.6 have no deferred steps.
 */
bool
zdm_deferred_state_exists(void)
{
	Oid			nsp = get_namespace_oid("zdm", true);
	Oid			rel = OidIsValid(nsp) ? get_relname_relid("migrations", nsp) : InvalidOid;

	return OidIsValid(rel) && get_attnum(rel, "deferred_section") != InvalidAttrNumber;
}

/* The index's own name (the last part of a qualified one), for messages. */
char *
zdm_index_short_name(const char *index)
{
	List	   *names = stringToQualifiedNameList(index);

	return strVal(llast(names));
}

/*
 * Record, in the caller's transaction, that the worker owes the migration
 * the nsteps worker steps of section (0: nothing; the columns are reset),
 * and start the database's deferred-steps worker, which waits for this
 * transaction to end.  Inside SPI.
 */
void
zdm_deferred_owe(const char *migration, const char *section, int nsteps)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char		nulls[2] = {' ', nsteps > 0 ? ' ' : 'n'};

	if (!zdm_deferred_state_exists())
	{
		if (nsteps == 0)
			return;
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" has steps for the background worker, which zdm's state of this version cannot record",
						migration),
				 errhint("Run ALTER EXTENSION zdm UPDATE first.")));
	}
	values[0] = CStringGetTextDatum(migration);
	values[1] = nsteps > 0 ? CStringGetTextDatum(section) : (Datum) 0;

	/*
	 * A rollback replaces deferred steps still owed: the one in progress
	 * (an index build that may take hours) is cancelled, and the worker,
	 * once this transaction commits, finds the rollback's steps instead.
	 * Only a statement shown as that step's is cancelled.
	 */
	if (strcmp(section, "rollback") == 0)
		zdm_state_exec("SELECT pg_catalog.pg_cancel_backend(a.pid)"
					   "  FROM zdm.migrations m, pg_catalog.pg_stat_activity a"
					   " WHERE m.name = $1 AND m.deferred_section = 'deferred'"
					   "   AND m.deferred_step IS NOT NULL"
					   "   AND a.backend_type = 'zdm deferred steps'"
					   "   AND a.datname = pg_catalog.current_database()"
					   "   AND a.query <> '' AND pg_catalog.starts_with(m.deferred_step, a.query)",
					   1, types, values, NULL, true, 0);

	zdm_state_exec("UPDATE zdm.migrations SET deferred_section = $2, deferred_done = 0,"
				   " deferred_step = NULL WHERE name = $1",
				   2, types, values, nulls, false, 0);
	if (nsteps > 0)
		zdm_deferred_wake(migration, false);
}

/*
 * Start the database's deferred-steps worker (it waits for this
 * transaction to end); a NOTICE when no worker slot is free, or an error
 * if report.
 */
void
zdm_deferred_wake(const char *migration, bool report)
{
	if (!zdm_steps_worker_start(MyDatabaseId, GetTopTransactionId(), report))
		ereport(NOTICE,
				(errmsg("migration \"%s\": could not start the deferred-steps worker: no background worker slot is free",
						migration),
				 errhint("Raise max_worker_processes; then SELECT zdm.start_backfill('%s') runs its steps.",
						 migration)));
}

/*
 * What the worker still owes the migration in section, as a phrase for
 * messages ("index \"x\" is still being built"); NULL when it owes nothing
 * there.  Inside SPI.
 */
char *
zdm_deferred_owed(const char *migration, const char *section)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2] = {CStringGetTextDatum(migration), CStringGetTextDatum(section)};
	bool		isnull;
	int			done;
	char	   *running;
	Jsonb	   *plan;
	List	   *steps;
	ZdmPlanStep *step;
	bool		failed;

	if (!zdm_deferred_state_exists())
		return NULL;
	zdm_state_exec("SELECT deferred_done, deferred_step, plan, phase = 'failed' OR last_error IS NOT NULL"
				   "  FROM zdm.migrations WHERE name = $1 AND deferred_section = $2",
				   2, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		return NULL;
	done = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	running = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	plan = DatumGetJsonbPCopy(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	failed = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 4, &isnull));
	steps = zdm_worker_steps(migration, plan, section);
	if (done >= list_length(steps))
		return psprintf("its background steps are finishing");
	step = list_nth(steps, done);
	if (step->index != NULL)
		return psprintf(failed ? "index \"%s\" could not be built" :
						running != NULL && strcmp(running, step->sql) == 0 ?
						"index \"%s\" is still being built" : "index \"%s\" is not built yet",
						zdm_index_short_name(step->index));
	return psprintf("its background step %d of %d (%s) %s", done + 1, list_length(steps),
					step->sql, failed ? "failed" :
					running != NULL && strcmp(running, step->sql) == 0 ? "has not finished" : "has not run yet");
}
