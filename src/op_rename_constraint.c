/*-------------------------------------------------------------------------
 *
 * op_rename_constraint.c
 *	  rename_constraint: a constraint renamed at contract.
 *
 *	  Clients can name a constraint: ON CONFLICT ON CONSTRAINT, or code
 *	  that tells errors apart by the constraint in them.  Old clients,
 *	  which use the old name, run until contract; so, as pgroll does (at
 *	  complete), zdm renames then, once the gate has seen them go.  New
 *	  clients must accept either name until contract.  Expand changes
 *	  nothing and takes no lock on the table; contract runs ALTER TABLE ...
 *	  RENAME CONSTRAINT, a catalog change under a brief ACCESS EXCLUSIVE
 *	  lock taken with the retrying lock (a unique, primary key or
 *	  exclusion constraint's index is renamed with it); rollback has
 *	  nothing to undo.
 *
 *	  Refused at expand: a constraint that does not exist or is inherited
 *	  (renamed on its parent), a new name taken by a constraint of the
 *	  table or, for one with an index, by a relation of its schema.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

#include "access/htup_details.h"
#include "catalog/pg_constraint.h"
#include "utils/syscache.h"

static void
plan_rename_constraint(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	char	   *from = zdm_json_string(&st->ctx, op, "from", true);
	char	   *to = zdm_json_string(&st->ctx, op, "to", true);
	TableWork  *tw = expand_table_work(st, table, true);
	Oid			conoid;
	HeapTuple	tup;
	Form_pg_constraint con;
	List	   *columns;
	bool		index_backed;

	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": rename_constraint on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("Give the constraint its name in the table instead.")));
	if (strcmp(from, to) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": rename_constraint: \"from\" and \"to\" are both \"%s\"",
						st->migration, from),
				 errhint("Give the constraint a new name in \"to\".")));
	if (zdm_str_in_list(tw->constraint_names, from))
		expand_claim_constraint(st, tw, from, NIL);	/* the error: named twice */
	conoid = expand_constraint_oid(st, tw, from, true);
	tup = SearchSysCache1(CONSTROID, ObjectIdGetDatum(conoid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "zdm: cache lookup failed for constraint %u", conoid);
	con = (Form_pg_constraint) GETSTRUCT(tup);
	if (con->coninhcount > 0)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": rename_constraint: constraint \"%s\" of table \"%s\" is inherited from a parent table",
						st->migration, from, tw->name),
				 errhint("Rename it on the parent table, which renames it here too.")));
	index_backed = OidIsValid(con->conindid) &&
		(con->contype == CONSTRAINT_UNIQUE || con->contype == CONSTRAINT_PRIMARY ||
		 con->contype == CONSTRAINT_EXCLUSION);
	ReleaseSysCache(tup);

	expand_check_constraint_name(st, tw, to, index_backed);
	columns = expand_constraint_columns(conoid);
	expand_claim_constraint(st, tw, from, columns);
	expand_claim_constraint(st, tw, to, columns);
	tw->contract = lappend(tw->contract,
						   psprintf("ALTER TABLE %s RENAME CONSTRAINT %s TO %s", tw->qualname,
									quote_identifier(from), quote_identifier(to)));
}

static const char *const rename_constraint_keys[] = {"table", "from", "to", NULL};

const ZdmOpKind zdm_op_rename_constraint = {
	"rename_constraint", rename_constraint_keys, NULL, "table", plan_rename_constraint
};
