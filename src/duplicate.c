/*-------------------------------------------------------------------------
 *
 * duplicate.c
 *	  Duplicating a column with its constraints: the new column of an
 *	  alter_column keeps what the old one had.
 *
 * An alter_column that changes a column's type or name creates a new
 * column, and contract drops the old one with everything on it.  What the
 * migration does not restate, the new column takes over, as pgroll's
 * duplicator does, but never silently less: what cannot be carried is
 * refused at expand (here, or in dependents.c), naming it.
 *
 *	- CHECK constraints naming the column, rewritten to name the new one:
 *	  added NOT VALID at expand under a temporary name (the old one still
 *	  holds the name), validated by contract under SHARE UPDATE EXCLUSIVE
 *	  before the swap (unless the old one was NOT VALID itself), renamed to
 *	  the old name once the old column is gone.  One that does not hold
 *	  for the new type (length() of an integer) is refused: restate it.
 *	- The migration's own "check", on the new column (also in place, where
 *	  its text names the column by its old name: the new version's name
 *	  for it).  Under the name of a check of the old column it replaces
 *	  that one, which is then not carried.
 *	- Foreign keys of the column, likewise NOT VALID, validated, renamed.
 *	  Adding one takes SHARE ROW EXCLUSIVE on the table it references
 *	  (expand locks it with the others), and dropping one ACCESS EXCLUSIVE
 *	  (contract's and rollback's steps name that table, so they lock it
 *	  with the others).
 *	- Every index naming the column, UNIQUE and PRIMARY KEY constraints'
 *	  included, and the migration's own "unique": built again on the new
 *	  column by the worker, CONCURRENTLY (duplicate_index.c).
 *	- Foreign keys of other tables (or of other columns) that reference
 *	  the column: once the new column's unique index is built, a deferred
 *	  step adds the same key on the new column NOT VALID and another
 *	  validates it; contract drops the old one (before the old column) and
 *	  gives the new one its name.  The referencing table must be the
 *	  author's, and not partitioned (PostgreSQL 15 adds no foreign key NOT
 *	  VALID there).
 *	- The default, at contract (the new column has none while both are
 *	  live: trigger.c), unless "default" is given (null: none).  A default
 *	  that is a constant keeps its spelling when its type does not fit the
 *	  new column ('0'::text becomes '0' for an integer).  The sequence the
 *	  old column owns (serial) passes to the new one before the drop.
 *	- The comment, at expand, unless "comment" is given (null: none), on
 *	  the table and on every partition that has its own.
 *	- Retired API versions' guard views (SELECT * of the table) are
 *	  dropped before the old column and created again after the rename.
 *
 * NOT NULL is expand.c's (add_not_null): "nullable" defaults to what the
 * old column was.  Rollback drops the new column, which takes its
 * constraints, comment and foreign keys along; the constraints are also
 * dropped by name first, so that a check naming only other columns does
 * not stay behind.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "access/sysattr.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "access/stratnum.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "commands/comment.h"
#include "catalog/pg_inherits.h"
#include "catalog/pg_type.h"
#include "catalog/pg_am.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_opclass.h"
#include "access/amapi.h"
#include "catalog/index.h"
#include "commands/defrem.h"
#include "commands/tablespace.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "parser/parse_type.h"
#include "nodes/makefuncs.h"
#include "nodes/nodeFuncs.h"
#include "optimizer/optimizer.h"
#include "parser/parse_coerce.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/syscache.h"

static char *
qualified_rel(Oid relid)
{
	return quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)),
									  get_rel_name(relid));
}

/* A constraint of the table named name, or InvalidOid. */
static Oid
constraint_named(Oid relid, const char *name)
{
	return get_relation_constraint_oid(relid, name, true);
}

/*
 * An ADD CONSTRAINT, its VALIDATE (validated: the old one was), and its
 * rollback (unless the caller makes that a step of its own).
 */
static void
add_constraint(ZdmColumnCopy *c, const char *name, const char *def, bool validated,
			   bool rollback)
{
	char	   *qname = (char *) quote_identifier(name);

	c->expand = lappend(c->expand, psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID",
											c->qualname, qname, def));
	if (validated)
		c->validate = lappend(c->validate, psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s",
													c->qualname, qname));
	if (rollback)
		c->rollback = lappend(c->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s",
													c->qualname, qname));
}

