/*-------------------------------------------------------------------------
 *
 * catalog.c
 *	  Reading and writing zdm.migrations and zdm.migration_log.
 *
 * Every function here runs inside an SPI connection opened by the SQL
 * function that called it; results are copied into that function's
 * memory context.  State is written in the caller's transaction, so it
 * commits, or vanishes, with the work it describes, and as the state's
 * owner (roles.c): the caller needs no privileges on zdm's tables.
 * zdm_migration_live() is the exception: the dual-write trigger calls it
 * outside any of zdm's SQL functions.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/snapmgr.h"

/* Run one statement with text parameters (NULL pointer = SQL NULL). */
static int
spi_exec_text(const char *sql, int nargs, const char **args, int expect)
{
	Oid			types[16];
	Datum		values[16];
	char		nulls[16];
	int			rc;

	Assert(nargs <= 16);
	for (int i = 0; i < nargs; i++)
	{
		types[i] = TEXTOID;
		values[i] = args[i] ? CStringGetTextDatum(args[i]) : (Datum) 0;
		nulls[i] = args[i] ? ' ' : 'n';
	}
	rc = zdm_state_exec(sql, nargs, types, values, nulls, false, 0);
	if (rc != expect)
		elog(ERROR, "zdm: internal statement failed (%s): %s",
			 SPI_result_code_string(rc), sql);
	return rc;
}

/*
 * Fetch a migration's row into m; false when there is none.  for_update
 * locks the row, serialising backfill batches, contract and rollback of
 * the same migration.
 */
bool
zdm_migration_fetch(const char *name, bool for_update, ZdmMigration *m)
{
	const char *args[1] = {name};
	char	   *sql;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	sql = psprintf("SELECT phase, definition, plan, version_old, version_new, author"
				   "  FROM zdm.migrations WHERE name = $1%s",
				   for_update ? " FOR UPDATE" : "");
	spi_exec_text(sql, 1, args, for_update ? SPI_OK_SELECT : SPI_OK_SELECT);
	if (SPI_processed == 0)
		return false;

	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	m->name = pstrdup(name);
	/* (NOT NULL columns, unless the table itself was altered) */
	for (int i = 1; i <= 3; i++)
	{
		(void) SPI_getbinval(tup, desc, i, &isnull);
		if (isnull)
			zdm_stored_row_corrupt(name, SPI_fname(desc, i));
	}
	m->phase = TextDatumGetCString(SPI_getbinval(tup, desc, 1, &isnull));
	m->definition = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 2, &isnull));
	m->plan = DatumGetJsonbPCopy(SPI_getbinval(tup, desc, 3, &isnull));
	m->expanded_here = zdm_expanded_here(name);
	m->version_old = SPI_getvalue(tup, desc, 4);
	m->version_new = SPI_getvalue(tup, desc, 5);
	m->author = SPI_getvalue(tup, desc, 6);
	return true;
}

/* Refuse a NULL-free but empty migration name. */
void
zdm_check_name(const char *name, const char *func)
{
	if (name[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration name must not be empty"),
				 errhint("Call %s with a migration's name, such as '001_orders_status_enum'.", func)));
}

/*
 * The dual-write triggers that name a migration (partitions' clones left
 * out: they go with their parent's), as the DROP TRIGGER statements that
 * would remove them; NULL when there are none.  Inside SPI.
 */
static char *
leftover_triggers(const char *name)
{
	Oid			types[2] = {OIDOID, BYTEAOID};
	Datum		values[2];
	Size		len = strlen(name) + 1;		/* the arguments are NUL-terminated */
	bytea	   *prefix = palloc(VARHDRSZ + len);

	SET_VARSIZE(prefix, VARHDRSZ + len);
	memcpy(VARDATA(prefix), name, len);
	values[0] = ObjectIdGetDatum(zdm_dual_write_oid());
	values[1] = PointerGetDatum(prefix);
	zdm_state_exec("SELECT pg_catalog.string_agg(pg_catalog.format('DROP TRIGGER %I ON %s;', t.tgname,"
				   "                                              t.tgrelid::pg_catalog.regclass), ' '"
				   "                            ORDER BY t.tgrelid, t.tgname)"
				   "  FROM pg_catalog.pg_trigger t"
				   " WHERE t.tgfoid = $1 AND t.tgparentid = 0"
				   "   AND position($2 IN t.tgargs) = 1",
				   2, types, values, NULL, true, 1);
	return SPI_processed > 0 ? SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1) : NULL;
}

/*
 * Fail when dual-write triggers name a migration that zdm has no live
 * state for (a schema-only restore: see trigger.c).  Inside SPI.
 */
