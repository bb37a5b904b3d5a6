/*-------------------------------------------------------------------------
 *
 * steps_worker.c
 *	  The deferred-steps worker: one per database, it runs the steps the
 *	  callers recorded (deferred.c, whose header says what it owes and
 *	  when): each step claimed, run ("outside" ones at top level, "worker"
 *	  ones in a transaction of their own), recorded done and journaled; an
 *	  index an interrupted or failed build left INVALID dropped; transient
 *	  errors retried with backoff, others recorded as the migration's.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "catalog/namespace.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/parsenodes.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "tcop/pquery.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/portal.h"
#include "utils/regproc.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PGDLLEXPORT void zdm_steps_main(Datum arg);

#define BACKOFF_FIRST_MS	1000
#define BACKOFF_MAX_MS		60000

/* A migration the worker owes steps, as read when it picked it. */
typedef struct Owed
{
	char	   *name;
	char	   *section;		/* "deferred", "contract", "rollback" */
	int			done;			/* deferred_done when picked */
} Owed;

/* How a step went. */
typedef enum StepResult
{
	STEP_DONE,
	STEP_GONE,					/* the section changed under it: stop */
	STEP_FAILED					/* *edata says why */
} StepResult;

/* Memory of the statement an outside step runs (survives its commits). */
static MemoryContext statement_cxt = NULL;

/* The worker's own role (the bootstrap superuser), restored after each step. */
static Oid	worker_user = InvalidOid;

/* The memory context xact_begin() was called in, restored by xact_end(). */
static MemoryContext xact_caller_cxt = NULL;

/* The phase a section's steps are journaled under. */
static const char *
section_phase(const char *section)
{
	if (strcmp(section, "contract") == 0)
		return "contracted";
	if (strcmp(section, "rollback") == 0)
		return "rolled_back";
	return "backfilling";
}

/* ---------- transactions of the worker ---------- */

static void
xact_begin(void)
{
	xact_caller_cxt = CurrentMemoryContext;
	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
}

static void
xact_end(void)
{
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(xact_caller_cxt);
}

/* ---------- the statement of an outside step ---------- */

/*
 * Refuse, as a malformed plan, an outside step that is not CREATE INDEX
 * CONCURRENTLY or DROP INDEX CONCURRENTLY (see the file header).
 */
static void
check_outside_statement(const char *migration, const char *sql)
{
	List	   *parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	Node	   *stmt = list_length(parsed) == 1 ? ((RawStmt *) linitial(parsed))->stmt : NULL;

	if (stmt != NULL &&
		((IsA(stmt, IndexStmt) && ((IndexStmt *) stmt)->concurrent) ||
		 (IsA(stmt, DropStmt) && ((DropStmt *) stmt)->removeType == OBJECT_INDEX &&
		  ((DropStmt *) stmt)->concurrent)))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_DATA_CORRUPTED),
			 errmsg("migration \"%s\": stored plan is malformed: a step that runs outside a transaction must be "
					"CREATE INDEX CONCURRENTLY or DROP INDEX CONCURRENTLY, not \"%s\"", migration, sql),
			 errhint("The row in zdm.migrations was edited outside zdm; restore the row, or roll the migration back "
					 "with zdm.rollback('%s').", migration)));
}

/*
 * Run one statement at top level, in no transaction block: parse, analyse,
 * plan, and run it through an unnamed portal, as PostgresMain does for a
 * client's simple query, so that a statement that commits transactions of
 * its own (CREATE INDEX CONCURRENTLY) can.  Called in no transaction;
 * returns in none.  The parse and plan trees live in statement_cxt, which
 * the statement's own commits leave alone.
 */
static void
exec_toplevel(const char *sql)
{
	List	   *parsed;
	RawStmt    *raw;
	List	   *plans;
	Portal		portal;
	DestReceiver *dest;
	QueryCompletion qc;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	MemoryContextSwitchTo(statement_cxt);
	parsed = pg_parse_query(sql);
	if (list_length(parsed) != 1)
		elog(ERROR, "zdm: a step must be exactly one statement: %s", sql);
	raw = linitial_node(RawStmt, parsed);
	plans = pg_plan_queries(pg_analyze_and_rewrite_fixedparams(raw, sql, NULL, 0, NULL),
							sql, CURSOR_OPT_PARALLEL_OK, NULL);
	portal = CreatePortal("", true, true);
	portal->visible = false;
	PortalDefineQuery(portal, NULL, sql, CreateCommandTag(raw->stmt), plans, NULL);
	PortalStart(portal, NULL, 0, InvalidSnapshot);
	dest = CreateDestReceiver(DestNone);
	InitializeQueryCompletion(&qc);
	(void) PortalRun(portal, FETCH_ALL, true, true, dest, dest, &qc);
	dest->rDestroy(dest);
	PortalDrop(portal, false);
	/* (old may be gone: the statement committed the transaction it was in) */
	MemoryContextSwitchTo(TopMemoryContext);
	CommitTransactionCommand();
	MemoryContextReset(statement_cxt);
}

