/*-------------------------------------------------------------------------
 *
 * control.c
 *	  Handing a backfill to the background worker, and steering it live:
 *	  zdm.start_backfill(), zdm.pause(), zdm.resume(), zdm.tune().
 *
 * These only write the migration's row (in the caller's transaction, as
 * zdm's owner: roles.c) and start the database's worker, which waits for
 * that transaction to end.  Only the migration's author, or the owner of
 * its tables, may call them on it.  A migration runner may call them
 * inside its own transaction: they never
 * wait for the worker, and a rollback takes the request back.  The worker
 * reads the row before every batch, so a change takes effect at the next
 * batch.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(zdm_start_backfill);
PG_FUNCTION_INFO_V1(zdm_pause);
PG_FUNCTION_INFO_V1(zdm_resume);
PG_FUNCTION_INFO_V1(zdm_tune);

/* Settings given to start_backfill or tune; -1 = not given. */
typedef struct Settings
{
	int			batch_size;
	int			batch_time_ms;
	int			max_rows_per_sec;
	double		sleep_ratio;
} Settings;

static char *
name_arg(FunctionCallInfo fcinfo, const char *func)
{
	char	   *name;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call %s('<name>').", func)));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, func);
	return name;
}

/* Arguments 1..4 (batch_size, batch_time, max_rows_per_sec, sleep_ratio), checked. */
static Settings
settings_args(FunctionCallInfo fcinfo, const char *name)
{
	Settings	s = {-1, -1, -1, -1};

	if (!PG_ARGISNULL(1))
	{
		s.batch_size = PG_GETARG_INT32(1);
		if (s.batch_size <= 0 || s.batch_size > 10000000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": batch_size must be between 1 and 10000000, not %d",
							name, s.batch_size),
					 errhint("Batches of 1000 to 50000 rows suit most tables; the worker tunes the size from there.")));
	}
	if (!PG_ARGISNULL(2))
	{
		Interval   *iv = PG_GETARG_INTERVAL_P(2);
		double		ms = (iv->time / 1000.0) + (iv->day + iv->month * (double) DAYS_PER_MONTH) * 86400000.0;

		if (ms < 1 || ms > 60000)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": batch_time must be between 1 ms and 1 minute", name),
					 errhint("A batch holds its rows' locks for its whole duration; 100 to 500 ms is typical.")));
		s.batch_time_ms = (int) ms;
	}
	if (!PG_ARGISNULL(3))
	{
		s.max_rows_per_sec = PG_GETARG_INT32(3);
		if (s.max_rows_per_sec <= 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": max_rows_per_sec must be positive, not %d",
							name, s.max_rows_per_sec),
					 errhint("Leave it NULL for no rate limit.")));
	}
	if (!PG_ARGISNULL(4))
	{
		s.sleep_ratio = PG_GETARG_FLOAT4(4);
		if (isnan(s.sleep_ratio) || s.sleep_ratio < 0 || s.sleep_ratio > 100)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": sleep_ratio must be between 0 and 100", name),
					 errhint("0 runs batches back to back; 1 sleeps as long as each batch took.")));
	}
	return s;
}

/* Store the given settings on the migration's row. */
static void
settings_save(const char *name, Settings s)
{
	Oid			types[5] = {TEXTOID, INT4OID, INT4OID, INT4OID, FLOAT4OID};
	Datum		values[5];
	char		nulls[5] = {' ', ' ', ' ', ' ', ' '};

	values[0] = CStringGetTextDatum(name);
	values[1] = Int32GetDatum(s.batch_size);
	values[2] = Int32GetDatum(s.batch_time_ms);
	values[3] = Int32GetDatum(s.max_rows_per_sec);
	values[4] = Float4GetDatum((float4) s.sleep_ratio);
	zdm_state_exec("UPDATE zdm.migrations SET"
				   " batch_size = CASE WHEN $2 > 0 THEN $2 ELSE batch_size END,"
				   " batch_time_ms = CASE WHEN $3 > 0 THEN $3 ELSE batch_time_ms END,"
				   " max_rows_per_sec = CASE WHEN $4 > 0 THEN $4 ELSE max_rows_per_sec END,"
				   " sleep_ratio = CASE WHEN $5 >= 0 THEN $5 ELSE sleep_ratio END,"
				   " updated_at = clock_timestamp()"
				   " WHERE name = $1", 5, types, values, nulls, false, 0);
}

static char *
settings_text(Settings s)
{
	return psprintf("batch_size=%d batch_time_ms=%d max_rows_per_sec=%d sleep_ratio=%g",
					s.batch_size, s.batch_time_ms, s.max_rows_per_sec, s.sleep_ratio);
}

