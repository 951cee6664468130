/*
 * chain.c: the plugin modules tallyd knows, building plugins from the
 * config, and the chain that runs them (see chain.h).  Config loading runs
 * in one thread; chain_run() is called by every worker at once and only
 * reads the config (and, with session_cache on, finds the message's
 * `instance` for the plugins' marks, sessioncache.h); it counts calls,
 * answers, waits and time per virtual host and plugin in the calling
 * thread's own slot (stats.h), so it takes no lock.  A plugin's `exempt`
 * list (cidr.h) is parsed here and applied here: a request from an exempt
 * client_address skips the plugin.  chain_activate() (main thread) readies
 * a config going into force: its counters and each plugin's activate().
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "chain.h"
#include "clock.h"
#include "hash.h"
#include "log.h"
#include "sessioncache.h"

static const struct plugin_module *const modules[] = {
	&action_module,
	&accounting_module,
	&quota_module,
	&ratelimit_module,
	&sqluserconfig_module,
};

static const struct plugin_module *find_module(const char *name)
{
	for (size_t i = 0; i < sizeof(modules) / sizeof(modules[0]); i++) {
		if (strcasecmp(modules[i]->name, name) == 0)
			return modules[i];
	}
	return NULL;
}

static bool takes_exempt(const struct plugin_module *module)
{
	for (const struct config_option *o = module->options; o->name; o++) {
		if (strcmp(o->name, "exempt") == 0)
			return true;
	}
	return false;
}

/* Parses the plugin's `exempt` setting, if its module takes one
 * (PLUGIN_EXEMPT_OPTION; for the others it is an unknown setting). */
static int parse_exempt(struct plugin *plugin, const config_setting_t *group,
			struct config_errors *errors)
{
	const config_setting_t *setting = config_setting_get_member(group, "exempt");
	char why[200];

	if (setting == NULL || !takes_exempt(plugin->module))
		return 0;
	const char *text = config_setting_get_string(setting);
	if (text == NULL) {
		config_error(errors, setting, "plugin '%s': exempt must be a string of addresses "
			     "and networks, as in exempt = \"127.0.0.0/8, ::1\";", plugin->name);
		return 1;
	}
	if (!cidr_parse(text, &plugin->exempt, why, sizeof(why))) {
		config_error(errors, setting, "plugin '%s': exempt: %s", plugin->name, why);
		return 1;
	}
	return 0;
}

#define MODULE_NAMES "Accounting, Action, Quota, RateLimit, SqlUserConfig"

struct plugin *chain_create_plugin(const config_setting_t *group, struct config_errors *errors)
{
	const char *name = NULL, *module_name = NULL;

	if (config_setting_type(group) != CONFIG_TYPE_GROUP) {
		config_error(errors, group, "a plugin must be a group: { name = ...; module = ...; }");
		return NULL;
	}
	if (!config_setting_lookup_string(group, "name", &name) || name[0] == '\0') {
		config_error(errors, group, "plugin without a name (name = \"...\";)");
		return NULL;
	}
	if (!config_setting_lookup_string(group, "module", &module_name)) {
		config_error(errors, group, "plugin '%s': missing module (one of " MODULE_NAMES ")",
			     name);
		return NULL;
	}
	const struct plugin_module *module = find_module(module_name);
	if (module == NULL) {
		config_error(errors, config_setting_get_member(group, "module"),
			     "plugin '%s': unknown module '%s' (tallyd has " MODULE_NAMES ")",
			     name, module_name);
		return NULL;
	}

	struct plugin *plugin = xcalloc(1, sizeof(*plugin));
	plugin->module = module;
	plugin->name = xstrdup(name);
	plugin->name_hash = hash_bytes(HASH_SEED, name, strlen(name));
	plugin->settings = xcalloc(1, module->settings_size);
	config_default_options(module->options, plugin->settings);

	char context[300];
	snprintf(context, sizeof(context), "plugin '%s'", name);
	int problems = config_apply_options(module->options, plugin->settings, group, context, errors);
	problems += parse_exempt(plugin, group, errors);
	if (problems == 0 && module->setup)
		problems = module->setup(plugin, group, errors);
	if (problems > 0) {
		chain_free_plugin(plugin);
		return NULL;
	}
	return plugin;
}

