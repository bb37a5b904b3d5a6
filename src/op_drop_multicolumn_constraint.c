/*-------------------------------------------------------------------------
 *
 * op_drop_multicolumn_constraint.c
 *	  drop_multicolumn_constraint: a constraint of several columns (or of
 *	  one), dropped at contract.
 *
 *	  pgroll has it as a kind of its own because it copies every column the
 *	  constraint names, with "up" and "down" per column.  zdm copies none
 *	  (op_drop_constraint.c says why and plans both kinds): this kind only
 *	  reads "up" and "down" as objects mapping each column to an
 *	  expression, and accepts a constraint of any number of columns.
 *
 *-------------------------------------------------------------------------
 */
#include "expand.h"

static void
plan_drop_multicolumn_constraint(ExpandState *st, JsonbContainer *op)
{
	expand_plan_constraint_drop(st, op, true);
}

static const char *const drop_multicolumn_constraint_keys[] = {"table", "name", "up", "down", NULL};

const ZdmOpKind zdm_op_drop_multicolumn_constraint = {
	"drop_multicolumn_constraint", drop_multicolumn_constraint_keys, NULL, "table",
	plan_drop_multicolumn_constraint
};