/* Back to the old constraint's name once the old column is gone. */
static void
rename_constraint(ZdmColumnCopy *c, const char *temp, const char *name)
{
	c->after_drop = lappend(c->after_drop,
							psprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", c->qualname,
									 quote_identifier(temp), quote_identifier(name)));
}

/*
 * Analyse an expression over the table (with the new column) as type
 * typid (InvalidOid: its own); what went wrong re-raised with hint (NULL:
 * as it is).  Returns the analysed expression.
 */
Node *
zdm_dup_analyse(ZdmColumnCopy *c, TupleDesc desc, const char *what, const char *text,
				Oid typid, const char *hint)
{
	MemoryContext cxt = CurrentMemoryContext;
	Node	   *volatile expr = NULL;

	PG_TRY();
	{
		expr = zdm_expr_analyze(c->migration, what, desc, c->table, text, typid, -1);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		if (hint == NULL)
			PG_RE_THROW();
		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", edata->message),
				 errhint("%s", hint)));
	}
	PG_END_TRY();
	return expr;
}

/* Analyse a check for the new column (see analyse_expr). */
static Node *
analyse_check(ZdmColumnCopy *c, TupleDesc desc, const char *what, const char *text,
			  const char *hint)
{
	return zdm_dup_analyse(c, desc, what, text, BOOLOID, hint);
}

/* Analyse a carried default for the new column's type, or say what to do. */
static void
analyse_default(ZdmColumnCopy *c, const char *what, const char *text)
{
	MemoryContext cxt = CurrentMemoryContext;

	PG_TRY();
	{
		(void) zdm_expr_analyze(c->migration, what, CreateTemplateTupleDesc(0), c->table,
								text, c->typid, c->typmod);
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(cxt);
		edata = CopyErrorData();
		FlushErrorState();
		ereport(ERROR,
				(errcode(edata->sqlerrcode),
				 errmsg("%s", edata->message),
				 errhint("Give the alter_column a \"default\" for the new column, or \"default\": null for none.")));
	}
	PG_END_TRY();
}

/* The migration's own "check": on the new column, whatever name it uses. */
static void
own_check(ZdmColumnCopy *c)
{
	static const char *const keys[] = {"name", "constraint", NULL};
	static const char *const unsupported[] = {"no_inherit", NULL};
	char	   *name = zdm_json_string(c->ctx, c->check, "name", true);
	char	   *text = zdm_json_string(c->ctx, c->check, "constraint", true);
	char	   *what = psprintf("check constraint \"%s\"", name);
	Oid			existing;
	char	   *temp = NULL;
	Node	   *expr = NULL;
	Bitmapset  *atts = NULL;
	int			x = -1;

	zdm_json_check_keys(c->ctx, c->check, "\"check\"", keys, unsupported);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						c->migration, name, c->table),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	/* in place, the new version calls the new column by the old name */
	if (c->seen)
		expr = analyse_check(c, c->seen, what, text, NULL);
	text = zdm_expr_rename_column(c->migration, what, text, c->old_col, c->new_col);
	if (!c->seen)
		expr = analyse_check(c, c->desc, what, text, NULL);
	/* the columns it names, by their physical names: expand.c checks them */
	pull_varattnos(expr, 1, &atts);
	while ((x = bms_next_member(atts, x)) >= 0)
		c->check_columns = lappend(c->check_columns,
								   pstrdup(NameStr(TupleDescAttr(c->desc, x + FirstLowInvalidHeapAttributeNumber - 1)->attname)));

	existing = constraint_named(c->relid, name);
	if (OidIsValid(existing))
	{
		/* a check of the old column: replaced, under its name after contract */
		if (!list_member_oid(c->attached.checks, existing))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
							c->migration, name, c->table),
					 errhint("Choose another name; a check of column \"%s\" itself may be restated under its own name, "
							 "and then replaces it.", c->old_col)));
		c->attached.checks = list_delete_oid(c->attached.checks, existing);
		temp = zdm_made_name("zdm_dup_", name, NULL);
		rename_constraint(c, temp, name);
	}
	add_constraint(c, temp ? temp : name, psprintf("CHECK (%s\n)", text), true, true);
}

