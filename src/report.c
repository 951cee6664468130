/*
 * report.c: what tallyd tells about itself, in two formats: the lines of
 * tallyctl stats, and Prometheus' text format for GET /metrics (see
 * report.h).  It reads statistics the way any reader does (summing
 * per-thread slots, asking each module for its numbers); the admin thread
 * calls it.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "connection.h"
#include "counters.h"
#include "flusher.h"
#include "journal.h"
#include "loader.h"
#include "park.h"
#include "plugin.h"
#include "ratekeys.h"
#include "report.h"
#include "sessioncache.h"
#include "stats.h"
#include "store.h"
#include "usercache.h"

static void format_time(char *out, size_t size, int64_t unix_time)
{
	struct tm tm;
	time_t t = (time_t)unix_time;

	if (unix_time == 0) {
		snprintf(out, size, "never");
		return;
	}
	localtime_r(&t, &tm);
	strftime(out, size, "%Y-%m-%dT%H:%M:%S", &tm);
}

void report_stats(struct buf *out, const struct config *config, time_t started)
{
	struct stats_slot t;
	struct counters_stats cache;
	struct usercache_stats users;
	struct loader_status loader;
	struct flusher_status f;
	char when[32];

	stats_read(&t);
	counters_stats(&cache);
	usercache_stats(&users);
	loader_status(&loader);
	flusher_status(&f);
	buf_printf(out, "uptime_seconds %lld\n", (long long)(time(NULL) - started));
	buf_printf(out, "connections_open %d\n", connection_count());
	buf_printf(out, "connections_total %llu\n", (unsigned long long)t.connections);
	buf_printf(out, "connections_refused %llu\n", (unsigned long long)t.refused);
	buf_printf(out, "requests %llu\n", (unsigned long long)t.requests);
	buf_printf(out, "malformed %llu\n", (unsigned long long)t.malformed);
	buf_printf(out, "timeouts %llu\n", (unsigned long long)t.timeouts);
	for (int a = 0; a < ACTION_COUNT_OF; a++)
		buf_printf(out, "answers %s %llu\n", stats_action_names[a],
			   (unsigned long long)t.answers[a]);
	buf_printf(out, "waits %llu\n", (unsigned long long)t.waits);
	buf_printf(out, "waits_expired %llu\n", (unsigned long long)t.waits_expired);
	buf_printf(out, "parked %zu\n", park_count());
	for (size_t i = 0; i < config->vhost_count; i++) {
		const struct vhost *v = &config->vhosts[i];
		struct object_totals o;
		object_stats_read(v->stats, &o);
		buf_printf(out, "vhost %s requests %llu answered %llu\n", v->name,
			   (unsigned long long)o.calls, (unsigned long long)o.answers);
		for (size_t j = 0; j < v->plugin_count; j++) {
			const struct plugin *p = v->plugins[j];
			object_stats_read(p->stats, &o);
			buf_printf(out, "plugin %s %s calls %llu answers %llu waits %llu monitored %llu "
				   "exempt %llu avg_us %.1f\n", v->name, p->name,
				   (unsigned long long)o.calls, (unsigned long long)o.answers,
				   (unsigned long long)o.waits, (unsigned long long)o.monitored,
				   (unsigned long long)o.exempt,
				   o.calls ? (double)o.nanoseconds / (double)o.calls / 1000.0 : 0.0);
			if (p->module->key_stats) {
				struct ratekeys_stats k;
				p->module->key_stats(p, &k);
				buf_printf(out, "plugin %s %s keys %zu evicted_idle %llu "
					   "evicted_active %llu restored %llu\n", v->name, p->name,
					   k.keys, (unsigned long long)k.evicted_idle,
					   (unsigned long long)k.evicted_active,
					   (unsigned long long)k.restored);
			}
		}
	}
	buf_printf(out, "cache_keys %zu\n", cache.keys);
	buf_printf(out, "queued_keys %zu\n", cache.queued_keys);
	buf_printf(out, "user_configs %zu\n", users.entries);
	buf_printf(out, "user_configs_queued %zu\n", users.queued);
	buf_printf(out, "loader_batches %llu\n", (unsigned long long)loader.batches);
	buf_printf(out, "loader_keys %llu\n", (unsigned long long)loader.keys_loaded);
	buf_printf(out, "loader_user_configs %llu\n", (unsigned long long)loader.configs_loaded);
	buf_printf(out, "loader_periods %llu rows %llu\n", (unsigned long long)loader.periods_loaded,
		   (unsigned long long)loader.rows_bulk_loaded);
	buf_printf(out, "loader_refreshes %llu\n", (unsigned long long)loader.refreshes);
	buf_printf(out, "loader_preloads %llu\n", (unsigned long long)loader.preloads);
	buf_printf(out, "loader_failures %llu\n", (unsigned long long)loader.failures);
	buf_printf(out, "loader_conflicts %llu\n", (unsigned long long)loader.conflicts);
	buf_printf(out, "pending_keys %zu\n", cache.dirty_keys);
	buf_printf(out, "cache_evicted %llu\n", (unsigned long long)cache.evicted);
	struct sessioncache_stats sessions;
	sessioncache_stats(&sessions);
	buf_printf(out, "session_marks %llu\n", (unsigned long long)sessions.marks);
	buf_printf(out, "session_marks_evicted %llu\n", (unsigned long long)sessions.evicted);
	buf_printf(out, "in_flight_keys %zu\n", f.in_flight_keys);
	buf_printf(out, "flushes %llu\n", (unsigned long long)f.flushes);
	buf_printf(out, "flush_failures %llu\n", (unsigned long long)f.failures);
	buf_printf(out, "flush_rows_refused %llu\n", (unsigned long long)f.rows_refused);
	buf_printf(out, "flush_conflicts %llu\n", (unsigned long long)f.conflicts);
	format_time(when, sizeof(when), f.last_flush);
	buf_printf(out, "last_flush %s seq %llu keys %zu seconds %.3f\n", when,
		   (unsigned long long)f.last_seq, f.last_keys, f.last_duration);
	buf_printf(out, "last_flush_error %s\n", f.last_error[0] ? f.last_error : "-");
	buf_printf(out, "database %s\n", store_is_down() ? "down" : "up");
	buf_printf(out, "journal %s\n", journal_enabled() ? "on" : "off");
	buf_printf(out, "journal_write_failures %llu\n", (unsigned long long)journal_failures());
}

/* Prometheus label values escape \, " and newlines. */
static void label(struct buf *out, const char *value)
{
	for (const char *p = value; *p; p++) {
		if (*p == '\\' || *p == '"')
			buf_printf(out, "\\%c", *p);
		else if (*p == '\n')
			buf_append_str(out, "\\n");
		else
			buf_append(out, p, 1);
	}
}

