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
 * The same machinery takes zdm's claims on tables: a transaction-level
 * advisory lock per table (zdm's key space, the table's OID, sub-key
 * ZDM_ADVISORY_TABLE_CLAIM) that every expand, contract and rollback takes
 * before any lock on the table itself.  Two migrations of one table would
 * otherwise both hold a weak lock (expand validates under ACCESS SHARE,
 * contract verifies and validates under ACCESS SHARE and SHARE UPDATE
 * EXCLUSIVE) and then both ask for ACCESS EXCLUSIVE: a lock upgrade that
 * deadlocks.  With the claim, the second one waits holding nothing on the
 * table, and starts its checks once the first has committed.  The claim
 * conflicts with nothing but other zdm steps, so clients never queue
 * behind it.
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

/* One call's locks: each relation in its table lock mode, or claims. */
typedef struct LockSet
{
	const char *migration;
	Oid		   *relids;
	LOCKMODE   *modes;			/* each one's table lock mode, unless claim */
	int			n;
	bool		claim;			/* zdm's claims on the tables instead */
} LockSet;

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
 * Lock one member of the set: waiting (up to lock_timeout, which then
 * raises lock_not_available), or only if it is free at once.
 */
static bool
lock_member(const LockSet *set, int i, bool wait)
{
	Oid			relid = set->relids[i];

	if (set->claim)
	{
		LOCKTAG		tag;

		SET_LOCKTAG_ADVISORY(tag, MyDatabaseId, ZDM_ADVISORY_KEYSPACE, relid,
							 ZDM_ADVISORY_TABLE_CLAIM);
		return LockAcquire(&tag, ExclusiveLock, false, !wait) != LOCKACQUIRE_NOT_AVAIL;
	}
	if (!wait)
		return ConditionalLockRelationOid(relid, set->modes[i]);
	LockRelationOid(relid, set->modes[i]);
	return true;
}

/*
 * Run attempt(arg) in a subtransaction of its own.  It returns whether it
 * got what it wanted: if so its locks stay with the caller's transaction;
 * if not, or if it failed with lock_not_available (lock_timeout), the
 * subtransaction is rolled back, releasing whatever it took, and the
 * result is false.  Any other error is real and propagates.
 */
bool
zdm_try_in_subtransaction(bool (*attempt) (void *arg), void *arg)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	volatile bool got = false;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);

	PG_TRY();
	{
		got = attempt(arg);
		if (got)
			ReleaseCurrentSubTransaction();
		else
			RollbackAndReleaseCurrentSubTransaction();
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

	return got;
}

/* What lock_attempt asks of set_attempt, and what it learns. */
typedef struct SetAttempt
{
	const LockSet *set;
	int			first;
	Oid			busy;
} SetAttempt;

static bool
set_attempt(void *arg)
{
	SetAttempt *a = arg;
	const LockSet *set = a->set;
	int			level = zdm_lock_timeout_push();

	a->busy = set->relids[a->first];
	(void) lock_member(set, a->first, true);
	a->busy = InvalidOid;
	for (int i = 0; i < set->n && !OidIsValid(a->busy); i++)
	{
		if (i == a->first)
			continue;
		if (!lock_member(set, i, false))
			a->busy = set->relids[i];
	}
	zdm_guc_pop(level);
	return !OidIsValid(a->busy);
}

/*
 * One attempt: lock set->relids[first] waiting at most lock_timeout, then
 * the others without waiting.  Returns InvalidOid on success (locks kept
 * by the caller's transaction), else the relation that was not available
 * (the attempt's locks released).
 */
static Oid
lock_attempt(const LockSet *set, int first)
{
	SetAttempt	a = {set, first, InvalidOid};

	if (zdm_try_in_subtransaction(set_attempt, &a))
		return InvalidOid;
	/* A lock timeout on the first one leaves busy naming it. */
	return OidIsValid(a.busy) ? a.busy : set->relids[first];
}

/* The budget is spent: fail, naming the table we could not have. */
static void
report_budget_spent(const LockSet *set, Oid busy, const ZdmLockStats *stats)
{
	char	   *relname = get_rel_name(busy);
	LOCKMODE	mode = NoLock;

	for (int i = 0; i < set->n; i++)
		if (set->relids[i] == busy)
			mode = set->modes[i];
	if (set->claim)
		ereport(ERROR,
				(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
				 errmsg("migration \"%s\": table \"%s\" was still being migrated by another session after %d ms",
						set->migration, relname ? relname : "?", zdm_lock_budget_ms),
				 errdetail("%d attempts, each waiting at most %d ms (zdm.lock_timeout) for zdm's claim on the table; nothing was changed.",
						   stats->attempts, zdm_lock_timeout_ms),
				 errhint("Another migration's expand, contract or rollback of the table has not committed yet "
						 "(see pg_locks: advisory, objid %u, objsubid %d); "
						 "run the step again once it has, or raise zdm.lock_budget.",
						 busy, ZDM_ADVISORY_TABLE_CLAIM)));
	ereport(ERROR,
			(errcode(ERRCODE_LOCK_NOT_AVAILABLE),
			 errmsg("migration \"%s\": could not lock table \"%s\" in %s mode within %d ms",
					set->migration, relname ? relname : "?", lockmode_label(mode),
					zdm_lock_budget_ms),
			 errdetail("%d attempts, each waiting at most %d ms (zdm.lock_timeout); nothing was changed.",
					   stats->attempts, zdm_lock_timeout_ms),
			 errhint("Another session holds a conflicting lock (see pg_locks); "
					 "run the step again later, or raise zdm.lock_budget.")));
}

