/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  The background backfill: one worker per database, and a launcher.
 *
 * A backfill worker serves one database.  Each round it first flushes the
 * database's client-version counts (telemetry.c), then it loops over the migrations
 * whose backfill was handed to it (zdm.start_backfill), oldest-served
 * first, one batch at a time, each batch in its own transaction:
 *
 *	1. read the health signals (throttle.c); if one is over its threshold,
 *	   record why and hold the migration back for a while;
 *	2. run one batch (backfill.c) as the role that expanded the migration
 *	   (roles.c), so a migration's expressions never run with more rights
 *	   than the role that wrote them; under a rate limit (the migration's, or the
 *	   pace's) its rows are spread over the batch (delay.c);
 *	3. tune the batch size towards zdm.batch_time from a moving average of
 *	   the time per row (+10% / -20% at most per batch, as GitLab's
 *	   batched migrations do), then rest zdm.sleep_ratio times the batch's
 *	   working time, and hold the migration back longer if its rate limit
 *	   is below what one batch_time spreads.
 *
 * A migration held back (its rate limit, a throttle on it) does not hold
 * back the others: the worker serves those that are due, and sleeps only
 * when none is (looking again at least once a second, for new requests).
 * The sleep ratio and the pace (pace.c) are the worker's: they cap what
 * the backfill as a whole takes from the server, whichever migration's
 * batch comes next.
 *
 * A batch that fails is retried with half as many rows, down to one; a
 * single row that still fails is the offending row: the migration goes to
 * phase "failed" with the error and that row's key, and the worker moves
 * on.  Transient errors (lock timeouts, deadlocks, cancellation) are just
 * retried.  When no migration needs it, the worker exits.
 *
 * Only one worker runs per database: each holds a session advisory lock
 * (zdm's key space, sub-key 3).  A new worker that cannot get it exits;
 * an exiting worker releases it and then looks once more for work, so a
 * request committed while it was deciding to leave is never lost.
 *
 * A database's other worker, the deferred-steps worker (deferred.c: index
 * builds and the like, which may take hours), is a process of its own, so
 * that it holds up no backfill; start_worker() starts both kinds.
 *
 * zdm.start_backfill starts a worker as a dynamic background worker; it
 * first waits for the requesting transaction to end, so it starts work
 * only once that has committed, and a rollback cancels the request.  With
 * shared_preload_libraries = 'zdm', the launcher (a static worker) starts
 * both workers for every database every zdm.launcher_naptime, which resume
 * requested backfills and owed steps after a restart or a crash with no
 * one calling.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <math.h>
#include <sys/resource.h>

#include "access/genam.h"
#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/pg_database.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PGDLLEXPORT void zdm_worker_main(Datum arg);
PGDLLEXPORT void zdm_launcher_main(Datum arg);

/* What the worker knows about one migration between batches. */
typedef struct WorkItem
{
	char	   *name;
	int			batch_size;
	int			batch_time_ms;
	int			max_rows_per_sec;
	double		sleep_ratio;
	Jsonb	   *plan;
} WorkItem;

/*
 * What the worker keeps per migration: the moving average of the time per
 * row, and when its next batch may run (its rate limit and throttles hold
 * back that migration only: the worker serves the others meanwhile).
 */
typedef struct ItemState
{
	char		name[NAMEDATALEN * 2];
	double		ms_per_row;
	TimestampTz not_before;
} ItemState;

static List *item_states = NIL;

/* When the sleep ratio and the pace (pace.c) let the worker's next batch run. */
static TimestampTz worker_not_before = 0;

/* While every migration waits: how long to sleep before looking again. */
#define WAIT_LOOK_AGAIN_MS	1000

static ItemState *
item_state(const char *name)
{
	ListCell   *lc;
	ItemState  *st;
	MemoryContext old;

	foreach(lc, item_states)
	{
		st = lfirst(lc);
		if (strncmp(st->name, name, sizeof(st->name) - 1) == 0)
			return st;
	}
	old = MemoryContextSwitchTo(TopMemoryContext);
	st = palloc0(sizeof(ItemState));
	strlcpy(st->name, name, sizeof(st->name));
	st->ms_per_row = -1;
	item_states = lappend(item_states, st);
	MemoryContextSwitchTo(old);
	return st;
}

/* ms from now; 0 (not held back) for none. */
static TimestampTz
not_before(long ms)
{
	return ms > 0 ? TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms) : 0;
}

