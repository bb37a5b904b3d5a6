/*-------------------------------------------------------------------------
 *
 * op_create_index.c
 *	  create_index: an index built CONCURRENTLY by the background worker.
 *
 * A plain CREATE INDEX holds a lock that blocks every write to the table
 * for the whole build; CREATE INDEX CONCURRENTLY blocks none (SHARE UPDATE
 * EXCLUSIVE) but cannot run in a transaction block, so it cannot run in
 * the expand's.  So the expand only checks the index, and plans it as a
 * deferred step (deferred.c): the background worker builds it once the
 * expand has committed and the backfill is done (it may index the
 * migration's new columns), and the migration is ready to contract when it
 * is built.  Contract has nothing to do; rollback drops it, concurrently,
 * once the rollback has committed.  On a table the migration creates,
 * which is empty until the expand commits, the index is built in the
 * expand with the table.
 *
 * Everything pgroll's format gives an index is checked at expand, against
 * the catalogs, so that the build does not fail hours later on a typo: the
 * table and its columns, the access method and what it supports (unique,
 * several columns, ordering), each column's collation and operator class
 * (with its parameters, validated by the operator class itself), the
 * storage parameters (validated by the access method), and the predicate
 * (one boolean expression over the table, immutable).  What cannot be known
 * before the build, duplicate values of a UNIQUE index, fails the step, and
 * the migration goes to phase "failed" with no INVALID index left behind.
 *
 * "columns" is what pgroll's schema gives: an array of IndexField objects
 * ({"column", "collate", "nulls", "opclass": {"name", "params"}, "sort"});
 * column names alone are accepted too, as older pgroll files write them, and
 * so is pgroll's later map of column to IndexField, for one column only
 * (jsonb keeps no key order, so the order of several would be lost).
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/amapi.h"
#include "access/reloptions.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_opclass.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parser.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/* Re-raise the current error with the migration, the index and what was checked. */
static void
rethrow(ExpandState *st, MemoryContext cxt, const char *index, const char *what)
{
	ErrorData  *edata;

	MemoryContextSwitchTo(cxt);
	edata = CopyErrorData();
	FlushErrorState();
	ereport(ERROR,
			(errcode(edata->sqlerrcode == ERRCODE_INTERNAL_ERROR ? ERRCODE_INVALID_PARAMETER_VALUE :
					 edata->sqlerrcode),
			 errmsg("migration \"%s\": create_index \"%s\": %s: %s", st->migration, index, what, edata->message),
			 edata->detail ? errdetail_internal("%s", edata->detail) : 0,
			 errhint("Correct the operation; nothing was changed.")));
}

/*
 * A list of reloptions as PostgreSQL's grammar reads "name = value, ...",
 * parsed by its parser from inside a statement of our own; the caller
 * writes the list out again from the parse tree (options_sql), so the text
 * given never reaches a statement as it was written.  element: the parsed
 * options of the index's column (operator class parameters) rather than
 * of the index (storage parameters).
 */
