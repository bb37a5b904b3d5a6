/*-------------------------------------------------------------------------
 *
 * contract.c
 *	  zdm.contract(): drop what a migration replaced, enforce what it
 *	  promised; zdm.rollback(): undo an expanded migration.
 *
 * Contract is the step that cannot be undone, so it is refused unless the
 * backfill is done, zdm.verify() finds no inconsistent row, and it does not
 * run in the transaction that expanded the migration (expand and contract
 * belong to separate deployments).  It then runs the plan's contract
 * steps: constraint validations first, under SHARE UPDATE EXCLUSIVE (which
 * lets reads and writes go on while the table is scanned), then under
 * ACCESS EXCLUSIVE, taken on all its tables together, the catalog-only
 * changes: SET NOT NULL (which finds the validated check and skips its
 * scan), dropping the helper check, the trigger and the old columns.
 *
 * Rollback runs the plan's rollback steps, under ACCESS EXCLUSIVE on all
 * its tables together: the trigger goes, the columns and tables the
 * migration added are dropped.  The old columns were kept current by the
 * trigger all along, so no write is lost.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "catalog/pg_type.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(zdm_contract);
PG_FUNCTION_INFO_V1(zdm_rollback);

/*
 * Run a section of the plan as the migration's author (roles.c), with the
 * search_path it was expanded with: a default or a check in the steps
 * resolves as it did then, and whoever calls contract or rollback lends
 * the migration no rights of their own.
 */
static void
run_steps_as_author(ZdmMigration *m, const char *phase, const char *section,
					const ZdmLockStats *claimed)
{
	ZdmAs		as;

	zdm_as_author_push(&as, m, zdm_plan_search_path(m->name, m->plan));
	zdm_run_plan_steps(m->name, phase, m->plan, section, claimed);
	zdm_as_pop(&as);
}

/*
 * Called again on a contracted (rolled back) migration whose steps in the
 * background worker are not done (a worker killed, a server restarted, or
 * a step that failed): start the worker again (deferred.c).
 */
static void
resume_steps(const char *name, const char *section)
{
	char	   *owed = zdm_deferred_owed(name, section);

	if (owed == NULL)
		return;
	ereport(NOTICE,
			(errmsg("migration \"%s\": %s; the background worker runs it again", name, owed)));
	zdm_state_exec("UPDATE zdm.migrations SET last_error = NULL WHERE name = $1",
				   1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(name)}, NULL, false, 0);
	zdm_deferred_wake(name, true);
}

/*
 * Whether a migration may be contracted now; false (with a NOTICE) when it
 * is contracted already.  *upstream: a subscriber's migration whose rows
 * the publisher's backfill converts through replication.
 */
static bool
contract_ready(const char *name, ZdmMigration *m, bool *upstream)
{
	zdm_require_actor(m, "contract");
	*upstream = false;
	if (strcmp(m->phase, "contracted") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already contracted, skipping", name)));
		return false;
	}
	if (strcmp(m->phase, "rolled_back") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" was rolled back and cannot be contracted", name),
				 errhint("Expand it again with zdm.expand() if it is still wanted.")));
	if (m->expanded_here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted in the transaction that expanded it", name),
				 errhint("Expand and contract belong to separate deployments: commit the expand, "
						 "backfill, wait for old clients to go, then contract.")));
	if (strcmp(m->phase, "backfilled") != 0)
	{
		/* Steps of the worker's still to run (deferred.c)? */
		char	   *owed = zdm_deferred_owed(name, "deferred");

		if (owed != NULL && strcmp(m->phase, "failed") == 0)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" cannot be contracted: %s", name, owed),
					 errhint("See last_error in zdm.status; fix the cause and run the steps again with "
							 "zdm.start_backfill('%s'), or roll the migration back with zdm.rollback('%s').",
							 name, name)));
		if (owed != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" cannot be contracted yet: %s", name, owed),
					 errdetail("The background worker runs the migration's deferred steps once its backfill is done; "
							   "the phase becomes \"backfilled\" when they are."),
					 errhint("Wait until zdm.status shows phase \"backfilled\" (deferred_step shows the step in progress); "
							 "SELECT zdm.start_backfill('%s') starts the worker if none runs.", name)));

		/*
		 * On a subscriber the publisher's backfill converts the rows through
		 * replication: no backfill here, zdm.verify judges (replication.c).
		 */
		*upstream = (strcmp(m->phase, "expanded") == 0 || strcmp(m->phase, "backfilling") == 0) &&
			zdm_repl_converted_upstream(name, m->plan);
		if (!*upstream)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" cannot be contracted before its backfill is done (phase \"%s\")",
							name, m->phase),
					 errhint("Run SELECT zdm.backfill('%s') until it returns 0, committing after each call.",
							 name)));
	}
	return true;
}

