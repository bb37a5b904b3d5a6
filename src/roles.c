/*-------------------------------------------------------------------------
 *
 * roles.c
 *	  Whose rights zdm acts with: its own for its state, the migration's
 *	  author's for the migration's SQL, and the caller's for nothing else.
 *
 * zdm's state (zdm.migrations, the journal, the API versions and their
 * traffic) belongs to the extension's owner, a superuser, and no other role
 * may write it: every statement zdm runs on it goes through
 * zdm_state_exec(), which switches to that owner for the one statement,
 * under SECURITY_RESTRICTED_OPERATION and with search_path pinned to
 * pg_catalog, as PostgreSQL's own maintenance code does.  So a migration
 * role needs no privileges on zdm's tables, and cannot forge a plan, an
 * author or a phase with plain SQL.  Those statements are fixed text with
 * parameters; nothing of a migration's is ever run as the owner.
 *
 * The SQL a migration brings (its up/down expressions, checks, defaults,
 * and the statements its plan holds for backfill, verify, contract and
 * rollback) runs as the role that expanded it, its author, whoever calls
 * zdm.contract(), zdm.verify(), zdm.rollback(), or the background worker:
 * zdm_as_author_push() switches to that role, under
 * SECURITY_RESTRICTED_OPERATION, with the search_path the migration was
 * expanded with.  A superuser contracting a migration thus grants its
 * author nothing.  The author is stored by name, which survives pg_dump and
 * a restore into another cluster; a name that no longer resolves is an
 * error, never a fallback to another role.
 *
 * Who may act on a migration at all (zdm_require_actor): its author (or a
 * member of that role), or the owner of every table it touches.  Expand
 * itself runs its DDL as the caller, who becomes the author, so
 * PostgreSQL's own ownership checks apply to it.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "access/htup_details.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_proc.h"
#include "commands/dbcommands.h"
#include "commands/extension.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "utils/acl.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/regproc.h"
#include "utils/syscache.h"

/* The search_path of every statement zdm runs on its own state. */
#define ZDM_STATE_SEARCH_PATH "pg_catalog, pg_temp"

/* Depth of zdm_state_exec() calls running now (see replication.c). */
int			zdm_state_writing = 0;

/*
 * The schema of zdm's objects when zdm is installed in this database, else
 * InvalidOid.  The extension is not relocatable: its schema is "zdm".
 */
static Oid
zdm_schema_oid(void)
{
	if (!OidIsValid(get_extension_oid("zdm", true)))
		return InvalidOid;
	return get_namespace_oid("zdm", true);
}

/*
 * The role that owns zdm's state: the owner of zdm.migrations in the
 * extension's schema (the superuser that created the extension).
 */
Oid
zdm_state_owner(void)
{
	Oid			nsp = zdm_schema_oid();
	Oid			relid = OidIsValid(nsp) ? get_relname_relid("migrations", nsp) : InvalidOid;
	HeapTuple	tup;
	Oid			owner;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("extension \"zdm\" is not installed in database \"%s\"",
						get_database_name(MyDatabaseId)),
				 errhint("A superuser runs CREATE EXTENSION zdm in each database that is migrated.")));
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(relid));
	if (!HeapTupleIsValid(tup))
		elog(ERROR, "cache lookup failed for relation %u", relid);
	owner = ((Form_pg_class) GETSTRUCT(tup))->relowner;
	ReleaseSysCache(tup);
	return owner;
}

/*
 * Run one statement on zdm's state as its owner (see the file header).
 * Same arguments and result as SPI_execute_with_args; the caller has
 * connected to SPI.  An error leaves the switch to the transaction's (or
 * subtransaction's) abort, which restores the user and the GUCs.
 */
int
zdm_state_exec(const char *sql, int nargs, Oid *types, Datum *values,
			   const char *nulls, bool read_only, long count)
{
	Oid			save_user;
	int			save_sec;
	int			level;
	int			rc;

	GetUserIdAndSecContext(&save_user, &save_sec);
	SetUserIdAndSecContext(zdm_state_owner(),
						   save_sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	level = zdm_search_path_push(ZDM_STATE_SEARCH_PATH);
	/* zdm's own writes: the state guard lets them through (replication.c) */
	zdm_state_writing++;
	PG_TRY();
	{
		rc = SPI_execute_with_args(sql, nargs, types, values, nulls, read_only, count);
	}
	PG_FINALLY();
	{
		zdm_state_writing--;
	}
	PG_END_TRY();
	zdm_guc_pop(level);
	SetUserIdAndSecContext(save_user, save_sec);
	return rc;
}

/* zdm_state_exec without parameters. */
int
zdm_state_query(const char *sql, bool read_only, long count)
{
	return zdm_state_exec(sql, 0, NULL, NULL, NULL, read_only, count);
}

/* Pin search_path for this whole session (zdm's background workers). */
void
zdm_pin_search_path(void)
{
	(void) set_config_option("search_path", ZDM_STATE_SEARCH_PATH,
							 PGC_SUSET, PGC_S_SESSION,
							 GUC_ACTION_SET, true, 0, false);
}

/* The OID of a migration's author, or a clear error. */
Oid
zdm_author_oid(const ZdmMigration *m)
{
	Oid			role;

	if (m->author == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("migration \"%s\" has no recorded author", m->name),
				 errdetail("zdm runs a migration's SQL as the role that expanded it, and that role is not known."),
				 errhint("A superuser can name the role: UPDATE zdm.migrations SET author = '<role>' WHERE name = '%s'.",
						 m->name)));
	role = get_role_oid(m->author, true);
	if (!OidIsValid(role))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("role \"%s\", the author of migration \"%s\", does not exist", m->author, m->name),
				 errdetail("zdm runs a migration's SQL as the role that expanded it, never as another role."),
				 errhint("Create the role (pg_dumpall --roles-only carries roles between clusters), "
						 "or have a superuser name another: UPDATE zdm.migrations SET author = '<role>' WHERE name = '%s'.",
						 m->name)));
	return role;
}

