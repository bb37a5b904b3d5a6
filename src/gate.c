/*-------------------------------------------------------------------------
 *
 * gate.c
 *	  The contract gate: contract waits for old clients to be gone, as the
 *	  traffic shows, not as the calendar says.
 *
 * A migration that retires an API version (its "versions": {"old": ...})
 * may be contracted only when that version's share of requests over
 * zdm.gate_window is below zdm.contract_threshold.  Requests come from two
 * sources, added together: statements counted inside PostgreSQL per
 * declared version (telemetry.c, with shared_preload_libraries) and counts
 * given by zdm.record_traffic() from outside (load balancer logs,
 * Prometheus).  Traffic that declared no version is left out of the share
 * by default (zdm.gate_undeclared = ignore), or counted as the retired
 * version's (= old), the cautious choice where most clients cannot declare.
 * No telemetry at all in the window refuses too: silence is not consent.
 * A migration that introduces a version but retires none by name (the
 * first one declared, or one whose versions are implicit: an in-place
 * alter_column written as pgroll writes it) changes what clients that
 * declare no version see: with zdm.gate_undeclared = old they are its old
 * clients, and the gate waits for the "(undeclared)" share; with ignore it
 * is not gated, and says so.
 * zdm.contract(name, force => true) overrides, and the journal says who.
 *
 * zdm.contract_gate() shows what the gate would say now for each
 * migration that retires a version, with the same arithmetic
 * (gate_count_undeclared), and zdm.metrics() publishes it, with the
 * traffic per version and each migration's phase and backfill progress,
 * in Prometheus' text format: an alert on it tells when the retired
 * version's share has fallen below zdm.contract_threshold
 * (test/monitoring/).
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

PG_FUNCTION_INFO_V1(zdm_gate_since);

/* The most zdm.record_traffic() accepts in one call: 10^12 requests. */
#define ZDM_MAX_RECORDED_REQUESTS	INT64CONST(1000000000000)
PG_FUNCTION_INFO_V1(zdm_record_traffic);
PG_FUNCTION_INFO_V1(zdm_metrics);
PG_FUNCTION_INFO_V1(zdm_contract_gate);

/* now() minus zdm.gate_window. */
Datum
zdm_gate_since(PG_FUNCTION_ARGS)
{
	PG_RETURN_TIMESTAMPTZ(GetCurrentTransactionStartTimestamp() -
						  (TimestampTz) zdm_gate_window_min * 60 * USECS_PER_SEC);
}

/* "90 min" or "1 day" for messages. */
static char *
window_text(void)
{
	if (zdm_gate_window_min % 1440 == 0)
		return psprintf("%d day%s", zdm_gate_window_min / 1440, zdm_gate_window_min == 1440 ? "" : "s");
	if (zdm_gate_window_min % 60 == 0)
		return psprintf("%d h", zdm_gate_window_min / 60);
	return psprintf("%d min", zdm_gate_window_min);
}

Datum
zdm_record_traffic(PG_FUNCTION_ARGS)
{
	char	   *version;
	int64		requests;
	TimestampTz at;
	Datum		versions[1];
	Datum		counts[1];

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("zdm.record_traffic: %s must not be null",
						PG_ARGISNULL(0) ? "version" : PG_ARGISNULL(1) ? "requests" : "observed_at"),
				 errhint("Call zdm.record_traffic('v3', 1200) or with a time: zdm.record_traffic('v3', 1200, '2026-11-23 10:00+00').")));
	version = text_to_cstring(PG_GETARG_TEXT_PP(0));
	requests = PG_GETARG_INT64(1);
	at = PG_GETARG_TIMESTAMPTZ(2);
	if (version[0] == '\0' || strlen(version) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zdm.record_traffic: version must be 1 to %d bytes long", NAMEDATALEN - 1),
				 errhint("Give the API version the requests came from, such as 'v3'.")));
	if (requests < 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zdm.record_traffic: requests of version \"%s\" must not be negative (" INT64_FORMAT ")",
						version, requests),
				 errhint("Record the count of requests seen, which is zero or more.")));
	/* Far beyond any real count: a unit mistake, or an attempt to skew the gate. */
	if (requests > ZDM_MAX_RECORDED_REQUESTS)
		ereport(ERROR,
				(errcode(ERRCODE_NUMERIC_VALUE_OUT_OF_RANGE),
				 errmsg("zdm.record_traffic: " INT64_FORMAT " requests of version \"%s\" in one call is more than %lld",
						requests, version, (long long) ZDM_MAX_RECORDED_REQUESTS),
				 errhint("Record the requests of each minute, or of each hour, as they are observed.")));
	/* A minute of slack for clocks that are slightly ahead. */
	if (at > GetCurrentTimestamp() + 60 * USECS_PER_SEC || TIMESTAMP_NOT_FINITE(at))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zdm.record_traffic: requests of version \"%s\" observed at %s, which is in the future",
						version, timestamptz_to_str(at)),
				 errhint("Pass the time the requests were observed, or leave observed_at out for now().")));

	versions[0] = CStringGetTextDatum(version);
	counts[0] = Int64GetDatum(requests);
	SPI_connect();
	zdm_traffic_add(PointerGetDatum(construct_array(versions, 1, TEXTOID, -1, false, TYPALIGN_INT)),
					PointerGetDatum(construct_array(counts, 1, INT8OID, 8, FLOAT8PASSBYVAL, TYPALIGN_DOUBLE)),
					at, "external");
	SPI_finish();
	PG_RETURN_BOOL(true);
}