/* A CHECK constraint of the old column, onto the new one. */
static void
carry_check(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *sql_text;
	char	   *temp;
	bool		isnull;
	Datum		bin;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	bin = SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conbin, &isnull);
	if (isnull)
		elog(ERROR, "zdm: null conbin for constraint %u", conoid);
	sql_text = TextDatumGetCString(DirectFunctionCall2(pg_get_expr, bin, ObjectIdGetDatum(c->relid)));
	sql_text = zdm_expr_rename_column(c->migration, psprintf("check constraint \"%s\"", name), sql_text,
								  c->old_col, c->new_col);
	analyse_check(c, c->desc,
				  psprintf("check constraint \"%s\" of column \"%s\", carried over to the new column (%s)",
						   name, c->old_col, format_type_with_typemod(c->typid, c->typmod)),
				  sql_text,
				  psprintf("Restate it for the new column in the alter_column's \"check\", under the name \"%s\" "
						   "(it then replaces the old one), or drop it before the migration.", name));
	temp = zdm_made_name("zdm_dup_", name, NULL);
	add_constraint(c, temp, psprintf("CHECK (%s)%s", sql_text, con->connoinherit ? " NO INHERIT" : ""),
				   con->convalidated, true);
	rename_constraint(c, temp, name);
	ReleaseSysCache(tup);
}

/* The columns of a constraint key, by name, the old column made the new one. */
static char *
key_columns(ZdmColumnCopy *c, Oid relid, HeapTuple tup, AttrNumber attr, bool swap)
{
	bool		isnull;
	Datum		d = SysCacheGetAttr(CONSTROID, tup, attr, &isnull);
	ArrayType  *arr;
	int16	   *k;
	StringInfoData buf;

	if (isnull)
		return NULL;
	arr = DatumGetArrayTypeP(d);
	k = (int16 *) ARR_DATA_PTR(arr);
	initStringInfo(&buf);
	for (int i = 0; i < (ARR_NDIM(arr) > 0 ? ARR_DIMS(arr)[0] : 0); i++)
	{
		char	   *col = get_attname(relid, k[i], false);

		if (swap && strcmp(col, c->old_col) == 0)
			col = (char *) c->new_col;
		appendStringInfo(&buf, "%s%s", i > 0 ? ", " : "", quote_identifier(col));
	}
	return buf.data;
}

static const char *
fk_action(char action)
{
	switch (action)
	{
		case FKCONSTR_ACTION_RESTRICT:
			return "RESTRICT";
		case FKCONSTR_ACTION_CASCADE:
			return "CASCADE";
		case FKCONSTR_ACTION_SETNULL:
			return "SET NULL";
		case FKCONSTR_ACTION_SETDEFAULT:
			return "SET DEFAULT";
		default:
			return "NO ACTION";
	}
}

/* The referenced column a foreign key pairs the old column with. */
static AttrNumber
referenced_column(ZdmColumnCopy *c, HeapTuple tup)
{
	bool		isnull;
	ArrayType  *keys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull));
	ArrayType  *fkeys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_confkey, &isnull));
	int16	   *k = (int16 *) ARR_DATA_PTR(keys);
	int16	   *fk = (int16 *) ARR_DATA_PTR(fkeys);
	AttrNumber	old = get_attnum(c->relid, c->old_col);

	for (int i = 0; i < ARR_DIMS(keys)[0]; i++)
		if (k[i] == old)
			return fk[i];
	return InvalidAttrNumber;
}

/* PostgreSQL 15 adds no foreign key NOT VALID to a partitioned table. */
static void
refuse_partitioned_fkey(ZdmColumnCopy *c, const char *name)
{
	if (get_rel_relkind(c->relid) == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": foreign key \"%s\" cannot be put on the new column of partitioned table \"%s\"",
						c->migration, name, c->table),
				 errdetail("PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table, and adding it valid would scan the table under lock."),
				 errhint("Drop the foreign key before the migration and add it again after contract, or leave column \"%s\" as it is.",
						 c->old_col)));
}

/*
 * A new foreign key on another table: contract and rollback drop keys
 * there (the old one, the new one), which takes that table's ACCESS
 * EXCLUSIVE lock too; steps naming it make them lock it with the others
 * (ddl.c).  Expand takes SHARE ROW EXCLUSIVE on it.
 */
