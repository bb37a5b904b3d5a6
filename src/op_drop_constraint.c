/*-------------------------------------------------------------------------
 *
 * op_drop_constraint.c
 *	  drop_constraint: a constraint of one column, dropped at contract.
 *	  Also the planner of drop_multicolumn_constraint
 *	  (op_drop_multicolumn_constraint.c), which differs only in giving
 *	  "up" and "down" per column.
 *
 * pgroll copies the column without the constraint at start, so that new
 * clients may write what the constraint forbids, with "down" turning
 * those values into ones old clients' constraint accepts.  zdm keeps the
 * one column and its constraint until contract, when the old clients are
 * gone: old clients keep every guarantee the constraint gave them (a
 * unique key for their ON CONFLICT, a check, a foreign key), new clients'
 * writes must satisfy it a little longer, and no value is ever converted
 * (table_constraints.c: "up" must be the column itself, "down" is not
 * applied).  Expand changes nothing and takes no lock on the table.
 *
 * Contract drops it: ALTER TABLE ... DROP CONSTRAINT, a catalog change
 * under a brief ACCESS EXCLUSIVE lock (for a foreign key, on the
 * referenced table too: its triggers go), taken with the retrying lock.
 * A unique, primary key or exclusion constraint takes its index along;
 * DROP INDEX CONCURRENTLY cannot drop an index a constraint owns, and
 * dropping it costs no scan: its files are removed at commit.  Rollback
 * has nothing to undo.
 *
 * Refused at expand, since contract would fail or break clients: a
 * constraint that does not exist, is inherited, or is a constraint
 * trigger; an index another table's foreign key relies on; the table's
 * replica identity (its index, or the primary key of a table published
 * for UPDATE or DELETE, whose clients' writes would then fail).
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "access/relation.h"
#include "catalog/pg_class.h"
#include "catalog/pg_constraint.h"
#include "catalog/pg_index.h"
#include "catalog/pg_publication.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"
#include "utils/relcache.h"
#include "utils/syscache.h"

/* What keeps an index-backed constraint from going; an error if anything does. */
static void
refuse_index_in_use(ExpandState *st, TableWork *tw, const char *name, Form_pg_constraint con)
{
	Oid			types[1] = {OIDOID};
	Datum		values[1] = {ObjectIdGetDatum(con->conindid)};
	HeapTuple	itup;
	bool		replident = false;
	Relation	rel;
	int			rc;

	/* Foreign keys that reference it (through its index). */
	rc = SPI_execute_with_args("SELECT c.conname::text, c.conrelid::pg_catalog.regclass::text"
							   "  FROM pg_catalog.pg_constraint c"
							   " WHERE c.contype = 'f' AND c.conindid = $1 ORDER BY 2, 1",
							   1, types, values, NULL, true, 0);
	if (rc != SPI_OK_SELECT)
		elog(ERROR, "zdm: could not read the foreign keys of constraint \"%s\": %s", name,
			 SPI_result_code_string(rc));
	if (SPI_processed > 0)
		ereport(ERROR,
				(errcode(ERRCODE_DEPENDENT_OBJECTS_STILL_EXIST),
				 errmsg("migration \"%s\": %s: constraint \"%s\" of table \"%s\" is referenced by foreign key \"%s\" of table %s",
						st->migration, st->ctx.opname, name, tw->name,
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1),
						SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2)),
				 errdetail("%d foreign key%s rel%s on its index.", (int) SPI_processed,
						   SPI_processed == 1 ? "" : "s", SPI_processed == 1 ? "ies" : "y"),
				 errhint("Drop the foreign keys in an earlier migration.")));

	/* The replica identity: its index, or the primary key of a published table. */
	itup = SearchSysCache1(INDEXRELID, ObjectIdGetDatum(con->conindid));
	if (HeapTupleIsValid(itup))
	{
		replident = ((Form_pg_index) GETSTRUCT(itup))->indisreplident;
		ReleaseSysCache(itup);
	}
	if (replident)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("migration \"%s\": %s: the index of constraint \"%s\" is the replica identity of table \"%s\"",
						st->migration, st->ctx.opname, name, tw->name),
				 errhint("Give the table another replica identity first (ALTER TABLE ... REPLICA IDENTITY).")));
	if (con->contype == CONSTRAINT_PRIMARY)
	{
		rel = relation_open(tw->relid, NoLock);
		if (rel->rd_rel->relreplident == REPLICA_IDENTITY_DEFAULT)
		{
			PublicationDesc pubdesc;

			RelationBuildPublicationDesc(rel, &pubdesc);
			if (pubdesc.pubactions.pubupdate || pubdesc.pubactions.pubdelete)
				ereport(ERROR,
						(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
						 errmsg("migration \"%s\": %s: primary key \"%s\" is the replica identity of table \"%s\", which is published",
								st->migration, st->ctx.opname, name, tw->name),
						 errdetail("Without it, clients' UPDATE and DELETE of the table would fail."),
						 errhint("Give the table another replica identity first (ALTER TABLE ... REPLICA IDENTITY USING INDEX or FULL).")));
		}
		relation_close(rel, NoLock);
	}
}