/* A sample value as a reader would write it: 1000000, not 1e+06;
 * 0.002209739 (the shortest form that reads back as the same double), not
 * 0.0022097390000000001. */
static void value(struct buf *out, double v)
{
	char text[32];

	if (v < 9007199254740992.0 && v > -9007199254740992.0 && v == (double)(int64_t)v) {
		buf_printf(out, "%lld\n", (long long)v);   /* a count: all its digits */
		return;
	}
	for (int precision = 1; precision <= 17; precision++) {
		snprintf(text, sizeof(text), "%.*g", precision, v);
		if (strtod(text, NULL) == v)
			break;
	}
	buf_printf(out, "%s\n", text);
}

static void metric(struct buf *out, const char *name, const char *type, const char *help,
		   double v)
{
	buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s ", name, help, name, type, name);
	value(out, v);
}

/* One sample of a plugin's family. */
static void plugin_sample(struct buf *out, const char *name, const struct vhost *v,
			  const struct plugin *p, double sample)
{
	buf_printf(out, "%s{vhost=\"", name);
	label(out, v->name);
	buf_append_str(out, "\",plugin=\"");
	label(out, p->name);
	buf_append_str(out, "\"} ");
	value(out, sample);
}

static void object_metrics(struct buf *out, const struct config *config)
{
	enum { FAMILIES = 6 };
	static const char *const names[FAMILIES] = { "tallyd_plugin_calls_total",
						     "tallyd_plugin_answers_total",
						     "tallyd_plugin_waits_total",
						     "tallyd_plugin_monitored_total",
						     "tallyd_plugin_exempt_total",
						     "tallyd_plugin_seconds_total" };
	static const char *const help[FAMILIES] = {
		"Requests that ran the plugin.",
		"Requests the plugin answered (a Quota's or a RateLimit's deferrals, an Action's answers).",
		"Runs of the plugin that waited for the database.",
		"Answers a Quota with monitor = true would have given.",
		"Requests from an exempt client_address that passed the plugin untouched.",
		"Seconds spent in the plugin." };

	for (int which = 0; which < FAMILIES; which++) {
		buf_printf(out, "# HELP %s %s\n# TYPE %s counter\n", names[which], help[which],
			   names[which]);
		for (size_t i = 0; i < config->vhost_count; i++) {
			const struct vhost *v = &config->vhosts[i];
			for (size_t j = 0; j < v->plugin_count; j++) {
				struct object_totals o;
				object_stats_read(v->plugins[j]->stats, &o);
				double values[FAMILIES] = { (double)o.calls, (double)o.answers,
							    (double)o.waits, (double)o.monitored,
							    (double)o.exempt,
							    (double)o.nanoseconds / 1e9 };
				plugin_sample(out, names[which], v, v->plugins[j], values[which]);
			}
		}
	}
}

