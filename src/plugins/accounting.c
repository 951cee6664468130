/*
 * plugins/accounting.c: the Accounting module (mtpolicyd's Accounting).
 *
 *   { name = "AcctIP"; module = "Accounting"; fields = "client_address";
 *     time_pattern = "%Y-%m"; table_prefix = "acct_"; }
 *
 * For each field whose value is not blank it adds the request's metrics to
 * (table_prefix + field, time key, value) in the counter cache, and to the
 * journal when there is one; the flusher writes them to the database.
 * With session_cache, only the first request of a message counts (the
 * plugin's mark, sessioncache.h).  Never answers.  Settings are read-only after setup; run()
 * is called by all workers at once and only touches the counter cache.
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "counters.h"
#include "tables.h"
#include "journal.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

struct accounting_field {
	char *name;
	size_t name_len;
	int table;                 /* tables_register() id of table_prefix + name */
};

struct accounting_settings {
	char *fields;
	char *time_pattern;
	char *table_prefix;
	bool enabled;
	char *uc_enabled;
	struct accounting_field *list;   /* parsed from fields */
	size_t count;
};

#define SETTING(field) offsetof(struct accounting_settings, field)

static const struct config_option accounting_options[] = {
	PLUGIN_COMMON_OPTIONS,
	PLUGIN_EXEMPT_OPTION,
	{ .name = "fields", .type = OPTION_STRING, .offset = SETTING(fields), .required = true },
	PLUGIN_TABLE_OPTIONS(struct accounting_settings),
	{ .name = "enabled", .type = OPTION_SWITCH, .offset = SETTING(enabled),
	  .default_number = 1 },
	{ .name = "uc_enabled", .type = OPTION_STRING, .offset = SETTING(uc_enabled),
	  .default_string = "" },
	{ .name = NULL },
};

/* Registers table_prefix + field; records a problem when it is no table
 * name.  Shared with Quota through plugin_table(). */
static int add_field(struct accounting_settings *a, const char *name, const char *plugin,
		     const config_setting_t *where, struct config_errors *errors)
{
	int table = plugin_table(a->table_prefix, name, a->time_pattern);

	if (table < 0) {
		plugin_table_error(errors, where, plugin, a->table_prefix, name, a->time_pattern,
				   table);
		return 1;
	}
	a->list = xrealloc(a->list, (a->count + 1) * sizeof(*a->list));
	a->list[a->count].name = xstrdup(name);
	a->list[a->count].name_len = strlen(name);
	a->list[a->count].table = table;
	a->count++;
	return 0;
}

static int accounting_setup(struct plugin *plugin, const config_setting_t *where,
			    struct config_errors *errors)
{
	struct accounting_settings *a = plugin->settings;
	char *copy = xstrdup(a->fields), *save = NULL;
	int problems = 0;

	/* mtpolicyd splits on commas with optional white space around them */
	for (char *f = strtok_r(copy, ", \t", &save); f; f = strtok_r(NULL, ", \t", &save))
		problems += add_field(a, f, plugin->name, where, errors);
	free(copy);
	if (a->count == 0 && problems == 0) {
		config_error(errors, where, "plugin '%s': fields names no field", plugin->name);
		problems++;
	}
	return problems;
}

static void accounting_destroy(struct plugin *plugin)
{
	struct accounting_settings *a = plugin->settings;

	for (size_t i = 0; i < a->count; i++)
		free(a->list[i].name);
	free(a->list);
}

static enum plugin_result accounting_run(const struct plugin *plugin, struct plugin_call *call)
{
	const struct accounting_settings *a = plugin->settings;
	struct metric_values delta;

	if (!session_uc_switch(call->session, plugin_uc(a->uc_enabled), a->enabled))
		return PLUGIN_NEXT;
	if (!plugin_message_claim(plugin, call))
		return PLUGIN_NEXT;        /* session_cache: the message is counted */
	metrics_of_request(call->request, &delta);
	for (size_t i = 0; i < a->count; i++) {
		const struct accounting_field *f = &a->list[i];
		const struct attribute *key = request_find_len(call->request, f->name, f->name_len);
		if (attribute_is_blank(key))
			continue;
		int period = periods_now(f->table, a->time_pattern);
		if (!plugin_has_period(plugin, period))
			continue;
		char long_form[ACCOUNTING_VALUE_MAX];
		size_t stored_len = key->value_len;
		const char *stored = accounting_key(key->value, &stored_len, long_form);
		uint32_t take = counters_add(period, stored, stored_len, &delta);
		journal_record(take, period, stored, stored_len, &delta);
	}
	return PLUGIN_NEXT;
}

static bool accounting_writes(const struct plugin *plugin, int table, const char *time_pattern)
{
	const struct accounting_settings *a = plugin->settings;

	if ((!a->enabled && plugin_uc(a->uc_enabled) == NULL) ||
	    strcmp(a->time_pattern, time_pattern) != 0)
		return false;
	for (size_t i = 0; i < a->count; i++) {
		if (a->list[i].table == table)
			return true;
	}
	return false;
}

const struct plugin_module accounting_module = {
	.name = "Accounting",
	.uses_database = true,
	.options = accounting_options,
	.settings_size = sizeof(struct accounting_settings),
	.setup = accounting_setup,
	.run = accounting_run,
	.destroy = accounting_destroy,
	.writes = accounting_writes,
};
