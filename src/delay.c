/*-------------------------------------------------------------------------
 *
 * delay.c
 *	  Spread a background batch's rows over the batch's time.
 *
 * A rate limit met by a batch at full speed followed by a sleep holds on
 * average, but the clients beside the batch feel its full speed: their
 * tail latency is set by the worst 1% of their time, and once such bursts
 * cover that much, a low average rate costs them about what an unlimited
 * backfill does.  So when the worker runs its batch UPDATE under a rate,
 * the statement calls zdm.delay_point() for every row it reads (in its
 * WHERE clause, as vacuum calls vacuum_delay_point() for every page), and
 * the function sleeps whenever the batch is ahead of that rate, in steps
 * of a few milliseconds.  The worker's WAL and CPU then come in an even
 * trickle instead of bursts.
 *
 * The rate is set by the worker around its own UPDATE only.  In any other
 * session, and in zdm.backfill() called from SQL, zdm.delay_point()
 * returns true at once.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/namespace.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "parser/parse_func.h"
#include "storage/latch.h"
#include "utils/timestamp.h"
#include "utils/wait_event.h"

PG_FUNCTION_INFO_V1(zdm_delay_point);

/*
 * Sleep only when at least this far ahead: shorter sleeps would cost more
 * in wake-ups than they smooth (a client transaction takes a few ms).
 */
#define DELAY_MIN_US		2000
/*
 * Behind schedule by more than this (the worker was off the CPU, or a row
 * lock held it): start the schedule again from now, rather than catch up
 * at full speed, which is the burst this file is here to avoid.
 */
#define DELAY_SLACK_US		20000

static double delay_rate = 0;	/* rows/s; 0: no delay */
static TimestampTz delay_start;
static int64 delay_rows;
static int64 delay_slept_us;

/* The worker, before its batch UPDATE: spread its rows at rows_per_sec. */
void
zdm_delay_begin(double rows_per_sec)
{
	delay_rate = Max(rows_per_sec, 0);
	delay_start = GetCurrentTimestamp();
	delay_rows = 0;
	delay_slept_us = 0;
}

/* After the batch (or its error): no more delay; the ms it slept. */
double
zdm_delay_end(void)
{
	delay_rate = 0;
	return delay_slept_us / 1000.0;
}

/*
 * Should the batch UPDATE call zdm.delay_point()?  Only under a rate, and
 * once the function exists (ALTER EXTENSION zdm UPDATE to 0.5 or later);
 * before that, the worker spaces whole batches as it used to.
 */
bool
zdm_delay_active(void)
{
	return delay_rate > 0 &&
		OidIsValid(zdm_function_oid("delay_point", 0, NULL));
}

Datum
zdm_delay_point(PG_FUNCTION_ARGS)
{
	TimestampTz now;
	TimestampTz due;
	TimestampTz woke;

	if (delay_rate <= 0)
		PG_RETURN_BOOL(true);

	delay_rows++;
	now = GetCurrentTimestamp();
	due = delay_start + (TimestampTz) (delay_rows * 1000000.0 / delay_rate);
	if (now - due > DELAY_SLACK_US)
	{
		delay_start += now - due;
		PG_RETURN_BOOL(true);
	}
	while (due - now >= DELAY_MIN_US)
	{
		long		ms = (long) ((due - now + 999) / 1000);

		(void) WaitLatch(MyLatch, WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 ms, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		woke = GetCurrentTimestamp();
		delay_slept_us += woke - now;
		now = woke;
	}
	PG_RETURN_BOOL(true);
}
