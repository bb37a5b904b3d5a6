/*-------------------------------------------------------------------------
 *
 * backfill.c
 *	  zdm.backfill(): convert historical rows in small committed batches;
 *	  zdm.verify(): count rows whose old and new columns disagree.
 *
 * A batch walks one table's key (primary key, or a unique NOT NULL key)
 * in order: it finds the key of the batch-th row after the checkpoint by
 * an index range scan, then converts the rows in that key range with one
 * UPDATE that computes the new columns directly ("SET new = up(row)") and
 * skips rows the dual-write trigger already converted ("new IS NULL").
 * The checkpoint (table and last key) is written in the same transaction
 * as the batch, so a caller that commits after each call resumes exactly
 * where it stopped after any crash, with no row skipped.
 *
 * The backfill's own UPDATE must not fire the dual-write logic: it sets
 * the new column, which the trigger would read as a write from a new
 * client and answer by recomputing the old column.  zdm_backfill_bypass
 * names the migration while the UPDATE runs, and the statement then runs
 * without that migration's trigger (trigger.c).
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(zdm_backfill);
PG_FUNCTION_INFO_V1(zdm_backfill_all);
PG_FUNCTION_INFO_V1(zdm_verify);

char	   *zdm_backfill_failed_key = NULL;

/* One table of the plan (read and checked by plan.c). */
typedef ZdmPlanTable PlanTable;

/* "k1, k2", or "s.k1 DESC, s.k2 DESC" with a prefix and suffix */
static char *
key_list(PlanTable *pt, const char *prefix, const char *suffix)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int k = 0; k < pt->nkeys; k++)
		appendStringInfo(&buf, "%s%s%s%s", k > 0 ? ", " : "", prefix,
						 quote_identifier(pt->key[k]), suffix);
	return buf.data;
}

/* A key as "a, b", for messages. */
static char *
key_text(PlanTable *pt, char **key)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (int k = 0; k < pt->nkeys; k++)
		appendStringInfo(&buf, "%s%s", k > 0 ? ", " : "", key[k]);
	return buf.data;
}

/* "ROW($1::t1, $2::t2)" with parameters numbered from first. */
static char *
key_params(PlanTable *pt, int first)
{
	StringInfoData buf;

	initStringInfo(&buf);
	appendStringInfoString(&buf, "ROW(");
	for (int k = 0; k < pt->nkeys; k++)
		appendStringInfo(&buf, "%s$%d::%s", k > 0 ? ", " : "", first + k, pt->key_types[k]);
	appendStringInfoChar(&buf, ')');
	return buf.data;
}

/*
 * The ctid walk of a table without a key: *last is {next block, end
 * block, rows per block}.  The end is the table's size when the walk
 * starts (rows added later are converted by the trigger); for a
 * partitioned table, the largest partition's, since the block range
 * applies to every partition at once.  Each batch converts the rows of
 * about batch/rows-per-block blocks with a TID range scan.
 */
static int64
backfill_ctid_batch(const char *migration, PlanTable *pt, char ***last, int batch)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(pt->relation)};
	int64		next,
				end,
				upper,
				rows;
	double		per_block;
	bool		isnull;
	int			rc;

	if (*last == NULL)
	{
		rc = SPI_execute_with_args("SELECT coalesce(pg_catalog.max(pg_catalog.pg_relation_size(p.relid)"
								   "         / pg_catalog.current_setting('block_size')::int8), 0),"
								   "       greatest(pg_catalog.sum(greatest(c.reltuples, 0))"
								   "                / greatest(pg_catalog.sum(c.relpages), 1), 1)::float8"
								   "  FROM (SELECT $1::regclass AS relid UNION"	/* (no rows for a plain table) */
								   "        SELECT relid FROM pg_catalog.pg_partition_tree($1::regclass)) p"
								   "  JOIN pg_catalog.pg_class c ON c.oid = p.relid WHERE c.relkind = 'r'",
								   1, types, values, NULL, false, 1);
		if (rc != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "zdm: could not measure table %s", pt->relation);
		end = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
		per_block = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &isnull));
		next = 0;
	}
	else
	{
		next = pg_strtoint64((*last)[0]);
		end = pg_strtoint64((*last)[1]);
		per_block = strtod((*last)[2], NULL);
	}
	if (next >= end)
		return 0;

	upper = Min(end, next + Max(1, (int64) (batch / Max(per_block, 1.0))));
	zdm_backfill_bypass = migration;
	PG_TRY();
	{
		/* The count sees the range as it was before the update. */
		rc = SPI_execute(psprintf("WITH converted AS (UPDATE %s SET %s"
								  "   WHERE ctid >= '(" INT64_FORMAT ",0)'::tid AND ctid < '(" INT64_FORMAT ",0)'::tid"
								  "     AND (%s)%s RETURNING 1)"
								  " SELECT pg_catalog.count(*) FROM %s"
								  "  WHERE ctid >= '(" INT64_FORMAT ",0)'::tid AND ctid < '(" INT64_FORMAT ",0)'::tid",
								  pt->relation, pt->set, next, upper, pt->todo,
								  zdm_delay_active() ? " AND zdm.delay_point()" : "",
								  pt->relation, next, upper), false, 0);
	}
	PG_FINALLY();
	{
		zdm_backfill_bypass = NULL;
	}
	PG_END_TRY();
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "zdm: backfill update failed: %s", SPI_result_code_string(rc));
	rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));

	*last = palloc(sizeof(char *) * 3);
	(*last)[0] = psprintf(INT64_FORMAT, upper);
	(*last)[1] = psprintf(INT64_FORMAT, end);
	(*last)[2] = psprintf("%g", per_block);
	/* An empty stretch of blocks is not the end of the table. */
	return Max(rows, 1);
}

