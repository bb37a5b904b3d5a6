/*-------------------------------------------------------------------------
 *
 * telemetry.c
 *	  Client-version telemetry: requests per declared API version.
 *
 * With shared_preload_libraries = 'zdm', every top-level statement of a
 * client backend is counted under the session's (database, zdm.api_version)
 * in a fixed table of slots in shared memory; a session that declared no
 * version is counted as version "(undeclared)" (ZDM_UNDECLARED_VERSION),
 * the name every reader shows it under: zdm.pending_traffic(),
 * zdm.api_traffic, zdm.api_version_distribution and zdm.metrics().  Background workers (zdm's own, parallel workers) and
 * walsenders are not clients and are not counted; nor is a statement that
 * fails before it runs (a syntax error, an unknown table).  The parts:
 *
 *	counting	ExecutorStart (plannable statements) and ProcessUtility
 *				(utility statements) count a statement when no other
 *				statement is running: ExecutorRun, ExecutorFinish,
 *				ProcessUtility and the planner raise a nesting level, so the
 *				queries of functions, of EXECUTE or of EXPLAIN ANALYZE, and
 *				those the planner runs to fold constants, are not counted
 *				again.  A statement counts under the version in force when
 *				it starts: zdm.api_version is read for every statement, so
 *				a declaration for one transaction (zdm.use_version(v,
 *				true), SET LOCAL) counts that transaction's statements and
 *				no others.  Two kinds are set apart, for the clients of a
 *				pooler in transaction mode, which declare their version
 *				after BEGIN: transaction control (BEGIN, COMMIT, SAVEPOINT,
 *				...) frames requests and is not counted, and the statement
 *				that calls zdm.use_version() moves its count to the version
 *				it declares (zdm_telemetry_declared).  A backend remembers
 *				its slot and looks it up again only when its database or
 *				declared version changes; the per-statement cost is one
 *				atomic add, with no lock.  Slots are created under an LWLock
 *				and never freed while the server runs.  Once the table is
 *				full, a database's new versions are counted together as
 *				version "(overflow)" (logged once).
 *
 *	flushing	zdm_telemetry_flush(), called by each database's background
 *				worker every zdm.launcher_naptime, moves the database's
 *				counts into zdm.api_traffic (one row per minute, version and
 *				source 'postgres').  Counts taken by a flush stay visible as
 *				pending until its transaction commits, and are put back if it
 *				(or the subtransaction that took them) aborts, so
 *				zdm.pending_traffic() plus the table is always the whole
 *				count.
 *
 *	persistence	When the postmaster exits normally (smart, fast or
 *				immediate shutdown) it writes the counts not yet flushed to
 *				pg_stat/zdm_telemetry.stat, and reads them back at the next
 *				start (as pg_stat_statements does); they are flushed into
 *				the minute of that start.  A crash (a backend dying, the
 *				postmaster reinitialising shared memory, or the postmaster
 *				killed) loses what the workers had not flushed: at most one
 *				zdm.launcher_naptime of requests.
 *
 * Without shared_preload_libraries nothing is counted and
 * zdm.pending_traffic() returns no rows; counts can still come from outside
 * through zdm.record_traffic() (gate.c).
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include <unistd.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "optimizer/planner.h"
#include "pgstat.h"
#include "port/atomics.h"
#include "storage/fd.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "tcop/utility.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

PG_FUNCTION_INFO_V1(zdm_pending_traffic);

/* Slots in shared memory (128 bytes each): one per (database, version). */
#define TELEMETRY_SLOTS			2048
/* The last ones are kept for the databases' "(overflow)" slots. */
#define TELEMETRY_SLOTS_RESERVED	64
#define TELEMETRY_OVERFLOW		"(overflow)"

#define TELEMETRY_FILE		PGSTAT_STAT_PERMANENT_DIRECTORY "/zdm_telemetry.stat"
#define TELEMETRY_FILE_MAGIC	0x7A646D74	/* "zdmt" */
#define TELEMETRY_FILE_FORMAT	1

#define TELEMETRY_TRANCHE	"zdm telemetry"

/* One (database, version) and its counters. */
typedef struct TelemetrySlot
{
	pg_atomic_uint64 requests;	/* counted, not yet taken by a flush */
	pg_atomic_uint64 flushing;	/* taken by a flush not yet committed */
	Oid			dboid;
	char		version[NAMEDATALEN];
} TelemetrySlot;