static void
hold_back(const char *name, long ms)
{
	item_state(name)->not_before = not_before(ms);
}

/* ---------- starting workers ---------- */

/*
 * Start one of a database's workers as a dynamic background worker: the
 * backfill worker (zdm_worker_main) or the deferred-steps worker
 * (zdm_steps_main, deferred.c).  wait_xid: the transaction whose end it
 * waits for before working.  report: raise an error when no worker slot
 * is free (else just return false).
 */
static bool
start_worker(const char *function, const char *name, const char *type,
			 Oid dboid, TransactionId wait_xid, bool report)
{
	BackgroundWorker w;
	BackgroundWorkerHandle *handle;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "zdm");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "%s", function);
	snprintf(w.bgw_name, BGW_MAXLEN, "%s for database %u", name, dboid);
	snprintf(w.bgw_type, BGW_MAXLEN, "%s", type);
	w.bgw_main_arg = ObjectIdGetDatum(dboid);
	memcpy(w.bgw_extra, &wait_xid, sizeof(TransactionId));

	if (RegisterDynamicBackgroundWorker(&w, &handle))
		return true;
	if (report)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIGURATION_LIMIT_EXCEEDED),
				 errmsg("could not start the %s: no background worker slot is free", name),
				 errhint("Raise max_worker_processes (a restart is needed), or run SELECT zdm.backfill(name) in a loop.")));
	return false;
}

/* Start the backfill worker of a database (see start_worker). */
bool
zdm_worker_start(Oid dboid, TransactionId wait_xid, bool report)
{
	return start_worker("zdm_worker_main", "zdm backfill worker", "zdm backfill",
						dboid, wait_xid, report);
}

/* Start the deferred-steps worker of a database (see start_worker, deferred.c). */
bool
zdm_steps_worker_start(Oid dboid, TransactionId wait_xid, bool report)
{
	return start_worker("zdm_steps_main", "zdm deferred-steps worker", "zdm deferred steps",
						dboid, wait_xid, report);
}

/*
 * Yield the CPUs to client backends: a batch (or an index build) that
 * competes with them on equal terms takes a whole core from a small
 * server, and the clients' tail latency shows it.  Lowering one's own
 * priority needs no rights.  Set once, at start: a changed zdm.worker_nice
 * applies to the next worker (raising it back would need rights the worker
 * does not have).
 */
void
zdm_worker_apply_nice(const char *what)
{
	if (zdm_worker_nice > 0 && setpriority(PRIO_PROCESS, 0, zdm_worker_nice) != 0)
		ereport(LOG,
				(errmsg("zdm %s could not lower its priority to nice %d: %m", what, zdm_worker_nice)));
}

/* ---------- the worker ---------- */

static LOCKTAG
worker_locktag(void)
{
	LOCKTAG		tag;

	SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ZDM_ADVISORY_KEYSPACE, 0, ZDM_ADVISORY_WORKER);
	return tag;
}

/*
 * The next migration to serve: of those requested and not held back, the
 * one served longest ago.  NULL with *wait_ms > 0: all are held back, look
 * again then; NULL with *wait_ms 0: none is requested.  Runs in a
 * transaction with SPI.
 */
