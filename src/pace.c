/*-------------------------------------------------------------------------
 *
 * pace.c
 *	  Pace the background backfill by the clients' commit latency.
 *
 * Where the clients are bound by WAL flushes, what a backfill costs them is
 * the WAL its converted rows need: every commit waits longer for its flush.
 * No batch size, sleep ratio or rate limit is right for every server and
 * every hour of the day, so with shared_preload_libraries = 'zdm' the
 * worker measures what the clients feel and sets its own rate:
 *
 *	measuring	every client backend times its commits, from PRE_COMMIT to
 *				COMMIT (the commit record and the wait for its WAL flush),
 *				for transactions that wrote (have an xid): a count and a sum
 *				in shared memory, two atomic adds per commit.
 *
 *	baseline	before its first batch, and every PACE_PROBE_EVERY_MS while
 *				it runs, the worker pauses for PACE_PROBE_MS and takes the
 *				clients' mean commit time with no batch running.  Too few
 *				commits in a probe (PACE_MIN_COMMITS): no clients to protect,
 *				no pacing until the next probe.  One second can be a slow
 *				one: the baseline is the mean of the newest probe and the
 *				baseline before it.
 *
 *	control		over each window of about PACE_WINDOW_MS of work (batches
 *				and the sleeps between them), the clients' mean commit time
 *				over the baseline gives a ratio, smoothed over the windows
 *				(PACE_SMOOTHING).  The rate limit is multiplied by the
 *				target (zdm.throttle_commit_latency) over the smoothed
 *				ratio, bounded to PACE_STEP_DOWN..PACE_STEP_UP per window:
 *				steps of the same size in both directions for the same
 *				error, so the rate settles where the ratio meets the target.
 *				(Fixed steps, down a third and up a tenth, settled wherever
 *				a noisy ratio was under the target four times as often as
 *				over it: far below what the clients could take.)  Over the
 *				target with no limit yet, the limit starts from the rate
 *				the worker achieved; it goes away once it is twice what the
 *				worker manages unpaced.  The limit is the worker's:
 *				it spreads the rows of its batches (delay.c), whichever
 *				migration's (a migration's own max_rows_per_sec also holds
 *				back that one), and zdm.status shows it as the throttle
 *				reason.
 *
 * Without shared_preload_libraries there is nothing to measure and the
 * backfill runs at its configured settings.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#define PACE_PROBE_MS			1000
#define PACE_PROBE_EVERY_MS		30000
#define PACE_WINDOW_MS			1000
#define PACE_MIN_COMMITS		20
#define PACE_MIN_RATE			100.0	/* rows/s: the backfill never stops */
#define PACE_SMOOTHING			0.3 /* weight of the newest window's ratio */
#define PACE_STEP_DOWN			(2.0 / 3.0)
#define PACE_STEP_UP			1.25

/* What the client backends add to, in shared memory. */
typedef struct PaceShared
{
	pg_atomic_uint64 commits;
	pg_atomic_uint64 commit_us;
} PaceShared;

static PaceShared *pace_shared = NULL;
static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* A client backend: when its commit began (0: not timing one). */
static TimestampTz commit_started = 0;

/* The clients' counters at one moment. */
typedef struct CommitCount
{
	uint64		commits;
	uint64		us;
} CommitCount;

/* The worker's side. */
typedef struct PaceState
{
	double		baseline_us;	/* mean commit time without a batch; < 0: none */
	TimestampTz probe_start;	/* a probe in progress, or 0 */
	TimestampTz last_probe;		/* when the last probe ended */
	CommitCount probe_from;
	TimestampTz window_start;	/* 0: no window open */
	CommitCount window_from;
	int64		window_rows;
	double		rate;			/* rows/s limit; 0: none */
	double		ratio;			/* smoothed commit time over baseline; < 0: none */
} PaceState;

static PaceState pace = {.baseline_us = -1, .ratio = -1};

static const char *const measuring = "measuring the clients' commit time without the backfill";

static void
pace_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_PRE_COMMIT:
			commit_started = 0;
			if (MyBackendType == B_BACKEND &&
				TransactionIdIsValid(GetTopTransactionIdIfAny()))
				commit_started = GetCurrentTimestamp();
			break;
		case XACT_EVENT_COMMIT:
			if (commit_started != 0)
			{
				TimestampTz now = GetCurrentTimestamp();

				pg_atomic_fetch_add_u64(&pace_shared->commits, 1);
				pg_atomic_fetch_add_u64(&pace_shared->commit_us,
										(uint64) Max(now - commit_started, 0));
				commit_started = 0;
			}
			break;
		default:
			commit_started = 0;
			break;
	}
}

static void
pace_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(MAXALIGN(sizeof(PaceShared)));
}

static void
pace_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();
	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	pace_shared = ShmemInitStruct("zdm pace", sizeof(PaceShared), &found);
	if (!found)
	{
		pg_atomic_init_u64(&pace_shared->commits, 0);
		pg_atomic_init_u64(&pace_shared->commit_us, 0);
	}
	LWLockRelease(AddinShmemInitLock);
}

