/*-------------------------------------------------------------------------
 *
 * op_create_constraint.c
 *	  create_constraint: a check, foreign key, unique or primary key
 *	  constraint on one or more columns of a table, added without a scan
 *	  or an index build under a lock that blocks clients.
 *
 * pgroll writes the constrained columns into copies that carry the
 * constraint and swaps them in at complete; zdm puts the constraint on
 * the columns themselves, in the steps PostgreSQL offers for a live
 * table (table_constraints.c says what becomes of "up" and "down"):
 *
 *	- check, foreign_key: ADD CONSTRAINT ... NOT VALID at expand, a
 *	  catalog change under a brief ACCESS EXCLUSIVE (and SHARE ROW
 *	  EXCLUSIVE on the referenced table), taken with the retrying lock.
 *	  From then on every write, old clients' too, is checked.  VALIDATE
 *	  CONSTRAINT is a deferred step: the worker runs it in a transaction of
 *	  its own once the expand has committed, under SHARE UPDATE EXCLUSIVE
 *	  (ROW SHARE on the referenced table), which blocks no reads or writes.
 *	  Rows that break the constraint make that step, and the migration,
 *	  fail; contract has nothing left to do.
 *	- unique, primary_key: CREATE UNIQUE INDEX CONCURRENTLY, a deferred
 *	  step run by the worker outside any transaction, under a name of
 *	  zdm's (the index is dropped and built again if it is left INVALID).
 *	  It enforces uniqueness as soon as it is built.  Contract attaches it,
 *	  ADD CONSTRAINT ... USING INDEX (catalog only, which also gives the
 *	  index the constraint's name).  A primary key's columns must be NOT
 *	  NULL: one that is not gets CHECK (c IS NOT NULL) NOT VALID at expand,
 *	  validated by the worker, so that contract's SET NOT NULL skips its
 *	  scan, and the check is dropped after.
 *
 * Rollback drops what expand and the deferred steps made: the NOT VALID
 * constraints at once, the concurrently built index afterwards, by the
 * worker (DROP INDEX CONCURRENTLY).  On a table the same migration
 * creates, nobody else sees the table yet: the constraint goes into its
 * CREATE TABLE.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/amapi.h"
#include "access/htup_details.h"
#include "access/reloptions.h"
#include "access/relation.h"
#include "access/stratnum.h"
#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_am.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "catalog/pg_tablespace.h"
#include "catalog/pg_type.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "nodes/parsenodes.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "parser/parser.h"
#include "utils/acl.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

/* One create_constraint, as its parts are planned. */
typedef struct NewConstraint
{
	ExpandState *st;
	JsonbContainer *op;
	TableWork  *tw;
	const char *name;
	const char *qname;			/* quoted */
	const char *type;
	List	   *columns;		/* "columns" */
	List	   *named;			/* every column it names */
	bool		deferrable;
	bool		deferred;
} NewConstraint;

static void
refuse(NewConstraint *c, int code, const char *msg, const char *hint) pg_attribute_noreturn();

/* An error about this constraint, worded "create_constraint "name": msg". */
static void
refuse(NewConstraint *c, int code, const char *msg, const char *hint)
{
	ereport(ERROR,
			(errcode(code),
			 errmsg("migration \"%s\": create_constraint \"%s\" on table \"%s\": %s",
					c->st->migration, c->name, c->tw->name, msg),
			 errhint("%s", hint)));
	pg_unreachable();
}

/* An array of distinct non-empty strings (key of obj), each a column of the table. */
static List *
column_list(NewConstraint *c, JsonbContainer *obj, const char *key, bool required)
{
	JsonbContainer *arr = zdm_json_array(&c->st->ctx, obj, key, required);
	List	   *list = NIL;

	if (arr == NULL)
		return NIL;
	for (int i = 0; i < JsonContainerSize(arr); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(arr, i);
		char	   *col;

		if (v->type != jbvString || v->val.string.len == 0)
			refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("element %d of \"%s\" is not a column name", i + 1, key),
				   "List column names as strings.");
		col = pnstrdup(v->val.string.val, v->val.string.len);
		if (zdm_str_in_list(list, col))
			refuse(c, ERRCODE_DUPLICATE_COLUMN,
				   psprintf("column \"%s\" appears twice in \"%s\"", col, key),
				   "Name each column once.");
		if (expand_desc_attnum(c->tw->desc, col) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("migration \"%s\": create_constraint \"%s\": column \"%s\" of table \"%s\" does not exist",
							c->st->migration, c->name, col, c->tw->name),
					 errhint("Correct the column's name.")));
		list = lappend(list, col);
	}
	if (required && list == NIL)
		refuse(c, ERRCODE_INVALID_PARAMETER_VALUE, psprintf("\"%s\" is empty", key),
			   "Name the constraint's columns.");
	return list;
}

