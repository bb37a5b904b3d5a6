/*-------------------------------------------------------------------------
 *
 * zdm.c
 *	  Module entry point: GUCs and the hooks every other file relies on.
 *
 * zdm works without shared_preload_libraries: the library is loaded by the
 * first call of one of its functions (or by the dual-write trigger), and
 * _PG_init defines the GUCs then.  Loaded by shared_preload_libraries, it
 * also registers the launcher (worker.c), which resumes backfills after a
 * restart with no one calling anything.  Every GUC lives under the
 * reserved prefix "zdm.".
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <limits.h>

#include "access/xact.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

/*
 * Names of the migrations expanded by the current transaction: contract
 * refuses them.  Kept in memory, not as a stored xid, which would mean
 * nothing after pg_dump and restore into another cluster.
 */
List	   *zdm_expanded_in_xact = NIL;

int			zdm_lock_timeout_ms = 200;
int			zdm_lock_budget_ms = 30000;
int			zdm_lock_backoff_max_ms = 2000;
int			zdm_batch_size = 1000;
int			zdm_batch_size_max = 100000;
int			zdm_batch_time_ms = 200;
double		zdm_sleep_ratio = 0.1;
int			zdm_worker_nice = 10;
int			zdm_throttle_replica_lag_ms = 1500;
int			zdm_throttle_xact_age_s = 600;
int			zdm_throttle_lock_waiters = 1;
double		zdm_throttle_commit_latency = 1.25;
char	   *zdm_throttle_query = NULL;
int			zdm_throttle_interval_ms = 1000;
int			zdm_launcher_naptime_s = 10;
char	   *zdm_api_version = NULL;
double		zdm_contract_threshold = 0.01;
int			zdm_gate_window_min = 1440;
int			zdm_gate_undeclared = 0;
int			zdm_throttle_slot_lag_kb = 64 * 1024;
char	   *zdm_subscribers_expanded = NULL;
bool		zdm_replication_check = true;

static const struct config_enum_entry gate_undeclared_options[] = {
	{"ignore", 0, false},
	{"old", 1, false},
	{NULL, 0, false}
};

void		_PG_init(void);

/*
 * The backfill bypasses the dual-write trigger for its own UPDATEs.  Should
 * the backfill fail half-way, the flag must not outlive its transaction.
 */
static void
zdm_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_ABORT || event == XACT_EVENT_COMMIT ||
		event == XACT_EVENT_PARALLEL_ABORT || event == XACT_EVENT_PREPARE)
	{
		zdm_backfill_bypass = NULL;
		zdm_expanded_in_xact = NIL;	/* lived in TopTransactionContext */
	}
}

/* Remember that this transaction expanded a migration. */
void
zdm_note_expanded(const char *name)
{
	MemoryContext old = MemoryContextSwitchTo(TopTransactionContext);

	zdm_expanded_in_xact = lappend(zdm_expanded_in_xact, pstrdup(name));
	MemoryContextSwitchTo(old);
}

/* Did this transaction expand the migration? */
bool
zdm_expanded_here(const char *name)
{
	ListCell   *lc;

	foreach(lc, zdm_expanded_in_xact)
		if (strcmp((char *) lfirst(lc), name) == 0)
			return true;
	return false;
}

