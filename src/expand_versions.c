/*-------------------------------------------------------------------------
 *
 * expand_versions.c
 *	  The API versions an expand retires and introduces: schemas and views.
 *
 *	  Each version is a schema holding one view per table, with the names
 *	  that version's clients use (versions.c has what other phases need).
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/relation.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_index.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "mb/pg_wchar.h"
#include "nodes/makefuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_type.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"


/* Does this table get views in the version schemas? */
bool
expand_has_views(ExpandState *st, TableWork *tw)
{
	return st->version_new != NULL && OidIsValid(tw->relid) &&
		(tw->hidden_in_new != NIL || tw->new_physical != NIL);
}

/* Is there a view of the table in the version's schema already? */
bool
expand_view_exists(TableWork *tw, const char *version)
{
	Oid			nsp = get_namespace_oid(version, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid(tw->name, nsp));
}

/*
 * The views of the table that expand drops and creates again: the
 * versions' views of a table whose columns the new version sees changed.
 */
List *
expand_replaced_views(ExpandState *st, TableWork *tw)
{
	List	   *views = NIL;
	const char *versions[2] = {st->version_old, st->version_new};

	if (st->version_new == NULL)
		return NIL;
	for (int i = 0; i < 2; i++)
		if (versions[i] && expand_view_exists(tw, versions[i]))
			views = lappend_oid(views, get_relname_relid(tw->name, get_namespace_oid(versions[i], false)));
	return views;
}

char *
expand_view_name(TableWork *tw, const char *version)
{
	return psprintf("%s.%s", quote_identifier(version), quote_identifier(tw->name));
}

/*
 * The privileges of a version's view.  The views are security_invoker, so
 * reading or writing through one checks the caller's rights on the table
 * (and its row-level security), column by column: granting the view itself
 * to PUBLIC makes its privileges exactly the table's, now and after any
 * later GRANT or REVOKE on the table, with nothing to keep in step.
 */
char *
expand_view_grant_sql(TableWork *tw, const char *version)
{
	return psprintf("GRANT SELECT, INSERT, UPDATE, DELETE ON %s TO PUBLIC", expand_view_name(tw, version));
}

/*
 * CREATE VIEW of a table as one version sees it: the old version, the
 * table as it was; the new one, without the columns the migration retires
 * and with the new ones under their visible names, in the old one's place
 * when a column changed in place.
 */
char *
expand_view_sql(TableWork *tw, const char *version, bool newer)
{
	StringInfoData buf;
	bool		first = true;
	ListCell   *lc,
			   *lc2;

	initStringInfo(&buf);
	appendStringInfo(&buf, "CREATE VIEW %s WITH (security_invoker = true) AS SELECT ",
					 expand_view_name(tw, version));
	for (int i = 0; i < tw->reldesc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(tw->reldesc, i);
		char	   *name = NameStr(att->attname);

		if (att->attisdropped)
			continue;
		if (newer && zdm_str_in_list(tw->hidden_in_new, name))
		{
			/* changed in place: the new column takes the old one's place */
			forboth(lc, tw->new_physical, lc2, tw->new_visible)
				if (strcmp(lfirst(lc2), name) == 0)
				{
					appendStringInfo(&buf, "%s%s AS %s", first ? "" : ", ",
									 qcol(lfirst(lc)), qcol(name));
					first = false;
				}
			continue;
		}
		appendStringInfo(&buf, "%s%s", first ? "" : ", ", qcol(name));
		first = false;
	}
	if (newer)
		forboth(lc, tw->new_physical, lc2, tw->new_visible)
		{
			if (zdm_str_in_list(tw->hidden_in_new, lfirst(lc2)))
				continue;		/* placed above */
			appendStringInfo(&buf, "%s%s", first ? "" : ", ", qcol(lfirst(lc)));
			if (strcmp(lfirst(lc), lfirst(lc2)) != 0)
				appendStringInfo(&buf, " AS %s", qcol(lfirst(lc2)));
			first = false;
		}
	appendStringInfo(&buf, " FROM %s", tw->qualname);
	return buf.data;
}

/* A string member of a JSON object, or NULL (of another type too). */
static char *
string_member(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL || v->type != jbvString)
		return NULL;
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/*
 * Does an operation change a column in place: an alter_column without a
 * new "name" (or with the column's own), as pgroll writes every one?  Such
 * a column has two shapes under one name while the migration is live, and
 * only versions' views can show both.  Malformed operations are left to
 * expand_check_operations, which reports them.
 */
static bool
changes_in_place(JsonbContainer *root)
{
	JsonbValue *ops = getKeyJsonValueFromContainer(root, "operations", strlen("operations"), NULL);

	if (ops == NULL || ops->type != jbvBinary || !JsonContainerIsArray(ops->val.binary.data))
		return false;
	for (int i = 0; i < JsonContainerSize(ops->val.binary.data); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(ops->val.binary.data, i);
		JsonbValue *body;
		char	   *column;
		char	   *name;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			continue;
		body = getKeyJsonValueFromContainer(v->val.binary.data, "alter_column", strlen("alter_column"), NULL);
		if (body == NULL || body->type != jbvBinary || !JsonContainerIsObject(body->val.binary.data))
			continue;
		column = string_member(body->val.binary.data, "column");
		name = string_member(body->val.binary.data, "name");
		if (column != NULL && (name == NULL || strcmp(name, column) == 0))
			return true;
	}
	return false;
}