static WorkItem *
next_item(MemoryContext cxt, long *wait_ms)
{
	WorkItem   *item;
	HeapTuple	tup = NULL;
	TupleDesc	desc;
	bool		isnull;
	Datum		d;
	MemoryContext old;
	TimestampTz now = GetCurrentTimestamp();
	TimestampTz first_due = 0;

	*wait_ms = 0;
	if (!OidIsValid(get_extension_oid("zdm", true)))
		return NULL;
	zdm_state_query("SELECT name, batch_size, batch_time_ms, max_rows_per_sec,"
					"       sleep_ratio, plan"
					"  FROM zdm.migrations"
					" WHERE worker_requested AND NOT paused AND phase IN ('expanded', 'backfilling')"
					" ORDER BY updated_at, name", false, 0);
	desc = SPI_tuptable->tupdesc;
	for (uint64 i = 0; i < SPI_processed && tup == NULL; i++)
	{
		TimestampTz due = item_state(SPI_getvalue(SPI_tuptable->vals[i], desc, 1))->not_before;

		if (due <= now)
			tup = SPI_tuptable->vals[i];
		else if (first_due == 0 || due < first_due)
			first_due = due;
	}
	if (tup == NULL)
	{
		if (first_due != 0)
			*wait_ms = Min(Max((long) ((first_due - now) / 1000), 1), WAIT_LOOK_AGAIN_MS);
		return NULL;
	}

	old = MemoryContextSwitchTo(cxt);
	item = palloc0(sizeof(WorkItem));
	item->name = SPI_getvalue(tup, desc, 1);
	/* A setting of the migration's own, else the GUC. */
	d = SPI_getbinval(tup, desc, 2, &isnull);
	item->batch_size = isnull ? zdm_batch_size : DatumGetInt32(d);
	d = SPI_getbinval(tup, desc, 3, &isnull);
	item->batch_time_ms = isnull ? zdm_batch_time_ms : DatumGetInt32(d);
	d = SPI_getbinval(tup, desc, 4, &isnull);
	item->max_rows_per_sec = isnull ? 0 : DatumGetInt32(d);
	d = SPI_getbinval(tup, desc, 5, &isnull);
	item->sleep_ratio = isnull ? zdm_sleep_ratio : DatumGetFloat4(d);
	d = SPI_getbinval(tup, desc, 6, &isnull);
	item->plan = isnull ? NULL : DatumGetJsonbPCopy(d);	/* NULL: serve() reports it */
	MemoryContextSwitchTo(old);
	return item;
}

/*
 * Write what the worker reports about a migration.  A zdm.pause() that
 * committed while the batch ran keeps its reason: the batch must not
 * report over it.
 */
static void
report(const char *name, const char *throttle, int batch_size)
{
	Oid			types[4] = {TEXTOID, TEXTOID, INT4OID, INT4OID};
	Datum		values[4];
	char		nulls[4] = {' ', throttle ? ' ' : 'n', batch_size > 0 ? ' ' : 'n', ' '};

	values[0] = CStringGetTextDatum(name);
	values[1] = throttle ? CStringGetTextDatum(throttle) : (Datum) 0;
	values[2] = Int32GetDatum(batch_size);
	values[3] = Int32GetDatum(MyProcPid);
	zdm_state_exec("UPDATE zdm.migrations SET throttle_reason = CASE WHEN paused THEN 'paused' ELSE $2 END,"
				   " batch_size = coalesce($3, batch_size), worker_pid = $4"
				   " WHERE name = $1", 4, types, values, nulls, false, 0);
}

/*
 * The next batch size: towards batch_time_ms, from the moving average of
 * the time per row, by +10% / -20% at most.
 */
static int
tune_batch(WorkItem *item, int64 rows, double ms)
{
	ItemState  *st = item_state(item->name);
	double		sample;
	double		want;
	int			size = item->batch_size;

	if (rows <= 0)
		return size;
	sample = ms / rows;
	st->ms_per_row = st->ms_per_row < 0 ? sample : 0.8 * st->ms_per_row + 0.2 * sample;
	want = item->batch_time_ms / Max(st->ms_per_row, 1e-6);
	want = Max(want, size * 0.8);
	want = Min(want, size * 1.1 + 1);
	size = (int) Min(want, (double) zdm_batch_size_max);
	return Max(size, 1);
}

static bool
transient_error(int sqlerrcode)
{
	return sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_T_R_DEADLOCK_DETECTED ||
		sqlerrcode == ERRCODE_T_R_SERIALIZATION_FAILURE ||
		sqlerrcode == ERRCODE_QUERY_CANCELED;
}

