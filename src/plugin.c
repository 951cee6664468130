/*
 * plugin.c: helpers the plugin modules share (see plugin.h).  Called at
 * config time by the main thread and at run time by any worker; the only
 * shared state is the rate limit of the warnings (atomics) and the session
 * cache's marks (sessioncache.h, its own locks).
 */
#include <stdio.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "sessioncache.h"
#include "tables.h"

bool plugin_valid_prefix(const char *prefix)
{
	return prefix[0] == '\0' || config_is_identifier(prefix);
}

const char *plugin_uc(const char *uc_option)
{
	return uc_option && uc_option[0] ? uc_option : NULL;
}

int plugin_table(const char *prefix, const char *field, const char *time_pattern)
{
	char name[80];

	if ((size_t)snprintf(name, sizeof(name), "%s%s", prefix, field) >= sizeof(name) ||
	    !config_is_identifier(name))
		return -1;
	int table = tables_register(name);
	if (table < 0)
		return -1;
	if (tables_add_pattern(table, time_pattern, config_loading()) < 0)
		return -2;
	tables_set_field(table, field);
	return table;
}

void plugin_table_error(struct config_errors *errors, const config_setting_t *where,
			const char *plugin, const char *prefix, const char *field,
			const char *time_pattern, int rc)
{
	if (rc == -1)
		config_error(errors, where, "plugin '%s': table_prefix + field ('%s%s') must be a "
			     "plain identifier of 64 characters at most", plugin, prefix, field);
	else
		config_error(errors, where, "plugin '%s': time_pattern \"%s\" cannot be kept for "
			     "table %s%s: a pattern has at most %d characters, and a table at most "
			     "8 patterns in the running config and the new one together", plugin,
			     time_pattern, prefix, field, TABLES_PATTERN_MAX - 1);
}

bool plugin_has_period(const struct plugin *plugin, int period)
{
	static _Atomic long long last;

	if (period >= 0)
		return true;
	if (log_ratelimit(&last, 10))
		log_warning("plugin %s: no period now (time_pattern gives an empty time key); "
			    "not counted", plugin->name);
	return false;
}

void plugin_unavailable(const struct plugin *plugin, const struct plugin_call *call,
			const char *what, const char *instead)
{
	static _Atomic long long last;

	if (log_ratelimit(&last, 10))
		log_notice("plugin %s: %s is not known: %s; %s", plugin->name, what,
			   call->may_wait ? "the database cannot be reached" :
			   "the database did not answer within database.wait", instead);
}

bool plugin_message_done(const struct plugin *plugin, const struct plugin_call *call)
{
	return call->message != 0 &&
	       sessioncache_seen(sessioncache_mark(call->message, plugin->name_hash),
				 clock_seconds());
}

bool plugin_message_claim(const struct plugin *plugin, const struct plugin_call *call)
{
	return call->message == 0 ||
	       sessioncache_claim(sessioncache_mark(call->message, plugin->name_hash),
				  clock_seconds());
}
