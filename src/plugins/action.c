/*
 * plugins/action.c: the Action module, a fixed answer (mtpolicyd's Action).
 *   { name = "reject-all"; module = "Action"; action = "reject no reason"; }
 * Read-only at run time; any worker thread.
 */
#include "config.h"

#include <stddef.h>

#include "plugin.h"

struct action_settings {
	char *action;
};

static const struct config_option action_options[] = {
	PLUGIN_COMMON_OPTIONS,
	{ .name = "action", .type = OPTION_STRING, .required = true,
	  .offset = offsetof(struct action_settings, action),
	  .valid = policy_action_is_valid, .valid_what = "a one-line action text" },
	{ .name = NULL },
};

static enum plugin_result action_run(const struct plugin *plugin, struct plugin_call *call)
{
	const struct action_settings *settings = plugin->settings;

	call->action = settings->action;
	return PLUGIN_ANSWER;
}

const struct plugin_module action_module = {
	.name = "Action",
	.options = action_options,
	.settings_size = sizeof(struct action_settings),
	.run = action_run,
};