/*
 * Run an outside step's statement as the migration's author, with the
 * migration's search_path, shown in pg_stat_activity.  The settings are
 * the session's (the statement's own commits would end a transaction's),
 * and the caller's error path restores them (restore_session).
 */
static void
run_outside(const char *migration, const char *author_name, const char *search_path, const char *sql)
{
	ZdmMigration m = {0};
	Oid			author;
	MemoryContext caller = CurrentMemoryContext;

	check_outside_statement(migration, sql);
	xact_begin();
	m.name = (char *) migration;
	m.author = (char *) author_name;
	author = zdm_author_oid(&m);
	(void) set_config_option("search_path", search_path, PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
	xact_end();

	pgstat_report_activity(STATE_RUNNING, sql);
	debug_query_string = sql;
	SetUserIdAndSecContext(author, 0);
	exec_toplevel(sql);
	MemoryContextSwitchTo(caller);
	SetUserIdAndSecContext(worker_user, 0);
	debug_query_string = NULL;
	zdm_pin_search_path();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* After an error: out of every transaction, back to the worker's own settings. */
static void
restore_session(void)
{
	AbortOutOfAnyTransaction();
	PortalErrorCleanup();
	MemoryContextReset(statement_cxt);
	SetUserIdAndSecContext(worker_user, 0);
	debug_query_string = NULL;
	zdm_pin_search_path();
	pgstat_report_activity(STATE_IDLE, NULL);
}

/* ---------- one step ---------- */

/*
 * 'v' (VALID), 'i' (INVALID) or 'n' (none): the index of that qualified
 * name.  In a transaction of its own.
 */
static char
index_state(const char *index)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(index)};
	char		state = 'n';

	xact_begin();
	zdm_state_exec("SELECT i.indisvalid FROM pg_catalog.pg_index i"
				   " WHERE i.indexrelid = pg_catalog.to_regclass($1)",
				   1, types, values, NULL, true, 1);
	if (SPI_processed > 0)
		state = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0 ? 'v' : 'i';
	xact_end();
	return state;
}

/* Journal an event of a migration's steps, in a transaction of its own. */
static void
journal(const char *migration, const char *event, const char *phase, const char *sql,
		double ms, const char *detail)
{
	xact_begin();
	zdm_log_event(migration, event, phase, sql, NULL, ms, detail);
	xact_end();
}

/*
 * Drop the INVALID index an interrupted or failed build left (only an
 * INVALID one: a VALID index of that name is a finished build).
 */
static void
drop_invalid_index(const char *migration, const char *author, const char *search_path,
				   const char *section, const char *index)
{
	char	   *sql;
	TimestampTz start;

	if (index_state(index) != 'i')
		return;
	sql = psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", index);
	start = GetCurrentTimestamp();
	run_outside(migration, author, search_path, sql);
	journal(migration, "ddl", section_phase(section), sql, zdm_ms_since(start),
			"the INVALID index left by an interrupted or failed build, dropped before anything else");
}

/*
 * Claim step i of the owed section: with the migration's row locked,
 * check that the section still waits for that step and mark it in
 * progress.  false: the section changed (the step is not ours to run).
 * *resumed: it was in progress already (an interrupted earlier attempt).
 * *author and *search_path: what it runs as.  *foreign: the step builds an
 * index that exists although the step never started (created outside
 * zdm); it is not marked in progress then, so that a later attempt does
 * not take that index for its own.
 */