/* Contract one migration; false when it was already contracted. */
static bool
contract_one(const char *name, bool force)
{
	ZdmMigration m;
	int64		bad;
	ZdmLockStats claimed;
	bool		upstream;

	/*
	 * On a subscriber, after its publisher (replication.c), which may mean
	 * waiting for the subscription: before the migration's row is locked,
	 * which the apply worker could need to get there.
	 */
	zdm_require_migration(name, &m, false);
	if (!contract_ready(name, &m, &upstream))
	{
		resume_steps(name, "contract");
		return false;
	}
	zdm_repl_check_removal(&m, "contract", "contract");

	zdm_require_migration(name, &m, true);
	if (!contract_ready(name, &m, &upstream))
		return false;
	/* On a publisher: the subscribers come next. */
	zdm_repl_notice_published(name, m.plan, "contract");

	/* Before verify reads the tables: see ddl.c. */
	zdm_claim_plan(name, m.plan, "contract", &claimed);
	bad = zdm_verify_migration(&m);
	if (bad > 0 && upstream)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted on this subscriber: " INT64_FORMAT " row(s) are not converted yet (phase \"%s\")",
						name, bad, m.phase),
				 errdetail("Its tables are written by logical replication, so the publisher's backfill converts their rows here; "
						   "zdm.verify('%s') still finds rows it has not reached, or rows that disagree.", name),
				 errhint("Contract the migration on the publisher first (its backfill done), then here; "
						 "or backfill here too: SELECT zdm.backfill('%s') until it returns 0.", name)));
	if (bad > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted: " INT64_FORMAT " row(s) have old and new columns that disagree",
						name, bad),
				 errhint("Inspect them with zdm.verify('%s'); fix the data or the migration's up/down, "
						 "or roll it back with zdm.rollback('%s').", name, name)));

	/* The gate: the version it retires must have (almost) no traffic left. */
	zdm_gate_check(name, m.version_old, force);

	if (upstream)
	{
		zdm_migration_set_phase(name, "backfilled", NULL);
		zdm_log_event(name, "replication", "backfilled", NULL, NULL, -1,
					  "converted through logical replication: zdm.verify found no row to convert");
	}
	run_steps_as_author(&m, "contracted", "contract", &claimed);
	/* the rest once this transaction commits (deferred.c) */
	zdm_deferred_owe(name, "contract", list_length(zdm_worker_steps(name, m.plan, "contract")));
	if (m.version_old)
	{
		Oid			types[2] = {TEXTOID, TEXTOID};
		Datum		values[2] = {CStringGetTextDatum(m.version_old), CStringGetTextDatum(name)};

		zdm_state_exec("UPDATE zdm.api_versions SET retired_by = $2, retired_at = now()"
					   " WHERE version = $1 AND retired_by IS NULL",
					   2, types, values, NULL, false, 0);
	}
	zdm_migration_set_phase(name, "contracted", NULL);
	return true;
}