/*
 * After a failed batch: halve it, or with one row, stop the migration with
 * the error and the key of that row.  A migration whose stored plan or
 * checkpoint is malformed (data_corrupted) stops at once: no batch size
 * helps, and there is no row to blame.
 */
static void
record_failure(WorkItem *item, int batch, ErrorData *edata)
{
	StartTransactionCommand();
	SPI_connect();
	PushActiveSnapshot(GetTransactionSnapshot());
	if (transient_error(edata->sqlerrcode))
		zdm_log_event(item->name, "retry", NULL, NULL, NULL, -1, edata->message);
	else if (batch > 1 && edata->sqlerrcode != ERRCODE_DATA_CORRUPTED)
	{
		report(item->name, NULL, Max(batch / 2, 1));
		zdm_log_event(item->name, "bisect", NULL, NULL, NULL, -1,
					  psprintf("batch of %d failed (%s); retrying with %d", batch, edata->message,
							   Max(batch / 2, 1)));
	}
	else
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		values[3];
		char		nulls[3] = {' ', ' ', zdm_backfill_failed_key ? ' ' : 'n'};

		values[0] = CStringGetTextDatum(item->name);
		values[1] = CStringGetTextDatum(edata->message);
		values[2] = zdm_backfill_failed_key ? CStringGetTextDatum(zdm_backfill_failed_key) : (Datum) 0;
		zdm_state_exec("UPDATE zdm.migrations SET failed_key = $3, worker_requested = false"
					   " WHERE name = $1", 3, types, values, nulls, false, 0);
		zdm_migration_set_phase(item->name, "failed", edata->message);
		if (zdm_backfill_failed_key)
			ereport(LOG,
					(errmsg("zdm: migration \"%s\" failed at key (%s): %s", item->name,
							zdm_backfill_failed_key, edata->message)));
		else
			ereport(LOG,
					(errmsg("zdm: migration \"%s\" failed: %s", item->name, edata->message)));
	}
	SPI_finish();
	PopActiveSnapshot();
	CommitTransactionCommand();
}

/* The rate a migration's rows may go at, in rows/s (0: no limit). */
static double
rate_of(WorkItem *item, double paced)
{
	double		rate = item->max_rows_per_sec;

	if (paced > 0 && (rate <= 0 || paced < rate))
		rate = paced;
	return Max(rate, 0);
}

/*
 * Serve one migration for one round: throttle or batch.  Sets when it, and
 * for the pace the worker, may run the next batch.
 */