/* The keys of the plugins that keep their own (RateLimit). */
static void key_metrics(struct buf *out, const struct config *config)
{
	enum { FAMILIES = 4 };
	static const char *const names[FAMILIES] = { "tallyd_plugin_keys",
						     "tallyd_plugin_keys_evicted_idle_total",
						     "tallyd_plugin_keys_evicted_active_total",
						     "tallyd_plugin_keys_restored_total" };
	static const char *const types[FAMILIES] = { "gauge", "counter", "counter", "counter" };
	static const char *const help[FAMILIES] = {
		"Keys a RateLimit tracks.",
		"Keys a RateLimit let go with empty windows.",
		"Keys a RateLimit let go at max_keys with messages still in a window.",
		"Keys a RateLimit put back from its state file at start." };

	for (int which = 0; which < FAMILIES; which++) {
		buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", names[which], help[which],
			   names[which], types[which]);
		for (size_t i = 0; i < config->vhost_count; i++) {
			const struct vhost *v = &config->vhosts[i];
			for (size_t j = 0; j < v->plugin_count; j++) {
				const struct plugin *p = v->plugins[j];
				struct ratekeys_stats k;
				if (p->module->key_stats == NULL)
					continue;
				p->module->key_stats(p, &k);
				double values[FAMILIES] = { (double)k.keys, (double)k.evicted_idle,
							    (double)k.evicted_active,
							    (double)k.restored };
				plugin_sample(out, names[which], v, p, values[which]);
			}
		}
	}
}