/*
 * The table's largest key, or NULL when it is empty.  Not inlined into the
 * batch, whose PG_TRY would otherwise make the compiler fear for it.
 */
static pg_noinline char **
last_key(PlanTable *pt)
{
	char	  **key;
	int			rc;

	/* s.k, not k: ORDER BY k would sort by the text output column */
	rc = SPI_execute(psprintf("SELECT %s FROM %s s ORDER BY %s LIMIT 1", key_list(pt, "s.", "::text"),
							  pt->relation, key_list(pt, "s.", " DESC")), false, 1);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "zdm: backfill end query failed: %s", SPI_result_code_string(rc));
	if (SPI_processed == 0)
		return NULL;
	key = palloc(sizeof(char *) * pt->nkeys);
	for (int k = 0; k < pt->nkeys; k++)
		key[k] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, k + 1);
	return key;
}

/*
 * Convert up to batch rows of pt after the checkpoint.  *state is the
 * walk's state, *nstate its length: NULL before the first batch; then the
 * end key (2 * nkeys: the largest key when the walk started, then the last
 * key converted).  The walk stops at the end key: a row with a larger key
 * was inserted after the expand, through the trigger, so it is converted
 * already, and a walk that followed the inserts of a busy table could
 * fall behind them and never finish.  A checkpoint of nkeys entries (the
 * last key alone, as zdm 0.2 wrote it) gets its end key now.
 * Returns the rows in the batch's key range (0: table done).
 */