/* Keys that do not apply to this type of constraint must not be set. */
static void
refuse_keys(NewConstraint *c, const char *const *keys)
{
	for (; *keys; keys++)
		if (expand_json_set(c->op, *keys))
			refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("\"%s\" does not apply to a %s constraint", *keys, c->type),
				   psprintf("Leave \"%s\" out.", *keys));
}

static const char *
deferrable_sql(NewConstraint *c)
{
	return !c->deferrable ? "" : c->deferred ? " DEFERRABLE INITIALLY DEFERRED" : " DEFERRABLE";
}

static char *
column_sql(List *columns)
{
	StringInfoData buf;
	ListCell   *lc;

	initStringInfo(&buf);
	foreach(lc, columns)
		appendStringInfo(&buf, "%s%s", foreach_current_index(lc) > 0 ? ", " : "",
						 quote_identifier(lfirst(lc)));
	return buf.data;
}

/*
 * A table this migration creates: the constraint goes into its CREATE
 * TABLE (the first statement op_create_table.c wrote), so that the table
 * is created with it, as one statement.
 */
static void
created_table_add(TableWork *tw, const char *element)
{
	char	   *create = linitial(tw->expand);
	size_t		len = strlen(create);

	if (strncmp(create, "CREATE TABLE ", 13) != 0 || len == 0 || create[len - 1] != ')')
		elog(ERROR, "zdm: unexpected first statement for table \"%s\": %s", tw->name, create);
	linitial(tw->expand) = psprintf("%.*s, %s)", (int) len - 1, create, element);
}

/* Whether the CREATE TABLE of a table this migration creates has a primary key. */
static bool
created_table_has_pk(TableWork *tw)
{
	RawStmt    *raw = linitial(raw_parser(linitial(tw->expand), RAW_PARSE_DEFAULT));
	CreateStmt *stmt = (CreateStmt *) raw->stmt;
	ListCell   *lc;

	if (!IsA(stmt, CreateStmt))
		return false;
	foreach(lc, stmt->tableElts)
	{
		Node	   *elt = lfirst(lc);
		ListCell   *lc2;

		if (IsA(elt, Constraint) && ((Constraint *) elt)->contype == CONSTR_PRIMARY)
			return true;
		if (IsA(elt, ColumnDef))
			foreach(lc2, ((ColumnDef *) elt)->constraints)
				if (((Constraint *) lfirst(lc2))->contype == CONSTR_PRIMARY)
					return true;
	}
	return false;
}

/* Whether an existing table has a primary key. */
static bool
has_primary_key(Oid relid)
{
	Relation	rel = relation_open(relid, NoLock);
	bool		has;

	(void) RelationGetIndexList(rel);	/* sets rd_pkindex */
	has = OidIsValid(RelationGetPrimaryKeyIndex(rel));
	relation_close(rel, NoLock);
	return has;
}

/* ---------- check ---------- */

static void
plan_check(NewConstraint *c)
{
	static const char *const not_here[] = {"references", "index_parameters", "nulls_not_distinct",
	"deferrable", "initially_deferred", NULL};
	TableWork  *tw = c->tw;
	char	   *text;
	bool		no_inherit;
	Node	   *expr;
	Bitmapset  *atts = NULL;
	char	   *def;
	int			k = -1;

	refuse_keys(c, not_here);
	text = zdm_json_string(&c->st->ctx, c->op, "check", true);
	no_inherit = zdm_json_bool(&c->st->ctx, c->op, "no_inherit", false);
	expr = zdm_expr_analyze(c->st->migration, psprintf("check constraint \"%s\"", c->name),
							tw->desc, tw->name, text, BOOLOID, -1);
	pull_varattnos(expr, 1, &atts);
	while ((k = bms_next_member(atts, k)) >= 0)
	{
		AttrNumber	att = k + FirstLowInvalidHeapAttributeNumber;

		if (att > 0 && !zdm_str_in_list(c->named, NameStr(TupleDescAttr(tw->desc, att - 1)->attname)))
			c->named = lappend(c->named, pstrdup(NameStr(TupleDescAttr(tw->desc, att - 1)->attname)));
	}
	if (no_inherit && OidIsValid(tw->relid) && get_rel_relkind(tw->relid) == RELKIND_PARTITIONED_TABLE)
		refuse(c, ERRCODE_INVALID_TABLE_DEFINITION,
			   "a partitioned table cannot have a NO INHERIT constraint",
			   "Leave \"no_inherit\" out: the partitions get the constraint too.");

	def = psprintf("CHECK (%s\n)%s", text, no_inherit ? " NO INHERIT" : "");
	if (!OidIsValid(tw->relid))
	{
		created_table_add(tw, psprintf("CONSTRAINT %s %s", c->qname, def));
		return;
	}
	tw->expand = lappend(tw->expand, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID",
											  tw->qualname, c->qname, def));
	tw->deferred = lappend(tw->deferred,
						   expand_step(tw->qualname, "validate", ZDM_RUNS_WORKER,
									   psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s",
												tw->qualname, c->qname)));
	tw->rollback = lappend(tw->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT %s",
												  tw->qualname, c->qname));
}