static void
fkey_on_other_table(ZdmColumnCopy *c, Oid confrelid, const char *old_name, const char *new_name)
{
	ZdmPlanStep *undo = palloc0(sizeof(ZdmPlanStep));

	if (old_name)
	{
		ZdmPlanStep *drop = palloc0(sizeof(ZdmPlanStep));

		drop->relation = qualified_rel(confrelid);
		drop->lock = "exclusive";
		drop->sql = psprintf("ALTER TABLE %s DROP CONSTRAINT %s", c->qualname, quote_identifier(old_name));
		c->contract_other = lappend(c->contract_other, drop);
	}
	undo->relation = qualified_rel(confrelid);
	undo->lock = "exclusive";
	undo->sql = psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", c->qualname,
						 quote_identifier(new_name));
	c->rollback_other = lappend(c->rollback_other, undo);
	c->referenced = list_append_unique_oid(c->referenced, confrelid);
}

/* A foreign key of the old column, onto the new one. */
static void
carry_fkey(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *temp;
	char	   *setcols;
	AttrNumber	pkatt;
	StringInfoData def;

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	refuse_partitioned_fkey(c, name);
	pkatt = referenced_column(c, tup);
	if (!zdm_fk_index_compares(c->typid, con->confrelid, pkatt, con->conindid))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": foreign key \"%s\" of column \"%s\" of table \"%s\" cannot be carried over to type %s",
						c->migration, name, c->old_col, c->table, format_type_with_typemod(c->typid, c->typmod)),
				 errdetail("The column it references is of type %s.",
						   format_type_be(get_atttype(con->confrelid, pkatt))),
				 errhint("Drop the foreign key before the migration and add one that fits after contract, or choose a type that compares with %s.",
						 format_type_be(get_atttype(con->confrelid, pkatt)))));

	initStringInfo(&def);
	appendStringInfo(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)",
					 key_columns(c, c->relid, tup, Anum_pg_constraint_conkey, true),
					 qualified_rel(con->confrelid),
					 key_columns(c, con->confrelid, tup, Anum_pg_constraint_confkey, false));
	if (con->confmatchtype == FKCONSTR_MATCH_FULL)
		appendStringInfoString(&def, " MATCH FULL");
	appendStringInfo(&def, " ON UPDATE %s ON DELETE %s", fk_action(con->confupdtype),
					 fk_action(con->confdeltype));
	setcols = key_columns(c, c->relid, tup, Anum_pg_constraint_confdelsetcols, true);
	if (setcols && setcols[0] != '\0')
		appendStringInfo(&def, " (%s)", setcols);
	if (con->condeferrable)
		appendStringInfoString(&def, " DEFERRABLE");
	if (con->condeferred)
		appendStringInfoString(&def, " INITIALLY DEFERRED");

	temp = zdm_made_name("zdm_dup_", name, NULL);
	add_constraint(c, temp, def.data, con->convalidated, con->confrelid == c->relid);
	rename_constraint(c, temp, name);
	if (con->confrelid != c->relid)
		fkey_on_other_table(c, con->confrelid, name, temp);
	ReleaseSysCache(tup);
}

/* An action of "references" ("CASCADE", ...), checked. */
static const char *
fk_action_value(ZdmColumnCopy *c, const char *key)
{
	static const char *const actions[] = {"NO ACTION", "RESTRICT", "CASCADE", "SET NULL", "SET DEFAULT", NULL};
	char	   *v = zdm_json_string(c->ctx, c->references, key, false);

	if (v == NULL)
		return "NO ACTION";
	for (const char *const *a = actions; *a; a++)
		if (pg_strcasecmp(v, *a) == 0)
			return *a;
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("migration \"%s\": \"%s\" of \"references\" must be NO ACTION, RESTRICT, CASCADE, SET NULL or SET DEFAULT, not \"%s\"",
					c->migration, key, v),
			 errhint("Correct the migration's JSON and run it again.")));
	return NULL;				/* keep compiler quiet */
}