static bool
claim_step(Owed *o, int i, ZdmPlanStep *step, bool *resumed, char **author, char **search_path,
		   bool *foreign)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, TEXTOID};
	Datum		values[4];
	bool		ours;
	ZdmMigration m;
	MemoryContext cxt = CurrentMemoryContext;

	values[0] = CStringGetTextDatum(o->name);
	values[1] = CStringGetTextDatum(o->section);
	values[2] = Int32GetDatum(i);
	values[3] = CStringGetTextDatum(step->sql);
	*foreign = false;
	xact_begin();
	ours = zdm_migration_fetch(o->name, true, &m);
	if (ours)
	{
		zdm_state_exec("SELECT deferred_step IS NOT DISTINCT FROM $4 FROM zdm.migrations"
					   " WHERE name = $1 AND deferred_section = $2 AND deferred_done = $3"
					   "   AND (deferred_section <> 'deferred' OR phase IN ('expanded', 'backfilling'))",
					   4, types, values, NULL, true, 1);
		ours = SPI_processed > 0;
	}
	if (ours)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		*resumed = strcmp(SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1), "t") == 0;
		*author = m.author ? pstrdup(m.author) : NULL;
		*search_path = zdm_plan_search_path(o->name, m.plan);
		MemoryContextSwitchTo(old);
		if (step->index != NULL && !*resumed)
		{
			zdm_state_exec("SELECT FROM pg_catalog.pg_index i WHERE i.indexrelid = pg_catalog.to_regclass($1)",
						   1, (Oid[]) {TEXTOID}, (Datum[]) {CStringGetTextDatum(step->index)},
						   NULL, true, 1);
			*foreign = SPI_processed > 0;
		}
	}
	if (ours && !*foreign)
	{
		zdm_state_exec("UPDATE zdm.migrations SET deferred_step = $4, updated_at = clock_timestamp()"
					   " WHERE name = $1 AND deferred_section = $2 AND deferred_done = $3",
					   4, types, values, NULL, false, 0);
		/* The deferred steps are what the migration is waiting for now. */
		if (strcmp(o->section, "deferred") == 0 && strcmp(m.phase, "expanded") == 0)
		{
			zdm_state_exec("UPDATE zdm.migrations SET phase = 'backfilling',"
						   " backfill_started_at = coalesce(backfill_started_at, clock_timestamp())"
						   " WHERE name = $1", 1, types, values, NULL, false, 0);
			zdm_log_event(o->name, "phase", "backfilling", NULL, NULL, -1, NULL);
		}
	}
	xact_end();
	return ours;
}

/* Record step i done (inside a transaction); false when the section changed meanwhile. */
static bool
record_done(Owed *o, int i, ZdmPlanStep *step, const ZdmLockStats *lock, double ms, const char *detail)
{
	Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
	Datum		values[3];

	values[0] = CStringGetTextDatum(o->name);
	values[1] = CStringGetTextDatum(o->section);
	values[2] = Int32GetDatum(i);
	zdm_state_exec("UPDATE zdm.migrations SET deferred_done = $3 + 1, deferred_step = NULL,"
				   " updated_at = clock_timestamp()"
				   " WHERE name = $1 AND deferred_section = $2 AND deferred_done = $3",
				   3, types, values, NULL, false, 0);
	if (SPI_processed == 0)
		return false;
	zdm_log_event(o->name, "ddl", section_phase(o->section), step->sql, lock, ms, detail);
	return true;
}

/*
 * A worker step: one transaction, as the author under
 * SECURITY_RESTRICTED_OPERATION; its table locked with the retrying lock;
 * recorded done in the same transaction.
 */
static bool
run_worker_step(Owed *o, int i, ZdmPlanStep *step, const char *author_name, const char *search_path)
{
	ZdmMigration m = {0};
	ZdmLockStats stats = {0, 0};
	ZdmAs		as;
	TimestampTz start;
	int			level;
	bool		ours;

	m.name = o->name;
	m.author = (char *) author_name;
	pgstat_report_activity(STATE_RUNNING, step->sql);
	xact_begin();
	start = GetCurrentTimestamp();
	zdm_as_author_push(&as, &m, search_path);
	if (step->relation != NULL)
		zdm_lock_relations(o->name, list_make1_oid(zdm_plan_relation(o->name, step->relation)),
						   zdm_lockmode_from_name(step->lock), &stats);
	level = zdm_lock_timeout_push();
	if (SPI_execute(step->sql, false, 0) < 0)
		elog(ERROR, "zdm: statement failed: %s", step->sql);
	zdm_guc_pop(level);
	zdm_as_pop(&as);
	ours = record_done(o, i, step, &stats, zdm_ms_since(start), "in the background worker");
	if (ours)
		xact_end();
	else
	{
		/* A rollback replaced the section meanwhile: undo the step. */
		SPI_finish();
		PopActiveSnapshot();
		AbortCurrentTransaction();
	}
	pgstat_report_activity(STATE_IDLE, NULL);
	return ours;
}

