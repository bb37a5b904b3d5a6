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
#include "parser/parser.h"
#include "utils/builtins.h"
#include "utils/formatting.h"
#include "utils/guc.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

/* A new table's columns may be generated, unlike add_column's. */
static const char *const column_keys[] = {"name", "type", "nullable", "default", "check", "comment",
"pk", "unique", "generated", NULL};
static const char *const column_unsupported[] = {"references", NULL};

/* "sequence_options" must be CREATE SEQUENCE's options, and no more. */
static void
check_sequence_options(ExpandState *st, const char *col, const char *options)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *stmts = NIL;
	bool		ok;

	PG_TRY();
	{
		stmts = raw_parser(psprintf("CREATE SEQUENCE zdm_check %s\n", options), RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		stmts = NIL;
	}
	PG_END_TRY();
	ok = list_length(stmts) == 1 &&
		IsA(((RawStmt *) linitial(stmts))->stmt, CreateSeqStmt) &&
		strchr(options, ';') == NULL;
	if (!ok)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("migration \"%s\": \"sequence_options\" of identity column \"%s\" are not sequence options: %s",
						st->migration, col, options),
				 errhint("Write them as in CREATE SEQUENCE, e.g. \"START WITH 1000 INCREMENT BY 10\".")));
}

/*
 * "generated": an identity column, or a stored generated one.  Either is
 * fine on a table no client uses yet (on an existing table a stored
 * generated column would be computed for every row under ACCESS
 * EXCLUSIVE: add_column refuses it).  "sequence_options" is SQL: it must
 * parse as CREATE SEQUENCE's options, and nothing else, before it goes
 * into the statement.  An expression is checked once every column is
 * known (it may name later ones): *expr gets its text.
 */
static char *
generated_clause(ExpandState *st, JsonbContainer *c, const char *col, bool nullable,
				 char **expr)
{
	static const char *const keys[] = {"expression", "identity", NULL};
	static const char *const identity_keys[] = {"sequence_options", "user_specified_values", NULL};
	JsonbContainer *g = zdm_json_object(&st->ctx, c, "generated", true);
	char	   *expression = zdm_json_string(&st->ctx, g, "expression", false);
	JsonbContainer *identity;
	char	   *how,
			   *options;

	zdm_json_check_keys(&st->ctx, g, "\"generated\"", keys, NULL);
	*expr = NULL;
	if (expression && expression[0] != '\0' && zdm_json_has(g, "identity"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": column \"%s\" is both an identity and a generated column",
						st->migration, col),
				 errhint("Give \"generated\" either \"expression\" or \"identity\".")));
	if (expression && expression[0] != '\0')
	{
		*expr = expression;
		return psprintf(" GENERATED ALWAYS AS (%s\n) STORED", expression);
	}
	if (!zdm_json_has(g, "identity"))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"generated\" of column \"%s\" has neither \"expression\" nor \"identity\"",
						st->migration, col),
				 errhint("Give {\"identity\": {}} for an identity column, or {\"expression\": \"...\"}.")));
	if (nullable)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": identity column \"%s\" cannot be nullable", st->migration, col),
				 errhint("Leave \"nullable\" out: an identity column is NOT NULL.")));
	identity = zdm_json_object(&st->ctx, g, "identity", true);
	zdm_json_check_keys(&st->ctx, identity, "\"identity\"", identity_keys, NULL);
	how = zdm_json_string(&st->ctx, identity, "user_specified_values", false);
	if (how == NULL)
		how = "ALWAYS";
	if (strcmp(how, "ALWAYS") != 0 && strcmp(how, "BY DEFAULT") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"user_specified_values\" of identity column \"%s\" must be \"ALWAYS\" or \"BY DEFAULT\", not \"%s\"",
						st->migration, col, how),
				 errhint("pgroll's format spells them in capitals.")));
	options = zdm_json_string(&st->ctx, identity, "sequence_options", false);
	if (options == NULL || options[0] == '\0')
		return psprintf(" GENERATED %s AS IDENTITY", how);
	check_sequence_options(st, col, options);
	return psprintf(" GENERATED %s AS IDENTITY (%s\n)", how, options);
}

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
	List	   *generated = NIL;	/* pairs: column, expression */
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
		zdm_json_check_keys(&st->ctx, c, "a column", column_keys, column_unsupported);
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
		if (zdm_json_has(c, "generated"))
		{
			char	   *expr;

			if (dflt)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
						 errmsg("migration \"%s\": generated column \"%s\" cannot have a default",
								st->migration, col),
						 errhint("Remove \"default\": the column's values are generated.")));
			appendStringInfoString(&sql, generated_clause(st, c, col,
														  zdm_json_bool(&st->ctx, c, "nullable", false),
														  &expr));
			if (expr)
				generated = lappend(generated, list_make2(col, expr));
		}
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
	/* Generated columns' expressions, now that every column is known. */
	foreach(lc, generated)
	{
		char	   *col = linitial(lfirst(lc));
		char	   *what = psprintf("generation expression of column \"%s\"", col);
		AttrNumber	attnum = expand_desc_attnum(tw->desc, col);
		Form_pg_attribute att = TupleDescAttr(tw->desc, attnum - 1);
		Node	   *expr = zdm_expr_analyze(st->migration, what, tw->desc, tw->name,
											lsecond(lfirst(lc)), att->atttypid, att->atttypmod);

		if (contain_mutable_functions(expr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("migration \"%s\": the %s is not immutable", st->migration, what),
					 errhint("A stored generated column may use immutable functions only.")));
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
