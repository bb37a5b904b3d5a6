/*-------------------------------------------------------------------------
 *
 * op_add_column.c
 *	  add_column: a new column, filled by "up" for existing rows.
 *
 *	  The column is added nullable (or with a non-volatile default, which
 *	  needs no rewrite); NOT NULL comes as a NOT VALID check validated later.
 *	  "up" becomes a dual-write rule and the backfill's SET.
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
plan_add_column(ExpandState *st, JsonbContainer *op)
{
	char	   *table = zdm_json_string(&st->ctx, op, "table", true);
	JsonbContainer *column = zdm_json_object(&st->ctx, op, "column", true);
	char	   *up = zdm_json_string(&st->ctx, op, "up", false);
	char	   *col,
			   *type,
			   *typname,
			   *dflt,
			   *comment,
			   *def_sql = NULL;
	bool		nullable;
	Oid			typid;
	int32		typmod;
	TableWork  *tw;

	zdm_json_check_keys(&st->ctx, column, "\"column\"", expand_column_keys, expand_column_unsupported);
	col = zdm_json_string(&st->ctx, column, "name", true);
	type = zdm_json_string(&st->ctx, column, "type", true);
	nullable = zdm_json_bool(&st->ctx, column, "nullable", false);
	dflt = zdm_json_string(&st->ctx, column, "default", false);
	comment = zdm_json_string(&st->ctx, column, "comment", false);
	expand_refuse_flag(st, column, "pk", "Add the key with CREATE UNIQUE INDEX CONCURRENTLY and ALTER TABLE ... ADD PRIMARY KEY USING INDEX.");
	expand_refuse_flag(st, column, "unique", "Add the column first, then CREATE UNIQUE INDEX CONCURRENTLY in a later step.");

	tw = expand_table_work(st, table, true);
	if (!OidIsValid(tw->relid))
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("migration \"%s\": add_column on table \"%s\", which this migration creates",
						st->migration, table),
				 errhint("List the column in the create_table operation instead.")));
	expand_claim_column(st, tw, col);
	expand_resolve_type(st, type, col, &typid, &typmod, &typname);
	if (dflt)
		def_sql = expand_check_default(st, tw, col, dflt, typid, typmod, true);
	tw->desc = expand_desc_add_column(tw->desc, col, typid, typmod);
	if (up)
	{
		up = zdm_expr_normalize(up);
		(void) zdm_expr_analyze_row(st->migration, psprintf("up expression of column \"%s\"", col),
									tw->desc, tw->name, up, typid, typmod);
	}
	if (!nullable && !dflt && !up)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_TABLE_DEFINITION),
				 errmsg("migration \"%s\": new column \"%s\" of table \"%s\" is NOT NULL but has neither \"default\" nor \"up\"",
						st->migration, col, tw->name),
				 errhint("Give \"up\" to compute it for existing and new rows, or a \"default\", or set \"nullable\": true.")));

	tw->expand = lappend(tw->expand,
						 psprintf("ALTER TABLE %s ADD COLUMN %s %s%s%s", tw->qualname, qcol(col), typname,
								  def_sql ? " DEFAULT " : "", def_sql ? def_sql : ""));
	if (!nullable)
		expand_add_not_null(tw, col);
	if (zdm_json_has(column, "check"))
		(void) expand_add_check(st, tw, zdm_json_object(&st->ctx, column, "check", true), true);
	expand_add_comment(tw, col, comment);
	tw->rollback = lappend(tw->rollback,
						   psprintf("ALTER TABLE %s DROP COLUMN %s", tw->qualname, qcol(col)));
	tw->new_physical = lappend(tw->new_physical, col);
	tw->new_visible = lappend(tw->new_visible, col);

	if (up)
	{
		DualRule   *r = palloc0(sizeof(DualRule));

		r->new_col = col;
		r->visible = col;
		r->up = up;
		tw->rules = lappend(tw->rules, r);
		/* With a default, existing rows already hold it: nothing to backfill. */
		if (!dflt)
		{
			expand_find_backfill_key(st, tw);
			tw->sets = lappend(tw->sets, psprintf("%s = (%s\n)", qcol(col), up));
			tw->todo = lappend(tw->todo, psprintf("%s IS NULL", qcol(col)));
			tw->verify = lappend(tw->verify,
								 psprintf("(%s IS NULL AND (%s\n) IS NOT NULL)", qcol(col), up));
		}
	}
}

static const char *const add_column_keys[] = {"table", "column", "up", NULL};

const ZdmOpKind zdm_op_add_column = {
	"add_column", add_column_keys, NULL, "table", plan_add_column
};