/* A migration that a background backfill can still serve, or an error. */
static void
require_backfillable(ZdmMigration *m, const char *what)
{
	if (strcmp(m->phase, "contracted") == 0 || strcmp(m->phase, "rolled_back") == 0)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" is %s; there is no backfill to %s",
						m->name, strcmp(m->phase, "contracted") == 0 ? "contracted" : "rolled back", what),
				 errhint("Backfill runs between zdm.expand() and zdm.contract().")));
}

/* A backfilled migration needs no worker: say so (NOTICE), true. */
static bool
already_backfilled(ZdmMigration *m)
{
	if (strcmp(m->phase, "backfilled") != 0)
		return false;
	ereport(NOTICE, (errmsg("migration \"%s\" is already backfilled", m->name)));
	return true;
}

static void
set_flags(const char *name, const char *assignments)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(name)};

	zdm_state_exec(psprintf("UPDATE zdm.migrations SET %s, updated_at = clock_timestamp()"
				   " WHERE name = $1", assignments),
				   1, types, values, NULL, false, 0);
}

Datum
zdm_start_backfill(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, "zdm.start_backfill");
	Settings	s = settings_args(fcinfo, name);
	ZdmMigration m;

	SPI_connect();
	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "start the backfill of");
	require_backfillable(&m, "start");
	if (already_backfilled(&m))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	/* Started again after a failure: go on from the checkpoint. */
	if (strcmp(m.phase, "failed") == 0)
		zdm_migration_set_phase(name, "backfilling", NULL);
	set_flags(name, "worker_requested = true, paused = false, failed_key = NULL,"
			  " throttle_reason = NULL");
	settings_save(name, s);
	zdm_log_event(name, "start_backfill", NULL, NULL, NULL, -1, settings_text(s));
	SPI_finish();

	/* The worker waits for this transaction before it reads the request. */
	(void) zdm_worker_start(MyDatabaseId, GetTopTransactionId(), true);
	PG_RETURN_BOOL(true);
}

Datum
zdm_pause(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, "zdm.pause");
	ZdmMigration m;
	bool		requested,
				paused;

	SPI_connect();
	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "pause");
	require_backfillable(&m, "pause");
	if (already_backfilled(&m))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	zdm_worker_flags(name, &requested, &paused);
	if (!requested)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\" has no background backfill to pause", name),
				 errhint("Start one with zdm.start_backfill('%s').", name)));
	if (paused)
	{
		ereport(NOTICE, (errmsg("migration \"%s\" is already paused", name)));
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	set_flags(name, "paused = true, throttle_reason = 'paused'");
	zdm_log_event(name, "pause", NULL, NULL, NULL, -1, NULL);
	SPI_finish();
	PG_RETURN_BOOL(true);
}

Datum
zdm_resume(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, "zdm.resume");
	ZdmMigration m;
	bool		requested,
				paused;

	SPI_connect();
	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "resume");
	require_backfillable(&m, "resume");
	if (already_backfilled(&m))
	{
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	zdm_worker_flags(name, &requested, &paused);
	if (!requested || !paused)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" is not paused", name),
				 requested ? 0 : errhint("Start its backfill with zdm.start_backfill('%s').", name)));
		SPI_finish();
		PG_RETURN_BOOL(false);
	}
	set_flags(name, "paused = false, throttle_reason = NULL");
	zdm_log_event(name, "resume", NULL, NULL, NULL, -1, NULL);
	SPI_finish();
	(void) zdm_worker_start(MyDatabaseId, GetTopTransactionId(), true);
	PG_RETURN_BOOL(true);
}

Datum
zdm_tune(PG_FUNCTION_ARGS)
{
	char	   *name = name_arg(fcinfo, "zdm.tune");
	Settings	s = settings_args(fcinfo, name);
	ZdmMigration m;

	if (s.batch_size < 0 && s.batch_time_ms < 0 && s.max_rows_per_sec < 0 && s.sleep_ratio < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": zdm.tune() needs at least one setting", name),
				 errhint("Name one, e.g. zdm.tune('%s', batch_size => 5000) or max_rows_per_sec => 20000.", name)));
	SPI_connect();
	zdm_require_migration(name, &m, true);
	zdm_require_actor(&m, "tune");
	require_backfillable(&m, "tune");
	settings_save(name, s);
	zdm_log_event(name, "tune", NULL, NULL, NULL, -1, settings_text(s));
	SPI_finish();
	PG_RETURN_BOOL(true);
}