void report_metrics(struct buf *out, const struct config *config)
{
	struct stats_slot t;
	struct counters_stats cache;
	struct usercache_stats users;
	struct loader_status loader;
	struct flusher_status f;

	stats_read(&t);
	counters_stats(&cache);
	usercache_stats(&users);
	loader_status(&loader);
	flusher_status(&f);
	metric(out, "tallyd_connections_open", "gauge", "Open client connections.",
	       connection_count());
	metric(out, "tallyd_connections_total", "counter", "Connections accepted.",
	       (double)t.connections);
	metric(out, "tallyd_connections_refused_total", "counter",
	       "Connections refused at max_connections.", (double)t.refused);
	metric(out, "tallyd_requests_total", "counter", "Policy requests answered.",
	       (double)t.requests);
	metric(out, "tallyd_malformed_requests_total", "counter",
	       "Connections closed for a malformed request.", (double)t.malformed);
	metric(out, "tallyd_timeouts_total", "counter",
	       "Connections closed by request_timeout or keepalive_timeout.", (double)t.timeouts);
	buf_append_str(out, "# HELP tallyd_answers_total Answers by action.\n"
		       "# TYPE tallyd_answers_total counter\n");
	for (int a = 0; a < ACTION_COUNT_OF; a++)
		buf_printf(out, "tallyd_answers_total{action=\"%s\"} %llu\n", stats_action_names[a],
			   (unsigned long long)t.answers[a]);
	metric(out, "tallyd_waits_total", "counter",
	       "Requests that waited for the database.", (double)t.waits);
	metric(out, "tallyd_waits_expired_total", "counter",
	       "Requests answered without the database's value after database.wait.",
	       (double)t.waits_expired);
	metric(out, "tallyd_parked_requests", "gauge", "Requests waiting for the database now.",
	       (double)park_count());
	object_metrics(out, config);
	key_metrics(out, config);
	metric(out, "tallyd_cache_keys", "gauge", "Keys in the counter cache.",
	       (double)cache.keys);
	metric(out, "tallyd_user_configs", "gauge", "Entries in the user config cache.",
	       (double)users.entries);
	metric(out, "tallyd_loader_queued", "gauge", "Keys and user configs the loader is asked for.",
	       (double)loader.queued);
	metric(out, "tallyd_loader_failures_total", "counter", "Loader reads that failed.",
	       (double)loader.failures);
	metric(out, "tallyd_loader_conflicts_total", "counter",
	       "Loader reads that lost a conflict and ran again.", (double)loader.conflicts);
	metric(out, "tallyd_cache_evicted_total", "counter",
	       "Keys the counter cache let go for cache_max_keys.", (double)cache.evicted);
	struct sessioncache_stats sessions;
	sessioncache_stats(&sessions);
	metric(out, "tallyd_session_marks", "gauge",
	       "Messages' marks in the session cache (one per message and plugin).",
	       (double)sessions.marks);
	metric(out, "tallyd_session_marks_evicted_total", "counter",
	       "Marks the session cache let go before their ttl for max_entries.",
	       (double)sessions.evicted);
	metric(out, "tallyd_pending_keys", "gauge", "Keys with increments not yet flushed.",
	       (double)flusher_keys_waiting());
	metric(out, "tallyd_flushes_total", "counter", "Flushes committed.", (double)f.flushes);
	metric(out, "tallyd_flush_failures_total", "counter", "Flush attempts that failed.",
	       (double)f.failures);
	metric(out, "tallyd_flush_conflicts_total", "counter",
	       "Flush transactions rolled back by a conflict and run again.",
	       (double)f.conflicts);
	metric(out, "tallyd_flush_rows_refused_total", "counter",
	       "Rows the database refused (a data error), set aside and tried again.",
	       (double)f.rows_refused);
	metric(out, "tallyd_last_flush_timestamp_seconds", "gauge",
	       "Unix time of the last committed flush.", (double)f.last_flush);
	metric(out, "tallyd_last_flush_duration_seconds", "gauge",
	       "Duration of the last committed flush.", f.last_duration);
	metric(out, "tallyd_journal_write_failures_total", "counter",
	       "Journal writes the disk refused: answers whose increments were only in memory.",
	       (double)journal_failures());
	metric(out, "tallyd_database_up", "gauge", "1 when the database is reachable.",
	       store_is_down() ? 0 : 1);
}