/* A unique index of relid on exactly column att, usable by a foreign key. */
static Oid
unique_index_on(Oid relid, AttrNumber att)
{
	Relation	rel = relation_open(relid, AccessShareLock);
	List	   *indexes = RelationGetIndexList(rel);
	Oid			found = InvalidOid;
	ListCell   *lc;

	foreach(lc, indexes)
	{
		HeapTuple	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(lfirst_oid(lc)));
		Form_pg_index index;

		if (!HeapTupleIsValid(tup))
			continue;
		index = (Form_pg_index) GETSTRUCT(tup);
		if (index->indisunique && index->indimmediate && index->indisvalid &&
			index->indnkeyatts == 1 && index->indkey.values[0] == att &&
			heap_attisnull(tup, Anum_pg_index_indpred, NULL) &&
			heap_attisnull(tup, Anum_pg_index_indexprs, NULL))
			found = lfirst_oid(lc);
		ReleaseSysCache(tup);
		if (OidIsValid(found))
			break;
	}
	relation_close(rel, AccessShareLock);
	return found;
}

/* The migration's "references": a foreign key on the new column. */
static void
own_fkey(ZdmColumnCopy *c)
{
	static const char *const keys[] = {"name", "table", "column", "on_delete", "on_update",
	"match_type", "deferrable", "initially_deferred", NULL};
	char	   *name = zdm_json_string(c->ctx, c->references, "name", true);
	char	   *table = zdm_json_string(c->ctx, c->references, "table", true);
	char	   *column = zdm_json_string(c->ctx, c->references, "column", true);
	char	   *match = zdm_json_string(c->ctx, c->references, "match_type", false);
	const char *on_delete = fk_action_value(c, "on_delete");
	const char *on_update = fk_action_value(c, "on_update");
	bool		deferrable = zdm_json_bool(c->ctx, c->references, "deferrable", false);
	bool		deferred = zdm_json_bool(c->ctx, c->references, "initially_deferred", false);
	Oid			confrelid;
	AttrNumber	pkatt;
	Oid			pkindex;
	Oid			existing;
	char	   *temp = NULL;

	zdm_json_check_keys(c->ctx, c->references, "\"references\"", keys, NULL);
	if (strlen(name) >= NAMEDATALEN)
		ereport(ERROR,
				(errcode(ERRCODE_NAME_TOO_LONG),
				 errmsg("migration \"%s\": constraint name \"%s\" of table \"%s\" is too long",
						c->migration, name, c->table),
				 errhint("Constraint names are at most %d bytes.", NAMEDATALEN - 1)));
	if (match && pg_strcasecmp(match, "SIMPLE") != 0 && pg_strcasecmp(match, "FULL") != 0)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": \"match_type\" of \"references\" must be SIMPLE or FULL, not \"%s\"",
						c->migration, match),
				 errhint("PostgreSQL does not implement MATCH PARTIAL.")));
	confrelid = RangeVarGetRelid(makeRangeVar(c->schema ? pstrdup(c->schema) : NULL, table, -1),
								 NoLock, true);
	if (!OidIsValid(confrelid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("migration \"%s\": table \"%s\" that \"references\" names does not exist",
						c->migration, table),
				 errhint("Create it first, or correct the name.")));
	/* claimed before it is read, like the tables the operations name */
	zdm_claim_relations(c->migration, list_make1_oid(confrelid), &c->claim);
	pkatt = get_attnum(confrelid, column);
	if (pkatt == InvalidAttrNumber)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" that \"references\" names does not exist",
						c->migration, column, table),
				 errhint("Correct the column's name.")));
	pkindex = unique_index_on(confrelid, pkatt);
	if (!OidIsValid(pkindex))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FOREIGN_KEY),
				 errmsg("migration \"%s\": column \"%s\" of table \"%s\" has no unique constraint for a foreign key to reference",
						c->migration, column, table),
				 errhint("Reference a primary key or a column with a unique constraint.")));
	if (!zdm_fk_index_compares(c->typid, confrelid, pkatt, pkindex))
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": foreign key \"%s\" cannot reference column \"%s\" of table \"%s\" (type %s) from type %s",
						c->migration, name, column, table, format_type_be(get_atttype(confrelid, pkatt)),
						format_type_with_typemod(c->typid, c->typmod)),
				 errhint("Give the column a type that compares with the one it references.")));
	refuse_partitioned_fkey(c, name);

	existing = constraint_named(c->relid, name);
	if (OidIsValid(existing))
	{
		/* a foreign key of the old column: replaced, its name taken after contract */
		if (!list_member_oid(c->attached.fkeys, existing))
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
							c->migration, name, c->table),
					 errhint("Choose another name; a foreign key of column \"%s\" itself may be restated under its own name, "
							 "and then replaces it.", c->old_col)));
		c->attached.fkeys = list_delete_oid(c->attached.fkeys, existing);
		temp = zdm_made_name("zdm_dup_", name, NULL);
		rename_constraint(c, temp, name);
	}
	add_constraint(c, temp ? temp : name,
				   psprintf("FOREIGN KEY (%s) REFERENCES %s (%s)%s ON UPDATE %s ON DELETE %s%s%s",
							quote_identifier(c->new_col), qualified_rel(confrelid), quote_identifier(column),
							match && pg_strcasecmp(match, "FULL") == 0 ? " MATCH FULL" : "",
							on_update, on_delete, deferrable ? " DEFERRABLE" : "",
							deferred ? " INITIALLY DEFERRED" : ""),
				   true, confrelid == c->relid);
	if (confrelid != c->relid)
		fkey_on_other_table(c, confrelid,
							OidIsValid(existing) ? name : NULL, temp ? temp : name);
}