void
_PG_init(void)
{
	DefineCustomIntVariable("zdm.lock_timeout",
							"Longest time one zdm lock request may wait in a lock queue.",
							"Client queries that arrive behind a waiting zdm statement wait "
							"at most this long; zdm then backs off and retries.",
							&zdm_lock_timeout_ms,
							200, 1, 500,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.lock_budget",
							"Total time zdm keeps retrying to acquire the locks of one step.",
							"When the budget is spent the step fails and changes nothing.",
							&zdm_lock_budget_ms,
							30000, 0, 3600 * 1000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.lock_backoff_max",
							"Longest pause between two attempts to acquire a lock.",
							NULL,
							&zdm_lock_backoff_max_ms,
							2000, 1, 60000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.batch_size",
							"Rows in the background worker's first batch of a migration.",
							"The worker then tunes the size towards zdm.batch_time.",
							&zdm_batch_size,
							1000, 1, 10000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.batch_size_max",
							"Largest batch the background worker tunes a migration to.",
							NULL,
							&zdm_batch_size_max,
							100000, 1, 10000000,
							PGC_USERSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.batch_time",
							"Target duration of one backfill batch.",
							"Short batches hold row locks briefly; the worker grows or "
							"shrinks batches to stay near this time.",
							&zdm_batch_time_ms,
							200, 1, 60000,
							PGC_USERSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomRealVariable("zdm.sleep_ratio",
							 "Pause after each backfill batch, as a multiple of the batch's duration.",
							 "0.1 lets the worker use at most about 90% of one CPU; 1 about half.",
							 &zdm_sleep_ratio,
							 0.1, 0.0, 100.0,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.worker_nice",
							"Scheduling priority (nice value) of the background backfill worker.",
							"Above 0, the operating system runs client backends first when the "
							"CPUs are busy, and the worker on what they leave; 0 competes equally.",
							&zdm_worker_nice,
							10, 0, 19,
							PGC_SIGHUP, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.throttle_replica_lag",
							"Pause the backfill while a standby's replay lag exceeds this (-1: never).",
							NULL,
							&zdm_throttle_replica_lag_ms,
							1500, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.throttle_slot_lag",
							"Pause the backfill while a replication slot is this far behind, or retains this much WAL (-1: never).",
							"An active logical slot counts from what its subscriber confirmed, any other slot "
							"(an inactive one, a physical one) from the WAL it retains.",
							&zdm_throttle_slot_lag_kb,
							64 * 1024, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_KB,
							NULL, NULL, NULL);

	DefineCustomStringVariable("zdm.subscribers_expanded",
							   "On a publisher: the logical replication slots whose subscribers have expanded the migration ('*': every slot).",
							   "zdm.expand() of a published table is refused while this database streams to a slot not named here.",
							   &zdm_subscribers_expanded,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomBoolVariable("zdm.replication_check",
							 "Check migration steps against logical replication (the publisher's expand, a subscriber's contract and rollback).",
							 "Off: those steps go ahead with a warning, for a publisher zdm cannot reach.",
							 &zdm_replication_check,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.throttle_xact_age",
							"Pause the backfill while a transaction older than this holds back the xmin horizon (-1: never).",
							"Rows the backfill rewrites cannot be vacuumed while such a transaction lasts.",
							&zdm_throttle_xact_age_s,
							600, -1, INT_MAX,
							PGC_SUSET, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.throttle_lock_waiters",
							"Pause the backfill while at least this many sessions wait for locks on its tables (0: never).",
							NULL,
							&zdm_throttle_lock_waiters,
							1, 0, INT_MAX,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomRealVariable("zdm.throttle_commit_latency",
							 "Slow the backfill down while the clients' commits take more than this "
							 "many times as long as without it (0: never; needs shared_preload_libraries).",
							 "The worker measures the clients' mean commit time in short pauses and "
							 "while it works, and lowers or raises its own rate limit to match.",
							 &zdm_throttle_commit_latency,
							 1.25, 0, 100,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("zdm.throttle_query",
							   "A query run before each backfill batch; the backfill pauses while it returns true.",
							   "Example: SELECT count(*) > 50 FROM pg_stat_activity WHERE state = 'active'.",
							   &zdm_throttle_query,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.throttle_interval",
							"How often a throttled backfill checks its signals again.",
							NULL,
							&zdm_throttle_interval_ms,
							1000, 10, 3600 * 1000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.launcher_naptime",
							"How often the launcher looks for migrations to backfill (needs shared_preload_libraries).",
							NULL,
							&zdm_launcher_naptime_s,
							10, 1, 3600,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("zdm.api_version",
							   "The API version this session's client speaks (see zdm.use_version()).",
							   "The dual-write trigger follows it, and with shared_preload_libraries "
							   "every statement is counted under it.",
							   &zdm_api_version,
							   "",
							   PGC_USERSET, 0,
							   NULL, NULL, NULL);

	DefineCustomRealVariable("zdm.contract_threshold",
							 "Share of requests from the API version a migration retires at or above which contract is refused.",
							 NULL,
							 &zdm_contract_threshold,
							 0.01, 0.0, 1.0,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomIntVariable("zdm.gate_window",
							"How far back the contract gate looks at client-version traffic.",
							NULL,
							&zdm_gate_window_min,
							1440, 1, 60 * 24 * 366,
							PGC_SUSET, GUC_UNIT_MIN,
							NULL, NULL, NULL);

	DefineCustomEnumVariable("zdm.gate_undeclared",
							 "How the contract gate counts traffic that declared no API version.",
							 "ignore: left out of the share; old: counted as the retired version's.",
							 &zdm_gate_undeclared,
							 0, gate_undeclared_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomBoolVariable("zdm.inline_updates",
							 "Plan the dual-write conversion into UPDATE statements instead of firing the trigger.",
							 "Spares UPDATEs of a table being migrated the row lock PostgreSQL takes "
							 "before any BEFORE ROW UPDATE trigger; the result is the same.",
							 &zdm_inline_updates,
							 true,
							 PGC_USERSET, 0,
							 NULL, NULL, NULL);

	zdm_telemetry_init();
	zdm_pace_init();

	MarkGUCPrefixReserved("zdm");

	if (process_shared_preload_libraries_in_progress)
		zdm_worker_register_launcher();

	RegisterXactCallback(zdm_xact_callback, NULL);
	zdm_trigger_init();
	zdm_inline_init();
}

/* Milliseconds elapsed since start. */
double
zdm_ms_since(TimestampTz start)
{
	return (double) (GetCurrentTimestamp() - start) / 1000.0;
}
