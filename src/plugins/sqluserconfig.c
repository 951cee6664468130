/*
 * plugins/sqluserconfig.c: the SqlUserConfig module (mtpolicyd's).
 *
 *   { name = "QuotaPolicyConfig"; module = "SqlUserConfig"; field = "client_address";
 *     sql_query = "SELECT p.config FROM ... WHERE h.client_address=?";
 *     preload_query = "SELECT h.client_address, p.config FROM ..."; }
 *
 * Puts the keys of the field's user config (column 1 of sql_query's first
 * row, a JSON object) in the session, where later plugins' uc_ options find
 * them.  The config comes from the user config cache (usercache.h): a key
 * it does not hold yet makes the request wait for the loader; with
 * preload_query the whole mapping is in memory.  No row, a blank field,
 * bad JSON, or a database that cannot be reached or did not answer within
 * database.wait: logged, nothing is set, the defaults apply.  Never
 * answers.  Settings are read-only after setup; any worker.
 */
#include <stddef.h>
#include <string.h>

#include "log.h"
#include "plugin.h"
#include "usercache.h"

struct sqluserconfig_settings {
	char *sql_query;
	char *preload_query;
	char *field;
	size_t field_len;
	int query;                 /* usercache_query() id */
};

#define SETTING(field) offsetof(struct sqluserconfig_settings, field)

/* The placeholders (?) of an SQL text, as MariaDB's and SQLite's parsers
 * see them: a ? inside a quoted string or name, or a comment, is none. */
static int count_placeholders(const char *sql)
{
	int count = 0;

	for (const char *p = sql; *p; p++) {
		if (*p == '\'' || *p == '"' || *p == '`') {
			char quote = *p;
			for (p++; *p && *p != quote; p++) {
				if (*p == '\\' && quote != '`' && p[1])
					p++;
			}
			if (*p == '\0')
				break;
		} else if ((p[0] == '-' && p[1] == '-') || *p == '#') {
			p += strcspn(p, "\n");
			if (*p == '\0')
				break;
		} else if (p[0] == '/' && p[1] == '*') {
			const char *end = strstr(p + 2, "*/");
			if (end == NULL)
				break;
			p = end + 1;
		} else if (*p == '?') {
			count++;
		}
	}
	return count;
}

static bool has_one_placeholder(const char *sql)
{
	return count_placeholders(sql) == 1;
}

static bool has_no_placeholder(const char *sql)
{
	return count_placeholders(sql) == 0;
}

static const struct config_option sqluserconfig_options[] = {
	PLUGIN_COMMON_OPTIONS,
	{ .name = "sql_query", .type = OPTION_STRING, .offset = SETTING(sql_query),
	  .default_string = "SELECT config FROM user_config WHERE address=?",
	  .valid = has_one_placeholder,
	  .valid_what = "an SQL query with exactly one ? (the field's value is bound to it)" },
	{ .name = "preload_query", .type = OPTION_STRING, .offset = SETTING(preload_query),
	  .default_string = "", .valid = has_no_placeholder,
	  .valid_what = "an SQL query without ? that returns rows of key and config" },
	{ .name = "field", .type = OPTION_STRING, .offset = SETTING(field),
	  .default_string = "recipient", .valid = config_is_identifier,
	  .valid_what = "an attribute name (letters, digits, _)" },
	{ .name = NULL },
};

static int sqluserconfig_setup(struct plugin *plugin, const config_setting_t *where,
			       struct config_errors *errors)
{
	struct sqluserconfig_settings *u = plugin->settings;

	u->field_len = strlen(u->field);
	u->query = usercache_query(u->sql_query, u->preload_query, u->field, config_loading());
	if (u->query < 0) {
		config_error(errors, where, "plugin '%s': too many different sql_query texts "
			     "(64, in the running config and the new one together)", plugin->name);
		return 1;
	}
	return 0;
}

static enum plugin_result sqluserconfig_run(const struct plugin *plugin, struct plugin_call *call)
{
	const struct sqluserconfig_settings *u = plugin->settings;
	const struct attribute *key = request_find_len(call->request, u->field, u->field_len);
	bool found;

	if (attribute_is_blank(key)) {
		log_debug("plugin %s: %s is empty; no user config", plugin->name, u->field);
		return PLUGIN_NEXT;
	}
	enum lookup result = usercache_lookup(u->query, key->value, key->value_len, call->may_wait,
					      call->session, &found, &call->ticket);
	if (result == LOOKUP_WAIT)
		return PLUGIN_WAIT;
	if (result == LOOKUP_FAILED)
		plugin_unavailable(plugin, call, "the user config", "the defaults apply");
	return PLUGIN_NEXT;
}

static void sqluserconfig_queries(const struct plugin *plugin, const char **lookup,
				  const char **preload)
{
	const struct sqluserconfig_settings *u = plugin->settings;

	*lookup = u->sql_query;
	*preload = u->preload_query;
}

const struct plugin_module sqluserconfig_module = {
	.name = "SqlUserConfig",
	.uses_database = true,
	.options = sqluserconfig_options,
	.settings_size = sizeof(struct sqluserconfig_settings),
	.setup = sqluserconfig_setup,
	.run = sqluserconfig_run,
	.queries = sqluserconfig_queries,
};