/* The default of the old column, for the new one: set at contract. */
static void
carry_default(ZdmColumnCopy *c)
{
	Node	   *expr;
	char	   *deftext = zdm_column_default(c->relid, get_attnum(c->relid, c->old_col), &expr);
	char	   *what;
	char	   *use = NULL;
	Oid			type;

	if (deftext == NULL)
		return;
	what = psprintf("default %s of column \"%s\", carried over to the new column (%s)",
					deftext, c->old_col, format_type_with_typemod(c->typid, c->typmod));
	type = exprType(zdm_expr_analyze(c->migration, what, CreateTemplateTupleDesc(0), c->table,
									 deftext, InvalidOid, -1));
	if (can_coerce_type(1, &type, &c->typid, COERCION_ASSIGNMENT))
		use = deftext;
	else
	{
		/* a constant of the old type: its spelling, for the new type */
		Node	   *e = strip_implicit_coercions(expr);

		if (e != NULL && IsA(e, Const) && !((Const *) e)->constisnull)
		{
			Oid			out;
			bool		varlena;

			getTypeOutputInfo(((Const *) e)->consttype, &out, &varlena);
			use = quote_literal_cstr(OidOutputFunctionCall(out, ((Const *) e)->constvalue));
		}
	}
	if (use == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_DATATYPE_MISMATCH),
				 errmsg("migration \"%s\": the default %s of column \"%s\" of table \"%s\" cannot be carried over to type %s",
						c->migration, deftext, c->old_col, c->table, format_type_with_typemod(c->typid, c->typmod)),
				 errhint("Give the alter_column a \"default\" for the new column, or \"default\": null for none.")));
	/* the constant's spelling may still not be a value of the new type */
	analyse_default(c, what, use);
	c->before_drop = lappend(c->before_drop,
							 psprintf("ALTER TABLE %s ALTER COLUMN %s SET DEFAULT %s", c->qualname,
									  quote_identifier(c->new_col), use));
}

/* COMMENT ON COLUMN rel.new_col, with the comment rel's old column has. */
static void
carry_comment(ZdmColumnCopy *c, Oid relid)
{
	char	   *comment = GetComment(relid, RelationRelationId, get_attnum(relid, c->old_col));

	if (comment != NULL)
		c->expand = lappend(c->expand,
							psprintf("COMMENT ON COLUMN %s.%s IS %s", qualified_rel(relid),
									 quote_identifier(c->new_col), quote_literal_cstr(comment)));
}

/* COMMENT ON CONSTRAINT, once contract has given it its name, when it has one. */
void
zdm_dup_constraint_comment(ZdmColumnCopy *c, List **into, Oid conoid, const char *qualname, const char *name)
{
	char	   *comment = GetComment(conoid, ConstraintRelationId, 0);

	if (comment != NULL)
		*into = lappend(*into, psprintf("COMMENT ON CONSTRAINT %s ON %s IS %s", quote_identifier(name),
										qualname, quote_literal_cstr(comment)));
}