/* ---------- foreign_key ---------- */

/* An action of "references" ("CASCADE", ...), checked and spelt as SQL. */
static const char *
fk_action(NewConstraint *c, JsonbContainer *refs, const char *key)
{
	static const char *const actions[] = {"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT", NULL};
	char	   *v = expand_json_set(refs, key) ? zdm_json_string(&c->st->ctx, refs, key, true) : NULL;

	if (v == NULL)
		return "NO ACTION";
	for (const char *const *a = actions; *a; a++)
		if (pg_strcasecmp(v, *a) == 0)
			return *a;
	refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
		   psprintf("\"%s\" of \"references\" must be NO ACTION, RESTRICT, CASCADE, SET NULL or SET DEFAULT, not \"%s\"",
					key, v),
		   "Correct the migration's JSON and run it again.");
}

/*
 * A unique index of the referenced table on exactly the referenced
 * columns (in any order), as a foreign key needs: valid, immediate, on
 * plain columns, whole.  The primary key's when there are several.
 */
static Oid
referenced_index(Oid relid, AttrNumber *atts, int n)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	Oid			found = InvalidOid;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;
		bool		match;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		match = index->indisunique && index->indimmediate && index->indisvalid &&
			index->indnkeyatts == n &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL);
		for (int i = 0; match && i < n; i++)
		{
			bool		in = false;

			for (int j = 0; j < n; j++)
				in |= index->indkey.values[j] == atts[i];
			match = in;
		}
		if (match && (!OidIsValid(found) || index->indisprimary))
			found = lfirst_oid(lc);
		ReleaseSysCache(tup);
	}
	relation_close(rel, AccessShareLock);
	return found;
}

/*
 * Whether a foreign key column of type fktype can reference column pkatt
 * of the index: the index's operator family compares the two types, or
 * fktype converts to the referenced one implicitly (as PostgreSQL's own
 * check).
 */
static bool
fk_type_compares(Oid fktype, Oid pkrel, AttrNumber pkatt, Oid pkindex)
{
	HeapTuple	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(pkindex));
	Oid			pktype = get_atttype(pkrel, pkatt);
	Oid			opclass = InvalidOid;
	bool		isnull;

	fktype = getBaseType(fktype);
	if (HeapTupleIsValid(itup))
	{
		Form_pg_index index = (Form_pg_index) GETSTRUCT(itup);
		oidvector  *indclass = (oidvector *) DatumGetPointer(SysCacheGetAttr(INDEXRELID, itup,
																			  Anum_pg_index_indclass,
																			  &isnull));

		for (int i = 0; i < index->indnkeyatts; i++)
			if (index->indkey.values[i] == pkatt)
				opclass = indclass->values[i];
		ReleaseSysCache(itup);
	}
	if (OidIsValid(opclass))
	{
		Oid			family = get_opclass_family(opclass);

		pktype = get_opclass_input_type(opclass);
		if (OidIsValid(get_opfamily_member(family, pktype, fktype, BTEqualStrategyNumber)) &&
			OidIsValid(get_opfamily_member(family, fktype, fktype, BTEqualStrategyNumber)))
			return true;
	}
	return can_coerce_type(1, &fktype, &pktype, COERCION_IMPLICIT);
}