void chain_free_plugin(struct plugin *plugin)
{
	if (plugin == NULL)
		return;
	if (plugin->module->destroy)
		plugin->module->destroy(plugin);
	config_free_options(plugin->module->options, plugin->settings);
	cidr_free(&plugin->exempt);
	free(plugin->settings);
	free(plugin->name);
	free(plugin->stats);
	free(plugin);
}

void chain_activate(struct config *config)
{
	for (size_t i = 0; i < config->vhost_count; i++) {
		struct vhost *v = &config->vhosts[i];
		v->stats = object_stats_new();
		for (size_t j = 0; j < v->plugin_count; j++) {
			struct plugin *p = v->plugins[j];
			p->stats = object_stats_new();
			if (p->module->activate)
				p->module->activate(p);
		}
	}
}

void chain_start(struct chain_state *state)
{
	*state = (struct chain_state){ .next = 0, .may_wait = true };
}

/* Plugin run times are measured on one request in TIMED_EVERY per thread
 * and counted that many times: reading the clock around every plugin cost
 * more than some plugins do. */
#define TIMED_EVERY 16
static _Thread_local unsigned timing_turn;

/* Counts one run of a plugin in the calling thread's slot; `nanoseconds`
 * is 0 on a request that is not timed. */
static void count_run(const struct plugin *plugin, int slot, enum plugin_result result,
		      int64_t nanoseconds)
{
	struct object_stats *mine;

	if (plugin->stats == NULL)
		return;
	mine = &plugin->stats[slot];
	if (nanoseconds > 0)
		stats_bump(&mine->nanoseconds, (uint64_t)nanoseconds * TIMED_EVERY);
	if (result == PLUGIN_WAIT) {
		stats_bump(&mine->waits, 1);
		return;                       /* the call counts when it ends */
	}
	stats_bump(&mine->calls, 1);
	stats_bump(&mine->answers, result == PLUGIN_ANSWER);
}

/* The request's client_address, read once per chain_run() and only when
 * a plugin has an exempt list. */
struct client {
	enum { CLIENT_UNREAD, CLIENT_NONE, CLIENT_ADDRESS } state;
	uint8_t address[CIDR_BYTES];
};

/* Whether the plugin lets this request's client pass untouched; counted. */
static bool is_exempt(const struct plugin *plugin, const struct request *request,
		      struct client *client, int slot)
{
	if (plugin->exempt.count == 0)
		return false;
	if (client->state == CLIENT_UNREAD) {
		const struct attribute *a = request_find(request, "client_address");
		client->state = a && cidr_address(a->value, a->value_len, client->address) ?
				CLIENT_ADDRESS : CLIENT_NONE;
	}
	if (client->state != CLIENT_ADDRESS || !cidr_contains(&plugin->exempt, client->address))
		return false;
	if (plugin->stats)
		stats_bump(&plugin->stats[slot].exempt, 1);
	return true;
}

const char *chain_run(const struct vhost *vhost, const struct request *request,
		      struct session *session, struct chain_state *state)
{
	struct plugin_call call = { .request = request, .session = session,
				    .may_wait = state->may_wait };
	struct client client = { .state = CLIENT_UNREAD };
	int slot = stats_thread_index();

	if (vhost == NULL)
		return "dunno";
	if (sessioncache_enabled()) {
		const struct attribute *instance = request_find(request, "instance");
		if (!attribute_is_blank(instance))
			call.message = sessioncache_message(instance->value, instance->value_len);
	}
	if (vhost->stats && state->next == 0)
		stats_bump(&vhost->stats[slot].calls, 1);
	bool timed = ++timing_turn % TIMED_EVERY == 0;
	int64_t then = timed ? clock_ns() : 0;
	for (; state->next < vhost->plugin_count; state->next++) {
		const struct plugin *plugin = vhost->plugins[state->next];
		if (is_exempt(plugin, request, &client, slot))
			continue;
		enum plugin_result result = plugin->module->run(plugin, &call);
		int64_t now = timed ? clock_ns() : 0;
		count_run(plugin, slot, result, now - then);
		then = now;
		if (result == PLUGIN_WAIT) {
			state->ticket = call.ticket;
			return NULL;
		}
		if (result == PLUGIN_ANSWER) {
			if (vhost->stats)
				stats_bump(&vhost->stats[slot].answers, 1);
			return call.action;
		}
	}
	return "dunno";
}