void
zdm_pace_init(void)
{
	if (!process_shared_preload_libraries_in_progress)
		return;
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = pace_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = pace_shmem_startup;
	RegisterXactCallback(pace_xact_callback, NULL);
}

static CommitCount
counted_now(void)
{
	CommitCount c;

	c.commits = pg_atomic_read_u64(&pace_shared->commits);
	c.us = pg_atomic_read_u64(&pace_shared->commit_us);
	return c;
}

/* Mean commit time (us) since from, or -1 with fewer than PACE_MIN_COMMITS. */
static double
mean_since(CommitCount from)
{
	CommitCount now = counted_now();
	uint64		commits = now.commits - from.commits;

	return commits >= PACE_MIN_COMMITS ? (double) (now.us - from.us) / commits : -1;
}

/* The clients' commit counters (false without shared_preload_libraries). */
bool
zdm_pace_counters(uint64 *commits, uint64 *us)
{
	CommitCount c;

	if (pace_shared == NULL)
		return false;
	c = counted_now();
	*commits = c.commits;
	*us = c.us;
	return true;
}

static inline bool
pace_enabled(void)
{
	return pace_shared != NULL && zdm_throttle_commit_latency > 0;
}

/*
 * Before a batch: 0 to go on, or the ms to wait first, with *reason set,
 * while the worker measures the clients without a batch running.
 */
long
zdm_pace_before_batch(char **reason)
{
	TimestampTz now = GetCurrentTimestamp();

	*reason = NULL;
	if (!pace_enabled())
	{
		pace.rate = 0;
		return 0;
	}
	if (pace.probe_start != 0)
	{
		long		left = PACE_PROBE_MS - (long) ((now - pace.probe_start) / 1000);

		if (left > 0)
		{
			*reason = pstrdup(measuring);
			return left;
		}
		{
			double		probed = mean_since(pace.probe_from);

			if (probed < 0)
				pace.baseline_us = -1;
			else if (pace.baseline_us < 0)
				pace.baseline_us = probed;
			else
				pace.baseline_us = (pace.baseline_us + probed) / 2;
		}
		pace.probe_start = 0;
		pace.last_probe = now;
		pace.window_start = 0;
		if (pace.baseline_us < 0)
			pace.rate = 0;		/* nobody to protect */
		return 0;
	}
	if (pace.last_probe == 0 ||
		TimestampDifferenceExceeds(pace.last_probe, now, PACE_PROBE_EVERY_MS))
	{
		pace.probe_start = now;
		pace.probe_from = counted_now();
		*reason = pstrdup(measuring);
		return PACE_PROBE_MS;
	}
	if (pace.window_start == 0)
	{
		pace.window_start = now;
		pace.window_from = counted_now();
		pace.window_rows = 0;
	}
	return 0;
}

/*
 * After a batch of rows: close the window when it is long enough and move
 * the rate.  Returns the rate limit in rows/s (0: none) and, while one
 * applies, why in *reason.
 */
double
zdm_pace_after_batch(int64 rows, char **reason)
{
	TimestampTz now = GetCurrentTimestamp();

	*reason = NULL;
	if (!pace_enabled() || pace.baseline_us < 0 || pace.window_start == 0)
		return pace_enabled() ? pace.rate : 0;
	pace.window_rows += rows;
	if (TimestampDifferenceExceeds(pace.window_start, now, PACE_WINDOW_MS))
	{
		double		mean_us = mean_since(pace.window_from);
		double		secs = (now - pace.window_start) / 1000000.0;
		double		achieved = pace.window_rows / Max(secs, 0.001);

		if (mean_us >= 0)
		{
			double		ratio = mean_us / Max(pace.baseline_us, 1.0);
			double		step;

			pace.ratio = pace.ratio < 0 ? ratio :
				PACE_SMOOTHING * ratio + (1 - PACE_SMOOTHING) * pace.ratio;
			step = zdm_throttle_commit_latency / Max(pace.ratio, 0.01);
			step = Min(Max(step, PACE_STEP_DOWN), PACE_STEP_UP);
			if (pace.ratio > zdm_throttle_commit_latency)
				pace.rate = Max((pace.rate > 0 ? Min(pace.rate, achieved) : achieved) * step,
								PACE_MIN_RATE);
			else if (pace.rate > 0)
			{
				pace.rate *= step;
				if (pace.rate > 2 * achieved)
					pace.rate = 0;
			}
		}
		pace.window_start = 0;
	}
	if (pace.rate > 0)
		*reason = psprintf("clients' commits took %.2fx their time without the backfill "
						   "(zdm.throttle_commit_latency %.2f): paced to %.0f rows/s",
						   pace.ratio, zdm_throttle_commit_latency, pace.rate);
	return pace.rate;
}

/* The pace's current rate limit in rows/s (0: none), for the next batch. */
double
zdm_pace_rate(void)
{
	return pace_enabled() && pace.baseline_us >= 0 ? pace.rate : 0;
}
