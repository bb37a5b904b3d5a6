/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  Running a migration's DDL: lock first, then the statement, then a
 *	  line in the journal.
 *
 * A plan section (expand, contract, rollback) is a list of steps
 * {relation, lock, sql}.  Consecutive steps on the same relation and lock
 * level run under one lock acquisition, taken with zdm's retrying lock
 * (locks.c).  Each statement also runs with lock_timeout set to
 * zdm.lock_timeout, so that if it needs a lock zdm did not take up front
 * it still never queues in front of client traffic for longer than that.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/regproc.h"
#include "utils/timestamp.h"

/* Run one DDL statement and journal it with its lock wait and duration. */
void
zdm_run_ddl(const char *migration, const char *phase, const char *sql,
			const ZdmLockStats *lock)
{
	TimestampTz start = GetCurrentTimestamp();
	int			level = zdm_lock_timeout_push();
	int			rc;

	rc = SPI_execute(sql, false, 0);
	if (rc < 0)
		elog(ERROR, "zdm: statement failed (%s): %s", SPI_result_code_string(rc), sql);
	zdm_guc_pop(level);
	zdm_log_event(migration, "ddl", phase, sql, lock, zdm_ms_since(start), NULL);
}

static LOCKMODE
lockmode_from_name(const char *name)
{
	if (strcmp(name, "exclusive") == 0)
		return AccessExclusiveLock;
	if (strcmp(name, "validate") == 0)
		return ShareUpdateExclusiveLock;
	if (strcmp(name, "share_row") == 0)
		return ShareRowExclusiveLock;
	/* plan.c lets no other level through */
	elog(ERROR, "zdm: unknown lock level \"%s\" in plan", name);
	return NoLock;				/* keep compiler quiet */
}

/* The OID of a relation named in a plan, or a clear error. */
static Oid
plan_relation(const char *migration, const char *relation)
{
	RangeVar   *rv = makeRangeVarFromNameList(stringToQualifiedNameList(relation));
	Oid			relid = RangeVarGetRelid(rv, NoLock, true);

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": table %s no longer exists", migration, relation),
				 errhint("The table was dropped or renamed outside zdm; restore it, or remove the migration's row from zdm.migrations by hand.")));
	return relid;
}

/*
 * Execute every step of plan->section in order, locking as each group of
 * steps needs.  The section is read and checked whole first: a malformed
 * step stops it before its first statement.
 */
void
zdm_run_plan_steps(const char *migration, const char *phase, Jsonb *plan,
				   const char *section)
{
	List	   *steps = zdm_plan_steps(migration, plan, section);
	ListCell   *lc;
	char	   *held_rel = NULL;
	char	   *held_lock = NULL;
	ZdmLockStats stats = {0, 0};

	foreach(lc, steps)
	{
		ZdmPlanStep *step = lfirst(lc);
		char	   *relation = step->relation;
		char	   *lock = step->lock;
		bool		fresh = false;

		/* A step on no table (a schema) needs no table lock. */
		if (relation == NULL)
		{
			stats.attempts = 0;
			stats.wait_ms = 0;
		}
		else if (held_rel == NULL || strcmp(held_rel, relation) != 0 ||
				 strcmp(held_lock, lock) != 0)
		{
			Oid			relid = plan_relation(migration, relation);

			zdm_lock_relations(migration, list_make1_oid(relid),
							   lockmode_from_name(lock), &stats);
			held_rel = relation;
			held_lock = lock;
			fresh = true;
		}
		/* The lock wait is charged to the first statement that needed it. */
		if (!fresh && relation != NULL)
		{
			stats.attempts = 0;
			stats.wait_ms = 0;
		}
		zdm_run_ddl(migration, phase, step->sql, &stats);
	}
}
