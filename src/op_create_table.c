/*-------------------------------------------------------------------------
 *
 * op_create_table.c
 *	  create_table: a new table, created whole at expand.
 *
 *	  No client knows it yet: no lock but the catalog's, nothing to backfill.
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

static void
plan_create_table(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "name", true);
	JsonbContainer *columns = zdm_json_array(&st->ctx, op, "columns", true);
	char	   *comment = zdm_json_string(&st->ctx, op, "comment", false);
	StringInfoData sql;
	List	   *pk = NIL;
	List	   *checks = NIL;
	List	   *comments = NIL;
	TableWork  *tw;
	Oid			nspid;
	int			ncols = JsonContainerSize(columns);
	ListCell   *lc;

	if (expand_table_work(st, table, false) != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("migration \"%s\": create_table: table \"%s\" already exists",
						st->migration, table),
				 errhint("Choose another name, or drop the existing table first.")));
	if (strlen(table) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": table name \"%s\" is too long", st->migration, table),
				 errhint("Table names are at most %d bytes.", NAMEDATALEN - 1)));
	if (ncols == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": create_table \"%s\" has no columns", st->migration, table),
				 errhint("List the table's columns in \"columns\".")));

	nspid = RangeVarGetCreationNamespace(makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
													  pstrdup(table), -1));
	tw = palloc0(sizeof(TableWork));
	tw->relid = InvalidOid;
	tw->schema = get_namespace_name(nspid);
	tw->name = table;
	tw->qualname = quote_qualified_identifier(tw->schema, table);
	tw->desc = CreateTemplateTupleDesc(0);
	st->tables = lappend(st->tables, tw);

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE TABLE %s (", tw->qualname);
	for (int i = 0; i < ncols; i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(columns, i);
		JsonbContainer *c;
		char	   *col,
				   *type,
				   *dflt,
				   *typname;
		bool		is_pk,
					serial;
		Oid			typid = InvalidOid;
		int32		typmod = -1;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": column %d of create_table \"%s\" is not an object",
							st->migration, i + 1, table),
					 errhint("Each column is an object such as {\"name\": \"id\", \"type\": \"bigint\", \"pk\": true}.")));
		c = v->val.binary.data;
		zdm_json_check_keys(&st->ctx, c, "a column", expand_column_keys, expand_column_unsupported);
		col = zdm_json_string(&st->ctx, c, "name", true);
		type = zdm_json_string(&st->ctx, c, "type", true);
		dflt = zdm_json_string(&st->ctx, c, "default", false);
		is_pk = zdm_json_bool(&st->ctx, c, "pk", false);
		expand_claim_column(st, tw, col);

		/* serial and friends are not types, but CREATE TABLE knows them. */
		serial = (pg_strcasecmp(type, "serial") == 0 || pg_strcasecmp(type, "bigserial") == 0 ||
				  pg_strcasecmp(type, "smallserial") == 0 || pg_strcasecmp(type, "serial2") == 0 ||
				  pg_strcasecmp(type, "serial4") == 0 || pg_strcasecmp(type, "serial8") == 0);
		if (serial)
		{
			typname = str_tolower(type, strlen(type), DEFAULT_COLLATION_OID);
			typid = (pg_strcasecmp(type, "bigserial") == 0 || pg_strcasecmp(type, "serial8") == 0) ? INT8OID :
				(pg_strcasecmp(type, "smallserial") == 0 || pg_strcasecmp(type, "serial2") == 0) ? INT2OID : INT4OID;
			if (dflt)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": serial column \"%s\" cannot have a default",
								st->migration, col),
						 errhint("Remove \"default\": serial columns take their values from a sequence.")));
		}
		else
			expand_resolve_type(st, type, col, &typid, &typmod, &typname);

		appendStringInfo(&sql, "%s%s %s", i > 0 ? ", " : "", qcol(col), typname);
		if (dflt)
			appendStringInfo(&sql, " DEFAULT %s",
							 expand_check_default(st, tw, col, dflt, typid, typmod, false));
		if (is_pk)
			pk = lappend(pk, col);
		else if (!zdm_json_bool(&st->ctx, c, "nullable", false))
			appendStringInfoString(&sql, " NOT NULL");
		if (zdm_json_bool(&st->ctx, c, "unique", false))
			appendStringInfoString(&sql, " UNIQUE");
		if (zdm_json_has(c, "check"))
			checks = lappend(checks, zdm_json_object(&st->ctx, c, "check", true));
		if (zdm_json_has(c, "comment"))
			comments = lappend(comments,
							   psprintf("COMMENT ON COLUMN %s.%s IS %s", tw->qualname, qcol(col),
										quote_literal_cstr(zdm_json_string(&st->ctx, c, "comment", true))));
		tw->desc = expand_desc_add_column(tw->desc, col, typid, typmod);
	}
	/* The columns' checks, as table constraints of the new table. */
	foreach(lc, checks)
		appendStringInfo(&sql, ", %s", expand_add_check(st, tw, lfirst(lc), false));
	if (pk != NIL)
	{
		appendStringInfoString(&sql, ", PRIMARY KEY (");
		foreach(lc, pk)
			appendStringInfo(&sql, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
							 qcol(lfirst(lc)));
		appendStringInfoChar(&sql, ')');
	}
	appendStringInfoChar(&sql, ')');
	tw->expand = lappend(tw->expand, sql.data);
	tw->expand = list_concat(tw->expand, comments);
	if (comment)
		tw->expand = lappend(tw->expand, psprintf("COMMENT ON TABLE %s IS %s", tw->qualname,
												  quote_literal_cstr(comment)));
	tw->rollback = lappend(tw->rollback, psprintf("DROP TABLE %s", tw->qualname));
}

static const char *const create_table_keys[] = {"name", "columns", "comment", NULL};
static const char *const create_table_unsupported[] = {"constraints", NULL};

const ZdmOpKind zdm_op_create_table = {
	"create_table", create_table_keys, create_table_unsupported, NULL, plan_create_table
};