/*
 * Count undeclared requests as zdm.gate_undeclared says: left out of the
 * total (ignore), or added to the retired version's (old).
 */
static void
gate_count_undeclared(int64 *old_requests, int64 undeclared, int64 *total)
{
	if (zdm_gate_undeclared == 1)
		*old_requests = *old_requests > PG_INT64_MAX - undeclared ? PG_INT64_MAX : *old_requests + undeclared;
	else
		*total -= undeclared;
}

/*
 * Refuse to contract a migration while the version it retires still has
 * traffic (see the file header).  Runs inside contract, with SPI.
 */
void
zdm_gate_check(const char *name, const char *version_old, const char *version_new, bool force)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1];
	int64		old_requests,
				undeclared,
				total;
	double		share;
	char	   *sources;
	char	   *why = NULL;
	bool		isnull;
	HeapTuple	tup;
	TupleDesc	desc;

	if (version_old == NULL && version_new != NULL && zdm_gate_undeclared == 1)
	{
		/*
		 * It introduces a version and retires none by name: the old shape
		 * is the tables as they are, which clients that declare no version
		 * use, and zdm.gate_undeclared = old says they are the old clients.
		 */
		version_old = ZDM_UNDECLARED_VERSION;
	}
	else if (version_old == NULL && version_new != NULL)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" retires no named API version; contract is not gated on client traffic",
						name),
				 errdetail("Clients that declare no API version use its tables as they are, and contract changes them; "
						   "zdm.gate_undeclared = ignore leaves them out of the gate."),
				 errhint("Set zdm.gate_undeclared = old to have contract wait until they are gone, "
						 "or have old clients declare a version that a later migration retires.")));
		return;
	}
	else if (version_old == NULL)
	{
		ereport(NOTICE,
				(errmsg("migration \"%s\" declares no API version it retires; contract is not gated on client traffic",
						name),
				 errhint("Give the migration \"versions\": {\"old\": ..., \"new\": ...} to have contract wait for old clients.")));
		return;
	}

	values[0] = CStringGetTextDatum(version_old);
	zdm_state_exec("SELECT least(coalesce(sum(requests) FILTER (WHERE version = $1), 0), 9223372036854775807)::int8,"
				   "       least(coalesce(sum(requests) FILTER (WHERE version = '" ZDM_UNDECLARED_VERSION "'), 0), 9223372036854775807)::int8,"
				   "       least(coalesce(sum(requests), 0), 9223372036854775807)::int8,"
				   "       coalesce(array_to_string(array(SELECT DISTINCT unnest(s) FROM"
				   "           (SELECT sources FROM zdm.api_version_distribution) d(s) ORDER BY 1), ', '), 'none')"
				   "  FROM zdm.api_version_distribution",
				   1, types, values, NULL, false, 1);
	tup = SPI_tuptable->vals[0];
	desc = SPI_tuptable->tupdesc;
	old_requests = DatumGetInt64(SPI_getbinval(tup, desc, 1, &isnull));
	undeclared = DatumGetInt64(SPI_getbinval(tup, desc, 2, &isnull));
	total = DatumGetInt64(SPI_getbinval(tup, desc, 3, &isnull));
	sources = SPI_getvalue(tup, desc, 4);

	/* (undeclared traffic is the retired shape's already: counted once) */
	if (strcmp(version_old, ZDM_UNDECLARED_VERSION) != 0)
		gate_count_undeclared(&old_requests, undeclared, &total);

	if (total <= 0)
	{
		why = psprintf("there is no client-version telemetry in the last %s", window_text());
		if (!force)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\" cannot be contracted: %s, so the share of API version \"%s\" is unknown",
							name, why, version_old),
					 errdetail("Sources: zdm.record_traffic() and, with shared_preload_libraries, statements of sessions that declare zdm.api_version; "
							   INT64_FORMAT " undeclared request(s) %s.", undeclared,
							   zdm_gate_undeclared == 1 ? "counted" : "ignored (zdm.gate_undeclared)"),
					 errhint("Feed traffic counts with zdm.record_traffic('%s', n), have clients declare their version, or override with zdm.contract('%s', force => true).",
							 version_old, name)));
	}
	else
	{
		share = (double) old_requests / (double) total;
		if (share >= zdm_contract_threshold)
		{
			why = psprintf("API version \"%s\" carries %.2f%% of requests (" INT64_FORMAT " of " INT64_FORMAT ") in the last %s, at or above zdm.contract_threshold %.2f%%",
						   version_old, share * 100, old_requests, total, window_text(),
						   zdm_contract_threshold * 100);
			if (!force)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("migration \"%s\" cannot be contracted: %s", name, why),
						 errdetail("Sources: %s; undeclared requests %s (zdm.gate_undeclared).",
								   sources, zdm_gate_undeclared == 1 ? "counted as the old version's" : "left out"),
						 errhint("Wait until old clients have upgraded (see zdm.api_version_distribution), or override with zdm.contract('%s', force => true).",
								 name)));
		}
	}

	if (why != NULL)
	{
		zdm_log_event(name, "gate_override", NULL, NULL, NULL, -1,
					  psprintf("forced by %s: %s", GetUserNameFromId(GetUserId(), false), why));
		ereport(NOTICE,
				(errmsg("migration \"%s\" contracted by force although %s", name, why)));
	}
}