/*
 * A foreign key of another table (or another column) that references the
 * old column: the same key on the new column, added NOT VALID and
 * validated by the worker once the new column's unique index is built;
 * contract drops the old one and gives the new one its name.
 */
static void
carry_referencing(ZdmColumnCopy *c, Oid conoid)
{
	HeapTuple	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	Form_pg_constraint con;
	char	   *name;
	char	   *temp;
	char	   *other;
	char	   *setcols;
	bool		self;
	StringInfoData def;
	bool		isnull;
	ArrayType  *keys;
	ArrayType  *fkeys;
	AttrNumber	oldatt = get_attnum(c->relid, c->old_col);

	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	name = pstrdup(NameStr(con->conname));
	other = qualified_rel(con->conrelid);
	self = con->conrelid == c->relid;
	if (get_rel_relkind(con->conrelid) == RELKIND_PARTITIONED_TABLE)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": foreign key \"%s\" of partitioned table \"%s\" references column \"%s\" of table \"%s\", and cannot be moved to the new column",
						c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table),
				 errdetail("PostgreSQL 15 cannot add a foreign key NOT VALID to a partitioned table, and adding it valid would scan the table under lock."),
				 errhint("Drop the foreign key before the migration and add it again after contract, or leave column \"%s\" as it is.",
						 c->old_col)));
	if (!pg_class_ownercheck(con->conrelid, GetUserId()))
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("migration \"%s\": foreign key \"%s\" of table \"%s\" references column \"%s\" of table \"%s\", and role \"%s\" does not own table \"%s\"",
						c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table,
						GetUserNameFromId(GetUserId(), false), get_rel_name(con->conrelid)),
				 errdetail("zdm moves the foreign key to the new column, which takes ALTER TABLE on its table."),
				 errhint("Run the migration as the owner of both tables (or a member of their owning role), or drop the foreign key first.")));
	keys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_conkey, &isnull));
	fkeys = DatumGetArrayTypeP(SysCacheGetAttr(CONSTROID, tup, Anum_pg_constraint_confkey, &isnull));
	for (int i = 0; i < ARR_DIMS(fkeys)[0]; i++)
	{
		AttrNumber	fkatt = ((int16 *) ARR_DATA_PTR(keys))[i];

		if (((int16 *) ARR_DATA_PTR(fkeys))[i] == oldatt &&
			!zdm_fk_types_compare(get_atttype(con->conrelid, fkatt), c->typid,
								  GetDefaultOpClass(c->typid, BTREE_AM_OID)))
			ereport(ERROR,
					(errcode(ERRCODE_DATATYPE_MISMATCH),
					 errmsg("migration \"%s\": foreign key \"%s\" of table \"%s\" cannot reference column \"%s\" of table \"%s\" as type %s",
							c->migration, name, get_rel_name(con->conrelid), c->old_col, c->table,
							format_type_with_typemod(c->typid, c->typmod)),
					 errdetail("Its column \"%s\" is of type %s.", get_attname(con->conrelid, fkatt, false),
							   format_type_be(get_atttype(con->conrelid, fkatt))),
					 errhint("Choose a type that compares with %s, or drop the foreign key first.",
							 format_type_be(get_atttype(con->conrelid, fkatt)))));
	}

	initStringInfo(&def);
	appendStringInfo(&def, "FOREIGN KEY (%s) REFERENCES %s (%s)",
					 key_columns(c, con->conrelid, tup, Anum_pg_constraint_conkey, false),
					 c->qualname, key_columns(c, c->relid, tup, Anum_pg_constraint_confkey, true));
	if (con->confmatchtype == FKCONSTR_MATCH_FULL)
		appendStringInfoString(&def, " MATCH FULL");
	appendStringInfo(&def, " ON UPDATE %s ON DELETE %s", fk_action(con->confupdtype),
					 fk_action(con->confdeltype));
	setcols = key_columns(c, con->conrelid, tup, Anum_pg_constraint_confdelsetcols, false);
	if (setcols && setcols[0] != '\0')
		appendStringInfo(&def, " (%s)", setcols);
	if (con->condeferrable)
		appendStringInfoString(&def, " DEFERRABLE");
	if (con->condeferred)
		appendStringInfoString(&def, " INITIALLY DEFERRED");

	temp = zdm_made_name("zdm_dup_", name, NULL);
	if (OidIsValid(get_relation_constraint_oid(con->conrelid, temp, true)))
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("migration \"%s\": constraint \"%s\" of table \"%s\" already exists",
						c->migration, temp, get_rel_name(con->conrelid)),
				 errhint("It may be left over from an earlier attempt: drop it and expand again.")));
	/* after the unique index it relies on (the deferred steps run in order) */
	c->deferred_fkeys = lappend(c->deferred_fkeys,
								expand_step(other, "share_row", ZDM_RUNS_WORKER,
											psprintf("ALTER TABLE %s ADD CONSTRAINT %s %s NOT VALID", other,
													 quote_identifier(temp), def.data)));
	if (con->convalidated)
		c->deferred_fkeys = lappend(c->deferred_fkeys,
									expand_step(other, "validate", ZDM_RUNS_WORKER,
												psprintf("ALTER TABLE %s VALIDATE CONSTRAINT %s", other,
														 quote_identifier(temp))));
	if (self)
	{
		c->before_drop = lappend(c->before_drop, psprintf("ALTER TABLE %s DROP CONSTRAINT %s", other,
														  quote_identifier(name)));
		rename_constraint(c, temp, name);
		zdm_dup_constraint_comment(c, &c->after_drop, conoid, other, name);
		c->rollback = lappend(c->rollback, psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", other,
													quote_identifier(temp)));
	}
	else
	{
		List	   *renamed = NIL;

		c->contract_other = lappend(c->contract_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s DROP CONSTRAINT %s", other,
														 quote_identifier(name))));
		c->contract_other = lappend(c->contract_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", other,
														 quote_identifier(temp), quote_identifier(name))));
		zdm_dup_constraint_comment(c, &renamed, conoid, other, name);
		if (renamed != NIL)
			c->contract_other = lappend(c->contract_other,
										expand_step(other, "exclusive", ZDM_RUNS_CALLER, linitial(renamed)));
		c->rollback_other = lappend(c->rollback_other,
									expand_step(other, "exclusive", ZDM_RUNS_CALLER,
												psprintf("ALTER TABLE %s DROP CONSTRAINT IF EXISTS %s", other,
														 quote_identifier(temp))));
	}
	ReleaseSysCache(tup);
}