/* Run step i of the owed section once. */
static StepResult
run_step(Owed *o, int i, ZdmPlanStep *step, ErrorData **edata)
{
	MemoryContext cxt = CurrentMemoryContext;
	volatile bool built = false;
	char	   *volatile author = NULL;
	char	   *volatile search_path = NULL;
	volatile StepResult result = STEP_DONE;

	PG_TRY();
	{
		bool		resumed = false;
		bool		foreign = false;
		char	   *a = NULL;
		char	   *sp = NULL;

		if (!claim_step(o, i, step, &resumed, &a, &sp, &foreign))
			result = STEP_GONE;
		author = a;
		search_path = sp;
		if (foreign)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": index \"%s\" already exists, but the migration has not built it",
							o->name, zdm_index_short_name(step->index)),
					 errdetail("It was created outside zdm after the expand."),
					 errhint("Drop or rename that index, then run the step again with zdm.start_backfill('%s'); "
							 "or roll the migration back with zdm.rollback('%s').", o->name, o->name)));
		if (result == STEP_DONE && strcmp(step->runs, ZDM_RUNS_WORKER) == 0)
		{
			if (!run_worker_step(o, i, step, author, search_path))
				result = STEP_GONE;
		}
		else if (result == STEP_DONE)
		{
			char		state = step->index ? index_state(step->index) : 'n';
			TimestampTz start;
			bool		ours;

			if (state == 'i')
				drop_invalid_index(o->name, author, search_path, o->section, step->index);
			start = GetCurrentTimestamp();
			if (state != 'v')
			{
				built = step->index != NULL;
				run_outside(o->name, author, search_path, step->sql);
			}
			xact_begin();
			ours = record_done(o, i, step, NULL, zdm_ms_since(start),
							   state == 'v' ? "built before the worker was interrupted" :
							   "in the background worker, outside a transaction");
			xact_end();
			if (!ours)
				result = STEP_GONE;
		}
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		*edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		restore_session();
		MemoryContextSwitchTo(cxt);
		result = STEP_FAILED;
	}
	PG_END_TRY();

	/*
	 * A build that failed leaves its index INVALID (and a UNIQUE one still
	 * refusing duplicates): drop it now.  If that fails too, the step stays
	 * in progress, and the next attempt drops it first.
	 */
	if (result == STEP_FAILED && built)
	{
		PG_TRY();
		{
			drop_invalid_index(o->name, author, search_path, o->section, step->index);
		}
		PG_CATCH();
		{
			MemoryContextSwitchTo(cxt);
			EmitErrorReport();
			FlushErrorState();
			restore_session();
			MemoryContextSwitchTo(cxt);
		}
		PG_END_TRY();
	}
	return result;
}

static bool
transient_error(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_QUERY_CANCELED ||
		sqlerrcode == ERRCODE_ADMIN_SHUTDOWN ||
		sqlerrcode == ERRCODE_CRASH_SHUTDOWN;
}

/* The error as last_error shows it: message, SQLSTATE, detail. */
static char *
error_text(ErrorData *edata)
{
	return psprintf("%s (SQLSTATE %s)%s%s", edata->message, unpack_sql_state(edata->sqlerrcode),
					edata->detail ? ": " : "", edata->detail ? edata->detail : "");
}

/*
 * A step failed for good: a deferred migration goes to phase "failed"; a
 * contract's or rollback's step stays owed with the error in last_error
 * (the worker leaves it until the call is made again).
 */
