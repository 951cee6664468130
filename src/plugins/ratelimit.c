/*
 * plugins/ratelimit.c: the RateLimit module, sliding-window rate limits.
 *
 *   { name = "RateSASL"; module = "RateLimit"; field = "sasl_username";
 *     metric = "count"; limits = ( [100, 60], [500, 3600], [1000, 86400] );
 *     uc_limits = "rate_limits"; }
 *
 * For a request whose field is not blank, offers the request's metric to
 * the key's windows (ratekeys.h): at most `count` units in any
 * `seconds`-second span, for every [count, seconds] of limits.  A message
 * every window takes is counted in all of them; one that would overflow a
 * window is answered `action` (by default a 4.7.1 deferral naming the first
 * window it overflows) and counted in none.  enabled, field, metric, action
 * and limits can be replaced per request by session values (uc_...;
 * uc_limits takes a JSON array of [count, seconds] pairs, or a string
 * holding one).  With session_cache, a message it counted is not offered
 * again at its later requests; a refused one is offered again.  In memory
 * (ratestate.c keeps it across restarts): no database, per tallyd
 * instance.
 *
 * Settings are read-only after setup; run() is called by all workers at
 * once and changes only the plugin's key table (its own shard locks).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "log.h"
#include "metrics.h"
#include "plugin.h"
#include "ratekeys.h"

struct ratelimit_settings {
	char *field;
	char *metric;
	char *action;              /* "": the default, naming the window */
	bool enabled;
	int max_keys;
	char *uc_enabled;
	char *uc_field;
	char *uc_metric;
	char *uc_action;
	char *uc_limits;
	struct rate_limits limits;   /* parsed from `limits`, signed for `metric` */
	int metric_index;
	size_t field_len;
	struct ratekeys *keys;
};

#define SETTING(field) offsetof(struct ratelimit_settings, field)

static const char *const metrics[] = { "count", "count_rcpt", "size", "size_rcpt", NULL };

static const struct config_option ratelimit_options[] = {
	PLUGIN_COMMON_OPTIONS,
	PLUGIN_EXEMPT_OPTION,
	{ .name = "field", .type = OPTION_STRING, .offset = SETTING(field), .required = true,
	  .valid = config_is_identifier, .valid_what = "an attribute name (letters, digits, _)" },
	{ .name = "metric", .type = OPTION_STRING, .offset = SETTING(metric),
	  .default_string = "count", .choices = metrics },
	{ .name = "limits", .type = OPTION_CUSTOM, .required = true },
	{ .name = "action", .type = OPTION_STRING, .offset = SETTING(action),
	  .default_string = "", .valid = policy_action_is_valid,
	  .valid_what = "a one-line action text" },
	{ .name = "enabled", .type = OPTION_SWITCH, .offset = SETTING(enabled),
	  .default_number = 1 },
	{ .name = "max_keys", .type = OPTION_INT, .offset = SETTING(max_keys),
	  .default_number = 100000, .min = 64, .max = 100000000 },
	{ .name = "uc_enabled", .type = OPTION_STRING, .offset = SETTING(uc_enabled),
	  .default_string = "" },
	{ .name = "uc_field", .type = OPTION_STRING, .offset = SETTING(uc_field),
	  .default_string = "" },
	{ .name = "uc_metric", .type = OPTION_STRING, .offset = SETTING(uc_metric),
	  .default_string = "" },
	{ .name = "uc_action", .type = OPTION_STRING, .offset = SETTING(uc_action),
	  .default_string = "" },
	{ .name = "uc_limits", .type = OPTION_STRING, .offset = SETTING(uc_limits),
	  .default_string = "" },
	{ .name = NULL },
};

/* ------------------------------------------------------------------ limits */

/* Why [count, seconds] is no limit, or NULL. */
static const char *limit_problem(int64_t count, int64_t seconds)
{
	if (count < 1 || (uint64_t)count > RATEWINDOW_COUNT_MAX)
		return "the count must be 1..2^62";
	if (seconds < 1 || seconds > RATEWINDOW_SECONDS_MAX)
		return "the seconds must be 1..2592000 (30 days)";
	return NULL;
}