/* Each slot on its own cache line: versions counted at once do not collide. */
typedef union TelemetrySlotPadded
{
	TelemetrySlot slot;
	char		pad[PG_CACHE_LINE_SIZE];
} TelemetrySlotPadded;

/* The head of the shared table; the slots follow it. */
typedef struct TelemetryShared
{
	LWLock	   *lock;			/* taken exclusive to create a slot */
	int			nused;			/* slots in use; changes under the lock */
	bool		full_logged;	/* "table full" was logged */
} TelemetryShared;

/* One count taken by a flush whose transaction has not ended. */
typedef struct TakenCount
{
	TelemetrySlot *slot;
	uint64		requests;
	int			nest_level;		/* (sub)transaction that took it */
} TakenCount;

static bool zdm_count_traffic = true;

static TelemetryShared *telemetry = NULL;
static TelemetrySlotPadded *telemetry_slots = NULL;

/* Depth of statements running in this backend (0: none). */
static int	nesting_level = 0;

/* The slot this backend counts into, and what it was looked up for. */
static TelemetrySlot *counted_slot = NULL;
static Oid	counted_dboid = InvalidOid;
static char *counted_version = NULL;	/* copy of zdm.api_version */

/* The slot the running top-level statement was counted into, or NULL. */
static TelemetrySlot *statement_slot = NULL;

/* Where counts go once nothing in shared memory is left: nowhere. */
static TelemetrySlot uncounted_slot;

/* Counts taken by flushes of the current transaction. */
static TakenCount *taken = NULL;
static int	ntaken = 0;
static int	maxtaken = 0;
static bool taken_callbacks = false;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;
static planner_hook_type prev_planner_hook = NULL;
static ExecutorStart_hook_type prev_ExecutorStart = NULL;
static ExecutorRun_hook_type prev_ExecutorRun = NULL;
static ExecutorFinish_hook_type prev_ExecutorFinish = NULL;
static ProcessUtility_hook_type prev_ProcessUtility = NULL;

/* Bytes of shared memory the table needs. */
static Size
telemetry_shmem_size(void)
{
	return add_size(CACHELINEALIGN(sizeof(TelemetryShared)),
					mul_size(TELEMETRY_SLOTS, sizeof(TelemetrySlotPadded)));
}

/* Find the slot of (dboid, version) among the slots in use, or NULL. */
static TelemetrySlot *
telemetry_find(Oid dboid, const char *version)
{
	int			i;

	for (i = 0; i < telemetry->nused; i++)
	{
		TelemetrySlot *slot = &telemetry_slots[i].slot;

		if (slot->dboid == dboid && strcmp(slot->version, version) == 0)
			return slot;
	}
	return NULL;
}

/* Take the next free slot for (dboid, version); the caller holds the lock. */
static TelemetrySlot *
telemetry_create(Oid dboid, const char *version, int limit)
{
	TelemetrySlot *slot;

	if (telemetry->nused >= limit)
		return NULL;
	slot = &telemetry_slots[telemetry->nused].slot;
	slot->dboid = dboid;
	strlcpy(slot->version, version, NAMEDATALEN);
	pg_atomic_write_u64(&slot->requests, 0);
	pg_atomic_write_u64(&slot->flushing, 0);
	telemetry->nused++;
	return slot;
}

/*
 * The slot of (dboid, version), created if need be.  When the table is
 * full, the database's "(overflow)" slot (from the reserved ones), and when
 * even those are gone, a slot in local memory that nothing reads.
 */
