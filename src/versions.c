/*-------------------------------------------------------------------------
 *
 * versions.c
 *	  API versions side by side: which versions a migration introduces and
 *	  retires, each version's schema of views, zdm.use_version(),
 *	  zdm.routing_map(), and the guard on a retired version's views.
 *
 * A migration may declare {"versions": {"old": "v3", "new": "v4"}}; "old"
 * defaults to the "new" of the latest migration that declared one, and
 * pgroll's "version_schema" stands for "new".  zdm.api_versions lists
 * every version, live until the contract that retires it.
 *
 * Every live version that a migration touches gets a schema named after
 * it, holding one view per migrated table (security_invoker, so row-level
 * security still applies; simple enough to stay auto-updatable, so the
 * base table's defaults and constraints apply to writes through it) that
 * shows the columns under the names that version expects.  That is what
 * lets a migration change a column in place: the new version's view shows
 * a physically new column under the old name, while the old version's
 * view still shows the old one.
 *
 * When contract retires a version, its views are replaced by guards that
 * raise an error naming the migration that retired it, on read and on
 * write: a client still pinned to the old version fails loudly instead of
 * reading silently wrong data.
 *
 * A client declares its version with zdm.use_version() for its session, or
 * with is_local for the current transaction only (as set_config() does).
 * Behind a pooler in transaction mode a server connection serves many
 * clients in turn, and a session-level declaration stays on it for the
 * next client; a transaction-local one ends with the transaction that made
 * it, whoever runs the next.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/trigger.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/varlena.h"

PG_FUNCTION_INFO_V1(zdm_use_version);
PG_FUNCTION_INFO_V1(zdm_routing_map);
PG_FUNCTION_INFO_V1(zdm_version_retired);
PG_FUNCTION_INFO_V1(zdm_version_retired_check);

/* The "new" version of the latest live migration that declared one. */
char *
zdm_previous_version(void)
{
	zdm_state_query("SELECT version_new FROM zdm.migrations"
					" WHERE version_new IS NOT NULL AND phase <> 'rolled_back'"
					" ORDER BY expanded_at DESC, name DESC LIMIT 1", true, 1);
	if (SPI_processed == 0)
		return NULL;
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/* A version's row: *retired_by set when retired; false when unknown. */
bool
zdm_version_lookup(const char *version, char **schema, char **retired_by)
{
	Oid			types[1] = {TEXTOID};
	Datum		values[1] = {CStringGetTextDatum(version)};

	zdm_state_exec("SELECT schema_name, retired_by FROM zdm.api_versions WHERE version = $1",
				   1, types, values, NULL, true, 1);
	if (SPI_processed == 0)
		return false;
	if (schema)
		*schema = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	if (retired_by)
		*retired_by = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	return true;
}

/*
 * The statements that make a retired version's view of a table the guard
 * that raises (contract, once the version is retired; and again when a
 * later migration changes the table's columns).  Every client reaches the
 * guard and gets its error, never a permission error: it returns no row
 * (its condition raises before any row is read) and writes none.
 */
List *
zdm_guard_view_sql(const char *qualname, const char *table, const char *version,
				   const char *migration)
{
	char	   *view = psprintf("%s.%s", quote_identifier(version), quote_identifier(table));

	return list_make3(psprintf("CREATE VIEW %s AS SELECT * FROM %s WHERE zdm.version_retired_check(%s, %s)",
							   view, qualname, quote_literal_cstr(version), quote_literal_cstr(migration)),
					  psprintf("CREATE TRIGGER zdm_version_retired INSTEAD OF INSERT OR UPDATE OR DELETE ON %s"
							   " FOR EACH ROW EXECUTE FUNCTION zdm.version_retired(%s, %s)",
							   view, quote_literal_cstr(version), quote_literal_cstr(migration)),
					  psprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO PUBLIC", view));
}

/* Live versions, for hints. */
static char *
live_versions(void)
{
	zdm_state_query("SELECT coalesce(string_agg(version, ', ' ORDER BY created_at, version), 'none')"
					"  FROM zdm.api_versions WHERE retired_by IS NULL", true, 1);
	return SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
}

/*
 * zdm.use_version(version, is_local): set zdm.api_version and put the
 * version's schema first on search_path, for the session or, with
 * is_local, for the current transaction.  Also called through the
 * one-argument declaration of zdm 0.3 to 0.5, until ALTER EXTENSION.
 */
Datum
zdm_use_version(PG_FUNCTION_ARGS)
{
	char	   *version;
	bool		is_local = false;
	char	   *schema = NULL;
	char	   *retired_by = NULL;
	char	   *path;
	List	   *elems;
	ListCell   *lc;
	StringInfoData sp;
	GucAction	action;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("API version must not be null"),
				 errhint("Call zdm.use_version('v4') once per connection, or zdm.use_version('v4', true) once per transaction.")));
	version = text_to_cstring(PG_GETARG_TEXT_PP(0));
	if (PG_NARGS() > 1)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("is_local of API version \"%s\" must not be null", version),
					 errhint("Pass true to declare the version for the current transaction, false for the session.")));
		is_local = PG_GETARG_BOOL(1);
	}

	SPI_connect();
	if (!zdm_version_lookup(version, &schema, &retired_by))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("API version \"%s\" is not known", version),
				 errhint("Live versions: %s.  A version becomes known when a migration declaring it is expanded.",
						 live_versions())));
	if (retired_by != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("API version \"%s\" was retired by migration \"%s\"", version, retired_by),
				 errhint("This client is too old for the schema; upgrade it to one of: %s.", live_versions())));

	/*
	 * search_path: the version's schema first, then what was there minus
	 * any other version's schema.
	 */
	zdm_state_query("SELECT array_to_string(array_agg(quote_ident(schema_name)), ',')"
					"  FROM zdm.api_versions WHERE schema_name IS NOT NULL", true, 1);
	{
		char	   *all = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
		List	   *version_schemas = NIL;

		if (all)
			SplitIdentifierString(pstrdup(all), ',', &version_schemas);
		path = pstrdup(GetConfigOption("search_path", false, false));
		if (!SplitIdentifierString(path, ',', &elems))
			elems = NIL;
		initStringInfo(&sp);
		if (schema)
			appendStringInfoString(&sp, quote_identifier(schema));
		foreach(lc, elems)
		{
			char	   *e = lfirst(lc);
			bool		skip = false;
			ListCell   *lc2;

			foreach(lc2, version_schemas)
				if (strcmp(e, lfirst(lc2)) == 0)
					skip = true;
			if (skip)
				continue;
			appendStringInfo(&sp, "%s%s", sp.len > 0 ? ", " : "",
							 strcmp(e, "$user") == 0 ? "\"$user\"" : quote_identifier(e));
		}
	}
	SPI_finish();

	/*
	 * Outside a transaction block the transaction is the statement itself:
	 * the declaration would be gone before the client's next statement.
	 * SET LOCAL warns the same way.
	 */
	if (is_local && !IsTransactionBlock())
		ereport(WARNING,
				(errcode(ERRCODE_NO_ACTIVE_SQL_TRANSACTION),
				 errmsg("API version \"%s\" declared for a transaction that ends with this statement", version),
				 errhint("Call zdm.use_version(%s, true) after BEGIN, in the transaction whose statements it declares.",
						 quote_literal_cstr(version))));

	/* as set_config(name, value, is_local) does */
	action = is_local ? GUC_ACTION_LOCAL : GUC_ACTION_SET;
	(void) set_config_option("zdm.api_version", version, PGC_USERSET, PGC_S_SESSION,
							 action, true, 0, false);
	(void) set_config_option("search_path", sp.data, PGC_USERSET, PGC_S_SESSION,
							 action, true, 0, false);

	/* this statement is the declared version's, not the one before */
	zdm_telemetry_declared();

	PG_RETURN_TEXT_P(cstring_to_text(sp.data));
}

