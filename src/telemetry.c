/*-------------------------------------------------------------------------
 *
 * telemetry.c
 *	  Client-version telemetry: requests per declared API version.
 *
 * (Being written: counting in shared memory under
 * shared_preload_libraries.  Until then nothing is counted inside
 * PostgreSQL and zdm.pending_traffic() returns no rows.)
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "fmgr.h"
#include "funcapi.h"

PG_FUNCTION_INFO_V1(zdm_pending_traffic);

void
zdm_telemetry_init(void)
{
}

void
zdm_telemetry_flush(void)
{
}

/* Counts not yet flushed to zdm.api_traffic: none without shared memory. */
Datum
zdm_pending_traffic(PG_FUNCTION_ARGS)
{
	InitMaterializedSRF(fcinfo, 0);
	return (Datum) 0;
}