/*
 * Resolve the migration's API versions (see versions.c) and the schemas of
 * views they need, refusing names that clash with schemas not zdm's.
 *
 * A migration that declares none but changes a column in place (pgroll's
 * files all do) gets them implicitly, as pgroll gives every migration a
 * version schema named after it: the new version is the migration's name,
 * the old one the latest live version, if any (else the old shape is the
 * tables themselves, as clients that declare no version use them).
 */
void
expand_resolve_versions(ExpandState *st, JsonbContainer *root)
{
	static const char *const keys[] = {"old", "new", NULL};
	JsonbContainer *vers = zdm_json_object(&st->ctx, root, "versions", false);
	char	   *vschema = zdm_json_string(&st->ctx, root, "version_schema", false);
	char	   *both[2];

	if (vers == NULL && vschema == NULL)
	{
		if (!changes_in_place(root))
			return;
		st->versions_implicit = true;
	}
	if (vers)
	{
		zdm_json_check_keys(&st->ctx, vers, "\"versions\"", keys, NULL);
		st->version_new = zdm_json_string(&st->ctx, vers, "new", false);
		st->version_old = zdm_json_string(&st->ctx, vers, "old", false);
	}
	if (st->version_new == NULL)
		st->version_new = vschema ? vschema : pstrdup(st->migration);
	if (st->version_old && strcmp(st->version_old, st->version_new) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"versions\" names \"%s\" as both the old and the new API version",
						st->migration, st->version_old),
				 errhint("\"old\" is the version the migration retires and \"new\" the one it introduces; "
						 "give the new one another name, or leave \"old\" out.")));
	if (st->version_old == NULL)
		st->version_old = zdm_previous_version();
	if (st->version_old && strcmp(st->version_old, st->version_new) == 0)
		st->version_old = NULL;

	both[0] = st->version_old;
	both[1] = st->version_new;
	for (int i = 0; i < 2; i++)
	{
		char	   *v = both[i];
		char	   *schema = NULL;
		char	   *retired_by = NULL;

		if (v == NULL)
			continue;
		if (strlen(v) >= NAMEDATALEN)
			ereport(ERROR,
					(errcode(ERRCODE_NAME_TOO_LONG),
					 errmsg("migration \"%s\": API version name \"%s\" is too long", st->migration, v),
					 st->versions_implicit && i == 1 ?
					 errhint("The migration changes a column in place and declares no \"versions\", so its new API version is named after it; "
							 "version names are at most %d bytes (they name schemas): give the migration a shorter name, or declare \"versions\": {\"new\": ...}.",
							 NAMEDATALEN - 1) :
					 errhint("Version names are at most %d bytes; they name schemas.", NAMEDATALEN - 1)));
		if (zdm_version_lookup(v, &schema, &retired_by) && retired_by != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
					 errmsg("migration \"%s\": API version \"%s\" was already retired by migration \"%s\"",
							st->migration, v, retired_by),
					 errhint("Name a live version as \"old\", and a new name as \"new\".")));
		if (schema == NULL && OidIsValid(get_namespace_oid(v, true)))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_SCHEMA),
					 errmsg("migration \"%s\": API version \"%s\" needs a schema of that name, and schema \"%s\" exists already",
							st->migration, v, v),
					 st->versions_implicit && i == 1 ?
					 errhint("The migration changes a column in place and declares no \"versions\", so its new API version, and the schema of its views, "
							 "are named after it: give the migration another name, or declare \"versions\": {\"new\": ...}.") :
					 errhint("zdm keeps each version's views in a schema named after it; choose another version name.")));
		if (schema == NULL)
			st->schemas = lappend(st->schemas, v);
	}
}

/* Record the versions in zdm.api_versions (in the expand's transaction). */
void
expand_save_versions(ExpandState *st)
{
	bool		views = false;
	ListCell   *lc;
	char	   *both[2] = {st->version_old, st->version_new};

	foreach(lc, st->tables)
		views = views || expand_has_views(st, lfirst(lc));
	for (int i = 0; i < 2; i++)
	{
		Oid			types[3] = {TEXTOID, TEXTOID, TEXTOID};
		Datum		values[3];
		char		nulls[3] = {' ', views ? ' ' : 'n', i == 1 ? ' ' : 'n'};

		if (both[i] == NULL)
			continue;
		values[0] = CStringGetTextDatum(both[i]);
		values[1] = CStringGetTextDatum(both[i]);
		values[2] = CStringGetTextDatum(st->migration);
		zdm_state_exec("INSERT INTO zdm.api_versions AS v (version, schema_name, introduced_by)"
					   " VALUES ($1, $2, $3) ON CONFLICT (version) DO UPDATE"
					   " SET schema_name = coalesce(v.schema_name, EXCLUDED.schema_name)",
					   3, types, values, nulls, false, 0);
	}
}
