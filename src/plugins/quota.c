/*
 * plugins/quota.c: the Quota module (mtpolicyd's Quota).
 *
 *   { name = "QuotaIP"; module = "Quota"; field = "client_address";
 *     metric = "count"; threshold = 1000; uc_threshold = "quota_count";
 *     action = "defer you exceeded your monthly limit, please insert coin"; }
 *
 * Answers `action` when the metric's total for (table_prefix + field, time
 * key, value) — flushed, in flight and pending — is >= threshold, so the
 * message that crosses the limit is accepted and the next is deferred.
 * enabled, field, threshold, action and metric can be replaced per request
 * by session values (uc_...).  A total the counter cache does not know yet
 * makes the request wait for the loader; when the database cannot be
 * reached, or did not answer within database.wait, on_db_error decides
 * ("continue" with tallyd's own increments as the total, or an action to
 * answer).  With session_cache, a message it passed passes at its later
 * requests without a new comparison (its own first count is in the total
 * by then); a deferred one is compared again.
 *
 * The first time in a period that a key is over the threshold, a notice is
 * logged (notice.h).  With monitor = true the plugin answers nothing: it
 * logs what it would have answered and counts it (stats: monitored), for
 * rolling out a quota.  Settings are read-only after setup; run() is called
 * by all workers at once.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "counters.h"
#include "log.h"
#include "metrics.h"
#include "notice.h"
#include "plugin.h"
#include "stats.h"
#include "tables.h"

struct quota_settings {
	char *field;
	char *metric;
	int64_t threshold;
	char *action;
	char *time_pattern;
	char *table_prefix;
	bool enabled;
	bool monitor;
	char *uc_enabled;
	char *uc_field;
	char *uc_threshold;
	char *uc_action;
	char *uc_metric;
	char *on_db_error;
	int table;                 /* table of the configured field */
	size_t field_len;
	struct notice_set *noticed;   /* keys told over their quota (its own atomics) */
};

#define SETTING(field) offsetof(struct quota_settings, field)

static const char *const metrics[] = { "count", "count_rcpt", "size", "size_rcpt", NULL };

static const struct config_option quota_options[] = {
	PLUGIN_COMMON_OPTIONS,
	PLUGIN_EXEMPT_OPTION,
	{ .name = "field", .type = OPTION_STRING, .offset = SETTING(field), .required = true,
	  .valid = config_is_identifier, .valid_what = "an attribute name (letters, digits, _)" },
	{ .name = "metric", .type = OPTION_STRING, .offset = SETTING(metric), .required = true,
	  .choices = metrics },
	{ .name = "threshold", .type = OPTION_INT64, .offset = SETTING(threshold),
	  .required = true },
	{ .name = "action", .type = OPTION_STRING, .offset = SETTING(action),
	  .default_string = "defer smtp traffic quota has been exceeded",
	  .valid = policy_action_is_valid, .valid_what = "a one-line action text" },
	PLUGIN_TABLE_OPTIONS(struct quota_settings),
	{ .name = "enabled", .type = OPTION_SWITCH, .offset = SETTING(enabled),
	  .default_number = 1 },
	{ .name = "monitor", .type = OPTION_SWITCH, .offset = SETTING(monitor),
	  .default_number = 0 },
	{ .name = "uc_enabled", .type = OPTION_STRING, .offset = SETTING(uc_enabled),
	  .default_string = "" },
	{ .name = "uc_field", .type = OPTION_STRING, .offset = SETTING(uc_field),
	  .default_string = "" },
	{ .name = "uc_threshold", .type = OPTION_STRING, .offset = SETTING(uc_threshold),
	  .default_string = "" },
	{ .name = "uc_action", .type = OPTION_STRING, .offset = SETTING(uc_action),
	  .default_string = "" },
	{ .name = "uc_metric", .type = OPTION_STRING, .offset = SETTING(uc_metric),
	  .default_string = "" },
	{ .name = "on_db_error", .type = OPTION_STRING, .offset = SETTING(on_db_error),
	  .default_string = "continue", .valid = policy_action_is_valid,
	  .valid_what = "\"continue\" or a one-line action text" },
	{ .name = NULL },
};

static int quota_setup(struct plugin *plugin, const config_setting_t *where,
		       struct config_errors *errors)
{
	struct quota_settings *q = plugin->settings;

	q->table = plugin_table(q->table_prefix, q->field, q->time_pattern);
	if (q->table < 0) {
		plugin_table_error(errors, where, plugin->name, q->table_prefix, q->field,
				   q->time_pattern, q->table);
		return 1;
	}
	tables_set_read(q->table);
	q->field_len = strlen(q->field);
	q->noticed = notice_new();
	return 0;
}

static void quota_destroy(struct plugin *plugin)
{
	struct quota_settings *q = plugin->settings;

	notice_free(q->noticed);
}

/* The table for a field named by uc_field (registered on first use). */
static int table_for(const struct quota_settings *q, const char *field)
{
	if (field == q->field)
		return q->table;
	int table = plugin_table(q->table_prefix, field, q->time_pattern);
	if (table >= 0)
		tables_set_read(table);
	return table;
}