static void
record_failure(Owed *o, int i, int n, ZdmPlanStep *step, ErrorData *edata)
{
	Oid			types[2] = {TEXTOID, TEXTOID};
	Datum		values[2];
	char	   *error = psprintf("step %d of %d in the background worker failed: %s", i + 1, n,
								 error_text(edata));

	values[0] = CStringGetTextDatum(o->name);
	values[1] = CStringGetTextDatum(o->section);
	xact_begin();
	zdm_log_event(o->name, "step_failed", section_phase(o->section), step->sql, NULL, -1, error);
	if (strcmp(o->section, "deferred") == 0)
	{
		/* deferred_step stays: a retry then knows an INVALID index left behind as its own */
		zdm_state_exec("SELECT FROM zdm.migrations"
					   " WHERE name = $1 AND deferred_section = $2 AND phase IN ('expanded', 'backfilling')",
					   2, types, values, NULL, true, 0);
		if (SPI_processed > 0)
			zdm_migration_set_phase(o->name, "failed", error);
	}
	else
	{
		Datum		v3[3] = {values[0], values[1], CStringGetTextDatum(error)};

		zdm_state_exec("UPDATE zdm.migrations SET last_error = $3,"
					   " updated_at = clock_timestamp()"
					   " WHERE name = $1 AND deferred_section = $2",
					   3, (Oid[]) {TEXTOID, TEXTOID, TEXTOID}, v3, NULL, false, 0);
	}
	xact_end();
	ereport(LOG,
			(errmsg("zdm: migration \"%s\": %s", o->name, error)));
}

/*
 * Run what the worker owes one migration: its section's steps from the
 * first not done, each retried while its errors are transient, then close
 * the section.
 */
static void
run_section(Owed *o, Jsonb *plan)
{
	List	   *volatile steps = NIL;
	ErrorData  *volatile edata = NULL;
	MemoryContext cxt = CurrentMemoryContext;
	int			n;

	PG_TRY();
	{
		xact_begin();
		MemoryContextSwitchTo(cxt);
		steps = zdm_worker_steps(o->name, plan, o->section);
		xact_end();
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		EmitErrorReport();
		FlushErrorState();
		restore_session();
		MemoryContextSwitchTo(cxt);
	}
	PG_END_TRY();
	if (edata != NULL)
	{
		record_failure(o, o->done, o->done + 1,
					   &(ZdmPlanStep) {NULL, "none", "(the plan's steps)", ZDM_RUNS_WORKER, NULL}, edata);
		return;
	}
	n = list_length(steps);

	for (int i = o->done; i < n; i++)
	{
		ZdmPlanStep *step = list_nth(steps, i);
		long		backoff = BACKOFF_FIRST_MS;
		ErrorData  *error = NULL;

		for (;;)
		{
			StepResult	r = run_step(o, i, step, &error);

			if (r == STEP_GONE)
				return;
			if (r == STEP_DONE)
				break;
			if (!transient_error(error->sqlerrcode))
			{
				record_failure(o, i, n, step, error);
				return;
			}
			journal(o->name, "retry", section_phase(o->section), step->sql, -1,
					psprintf("%s; again in %ld ms", error_text(error), backoff));
			zdm_worker_sleep(backoff);
			backoff = Min(backoff * 2, BACKOFF_MAX_MS);
		}
	}

	/* Every step done: close the section; a deferred one makes the migration ready. */
	xact_begin();
	{
		Oid			types[3] = {TEXTOID, TEXTOID, INT4OID};
		Datum		values[3] = {CStringGetTextDatum(o->name), CStringGetTextDatum(o->section),
		Int32GetDatum(n)};

		zdm_state_exec("UPDATE zdm.migrations SET deferred_section = NULL, deferred_step = NULL,"
					   " updated_at = clock_timestamp()"
					   " WHERE name = $1 AND deferred_section = $2 AND deferred_done >= $3"
					   "   AND (deferred_section <> 'deferred' OR phase IN ('expanded', 'backfilling'))",
					   3, types, values, NULL, false, 0);
		if (SPI_processed > 0 && strcmp(o->section, "deferred") == 0)
			zdm_migration_set_phase(o->name, "backfilled", NULL);
		else if (SPI_processed > 0)
			zdm_log_event(o->name, "steps_done", section_phase(o->section), NULL, NULL, -1,
						  psprintf(n == 1 ? "the %s's %d background step is done" :
								   "the %s's %d background steps are done", o->section, n));
	}
	xact_end();
}

/* ---------- the worker ---------- */

/*
 * The migrations the worker owes steps to now: a contract's or rollback's
 * whose last attempt did not fail, and a deferred section once the
 * migration's backfill has no table left to walk.  Oldest first.
 */
#define OWED_QUERY \
	"SELECT name, deferred_section, deferred_done, plan FROM zdm.migrations m" \
	" WHERE deferred_section IS NOT NULL" \
	"   AND CASE WHEN deferred_section = 'deferred'" \
	"            THEN phase IN ('expanded', 'backfilling') AND NOT EXISTS (" \
	"                 SELECT FROM pg_catalog.jsonb_array_elements(CASE WHEN pg_catalog.jsonb_typeof(m.plan->'tables') = 'array'" \
	"                                                THEN m.plan->'tables' ELSE '[]' END) WITH ORDINALITY t(v, i)" \
	"                  WHERE t.i > m.backfill_table AND pg_catalog.jsonb_typeof(t.v) = 'object'" \
	"                    AND t.v->>'backfill' = 'true')" \
	"            ELSE last_error IS NULL END" \
	" ORDER BY updated_at, name LIMIT 1"

