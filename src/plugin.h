/*
 * plugin.h: the plugin interface.
 *
 * A plugin module (Accounting, Quota, SqlUserConfig, Action) describes its
 * settings in an option table and provides run().  The chain (chain.c)
 * creates one struct plugin per configured plugin and calls run() in order
 * for each request; the first plugin that answers ends the chain.
 *
 * run() is called concurrently by all worker threads with the same plugin:
 * a plugin's settings are read-only after setup(); whatever a plugin changes
 * at run time (counters, caches) lives in modules with their own locks.
 */
#ifndef TALLYD_PLUGIN_H
#define TALLYD_PLUGIN_H

#include <libconfig.h>

#include "config.h"
#include "policy.h"
#include "session.h"

enum plugin_result {
	PLUGIN_NEXT,               /* go on with the next plugin */
	PLUGIN_ANSWER,             /* call->action is the answer; stop */
};

struct plugin_call {
	const struct request *request;
	struct session *session;
	const char *action;        /* set by a plugin that answers; must stay valid
	                              until the session is cleared */
};

struct plugin;

struct plugin_module {
	const char *name;          /* as written in module = "..."; matched without case */
	const struct config_option *options;
	size_t settings_size;
	/* Checks that involve several options and prepares derived state; records
	 * problems at `where` and returns how many. */
	int (*setup)(struct plugin *plugin, const config_setting_t *where,
		     struct config_errors *errors);
	enum plugin_result (*run)(const struct plugin *plugin, struct plugin_call *call);
	/* Frees what setup() made (options are freed by the chain). May be NULL. */
	void (*destroy)(struct plugin *plugin);
};

struct plugin {
	const struct plugin_module *module;
	char *name;
	void *settings;            /* the module's settings struct */
};

/* Every option table begins with these: the chain reads them. */
#define PLUGIN_COMMON_OPTIONS \
	{ .name = "name", .type = OPTION_CUSTOM }, \
	{ .name = "module", .type = OPTION_CUSTOM }

extern const struct plugin_module action_module;
extern const struct plugin_module accounting_module;
extern const struct plugin_module quota_module;
extern const struct plugin_module sqluserconfig_module;

#endif