Datum
zdm_contract(PG_FUNCTION_ARGS)
{
	bool		done = false;
	bool		force = PG_NARGS() > 1 && !PG_ARGISNULL(1) && PG_GETARG_BOOL(1);

	SPI_connect();
	if (!PG_ARGISNULL(0))
	{
		char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

		zdm_check_name(name, "zdm.contract");
		done = contract_one(name, force);
	}
	else
	{
		/* Every backfilled migration, oldest first. */
		List	   *names = NIL;
		List	   *candidates = NIL;
		List	   *ready = NIL;
		ListCell   *lc;
		ListCell   *lc2;

		zdm_state_query("SELECT name, phase = 'backfilled' FROM zdm.migrations"
						" WHERE phase IN ('backfilled', 'expanded', 'backfilling')"
						" ORDER BY expanded_at, name", true, 0);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			candidates = lappend(candidates, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
			ready = lappend(ready, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2));
		}
		/* And, on a subscriber, those the publisher's backfill converts. */
		forboth(lc, candidates, lc2, ready)
		{
			ZdmMigration m;

			if (strcmp(lfirst(lc2), "t") == 0 ||
				(zdm_migration_fetch(lfirst(lc), false, &m) &&
				 zdm_repl_converted_upstream(m.name, m.plan)))
				names = lappend(names, lfirst(lc));
		}
		if (names == NIL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("no migration is ready to contract"),
					 errhint("A migration can be contracted once zdm.backfill() has returned 0 for it; see zdm.status.")));
		foreach(lc, names)
		{
			ZdmMigration m;

			/* Other roles' migrations are theirs to contract. */
			if (zdm_migration_fetch(lfirst(lc), false, &m) && zdm_may_act(&m))
				done = contract_one(lfirst(lc), force) || done;
		}
	}
	SPI_finish();
	PG_RETURN_BOOL(done);
}

/* Whether a migration may be rolled back; false (with a NOTICE) when it is already. */
static bool
rollback_ready(const char *name, ZdmMigration *m)
{
	zdm_require_actor(m, "roll back");
	if (strcmp(m->phase, "contracted") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is contracted and cannot be rolled back", name),
				 errhint("Its old columns are gone; write a new migration that restores what you need.")));
	if (strcmp(m->phase, "rolled_back") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already rolled back, skipping", name)));
		return false;
	}
	return true;
}

Datum
zdm_rollback(PG_FUNCTION_ARGS)
{
	ZdmMigration m;
	char	   *name;
	ZdmLockStats claimed;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call zdm.rollback('<name>').")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, "zdm.rollback");

	SPI_connect();
	/* As contract: a subscriber's check before the row is locked. */
	zdm_require_migration(name, &m, false);
	if (!rollback_ready(name, &m))
	{
		resume_steps(name, "rollback");
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	zdm_repl_check_removal(&m, "rollback", "roll back");
	zdm_require_migration(name, &m, true);
	if (!rollback_ready(name, &m))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	zdm_repl_notice_published(name, m.plan, "rollback");
	zdm_claim_plan(name, m.plan, "rollback", &claimed);
	run_steps_as_author(&m, "rolled_back", "rollback", &claimed);
	zdm_migration_set_phase(name, "rolled_back", NULL);
	/*
	 * The rest once this transaction commits (deferred.c); deferred steps
	 * still owed are given up (a build in progress is cancelled).
	 */
	zdm_deferred_owe(name, "rollback", list_length(zdm_worker_steps(name, m.plan, "rollback")));
	/* Versions only this migration knew are forgotten with it. */
	zdm_state_exec("DELETE FROM zdm.api_versions v WHERE v.version IN ($2, $3)"
				   "   AND NOT EXISTS (SELECT 1 FROM zdm.migrations o WHERE o.name <> $1"
				   "                   AND o.phase <> 'rolled_back' AND v.version IN (o.version_old, o.version_new))",
				   3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID},
				   (Datum[]) {CStringGetTextDatum(name),
				   CStringGetTextDatum(m.version_old ? m.version_old : ""),
				   CStringGetTextDatum(m.version_new ? m.version_new : "")},
				   NULL, false, 0);
	SPI_finish();
	PG_RETURN_BOOL(true);
}