/*
 * zdm.contract_gate(): for each migration that retires an API version and
 * is neither contracted nor rolled back, what the gate counts now (the
 * retired version's requests and the total, undeclared ones as
 * zdm.gate_undeclared says), the share, zdm.contract_threshold, and
 * whether the gate would let contract go ahead.  The share is NULL when
 * there is no telemetry in the window, and the gate is then shut.  With
 * zdm.gate_undeclared = old, a migration that introduces a version and
 * retires none by name retires "(undeclared)" (see zdm_gate_check).
 */
Datum
zdm_contract_gate(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	InitMaterializedSRF(fcinfo, 0);
	SPI_connect();
	zdm_state_query("WITH d AS ("
					"  SELECT version, requests FROM zdm.api_version_distribution"
					"), t AS ("
					"  SELECT least(coalesce(sum(requests) FILTER (WHERE version = '" ZDM_UNDECLARED_VERSION "'), 0),"
					"               9223372036854775807)::int8 AS undeclared,"
					"         least(coalesce(sum(requests), 0), 9223372036854775807)::int8 AS total"
					"    FROM d"
					")"
					" SELECT m.name, m.phase, coalesce(m.version_old, '" ZDM_UNDECLARED_VERSION "'),"
					"        least(coalesce((SELECT sum(d.requests) FROM d"
					"                         WHERE d.version = coalesce(m.version_old, '" ZDM_UNDECLARED_VERSION "')), 0),"
					"              9223372036854775807)::int8,"
					"        t.undeclared, t.total"
					"   FROM zdm.migrations m, t"
					"  WHERE (m.version_old IS NOT NULL OR"
					"         (m.version_new IS NOT NULL AND current_setting('zdm.gate_undeclared') = 'old'))"
					"    AND m.phase NOT IN ('contracted', 'rolled_back')"
					"  ORDER BY m.name",
					true, 0);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		Datum		values[8];
		bool		nulls[8] = {false};
		bool		isnull;
		int64		old_requests = DatumGetInt64(SPI_getbinval(tup, desc, 4, &isnull));
		int64		undeclared = DatumGetInt64(SPI_getbinval(tup, desc, 5, &isnull));
		int64		total = DatumGetInt64(SPI_getbinval(tup, desc, 6, &isnull));
		double		share = 0;

		if (strcmp(SPI_getvalue(tup, desc, 3), ZDM_UNDECLARED_VERSION) != 0)
			gate_count_undeclared(&old_requests, undeclared, &total);
		if (total > 0)
			share = (double) old_requests / (double) total;
		values[0] = CStringGetTextDatum(SPI_getvalue(tup, desc, 1));
		values[1] = CStringGetTextDatum(SPI_getvalue(tup, desc, 2));
		values[2] = CStringGetTextDatum(SPI_getvalue(tup, desc, 3));
		values[3] = Int64GetDatum(old_requests);
		values[4] = Int64GetDatum(total > 0 ? total : 0);
		values[5] = Float8GetDatum(share);
		nulls[5] = total <= 0;
		values[6] = Float8GetDatum(zdm_contract_threshold);
		values[7] = BoolGetDatum(total > 0 && share < zdm_contract_threshold);
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	SPI_finish();
	return (Datum) 0;
}