static void
plan_foreign_key(NewConstraint *c)
{
	static const char *const not_here[] = {"check", "no_inherit", "index_parameters", "nulls_not_distinct", NULL};
	static const char *const ref_keys[] = {"table", "columns", "on_delete", "on_update", "match_type",
	"on_delete_set_columns", NULL};
	ExpandState *st = c->st;
	TableWork  *tw = c->tw;
	JsonbContainer *refs;
	char	   *rtable;
	List	   *rcols;
	List	   *setcols;
	JsonbContainer *arr;
	char	   *match;
	const char *on_delete;
	const char *on_update;
	Oid			rt;
	char	   *rtname;
	AttrNumber *ratts;
	Oid			index;
	ZdmLockStats stats;
	StringInfoData def;
	ListCell   *lc;
	int			n = list_length(c->columns);

	refuse_keys(c, not_here);
	refs = zdm_json_object(&st->ctx, c->op, "references", true);
	zdm_json_check_keys(&st->ctx, refs, "\"references\"", ref_keys, NULL);
	rtable = zdm_json_string(&st->ctx, refs, "table", true);
	match = expand_json_set(refs, "match_type") ? zdm_json_string(&st->ctx, refs, "match_type", true) : NULL;
	on_delete = fk_action(c, refs, "on_delete");
	on_update = fk_action(c, refs, "on_update");

	if (match && pg_strcasecmp(match, "PARTIAL") == 0)
		refuse(c, ERRCODE_FEATURE_NOT_SUPPORTED, "MATCH PARTIAL is not implemented by PostgreSQL",
			   "Use \"match_type\": \"SIMPLE\" or \"FULL\".");
	if (match && pg_strcasecmp(match, "SIMPLE") != 0 && pg_strcasecmp(match, "FULL") != 0)
		refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
			   psprintf("\"match_type\" must be SIMPLE or FULL, not \"%s\"", match),
			   "Correct the migration's JSON and run it again.");

	/* The referenced table: an existing one, claimed before it is read. */
	rt = RangeVarGetRelid(makeRangeVar(st->schema ? pstrdup(st->schema) : NULL, rtable, -1), NoLock, true);
	if (!OidIsValid(rt))
	{
		foreach(lc, st->tables)
			if (!OidIsValid(((TableWork *) lfirst(lc))->relid) &&
				strcmp(((TableWork *) lfirst(lc))->name, rtable) == 0)
				refuse(c, ERRCODE_FEATURE_NOT_SUPPORTED,
					   psprintf("it references table \"%s\", which this migration creates", rtable),
					   "Add the foreign key in a later migration, once the table exists.");
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": create_constraint \"%s\": table \"%s\" that \"references\" names does not exist",
						st->migration, c->name, rtable),
				 errhint("Create it first, or correct the name.")));
	}
	zdm_claim_relations(st->migration, list_make1_oid(rt), &stats);
	zdm_lock_stats_add(&st->claim, &stats);
	if (get_rel_relkind(rt) != RELKIND_RELATION && get_rel_relkind(rt) != RELKIND_PARTITIONED_TABLE)
		refuse(c, ERRCODE_WRONG_OBJECT_TYPE, psprintf("\"%s\" that \"references\" names is not a table", rtable),
			   "A foreign key references a table.");
	rtname = get_rel_name(rt);

	/* Its columns: as many as ours, with a unique index on them, comparable. */
	arr = zdm_json_array(&st->ctx, refs, "columns", true);
	rcols = NIL;
	for (int i = 0; i < JsonContainerSize(arr); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(arr, i);
		char	   *col;

		if (v->type != jbvString || v->val.string.len == 0)
			refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("element %d of \"columns\" of \"references\" is not a column name", i + 1),
				   "List column names as strings.");
		col = pnstrdup(v->val.string.val, v->val.string.len);
		if (zdm_str_in_list(rcols, col))
			refuse(c, ERRCODE_DUPLICATE_COLUMN,
				   psprintf("column \"%s\" appears twice in \"columns\" of \"references\"", col),
				   "Name each column once.");
		if (get_attnum(rt, col) == InvalidAttrNumber)
			ereport(ERROR,
					(errcode(ERRCODE_UNDEFINED_COLUMN),
					 errmsg("migration \"%s\": create_constraint \"%s\": column \"%s\" of table \"%s\" that \"references\" names does not exist",
							st->migration, c->name, col, rtname),
					 errhint("Correct the column's name.")));
		rcols = lappend(rcols, col);
	}
	if (list_length(rcols) != n)
		refuse(c, ERRCODE_INVALID_FOREIGN_KEY,
			   psprintf("it has %d column%s but references %d", n, n == 1 ? "" : "s", list_length(rcols)),
			   "Give \"columns\" of \"references\" as many columns as \"columns\", in the same order.");
	ratts = palloc(sizeof(AttrNumber) * n);
	foreach(lc, rcols)
		ratts[foreach_current_index(lc)] = get_attnum(rt, lfirst(lc));
	if (pg_class_aclcheck(rt, GetUserId(), ACL_REFERENCES) != ACLCHECK_OK)
		for (int i = 0; i < n; i++)
			if (pg_attribute_aclcheck(rt, ratts[i], GetUserId(), ACL_REFERENCES) != ACLCHECK_OK)
				ereport(ERROR,
						(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
						 errmsg("migration \"%s\": create_constraint \"%s\": role \"%s\" may not reference table \"%s\"",
								st->migration, c->name, GetUserNameFromId(GetUserId(), false), rtname),
						 errhint("GRANT REFERENCES ON %s TO the migration's role, or run it as the table's owner.",
								 expand_qualified_rel(rt))));
	index = referenced_index(rt, ratts, n);
	if (!OidIsValid(index))
		refuse(c, ERRCODE_INVALID_FOREIGN_KEY,
			   psprintf("table \"%s\" has no unique constraint on (%s) for a foreign key to reference",
						rtname, column_sql(rcols)),
			   "Reference the primary key, or columns with a unique constraint (a valid, non-deferrable one on exactly those columns).");
	foreach(lc, c->columns)
	{
		int			i = foreach_current_index(lc);
		Form_pg_attribute att = TupleDescAttr(tw->desc, expand_desc_attnum(tw->desc, lfirst(lc)) - 1);

		if (!fk_type_compares(att->atttypid, rt, ratts[i], index))
			refuse(c, ERRCODE_DATATYPE_MISMATCH,
				   psprintf("column \"%s\" (type %s) cannot reference column \"%s\" of table \"%s\" (type %s)",
							(char *) lfirst(lc), format_type_with_typemod(att->atttypid, att->atttypmod),
							(char *) list_nth(rcols, i), rtname, format_type_be(get_atttype(rt, ratts[i]))),
				   "Give the column a type that compares with the one it references.");
	}
	/* PostgreSQL 15 adds no foreign key NOT VALID to a partitioned table. */
	if (OidIsValid(tw->relid) && get_rel_relkind(tw->relid) == RELKIND_PARTITIONED_TABLE)
		refuse(c, ERRCODE_FEATURE_NOT_SUPPORTED,
			   "PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table, and adding it valid would scan the table under lock",
			   "Add the foreign key to each partition in a migration of its own.");

	/* ON DELETE SET NULL (columns): some of the foreign key's columns. */
	setcols = NIL;
	if (expand_json_set(refs, "on_delete_set_columns"))
	{
		arr = zdm_json_array(&st->ctx, refs, "on_delete_set_columns", true);
		if (strcmp(on_delete, "SET NULL") != 0 && strcmp(on_delete, "SET DEFAULT") != 0)
			refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
				   "\"on_delete_set_columns\" needs \"on_delete\": \"SET NULL\" or \"SET DEFAULT\"",
				   "Leave \"on_delete_set_columns\" out, or say which of the two.");
		for (int i = 0; i < JsonContainerSize(arr); i++)
		{
			JsonbValue *v = getIthJsonbValueFromContainer(arr, i);
			char	   *col = v->type == jbvString ? pnstrdup(v->val.string.val, v->val.string.len) : NULL;

			if (col == NULL || !zdm_str_in_list(c->columns, col))
				refuse(c, ERRCODE_INVALID_FOREIGN_KEY,
					   psprintf("element %d of \"on_delete_set_columns\" is not one of its columns", i + 1),
					   "Name columns of the foreign key.");
			setcols = lappend(setcols, col);
		}
	}

	initStringInfo(&def);
	appendStringInfo(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)%s ON UPDATE %s ON DELETE %s",
					 column_sql(c->columns), expand_qualified_rel(rt), column_sql(rcols),
					 match && pg_strcasecmp(match, "FULL") == 0 ? " MATCH FULL" : "",
					 on_update, on_delete);
	if (setcols)
		appendStringInfo(&def, " (%s)", column_sql(setcols));
	appendStringInfoString(&def, deferrable_sql(c));

	if (rt != tw->relid)
		tw->referenced = list_append_unique_oid(tw->referenced, rt);
	if (!OidIsValid(tw->relid))
	{
		created_table_add(tw, psprintf("CONSTRAINT %s %s", c->qname, def.data));
		return;
	}
	tw->expand = lappend(tw->expand, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID",
											  tw->qualname, c->qname, def.data));
	tw->deferred = lappend(tw->deferred,
						   expand_step(tw->qualname, "validate", ZDM_RUNS_WORKER,
									   psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s",
												tw->qualname, c->qname)));
	if (rt != tw->relid)
		tw->rollback_other = lappend(tw->rollback_other, expand_fkey_drop_step(tw, rt, c->name));
	else
		tw->rollback = lappend(tw->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT %s",
													  tw->qualname, c->qname));
}