static void limits_add(struct rate_limits *limits, int64_t count, int64_t seconds)
{
	limits->limit[limits->count].count = (uint64_t)count;
	limits->limit[limits->count].seconds = (uint32_t)seconds;
	limits->count++;
}

/* One [count, seconds] of the config; records a problem. */
static int config_pair(struct rate_limits *limits, const config_setting_t *pair,
		       const char *plugin, struct config_errors *errors)
{
	int type = config_setting_type(pair);

	if ((type != CONFIG_TYPE_ARRAY && type != CONFIG_TYPE_LIST) ||
	    config_setting_length(pair) != 2) {
		config_error(errors, pair, "plugin '%s': limits must be a list of [count, seconds] "
			     "pairs, as in limits = ( [100, 60], [500, 3600] );", plugin);
		return 1;
	}
	const config_setting_t *c = config_setting_get_elem(pair, 0);
	const config_setting_t *s = config_setting_get_elem(pair, 1);
	for (int i = 0; i < 2; i++) {
		int t = config_setting_type(i == 0 ? c : s);
		if (t != CONFIG_TYPE_INT && t != CONFIG_TYPE_INT64) {
			config_error(errors, pair, "plugin '%s': a limit is [count, seconds], two "
				     "whole numbers (no quotes)", plugin);
			return 1;
		}
	}
	const char *problem = limit_problem(config_setting_get_int64(c),
					    config_setting_get_int64(s));
	if (problem) {
		config_error(errors, pair, "plugin '%s': limit [%lld, %lld]: %s", plugin,
			     config_setting_get_int64(c), config_setting_get_int64(s), problem);
		return 1;
	}
	limits_add(limits, config_setting_get_int64(c), config_setting_get_int64(s));
	return 0;
}

/* `limits = ( [100, 60], ... );` or a single `limits = [100, 60];`. */
static int config_limits(struct rate_limits *limits, const config_setting_t *list,
			 const char *plugin, struct config_errors *errors)
{
	int n = config_setting_length(list);
	int problems = 0;

	if (config_setting_type(list) == CONFIG_TYPE_ARRAY && n == 2 &&
	    config_setting_type(config_setting_get_elem(list, 0)) != CONFIG_TYPE_ARRAY)
		return config_pair(limits, list, plugin, errors);
	if ((config_setting_type(list) != CONFIG_TYPE_LIST &&
	     config_setting_type(list) != CONFIG_TYPE_ARRAY) || n < 1 ||
	    n > RATEKEYS_WINDOWS_MAX) {
		config_error(errors, list, "plugin '%s': limits must be a list of 1 to %d "
			     "[count, seconds] pairs, as in limits = ( [100, 60], [500, 3600] );",
			     plugin, RATEKEYS_WINDOWS_MAX);
		return 1;
	}
	for (int i = 0; i < n; i++)
		problems += config_pair(limits, config_setting_get_elem(list, (unsigned)i), plugin,
					errors);
	return problems;
}

static const char *skip_space(const char *p, const char *end)
{
	while (p < end && isspace((unsigned char)*p))
		p++;
	return p;
}

/* A number of a JSON array at p; false when there is none. */
static bool json_number(const char **p, const char *end, int64_t *out)
{
	const char *start = *p = skip_space(*p, end);

	while (*p < end && strchr("0123456789+-.eE", **p) && **p != '\0')
		(*p)++;
	return *p > start && session_parse_number(start, (size_t)(*p - start), out);
}

static bool expect(const char **p, const char *end, char c)
{
	*p = skip_space(*p, end);
	if (*p == end || **p != c)
		return false;
	(*p)++;
	return true;
}

/* A uc_limits value: [[count, seconds], ...] as JSON text.  Returns NULL
 * or why it is not usable. */