/* A Prometheus label value: backslash, quote and newline escaped. */
static char *
prom_label(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	for (; *s; s++)
	{
		if (*s == '\\' || *s == '"')
			appendStringInfoChar(&buf, '\\');
		if (*s == '\n')
		{
			appendStringInfoString(&buf, "\\n");
			continue;
		}
		appendStringInfoChar(&buf, *s);
	}
	return buf.data;
}

/*
 * One metric family from the last SPI result: label values from column
 * 1 (and 2 when label2 is given), the value from column valcol.
 */
static void
prom_family(StringInfo out, const char *name, const char *type, const char *help,
			const char *label, const char *label2, int valcol)
{
	appendStringInfo(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;

		appendStringInfo(out, "%s{%s=\"%s\"", name, label, prom_label(SPI_getvalue(tup, desc, 1)));
		if (label2)
			appendStringInfo(out, ",%s=\"%s\"", label2, prom_label(SPI_getvalue(tup, desc, 2)));
		appendStringInfo(out, "} %s\n", valcol > 0 ? SPI_getvalue(tup, desc, valcol) : "1");
	}
}

Datum
zdm_metrics(PG_FUNCTION_ARGS)
{
	StringInfoData out;

	initStringInfo(&out);
	SPI_connect();

	/* Grouped: a 0.5 view (before ALTER EXTENSION UPDATE) may show "(undeclared)" twice. */
	zdm_state_query("SELECT version, least(sum(requests), 9223372036854775807)::int8, coalesce(sum(share), 0)"
					"  FROM zdm.api_version_distribution GROUP BY version ORDER BY version",
					true, 0);
	prom_family(&out, "zdm_api_requests", "gauge",
				"Requests per API version over zdm.gate_window.", "version", NULL, 2);
	prom_family(&out, "zdm_api_request_share", "gauge",
				"Share of requests per API version over zdm.gate_window (0 to 1).", "version", NULL, 3);

	zdm_state_query("SELECT name, phase, rows_done, coalesce(rows_per_sec, 0), (throttle_reason IS NOT NULL)::int"
					"  FROM zdm.status ORDER BY name", true, 0);
	prom_family(&out, "zdm_migration_phase", "gauge",
				"1 for the phase each migration is in.", "migration", "phase", 0);
	prom_family(&out, "zdm_backfill_rows_total", "counter",
				"Rows each migration's backfill has converted.", "migration", NULL, 3);
	prom_family(&out, "zdm_backfill_rows_per_second", "gauge",
				"Recent backfill rate of each migration.", "migration", NULL, 4);
	prom_family(&out, "zdm_backfill_throttled", "gauge",
				"1 while a migration's backfill waits for a health signal.", "migration", NULL, 5);

	/* The contract gate of each migration that retires a version (NaN: no telemetry). */
	if (OidIsValid(zdm_function_oid("contract_gate", 0, NULL)))
	{
		zdm_state_query("SELECT migration, retires, coalesce(share, 'NaN'), threshold, total"
						"  FROM zdm.contract_gate() ORDER BY migration", true, 0);
		prom_family(&out, "zdm_contract_gate_share", "gauge",
					"Share of the requests the gate counts that come from the API version the migration retires (0 to 1).",
					"migration", "version", 3);
		prom_family(&out, "zdm_contract_gate_threshold", "gauge",
					"zdm.contract_threshold: contract goes ahead when the share is below it.",
					"migration", "version", 4);
		prom_family(&out, "zdm_contract_gate_requests", "gauge",
					"Requests the share is computed over, in zdm.gate_window (0: no telemetry, contract is refused).",
					"migration", "version", 5);

		zdm_state_query("SELECT coalesce(d.migration, ''), n.nspname || '.' || c.relname, d.dual_writing::int"
						"  FROM zdm.dual_write_triggers d"
						"  JOIN pg_catalog.pg_class c ON c.oid = d.relation"
						"  JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace"
						" ORDER BY 1, 2", true, 0);
		prom_family(&out, "zdm_dual_write_active", "gauge",
					"1 for each dual-write trigger that dual-writes; 0 for one that refuses writes (zdm knows no live migration of its name) or is disabled.",
					"migration", "table", 3);
	}

	/* What the backfill's pacing measures (pace.c), with shared_preload_libraries. */
	{
		uint64		commits;
		uint64		us;

		if (zdm_pace_counters(&commits, &us))
			appendStringInfo(&out,
							 "# HELP zdm_client_commits_total Commits of client transactions that wrote.\n"
							 "# TYPE zdm_client_commits_total counter\n"
							 "zdm_client_commits_total " UINT64_FORMAT "\n"
							 "# HELP zdm_client_commit_seconds_total Time those commits took "
							 "(the commit record and its WAL flush).\n"
							 "# TYPE zdm_client_commit_seconds_total counter\n"
							 "zdm_client_commit_seconds_total %.6f\n",
							 commits, us / 1000000.0);
	}

	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}