static void
serve(WorkItem *item)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *throttle;
	int64		rows = 0;
	double		ms = 0;
	int			next_size;
	long		sleep_ms;
	TimestampTz start;
	char	   *pace_reason;
	double		paced;
	double		rate;
	double		slept_ms;

	/*
	 * (in the transaction next_item() ran in)  The plan is checked before
	 * the throttle reads its tables: a malformed one fails the migration
	 * with a clear error (record_failure).
	 */
	(void) zdm_plan_tables(item->name, item->plan);
	throttle = zdm_throttle_reason(item->name, item->plan);
	if (throttle)
	{
		report(item->name, throttle, 0);
		pgstat_report_activity(STATE_IDLE, psprintf("zdm: %s throttled: %s", item->name, throttle));
		hold_back(item->name, zdm_throttle_interval_ms);
		return;
	}

	/* A pause while the clients are measured without a batch (pace.c). */
	sleep_ms = zdm_pace_before_batch(&pace_reason);
	if (sleep_ms > 0)
	{
		report(item->name, pace_reason, 0);
		pgstat_report_activity(STATE_IDLE, psprintf("zdm: %s paused: %s", item->name, pace_reason));
		worker_not_before = not_before(sleep_ms);
		return;
	}

	/*
	 * The rate the batch's rows go at, spread over the batch (delay.c): the
	 * lower of the migration's limit and the pace's.  Never slower than the
	 * batch size over batch_time, so that a batch holds its row locks, and
	 * the worker, no longer than its target time; the rest of a lower rate
	 * is a pause after the batch, in which the worker can serve the
	 * database's other migrations.  The next batch is cut to the rate times
	 * batch_time, so such a pause follows only a change of rate.
	 */
	rate = rate_of(item, zdm_pace_rate());
	if (rate > 0)
		rate = Max(rate, item->batch_size * 1000.0 / Max(item->batch_time_ms, 1));

	pgstat_report_activity(STATE_RUNNING,
						   psprintf("zdm: backfilling \"%s\", batch of %d rows", item->name, item->batch_size));
	start = GetCurrentTimestamp();
	/* (the batch runs as the migration's author: backfill.c, roles.c) */
	zdm_delay_begin(rate);
	rows = zdm_backfill_batch(item->name, item->batch_size);
	slept_ms = zdm_delay_end();
	ms = zdm_ms_since(start);

	next_size = tune_batch(item, rows, ms);
	paced = zdm_pace_after_batch(rows, &pace_reason);
	/* Under a rate, no more rows than one batch_time of it. */
	rate = rate_of(item, paced);
	if (rate > 0)
		next_size = Max(1, Min(next_size, (int) (rate * item->batch_time_ms / 1000.0)));
	report(item->name, pace_reason, next_size);

	/*
	 * The migration's rate limit holds back this migration; the sleep ratio
	 * (the share of the server the backfill may take, so counted on the
	 * batch's work, not its delays) and the pace's rate hold back the
	 * worker, whichever migration comes next.
	 */
	hold_back(item->name, rows > 0 && item->max_rows_per_sec > 0 ?
			  (long) (rows * 1000.0 / item->max_rows_per_sec - ms) : 0);
	sleep_ms = (long) ((ms - slept_ms) * item->sleep_ratio);
	if (paced > 0)
		sleep_ms = Max(sleep_ms, (long) (rows * 1000.0 / paced - ms));
	worker_not_before = not_before(rows > 0 ? sleep_ms : 0);
	MemoryContextSwitchTo(cxt);
}

/*
 * Sleep ms, whatever sets the latch meanwhile: a new process starts with
 * its latch set, and a reload or a signal sets it again; each would
 * otherwise cut a rate limit's pause short.
 */
static void
worker_sleep(long ms)
{
	TimestampTz deadline = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), ms);

	while (ms > 0)
	{
		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}
		ms = (long) ((deadline - GetCurrentTimestamp()) / 1000);
	}
}

/* One round: pick a migration and serve it.  false: nothing to do. */
static bool
worker_round(MemoryContext round_cxt)
{
	WorkItem   *volatile item = NULL;
	volatile long wait_ms = 0;
	volatile int batch = 0;
	long		sleep_ms;
	TimestampTz now;

	MemoryContextReset(round_cxt);
	PG_TRY();
	{
		/*
		 * Client-version counts from shared memory into zdm.api_traffic, in
		 * a transaction of their own: a failing batch must not lose them.
		 */
		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		if (OidIsValid(get_extension_oid("zdm", true)))
			zdm_telemetry_flush();
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();

		StartTransactionCommand();
		SPI_connect();
		PushActiveSnapshot(GetTransactionSnapshot());
		{
			long		wait;

			item = next_item(round_cxt, &wait);
			wait_ms = wait;
		}
		if (item != NULL)
		{
			batch = item->batch_size;
			/* A failure's key is this round's, never an earlier one's. */
			if (zdm_backfill_failed_key)
				pfree(zdm_backfill_failed_key);
			zdm_backfill_failed_key = NULL;
			serve(item);
		}
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_activity(STATE_IDLE, NULL);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		/* One task's error is caught once, recorded, and the worker goes on. */
		MemoryContextSwitchTo(round_cxt);
		edata = CopyErrorData();
		(void) zdm_delay_end();
		EmitErrorReport();
		FlushErrorState();
		AbortOutOfAnyTransaction();
		pgstat_report_activity(STATE_IDLE, NULL);
		if (item == NULL)
			proc_exit(1);		/* not a migration's fault: zdm's state is unreadable */
		record_failure(item, batch, edata);
		hold_back(item->name, transient_error(edata->sqlerrcode) ? zdm_throttle_interval_ms : 0);
	}
	PG_END_TRY();

	if (item == NULL && wait_ms == 0)
		return false;
	/* All migrations held back: until the first is due (or a look again). */
	sleep_ms = item == NULL ? wait_ms : 0;
	now = GetCurrentTimestamp();
	if (worker_not_before > now)
		sleep_ms = Max(sleep_ms, (long) ((worker_not_before - now) / 1000));
	worker_sleep(sleep_ms);
	return true;
}

