/*
 * plugin.c: helpers the plugin modules share (see plugin.h).  Called at
 * config time by the main thread and at run time by any worker; the only
 * shared state is the rate limit of the "too long" warning (an atomic).
 */
#include <stdio.h>
#include <string.h>

#include "counters.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"

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
	int table = counters_table(name);
	if (table >= 0) {
		counters_table_add_pattern(table, time_pattern);
		counters_table_set_field(table, field);
	}
	return table;
}

bool plugin_key_is_storable(const struct plugin *plugin, const char *field,
			    const struct attribute *key, size_t time_len)
{
	static _Atomic long long last;

	if (key->value_len <= ACCOUNTING_VALUE_MAX && time_len > 0)
		return true;
	if (log_ratelimit(&last, 10)) {
		if (time_len == 0)
			log_warning("plugin %s: time_pattern gives an empty time key now; not "
				    "counted", plugin->name);
		else
			log_warning("plugin %s: %s is %zu bytes, longer than the %d tallyd can "
				    "store; not counted", plugin->name, field, key->value_len,
				    ACCOUNTING_VALUE_MAX);
	}
	return false;
}