static List *
parse_options(ExpandState *st, const char *index, const char *what, const char *text, bool element)
{
	char	   *sql = element ?
		psprintf("CREATE INDEX i ON t (c o (%s\n))", text) :
		psprintf("CREATE INDEX i ON t (c) WITH (%s\n)", text);
	MemoryContext cxt = CurrentMemoryContext;
	List	   *parsed = NIL;
	IndexStmt  *stmt;
	IndexElem  *elem;

	PG_TRY();
	{
		parsed = raw_parser(sql, RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		rethrow(st, cxt, index, what);
	}
	PG_END_TRY();
	stmt = list_length(parsed) == 1 && IsA(((RawStmt *) linitial(parsed))->stmt, IndexStmt) ?
		(IndexStmt *) ((RawStmt *) linitial(parsed))->stmt : NULL;
	elem = stmt && list_length(stmt->indexParams) == 1 ? linitial(stmt->indexParams) : NULL;
	if (elem == NULL || stmt->whereClause != NULL || stmt->indexIncludingParams != NIL ||
		(element ? stmt->options != NIL : elem->opclassopts != NIL) ||
		elem->collation != NIL || elem->ordering != SORTBY_DEFAULT ||
		elem->nulls_ordering != SORTBY_NULLS_DEFAULT)
		ereport(ERROR,
				(errcode(ERRCODE_SYNTAX_ERROR),
				 errmsg("migration \"%s\": create_index \"%s\": %s is not a list of name = value: \"%s\"",
						st->migration, index, what, text),
				 errhint("Write them as PostgreSQL does, e.g. \"fillfactor = 70\".")));
	return element ? elem->opclassopts : stmt->options;
}

/* Options written back as SQL, each name and value quoted. */
static char *
options_sql(ExpandState *st, const char *index, const char *what, List *options)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, options)
	{
		DefElem    *def = lfirst(lc);

		if (def->defnamespace != NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": create_index \"%s\": %s: \"%s.%s\" is not a parameter of an index",
							st->migration, index, what, def->defnamespace, def->defname),
					 errhint("An index's parameters have no namespace: write \"%s\".", def->defname)));
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(def->defname));
		if (def->arg != NULL)
			appendStringInfo(&buf, " = %s", quote_literal_cstr(defGetString(def)));
	}
	return buf.data;
}

static char *qualified_name(int cacheid, Oid oid);

/* The operator class parameters, checked by the operator class's options procedure. */
static void
check_opclass_params(ExpandState *st, const char *index, const char *col, Oid opclass,
					 const IndexAmRoutine *am, List *params)
{
	MemoryContext cxt = CurrentMemoryContext;
	char	   *what = psprintf("parameters of the operator class of column \"%s\"", col);
	Oid			opfamily;
	Oid			opcintype;
	Oid			proc = InvalidOid;

	if (!get_opclass_opfamily_and_input_type(opclass, &opfamily, &opcintype))
		elog(ERROR, "cache lookup failed for operator class %u", opclass);
	if (am->amoptsprocnum != 0)
		proc = get_opfamily_proc(opfamily, opcintype, opcintype, am->amoptsprocnum);
	if (!OidIsValid(proc))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": create_index \"%s\": operator class \"%s\" of column \"%s\" has no parameters",
						st->migration, index, qualified_name(CLAOID, opclass), col),
				 errhint("Leave \"params\" out.")));
	PG_TRY();
	{
		local_relopts relopts;

		init_local_reloptions(&relopts, 0);
		(void) OidFunctionCall1(proc, PointerGetDatum(&relopts));
		(void) build_local_reloptions(&relopts,
									  transformRelOptions((Datum) 0, params, NULL, NULL, false, false),
									  true);
	}
	PG_CATCH();
	{
		rethrow(st, cxt, index, what);
	}
	PG_END_TRY();
}

/* A collation by name: "C", "en_US.utf8" (one name with a dot) or schema.name. */
static Oid
lookup_collation(ExpandState *st, const char *index, const char *col, const char *name)
{
	Oid			coll = get_collation_oid(list_make1(makeString(pstrdup(name))), true);
	List	   *names;

	if (!OidIsValid(coll) && strchr(name, '.') != NULL &&
		SplitIdentifierString(pstrdup(name), '.', &names) && list_length(names) == 2)
	{
		List	   *qualified = NIL;
		ListCell   *lc;

		foreach(lc, names)
			qualified = lappend(qualified, makeString(lfirst(lc)));
		coll = get_collation_oid(qualified, true);
	}
	if (!OidIsValid(coll))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": create_index \"%s\": collation \"%s\" of column \"%s\" does not exist",
						st->migration, index, name, col),
				 errhint("SELECT collname FROM pg_collation lists the collations; create it first, or correct the name.")));
	return coll;
}

/* A qualified, quoted name of a collation or an operator class by OID. */
static char *
qualified_name(int cacheid, Oid oid)
{
	HeapTuple	tup = SearchSysCache1(cacheid, ObjectIdGetDatum(oid));
	char	   *result;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for object %u", oid);
	if (cacheid == COLLOID)
	{
		Form_pg_collation c = (Form_pg_collation) GETSTRUCT(tup);

		result = quote_qualified_identifier(get_namespace_name(c->collnamespace), NameStr(c->collname));
	}
	else
	{
		Form_pg_opclass c = (Form_pg_opclass) GETSTRUCT(tup);

		result = quote_qualified_identifier(get_namespace_name(c->opcnamespace), NameStr(c->opcname));
	}
	ReleaseSysCache(tup);
	return result;
}