void
zdm_worker_main(Datum arg)
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
	pgstat_report_appname("zdm backfill");

	/*
	 * The worker connects as the bootstrap superuser: its own queries (the
	 * health signals, the flush) must resolve nothing in a schema that
	 * other roles can create objects in.
	 */
	zdm_pin_search_path();
	round_cxt = AllocSetContextCreate(TopMemoryContext, "zdm worker round", ALLOCSET_DEFAULT_SIZES);

	zdm_worker_apply_nice("backfill worker");

	/* Work only once the request is committed (or gone, if rolled back). */
	if (TransactionIdIsValid(wait_xid))
	{
		StartTransactionCommand();
		pgstat_report_activity(STATE_RUNNING, "zdm: waiting for the requesting transaction to end");
		XactLockTableWait(wait_xid, NULL, NULL, XLTW_None);
		CommitTransactionCommand();
	}

	tag = worker_locktag();
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
			if (!worker_round(round_cxt))
				break;
		}

		/* Leave, then look once more: a request may have come meanwhile. */
		LockRelease(&tag, ExclusiveLock, true);
		if (!worker_round(round_cxt))
			break;
	}
	proc_exit(0);
}

/* ---------- the launcher ---------- */

void
zdm_worker_register_launcher(void)
{
	BackgroundWorker w;

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = 10;
	snprintf(w.bgw_library_name, BGW_MAXLEN, "zdm");
	snprintf(w.bgw_function_name, BGW_MAXLEN, "zdm_launcher_main");
	snprintf(w.bgw_name, BGW_MAXLEN, "zdm launcher");
	snprintf(w.bgw_type, BGW_MAXLEN, "zdm launcher");
	RegisterBackgroundWorker(&w);
}

/* Databases a worker may connect to. */
static List *
launcher_databases(void)
{
	List	   *dbs = NIL;
	Relation	rel;
	TableScanDesc scan;
	HeapTuple	tup;

	StartTransactionCommand();
	rel = table_open(DatabaseRelationId, AccessShareLock);
	scan = table_beginscan_catalog(rel, 0, NULL);
	while ((tup = heap_getnext(scan, ForwardScanDirection)) != NULL)
	{
		Form_pg_database db = (Form_pg_database) GETSTRUCT(tup);

		if (db->datallowconn && !db->datistemplate)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			dbs = lappend_oid(dbs, db->oid);
			MemoryContextSwitchTo(old);
		}
	}
	table_endscan(scan);
	table_close(rel, AccessShareLock);
	CommitTransactionCommand();
	return dbs;
}

void
zdm_launcher_main(Datum arg)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	BackgroundWorkerInitializeConnection(NULL, NULL, 0);
	pgstat_report_appname("zdm launcher");

	for (;;)
	{
		List	   *dbs;
		ListCell   *lc;

		CHECK_FOR_INTERRUPTS();
		if (ConfigReloadPending)
		{
			ConfigReloadPending = false;
			ProcessConfigFile(PGC_SIGHUP);
		}

		/*
		 * A backfill worker and a deferred-steps worker per database: each
		 * exits at once where zdm is not installed or nothing is owed, and
		 * where one already runs.
		 */
		dbs = launcher_databases();
		foreach(lc, dbs)
		{
			(void) zdm_worker_start(lfirst_oid(lc), InvalidTransactionId, false);
			(void) zdm_steps_worker_start(lfirst_oid(lc), InvalidTransactionId, false);
		}
		list_free(dbs);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 zdm_launcher_naptime_s * 1000L, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
	}
}
