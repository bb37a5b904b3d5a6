/*-------------------------------------------------------------------------
 *
 * op_drop_index.c
 *	  drop_index: an index dropped CONCURRENTLY once contract has committed.
 *
 * Old clients' queries may still need the index until contract, so the
 * expand only checks it: it exists, it is a plain index of a table (not a
 * partitioned one's, which PostgreSQL cannot drop concurrently), and no
 * constraint and no replica identity rests on it.  Contract plans DROP
 * INDEX CONCURRENTLY (SHARE UPDATE EXCLUSIVE on the table: no client
 * waits), which cannot run in contract's transaction: the background
 * worker runs it once contract has committed (deferred.c).  Rollback has
 * nothing to undo.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "catalog/dependency.h"
#include "catalog/index.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_index.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"
#include "utils/varlena.h"

/* The index an operation names: in the migration's "schema", else on search_path. */
static Oid
index_relid(ExpandState *st, const char *name)
{
	Oid			relid = RangeVarGetRelid(makeRangeVar(st->schema ? pstrdup(st->schema) : NULL,
													  pstrdup(name), -1), NoLock, true);
	List	   *names;

	/* "schema.index", as pgroll's files sometimes name one */
	if (!OidIsValid(relid) && st->schema == NULL && strchr(name, '.') != NULL &&
		SplitIdentifierString(pstrdup(name), '.', &names) && list_length(names) == 2)
		relid = RangeVarGetRelid(makeRangeVar(linitial(names), lsecond(names), -1), NoLock, true);
	return relid;
}

static void
plan_drop_index(ExpandState *st, JsonbContainer *op)
{
	char	   *name = zdm_json_string(&st->ctx, op, "name", true);
	Oid			relid = index_relid(st, name);
	char		relkind = OidIsValid(relid) ? get_rel_relkind(relid) : '\0';
	Oid			heapid;
	Oid			conid;
	HeapTuple	tup;
	bool		replident;
	TableWork  *tw;
	char	   *qindex;
	char	   *sql;
	ListCell   *lc;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\": drop_index: index \"%s\" does not exist", st->migration, name),
				 errhint("Correct the name; unqualified names are looked up through search_path or the migration's \"schema\".")));
	if (relkind == RELKIND_PARTITIONED_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_index: index \"%s\" is an index of a partitioned table, which zdm cannot drop yet",
						st->migration, name),
				 errhint("PostgreSQL cannot drop it CONCURRENTLY, and a plain DROP INDEX locks out every client of the table for its duration.")));
	if (relkind != RELKIND_INDEX)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\": drop_index: \"%s\" is not an index", st->migration, name),
				 errhint("Name an index; drop_table and drop_column drop the other kinds.")));

	/* Its table: claimed, ACCESS SHARE while the index is checked. */
	heapid = IndexGetRelation(relid, false);
	tw = expand_table_work_relid(st, heapid, get_rel_name(heapid), true);
	qindex = quote_qualified_identifier(get_namespace_name(get_rel_namespace(relid)), get_rel_name(relid));

	conid = get_index_constraint(relid);
	if (OidIsValid(conid))
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("migration \"%s\": drop_index: index \"%s\" backs constraint \"%s\" of table \"%s\"",
						st->migration, name, get_constraint_name(conid), tw->name),
				 errdetail("Dropping the index would drop the constraint with it."),
				 errhint("Drop the constraint with a drop_constraint operation, which drops its index too.")));
	tup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for index %u", relid);
	replident = ((Form_pg_index) GETSTRUCT(tup))->indisreplident;
	ReleaseSysCache(tup);
	if (replident)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": drop_index: index \"%s\" is the replica identity of table \"%s\"",
						st->migration, name, tw->name),
				 errdetail("Without it, logical replication could no longer identify the table's updated and deleted rows."),
				 errhint("Give the table another replica identity first (ALTER TABLE ... REPLICA IDENTITY).")));

	sql = psprintf("DROP INDEX CONCURRENTLY IF EXISTS %s", qindex);
	foreach(lc, tw->contract_after)
		if (strcmp(((ZdmPlanStep *) lfirst(lc))->sql, sql) == 0)
			ereport(ERROR,
					(errcode(ERRCODE_DUPLICATE_OBJECT),
					 errmsg("migration \"%s\": index \"%s\" is dropped by more than one operation", st->migration, name),
					 errhint("Drop it once.")));
	tw->contract_after = lappend(tw->contract_after,
								 expand_step(tw->qualname, "validate", ZDM_RUNS_OUTSIDE, sql));
}

static const char *const drop_index_keys[] = {"name", NULL};

const ZdmOpKind zdm_op_drop_index = {
	"drop_index", drop_index_keys, NULL, NULL, plan_drop_index
};