/* One round: the first migration owed steps, served whole.  false: none. */
static bool
steps_round(MemoryContext cxt)
{
	Owed	   *o = NULL;
	Jsonb	   *plan = NULL;

	MemoryContextReset(cxt);
	xact_begin();
	if (OidIsValid(get_extension_oid("zdm", true)) && zdm_deferred_state_exists())
	{
		zdm_state_query(OWED_QUERY, true, 1);
		if (SPI_processed > 0)
		{
			HeapTuple	tup = SPI_tuptable->vals[0];
			TupleDesc	desc = SPI_tuptable->tupdesc;
			MemoryContext old = MemoryContextSwitchTo(cxt);
			bool		isnull;

			o = palloc0(sizeof(Owed));
			o->name = SPI_getvalue(tup, desc, 1);
			o->section = SPI_getvalue(tup, desc, 2);
			o->done = DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull));
			plan = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 4, &isnull));
			MemoryContextSwitchTo(old);
		}
	}
	xact_end();
	if (o == NULL)
		return false;
	MemoryContextSwitchTo(cxt);
	run_section(o, plan);
	MemoryContextSwitchTo(TopMemoryContext);
	return true;
}

void
zdm_steps_main(Datum arg)
{
	Oid			dboid = DatumGetObjectId(arg);
	TransactionId wait_xid;
	LOCKTAG		tag;
	MemoryContext round_cxt;

	memcpy(&wait_xid, MyBgworkerEntry->bgw_extra, sizeof(TransactionId));
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnectionByOid(dboid, InvalidOid, 0);
	pgstat_report_appname("zdm deferred steps");

	/*
	 * The worker's own queries resolve nothing in a schema other roles can
	 * create objects in; an index build may take hours, whatever a
	 * statement_timeout in postgresql.conf says, and waits for the
	 * transactions it must outlive (PostgreSQL's CONCURRENTLY never blocks
	 * clients while it waits); worker steps set their own lock_timeout.
	 */
	worker_user = GetUserId();
	zdm_pin_search_path();
	SetConfigOption("statement_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("lock_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	SetConfigOption("idle_in_transaction_session_timeout", "0", PGC_SUSET, PGC_S_OVERRIDE);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "zdm steps round", ALLOCSET_DEFAULT_SIZES);
	statement_cxt = AllocSetContextCreate(TopMemoryContext, "zdm step statement", ALLOCSET_DEFAULT_SIZES);
	zdm_worker_apply_nice("deferred-steps worker");

	/* Work only once the phase that owes the steps is committed (or gone). */
	if (TransactionIdIsValid(wait_xid))
	{
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "zdm: waiting for the requesting transaction to end");
		XactLockTableWait(wait_xid, NULL, NULL, XLTW_None);
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ZDM_ADVISORY_KEYSPACE, 0, ZDM_ADVISORY_STEPS);
	for (;;)
	{
		if (LockAcquire(&tag, ExclusiveLock, true, true) == LOCKACQUIRE_NOT_AVAIL)
			proc_exit(0);		/* another worker serves this database */
		for (;;)
		{
			CHECK_FOR_INTERRUPTS();
			if (ConfigReloadPending)
			{
				ConfigReloadPending = false;
				ProcessConfigFile(PGC_SIGHUP);
			}
			if (!steps_round(round_cxt))
				break;
		}

		/*
		 * Leave, then look once more (without running anything: only the
		 * lock's holder runs steps): work committed while this worker was
		 * deciding to leave, after its last look, is either seen here, or
		 * found by the worker started for it, which gets the lock now.
		 */
		LockRelease(&tag, ExclusiveLock, true);
		{
			bool		owed;

			xact_begin();
			owed = OidIsValid(get_extension_oid("zdm", true)) && zdm_deferred_state_exists() &&
				zdm_state_query(OWED_QUERY, true, 1) >= 0 && SPI_processed > 0;
			xact_end();
			if (!owed)
				break;
		}
	}
	proc_exit(0);
}