/* A key over its quota, as the log tells it. */
struct over {
	const char *field;
	const struct attribute *key;
	const char *metric;
	uint64_t value;
	int64_t threshold;
	const char *action;
};

/* Logs the first time in a period that a key is over (notice.h); every
 * time at debug level. */
static void tell(const struct plugin *plugin, int period, const char *stored, size_t stored_len,
		 const struct over *o)
{
	const struct quota_settings *q = plugin->settings;
	const char *would = q->monitor ? "monitor = true: would answer" : "answering";
	uint64_t left_out = 0;
	size_t time_len;
	const char *time = periods_time(period, &time_len);

	if (!notice_first(q->noticed, period, stored, stored_len, &left_out)) {
		log_debug("plugin %s: %s %.*s has %s %llu of %lld: %s %s", plugin->name, o->field,
			  (int)o->key->value_len, o->key->value, o->metric,
			  (unsigned long long)o->value, (long long)o->threshold, would, o->action);
		return;
	}
	log_notice("plugin %s: %s %.*s reached its quota for %.*s: %s %llu of %lld; %s \"%s\"",
		   plugin->name, o->field, (int)o->key->value_len, o->key->value, (int)time_len,
		   time, o->metric, (unsigned long long)o->value, (long long)o->threshold, would,
		   o->action);
	if (left_out > 0)
		log_notice("plugin %s: %llu more keys reached their quota in the last minutes, not "
			   "logged (at most %d lines a minute; tallyctl top lists the keys)",
			   plugin->name, (unsigned long long)left_out, NOTICE_PER_MINUTE);
}

static enum plugin_result quota_run(const struct plugin *plugin, struct plugin_call *call)
{
	const struct quota_settings *q = plugin->settings;
	const struct session *session = call->session;
	const char *name = plugin->name;
	struct metric_values total;

	if (!session_uc_switch(session, plugin_uc(q->uc_enabled), q->enabled))
		return PLUGIN_NEXT;
	if (plugin_message_done(plugin, call))
		return PLUGIN_NEXT;        /* session_cache: passed at its first request */
	const char *field = session_uc_text(session, plugin_uc(q->uc_field), q->field,
					    config_is_identifier, name, "field");
	const char *metric = session_uc_text(session, plugin_uc(q->uc_metric), q->metric,
					     metric_is_valid, name, "metric");
	int64_t threshold = session_uc_number(session, plugin_uc(q->uc_threshold), q->threshold,
					      name);
	const char *action = session_uc_text(session, plugin_uc(q->uc_action), q->action,
					     policy_action_is_valid, name, "action");

	const struct attribute *key = request_find_len(call->request, field,
						       field == q->field ? q->field_len : strlen(field));
	if (attribute_is_blank(key))
		return PLUGIN_NEXT;
	int table = table_for(q, field);
	int period = table < 0 ? -1 : periods_now(table, q->time_pattern);
	if (table < 0 || !plugin_has_period(plugin, period))
		return PLUGIN_NEXT;

	char long_form[ACCOUNTING_VALUE_MAX];
	size_t stored_len = key->value_len;
	const char *stored = accounting_key(key->value, &stored_len, long_form);
	enum lookup found = counters_total(period, stored, stored_len, call->may_wait, &total,
					   &call->ticket);
	if (found == LOOKUP_WAIT)
		return PLUGIN_WAIT;
	if (found == LOOKUP_FAILED) {
		bool go_on = strcmp(q->on_db_error, "continue") == 0;
		plugin_unavailable(plugin, call, "a total",
				   go_on ? "on_db_error: continue, with this tallyd's own counts" :
				   "answering on_db_error");
		if (!go_on) {
			call->action = q->on_db_error;
			return PLUGIN_ANSWER;
		}
	}
	uint64_t value = total.v[metric_parse(metric)];
	if (threshold > 0 && value < (uint64_t)threshold) {
		plugin_message_claim(plugin, call);
		return PLUGIN_NEXT;
	}
	struct over over = { field, key, metric, value, threshold, action };
	tell(plugin, period, stored, stored_len, &over);
	if (q->monitor) {
		if (plugin->stats)
			stats_bump(&plugin->stats[stats_thread_index()].monitored, 1);
		return PLUGIN_NEXT;
	}
	call->action = action;
	return PLUGIN_ANSWER;
}

/* The configured field's table; a Quota that is off for good reads none. */
static int quota_reads(const struct plugin *plugin, const char **time_pattern)
{
	const struct quota_settings *q = plugin->settings;

	if (!q->enabled && plugin_uc(q->uc_enabled) == NULL)
		return -1;
	*time_pattern = q->time_pattern;
	return q->table;
}

const struct plugin_module quota_module = {
	.name = "Quota",
	.uses_database = true,
	.options = quota_options,
	.settings_size = sizeof(struct quota_settings),
	.setup = quota_setup,
	.run = quota_run,
	.destroy = quota_destroy,
	.reads = quota_reads,
};
