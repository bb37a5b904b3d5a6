/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Health signals the background backfill reads before each batch.
 *
 * The backfill must not be noticed by live traffic, so before every batch
 * the worker asks the server how it is doing, gh-ost style: any one signal
 * over its threshold pauses the backfill (for zdm.throttle_interval), and
 * the reason is shown in zdm.status.throttle_reason.
 *
 *	- replica lag: a standby whose write, flush or replay lag exceeds
 *	  zdm.throttle_replica_lag would fall further behind;
 *	- replication slots: a slot that is zdm.throttle_slot_lag behind, by
 *	  bytes of WAL (an active logical slot from what its subscriber
 *	  confirmed, any other slot from the WAL it retains: a subscriber that
 *	  stopped, an inactive slot, are not in pg_stat_replication at all,
 *	  while the backfill's WAL piles up for them);
 *	- lock waiters: sessions queued for a table-level lock on one of the
 *	  migration's tables (or their partitions), behind a DDL say, are
 *	  already stuck: do not add to it;
 *	- xmin horizon: while a transaction older than zdm.throttle_xact_age is
 *	  open, the row versions every batch leaves behind cannot be vacuumed;
 *	- zdm.throttle_query: anything else the DBA can express in SQL.
 *
 * The signals are read as the worker's own (superuser) role, so that
 * pg_stat_replication and pg_stat_activity show everything; the worker's
 * search_path is pinned to pg_catalog (worker.c), and the queries name
 * pg_catalog's functions and operators explicitly too, so nothing a role
 * creates elsewhere can stand in for them.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

/* First column of the first row of a query, or (Datum) 0 with *isnull. */
static Datum
query_value(const char *sql, int nargs, Oid *types, Datum *values, bool *isnull)
{
	int			rc = SPI_execute_with_args(sql, nargs, types, values, NULL, true, 1);

	if (rc != SPI_OK_SELECT)
		elog(ERROR, "zdm: throttle query failed: %s", SPI_result_code_string(rc));
	*isnull = true;
	if (SPI_processed == 0)
		return (Datum) 0;
	return SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, isnull);
}

/*
 * Run zdm.throttle_query in a subtransaction: a broken query throttles
 * (and says why) instead of failing the migration.
 */
static char *
user_throttle(void)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;
	char	   *reason = NULL;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		int			rc = SPI_execute(zdm_throttle_query, true, 1);
		bool		isnull = true;

		if (rc == SPI_OK_SELECT && SPI_processed > 0 &&
			SPI_tuptable->tupdesc->natts >= 1 &&
			SPI_gettypeid(SPI_tuptable->tupdesc, 1) == BOOLOID)
		{
			Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

			if (!isnull && DatumGetBool(d))
				reason = pstrdup("zdm.throttle_query returned true");
		}
		else
			reason = pstrdup("zdm.throttle_query must return one boolean");
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		reason = psprintf("zdm.throttle_query failed: %s", edata->message);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(cxt);
	CurrentResourceOwner = owner;
	return reason;
}

