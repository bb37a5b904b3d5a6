/*-------------------------------------------------------------------------
 *
 * wait.c
 *	  zdm.wait_expanded(): the outcome of an expand this session skipped.
 *
 * zdm.expand() never waits: when another session holds the migration's
 * advisory lock it returns false at once.  A deployer that got false does
 * not know yet whether the migration exists: the other session may still
 * commit, or fail and roll back, and then nothing is expanded.  So the
 * deployer calls zdm.wait_expanded(name, timeout), which
 *
 *	1. waits until no other session holds the migration's lock, that is
 *	   until the transaction that was expanding it has ended, and
 *	2. reads the migration's committed state: a phase other than
 *	   rolled_back is returned; no row, or rolled_back, is an error
 *	   (serialization_failure, the code of "run your transaction again")
 *	   saying the expand was rolled back and should be run again.
 *
 * How it waits: GetLockConflicts() lists the holders of the lock as
 * virtual transaction ids, and VirtualXactLock() waits for one to end, as
 * CREATE INDEX CONCURRENTLY waits for older transactions: a ShareLock
 * request on the holder's own virtual-transaction lock, which only the
 * end of that transaction releases and which no other session ever asks
 * for in a conflicting mode.  So the waiter holds no table lock and
 * nothing queues behind it; pg_locks and pg_blocking_pids() show it
 * waiting for the expanding session.  The timeout is lock_timeout for that
 * one request, in a subtransaction (as in locks.c), whose lock-timeout
 * error becomes zdm's own.
 *
 * The migration's row is read with a new snapshot, which needs READ
 * COMMITTED: a REPEATABLE READ transaction would go on seeing the state of
 * before the other session's commit, so it is refused.
 *
 * It is SQL-callable C rather than PL/pgSQL because PL/pgSQL cannot wait
 * for another session's transaction without taking a lock that others
 * queue behind, nor list the holders of zdm's advisory lock without
 * reading all of pg_locks.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "datatype/timestamp.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/lock.h"
#include "storage/proc.h"
#include "storage/sinvaladt.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

PG_FUNCTION_INFO_V1(zdm_wait_expanded);

/* The PID of a lock holder's backend, 0 for a prepared transaction. */
static int
holder_pid(VirtualTransactionId vxid)
{
	PGPROC	   *proc = BackendIdGetProc(vxid.backendId);

	return proc ? proc->pid : 0;
}

typedef struct VxidWait
{
	VirtualTransactionId vxid;
	int			ms;
} VxidWait;

static bool
vxid_wait(void *arg)
{
	VxidWait   *w = arg;
	int			level = NewGUCNestLevel();
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", Max(w->ms, 1));
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	(void) VirtualXactLock(w->vxid, true);
	zdm_guc_pop(level);
	return true;
}

/*
 * Wait at most ms for the transaction vxid to end.  True when it ended,
 * false when the time ran out.  Any error other than the lock timeout
 * (a cancel, statement_timeout) propagates.
 */
static bool
wait_for_transaction(VirtualTransactionId vxid, int ms)
{
	VxidWait	w = {vxid, ms};

	return zdm_try_in_subtransaction(vxid_wait, &w);
}

/* The interval as microseconds, refusing what cannot be a timeout. */
static int64
timeout_usecs(const char *name, Interval *span)
{
	int64		days = (int64) span->month * DAYS_PER_MONTH + span->day;
	int64		us = span->time;

	/* a year at most: far beyond any deployment, and no overflow */
	if (days < 0 || us < 0)
		us = -1;
	else
		us = Min(us + Min(days, 366) * USECS_PER_DAY, 366 * USECS_PER_DAY);
	if (us < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": timeout must not be negative", name),
				 errhint("Pass an interval such as '60s'; '0' only looks.")));
	return us;
}

/*
 * zdm.wait_expanded(name text, timeout interval DEFAULT '60s') -> text
 * See the file header.
 */
Datum
zdm_wait_expanded(PG_FUNCTION_ARGS)
{
	char	   *name;
	int64		timeout_us;
	TimestampTz deadline;
	LOCKTAG		tag;
	int			waited_for = -1;	/* PID of the holder we waited for */
	ZdmMigration m;
	bool		found;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration name must not be null"),
				 errhint("Call zdm.wait_expanded('<name>') after zdm.expand('<name>', ...) returned false.")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	zdm_check_name(name, "zdm.wait_expanded");
	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("migration \"%s\": timeout must not be null", name),
				 errhint("Pass an interval such as '60s', or leave it out.")));
	timeout_us = timeout_usecs(name, PG_GETARG_INTERVAL_P(1));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": zdm.wait_expanded() cannot run in a REPEATABLE READ or SERIALIZABLE transaction", name),
				 errdetail("Its snapshot would not show what the other session committed."),
				 errhint("Call it in a READ COMMITTED transaction (the default).")));

	deadline = GetCurrentTimestamp() + timeout_us;
	zdm_migration_locktag(name, &tag);

	/* 1. until no other session holds the migration's lock */
	for (;;)
	{
		VirtualTransactionId *holders;
		int			n;
		int64		left_us;

		CHECK_FOR_INTERRUPTS();
		holders = GetLockConflicts(&tag, ExclusiveLock, &n);
		if (n == 0)
			break;
		waited_for = holder_pid(holders[0]);
		left_us = deadline - GetCurrentTimestamp();
		if (left_us <= 0 ||
			!wait_for_transaction(holders[0], (int) Min(left_us / 1000, (int64) INT_MAX)))
		{
			if (waited_for > 0)
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("migration \"%s\" is still being expanded by another session after %.0f ms",
								name, (double) timeout_us / 1000.0),
						 errdetail("The session with PID %d holds the migration's lock; its transaction has not ended.",
								   waited_for),
						 errhint("Call zdm.wait_expanded() again, with a longer timeout, or see what PID %d does in pg_stat_activity.",
								 waited_for)));
			else
				ereport(ERROR,
						(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
						 errmsg("migration \"%s\" is still being expanded by another session after %.0f ms",
								name, (double) timeout_us / 1000.0),
						 errdetail("A prepared transaction holds the migration's lock."),
						 errhint("COMMIT PREPARED or ROLLBACK PREPARED it (see pg_prepared_xacts).")));
		}
	}

	/* 2. what that transaction left: a new snapshot sees its commit */
	SPI_connect();
	found = zdm_migration_fetch(name, false, &m);
	if (found && strcmp(m.phase, "rolled_back") != 0)
	{
		text	   *phase = cstring_to_text(m.phase);

		SPI_finish();
		PG_RETURN_TEXT_P(phase);
	}
	SPI_finish();

	if (waited_for >= 0)
		ereport(ERROR,
				(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
				 errmsg("migration \"%s\" was not expanded: the session expanding it rolled back", name),
				 waited_for > 0 ?
				 errdetail("zdm.wait_expanded() waited for the session with PID %d, whose transaction ended without the migration.",
						   waited_for) :
				 errdetail("zdm.wait_expanded() waited for a prepared transaction, which ended without the migration."),
				 errhint("Run zdm.expand() for \"%s\" again, in a new transaction.", name)));
	ereport(ERROR,
			(errcode(ERRCODE_T_R_SERIALIZATION_FAILURE),
			 errmsg("migration \"%s\" is not expanded", name),
			 found ? errdetail("It was rolled back, and no session is expanding it.") :
			 errdetail("No migration of this name was committed, and no session is expanding it (an expand that held its lock may have rolled back)."),
			 errhint("Run zdm.expand() for \"%s\" again, in a new transaction.", name)));
	PG_RETURN_NULL();			/* not reached */
}