/*
 * Give the new column what the old one has (c->attached, from
 * zdm_column_attached) and the migration does not restate: the statements
 * go into c's lists, in the order each phase runs them.
 */
void
zdm_duplicate_column(ZdmColumnCopy *c)
{
	ListCell   *lc;

	if (c->check)
		own_check(c);
	if (c->references)
		own_fkey(c);
	if (c->unique)
		zdm_dup_unique(c);
	foreach(lc, c->attached.checks)
		carry_check(c, lfirst_oid(lc));
	foreach(lc, c->attached.fkeys)
		carry_fkey(c, lfirst_oid(lc));
	/* (the keys' deferred steps go after the indexes': deferred_fkeys) */
	foreach(lc, c->attached.referencing)
		carry_referencing(c, lfirst_oid(lc));
	foreach(lc, c->attached.indexes)
		zdm_dup_index(c, lfirst_oid(lc));
	c->deferred = list_concat(c->deferred, c->deferred_fkeys);
	if (c->keep_default)
		carry_default(c);
	foreach(lc, c->attached.sequences)
		c->before_drop = lappend(c->before_drop,
								 psprintf("ALTER SEQUENCE %s OWNED BY %s.%s", qualified_rel(lfirst_oid(lc)),
										  c->qualname, quote_identifier(c->new_col)));
	if (c->keep_comment)
	{
		carry_comment(c, c->relid);
		if (has_subclass(c->relid))
			foreach(lc, find_all_inheritors(c->relid, NoLock, NULL))
				if (lfirst_oid(lc) != c->relid)
					carry_comment(c, lfirst_oid(lc));
	}
	foreach(lc, c->attached.guards)
	{
		ZdmGuardView *g = lfirst(lc);

		c->before_drop = lappend(c->before_drop,
								 psprintf("DROP VIEW %s.%s", quote_identifier(g->version),
										  quote_identifier(c->table)));
		c->after_drop = list_concat(c->after_drop,
									zdm_guard_view_sql(c->qualname, c->table, g->version, g->retired_by));
	}
}
