/*
 * plugin.h: the plugin interface.
 *
 * A plugin module (Accounting, Quota, RateLimit, SqlUserConfig, Action) describes its
 * settings in an option table and provides run().  The chain (chain.c)
 * creates one struct plugin per configured plugin and calls run() in order
 * for each request; the first plugin that answers ends the chain.
 *
 * run() is called concurrently by all worker threads with the same plugin:
 * a plugin's settings are read-only after setup(); whatever a plugin changes
 * at run time (counters, caches) lives in modules with their own locks.  A
 * plugin never asks the database: a value the caches do not hold makes it
 * answer PLUGIN_WAIT (the request is parked and the plugin runs again when
 * the loader has the value), and once the wait is over it treats the value
 * as unavailable.  A plugin that waits must not have changed anything yet.
 */
#ifndef TALLYD_PLUGIN_H
#define TALLYD_PLUGIN_H

#include <libconfig.h>

#include "cidr.h"
#include "config.h"
#include "policy.h"
#include "session.h"
#include "timekey.h"

enum plugin_result {
	PLUGIN_NEXT,               /* go on with the next plugin */
	PLUGIN_ANSWER,             /* call->action is the answer; stop */
	PLUGIN_WAIT,               /* a value it needs is being loaded: park the request
	                              on call->ticket and run this plugin again */
};

struct plugin_call {
	const struct request *request;
	struct session *session;
	const char *action;        /* set by a plugin that answers; must stay valid
	                              until the session is cleared */
	bool may_wait;             /* false once the request's database.wait is over:
	                              what is missing then counts as unavailable */
	uint64_t ticket;           /* set by a plugin that waits (park.h) */
	uint64_t message;          /* with session_cache on, the hash of the message's
	                              `instance` (sessioncache.h), else 0: every
	                              request counts */
};

struct plugin;
struct ratekeys_stats;

struct plugin_module {
	const char *name;          /* as written in module = "..."; matched without case */
	bool uses_database;        /* reads or writes it: tallyd needs a store */
	const struct config_option *options;
	size_t settings_size;
	/* Checks that involve several options and prepares derived state; records
	 * problems at `where` and returns how many. */
	int (*setup)(struct plugin *plugin, const config_setting_t *where,
		     struct config_errors *errors);
	enum plugin_result (*run)(const struct plugin *plugin, struct plugin_call *call);
	/* Frees what setup() made (options are freed by the chain). May be NULL. */
	void (*destroy)(struct plugin *plugin);
	/* When the plugin's config goes into force (chain_activate()), not when
	 * it is loaded: a reload may still be refused.  Hands state shared
	 * across configs this config's settings.  Main thread; may be NULL. */
	void (*activate)(const struct plugin *plugin);
	/* For the config's warnings; may be NULL.  reads(): the table (and its
	 * time pattern) the plugin reads totals from, -1 when none.  writes():
	 * whether the plugin may add to `table` under `time_pattern`. */
	int (*reads)(const struct plugin *plugin, const char **time_pattern);
	bool (*writes)(const struct plugin *plugin, int table, const char *time_pattern);
	/* For `tallyd -t --connect`; may be NULL: the SQL the loader runs for
	 * the plugin (a lookup with one ?, a preload without; NULL or "" for
	 * none). */
	void (*queries)(const struct plugin *plugin, const char **lookup, const char **preload);
	/* For tallyctl stats and /metrics; may be NULL: the keys a plugin keeps
	 * in memory of its own (RateLimit). */
	void (*key_stats)(const struct plugin *plugin, struct ratekeys_stats *out);
};

struct plugin {
	const struct plugin_module *module;
	char *name;
	uint64_t name_hash;        /* names the plugin's marks in the session cache */
	void *settings;            /* the module's settings struct */
	struct object_stats *stats;   /* per thread; set when the config goes live */
	struct cidr_list exempt;   /* client addresses the chain lets pass this plugin
	                              untouched (empty: none) */
};

/* Every option table begins with these: the chain reads them. */
#define PLUGIN_COMMON_OPTIONS \
	{ .name = "name", .type = OPTION_CUSTOM }, \
	{ .name = "module", .type = OPTION_CUSTOM }

/* In the option tables of the modules that count or limit clients
 * (Accounting, Quota, RateLimit): `exempt = "127.0.0.0/8, ::1";`.  The
 * chain parses it (cidr.h) and does not run the plugin for a request whose
 * client_address is in it. */
#define PLUGIN_EXEMPT_OPTION \
	{ .name = "exempt", .type = OPTION_CUSTOM }

/* The options of the modules that use accounting tables (Accounting and
 * Quota): `settings` must have char *time_pattern and char *table_prefix. */
#define PLUGIN_TABLE_OPTIONS(settings) \
	{ .name = "time_pattern", .type = OPTION_STRING, \
	  .offset = offsetof(settings, time_pattern), .default_string = "%Y-%m", \
	  .valid = timekey_pattern_is_valid, \
	  .valid_what = "a strftime pattern giving 1 to 255 bytes" }, \
	{ .name = "table_prefix", .type = OPTION_STRING, \
	  .offset = offsetof(settings, table_prefix), .default_string = "acct_", \
	  .valid = plugin_valid_prefix, \
	  .valid_what = "empty or a plain identifier (letters, digits, _)" }

/* ---- helpers the modules share (plugin.c) ---- */

bool plugin_valid_prefix(const char *prefix);

/* The uc_ option as the session rules want it: NULL when not set. */
const char *plugin_uc(const char *uc_option);

/* Registers table prefix + field (tables.h) for a time pattern and the
 * field; -1 when prefix + field is not a plain identifier of 64 characters
 * at most, -2 when the time pattern cannot be kept. */
int plugin_table(const char *prefix, const char *field, const char *time_pattern);
/* Says why plugin_table() returned `rc`. */
void plugin_table_error(struct config_errors *errors, const config_setting_t *where,
			const char *plugin, const char *prefix, const char *field,
			const char *time_pattern, int rc);

/* Logs (rate-limited) that a value from the database is not available for
 * this request, and what happens instead. */
void plugin_unavailable(const struct plugin *plugin, const struct plugin_call *call,
			const char *what, const char *instead);

/* With session_cache (sessioncache.h): whether the plugin has already let
 * this request's message through, and marking that it has.  claim returns
 * false when the message was already marked (nothing to count again), true
 * when this call marked it or there is no session (count). */
bool plugin_message_done(const struct plugin *plugin, const struct plugin_call *call);
bool plugin_message_claim(const struct plugin *plugin, const struct plugin_call *call);

/* False (logged, rate-limited) when the plugin's time_pattern gives no
 * period now: nothing is counted or checked then. */
bool plugin_has_period(const struct plugin *plugin, int period);

extern const struct plugin_module action_module;
extern const struct plugin_module accounting_module;
extern const struct plugin_module quota_module;
extern const struct plugin_module ratelimit_module;
extern const struct plugin_module sqluserconfig_module;

#endif
