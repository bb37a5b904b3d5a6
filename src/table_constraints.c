/*-------------------------------------------------------------------------
 *
 * table_constraints.c
 *	  What the constraint operations (create_constraint, drop_constraint,
 *	  drop_multicolumn_constraint, rename_constraint) share.
 *
 * pgroll gives each of them "up" and "down" because it writes the
 * constrained columns into copies of themselves, and swaps them in at
 * complete.  zdm changes the constraint on the column itself: a check or
 * a foreign key is added NOT VALID (old clients' writes are checked from
 * then on) and validated in the background; a unique or primary key
 * constraint is built as an index CONCURRENTLY and attached at contract;
 * a dropped one stays until contract, a renamed one keeps its name until
 * then.  So there is one column, and what old clients write is what new
 * clients read: an "up" that is not the column itself would have to
 * rewrite old clients' values, and is refused; a "down" is checked and
 * then not applied (a NOTICE says so), since new clients' values are
 * what old clients read, as written.  expand_constraint_up_down says so
 * in the terms of each operation.
 *
 * Besides that: finding a constraint by name, with a clear error; its
 * columns; a constraint named by only one operation of a migration, and
 * never on a column the migration replaces or drops (that one would take
 * the constraint with it at contract); the plan step that drops a
 * foreign key, which locks the table it references too.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_constraint.h"
#include "nodes/primnodes.h"
#include "utils/array.h"
#include "utils/lsyscache.h"
#include "utils/syscache.h"

/* A table's name, schema-qualified and quoted. */
char *
expand_qualified_rel(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/*
 * The constraint of an existing table called name: InvalidOid when there
 * is none (an error when must_exist says so).
 */
Oid
expand_constraint_oid(ExpandState *st, TableWork *tw, const char *name, bool must_exist)
{
	Oid			conoid = OidIsValid(tw->relid) ?
		get_relation_constraint_oid(tw->relid, name, true) : InvalidOid;

	if (!OidIsValid(conoid) && must_exist)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": %s: constraint \"%s\" of table \"%s\" does not exist",
						st->migration, st->ctx.opname, name, tw->name),
				 errhint("Correct the name; SELECT conname FROM pg_constraint WHERE conrelid = '%s'::regclass lists the table's constraints.",
						 tw->qualname)));
	return conoid;
}

/* The names of the columns a constraint names (conkey), in its order. */
List *
expand_constraint_columns(Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	List	   *columns = NIL;
	bool		isnull;
	Datum		d;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	d = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull);
	if (!isnull)
	{
		ArrayType  *arr = DatumGetArrayTypeP(d);
		int16	   *k = (int16 *) ARR_DATA_PTR(arr);
		int			n = ARR_NDIM(arr) > 0 ? ARR_DIMS(arr)[0] : 0;

		/* 0: an expression of an exclusion constraint's index */
		for (int i = 0; i < n; i++)
			if (k[i] > 0 && !zdm_str_in_list(columns, get_attname(con->conrelid, k[i], false)))
				columns = lappend(columns, get_attname(con->conrelid, k[i], false));
	}
	ReleaseSysCache(tup);
	return columns;
}

/*
 * Note that an operation creates, drops or renames constraint name on
 * tw, which names columns: once per migration, and never on a column the
 * migration replaces or drops (an alter_column or drop_column before this
 * operation; expand.c checks the ones after it).
 */
void
expand_claim_constraint(ExpandState *st, TableWork *tw, const char *name, List *columns)
{
	ListCell   *lc;

	if (zdm_str_in_list(tw->constraint_names, name))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" is named by more than one operation",
						st->migration, name, tw->name),
				 errhint("Create, drop or rename each constraint once per migration; put the rest in a later migration.")));
	foreach(lc, columns)
		if (zdm_str_in_list(tw->touched, lfirst(lc)))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
					 errmsg("migration \"%s\": %s: constraint \"%s\" names column \"%s\" of table \"%s\", which the migration replaces or drops",
							st->migration, st->ctx.opname, name, (char *) lfirst(lc), tw->name),
					 errhint("Change the constraint in a migration of its own: contract drops the old column with what is on it.")));
	tw->constraint_names = lappend(tw->constraint_names, pstrdup(name));
	foreach(lc, columns)
		tw->constraint_refs = lappend(lappend(tw->constraint_refs, pstrdup(name)), lfirst(lc));
}