/* ---------- unique, primary_key ---------- */

/*
 * pgroll's "storage_parameters" ("fillfactor=70, ..."), which is SQL
 * text: parsed as the WITH list of a CREATE INDEX and nothing else,
 * checked as a B-tree's options, and written back with every name and
 * value quoted.
 */
static char *
storage_parameters(NewConstraint *c, const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;
	List	   *raw = NIL;
	IndexStmt  *stmt;
	StringInfoData buf;
	ListCell   *lc;

	PG_TRY();
	{
		raw = raw_parser(psprintf("CREATE INDEX i ON t (c) WITH (%s)", text), RAW_PARSE_DEFAULT);
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		raw = NIL;
	}
	PG_END_TRY();
	stmt = list_length(raw) == 1 ? (IndexStmt *) ((RawStmt *) linitial(raw))->stmt : NULL;
	if (stmt == NULL || !IsA(stmt, IndexStmt) || stmt->whereClause || stmt->tableSpace ||
		stmt->indexIncludingParams || list_length(stmt->indexParams) != 1 || stmt->options == NIL)
		refuse(c, ERRCODE_SYNTAX_ERROR,
			   psprintf("\"storage_parameters\" is not a list of storage parameters: \"%s\"", text),
			   "Write them as name=value, separated by commas: \"fillfactor=70\".");

	initStringInfo(&buf);
	foreach(lc, stmt->options)
	{
		DefElem    *d = lfirst(lc);

		if (d->defnamespace)
			refuse(c, ERRCODE_INVALID_PARAMETER_VALUE,
				   psprintf("storage parameter \"%s.%s\" does not apply to an index", d->defnamespace, d->defname),
				   "Give the index's own storage parameters, such as fillfactor.");
		appendStringInfo(&buf, "%s%s = %s", buf.len > 0 ? ", " : "", quote_identifier(d->defname),
						 quote_literal_cstr(d->arg ? defGetString(d) : "true"));
	}
	/* What the worker's CREATE INDEX would refuse, refused now. */
	PG_TRY();
	{
		(void) index_reloptions(GetIndexAmRoutineByAmId(BTREE_AM_OID, false)->amoptions,
								transformRelOptions((Datum) 0, stmt->options, NULL, NULL, false, false),
								true);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		refuse(c, edata->sqlerrcode == ERRCODE_INTERNAL_ERROR ? ERRCODE_INVALID_PARAMETER_VALUE : edata->sqlerrcode,
			   psprintf("\"storage_parameters\" is invalid: %s", edata->message),
			   "Give a B-tree index's storage parameters, such as fillfactor=70.");
	}
	PG_END_TRY();
	return buf.data;
}