/*
 * Acquire every member of the set for the rest of the caller's
 * transaction, retrying as the file header describes.  Fails with
 * lock_not_available once zdm.lock_budget is spent.
 */
static void
lock_set(LockSet *set, ZdmLockStats *stats)
{
	TimestampTz start = GetCurrentTimestamp();
	int			first = 0;

	stats->attempts = 0;
	stats->wait_ms = 0;
	if (set->n == 0)
		return;

	for (;;)
	{
		Oid			busy;
		double		elapsed;
		double		delay;
		char	   *relname;

		CHECK_FOR_INTERRUPTS();
		stats->attempts++;
		busy = lock_attempt(set, first);
		if (!OidIsValid(busy))
			break;

		elapsed = zdm_ms_since(start);
		if (elapsed >= zdm_lock_budget_ms)
			report_budget_spent(set, busy, stats);

		/* The busy table is the one to wait for next time. */
		for (int i = 0; i < set->n; i++)
			if (set->relids[i] == busy)
				first = i;

		delay = Min((double) zdm_lock_backoff_max_ms,
					10.0 * pow(2.0, Min(stats->attempts, 16)));
		delay *= 0.5 + 0.5 * pg_prng_double(&pg_global_prng_state);
		delay = Min(delay, zdm_lock_budget_ms - elapsed);
		relname = get_rel_name(busy);
		if (set->claim)
			ereport(LOG,
					(errmsg("zdm: migration \"%s\": table \"%s\" is being migrated by another session (attempt %d), retrying in %.0f ms",
							set->migration, relname ? relname : "?", stats->attempts, delay)));
		else
			ereport(LOG,
					(errmsg("zdm: migration \"%s\": lock on \"%s\" not available (attempt %d), retrying in %.0f ms",
							set->migration, relname ? relname : "?", stats->attempts, delay)));
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
 * The relids of a list as a LockSet's array, each with its mode (modes, an
 * integer list, or mode for all); a relation listed twice is locked once,
 * in the stronger mode.
 */
static void
lock_set_init(LockSet *set, const char *migration, List *relids, List *modes,
			  LOCKMODE mode)
{
	ListCell   *lc;

	set->migration = migration;
	set->relids = palloc(sizeof(Oid) * Max(list_length(relids), 1));
	set->modes = palloc(sizeof(LOCKMODE) * Max(list_length(relids), 1));
	set->n = 0;
	foreach(lc, relids)
	{
		Oid			relid = lfirst_oid(lc);
		LOCKMODE	m = modes ? list_nth_int(modes, foreach_current_index(lc)) : mode;
		bool		seen = false;

		for (int i = 0; i < set->n; i++)
			if (set->relids[i] == relid)
			{
				set->modes[i] = Max(set->modes[i], m);
				seen = true;
			}
		if (!seen)
		{
			set->modes[set->n] = m;
			set->relids[set->n++] = relid;
		}
	}
}

/*
 * Acquire mode on every relation in relids, for the rest of the caller's
 * transaction, retrying as the file header describes.
 */
void
zdm_lock_relations(const char *migration, List *relids, LOCKMODE mode,
				   ZdmLockStats *stats)
{
	LockSet		set;

	lock_set_init(&set, migration, relids, NIL, mode);
	set.claim = false;
	lock_set(&set, stats);
}

/*
 * The same, each relation in its own mode (modes: an integer list, one per
 * relid): expand takes ACCESS EXCLUSIVE on its tables and SHARE ROW
 * EXCLUSIVE on the tables their new foreign keys reference, all together.
 */
void
zdm_lock_relations_modes(const char *migration, List *relids, List *modes,
						 ZdmLockStats *stats)
{
	LockSet		set;

	lock_set_init(&set, migration, relids, modes, NoLock);
	set.claim = false;
	lock_set(&set, stats);
}

/*
 * Acquire zdm's claim on every relation in relids (see the file header),
 * for the rest of the caller's transaction.  Take it before any lock on
 * the tables themselves, all of a step's tables at once: a claim waited
 * for while holding a lock on the table would bring the deadlock back.
 */
void
zdm_claim_relations(const char *migration, List *relids, ZdmLockStats *stats)
{
	LockSet		set;

	lock_set_init(&set, migration, relids, NIL, NoLock);
	set.claim = true;
	lock_set(&set, stats);
}

/*
 * Charge the locks of an earlier call to the statement that follows: its
 * wait, and each failed attempt as one more attempt.
 */
void
zdm_lock_stats_add(ZdmLockStats *into, const ZdmLockStats *earlier)
{
	if (earlier->attempts == 0)
		return;
	into->wait_ms += earlier->wait_ms;
	into->attempts += earlier->attempts - (into->attempts > 0 ? 1 : 0);
}

/*
 * Try the transaction-level advisory lock of a migration: exactly one
 * session applies a migration at a time, and a crash or rollback releases
 * it.  Never waits.  The lock shows in pg_locks as an advisory lock with
 * classid ZDM_ADVISORY_KEYSPACE, objid a hash of the name and objsubid
 * ZDM_ADVISORY_MIGRATION, which no SQL function can take.
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

	SET_LOCKTAG_ADVISORY(*tag, MyDatabaseId, ZDM_ADVISORY_KEYSPACE, key, ZDM_ADVISORY_MIGRATION);
}