static TelemetrySlot *
telemetry_slot(Oid dboid, const char *version)
{
	TelemetrySlot *slot;
	bool		log_full = false;

	LWLockAcquire(telemetry->lock, LW_SHARED);
	slot = telemetry_find(dboid, version);
	LWLockRelease(telemetry->lock);
	if (slot != NULL)
		return slot;

	LWLockAcquire(telemetry->lock, LW_EXCLUSIVE);
	slot = telemetry_find(dboid, version);
	if (slot == NULL)
		slot = telemetry_create(dboid, version,
								TELEMETRY_SLOTS - TELEMETRY_SLOTS_RESERVED);
	if (slot == NULL)
	{
		log_full = !telemetry->full_logged;
		telemetry->full_logged = true;
		slot = telemetry_find(dboid, TELEMETRY_OVERFLOW);
		if (slot == NULL)
			slot = telemetry_create(dboid, TELEMETRY_OVERFLOW, TELEMETRY_SLOTS);
	}
	LWLockRelease(telemetry->lock);

	if (log_full)
		ereport(LOG,
				errmsg("zdm: the table of API-version counters is full (%d slots)",
					   TELEMETRY_SLOTS - TELEMETRY_SLOTS_RESERVED),
				errdetail("Requests of API versions not seen before are counted as version \"%s\" until the server restarts.",
						  TELEMETRY_OVERFLOW),
				errhint("Declare a small, fixed set of versions in zdm.api_version."));
	return slot != NULL ? slot : &uncounted_slot;
}

/*
 * zdm.api_version as a slot key: at most NAMEDATALEN - 1 bytes, and
 * "(undeclared)" for a session that declared none.
 */
static void
telemetry_version_key(const char *version, char *key)
{
	int			len;

	if (version[0] == '\0')
		version = ZDM_UNDECLARED_VERSION;
	len = strlen(version);

	if (len >= NAMEDATALEN)
		len = pg_mbcliplen(version, len, NAMEDATALEN - 1);
	memcpy(key, version, len);
	key[len] = '\0';
}

/* Look up the slot this backend counts into (database or version changed). */
static void
telemetry_attach(const char *version)
{
	char		key[NAMEDATALEN];

	telemetry_version_key(version, key);
	counted_slot = telemetry_slot(MyDatabaseId, key);
	counted_dboid = MyDatabaseId;
	if (counted_version != NULL)
		pfree(counted_version);
	counted_version = MemoryContextStrdup(TopMemoryContext, version);
}

/*
 * The slot of the version now in force.  The GUC machinery may reuse the
 * memory of a freed value for a new one, so the value is compared, not
 * just the pointer.
 */
static inline TelemetrySlot *
telemetry_current_slot(void)
{
	const char *version = zdm_api_version != NULL ? zdm_api_version : "";

	if (unlikely(counted_slot == NULL || counted_dboid != MyDatabaseId ||
				 strcmp(counted_version, version) != 0))
		telemetry_attach(version);
	return counted_slot;
}

/* Count one top-level statement of this session (or, when off, none). */
static inline void
telemetry_count(void)
{
	statement_slot = NULL;
	if (!zdm_count_traffic || telemetry == NULL || MyBackendType != B_BACKEND)
		return;
	statement_slot = telemetry_current_slot();
	pg_atomic_fetch_add_u64(&statement_slot->requests, 1);
}

/*
 * zdm.use_version() has just declared a version: the running top-level
 * statement, counted under the version before, counts under the new one.
 * Behind a pooler in transaction mode, a client that declares its version
 * in each transaction would otherwise add one request to whatever the
 * server connection had in force (undeclared, mostly) per transaction.
 *
 * Counts are taken by flushes without a lock, so the count is given back
 * only if it is still there (a compare-and-swap that never goes below
 * zero; counts of one slot are alike, so any of them will do).  If a flush
 * took every count of the slot meanwhile, the statement stays counted
 * where it was.
 */
void
zdm_telemetry_declared(void)
{
	TelemetrySlot *from = statement_slot;
	TelemetrySlot *to;
	uint64		n;

	if (from == NULL || telemetry == NULL)
		return;
	to = telemetry_current_slot();
	if (to == from)
		return;
	n = pg_atomic_read_u64(&from->requests);
	while (n > 0 && !pg_atomic_compare_exchange_u64(&from->requests, &n, n - 1))
		;
	if (n == 0)
		return;
	pg_atomic_fetch_add_u64(&to->requests, 1);
	statement_slot = to;
}

/* ---- hooks: count each top-level statement once ---- */

static PlannedStmt *
telemetry_planner(Query *parse, const char *query_string, int cursorOptions,
				  ParamListInfo boundParams)
{
	PlannedStmt *result;

	nesting_level++;
	PG_TRY();
	{
		if (prev_planner_hook)
			result = prev_planner_hook(parse, query_string, cursorOptions,
									   boundParams);
		else
			result = standard_planner(parse, query_string, cursorOptions,
									  boundParams);
	}
	PG_FINALLY();
	{
		nesting_level--;
	}
	PG_END_TRY();
	return result;
}

