/*
 * chain.h: plugins in a virtual host, and running them for one request.
 *
 * chain_create_plugin() builds a plugin from its config group (config.c
 * calls it while loading).  chain_run() runs a virtual host's plugins in
 * order; the first that answers ends the chain, and with no answer the
 * result is "dunno".  Worker threads call chain_run() concurrently on the
 * same immutable config.
 */
#ifndef TALLYD_CHAIN_H
#define TALLYD_CHAIN_H

#include <libconfig.h>

#include "config.h"
#include "plugin.h"

/* Returns NULL after recording the problems in `errors`. */
struct plugin *chain_create_plugin(const config_setting_t *group, struct config_errors *errors);
void chain_free_plugin(struct plugin *plugin);

/* Gives every virtual host and plugin of `config` its per-thread counters;
 * when a config goes live (stats_init() has run). */
void chain_enable_stats(struct config *config);

/* The answer's action text; valid until the session is cleared.  vhost may
 * be NULL (a listener no virtual host serves): the answer is "dunno". */
const char *chain_run(const struct vhost *vhost, const struct request *request,
		      struct session *session);

#endif
