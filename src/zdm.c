/*-------------------------------------------------------------------------
 *
 * zdm.c
 *	  Module entry point: GUCs and the hooks every other file relies on.
 *
 * zdm works without shared_preload_libraries: the library is loaded by the
 * first call of one of its functions (or by the dual-write trigger), and
 * _PG_init defines the GUCs then.  Every GUC lives under the reserved
 * prefix "zdm.".
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "fmgr.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

PG_MODULE_MAGIC;

int			zdm_lock_timeout_ms = 200;
int			zdm_lock_budget_ms = 30000;
int			zdm_lock_backoff_max_ms = 2000;

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
		zdm_backfill_bypass = false;
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

	MarkGUCPrefixReserved("zdm");

	RegisterXactCallback(zdm_xact_callback, NULL);
	zdm_trigger_init();
}

/* Milliseconds elapsed since start. */
double
zdm_ms_since(TimestampTz start)
{
	return (double) (GetCurrentTimestamp() - start) / 1000.0;
}