static int64
backfill_table_batch(const char *migration, PlanTable *pt, char ***state, int nstate, int batch)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *keys = key_list(pt, "", "");
	char	  **end;
	char	  **last = NULL;
	char	   *lower;
	Oid		   *types = palloc(sizeof(Oid) * pt->nkeys * 3);
	Datum	   *values = palloc(sizeof(Datum) * pt->nkeys * 3);
	char	   *sql;
	int64		rows;
	char	  **upper;
	int			nparams;
	int			rc;

	if (*state && nstate == pt->nkeys * 2)
	{
		end = *state;
		last = *state + pt->nkeys;
	}
	else
	{
		end = last_key(pt);
		if (end == NULL)
			return 0;			/* an empty table */
		last = *state;			/* NULL, or the last key of a 0.2 checkpoint */
	}

	/* $1..: the end key, then the last key if any, then the batch's upper key */
	for (int k = 0; k < pt->nkeys * 3; k++)
		types[k] = TEXTOID;
	for (int k = 0; k < pt->nkeys; k++)
		values[k] = CStringGetTextDatum(end[k]);
	for (int k = 0; last && k < pt->nkeys; k++)
		values[pt->nkeys + k] = CStringGetTextDatum(last[k]);
	nparams = last ? pt->nkeys * 2 : pt->nkeys;
	lower = psprintf("ROW(%s) <= %s%s%s", keys, key_params(pt, 1),
					 last ? " AND " : "",
					 last ? psprintf("ROW(%s) > %s", keys, key_params(pt, pt->nkeys + 1)) : "");

	/*
	 * The batch's upper key: the batch-th key of the range, found by an
	 * index(-only) scan that skips batch - 1 keys; no sort, no count.
	 * When fewer keys are left, the last batch goes to the end key and
	 * counts them.
	 */
	rc = SPI_execute_with_args(psprintf("SELECT %s FROM %s s WHERE %s ORDER BY %s OFFSET %d LIMIT 1",
										key_list(pt, "s.", "::text"), pt->relation, lower,
										key_list(pt, "s.", ""), batch - 1),
							   nparams, types, values, NULL, false, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "zdm: backfill range query failed: %s", SPI_result_code_string(rc));
	upper = palloc(sizeof(char *) * pt->nkeys);
	if (SPI_processed > 0)
	{
		for (int k = 0; k < pt->nkeys; k++)
			upper[k] = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, k + 1);
		rows = batch;
	}
	else
	{
		rc = SPI_execute_with_args(psprintf("SELECT pg_catalog.count(*) FROM %s s WHERE %s", pt->relation, lower),
								   nparams, types, values, NULL, false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "zdm: backfill range query failed: %s", SPI_result_code_string(rc));
		rows = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1,
										   &(bool){false}));
		if (rows == 0)
			return 0;
		for (int k = 0; k < pt->nkeys; k++)
			upper[k] = end[k];
	}
	for (int k = 0; k < pt->nkeys; k++)
		values[nparams + k] = CStringGetTextDatum(upper[k]);

	/* Under the worker's rate, the rows come spread over the batch (delay.c). */
	sql = psprintf("UPDATE %s SET %s WHERE %s AND ROW(%s) <= %s AND (%s)%s",
				   pt->relation, pt->set, lower, keys, key_params(pt, nparams + 1), pt->todo,
				   zdm_delay_active() ? " AND zdm.delay_point()" : "");

	zdm_backfill_bypass = migration;
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nparams + pt->nkeys, types, values, NULL, false, 0);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		zdm_backfill_bypass = NULL;
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		/* The worker records it; with batch 1 it is the offending row's key. */
		if (zdm_backfill_failed_key)
			pfree(zdm_backfill_failed_key);
		zdm_backfill_failed_key = MemoryContextStrdup(TopMemoryContext, key_text(pt, upper));
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("migration \"%s\": backfill of table \"%s\" failed for keys up to (%s): %s",
						migration, pt->table, key_text(pt, upper), edata->message),
				 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
				 errhint("Fix the offending row and call zdm.backfill('%s') again, or roll the migration back "
						 "with zdm.rollback('%s') and expand a corrected one.", migration, migration)));
	}
	PG_END_TRY();
	zdm_backfill_bypass = NULL;
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "zdm: backfill update failed: %s", SPI_result_code_string(rc));

	/* The new state: the same end key, the batch's upper key as the last. */
	*state = palloc(sizeof(char *) * pt->nkeys * 2);
	for (int k = 0; k < pt->nkeys; k++)
	{
		(*state)[k] = end[k];
		(*state)[pt->nkeys + k] = upper[k];
	}
	return rows;
}

/*
 * The checkpoint of a migration: table index and last key, checked against
 * the plan's tables; *since_ms gets the time since the previous batch ended
 * (-1: none yet, or long ago).
 */
static void
read_checkpoint(const char *name, List *tables, int *table, char ***key, int *nkey,
				double *since_ms)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};
	bool		table_null;
	bool		key_null;
	bool		isnull;
	Datum		t;
	Datum		d;

	zdm_state_exec("SELECT backfill_table, backfill_key,"
				   "  CASE WHEN batches > 0 AND clock_timestamp() - updated_at < interval '60 s'"
				   "       THEN extract(epoch FROM clock_timestamp() - updated_at)::float8 * 1000"
				   "       ELSE -1 END"
				   "  FROM zdm.migrations WHERE name = $1",
				   1, types, values, NULL, false, 1);
	if (SPI_tuptable == NULL || SPI_processed != 1)
		elog(ERROR, "zdm: could not read the backfill checkpoint of migration \"%s\"", name);
	t = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &table_null);
	*since_ms = DatumGetFloat8(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 3, &isnull));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2, &key_null);
	zdm_plan_checkpoint(name, tables, t, table_null, d, key_null, table, key, nkey);
}

/*
 * Move the checkpoint, in the batch's transaction.  rate is this batch's
 * rows per second of wall-clock time (0: no sample); the status shows a
 * moving average of it.
 */