static void
telemetry_ExecutorStart(QueryDesc *queryDesc, int eflags)
{
	if (nesting_level == 0)
		telemetry_count();
	if (prev_ExecutorStart)
		prev_ExecutorStart(queryDesc, eflags);
	else
		standard_ExecutorStart(queryDesc, eflags);
}

static void
telemetry_ExecutorRun(QueryDesc *queryDesc, ScanDirection direction,
					  uint64 count, bool execute_once)
{
	nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorRun)
			prev_ExecutorRun(queryDesc, direction, count, execute_once);
		else
			standard_ExecutorRun(queryDesc, direction, count, execute_once);
	}
	PG_FINALLY();
	{
		nesting_level--;
	}
	PG_END_TRY();
}

static void
telemetry_ExecutorFinish(QueryDesc *queryDesc)
{
	nesting_level++;
	PG_TRY();
	{
		if (prev_ExecutorFinish)
			prev_ExecutorFinish(queryDesc);
		else
			standard_ExecutorFinish(queryDesc);
	}
	PG_FINALLY();
	{
		nesting_level--;
	}
	PG_END_TRY();
}

static void
telemetry_ProcessUtility(PlannedStmt *pstmt, const char *queryString,
						 bool readOnlyTree, ProcessUtilityContext context,
						 ParamListInfo params, QueryEnvironment *queryEnv,
						 DestReceiver *dest, QueryCompletion *qc)
{
	/* transaction control frames requests: it is not one */
	if (nesting_level == 0 && context == PROCESS_UTILITY_TOPLEVEL)
	{
		if (IsA(pstmt->utilityStmt, TransactionStmt))
			statement_slot = NULL;
		else
			telemetry_count();
	}

	nesting_level++;
	PG_TRY();
	{
		if (prev_ProcessUtility)
			prev_ProcessUtility(pstmt, queryString, readOnlyTree, context,
								params, queryEnv, dest, qc);
		else
			standard_ProcessUtility(pstmt, queryString, readOnlyTree, context,
									params, queryEnv, dest, qc);
	}
	PG_FINALLY();
	{
		nesting_level--;
	}
	PG_END_TRY();
}

/* ---- shared memory and the file that carries it over a restart ---- */

static void
telemetry_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(telemetry_shmem_size());
	RequestNamedLWLockTranche(TELEMETRY_TRANCHE, 1);
}

/*
 * Write the counts not yet flushed to TELEMETRY_FILE.  Runs in the
 * postmaster as it exits; after a crash (code != 0) the counts in shared
 * memory are not to be trusted and nothing is written.
 */
static void
telemetry_shmem_shutdown(int code, Datum arg)
{
	FILE	   *file;
	uint32		header[3];
	int			i;
	int			n = 0;

	if (code != 0 || telemetry == NULL)
		return;

	for (i = 0; i < telemetry->nused; i++)
		if (pg_atomic_read_u64(&telemetry_slots[i].slot.requests) > 0)
			n++;
	if (n == 0)
		return;

	file = AllocateFile(TELEMETRY_FILE ".tmp", PG_BINARY_W);
	if (file == NULL)
		goto error;
	header[0] = TELEMETRY_FILE_MAGIC;
	header[1] = TELEMETRY_FILE_FORMAT;
	header[2] = n;
	if (fwrite(header, sizeof(header), 1, file) != 1)
		goto error;
	for (i = 0; i < telemetry->nused; i++)
	{
		TelemetrySlot *slot = &telemetry_slots[i].slot;
		uint64		requests = pg_atomic_read_u64(&slot->requests);

		if (requests == 0)
			continue;
		if (fwrite(&slot->dboid, sizeof(Oid), 1, file) != 1 ||
			fwrite(slot->version, NAMEDATALEN, 1, file) != 1 ||
			fwrite(&requests, sizeof(uint64), 1, file) != 1)
			goto error;
	}
	if (FreeFile(file))
	{
		file = NULL;
		goto error;
	}
	(void) durable_rename(TELEMETRY_FILE ".tmp", TELEMETRY_FILE, LOG);
	return;

error:
	ereport(LOG,
			errcode_for_file_access(),
			errmsg("zdm: could not write file \"%s\": %m", TELEMETRY_FILE ".tmp"),
			errdetail("Requests per API version not yet flushed to zdm.api_traffic are lost."));
	if (file)
		FreeFile(file);
	unlink(TELEMETRY_FILE ".tmp");
}