/*
 * Act as the migration's author until zdm_as_pop(): its rights, under
 * SECURITY_RESTRICTED_OPERATION, with the given search_path (the one the
 * migration was expanded with).
 */
void
zdm_as_author_push(ZdmAs *as, const ZdmMigration *m, const char *search_path)
{
	Oid			author = zdm_author_oid(m);

	GetUserIdAndSecContext(&as->user, &as->sec);
	SetUserIdAndSecContext(author,
						   as->sec | SECURITY_LOCAL_USERID_CHANGE | SECURITY_RESTRICTED_OPERATION);
	as->level = zdm_search_path_push(search_path ? search_path : ZDM_STATE_SEARCH_PATH);
}

void
zdm_as_pop(ZdmAs *as)
{
	zdm_guc_pop(as->level);
	SetUserIdAndSecContext(as->user, as->sec);
}

/* The relations of a plan's "tables" that exist now. */
static List *
plan_relids(const ZdmMigration *m)
{
	ZdmSpecCtx	ctx = {m->name, 0, NULL};
	JsonbContainer *tables = zdm_json_array(&ctx, &m->plan->root, "tables", false);
	List	   *relids = NIL;

	for (int i = 0; tables && i < JsonContainerSize(tables); i++)
	{
		JsonbValue *v = getIthJsonbValueFromContainer(tables, i);
		char	   *relation;
		Oid			relid;

		if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
			continue;
		relation = zdm_json_string(&ctx, v->val.binary.data, "relation", false);
		if (relation == NULL)
			continue;
		relid = RangeVarGetRelid(makeRangeVarFromNameList(stringToQualifiedNameList(relation)),
								 NoLock, true);
		if (OidIsValid(relid))
			relids = lappend_oid(relids, relid);
	}
	return relids;
}

/*
 * May the current role act on the migration (run a step, steer its
 * backfill, verify it)?  Its author and the author's members may, and so
 * may the owner of every table it touches; anyone else gets an error.
 * Superusers may, as members of every role.
 */
bool
zdm_may_act(const ZdmMigration *m)
{
	Oid			me = GetUserId();
	Oid			author = m->author ? get_role_oid(m->author, true) : InvalidOid;
	List	   *relids;
	ListCell   *lc;
	bool		owns_all;

	if (superuser() || (OidIsValid(author) && has_privs_of_role(me, author)))
		return true;
	relids = plan_relids(m);
	owns_all = relids != NIL;
	foreach(lc, relids)
		owns_all = owns_all && pg_class_ownercheck(lfirst_oid(lc), me);
	return owns_all;
}

/* zdm_may_act, or an error naming the action. */
void
zdm_require_actor(const ZdmMigration *m, const char *action)
{
	if (zdm_may_act(m))
		return;
	ereport(ERROR,
			(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
			 errmsg("permission denied to %s migration \"%s\"", action, m->name),
			 errdetail("Only its author, role \"%s\", members of that role, and the owner of every table it changes may.",
					   m->author ? m->author : "(unknown)"),
			 errhint("Run it as \"%s\", or as the owner of the migration's tables.",
					 m->author ? m->author : "the role that expanded it")));
}

/* The current role's name, for the journal. */
char *
zdm_current_role_name(void)
{
	char	   *name = GetUserNameFromId(GetUserId(), true);

	return name ? name : psprintf("%u", GetUserId());
}

/*
 * The OID of one of zdm's own functions, or InvalidOid (zdm not installed,
 * or a version without it).  Looked up in the catalog directly, with no
 * privilege check: the planner and executor hooks call it for every role's
 * statements, and what an application role may do must not depend on its
 * privileges on zdm's schema.
 */
Oid
zdm_function_oid(const char *name, int nargs, const Oid *argtypes)
{
	Oid			nsp = zdm_schema_oid();

	if (!OidIsValid(nsp))
		return InvalidOid;
	return GetSysCacheOid3(PROCNAMEARGSNSP, Anum_pg_proc_oid,
						   CStringGetDatum(name),
						   PointerGetDatum(buildoidvector(argtypes, nargs)),
						   ObjectIdGetDatum(nsp));
}