static const char *json_limits(const char *text, size_t len, struct rate_limits *out)
{
	const char *p = text, *end = text + len;

	out->count = 0;
	if (!expect(&p, end, '['))
		return "not a JSON array";
	do {
		int64_t count, seconds;
		if (out->count == RATEKEYS_WINDOWS_MAX)
			return "more than 8 limits";
		if (!expect(&p, end, '[') || !json_number(&p, end, &count) ||
		    !expect(&p, end, ',') || !json_number(&p, end, &seconds) ||
		    !expect(&p, end, ']'))
			return "not a list of [count, seconds] pairs";
		const char *problem = limit_problem(count, seconds);
		if (problem)
			return problem;
		limits_add(out, count, seconds);
	} while (expect(&p, end, ','));
	if (!expect(&p, end, ']') || skip_space(p, end) != end)
		return "not a list of [count, seconds] pairs";
	return NULL;
}

/* The limits for this request: the session's uc_limits when usable. */
static const struct rate_limits *limits_for(const struct ratelimit_settings *r,
					    const struct session *session, const char *plugin,
					    struct rate_limits *buf)
{
	static _Atomic long long last_complaint;
	const char *uc = plugin_uc(r->uc_limits);
	struct session_view v;

	if (uc == NULL || !session_get(session, uc, &v) || v.kind == SESSION_NULL)
		return &r->limits;
	const char *problem = "not a JSON array of [count, seconds] pairs";
	if (v.kind == SESSION_STRING || v.kind == SESSION_OTHER)
		problem = json_limits(v.text, v.len, buf);
	if (problem == NULL)
		return buf;
	if (log_ratelimit(&last_complaint, 10))
		log_warning("plugin %s: session value %s is not usable limits (%s), using the "
			    "configured ones", plugin, uc, problem);
	return &r->limits;
}

/* ------------------------------------------------------------------ plugin */

static int ratelimit_setup(struct plugin *plugin, const config_setting_t *where,
			   struct config_errors *errors)
{
	struct ratelimit_settings *r = plugin->settings;
	int problems = config_limits(&r->limits, config_setting_get_member(where, "limits"),
				     plugin->name, errors);

	if (problems > 0)
		return problems;
	r->metric_index = metric_parse(r->metric);
	rate_limits_sign(&r->limits, r->metric_index);
	r->field_len = strlen(r->field);
	r->keys = ratekeys_open(plugin->name);
	return 0;
}

static void ratelimit_activate(const struct plugin *plugin)
{
	const struct ratelimit_settings *r = plugin->settings;

	ratekeys_configure(r->keys, r->field, &r->limits, (size_t)r->max_keys);
}

static void ratelimit_destroy(struct plugin *plugin)
{
	struct ratelimit_settings *r = plugin->settings;

	ratekeys_close(r->keys);
}

/* The default answer, naming the window (valid until this thread's next
 * deferral: the worker writes it before it runs another chain). */
static const char *default_action(const struct rate_limit *limit, int metric)
{
	static const char *const units[METRIC_COUNT_OF] = { "messages", "recipients", "bytes",
							     "bytes" };
	static _Thread_local char text[160];

	snprintf(text, sizeof(text), "defer 4.7.1 rate limit exceeded: %llu %s in %lu seconds",
		 (unsigned long long)limit->count, units[metric], (unsigned long)limit->seconds);
	return text;
}

/* The key of (field, value): the value when the field is the configured
 * one (named by uc_field or not), else "field\nvalue" (no request value
 * holds a newline, and a long value's form has 222 bytes before its
 * newline). */
static const char *key_for(const struct ratelimit_settings *r, const char *field,
			   const struct attribute *value, size_t *len, char *buf, size_t size)
{
	char long_form[ACCOUNTING_VALUE_MAX];
	size_t value_len = value->value_len;
	const char *stored = accounting_key(value->value, &value_len, long_form);
	bool configured = field == r->field || strcmp(field, r->field) == 0;

	if (configured && stored == value->value) {
		*len = value_len;
		return stored;
	}
	if (configured)
		*len = (size_t)snprintf(buf, size, "%.*s", (int)value_len, stored);
	else
		*len = (size_t)snprintf(buf, size, "%s\n%.*s", field, (int)value_len, stored);
	return buf;
}