/*
 * Read back the counts a clean shutdown left, then remove the file, so
 * that a crash later does not count them twice.  Runs in the postmaster
 * before any backend exists.
 */
static void
telemetry_load(void)
{
	FILE	   *file;
	uint32		header[3];
	uint32		i;

	file = AllocateFile(TELEMETRY_FILE, PG_BINARY_R);
	if (file == NULL)
	{
		if (errno != ENOENT)
			ereport(LOG,
					errcode_for_file_access(),
					errmsg("zdm: could not read file \"%s\": %m", TELEMETRY_FILE));
		return;
	}
	if (fread(header, sizeof(header), 1, file) != 1 ||
		header[0] != TELEMETRY_FILE_MAGIC || header[1] != TELEMETRY_FILE_FORMAT)
		goto bad;
	for (i = 0; i < header[2]; i++)
	{
		Oid			dboid;
		char		version[NAMEDATALEN];
		uint64		requests;
		TelemetrySlot *slot;

		if (fread(&dboid, sizeof(Oid), 1, file) != 1 ||
			fread(version, NAMEDATALEN, 1, file) != 1 ||
			fread(&requests, sizeof(uint64), 1, file) != 1)
			goto bad;
		version[NAMEDATALEN - 1] = '\0';
		/* Written by zdm 0.5 or earlier, which kept undeclared counts under ''. */
		if (version[0] == '\0')
			strlcpy(version, ZDM_UNDECLARED_VERSION, NAMEDATALEN);
		slot = telemetry_find(dboid, version);
		if (slot == NULL)
			slot = telemetry_create(dboid, version, TELEMETRY_SLOTS);
		if (slot != NULL)
			pg_atomic_fetch_add_u64(&slot->requests, requests);
	}
	FreeFile(file);
	unlink(TELEMETRY_FILE);
	return;

bad:
	ereport(LOG,
			errmsg("zdm: ignoring file \"%s\": it is corrupt or of another version",
				   TELEMETRY_FILE));
	FreeFile(file);
	unlink(TELEMETRY_FILE);
}

static void
telemetry_shmem_startup(void)
{
	bool		found;
	int			i;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	telemetry = ShmemInitStruct("zdm telemetry", telemetry_shmem_size(), &found);
	telemetry_slots = (TelemetrySlotPadded *)
		((char *) telemetry + CACHELINEALIGN(sizeof(TelemetryShared)));
	if (!found)
	{
		telemetry->lock = &(GetNamedLWLockTranche(TELEMETRY_TRANCHE))->lock;
		telemetry->nused = 0;
		telemetry->full_logged = false;
		for (i = 0; i < TELEMETRY_SLOTS; i++)
		{
			pg_atomic_init_u64(&telemetry_slots[i].slot.requests, 0);
			pg_atomic_init_u64(&telemetry_slots[i].slot.flushing, 0);
		}
	}
	LWLockRelease(AddinShmemInitLock);

	/* the postmaster writes the counts out when it exits */
	if (!IsUnderPostmaster)
		on_shmem_exit(telemetry_shmem_shutdown, (Datum) 0);
	if (!found)
		telemetry_load();
}

/* ---- setting up ---- */

