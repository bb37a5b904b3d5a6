/*-------------------------------------------------------------------------
 *
 * locks.c
 *	  Taking locks on busy tables without ever stalling their traffic.
 *
 * The danger of DDL on a live table is rarely the DDL itself: an ALTER
 * TABLE that waits for ACCESS EXCLUSIVE sits in the lock queue, and every
 * query arriving after it queues behind it.  So zdm asks for a table lock
 * only with a short lock_timeout (zdm.lock_timeout), and when that expires
 * it steps out of the queue, sleeps with exponential backoff and jitter,
 * and tries again until zdm.lock_budget is spent.
 *
 * Each attempt runs in its own subtransaction: a failed attempt is rolled
 * back alone (the caller's transaction, and the migration in it, stay
 * intact), and rolling it back also releases any lock the attempt had
 * already taken.  Of several tables, an attempt waits for one only (the
 * one that failed last time); the others must be free at once.  So zdm
 * never holds one table's lock while it waits for another's.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <math.h>

#include "access/xact.h"
#include "common/hashfn.h"
#include "common/pg_prng.h"
#include "miscadmin.h"
#include "storage/latch.h"
#include "storage/lmgr.h"
#include "storage/lock.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

static const char *
lockmode_label(LOCKMODE mode)
{
	switch (mode)
	{
		case AccessShareLock:
			return "ACCESS SHARE";
		case ShareUpdateExclusiveLock:
			return "SHARE UPDATE EXCLUSIVE";
		case ShareRowExclusiveLock:
			return "SHARE ROW EXCLUSIVE";
		case AccessExclusiveLock:
			return "ACCESS EXCLUSIVE";
		default:
			return "table";
	}
}

/* Set lock_timeout to zdm.lock_timeout until zdm_guc_pop. */
int
zdm_lock_timeout_push(void)
{
	int			level = NewGUCNestLevel();
	char		buf[32];

	snprintf(buf, sizeof(buf), "%d", zdm_lock_timeout_ms);
	(void) set_config_option("lock_timeout", buf, PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_SAVE, true, 0, false);
	return level;
}

/*
 * One attempt: lock relids[first] waiting at most lock_timeout, then the
 * others without waiting.  Returns InvalidOid on success (locks kept by
 * the caller's transaction), else the relation that was not available
 * (the attempt's locks released).
 */
static Oid
lock_attempt(Oid *relids, int n, int first, LOCKMODE mode)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile Oid busy = InvalidOid;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		int			level = zdm_lock_timeout_push();

		busy = relids[first];
		LockRelationOid(relids[first], mode);
		busy = InvalidOid;
		for (int i = 0; i < n && !OidIsValid(busy); i++)
		{
			if (i == first)
				continue;
			if (!ConditionalLockRelationOid(relids[i], mode))
				busy = relids[i];
		}
		zdm_guc_pop(level);

		if (OidIsValid(busy))
			RollbackAndReleaseCurrentSubTransaction();
		else
			ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(cxt);
		CurrentResourceOwner = owner;
		/* Only a lock timeout is worth a retry; anything else is real. */
		if (edata->sqlerrcode != ERRCODE_LOCK_NOT_AVAILABLE)
			ReThrowError(edata);
		FreeErrorData(edata);
	}
	PG_END_TRY();

	return busy;
}

/*
 * Acquire mode on every relation in relids, for the rest of the caller's
 * transaction, retrying as the file header describes.  Fails with
 * lock_not_available once zdm.lock_budget is spent.
 */
void
zdm_lock_relations(const char *migration, List *relids, LOCKMODE mode,
				   ZdmLockStats *stats)
{
	TimestampTz start = GetCurrentTimestamp();
	int			n = list_length(relids);
	Oid		   *arr;
	int			first = 0;
	int			i = 0;
	ListCell   *lc;

	stats->attempts = 0;
	stats->wait_ms = 0;
	if (n == 0)
		return;

	arr = palloc(sizeof(Oid) * n);
	foreach(lc, relids)
		arr[i++] = lfirst_oid(lc);

	for (;;)
	{
		Oid			busy;
		double		elapsed;
		double		delay;

		CHECK_FOR_INTERRUPTS();
		stats->attempts++;
		busy = lock_attempt(arr, n, first, mode);
		if (!OidIsValid(busy))
			break;

		elapsed = zdm_ms_since(start);
		if (elapsed >= zdm_lock_budget_ms)
		{
			char	   *relname = get_rel_name(busy);

			ereport(ERROR,
					(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
					 errmsg("migration \"%s\": could not lock table \"%s\" in %s mode within %d ms",
							migration, relname ? relname : "?", lockmode_label(mode),
							zdm_lock_budget_ms),
					 errdetail("%d attempts, each waiting at most %d ms (zdm.lock_timeout); nothing was changed.",
							   stats->attempts, zdm_lock_timeout_ms),
					 errhint("Another session holds a conflicting lock (see pg_locks); "
							 "run the step again later, or raise zdm.lock_budget.")));
		}

		/* The busy table is the one to wait for next time. */
		for (i = 0; i < n; i++)
			if (arr[i] == busy)
				first = i;

		delay = Min((double) zdm_lock_backoff_max_ms,
					10.0 * pow(2.0, Min(stats->attempts, 16)));
		delay *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
		delay = Min(delay, zdm_lock_budget_ms - elapsed);
		ereport(LOG,
				(errmsg("zdm: migration \"%s\": lock on \"%s\" not available (attempt %d), retrying in %.0f ms",
						migration, get_rel_name(busy), stats->attempts, delay)));
		if (delay >= 1)
		{
			(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
							 (long) delay, PG_WAIT_EXTENSION);
			ResetLatch(MyLatch);
		}
	}
	stats->wait_ms = zdm_ms_since(start);
}

/*
 * Try the transaction-level advisory lock of a migration: exactly one
 * session applies a migration at a time, and a crash or rollback releases
 * it.  Never waits.  The lock shows in pg_locks as an advisory lock with
 * classid ZDM_ADVISORY_KEYSPACE and objid a hash of the name.
 */
bool
zdm_try_migration_lock(const char *migration)
{
	LOCKTAG		tag;

	zdm_migration_locktag(migration, &tag);
	return LockAcquire(&tag, ExclusiveLock, false, true) != LOCKACQUIRE_NOT_AVAIL;
}

/* The tag of a migration's advisory lock (wait.c waits for its holders). */
void
zdm_migration_locktag(const char *migration, LOCKTAG *tag)
{
	uint32		key = hash_bytes((const unsigned char *) migration, strlen(migration));

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ZDM_ADVISORY_KEYSPACE, key, 2);
}