void
zdm_refuse_leftovers(const char *name)
{
	char	   *leftovers = leftover_triggers(name);

	if (leftovers != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("zdm has no state for migration \"%s\", but its dual-write triggers exist", name),
				 errdetail("zdm.migrations has no live row for it: the database was probably restored from a schema-only dump "
						   "(pg_dump --schema-only), which leaves zdm's state out.  Its triggers refuse "
						   "writes to their tables meanwhile."),
				 errhint("Restore zdm's state with the database (a full pg_dump keeps it; pg_dump --data-only --schema=zdm dumps it alone), "
						 "or give the migration up here: %s and drop what else it added.",
						 leftovers)));
}

/*
 * Fetch a migration or fail with a clear error, which says so when the
 * migration's triggers are there without its state.
 */
void
zdm_require_migration(const char *name, ZdmMigration *m, bool for_update)
{
	if (zdm_migration_fetch(name, for_update, m))
		return;
	zdm_refuse_leftovers(name);
	ereport(ERROR,
			(errcode(ERRCODE_UNDEFINED_OBJECT),
			 errmsg("migration \"%s\" does not exist", name),
			 errhint("SELECT name, phase FROM zdm.status lists the migrations zdm knows.")));
}

/*
 * Does zdm know a migration as live (expanded, and neither contracted nor
 * rolled back)?  Its dual-write trigger asks before it works for it
 * (trigger.c).  Read with the latest snapshot, as zdm's state owner: the
 * catalog, which shows a transaction the trigger, is read with fresh
 * snapshots too, so a transaction whose snapshot predates an expand must
 * see the expand's state as well.  Connects to SPI itself.
 */
bool
zdm_migration_live(const char *name)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	bool		live;

	values[0] = CStringGetTextDatum(name);
	SPI_connect();
	PushActiveSnapshot(GetLatestSnapshot());
	zdm_state_exec("SELECT FROM zdm.migrations"
				   " WHERE name = $1 AND phase NOT IN ('contracted', 'rolled_back')",
				   1, types, values, NULL, true, 1);
	live = SPI_processed > 0;
	PopActiveSnapshot();
	SPI_finish();
	return live;
}

/* Move a migration to a new phase, stamping its timestamp, and log it. */
void
zdm_migration_set_phase(const char *name, const char *phase, const char *error)
{
	const char *args[3] = {name, phase, error};

	spi_exec_text("UPDATE zdm.migrations SET phase = $2, updated_at = now(),"
				  "  last_error = $3,"
				  "  backfilled_at = CASE WHEN $2 = 'backfilled' THEN clock_timestamp() ELSE backfilled_at END,"
				  "  contracted_at = CASE WHEN $2 = 'contracted' THEN now() ELSE contracted_at END,"
				  "  rolled_back_at = CASE WHEN $2 = 'rolled_back' THEN now() ELSE rolled_back_at END"
				  " WHERE name = $1",
				  3, args, SPI_OK_UPDATE);
	zdm_log_event(name, "phase", phase, NULL, NULL, -1, error);
}

/* The worker flags of a migration. */
void
zdm_worker_flags(const char *name, bool *requested, bool *paused)
{
	const char *args[1] = {name};
	bool		isnull;

	spi_exec_text("SELECT worker_requested, paused FROM zdm.migrations WHERE name = $1",
				  1, args, SPI_OK_SELECT);
	*requested = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	*paused = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
}

/* Append one event to zdm.migration_log; phase changes are also NOTIFYed. */
void
zdm_log_event(const char *migration, const char *event, const char *phase,
			  const char *statement, const ZdmLockStats *lock,
			  double duration_ms, const char *detail)
{
	char		waitbuf[32];
	char		durbuf[32];
	char		attbuf[16];
	const char *args[9];

	if (lock)
	{
		snprintf(waitbuf, sizeof(waitbuf), "%.3f", lock->wait_ms);
		snprintf(attbuf, sizeof(attbuf), "%d", lock->attempts);
	}
	snprintf(durbuf, sizeof(durbuf), "%.3f", duration_ms);

	args[0] = migration;
	args[1] = event;
	args[2] = phase;
	args[3] = statement;
	args[4] = lock ? waitbuf : NULL;
	args[5] = duration_ms >= 0 ? durbuf : NULL;
	args[6] = lock ? attbuf : NULL;
	args[7] = detail;
	/* who asked: the journal is written as zdm's owner */
	args[8] = zdm_current_role_name();
	spi_exec_text("INSERT INTO zdm.migration_log"
				  " (migration, event, phase, statement, lock_wait_ms, duration_ms, attempts, detail, actor)"
				  " VALUES ($1, $2, $3, $4, $5::float8, $6::float8, $7::int, $8, $9)",
				  9, args, SPI_OK_INSERT);
	/* LISTEN zdm: {"migration": ..., "phase": ...} at every phase change */
	if (strcmp(event, "phase") == 0)
		spi_exec_text("SELECT pg_catalog.pg_notify('zdm', pg_catalog.json_build_object("
					  "'migration', $1, 'phase', $2, 'error', $3)::text)",
					  3, (const char *[]) {migration, phase, detail}, SPI_OK_SELECT);
}