/* Why the backfill of a migration should wait now, or NULL to go on. */
char *
zdm_throttle_reason(const char *name, Jsonb *plan)
{
	bool		isnull;
	Datum		d;

	if (zdm_throttle_replica_lag_ms >= 0)
	{
		d = query_value("SELECT (extract(epoch FROM pg_catalog.max(greatest(write_lag, flush_lag, replay_lag))) * 1000)::float8"
						"  FROM pg_catalog.pg_stat_replication", 0, NULL, NULL, &isnull);
		if (!isnull && DatumGetFloat8(d) > zdm_throttle_replica_lag_ms)
			return psprintf("replica lag %.0f ms exceeds zdm.throttle_replica_lag (%d ms)",
							DatumGetFloat8(d), zdm_throttle_replica_lag_ms);
	}

	if (zdm_throttle_slot_lag_kb >= 0)
	{
		Oid			types[1] = {INT8OID};
		Datum		values[1] = {Int64GetDatum((int64) zdm_throttle_slot_lag_kb * 1024)};

		/* A lost slot retains nothing and will never catch up: not waited for. */
		d = query_value("WITH s AS ("
						"  SELECT s.slot_name, s.slot_type, s.active,"
						"         s.active AND s.slot_type OPERATOR(pg_catalog.=) 'logical' AS confirms,"
						"         pg_catalog.pg_wal_lsn_diff(pg_catalog.pg_current_wal_lsn(),"
						"           CASE WHEN s.active AND s.slot_type OPERATOR(pg_catalog.=) 'logical'"
						"                THEN s.confirmed_flush_lsn ELSE s.restart_lsn END) AS behind"
						"    FROM pg_catalog.pg_replication_slots s"
						"   WHERE s.wal_status IS DISTINCT FROM 'lost')"
						" SELECT pg_catalog.format('replication slot \"%s\" (%s, %s) %s, over zdm.throttle_slot_lag (%s)',"
						"          s.slot_name, s.slot_type, CASE WHEN s.active THEN 'active' ELSE 'inactive' END,"
						"          CASE WHEN s.confirms"
						"               THEN 'is ' OPERATOR(pg_catalog.||) pg_catalog.pg_size_pretty(s.behind) OPERATOR(pg_catalog.||) ' behind'"
						"               ELSE 'retains ' OPERATOR(pg_catalog.||) pg_catalog.pg_size_pretty(s.behind) OPERATOR(pg_catalog.||) ' of WAL' END,"
						"          pg_catalog.pg_size_pretty($1))"
						"   FROM s WHERE s.behind OPERATOR(pg_catalog.>) $1"
						"  ORDER BY s.behind DESC LIMIT 1",
						1, types, values, &isnull);
		if (!isnull)
			return TextDatumGetCString(d);
	}

	if (zdm_throttle_lock_waiters > 0)
	{
		Oid			types[1] = {JSONBOID};
		Datum		values[1] = {JsonbPGetDatum(plan)};

		/*
		 * Table-level lock queues only (a DDL and what queues behind it):
		 * clients waiting for each other's rows are ordinary OLTP, and
		 * would stall the backfill on any busy table.
		 */
		d = query_value("SELECT pg_catalog.count(DISTINCT l.pid)::int8 FROM pg_catalog.pg_locks l"
						" WHERE NOT l.granted AND l.locktype = 'relation' AND l.relation IN ("
						"   SELECT pg_catalog.to_regclass(t OPERATOR(pg_catalog.->>) 'relation')"
						"     FROM pg_catalog.jsonb_array_elements($1 OPERATOR(pg_catalog.->) 'tables') t"
						"   UNION ALL"
						"   SELECT p.relid FROM pg_catalog.jsonb_array_elements($1 OPERATOR(pg_catalog.->) 'tables') t,"
						"        pg_catalog.pg_partition_tree(pg_catalog.to_regclass(t OPERATOR(pg_catalog.->>) 'relation')) p)",
						1, types, values, &isnull);
		if (!isnull && DatumGetInt64(d) >= zdm_throttle_lock_waiters)
			return psprintf(INT64_FORMAT " session(s) wait for locks on the migration's tables",
							DatumGetInt64(d));
	}

	if (zdm_throttle_xact_age_s >= 0)
	{
		d = query_value("SELECT extract(epoch FROM pg_catalog.now() OPERATOR(pg_catalog.-) pg_catalog.min(xact_start))::float8"
						"  FROM pg_catalog.pg_stat_activity"
						" WHERE backend_xmin IS NOT NULL AND backend_type = 'client backend'"
						"   AND pid <> pg_catalog.pg_backend_pid()",
						0, NULL, NULL, &isnull);
		if (!isnull && DatumGetFloat8(d) > zdm_throttle_xact_age_s)
			return psprintf("a transaction open for %.0f s holds back the xmin horizon (zdm.throttle_xact_age %d s)",
							DatumGetFloat8(d), zdm_throttle_xact_age_s);
	}

	if (zdm_throttle_query != NULL && zdm_throttle_query[0] != '\0')
		return user_throttle();
	return NULL;
}