void
zdm_telemetry_init(void)
{
	DefineCustomBoolVariable("zdm.count_traffic",
							 "Count every statement under the session's zdm.api_version (needs shared_preload_libraries).",
							 "The counts feed zdm.api_version_distribution and the contract gate.",
							 &zdm_count_traffic,
							 true,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	if (!process_shared_preload_libraries_in_progress)
		return;

	pg_atomic_init_u64(&uncounted_slot.requests, 0);
	pg_atomic_init_u64(&uncounted_slot.flushing, 0);

	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = telemetry_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = telemetry_shmem_startup;
	prev_planner_hook = planner_hook;
	planner_hook = telemetry_planner;
	prev_ExecutorStart = ExecutorStart_hook;
	ExecutorStart_hook = telemetry_ExecutorStart;
	prev_ExecutorRun = ExecutorRun_hook;
	ExecutorRun_hook = telemetry_ExecutorRun;
	prev_ExecutorFinish = ExecutorFinish_hook;
	ExecutorFinish_hook = telemetry_ExecutorFinish;
	prev_ProcessUtility = ProcessUtility_hook;
	ProcessUtility_hook = telemetry_ProcessUtility;
}

/* ---- flushing to zdm.api_traffic ---- */

/*
 * Settle the counts taken by flushes when their (sub)transaction ends:
 * committed, they leave "flushing"; aborted, they go back to "requests"
 * for the next flush.
 */
static void
telemetry_settle(bool commit, int nest_level)
{
	int			i;
	int			kept = 0;

	for (i = 0; i < ntaken; i++)
	{
		TakenCount *t = &taken[i];

		if (t->nest_level < nest_level)
		{
			taken[kept++] = *t;
			continue;
		}
		if (!commit)
			pg_atomic_fetch_add_u64(&t->slot->requests, t->requests);
		pg_atomic_fetch_sub_u64(&t->slot->flushing, t->requests);
	}
	ntaken = kept;
}

static void
telemetry_xact_callback(XactEvent event, void *arg)
{
	if (ntaken == 0)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			telemetry_settle(true, 0);
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			telemetry_settle(false, 0);
			break;
		default:
			break;
	}
}

static void
telemetry_subxact_callback(SubXactEvent event, SubTransactionId mySubid,
						   SubTransactionId parentSubid, void *arg)
{
	int			level = GetCurrentTransactionNestLevel();
	int			i;

	if (ntaken == 0)
		return;
	if (event == SUBXACT_EVENT_ABORT_SUB)
		telemetry_settle(false, level);
	else if (event == SUBXACT_EVENT_COMMIT_SUB)
	{
		/* the parent now decides */
		for (i = 0; i < ntaken; i++)
			if (taken[i].nest_level >= level)
				taken[i].nest_level = level - 1;
	}
}

/* Make room for n more taken counts (before anything is taken). */
static void
telemetry_reserve_taken(int n)
{
	if (!taken_callbacks)
	{
		RegisterXactCallback(telemetry_xact_callback, NULL);
		RegisterSubXactCallback(telemetry_subxact_callback, NULL);
		taken_callbacks = true;
	}
	if (ntaken + n <= maxtaken)
		return;
	maxtaken = Max(16, ntaken + n);
	taken = taken == NULL
		? MemoryContextAlloc(TopMemoryContext, maxtaken * sizeof(TakenCount))
		: repalloc(taken, maxtaken * sizeof(TakenCount));
}

/* Remember a count taken by a flush until its transaction ends. */
static void
telemetry_note_taken(TelemetrySlot *slot, uint64 requests)
{
	Assert(ntaken < maxtaken);
	taken[ntaken].slot = slot;
	taken[ntaken].requests = requests;
	taken[ntaken].nest_level = GetCurrentTransactionNestLevel();
	ntaken++;
}

/*
 * Move the current database's counts into zdm.api_traffic, in this
 * minute's bucket.  Called by the database's background worker inside a
 * transaction with SPI connected.  Does nothing without
 * shared_preload_libraries, or when the extension predates zdm.api_traffic.
 */
