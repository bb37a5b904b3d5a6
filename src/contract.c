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

/* Contract one migration; false when it was already contracted. */
static bool
contract_one(const char *name, bool force)
{
	ZdmMigration m;
	int64		bad;
	ZdmLockStats claimed;

	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "contract");
	if (strcmp(m.phase, "contracted") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already contracted, skipping", name)));
		return false;
	}
	if (strcmp(m.phase, "rolled_back") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" was rolled back and cannot be contracted", name),
				 errhint("Expand it again with zdm.expand() if it is still wanted.")));
	if (m.expanded_here)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted in the transaction that expanded it", name),
				 errhint("Expand and contract belong to separate deployments: commit the expand, "
						 "backfill, wait for old clients to go, then contract.")));
	if (strcmp(m.phase, "backfilled") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted before its backfill is done (phase \"%s\")",
						name, m.phase),
				 errhint("Run SELECT zdm.backfill('%s') until it returns 0, committing after each call.",
						 name)));

	/* Before verify reads the tables: see ddl.c. */
	zdm_claim_plan(name, m.plan, "contract", &claimed);
	bad = zdm_verify_migration(&m);
	if (bad > 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" cannot be contracted: " INT64_FORMAT " row(s) have old and new columns that disagree",
						name, bad),
				 errhint("Inspect them with zdm.verify('%s'); fix the data or the migration's up/down, "
						 "or roll it back with zdm.rollback('%s').", name, name)));

	/* The gate: the version it retires must have (almost) no traffic left. */
	zdm_gate_check(name, m.version_old, force);

	run_steps_as_author(&m, "contracted", "contract", &claimed);
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
		ListCell   *lc;

		zdm_state_query("SELECT name FROM zdm.migrations WHERE phase = 'backfilled'"
						" ORDER BY expanded_at, name", true, 0);
		for (uint64 i = 0; i < SPI_processed; i++)
			names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
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
	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "roll back");
	if (strcmp(m.phase, "contracted") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is contracted and cannot be rolled back", name),
				 errhint("Its old columns are gone; write a new migration that restores what you need.")));
	if (strcmp(m.phase, "rolled_back") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is already rolled back, skipping", name)));
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	zdm_claim_plan(name, m.plan, "rollback", &claimed);
	run_steps_as_author(&m, "rolled_back", "rollback", &claimed);
	zdm_migration_set_phase(name, "rolled_back", NULL);
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