/* The type of an access method (AMTYPE_INDEX, AMTYPE_TABLE). */
static char
get_am_type(Oid amoid)
{
	HeapTuple	tup = SearchSysCache1(AMOID, ObjectIdGetDatum(amoid));
	char		type;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for access method %u", amoid);
	type = ((Form_pg_am) GETSTRUCT(tup))->amtype;
	ReleaseSysCache(tup);
	return type;
}

/* One of the words a key allows (compared without case), or an error. */
static char *
one_of(ExpandState *st, const char *index, const char *col, const char *key, const char *value,
	   const char *a, const char *b)
{
	if (pg_strcasecmp(value, a) == 0)
		return (char *) a;
	if (pg_strcasecmp(value, b) == 0)
		return (char *) b;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("migration \"%s\": create_index \"%s\": \"%s\" of column \"%s\" must be \"%s\" or \"%s\", not \"%s\"",
					st->migration, index, key, col, a, b, value),
			 errhint("Leave \"%s\" out for the default.", key)));
	return NULL;				/* keep compiler quiet */
}

/* One column of the index as SQL: name, collation, operator class, order. */
static char *
index_column(ExpandState *st, TableWork *tw, const char *index, Oid amoid, const char *method,
			 const IndexAmRoutine *am, const char *col, JsonbContainer *field)
{
	static const char *const field_keys[] = {"column", "collate", "nulls", "opclass", "sort", NULL};
	static const char *const opclass_keys[] = {"name", "params", NULL};
	StringInfoData buf;
	AttrNumber	attnum = expand_desc_attnum(tw->desc, col);
	Form_pg_attribute att;
	char	   *collate = NULL;
	char	   *sort = NULL;
	char	   *nulls = NULL;
	JsonbContainer *opclass = NULL;
	char	   *opcname = NULL;
	JsonbContainer *params = NULL;
	Oid			opclass_oid;
	MemoryContext cxt = CurrentMemoryContext;

	if (field != NULL)
	{
		zdm_json_check_keys(&st->ctx, field, psprintf("column \"%s\"", col), field_keys, NULL);
		collate = zdm_json_string(&st->ctx, field, "collate", false);
		sort = zdm_json_string(&st->ctx, field, "sort", false);
		nulls = zdm_json_string(&st->ctx, field, "nulls", false);
		if (zdm_json_present(field, "opclass"))
		{
			opclass = zdm_json_object(&st->ctx, field, "opclass", true);
			zdm_json_check_keys(&st->ctx, opclass, psprintf("\"opclass\" of column \"%s\"", col),
								opclass_keys, NULL);
			opcname = zdm_json_string(&st->ctx, opclass, "name", false);
			if (zdm_json_present(opclass, "params"))
				params = zdm_json_array(&st->ctx, opclass, "params", true);
		}
	}
	/* pgroll writes "" for "not given" */
	if (collate && collate[0] == '\0')
		collate = NULL;
	if (sort && sort[0] == '\0')
		sort = NULL;
	if (nulls && nulls[0] == '\0')
		nulls = NULL;
	if (opcname && opcname[0] == '\0')
		opcname = NULL;

	if (attnum == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("migration \"%s\": create_index \"%s\": column \"%s\" of table \"%s\" does not exist",
						st->migration, index, col, tw->name),
				 errhint("Correct the column's name; an index may name the columns the migration adds.")));
	if (zdm_str_in_list(tw->touched, col))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": create_index \"%s\": column \"%s\" of table \"%s\" is altered or dropped by this migration",
						st->migration, index, col, tw->name),
				 errhint("Contract would drop the index with the old column: index the new column, or create the index in a later migration.")));
	att = TupleDescAttr(tw->desc, attnum - 1);

	initStringInfo(&buf);
	appendStringInfoString(&buf, qcol(col));
	if (collate)
	{
		Oid			coll = lookup_collation(st, index, col, collate);

		if (!type_is_collatable(att->atttypid))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("migration \"%s\": create_index \"%s\": column \"%s\" is of type %s, which has no collation",
							st->migration, index, col, format_type_be(att->atttypid)),
					 errhint("Leave \"collate\" out for this column.")));
		appendStringInfo(&buf, " COLLATE %s", qualified_name(COLLOID, coll));
	}

	/* The operator class: the one named, or the type's default for the method. */
	PG_TRY();
	{
		List	   *names = NIL;

		if (opcname)
		{
			List	   *parts;
			ListCell   *lc;

			if (!SplitIdentifierString(pstrdup(opcname), '.', &parts))
				parts = list_make1(pstrdup(opcname));
			foreach(lc, parts)
				names = lappend(names, makeString(lfirst(lc)));
		}
		opclass_oid = ResolveOpClass(names, att->atttypid, method, amoid);
	}
	PG_CATCH();
	{
		rethrow(st, cxt, index, psprintf("operator class of column \"%s\"", col));
	}
	PG_END_TRY();
	if (opcname || params)
		appendStringInfo(&buf, " %s", qualified_name(CLAOID, opclass_oid));
	if (params && JsonContainerSize(params) > 0)
	{
		StringInfoData text;
		List	   *options;

		initStringInfo(&text);
		for (int i = 0; i < JsonContainerSize(params); i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(params, i);

			if (v->type != jbvString)
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("migration \"%s\": create_index \"%s\": element %d of \"params\" of column \"%s\" must be a string, not %s",
								st->migration, index, i + 1, col, zdm_json_type_name(v)),
						 errhint("Write each parameter as \"name = value\", e.g. \"siglen = 32\".")));
			appendStringInfo(&text, "%s%.*s", i > 0 ? ", " : "", v->val.string.len, v->val.string.val);
		}
		options = parse_options(st, index, psprintf("\"params\" of column \"%s\"", col), text.data, true);
		check_opclass_params(st, index, col, opclass_oid, am, options);
		appendStringInfo(&buf, " (%s)", options_sql(st, index, "params", options));
	}

	if (sort)
	{
		sort = one_of(st, index, col, "sort", sort, "ASC", "DESC");
		if (!am->amcanorder)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": create_index \"%s\": access method \"%s\" does not support \"sort\" (column \"%s\")",
							st->migration, index, method, col),
					 errhint("Only ordered access methods (btree) take ASC or DESC; leave \"sort\" out.")));
		appendStringInfo(&buf, " %s", sort);
	}
	if (nulls)
	{
		nulls = one_of(st, index, col, "nulls", nulls, "FIRST", "LAST");
		if (!am->amcanorder)
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": create_index \"%s\": access method \"%s\" does not support \"nulls\" (column \"%s\")",
							st->migration, index, method, col),
					 errhint("Only ordered access methods (btree) take NULLS FIRST or LAST; leave \"nulls\" out.")));
		appendStringInfo(&buf, " NULLS %s", nulls);
	}
	return buf.data;
}