/*
 * Plan dropping a constraint (drop_constraint, or with multi
 * drop_multicolumn_constraint): checks, then the contract step.
 */
void
expand_plan_constraint_drop(ExpandState *st, JsonbContainer *op, bool multi)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	char	   *name = zdm_json_string(&st->ctx, op, "name", true);
	TableWork  *tw = expand_table_work(st, table, true);
	Oid			conoid;
	HeapTuple	tup;
	Form_pg_constraint con;
	List	   *columns;

	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": %s on table \"%s\", which this migration creates",
						st->migration, st->ctx.opname, table),
				 errhint("Leave the constraint out of the table instead.")));
	if (zdm_str_in_list(tw->constraint_names, name))
		expand_claim_constraint(st, tw, name, NIL);	/* the error: named twice */
	conoid = expand_constraint_oid(st, tw, name, true);
	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);

	if (con->coninhcount > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": %s: constraint \"%s\" of table \"%s\" is inherited from a parent table",
						st->migration, st->ctx.opname, name, tw->name),
				 errhint("Drop it on the parent table, which drops it here too.")));
	if (con->contype == CONSTRAINT_TRIGGER)
		ereport(ERROR,
				(errcode(ERRCODE_WRONG_OBJECT_TYPE),
				 errmsg("migration \"%s\": %s: \"%s\" of table \"%s\" is a constraint trigger",
						st->migration, st->ctx.opname, name, tw->name),
				 errhint("Drop it with DROP TRIGGER, outside zdm.")));
	columns = expand_constraint_columns(conoid);
	if (!multi && list_length(columns) > 1)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": drop_constraint: constraint \"%s\" of table \"%s\" names %d columns",
						st->migration, name, tw->name, list_length(columns)),
				 errhint("Use drop_multicolumn_constraint, with \"up\" and \"down\" per column.")));
	if (OidIsValid(con->conindid) &&
		(con->contype == CONSTRAINT_UNIQUE || con->contype == CONSTRAINT_PRIMARY ||
		 con->contype == CONSTRAINT_EXCLUSION))
		refuse_index_in_use(st, tw, name, con);

	expand_claim_constraint(st, tw, name, columns);
	expand_constraint_up_down(st, tw, name, columns, op, multi);

	if (con->contype == CONSTRAINT_FOREIGN && con->confrelid != tw->relid)
		tw->contract_other = lappend(tw->contract_other,
									 expand_fkey_drop_step(tw, con->confrelid, name));
	else
		tw->contract = lappend(tw->contract, psprintf("ALTER TABLE %s DROP CONSTRAINT %s",
													  tw->qualname, quote_identifier(name)));
	ReleaseSysCache(tup);
}

static void
plan_drop_constraint(ExpandState *st, JsonbContainer *op)
{
	expand_plan_constraint_drop(st, op, false);
}

static const char *const drop_constraint_keys[] = {"table", "name", "up", "down", NULL};

const ZdmOpKind zdm_op_drop_constraint = {
	"drop_constraint", drop_constraint_keys, NULL, "table", plan_drop_constraint
};
