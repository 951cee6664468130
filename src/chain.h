/*
 * chain.h: plugins in a virtual host, and running them for one request.
 *
 * chain_create_plugin() builds a plugin from its config group (config.c
 * calls it while loading).  chain_run() runs a virtual host's plugins in
 * order; the first that answers ends the chain, and with no answer the
 * result is "dunno".  A plugin that waits for the database stops the run
 * where it is; the worker parks the request and runs the chain again from
 * that plugin later.  Worker threads call chain_run() concurrently on the
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

/* Readies `config` as it goes into force (at start, and at a reload that
 * passed every check; stats_init() has run): gives every virtual host and
 * plugin its per-thread counters and runs each plugin's activate(). */
void chain_activate(struct config *config);

/* Where a request is in its chain: a request that waits for the database
 * keeps this and its session, and goes on at `next` when it is resumed. */
struct chain_state {
	size_t next;               /* the plugin to run next */
	bool may_wait;             /* false once the request's database.wait is over */
	uint64_t ticket;           /* of the plugin that waits (park.h) */
};

/* Ready for a new request. */
void chain_start(struct chain_state *state);

/* Runs the virtual host's plugins from state->next.  Returns the answer's
 * action text, valid until the session is cleared, or NULL when a plugin
 * waits: state->next is then that plugin and state->ticket its ticket.
 * vhost may be NULL (a listener no virtual host serves): "dunno". */
const char *chain_run(const struct vhost *vhost, const struct request *request,
		      struct session *session, struct chain_state *state);

#endif