static void
plan_create_index(ExpandState *st, JsonbContainer *op)
{
	char	   *name = zdm_json_string(&st->ctx, op, "name", true);
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	bool		unique = zdm_json_bool(&st->ctx, op, "unique", false);
	char	   *method = zdm_json_string(&st->ctx, op, "method", false);
	char	   *predicate = zdm_json_string(&st->ctx, op, "predicate", false);
	char	   *storage = zdm_json_string(&st->ctx, op, "storage_parameters", false);
	JsonbValue *columns = getKeyJsonValueFromContainer(op, "columns", strlen("columns"), NULL);
	TableWork  *tw;
	Oid			amoid;
	IndexAmRoutine *am;
	StringInfoData cols;
	StringInfoData sql;
	char	   *qindex;
	int			ncols;

	if (method == NULL || method[0] == '\0')
		method = "btree";
	if (predicate && predicate[0] == '\0')
		predicate = NULL;
	if (storage && storage[0] == '\0')
		storage = NULL;

	tw = expand_table_work(st, table, true);
	if (OidIsValid(tw->relid) && get_rel_relkind(tw->relid) == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": create_index \"%s\" on partitioned table \"%s\" is not supported by zdm yet",
						st->migration, name, tw->name),
				 errhint("PostgreSQL cannot build an index on a partitioned table CONCURRENTLY: build one on each partition "
						 "with CREATE INDEX CONCURRENTLY, then the parent's ON ONLY and ATTACH PARTITION each.")));
	expand_claim_relname(st, tw->schema, name, "index");
	/* PostgreSQL asks it of the build; the build runs as the migration's author, now the caller */
	if (pg_namespace_aclcheck(get_namespace_oid(tw->schema, false), GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("migration \"%s\": create_index \"%s\": permission denied to create an index in schema \"%s\"",
						st->migration, name, tw->schema),
				 errdetail("An index is created in its table's schema, which needs the CREATE privilege on it, as well as owning the table."),
				 errhint("GRANT CREATE ON SCHEMA %s TO %s;", quote_identifier(tw->schema),
						 quote_identifier(zdm_current_role_name()))));
	qindex = quote_qualified_identifier(tw->schema, name);

	amoid = get_am_oid(method, true);
	if (!OidIsValid(amoid) || get_am_type(amoid) != AMTYPE_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": create_index \"%s\": index access method \"%s\" does not exist",
						st->migration, name, method),
				 errhint("Use btree, hash, gist, spgist, gin or brin, or an index access method an extension installed.")));
	am = GetIndexAmRoutineByAmId(amoid, false);
	if (unique && !am->amcanunique)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": create_index \"%s\": access method \"%s\" does not support unique indexes",
						st->migration, name, method),
				 errhint("Use btree for a unique index.")));

	/* "columns": IndexFields, names, or (one) column: IndexField */
	if (columns == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": create_index \"%s\" has no \"columns\"", st->migration, name),
				 errhint("List the indexed columns: \"columns\": [{\"column\": \"name\"}].")));
	initStringInfo(&cols);
	if (columns->type == jbvBinary && JsonContainerIsObject(columns->val.binary.data))
	{
		JsonbIterator *it = JsonbIteratorInit(columns->val.binary.data);
		JsonbValue	k;
		JsonbValue *field;
		char	   *col;

		ncols = JsonContainerSize(columns->val.binary.data);
		if (ncols != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": create_index \"%s\": \"columns\" as an object must name one column, not %d",
							st->migration, name, ncols),
					 errdetail("A jsonb object keeps no order of its keys, and the order of an index's columns matters."),
					 errhint("Write \"columns\" as an array: [{\"column\": \"a\"}, {\"column\": \"b\"}].")));
		(void) JsonbIteratorNext(&it, &k, true);	/* WJB_BEGIN_OBJECT */
		(void) JsonbIteratorNext(&it, &k, true);	/* WJB_KEY */
		col = pnstrdup(k.val.string.val, k.val.string.len);
		field = getKeyJsonValueFromContainer(columns->val.binary.data, col, strlen(col), NULL);
		if (field->type != jbvBinary || !JsonContainerIsObject(field->val.binary.data))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": create_index \"%s\": the settings of column \"%s\" must be an object",
							st->migration, name, col),
					 errhint("Write {\"%s\": {}} for none, or e.g. {\"%s\": {\"sort\": \"DESC\"}}.", col, col)));
		appendStringInfoString(&cols, index_column(st, tw, name, amoid, method, am, col,
												   field->val.binary.data));
	}
	else if (columns->type == jbvBinary && JsonContainerIsArray(columns->val.binary.data))
	{
		JsonbContainer *arr = columns->val.binary.data;

		ncols = JsonContainerSize(arr);
		if (ncols == 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": create_index \"%s\" has no columns", st->migration, name),
					 errhint("List the indexed columns: \"columns\": [{\"column\": \"name\"}].")));
		if (ncols > INDEX_MAX_KEYS)
			ereport(ERROR,
					(errcode(ERRCODE_TOO_MANY_COLUMNS),
					 errmsg("migration \"%s\": create_index \"%s\" has %d columns; an index has at most %d",
							st->migration, name, ncols, INDEX_MAX_KEYS),
					 errhint("Index fewer columns.")));
		for (int i = 0; i < ncols; i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(arr, i);
			char	   *col;
			JsonbContainer *field = NULL;

			if (v->type == jbvString)
				col = pnstrdup(v->val.string.val, v->val.string.len);
			else if (v->type == jbvBinary && JsonContainerIsObject(v->val.binary.data))
			{
				field = v->val.binary.data;
				col = zdm_json_string(&st->ctx, field, "column", true);
			}
			else
				ereport(ERROR,
						(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						 errmsg("migration \"%s\": create_index \"%s\": element %d of \"columns\" must be an object or a column name, not %s",
								st->migration, name, i + 1, zdm_json_type_name(v)),
						 errhint("Write each column as {\"column\": \"name\"}, with \"collate\", \"nulls\", \"opclass\" or \"sort\" as needed.")));
			appendStringInfo(&cols, "%s%s", i > 0 ? ", " : "",
							 index_column(st, tw, name, amoid, method, am, col, field));
		}
	}
	else
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": create_index \"%s\": \"columns\" must be an array, not %s",
						st->migration, name, zdm_json_type_name(columns)),
				 errhint("List the indexed columns: \"columns\": [{\"column\": \"name\"}].")));
	if (ncols > 1 && !am->amcanmulticol)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": create_index \"%s\": access method \"%s\" does not support multicolumn indexes",
						st->migration, name, method),
				 errhint("Index one column, or use btree, gist, gin or brin.")));

	initStringInfo(&sql);
	appendStringInfo(&sql, "CREATE %sINDEX %s%s ON %s USING %s (%s)", unique ? "UNIQUE " : "",
					 OidIsValid(tw->relid) ? "CONCURRENTLY " : "", quote_identifier(name), tw->qualname,
					 quote_identifier(method), cols.data);
	if (storage)
	{
		MemoryContext cxt = CurrentMemoryContext;
		List	   *options = parse_options(st, name, "\"storage_parameters\"", storage, false);

		PG_TRY();
		{
			(void) index_reloptions(am->amoptions,
									transformRelOptions((Datum) 0, options, NULL, NULL, false, false),
									true);
		}
		PG_CATCH();
		{
			rethrow(st, cxt, name, "\"storage_parameters\"");
		}
		PG_END_TRY();
		appendStringInfo(&sql, " WITH (%s)", options_sql(st, name, "\"storage_parameters\"", options));
	}
	if (predicate)
	{
		char	   *what = psprintf("predicate of index \"%s\"", name);
		Node	   *expr = zdm_expr_analyze(st->migration, what, tw->desc, tw->name, predicate, BOOLOID, -1);

		if (contain_mutable_functions(expr))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_OBJECT_DEFINITION),
					 errmsg("migration \"%s\": create_index \"%s\": the predicate calls a function that is not IMMUTABLE",
							st->migration, name),
					 errhint("An index predicate may use immutable functions and operators only.")));
		appendStringInfo(&sql, " WHERE (%s\n)", predicate);
	}

	if (!OidIsValid(tw->relid))
	{
		/* A table this migration creates: empty until it commits, built with it. */
		tw->expand = lappend(tw->expand, sql.data);
		return;
	}
	{
		ZdmPlanStep *build = expand_step(tw->qualname, "validate", ZDM_RUNS_OUTSIDE, sql.data);

		build->index = qindex;
		tw->deferred = lappend(tw->deferred, build);
		tw->rollback_after = lappend(tw->rollback_after,
									 expand_step(tw->qualname, "validate", ZDM_RUNS_OUTSIDE,
												 psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", qindex)));
	}
}

static const char *const create_index_keys[] = {
	"name", "table", "columns", "unique", "method", "predicate", "storage_parameters", NULL
};

const ZdmOpKind zdm_op_create_index = {
	"create_index", create_index_keys, NULL, "table", plan_create_index
};