/* What the request weighs in `metric`.  A count is one a request: no
 * need to scan the request for size and recipient_count, which costs about
 * a fifth of this plugin's run. */
static uint64_t amount_of(const struct request *request, int metric)
{
	struct metric_values amounts;

	if (metric == METRIC_COUNT)
		return 1;
	metrics_of_request(request, &amounts);
	return amounts.v[metric];
}

static enum plugin_result ratelimit_run(const struct plugin *plugin, struct plugin_call *call)
{
	const struct ratelimit_settings *r = plugin->settings;
	const struct session *session = call->session;
	const char *name = plugin->name;
	struct rate_limits own;
	char key_buf[ACCOUNTING_VALUE_MAX + 80];
	size_t key_len;

	if (!session_uc_switch(session, plugin_uc(r->uc_enabled), r->enabled))
		return PLUGIN_NEXT;
	if (plugin_message_done(plugin, call))
		return PLUGIN_NEXT;        /* session_cache: counted at its first request */
	const char *field = session_uc_text(session, plugin_uc(r->uc_field), r->field,
					    config_is_identifier, name, "field");
	const struct attribute *value = request_find_len(call->request, field,
							 field == r->field ? r->field_len :
							 strlen(field));
	if (attribute_is_blank(value))
		return PLUGIN_NEXT;
	int metric = metric_parse(session_uc_text(session, plugin_uc(r->uc_metric), r->metric,
						  metric_is_valid, name, "metric"));
	const struct rate_limits *limits = limits_for(r, session, name, &own);
	if (limits != &r->limits || metric != r->metric_index) {
		if (limits != &own)
			own = *limits;
		rate_limits_sign(&own, metric);
		limits = &own;
	}

	const char *key = key_for(r, field, value, &key_len, key_buf, sizeof(key_buf));
	int refused = ratekeys_offer(r->keys, key, key_len, limits,
				     amount_of(call->request, metric), clock_ms(),
				     (size_t)r->max_keys);
	if (refused < 0) {
		plugin_message_claim(plugin, call);
		return PLUGIN_NEXT;
	}

	const struct rate_limit *over = &limits->limit[refused];
	const char *action = session_uc_text(session, plugin_uc(r->uc_action), r->action,
					     policy_action_is_valid, name, "action");
	if (action[0] == '\0')
		action = default_action(over, metric);
	static _Atomic long long last_notice;
	if (log_ratelimit(&last_notice, 10))
		log_notice("plugin %s: %s %.*s over its limit of %llu %s in %lu seconds: %s", name,
			   field, (int)value->value_len, value->value,
			   (unsigned long long)over->count, metric_names[metric],
			   (unsigned long)over->seconds, action);
	else
		log_debug("plugin %s: %s %.*s over %llu %s in %lu seconds", name, field,
			  (int)value->value_len, value->value, (unsigned long long)over->count,
			  metric_names[metric], (unsigned long)over->seconds);
	call->action = action;
	return PLUGIN_ANSWER;
}

static void ratelimit_key_stats(const struct plugin *plugin, struct ratekeys_stats *out)
{
	const struct ratelimit_settings *r = plugin->settings;

	ratekeys_stats(r->keys, out);
}

const struct plugin_module ratelimit_module = {
	.name = "RateLimit",
	.uses_database = false,
	.options = ratelimit_options,
	.settings_size = sizeof(struct ratelimit_settings),
	.setup = ratelimit_setup,
	.run = ratelimit_run,
	.destroy = ratelimit_destroy,
	.activate = ratelimit_activate,
	.key_stats = ratelimit_key_stats,
};