/*
 * The nginx map that routes requests by their API-Version header: the old
 * live version(s) to the old (blue) upstream, the newest and the default
 * to the new (green) one.
 */
Datum
zdm_routing_map(PG_FUNCTION_ARGS)
{
	char	   *old_up;
	char	   *new_up;
	char	   *header;
	StringInfoData out;

	if (PG_ARGISNULL(0) || PG_ARGISNULL(1) || PG_ARGISNULL(2))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("zdm.routing_map: upstream and header names must not be null"),
				 errhint("Leave them out for blue_upstream, green_upstream and api_version.")));
	old_up = text_to_cstring(PG_GETARG_TEXT_PP(0));
	new_up = text_to_cstring(PG_GETARG_TEXT_PP(1));
	header = text_to_cstring(PG_GETARG_TEXT_PP(2));
	for (const char *p = psprintf("%s%s%s", old_up, new_up, header); *p; p++)
		if (!(isalnum((unsigned char) *p) || *p == '_' || *p == '-' || *p == '.'))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("zdm.routing_map: names may contain only letters, digits, \"_\", \"-\" and \".\""),
					 errhint("Pass nginx upstream names, such as blue_upstream.")));
	if (old_up[0] == '\0' || new_up[0] == '\0' || header[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("zdm.routing_map: upstream and header names must not be empty"),
				 errhint("Leave them out for blue_upstream, green_upstream and api_version.")));

	SPI_connect();
	zdm_state_query("SELECT version, version = (SELECT version FROM zdm.api_versions WHERE retired_by IS NULL"
					"                             ORDER BY created_at DESC, version DESC LIMIT 1)"
					"  FROM zdm.api_versions WHERE retired_by IS NULL ORDER BY created_at, version", true, 0);
	initStringInfo(&out);
	appendStringInfo(&out, "map $http_%s $backend {\n", header);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *v = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		bool		newest = strcmp(SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 2), "t") == 0;
		StringInfoData q;

		/* nginx string: escape quotes and backslashes */
		initStringInfo(&q);
		for (const char *p = v; *p; p++)
		{
			if (*p == '"' || *p == '\\')
				appendStringInfoChar(&q, '\\');
			appendStringInfoChar(&q, *p);
		}
		appendStringInfo(&out, "    \"%s\" %s;\n", q.data, newest ? new_up : old_up);
	}
	appendStringInfo(&out, "    default %s;\n}\n", new_up);
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(out.data));
}

static void
retired_error(const char *version, const char *migration)
{
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("API version \"%s\" was retired by migration \"%s\"", version, migration),
			 errhint("This client reads a schema that no longer exists; upgrade it, and declare its version with zdm.use_version().")));
}

/* The WHERE of a retired version's views: raises, once per query. */
Datum
zdm_version_retired_check(PG_FUNCTION_ARGS)
{
	retired_error(PG_ARGISNULL(0) ? "?" : text_to_cstring(PG_GETARG_TEXT_PP(0)),
				  PG_ARGISNULL(1) ? "?" : text_to_cstring(PG_GETARG_TEXT_PP(1)));
	PG_RETURN_BOOL(false);
}

/* INSTEAD OF trigger of a retired version's views: raises on every write. */
Datum
zdm_version_retired(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo) || td->tg_trigger->tgnargs != 2)
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("zdm.version_retired() must be called as a trigger with two arguments"),
				 errhint("zdm.contract() installs it on the views of the versions it retires.")));
	retired_error(td->tg_trigger->tgargs[0], td->tg_trigger->tgargs[1]);
	return (Datum) 0;
}