/*
 * A new constraint name on tw: not too long, not taken by a constraint of
 * the table, nor, for a constraint with an index (which takes its name),
 * by a relation of the table's schema.
 */
void
expand_check_constraint_name(ExpandState *st, TableWork *tw, const char *name, bool index_backed)
{
	Oid			nspid = get_namespace_oid(tw->schema, true);

	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						st->migration, name, tw->name),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	if (OidIsValid(expand_constraint_oid(st, tw, name, false)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": %s: constraint \"%s\" of table \"%s\" already exists",
						st->migration, st->ctx.opname, name, tw->name),
				 errhint("Choose another name, or drop the existing constraint first.")));
	if (index_backed && OidIsValid(nspid) && OidIsValid(get_relname_relid(name, nspid)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_TABLE),
				 errmsg("migration \"%s\": %s: a relation named \"%s\" already exists in schema \"%s\"",
						st->migration, st->ctx.opname, name, tw->schema),
				 errhint("The index of a unique or primary key constraint takes the constraint's name: choose another name.")));
}

/* Whether an analysed expression is just column attnum of the row. */
static bool
is_the_column(Node *expr, AttrNumber attnum)
{
	while (expr && IsA(expr, RelabelType))
		expr = (Node *) ((RelabelType *) expr)->arg;
	return expr && IsA(expr, Var) && ((Var *) expr)->varlevelsup == 0 &&
		((Var *) expr)->varattno == attnum;
}

/* The string a map ("up": {"col": "sql"}) gives column col, or NULL. */
static char *
map_entry(ExpandState *st, JsonbContainer *map, const char *key, const char *col)
{
	JsonbValue *v;

	if (map == NULL)
		return NULL;
	v = getKeyJsonValueFromContainer(map, col, strlen(col), NULL);
	if (v == NULL || v->type == jbvNull)
		return NULL;
	if (v->type != jbvString || v->val.string.len == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"%s\" of column \"%s\" in operation %d (%s) must be a non-empty string",
						st->migration, key, col, st->ctx.opno, st->ctx.opname),
				 errhint("Give an SQL expression, such as the column's own name.")));
	return pnstrdup(v->val.string.val, v->val.string.len);
}

/* Every key of a map names a column of the constraint. */
static void
map_check_keys(ExpandState *st, JsonbContainer *map, const char *key, const char *constraint,
			   List *columns)
{
	JsonbIterator *it;
	JsonbValue	v;
	JsonbIteratorToken tok;

	if (map == NULL)
		return;
	it = JsonbIteratorInit(map);
	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *col;

		if (tok != WJB_KEY)
			continue;
		col = pnstrdup(v.val.string.val, v.val.string.len);
		if (!zdm_str_in_list(columns, col))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": \"%s\" of %s \"%s\" names column \"%s\", which the constraint does not",
							st->migration, key, st->ctx.opname, constraint, col),
					 errhint("Give \"%s\" only for the constraint's columns.", key)));
	}
}

/*
 * pgroll's "up" and "down" of a constraint operation (see the file
 * header): objects mapping each column to an expression (maps), or one
 * expression for the constraint's one column.  Each is checked as the
 * dual-write trigger would run it; an "up" must be the column itself; a
 * "down" that is not is reported with a NOTICE and not applied.
 */