static void
write_checkpoint(const char *name, int table, char **key, int nkey, int64 rows,
				 double batch_ms, double rate)
{
	Oid			types[6] = {TEXTOID, INT4OID, TEXTARRAYOID, INT8OID, FLOAT8OID, FLOAT8OID};
	Datum		values[6];
	char		nulls[6] = {' ', ' ', key ? ' ' : 'n', ' ', ' ', ' '};
	int			rc;

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(table);
	if (key)
	{
		Datum	   *elems = palloc(sizeof(Datum) * nkey);

		for (int i = 0; i < nkey; i++)
			elems[i] = CStringGetTextDatum(key[i]);
		values[2] = PointerGetDatum(construct_array(elems, nkey, TEXTOID, -1, false, TYPALIGN_INT));
	}
	values[3] = Int64GetDatum(rows);
	values[4] = Float8GetDatum(batch_ms);
	values[5] = Float8GetDatum(rate);
	rc = zdm_state_exec("UPDATE zdm.migrations SET backfill_table = $2, backfill_key = $3,"
						" rows_backfilled = rows_backfilled + $4,"
						" batches = batches + CASE WHEN $4 > 0 THEN 1 ELSE 0 END,"
						" last_batch_ms = CASE WHEN $4 > 0 THEN $5 ELSE last_batch_ms END,"
						" recent_rows_per_sec = CASE WHEN $6 <= 0 THEN recent_rows_per_sec"
						"   WHEN recent_rows_per_sec IS NULL THEN $6"
						"   ELSE 0.8 * recent_rows_per_sec + 0.2 * $6 END,"
						" updated_at = clock_timestamp() WHERE name = $1",
						6, types, values, nulls, false, 0);
	if (rc != SPI_OK_UPDATE)
		elog(ERROR, "zdm: could not write backfill checkpoint: %s", SPI_result_code_string(rc));
}

static void
check_batch(const char *name, int32 batch)
{
	if (batch <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 name ? errmsg("migration \"%s\": batch size must be positive, not %d", name, batch) :
				 errmsg("batch size must be positive, not %d", batch),
				 errhint("Batches of 1000 to 10000 rows keep each transaction short.")));
}

/*
 * One batch of one migration; 0 when it is (now) backfilled.  Used by
 * zdm.backfill() and by the background worker alike.
 */
int64
zdm_backfill_batch(const char *name, int32 batch)
{
	ZdmMigration m;
	List	   *tables;
	int			idx,
				nkey;
	char	  **key;
	int64		rows = 0;
	ZdmAs		as;
	double		since_ms;
	TimestampTz start = GetCurrentTimestamp();

	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "backfill");
	/*
	 * A finished migration has nothing to backfill: 0, as when the last
	 * batch finished it.  Not an error: a scheduled job (pg_cron) or a loop
	 * still calling it after contract or rollback succeeds instead of
	 * failing on every run, and a NOTICE says why it did nothing.  A
	 * backfilled migration (0 is "done", what every loop waits for) stays
	 * quiet, as it always was.
	 */
	if (strcmp(m.phase, "backfilled") == 0)
		return 0;
	if (strcmp(m.phase, "contracted") == 0 || strcmp(m.phase, "rolled_back") == 0)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is %s; there is nothing to backfill",
						name, strcmp(m.phase, "contracted") == 0 ? "contracted" : "rolled back"),
				 errhint("A job that calls zdm.backfill('%s', ...) can be unscheduled.", name)));
		return 0;
	}
	/* A failed backfill resumes where it stopped once called again. */
	if (strcmp(m.phase, "expanded") == 0 || strcmp(m.phase, "failed") == 0)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		zdm_state_exec("UPDATE zdm.migrations SET phase = 'backfilling',"
					   " backfill_started_at = coalesce(backfill_started_at, clock_timestamp()),"
					   " updated_at = clock_timestamp(), last_error = NULL, failed_key = NULL"
					   " WHERE name = $1", 1, types, values, NULL, false, 0);
		zdm_log_event(name, "phase", "backfilling", NULL, NULL, -1, NULL);
	}

	tables = zdm_plan_tables(name, m.plan);
	read_checkpoint(name, tables, &idx, &key, &nkey, &since_ms);
	/* The migration's SQL runs as its author; its state, as zdm's owner. */
	zdm_as_author_push(&as, &m, zdm_plan_search_path(name, m.plan));
	while (idx < list_length(tables))
	{
		PlanTable  *pt = list_nth(tables, idx);

		if (pt->backfill && pt->nkeys == 0)
			rows = backfill_ctid_batch(name, pt, &key, batch);
		else if (pt->backfill)
			rows = backfill_table_batch(name, pt, &key, nkey, batch);
		if (rows > 0)
		{
			double		batch_ms = zdm_ms_since(start);

			/*
			 * Wall-clock rate: since the previous batch ended, when there was
			 * one shortly before (pauses between batches count), else this
			 * batch alone.
			 */
			write_checkpoint(name, idx, key, pt->nkeys > 0 ? pt->nkeys * 2 : 3, rows, batch_ms,
							 rows * 1000.0 / Max((since_ms > 0 ? since_ms : 0) + batch_ms, 0.001));
			break;
		}
		idx++;
		key = NULL;
	}
	zdm_as_pop(&as);

	if (rows == 0)
	{
		Oid			types[1] = {TEXTOID};
		Datum		values[1] = {CStringGetTextDatum(name)};

		write_checkpoint(name, idx, NULL, 0, 0, 0, 0);
		/* Done: the backfill worker has nothing left to do for it. */
		zdm_state_exec("UPDATE zdm.migrations SET worker_requested = false, paused = false,"
					   " throttle_reason = NULL WHERE name = $1",
					   1, types, values, NULL, false, 0);

		/*
		 * Its deferred steps (an index to build) come next, in the
		 * deferred-steps worker, started (or woken) here once this
		 * transaction commits; the migration stays "backfilling" until they
		 * are done (deferred.c).  Calling this again starts that worker
		 * again, which is how a loop resumes steps a crash interrupted.
		 */
		if (zdm_deferred_owed(name, "deferred") != NULL)
			zdm_deferred_wake(name, false);
		else
			zdm_migration_set_phase(name, "backfilled", NULL);
	}
	return rows;
}

