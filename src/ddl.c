/*-------------------------------------------------------------------------
 *
 * ddl.c
 *	  Running a migration's DDL: lock first, then the statement, then a
 *	  line in the journal.
 *
 * A plan section (expand, contract, rollback) is a list of steps
 * {relation, lock, sql}.  Locks are taken with zdm's retrying lock
 * (locks.c).  The exclusive steps' tables are locked all together, at the
 * first exclusive step: taken table by table, contract and rollback would
 * hold one table's ACCESS EXCLUSIVE while queueing for the next one's,
 * and the first table's clients would wait for as long, up to
 * zdm.lock_budget.  Validate steps (SHARE UPDATE EXCLUSIVE, which blocks
 * no client) come first and lock one table at a time; consecutive steps
 * on one table and lock level share a lock acquisition.  Each statement
 * also runs with lock_timeout set to zdm.lock_timeout, so that if it needs
 * a lock zdm did not take up front it still never queues in front of
 * client traffic for longer than that.
 *
 * Before any of that, contract and rollback claim the tables their steps
 * name (zdm_claim_plan; locks.c), as expand does: contract reads and
 * validates a table before it asks for ACCESS EXCLUSIVE, and an expand of
 * another migration doing the same on the same table would deadlock
 * with it.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/namespace.h"
#include "executor/spi.h"
#include "nodes/parsenodes.h"
#include "parser/parser.h"
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

LOCKMODE
zdm_lockmode_from_name(const char *name)
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
Oid
zdm_plan_relation(const char *migration, const char *relation)
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
 * The table a step's ALTER TABLE changes, when it is not the table the
 * step names, or InvalidOid.  A step dropping a foreign key names the
 * referenced table, whose ACCESS EXCLUSIVE lock the drop takes too, and
 * its statement the table the key is on: both are claimed and locked.
 */
static Oid
step_altered_table(ZdmPlanStep *step)
{
	List	   *raw = raw_parser(step->sql, RAW_PARSE_DEFAULT);
	Node	   *stmt = list_length(raw) == 1 ? ((RawStmt *) linitial(raw))->stmt : NULL;

	if (stmt == NULL || !IsA(stmt, AlterTableStmt) ||
		((AlterTableStmt *) stmt)->objtype != OBJECT_TABLE)
		return InvalidOid;
	return RangeVarGetRelid(((AlterTableStmt *) stmt)->relation, NoLock, true);
}

/*
 * Claim every table the steps of plan->section name, all at once, for the
 * rest of the transaction: call it before anything reads or locks them.
 */
void
zdm_claim_plan(const char *migration, Jsonb *plan, const char *section,
			   ZdmLockStats *stats)
{
	List	   *relids = NIL;
	ListCell   *lc;

	foreach(lc, zdm_plan_steps(migration, plan, section))
	{
		ZdmPlanStep *step = lfirst(lc);

		if (step->relation != NULL)
		{
			Oid			altered = step_altered_table(step);

			relids = list_append_unique_oid(relids, zdm_plan_relation(migration, step->relation));
			if (OidIsValid(altered))
				relids = list_append_unique_oid(relids, altered);
		}
	}
	zdm_claim_relations(migration, relids, stats);
}

/*
 * Execute every step of plan->section in order.  The section is read and
 * checked whole first (plan.c): a malformed step stops it before its first
 * statement.  A validate step (SHARE UPDATE EXCLUSIVE, which blocks no
 * client) locks its own table when the previous step did not; the first
 * exclusive step locks the tables of all the exclusive steps together (see
 * the file header).  claimed, the wait for the tables' claims, is charged
 * to the first statement, and each lock's wait to the first statement that
 * needed it.
 */
void
zdm_run_plan_steps(const char *migration, const char *phase, Jsonb *plan,
				   const char *section, const ZdmLockStats *claimed)
{
	List	   *steps = NIL;
	List	   *exclusive = NIL;
	bool		exclusive_held = false;
	char	   *held_rel = NULL;
	char	   *held_lock = NULL;
	ListCell   *lc;

	/* The worker's steps run after this transaction commits (deferred.c). */
	foreach(lc, zdm_plan_steps(migration, plan, section))
		if (strcmp(((ZdmPlanStep *) lfirst(lc))->runs, ZDM_RUNS_CALLER) == 0)
			steps = lappend(steps, lfirst(lc));

	foreach(lc, steps)
	{
		ZdmPlanStep *step = lfirst(lc);

		if (step->relation != NULL && zdm_lockmode_from_name(step->lock) == AccessExclusiveLock)
		{
			Oid			altered = step_altered_table(step);

			exclusive = list_append_unique_oid(exclusive, zdm_plan_relation(migration, step->relation));
			if (OidIsValid(altered))
				exclusive = list_append_unique_oid(exclusive, altered);
		}
	}

	foreach(lc, steps)
	{
		ZdmPlanStep *step = lfirst(lc);
		char	   *relation = step->relation;
		char	   *lock = step->lock;
		ZdmLockStats stats = {0, 0};

		if (relation == NULL)
		{
			/* A step on no table (a schema) needs no table lock. */
		}
		else if (zdm_lockmode_from_name(lock) == AccessExclusiveLock)
		{
			/*
			 * Waiting for one table while holding another's ACCESS EXCLUSIVE
			 * would stall the first table's clients for as long as we wait:
			 * zdm_lock_relations never does.
			 */
			if (!exclusive_held)
				zdm_lock_relations(migration, exclusive, AccessExclusiveLock, &stats);
			exclusive_held = true;
		}
		else if (held_rel == NULL || strcmp(held_rel, relation) != 0 ||
				 strcmp(held_lock, lock) != 0)
		{
			zdm_lock_relations(migration, list_make1_oid(zdm_plan_relation(migration, relation)),
							   zdm_lockmode_from_name(lock), &stats);
			held_rel = relation;
			held_lock = lock;
		}
		if (foreach_current_index(lc) == 0)
			zdm_lock_stats_add(&stats, claimed);
		zdm_run_ddl(migration, phase, step->sql, &stats);
	}
}