/* "tablespace": one the role may create objects in. */
static char *
index_tablespace(NewConstraint *c, const char *name)
{
	Oid			ts = get_tablespace_oid(name, true);

	if (!OidIsValid(ts))
		refuse(c, ERRCODE_UNDEFINED_OBJECT, psprintf("tablespace \"%s\" does not exist", name),
			   "Create the tablespace first, or correct its name.");
	if (ts == GLOBALTABLESPACE_OID)
		refuse(c, ERRCODE_INVALID_PARAMETER_VALUE, "tablespace \"pg_global\" holds only shared relations",
			   "Choose another tablespace.");
	if (ts != MyDatabaseTableSpace && pg_tablespace_aclcheck(ts, GetUserId(), ACL_CREATE) != ACLCHECK_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("migration \"%s\": create_constraint \"%s\": role \"%s\" may not create objects in tablespace \"%s\"",
						c->st->migration, c->name, GetUserNameFromId(GetUserId(), false), name),
				 errhint("GRANT CREATE ON TABLESPACE %s TO the migration's role.", quote_identifier(name))));
	return (char *) quote_identifier(name);
}

static void
plan_unique(NewConstraint *c, bool pk)
{
	static const char *const unique_not_here[] = {"check", "references", "no_inherit", NULL};
	static const char *const pk_not_here[] = {"check", "references", "no_inherit", "nulls_not_distinct", NULL};
	static const char *const param_keys[] = {"tablespace", "storage_parameters", "include_columns", NULL};
	ExpandState *st = c->st;
	TableWork  *tw = c->tw;
	JsonbContainer *params;
	List	   *include = NIL;
	char	   *with = NULL;
	char	   *tablespace = NULL;
	bool		nulls_not_distinct;
	const char *kind = pk ? "PRIMARY KEY" : "UNIQUE";
	StringInfoData opts;
	char	   *index;
	char	   *qindex;
	StringInfoData build;
	List	   *not_null = NIL;
	ListCell   *lc;

	refuse_keys(c, pk ? pk_not_here : unique_not_here);
	nulls_not_distinct = zdm_json_bool(&st->ctx, c->op, "nulls_not_distinct", false);
	params = zdm_json_object(&st->ctx, c->op, "index_parameters", false);
	if (params)
	{
		zdm_json_check_keys(&st->ctx, params, "\"index_parameters\"", param_keys, NULL);
		include = column_list(c, params, "include_columns", false);
		foreach(lc, include)
			if (zdm_str_in_list(c->columns, lfirst(lc)))
				refuse(c, ERRCODE_DUPLICATE_COLUMN,
					   psprintf("column \"%s\" is both a key column and in \"include_columns\"", (char *) lfirst(lc)),
					   "Leave it out of \"include_columns\".");
		if (expand_json_set(params, "storage_parameters"))
			with = storage_parameters(c, zdm_json_string(&st->ctx, params, "storage_parameters", true));
		if (expand_json_set(params, "tablespace"))
			tablespace = index_tablespace(c, zdm_json_string(&st->ctx, params, "tablespace", true));
	}
	if (pk && (tw->adds_primary_key ||
			   (OidIsValid(tw->relid) ? has_primary_key(tw->relid) : created_table_has_pk(tw))))
		refuse(c, ERRCODE_INVALID_TABLE_DEFINITION, "the table has a primary key already",
			   "A table has one primary key: drop the other in an earlier migration, or make this one unique.");
	if (pk)
		tw->adds_primary_key = true;
	foreach(lc, include)
		if (!zdm_str_in_list(c->named, lfirst(lc)))
			c->named = lappend(c->named, lfirst(lc));

	/* INCLUDE, WITH, TABLESPACE: the index's, whether built by zdm or by CREATE TABLE */
	initStringInfo(&opts);
	if (include)
		appendStringInfo(&opts, " INCLUDE (%s)", column_sql(include));

	if (!OidIsValid(tw->relid))
	{
		if (with)
			appendStringInfo(&opts, " WITH (%s)", with);
		if (tablespace)
			appendStringInfo(&opts, " USING INDEX TABLESPACE %s", tablespace);
		created_table_add(tw, psprintf("CONSTRAINT %s %s%s (%s)%s%s", c->qname, kind,
									   nulls_not_distinct ? " NULLS NOT DISTINCT" : "",
									   column_sql(c->columns), opts.data, deferrable_sql(c)));
		return;
	}

	if (get_rel_relkind(tw->relid) == RELKIND_PARTITIONED_TABLE)
		refuse(c, ERRCODE_FEATURE_NOT_SUPPORTED,
			   "PostgreSQL 15 cannot build an index on a partitioned table CONCURRENTLY, and building it otherwise blocks writes",
			   "Create the index on each partition CONCURRENTLY, then attach it to an index of the partitioned table, by hand.");

	/* The index, under a name of zdm's until contract gives it the constraint's. */
	index = zdm_made_name("zdm_uq_", tw->name, c->name);
	qindex = quote_qualified_identifier(tw->schema, index);
	if (OidIsValid(get_relname_relid(index, get_namespace_oid(tw->schema, false))))
		refuse(c, ERRCODE_DUPLICATE_TABLE,
			   psprintf("relation \"%s\", the name zdm builds its index under, exists already", index),
			   "Drop that index if an earlier attempt left it, or choose another constraint name.");

	/* A primary key's columns that may hold NULL: a check, validated by the worker. */
	if (pk)
		foreach(lc, c->columns)
		{
			AttrNumber	att = expand_desc_attnum(tw->desc, lfirst(lc));

			if (att > tw->reldesc->natts || !TupleDescAttr(tw->reldesc, att - 1)->attnotnull)
				not_null = lappend(not_null, lfirst(lc));
		}
	foreach(lc, not_null)
	{
		char	   *check = (char *) quote_identifier(zdm_made_name("zdm_pknn_", tw->name, lfirst(lc)));

		tw->expand = lappend(tw->expand,
							 psprintf("ALTER TABLE %s ADD CONSTRAINT %s CHECK (%s IS NOT NULL) NOT VALID",
									  tw->qualname, check, quote_identifier(lfirst(lc))));
		tw->deferred = lappend(tw->deferred,
							   expand_step(tw->qualname, "validate", ZDM_RUNS_WORKER,
										   psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", tw->qualname, check)));
		tw->contract = lappend(tw->contract,
							   psprintf("ALTER TABLE %s ALTER COLUMN %s SET NOT NULL", tw->qualname,
										quote_identifier(lfirst(lc))));
		tw->rollback = lappend(tw->rollback,
							   psprintf("ALTER TABLE %s DROP CONSTRAINT %s", tw->qualname, check));
	}

	initStringInfo(&build);
	appendStringInfo(&build, "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS %s ON %s (%s)%s%s",
					 quote_identifier(index), tw->qualname, column_sql(c->columns), opts.data,
					 nulls_not_distinct ? " NULLS NOT DISTINCT" : "");
	if (with)
		appendStringInfo(&build, " WITH (%s)", with);
	if (tablespace)
		appendStringInfo(&build, " TABLESPACE %s", tablespace);
	{
		ZdmPlanStep *step = expand_step(tw->qualname, "validate", ZDM_RUNS_OUTSIDE, build.data);

		step->index = qindex;
		tw->deferred = lappend(tw->deferred, step);
	}
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s USING INDEX %s%s", tw->qualname,
									c->qname, kind, quote_identifier(index), deferrable_sql(c)));
	foreach(lc, not_null)
		tw->contract = lappend(tw->contract,
							   psprintf("ALTER TABLE %s DROP CONSTRAINT %s", tw->qualname,
										quote_identifier(zdm_made_name("zdm_pknn_", tw->name, lfirst(lc)))));
	tw->rollback_after = lappend(tw->rollback_after,
								 expand_step(tw->qualname, "validate", ZDM_RUNS_OUTSIDE,
											 psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", qindex)));
}

/* ---------- the operation ---------- */

static void
plan_create_constraint(ExpandState *st, JsonbContainer *op)
{
	static const char *const types[] = {"check", "foreign_key", "unique", "primary_key", NULL};
	NewConstraint c;
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	bool		known = false;

	memset(&c, 0, sizeof(c));
	c.st = st;
	c.op = op;
	c.name = zdm_json_string(&st->ctx, op, "name", true);
	c.qname = quote_identifier(c.name);
	c.type = zdm_json_string(&st->ctx, op, "type", true);
	c.tw = expand_table_work(st, table, true);
	for (const char *const *t = types; *t; t++)
		known |= strcmp(c.type, *t) == 0;
	if (strcmp(c.type, "exclude") == 0)
		refuse(&c, ERRCODE_FEATURE_NOT_SUPPORTED, "an exclusion constraint cannot be added without blocking writes",
			   "PostgreSQL builds its index under SHARE ROW EXCLUSIVE and cannot attach one built CONCURRENTLY: add it with plain SQL in a quiet hour.");
	if (!known)
		refuse(&c, ERRCODE_INVALID_PARAMETER_VALUE,
			   psprintf("\"type\" must be check, foreign_key, unique or primary_key, not \"%s\"", c.type),
			   "Correct the migration's JSON and run it again.");

	expand_check_constraint_name(st, c.tw, c.name,
								 strcmp(c.type, "unique") == 0 || strcmp(c.type, "primary_key") == 0);
	c.columns = column_list(&c, op, "columns", strcmp(c.type, "check") != 0);
	c.named = list_copy(c.columns);
	c.deferred = zdm_json_bool(&st->ctx, op, "initially_deferred", false);
	c.deferrable = zdm_json_bool(&st->ctx, op, "deferrable", c.deferred);
	if (c.deferred && !c.deferrable)
		refuse(&c, ERRCODE_INVALID_PARAMETER_VALUE, "a constraint that is \"initially_deferred\" must be \"deferrable\"",
			   "Set \"deferrable\": true, or leave \"initially_deferred\" out.");

	if (strcmp(c.type, "check") == 0)
		plan_check(&c);
	else if (strcmp(c.type, "foreign_key") == 0)
		plan_foreign_key(&c);
	else
		plan_unique(&c, strcmp(c.type, "primary_key") == 0);

	expand_claim_constraint(st, c.tw, c.name, c.named);
	expand_constraint_up_down(st, c.tw, c.name, c.named, op, true);
}

static const char *const create_constraint_keys[] = {
	"table", "name", "type", "columns", "check", "references", "up", "down", "no_inherit",
	"deferrable", "initially_deferred", "nulls_not_distinct", "index_parameters", NULL
};

const ZdmOpKind zdm_op_create_constraint = {
	"create_constraint", create_constraint_keys, NULL, "table", plan_create_constraint
};