Datum
zdm_backfill(PG_FUNCTION_ARGS)
{
	char	   *name;
	int32		batch = PG_ARGISNULL(1) ? 1000 : PG_GETARG_INT32(1);
	int64		rows;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call zdm.backfill('<name>', <batch>), or zdm.backfill(<batch>) for every migration.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, "zdm.backfill");
	check_batch(name, batch);
	SPI_connect();
	rows = zdm_backfill_batch(name, batch);
	SPI_finish();
	PG_RETURN_INT64(rows);
}

/* One batch of every migration that still has rows to convert. */
Datum
zdm_backfill_all(PG_FUNCTION_ARGS)
{
	int32		batch = PG_ARGISNULL(0) ? 1000 : PG_GETARG_INT32(0);
	int64		total = 0;
	List	   *names = NIL;
	ListCell   *lc;

	check_batch(NULL, batch);
	SPI_connect();
	zdm_state_query("SELECT name FROM zdm.migrations WHERE phase IN ('expanded', 'backfilling')"
					" ORDER BY expanded_at, name", true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
		names = lappend(names, SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1));
	foreach(lc, names)
	{
		ZdmMigration m;

		/* Other roles' migrations are theirs to backfill. */
		if (zdm_migration_fetch(lfirst(lc), false, &m) && zdm_may_act(&m))
			total += zdm_backfill_batch(lfirst(lc), batch);
	}
	SPI_finish();
	PG_RETURN_INT64(total);
}

/*
 * Count the rows of a migration's tables whose columns disagree.  The
 * predicates hold the migration's up/down: they run as its author.
 */
int64
zdm_verify_migration(const ZdmMigration *m)
{
	const char *name = m->name;
	List	   *tables = zdm_plan_tables(name, m->plan);
	int64		total = 0;
	ListCell   *lc;
	ZdmAs		as;

	zdm_as_author_push(&as, m, zdm_plan_search_path(name, m->plan));

	foreach(lc, tables)
	{
		PlanTable  *pt = lfirst(lc);
		bool		isnull;
		int			rc;

		if (pt->verify == NULL)
			continue;
		rc = SPI_execute(psprintf("SELECT pg_catalog.count(*) FROM %s WHERE %s", pt->relation, pt->verify), false, 0);
		if (rc != SPI_OK_SELECT)
			elog(ERROR, "zdm: verify query failed: %s", SPI_result_code_string(rc));
		total += DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	}
	zdm_as_pop(&as);
	zdm_log_event(name, "verify", NULL, NULL, NULL, -1, psprintf(INT64_FORMAT " inconsistent row(s)", total));
	return total;
}

Datum
zdm_verify(PG_FUNCTION_ARGS)
{
	ZdmMigration m;
	char	   *name;
	int64		bad;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call zdm.verify('<name>').")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, "zdm.verify");
	SPI_connect();
	zdm_require_migration(name, &m, false);
	zdm_require_actor(&m, "verify");
	if (strcmp(m.phase, "contracted") == 0 || strcmp(m.phase, "rolled_back") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is %s; only one version of its columns is left to verify",
						name, strcmp(m.phase, "contracted") == 0 ? "contracted" : "rolled back"),
				 errhint("Verify runs between zdm.expand() and zdm.contract().")));
	bad = zdm_verify_migration(&m);
	SPI_finish();
	PG_RETURN_INT64(bad);
}
