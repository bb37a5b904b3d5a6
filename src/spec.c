/*-------------------------------------------------------------------------
 *
 * spec.c
 *	  Reading a migration's JSON definition.
 *
 * A migration is pgroll's format: {"operations": [{"add_column": {...}},
 * ...]}.  These helpers fetch typed fields out of jsonb containers and
 * report every mistake in the user's terms: which migration, which
 * operation (by number and kind), which key, and what was expected.
 * Unknown keys are errors (a typo must not be silently ignored); keys that
 * pgroll knows but zdm does not implement yet get feature_not_supported.
 *
 *-------------------------------------------------------------------------
 */
#include "zdm.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

/* "operation 2 (add_column)" or "the migration", for messages. */
static char *
spec_where(ZdmSpecCtx *ctx)
{
	if (ctx->opno == 0)
		return pstrdup("the migration");
	return psprintf("operation %d (%s)", ctx->opno,
					ctx->opname ? ctx->opname : "?");
}

/* "a string", "an array", ...: what a JSON value is, for messages. */
const char *
zdm_json_type_name(JsonbValue *v)
{
	switch (v->type)
	{
		case jbvNull:
			return "null";
		case jbvString:
			return "a string";
		case jbvNumeric:
			return "a number";
		case jbvBool:
			return "a boolean";
		case jbvBinary:
			return JsonContainerIsArray(v->val.binary.data) ? "an array" : "an object";
		default:
			return "a value";
	}
}

/* Look up key in obj; NULL when absent (a JSON null counts as absent). */
static JsonbValue *
spec_get(JsonbContainer *obj, const char *key)
{
	JsonbValue *v;

	if (obj == NULL || !JsonContainerIsObject(obj))
		return NULL;
	v = getKeyJsonValueFromContainer(obj, key, strlen(key), NULL);
	if (v != NULL && v->type == jbvNull)
		return NULL;
	return v;
}

static void
spec_missing(ZdmSpecCtx *ctx, const char *key)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("migration \"%s\": %s has no \"%s\"",
					ctx->migration, spec_where(ctx), key),
			 errhint("See pgroll's migration format; \"%s\" is required here.", key)));
}

static void
spec_wrong_type(ZdmSpecCtx *ctx, const char *key, const char *want, JsonbValue *v)
{
	ereport(ERROR,
			(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
			 errmsg("migration \"%s\": \"%s\" in %s must be %s, not %s",
					ctx->migration, key, spec_where(ctx), want, zdm_json_type_name(v)),
			 errhint("Correct the migration's JSON and run it again.")));
}

bool
zdm_json_has(JsonbContainer *obj, const char *key)
{
	return spec_get(obj, key) != NULL;
}

/* Is key there at all, a JSON null included ("comment": null says "none")? */
bool
zdm_json_present(JsonbContainer *obj, const char *key)
{
	return obj != NULL && JsonContainerIsObject(obj) &&
		getKeyJsonValueFromContainer(obj, key, strlen(key), NULL) != NULL;
}

/* A nested object, or NULL when absent and not required. */
JsonbContainer *
zdm_json_object(ZdmSpecCtx *ctx, JsonbContainer *obj, const char *key, bool required)
{
	JsonbValue *v = spec_get(obj, key);

	if (v == NULL)
	{
		if (required)
			spec_missing(ctx, key);
		return NULL;
	}
	if (v->type != jbvBinary || !JsonContainerIsObject(v->val.binary.data))
		spec_wrong_type(ctx, key, "an object", v);
	return v->val.binary.data;
}

/* A nested array, or NULL when absent and not required. */
JsonbContainer *
zdm_json_array(ZdmSpecCtx *ctx, JsonbContainer *obj, const char *key, bool required)
{
	JsonbValue *v = spec_get(obj, key);

	if (v == NULL)
	{
		if (required)
			spec_missing(ctx, key);
		return NULL;
	}
	if (v->type != jbvBinary || !JsonContainerIsArray(v->val.binary.data))
		spec_wrong_type(ctx, key, "an array", v);
	return v->val.binary.data;
}

/* A non-empty string, or NULL when absent and not required. */
char *
zdm_json_string(ZdmSpecCtx *ctx, JsonbContainer *obj, const char *key, bool required)
{
	JsonbValue *v = spec_get(obj, key);
	char	   *s;

	if (v == NULL)
	{
		if (required)
			spec_missing(ctx, key);
		return NULL;
	}
	if (v->type != jbvString)
		spec_wrong_type(ctx, key, "a string", v);
	s = pnstrdup(v->val.string.val, v->val.string.len);
	if (strlen(s) != (size_t) v->val.string.len)
		ereport(ERROR,
				(errcode(ERRCODE_UNTRANSLATABLE_CHARACTER),
				 errmsg("migration \"%s\": \"%s\" in %s contains a NUL character",
						ctx->migration, key, spec_where(ctx)),
				 errhint("Remove the \\u0000 escape from the migration.")));
	if (s[0] == '\0')
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": \"%s\" in %s is empty",
						ctx->migration, key, spec_where(ctx)),
				 errhint("Give \"%s\" a value, or leave the key out where it is optional.", key)));
	return s;
}

/* A boolean, dflt when absent. */
bool
zdm_json_bool(ZdmSpecCtx *ctx, JsonbContainer *obj, const char *key, bool dflt)
{
	JsonbValue *v = spec_get(obj, key);

	if (v == NULL)
		return dflt;
	if (v->type != jbvBool)
		spec_wrong_type(ctx, key, "a boolean", v);
	return v->val.boolean;
}

static bool
name_in(const char *name, const char *const *list)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(name, *list) == 0)
			return true;
	return false;
}

/*
 * Refuse keys zdm does not know (likely typos) and keys of pgroll's format
 * that zdm does not implement yet, naming the key either way.  what names
 * the object within the current operation ("\"column\""), or is NULL for
 * the operation itself.
 */
void
zdm_json_check_keys(ZdmSpecCtx *ctx, JsonbContainer *obj, const char *what,
					const char *const *known, const char *const *unsupported)
{
	JsonbIterator *it = JsonbIteratorInit(obj);
	JsonbValue	v;
	JsonbIteratorToken tok;

	while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
	{
		char	   *key;

		if (tok != WJB_KEY)
			continue;
		key = pnstrdup(v.val.string.val, v.val.string.len);
		if (name_in(key, known))
			continue;
		if (name_in(key, unsupported))
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("migration \"%s\": \"%s\" in %s%s%s is not supported by zdm yet",
							ctx->migration, key, what ? what : "", what ? " of " : "",
							spec_where(ctx)),
					 errhint("Leave \"%s\" out and apply it in a migration of its own, or with plain SQL.", key)));
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("migration \"%s\": unknown key \"%s\" in %s%s%s",
						ctx->migration, key, what ? what : "", what ? " of " : "",
						spec_where(ctx)),
				 errhint("Check the spelling against pgroll's migration format.")));
	}
}

/* s as a JSON string literal, quotes included. */
char *
zdm_json_escape(const char *s)
{
	StringInfoData buf;

	initStringInfo(&buf);
	escape_json(&buf, s);
	return buf.data;
}