void
zdm_telemetry_flush(void)
{
	Oid			nsp;
	Datum	   *versions;
	Datum	   *counts;
	int			n = 0;
	int			i;
	Datum		args[2];

	if (telemetry == NULL)
		return;
	nsp = get_namespace_oid("zdm", true);
	if (!OidIsValid(nsp) || !OidIsValid(get_relname_relid("api_traffic", nsp)))
		return;

	/*
	 * Taken under the lock exclusive, so that zdm.pending_traffic() never
	 * sees a count half-way from "requests" to "flushing".  Backends go on
	 * counting meanwhile: they take no lock.  The slots are never freed, so
	 * pointers to them stay valid until the transaction ends.
	 */
	LWLockAcquire(telemetry->lock, LW_EXCLUSIVE);
	versions = palloc(telemetry->nused * sizeof(Datum));
	counts = palloc(telemetry->nused * sizeof(Datum));
	telemetry_reserve_taken(telemetry->nused);
	for (i = 0; i < telemetry->nused; i++)
	{
		TelemetrySlot *slot = &telemetry_slots[i].slot;
		uint64		requests;

		if (slot->dboid != MyDatabaseId ||
			pg_atomic_read_u64(&slot->requests) == 0)
			continue;
		versions[n] = CStringGetTextDatum(slot->version);
		requests = pg_atomic_exchange_u64(&slot->requests, 0);
		pg_atomic_fetch_add_u64(&slot->flushing, requests);
		telemetry_note_taken(slot, requests);
		counts[n] = Int64GetDatum((int64) requests);
		n++;
	}
	LWLockRelease(telemetry->lock);

	if (n == 0)
		return;

	args[0] = PointerGetDatum(construct_array(versions, n, TEXTOID, -1, false,
											  TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(counts, n, INT8OID, 8,
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	/* if this fails, the transaction's abort puts the counts back */
	zdm_traffic_add(args[0], args[1], GetCurrentTransactionStartTimestamp(), "postgres");
}

/*
 * Add counts to zdm.api_traffic: versions (text[]) and requests (int8[])
 * in the minute of at, from source.  A minute's row of that version and
 * source is added to if there is one, else a row is inserted.  The table
 * has no unique key, so that writers of the same minute (a flush and the
 * COPY of a pg_restore, two external feeds) never collide; readers sum its
 * rows.  Sums saturate at the largest bigint instead of failing.  Runs as
 * zdm's owner (roles.c), inside SPI.
 */
void
zdm_traffic_add(Datum versions, Datum requests, TimestampTz at, const char *source)
{
	Oid			argtypes[4] = {TEXTARRAYOID, INT8ARRAYOID, TIMESTAMPTZOID, TEXTOID};
	Datum		args[4] = {versions, requests, TimestampTzGetDatum(at), CStringGetTextDatum(source)};
	int			ret;

	ret = zdm_state_exec(
		"WITH u AS ("
		"  SELECT v.version, v.requests"
		"    FROM ROWS FROM (unnest($1), unnest($2)) AS v(version, requests)"
		"), b AS ("
		"  SELECT date_trunc('minute', $3) AS bucket"
		"), one AS ("
		"  SELECT DISTINCT ON (u.version) t.ctid AS tid, u.requests"
		"    FROM u, b, zdm.api_traffic t"
		"   WHERE t.bucket = b.bucket AND t.version = u.version AND t.source = $4"
		"   ORDER BY u.version, t.ctid"
		"), upd AS ("
		"  UPDATE zdm.api_traffic t"
		"     SET requests = least(t.requests::numeric + one.requests, 9223372036854775807)::int8"
		"    FROM one WHERE t.ctid = one.tid"
		"  RETURNING t.version"
		")"
		" INSERT INTO zdm.api_traffic (bucket, version, source, requests)"
		" SELECT b.bucket, u.version, $4, u.requests FROM u, b"
		"  WHERE u.version NOT IN (SELECT version FROM upd)",
		4, argtypes, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "zdm: recording API-version counts failed: %s",
			 SPI_result_code_string(ret));
}

/*
 * zdm.pending_traffic(): the current database's counts not yet in
 * zdm.api_traffic, per version ("(undeclared)" for sessions that declared
 * none).  No rows without shared_preload_libraries.
 */
Datum
zdm_pending_traffic(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;
	int			i;

	InitMaterializedSRF(fcinfo, 0);
	if (telemetry == NULL)
		return (Datum) 0;

	LWLockAcquire(telemetry->lock, LW_SHARED);
	for (i = 0; i < telemetry->nused; i++)
	{
		TelemetrySlot *slot = &telemetry_slots[i].slot;
		uint64		requests;
		Datum		values[2];
		bool		nulls[2] = {false, false};

		if (slot->dboid != MyDatabaseId)
			continue;
		requests = pg_atomic_read_u64(&slot->requests) +
			pg_atomic_read_u64(&slot->flushing);
		if (requests == 0)
			continue;
		values[0] = CStringGetTextDatum(slot->version);
		values[1] = Int64GetDatum((int64) requests);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	LWLockRelease(telemetry->lock);
	return (Datum) 0;
}