void
expand_constraint_up_down(ExpandState *st, TableWork *tw, const char *constraint,
						  List *columns, JsonbContainer *op, bool maps)
{
	JsonbContainer *upmap = NULL;
	JsonbContainer *downmap = NULL;
	char	   *up1 = NULL;
	char	   *down1 = NULL;
	List	   *ignored = NIL;
	bool		creating = strcmp(st->ctx.opname, "create_constraint") == 0;
	ListCell   *lc;

	if (maps)
	{
		upmap = zdm_json_object(&st->ctx, op, "up", false);
		downmap = zdm_json_object(&st->ctx, op, "down", false);
		map_check_keys(st, upmap, "up", constraint, columns);
		map_check_keys(st, downmap, "down", constraint, columns);
	}
	else
	{
		up1 = zdm_json_string(&st->ctx, op, "up", false);
		down1 = zdm_json_string(&st->ctx, op, "down", false);
		if ((up1 || down1) && list_length(columns) != 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("migration \"%s\": %s \"%s\" names no column for \"up\" and \"down\"",
							st->migration, st->ctx.opname, constraint),
					 errhint("Leave \"up\" and \"down\" out.")));
	}

	foreach(lc, columns)
	{
		char	   *col = lfirst(lc);
		AttrNumber	attnum = expand_desc_attnum(tw->desc, col);
		Form_pg_attribute att;
		char	   *up = maps ? map_entry(st, upmap, "up", col) : up1;
		char	   *down = maps ? map_entry(st, downmap, "down", col) : down1;
		Node	   *expr;

		if (attnum == 0)
			continue;			/* the caller has refused it */
		att = TupleDescAttr(tw->desc, attnum - 1);
		if (up)
		{
			expr = zdm_expr_analyze_row(st->migration, psprintf("up expression of column \"%s\"", col),
										tw->desc, tw->name, zdm_expr_normalize(up),
										att->atttypid, att->atttypmod);
			if (!is_the_column(expr, attnum))
				ereport(ERROR,
						(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
						 errmsg("migration \"%s\": \"up\" of column \"%s\" in %s \"%s\" changes the column's values",
								st->migration, col, st->ctx.opname, constraint),
						 creating ?
						 errdetail("zdm adds the constraint to column \"%s\" itself, which old clients keep writing "
								   "(pgroll adds it to a copy of the column): converting their values would change what they read.", col) :
						 errdetail("zdm keeps one column \"%s\" and changes the constraint on it at contract "
								   "(pgroll copies the column): converting the values would change what old clients read.", col),
						 creating ?
						 errhint("Give \"up\" as the column itself (%s): existing rows must then satisfy the constraint, which zdm validates in the background. "
								 "To convert values, use an alter_column with \"check\" or \"references\" and \"up\": it writes a new column.",
								 quote_identifier(col)) :
						 errhint("Give \"up\" as the column itself (%s), or convert the values with an alter_column first.",
								 quote_identifier(col))));
		}
		if (down)
		{
			expr = zdm_expr_analyze_row(st->migration, psprintf("down expression of column \"%s\"", col),
										tw->desc, tw->name, zdm_expr_normalize(down),
										att->atttypid, att->atttypmod);
			if (!is_the_column(expr, attnum))
				ignored = lappend(ignored, col);
		}
	}

	if (ignored != NIL)
	{
		StringInfoData cols;

		initStringInfo(&cols);
		foreach(lc, ignored)
			appendStringInfo(&cols, "%s\"%s\"", foreach_current_index(lc) > 0 ? ", " : "",
							 (char *) lfirst(lc));
		ereport(NOTICE,
				(errmsg("migration \"%s\": \"down\" of %s \"%s\" (column %s) is not applied",
						st->migration, st->ctx.opname, constraint, cols.data),
				 creating ?
				 errdetail("zdm adds the constraint to the column itself (pgroll adds it to a copy): "
						   "new clients' values are what old clients read, and satisfy the constraint already.") :
				 errdetail("zdm keeps constraint \"%s\" on the column itself until contract (pgroll drops it from a copy of the column at once): "
						   "until then new clients' writes must satisfy it too, and old clients read their values as written.",
						   constraint)));
	}
}

/*
 * The step dropping foreign key constraint of tw, which references
 * confrelid (another table): PostgreSQL 15 takes ACCESS EXCLUSIVE on both
 * (the referenced table's triggers go).  The step names the referenced
 * table and its ALTER TABLE the other, so ddl.c locks both with the
 * retrying lock, together with the section's other tables.
 */
ZdmPlanStep *
expand_fkey_drop_step(TableWork *tw, Oid confrelid, const char *constraint)
{
	return expand_step(expand_qualified_rel(confrelid), "exclusive", ZDM_RUNS_CALLER,
					   psprintf("ALTER TABLE %s DROP CONSTRAINT %s", tw->qualname,
								quote_identifier(constraint)));
}

/*
 * Whether key is set in obj: present with a value other than null, "",
 * false, {} or [] (pgroll's schema spells a key that does not apply to a
 * constraint type as one of those).
 */
bool
expand_json_set(JsonbContainer *obj, const char *key)
{
	JsonbValue *v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);

	if (v == NULL)
		return false;
	switch (v->type)
	{
		case jbvNull:
			return false;
		case jbvString:
			return v->val.string.len > 0;
		case jbvBool:
			return v->val.boolean;
		case jbvBinary:
			return JsonContainerSize(v->val.binary.data) > 0;
		default:
			return true;
	}
}
